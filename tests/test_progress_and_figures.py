"""A progress line at least every 30 s on a slow machine; the spectrum and analyze figures are labelled."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest

from rankssl.mm.progress import ProgressHook


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class _Optim:
    def get_lr(self):
        return {"lr": [0.1]}


def _run(seconds_per_iter, iters=20, interval=1000, val_batches=0):
    """Drive the hook through ``iters`` iterations of a fake runner with a fake clock; the printed lines."""
    clock, out = _Clock(), io.StringIO()
    hook = ProgressHook("t", interval=interval, stream=out, clock=clock)
    runner = SimpleNamespace(rank=0, iter=0, epoch=0, max_epochs=1, max_iters=iters, optim_wrapper=_Optim(),
                             val_loop=SimpleNamespace(dataloader=list(range(val_batches))))
    hook.before_train(runner)
    for i in range(iters):
        clock.now += seconds_per_iter
        runner.iter = i
        hook.after_train_iter(runner, i, outputs={"loss": 1.0})
    for b in range(val_batches):
        clock.now += seconds_per_iter
        hook.after_val_iter(runner, b)
    return out.getvalue().splitlines()


def test_fast_iterations_print_by_interval_only():
    lines = _run(seconds_per_iter=1.0)  # 20 s in all: first and last lines only
    assert len(lines) == 2 and "iter 1/20" in lines[0] and "iter 20/20" in lines[1]


def test_slow_iterations_print_at_least_every_30_seconds():
    lines = _run(seconds_per_iter=7.0)  # a line when 30 s have passed since the last: every 5th iteration
    iters = [int(line.split("iter ")[1].split("/")[0]) for line in lines]
    assert iters == [1, 6, 11, 16, 20]
    assert all("ETA" in line for line in lines)


def test_slow_validation_prints_too():
    lines = _run(seconds_per_iter=16.0, iters=1, val_batches=4)
    assert [line for line in lines if "validating" in line] == [
        "[t] validating after epoch 0: batch 2/4", "[t] validating after epoch 0: batch 4/4"]


def test_max_silence_must_be_positive():
    with pytest.raises(ValueError, match="max_silence"):
        ProgressHook("t", max_silence=0)


def test_spectrum_figure_has_title_axis_labels_and_legend():
    from rankssl.mm.plots import spectrum_figure

    fig = spectrum_figure([(10, np.array([4.0, 2.0, 1.0]), 2.7), (20, np.array([4.0, 3.0, 2.0]), 2.9)],
                          title="hydra_smallcnn\nrun w/20261206")
    (ax,) = fig.axes
    assert ax.get_title() == "singular spectrum of the evaluated features"
    assert fig._suptitle.get_text().startswith("hydra_smallcnn")
    assert ax.get_xlabel() and ax.get_ylabel().startswith("s_k / s_1")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["epoch 10: erank 2.7", "epoch 20: erank 2.9"]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [1.0, 0.75, 0.5])


def test_spectrum_hook_titles_the_png_with_recipe_and_run(tmp_path, monkeypatch):
    from rankssl.mm import diagnostics, plots

    seen = {}
    real = plots.spectrum_figure
    monkeypatch.setattr(plots, "spectrum_figure", lambda spectra, title="": seen.setdefault("title", title) and
                        real(spectra, title))
    metric = diagnostics.EffectiveRank.__new__(diagnostics.EffectiveRank)
    metric.last_spectrum = np.array([3.0, 1.0])
    hook = diagnostics.SpectrumHook()
    monkeypatch.setattr(diagnostics, "_find_effective_rank", lambda runner: metric)
    runner = SimpleNamespace(rank=0, epoch=3, work_dir=str(tmp_path / "myrun"), timestamp="20261206_010203",
                             cfg=SimpleNamespace(filename="/x/hydra_smallcnn_1xb256-50e_digits.py"))
    (tmp_path / "myrun").mkdir()
    hook.after_val_epoch(runner)
    assert seen["title"] == "hydra_smallcnn_1xb256-50e_digits\nrun myrun/20261206_010203"
    assert (tmp_path / "myrun" / "spectrum.png").stat().st_size > 0


def test_analyze_heatmaps_have_axis_and_colour_bar_labels():
    from rankssl.mm.analyze import heatmap_figure

    fig = heatmap_figure(np.eye(3), ["0", "1", "2"], ["0", "1", "2"], "fraction of open gate dimensions",
                         axis_labels=("class b of the pair", "class a of the pair"), colour_label="fraction open")
    ax, bar = fig.axes
    assert ax.get_xlabel() == "class b of the pair" and ax.get_ylabel() == "class a of the pair"
    assert ax.get_title() == "fraction of open gate dimensions" and bar.get_ylabel() == "fraction open"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2"]
