"""The run's figures read on their own: titles, learning rate beside the loss, honest axes, baselines."""

import pytest

from rankssl.mm.plots import is_percent_metric, loss_figure, metrics_figure, plot_loss, plot_metrics


def _train(n=20):
    return [{"iter": i, "epoch": 1 + (i - 1) // 5, "loss": 1.0 / i, "lr": min(i, 10) * 0.1} for i in range(1, n + 1)]


def test_loss_figure_has_title_and_learning_rate_panel():
    fig = loss_figure(_train(), title="groco_smallcnn_1xb256-50e_digits  (run demo/20261124_000000)")
    loss_ax, lr_ax = fig.axes
    assert fig._suptitle.get_text().startswith("groco_smallcnn_1xb256-50e_digits")
    assert loss_ax.get_ylabel() == "training loss" and lr_ax.get_ylabel() == "learning rate"
    assert list(lr_ax.lines[0].get_ydata()) == pytest.approx([min(i, 10) * 0.1 for i in range(1, 21)])
    assert lr_ax.get_ylim()[0] == 0.0


def test_loss_figure_without_learning_rate_has_one_panel():
    fig = loss_figure([{"iter": 1, "epoch": 1, "loss": 0.5}])
    assert len(fig.axes) == 1
    assert fig.axes[0].get_xlim()[0] == 0.0 and fig.axes[0].get_xlim()[1] >= 1.0  # no 0.9-1.1 zoom


def test_one_validation_point_sits_on_the_whole_run_at_honest_scale():
    fig = metrics_figure([{"iter": 10, "epoch": 2, "knn/top1": 61.0}], title="t", max_epochs=50,
                         baselines={"knn/top1 raw pixels": 41.1, "knn/top1 random init": 35.6})
    (ax,) = fig.axes
    assert ax.get_ylim() == (0.0, 100.0)  # a 3-point change cannot fill the plot
    left, right = ax.get_xlim()
    assert left == 0.0 and right >= 50  # the x axis spans the run, not 1.9-2.1
    horizontal = sorted(line.get_ydata()[0] for line in ax.lines if len(set(line.get_ydata())) == 1
                        and line.get_linestyle() == "--")
    assert horizontal == pytest.approx([35.6, 41.1])
    labels = " ".join(t.get_text() for t in ax.texts)
    assert "raw pixels 41.1" in labels and "random init 35.6" in labels


def test_non_percent_metrics_get_their_own_axis():
    val = [{"iter": 5, "epoch": 1, "knn/top1": 30.0, "rank/effective_rank": 12.0},
           {"iter": 10, "epoch": 2, "knn/top1": 40.0, "rank/effective_rank": 20.0}]
    fig = metrics_figure(val, max_epochs=2)
    percent_ax, other_ax = fig.axes
    assert percent_ax.get_ylim() == (0.0, 100.0)
    assert other_ax.get_ylim()[0] == 0.0 and other_ax.get_ylim()[1] < 100.0
    assert metrics_figure([{"iter": 1, "epoch": 1}]) is None
    assert is_percent_metric("knn200/top1") and is_percent_metric("linear/top5") and not is_percent_metric("loss")


def test_plot_files_are_written(tmp_path):
    plot_loss(_train(), str(tmp_path / "loss.png"), title="t")
    plot_metrics([{"iter": 5, "epoch": 1, "knn/top1": 30.0}], str(tmp_path / "metrics.png"), title="t", max_epochs=3)
    assert (tmp_path / "loss.png").stat().st_size > 1000 and (tmp_path / "metrics.png").stat().st_size > 1000
