"""The training curves a run leaves in its work dir: ``loss.png`` and ``metrics.png``.

Each figure reads on its own: its title names the recipe and the run, the learning rate
is drawn beside the loss, accuracies are on a 0-100 % axis with the known baselines
(raw pixels, random initialisation) as horizontal lines, and the epoch axis spans the
whole run, so one validation point sits at its place instead of filling the plot.

Example:
    >>> import os, tempfile
    >>> from rankssl.mm.plots import plot_loss, plot_metrics
    >>> out = tempfile.mkdtemp()
    >>> train = [{"iter": i, "epoch": 1 + i // 5, "loss": 1.0 / i, "lr": 0.1 * i} for i in range(1, 11)]
    >>> plot_loss(train, os.path.join(out, "loss.png"), title="recipe - run")
    >>> val = [{"epoch": 2, "knn/top1": 61.0}]
    >>> plot_metrics(val, os.path.join(out, "metrics.png"), title="recipe - run", max_epochs=10,
    ...              baselines={"knn/top1 raw pixels": 41.1})
    >>> sorted(os.listdir(out))
    ['loss.png', 'metrics.png']
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

__all__ = ["loss_figure", "metrics_figure", "spectrum_figure", "plot_loss", "plot_metrics", "is_percent_metric"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def is_percent_metric(key: str) -> bool:
    """Accuracy-like metrics (``knn/top1``, ``linear/top5``, ``.../accuracy``) are percentages."""
    tail = key.rsplit("/", 1)[-1]
    return tail.startswith("top") or "accuracy" in tail


def plot_loss(train: Sequence[Dict[str, float]], path: str, title: str = "") -> None:
    """Save :func:`loss_figure` to ``path``."""
    _save(loss_figure(train, title), path)


def plot_metrics(
    val: Sequence[Dict[str, float]],
    path: str,
    title: str = "",
    max_epochs: Optional[int] = None,
    baselines: Optional[Dict[str, float]] = None,
) -> None:
    """Save :func:`metrics_figure` to ``path`` (nothing when there is no metric)."""
    fig = metrics_figure(val, title, max_epochs, baselines)
    if fig is not None:
        _save(fig, path)


def _save(fig, path: str) -> None:
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)


def loss_figure(train: Sequence[Dict[str, float]], title: str = ""):
    """Training loss (left) and learning rate (right) against the iteration; a matplotlib figure."""
    plt = _pyplot()
    iters = [r["iter"] for r in train]
    has_lr = any("lr" in r for r in train)
    fig, axes = plt.subplots(1, 2 if has_lr else 1, figsize=(10 if has_lr else 6, 3.8), squeeze=False)
    ax = axes[0][0]
    ax.plot(iters, [r.get("loss", float("nan")) for r in train], lw=1)
    ax.set_xlabel("iteration")
    ax.set_ylabel("training loss")
    ax.set_title("loss")
    _pad_single_point(ax, iters)
    if has_lr:
        ax = axes[0][1]
        ax.plot(iters, [r.get("lr", float("nan")) for r in train], lw=1, color="tab:orange")
        ax.set_xlabel("iteration")
        ax.set_ylabel("learning rate")
        ax.set_title("learning rate")
        ax.set_ylim(bottom=0)
        _pad_single_point(ax, iters)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def metrics_figure(
    val: Sequence[Dict[str, float]],
    title: str = "",
    max_epochs: Optional[int] = None,
    baselines: Optional[Dict[str, float]] = None,
):
    """Validation metrics against the epoch; accuracies on 0-100 % with baseline lines.

    Returns a matplotlib figure, or ``None`` when ``val`` holds no metric.

    ``baselines`` maps ``"<metric> <name>"`` (e.g. ``"knn/top1 raw pixels"``) to a value
    drawn as a dashed horizontal line on that metric's panel.
    """
    keys = sorted({k for r in val for k in r if k not in ("iter", "epoch")})
    if not keys:
        return None
    plt = _pyplot()
    percent = [k for k in keys if is_percent_metric(k)]
    other = [k for k in keys if not is_percent_metric(k)]
    panels: List[List[str]] = [group for group in (percent, other) if group]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 3.8), squeeze=False)
    epochs = [r["epoch"] for r in val]
    right = max([max_epochs or 0] + epochs) or 1
    for ax, group in zip(axes[0], panels, strict=True):
        for key in group:
            ax.plot([r["epoch"] for r in val if key in r], [r[key] for r in val if key in r], marker="o", label=key)
        for name, value in sorted((baselines or {}).items()):
            metric = name.split(" ", 1)[0]
            if metric in group:
                ax.axhline(value, ls="--", lw=1, color="gray")
                ax.annotate(
                    f"{name.split(' ', 1)[1] if ' ' in name else name} {value:.1f}",
                    (0, value),
                    xytext=(2, 2),
                    textcoords="offset points",
                    fontsize=7,
                    color="gray",
                )
        ax.set_xlim(0, right * 1.03)
        ax.set_xlabel("epoch")
        if group is percent:
            ax.set_ylim(0, 100)
            ax.set_ylabel("accuracy (%)")
        else:
            if min(r[k] for r in val for k in group if k in r) >= 0:
                ax.set_ylim(bottom=0)
            ax.set_ylabel("value")
        ax.legend(fontsize=8, loc="best")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _pad_single_point(ax, xs: Sequence[float]) -> None:
    if len(set(xs)) == 1:  # matplotlib would span x +- 0.1 around a single point
        ax.set_xlim(0, xs[0] * 2 or 1)


def spectrum_figure(spectra: Sequence[tuple], title: str = ""):
    """Singular spectra of the evaluated features, one curve per validation.

    Args:
        spectra: ``(epoch, singular_values (D,), effective_rank)`` per validation, oldest first;
            the latest curve is drawn darkest.
        title: the recipe and the run (a second title line under the figure's subject).
    """
    import numpy as np

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for i, (epoch, s, erank) in enumerate(spectra):
        s = np.asarray(s, dtype=float)
        shade = 0.25 + 0.75 * (i + 1) / len(spectra)
        ax.semilogy(
            np.arange(1, len(s) + 1),
            s / max(s[0], 1e-30),
            color=(0.1, 0.2, 0.6, shade),
            label=f"epoch {epoch}: erank {erank:.1f}",
        )
    ax.set_xlabel("singular value index k")
    ax.set_ylabel("s_k / s_1 (log scale)")
    ax.set_title("singular spectrum of the evaluated features", fontsize=9)
    if spectra:
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return fig
