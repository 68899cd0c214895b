"""``rankssl analyze CHECKPOINT``: Hydra's class relationships read from a trained feature filter.

For every unordered pair of (a chosen subset of) classes, the gate vector g(a, b) of
the checkpoint's :class:`~rankssl.models.FeatureFilter`; a dimension is *active* for
a pair where g > threshold. Two pairs that open the same dimensions are compared in the
same sub-space, so the Jaccard overlap of their active dimensions measures how related
the trained model considers them (Wu et al., arXiv:2410.18200, claim the filter
"discovers class relationships"; this makes the claim inspectable).

Written to the output folder:

- ``pair_gates.npz``: ``classes``, ``class_names``, ``pairs`` (P, 2), ``gates`` (P, D),
  ``active`` (P, D), ``overlap`` (P, P), ``open_fraction`` (K, K), ``mean_gate`` (K, K);
- ``pair_gates.csv``: one row per pair: classes, names, open fraction, mean gate, g_0..g_{D-1};
- ``pair_overlap.csv``: the (P, P) overlap matrix with pair names;
- ``open_fraction.png``: (K, K) heatmap of the fraction of open dimensions per pair,
  and ``pair_overlap.png``: (P, P) heatmap of the overlaps, both with class names.

The filter's sizes come from the checkpoint's state dict; its gate mode and class names
from the config and dataset metadata mmengine stores in the checkpoint's ``meta`` (or
the ``--mode`` / ``--class-names`` options).
"""

from __future__ import annotations

import argparse
import csv
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from rankssl.mm.checkpoint import load_checkpoint_file
from rankssl.models.feature_filter import FeatureFilter, class_pair_gates

__all__ = ["add_analyze_arguments", "analyze_checkpoint", "load_feature_filter", "main", "run_analyze"]

_EMBEDDING = "feature_filter.class_embedding.weight"


def _state_dict(checkpoint: Any) -> Dict[str, torch.Tensor]:
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        return checkpoint["state_dict"]
    if isinstance(checkpoint, dict):
        return checkpoint
    raise ValueError(f"Expected a checkpoint dict (with 'state_dict'), got {type(checkpoint).__name__}.")


def _mode_from_meta(meta: dict) -> Optional[str]:
    text = meta.get("cfg") if isinstance(meta, dict) else None
    if not isinstance(text, str):
        return None
    try:
        from mmengine.config import Config

        cfg = Config.fromstring(text, ".py")
        loss = cfg.model.get("loss") or {}
        mode = loss.get("gate_mode") or (loss.get("feature_filter") or {}).get("mode")
        return mode or "fused"
    except Exception:  # an unparsable stored config only costs the default mode
        return None


def _load(path: str) -> Any:
    # CRC-checked (a damaged file is refused, not half-read); mmengine's types allowed only while loading.
    return load_checkpoint_file(path, map_location="cpu")


def load_feature_filter(path: str, mode: Optional[str] = None) -> Dict[str, Any]:
    """Rebuild the feature filter stored in a checkpoint (mmengine's, or a bare state dict).

    Returns ``{"filter": FeatureFilter (eval mode), "class_names": list or None, "prefix": str}``.

    Raises:
        FileNotFoundError / ValueError: no file, or no feature filter in it.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No checkpoint at {path!r}.")
    checkpoint = _load(path)
    state = _state_dict(checkpoint)
    keys = [k for k in state if k.endswith(_EMBEDDING)]
    if not keys:
        raise ValueError(
            f"{path!r} holds no Hydra feature filter (no '*{_EMBEDDING}' entry); analyze needs a checkpoint "
            f"of a Hydra model with gate_mode 'fused' or 'product'."
        )
    prefix = keys[0][: -len("class_embedding.weight")]
    own = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    num_classes, embed_dim = own["class_embedding.weight"].shape
    hidden_dim = own["mlp.2.weight"].shape[0]
    out_dim = own["mlp.5.weight"].shape[0]
    meta = checkpoint.get("meta", {}) if isinstance(checkpoint, dict) else {}
    mode = mode or _mode_from_meta(meta) or "fused"
    filt = FeatureFilter(int(num_classes), int(out_dim), int(embed_dim), int(hidden_dim), mode)
    filt.load_state_dict(own)
    filt.eval()
    names = (meta.get("dataset_meta") or {}).get("classes") if isinstance(meta, dict) else None
    return {"filter": filt, "class_names": list(names) if names else None, "prefix": prefix}


def analyze_checkpoint(
    path: str,
    out_dir: Optional[str] = None,
    classes: Optional[Sequence[int]] = None,
    class_names: Optional[Sequence[str]] = None,
    threshold: float = 0.5,
    mode: Optional[str] = None,
    max_classes: int = 50,
    plot: bool = True,
) -> Dict[str, Any]:
    """Export the class-pair gate table of a checkpoint; returns the table and the written paths.

    Args:
        path: checkpoint file.
        out_dir: output folder (default: ``<checkpoint without extension>_analysis``).
        classes: class indices to analyse (default: all, if at most ``max_classes``).
        class_names: names of all classes (default: the checkpoint's dataset metadata,
            else the indices).
        threshold: a dimension is active where the gate exceeds it.
        mode: gate mode if the checkpoint does not record it.
    """
    loaded = load_feature_filter(path, mode)
    filt: FeatureFilter = loaded["filter"]
    if classes is None:
        if filt.num_classes > max_classes:
            raise ValueError(
                f"The filter has {filt.num_classes} classes ({filt.num_classes * (filt.num_classes + 1) // 2} pairs); "
                f"choose at most {max_classes} with --classes (or raise --max-classes)."
            )
        classes = list(range(filt.num_classes))
    names = list(class_names) if class_names else loaded["class_names"] or [str(i) for i in range(filt.num_classes)]
    if len(names) != filt.num_classes:
        raise ValueError(f"Got {len(names)} class names for a filter of {filt.num_classes} classes.")
    table = class_pair_gates(filt, classes, threshold)
    out_dir = out_dir or os.path.splitext(path)[0] + "_analysis"
    os.makedirs(out_dir, exist_ok=True)
    cls_names = [names[int(c)] for c in table["classes"]]
    pair_names = [f"{names[int(a)]}-{names[int(b)]}" for a, b in table["pairs"].tolist()]
    written = {
        "npz": os.path.join(out_dir, "pair_gates.npz"),
        "csv": os.path.join(out_dir, "pair_gates.csv"),
        "overlap_csv": os.path.join(out_dir, "pair_overlap.csv"),
    }
    np.savez(
        written["npz"], class_names=np.array(cls_names), threshold=threshold, **{k: v.numpy() for k, v in table.items()}
    )
    k_index = {int(c): i for i, c in enumerate(table["classes"])}
    with open(written["csv"], "w", newline="") as f:
        writer = csv.writer(f)
        dim = table["gates"].shape[1]
        writer.writerow(
            ["class_a", "class_b", "name_a", "name_b", "open_fraction", "mean_gate"] + [f"g_{d}" for d in range(dim)]
        )
        for (a, b), gate in zip(table["pairs"].tolist(), table["gates"], strict=True):
            i, j = k_index[a], k_index[b]
            writer.writerow(
                [
                    a,
                    b,
                    names[a],
                    names[b],
                    f"{float(table['open_fraction'][i, j]):.6g}",
                    f"{float(table['mean_gate'][i, j]):.6g}",
                ]
                + [f"{float(g):.6g}" for g in gate]
            )
    with open(written["overlap_csv"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["pair"] + pair_names)
        for name, row in zip(pair_names, table["overlap"], strict=True):
            writer.writerow([name] + [f"{float(v):.6g}" for v in row])
    if plot:
        written["open_fraction_png"] = os.path.join(out_dir, "open_fraction.png")
        written["overlap_png"] = os.path.join(out_dir, "pair_overlap.png")
        _heatmap(
            table["open_fraction"].numpy(),
            cls_names,
            cls_names,
            "fraction of open gate dimensions",
            written["open_fraction_png"],
            axis_labels=("class b of the pair", "class a of the pair"),
            colour_label="fraction of gate dimensions open",
        )
        _heatmap(
            table["overlap"].numpy(),
            pair_names,
            pair_names,
            "overlap of active dimensions (Jaccard)",
            written["overlap_png"],
            axis_labels=("class pair", "class pair"),
            colour_label="Jaccard overlap of the pairs' open dimensions",
        )
    return {"table": table, "class_names": cls_names, "pair_names": pair_names, "files": written}


def _heatmap(
    matrix: np.ndarray,
    rows: List[str],
    cols: List[str],
    title: str,
    path: str,
    axis_labels: tuple = ("", ""),
    colour_label: str = "",
) -> None:
    import matplotlib.pyplot as plt

    fig = heatmap_figure(matrix, rows, cols, title, axis_labels, colour_label)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def heatmap_figure(
    matrix: np.ndarray,
    rows: List[str],
    cols: List[str],
    title: str,
    axis_labels: tuple = ("", ""),
    colour_label: str = "",
):
    """The (len(rows), len(cols)) heatmap in [0, 1]: tick labels (up to 80), axis labels
    ``(x, y)``, a labelled colour bar and a title."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = len(rows)
    size = min(14.0, 3.0 + 0.25 * n)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
    if n <= 80:
        fontsize = max(4, min(9, int(400 / max(n, 1))))
        ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=fontsize)
        ax.set_yticks(range(n), rows, fontsize=fontsize)
    ax.set_title(title)
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label(colour_label)
    fig.tight_layout()
    return fig


def add_analyze_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``rankssl analyze`` (for the CLI to attach to its sub-parser)."""
    parser.add_argument("checkpoint", help="checkpoint of a Hydra model (mmengine .pth or a state dict)")
    parser.add_argument("--out", default=None, help="output folder (default: <checkpoint>_analysis)")
    parser.add_argument(
        "--classes", default=None, help="comma-separated class indices to analyse (default: all, up to --max-classes)"
    )
    parser.add_argument("--class-names", default=None, help="comma-separated names of all classes")
    parser.add_argument("--threshold", type=float, default=0.5, help="gate value above which a dimension is active")
    parser.add_argument(
        "--mode",
        choices=("fused", "product"),
        default=None,
        help="gate mode, if the checkpoint does not record its config",
    )
    parser.add_argument("--max-classes", type=int, default=50)
    parser.add_argument("--no-plot", action="store_true", help="write CSV/NPZ only")
    return parser


def run_analyze(args: argparse.Namespace) -> int:
    """Run ``rankssl analyze`` from parsed arguments; prints the written files."""
    classes = [int(c) for c in args.classes.split(",")] if args.classes else None
    names = [n.strip() for n in args.class_names.split(",")] if args.class_names else None
    result = analyze_checkpoint(
        args.checkpoint, args.out, classes, names, args.threshold, args.mode, args.max_classes, plot=not args.no_plot
    )
    table = result["table"]
    print(
        f"{len(table['pairs'])} class pairs of {len(table['classes'])} classes, gate width {table['gates'].shape[1]}; "
        f"mean open fraction {float(table['open_fraction'].mean()):.3f}"
    )
    for kind, file in result["files"].items():
        print(f"{kind}: {file}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = add_analyze_arguments(argparse.ArgumentParser(prog="rankssl analyze", description=__doc__.split("\n")[0]))
    return run_analyze(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
