"""Hydra's three claims on the embedded digits (10 classes) and two-digit numbers (100 classes).

    python benchmarks/hydra_claims.py --size small     # smoke test: 1 epoch, tiny grid (~2 min)
    python benchmarks/hydra_claims.py                  # the measured size (see RESULTS.md)

Every row trains a shipped two-digit recipe (``recipes/*_two-digits.py``; on the digits
the same recipe with the digits data) through mmengine's Runner with the same SmallCNN,
views, SGD + warm-up + cosine schedule, batch 256 and epochs. Rows:

- ``Hydra``: the authors' SimLAP mode (other-view keys, pair-mean reduction, one partner
  per image by a batch permutation, random batches), temperature 0.1, BatchNorm-ended head;
- ``Hydra, identical pairs``: the same with ``pairing='identical'`` (partner = own class);
- ``Hydra, open gate``: the same with ``gate_mode='open'`` (no filter);
- ``Hydra, warm-up + learned scale``: the same plus the v1 code's filter-only warm-up
  (10% of the epochs) and learned logit scale: do the gates learn then?
- ``SupCon``: pml's ``SupConLoss`` on all views with labels (``LabelledViews``), same head;
- ``SimCLR``, ``GroCo``, ``S2R2`` (label-free) when ``--label-free`` is given.

Learning rates, with issue 13's discipline: every method's lr is chosen from a grid of
four values spaced x2 around its recipe's rate, widened by one value beyond an edge while
the winner sits on it (``protocol_tuning.bracket``), each trained at the reported budget
on four fifths of the training split and scored by kNN on the other fifth (the test split
is never loaded for it); the controls reuse Hydra's choice. Then every row trains on the
full training split with every seed and is scored on the test split: weighted kNN (k=20, T=0.07 and k=200, T=0.1) and a
linear probe on frozen backbone features; effective rank of the backbone and projection
features of the test images; and from Hydra's gates, the class relationships: for every
two classes a != b, the Jaccard overlap of the open dimensions (gate > 0.5) of g(a, a) and
g(b, b), and the mean gate of g(a, b), each scored against "related" (two-digit numbers
that share a digit) as an AUC (0.5 = chance); as a gate-free reference, the same AUC for
the cosine similarity of the class means of the backbone features.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NORMALIZE = (0.2, 0.25)

LABEL_BASED = {
    "Hydra": ("hydra_smallcnn_1xb256-50e_two-digits", {}),
    "SupCon": ("supcon_smallcnn_1xb256-50e_two-digits", {}),
}
CONTROLS = {  # reuse Hydra's lr
    "Hydra, identical pairs": ("hydra_smallcnn_1xb256-50e_two-digits", {"pairing": "identical"}),
    "Hydra, open gate": ("hydra_smallcnn_1xb256-50e_two-digits", {"gate_mode": "open"}),
    "Hydra, warm-up + learned scale": ("hydra_smallcnn_1xb256-50e_two-digits", {"learn_scale": True, "warmup": 0.1}),
}
LABEL_FREE = {  # the recipes' learning rates, the centres of their grids
    "SimCLR": ("simclr_smallcnn_1xb256-50e_two-digits", {}, 0.15),
    "GroCo": ("groco_smallcnn_1xb256-50e_two-digits", {}, 4.5),
    "S2R2": ("s2r2_smallcnn_1xb256-4v-50e_two-digits", {}, 0.45),
}
BASE_LR = 0.15  # the label-based recipes' rate
# grid: learning-rate multipliers of the first grid (empty: no tuning, the recipe's rate);
# max_widen: values added beyond an edge while the winner sits on it.
SIZES = {
    "small": dict(epochs=1, seeds=(0,), grid=(), max_widen=0),
    "quick": dict(epochs=5, seeds=(0,), grid=(), max_widen=0),
    "default": dict(epochs=15, seeds=(0, 1, 2), grid=(0.25, 0.5, 1.0, 2.0), max_widen=2),
}


def load_data(name: str) -> Dict[str, torch.Tensor]:
    from rankssl.mm.digits import make_digits_canvas, make_two_digit_canvas

    data = {}
    for split in ("train", "test"):
        if name == "digits":
            images, labels = make_digits_canvas(split)
        else:
            images, labels = make_two_digit_canvas(split, per_class=30 if split == "train" else 10)
        data[f"{split}_x"] = (torch.from_numpy(np.array(images, dtype=np.float32) / 255.0).unsqueeze(1)
                              - NORMALIZE[0]) / NORMALIZE[1]
        data[f"{split}_y"] = torch.from_numpy(np.array(labels))
    data["num_classes"] = 10 if name == "digits" else 100
    return data


def configure(recipe: str, dataset: str, overrides: dict, lr: float, epochs: int, seed: int, work_dir: str,
              train_indices: Optional[Sequence[int]]):
    from rankssl.cli import load_config, set_epochs

    cfg = load_config(recipe, work_dir)
    set_epochs(cfg, epochs)
    cfg.randomness = dict(seed=seed, deterministic=False)
    cfg.optim_wrapper.optimizer.lr = lr
    overrides = dict(overrides)
    warmup = overrides.pop("warmup", 0)
    if cfg.model.type == "Hydra":
        cfg.model.loss.update(overrides, filter_warmup_epochs=int(round(warmup * epochs)))
        if dataset == "digits":
            cfg.model.loss.num_classes = 10
    train_set = cfg.train_dataloader.dataset
    if dataset == "digits":
        train_set.type = "DigitsCanvas"
        train_set.pop("per_class", None)
    if train_indices is not None:
        train_set.indices = list(train_indices)
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=epochs, max_keep_ckpts=1)
    cfg.default_hooks.logger.interval = 50
    cfg.custom_hooks = [dict(type="FlushDenormalHook")]
    return cfg


def train(recipe, dataset, overrides, lr, epochs, seed, out, train_indices=None):
    from mmengine.runner import Runner

    tag = "_".join(f"{k}{v}" for k, v in overrides.items())
    work_dir = os.path.join(out, "runs", f"{dataset}_{recipe.split('_')[0]}_{tag}_lr{lr:g}_s{seed}"
                            + ("_sweep" if train_indices is not None else ""))
    cfg = configure(recipe, dataset, overrides, lr, epochs, seed, work_dir, train_indices)
    runner = Runner.from_cfg(cfg)
    start = time.perf_counter()
    runner.train()
    return runner.model, time.perf_counter() - start, work_dir


@torch.no_grad()
def embed(model, x: torch.Tensor, batch: int = 500):
    model.eval()
    feats, projs = [], []
    for i in range(0, len(x), batch):
        f = model.extract_feat(x[i : i + batch])
        feats.append(f)
        projs.append(model.neck(f))
    model.train()
    return torch.cat(feats), torch.cat(projs)


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a positive outranks a negative (ties count half): Mann-Whitney U / (n+ n-)."""
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def related_matrix(num_classes: int) -> np.ndarray:
    from rankssl.mm.digits import related_class_pairs

    if num_classes == 100:
        return related_class_pairs()
    # Ten digits: no relation is defined by construction; report none.
    return np.zeros((num_classes, num_classes), dtype=bool)


def relationships(model, feats: torch.Tensor, labels: torch.Tensor, num_classes: int,
                  save: Optional[str] = None) -> Dict[str, float]:
    from rankssl.models import active_dimension_overlap

    related = related_matrix(num_classes)
    iu = np.triu_indices(num_classes, 1)
    out: Dict[str, float] = {}
    means = torch.stack([feats[labels == c].mean(0) for c in range(num_classes)])
    cos = (F.normalize(means, dim=1) @ F.normalize(means, dim=1).T).numpy()
    if related.any():
        out["auc_class_mean_cosine"] = auc(cos[iu], related[iu])
    filt = getattr(getattr(model, "loss_module", None), "feature_filter", None)
    if filt is None or filt.mode == "open":
        return out
    gates = filt.pair_gate_matrix().cpu()  # (C, C, D)
    own = gates[torch.arange(num_classes), torch.arange(num_classes)]  # g(a, a)
    jaccard = active_dimension_overlap(own > 0.5).numpy()
    out.update(gate_mean=float(gates.mean()), gate_std_over_pairs=float(gates.std(dim=(0, 1)).mean()),
               gate_q05=float(gates.quantile(0.05)), gate_q95=float(gates.quantile(0.95)),
               open_fraction=float((gates > 0.5).float().mean()))
    if related.any():
        out["auc_jaccard_own_gates"] = auc(jaccard[iu], related[iu])
        out["auc_pair_mean_gate"] = auc(gates.mean(dim=2).numpy()[iu], related[iu])
        out["jaccard_related"] = float(jaccard[iu][related[iu]].mean())
        out["jaccard_unrelated"] = float(jaccard[iu][~related[iu]].mean())
        if save:
            np.savez(save, jaccard=jaccard[iu], related=related[iu], class_mean_cosine=cos[iu])
    return out


def score(model, data, probe: bool = True, save: Optional[str] = None) -> Dict[str, float]:
    from quality import knn_accuracy, linear_probe_accuracy

    from rankssl.ops import effective_rank

    train_f, _ = embed(model, data["train_x"])
    test_f, test_p = embed(model, data["test_x"])
    r = {"knn20": knn_accuracy(train_f, data["train_y"], test_f, data["test_y"], 20, 0.07),
         "knn200": knn_accuracy(train_f, data["train_y"], test_f, data["test_y"], 200, 0.1),
         "erank_backbone": effective_rank(test_f), "erank_projection": effective_rank(test_p)}
    if probe:
        r["linear"] = linear_probe_accuracy(train_f, data["train_y"], test_f, data["test_y"])
    r.update(relationships(model, test_f, data["test_y"], data["num_classes"], save))
    return r


def baselines(data: Dict[str, torch.Tensor], seeds: Sequence[int] = (0, 1, 2)) -> Dict[str, Dict[str, float]]:
    """Raw pixels and a random-init SmallCNN on the (already normalised) data, scored as the trained rows."""
    from protocol_training import baseline_rows

    from rankssl.ops import effective_rank

    return baseline_rows(data, seeds, erank=effective_rank)


def cached(out: str, key: str, compute) -> dict:
    """The result stored under ``out/runs/KEY.json``, or ``compute()`` stored there (``protocol.RunStore``).

    One file per training run makes the benchmark resumable and lets several processes
    share an output folder (each given other ``--rows``).
    """
    from protocol import RunStore

    return RunStore(os.path.join(out, "runs")).cached(key, compute)


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


def sweep(name, recipe, dataset, overrides, data, size, base_lr, out, log) -> dict:
    """Bracketed lr search on a validation fifth: {'lr', 'scores': {lr: val kNN}, 'position'}."""
    from protocol_tuning import bracket
    from quality import knn_accuracy, validation_indices

    train_idx, val_idx = validation_indices(data["train_y"])

    def score(lr: float) -> float:
        def run() -> dict:
            model, seconds, _ = train(recipe, dataset, overrides, lr, size["epochs"], 0, out, train_idx)
            f, _ = embed(model, data["train_x"])
            acc = knn_accuracy(f[train_idx], data["train_y"][train_idx], f[val_idx], data["train_y"][val_idx],
                               20, 0.07)
            return {"val_knn20": acc, "seconds": seconds}

        acc = cached(out, f"{dataset}_{slug(name)}_tune_lr{lr:g}_e{size['epochs']}", run)["val_knn20"]
        log(f"  tune {dataset} {name} lr={lr:g}: val kNN {100 * acc:.1f}")
        return acc

    best, scores, position = bracket(score, [base_lr * m for m in size["grid"]], size["max_widen"])
    return {"lr": best, "scores": {f"{lr:g}": scores[lr] for lr in sorted(scores)}, "position": position}


def collect(out: str, size_name: str) -> dict:
    """Every finished run of ``size_name`` under ``out/runs``, as {dataset: {'rows', 'tuning'}}."""
    results: dict = {}
    runs_dir = os.path.join(out, "runs")
    for file in sorted(os.listdir(runs_dir)) if os.path.isdir(runs_dir) else []:
        if not file.endswith(".json"):
            continue
        with open(os.path.join(runs_dir, file)) as handle:
            record = json.load(handle)
        if record.get("size") != size_name or record.get("kind") != "final":
            continue
        res = results.setdefault(record["dataset"], {"rows": {}, "tuning": {}})
        res["rows"].setdefault(record["row"], []).append(record["result"])
        if record.get("tuning"):
            res["tuning"][record["row"]] = record["tuning"]
    order = [*LABEL_BASED, *CONTROLS, *LABEL_FREE]
    for res in results.values():
        for runs in res["rows"].values():
            runs.sort(key=lambda r: r["seed"])
        res["rows"] = {name: res["rows"][name] for name in order if name in res["rows"]}
    return results


def claims(rows: Dict[str, List[dict]], dataset: str) -> List[str]:
    """Hydra's three claims on one data set as markdown rows, with issue 13's verdict rule
    (``protocol_claims.verdict``: a gap beyond the seeds' noise sqrt(std_a^2 + std_b^2))."""
    from protocol_claims import verdict

    def values(row: str, key: str) -> Optional[List[float]]:
        runs = rows.get(row, [])
        return [r[key] for r in runs] if runs and all(key in r for r in runs) else None

    def compare(a: str, b: str, key: str, percent: bool = True) -> Tuple[str, str]:
        va, vb = values(a, key), values(b, key)
        if va is None or vb is None:
            return f"not run: {a if va is None else b}", "-"
        k = 100 if percent else 1
        return (f"{a} {_mean_std([k * v for v in va])} vs {b} {_mean_std([k * v for v in vb])}",
                verdict(va, vb))

    out = [f"Hydra's claims on `{dataset}` (verdict: 'yes' when the gap exceeds the seeds' noise, 'no' when it "
           "is below minus the noise, else 'within noise')", "", "| claim | figure here | holds here? |",
           "|---|---|---|"]
    for peer in ("SupCon", "SimCLR", "GroCo", "S2R2"):
        if peer in rows:
            text, holds = compare("Hydra", peer, "knn20")
            out.append(f"| 1. representation: Hydra's kNN k=20 above {peer}'s | {text} | {holds} |")
    for key, where in (("erank_backbone", "backbone"), ("erank_projection", "projection")):
        text, holds = compare("Hydra", "SupCon", key, percent=False)
        out.append(f"| 2. less dimensional collapse: Hydra's effective rank ({where}) above SupCon's | {text} | "
                   f"{holds} |")
    for row in ("Hydra", "Hydra, warm-up + learned scale", "Hydra, identical pairs"):
        aucs = values(row, "auc_jaccard_own_gates")
        if aucs is None:
            continue
        text = f"{row}: AUC {_mean_std(aucs, 3)} (0.5 = chance)"
        cosine = values(row, "auc_class_mean_cosine")
        if cosine is not None:
            text += f"; gate-free reference, class-mean cosine of the same backbone: {_mean_std(cosine, 3)}"
        spread = float(np.std(aucs, ddof=1)) if len(aucs) > 1 else 0.0
        mean = float(np.mean(aucs))
        holds = "yes" if mean - 0.5 > spread else ("no" if mean - 0.5 < -spread else "within noise")
        if len(aucs) < 2:
            holds += " (1 seed: noise unknown)"
        claim = "3. class relationships: gates of related classes (shared digit) overlap more"
        if row == "Hydra, identical pairs":
            claim = "control: the same with every anchor paired with its own class"
        out.append(f"| {claim} | {text} | {holds} |")
    return out + [""]


def _mean_std(values, digits: int = 1) -> str:
    if len(values) > 1:
        return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"
    return f"{values[0]:.{digits}f}"


def _work_dir(run: dict, out: str) -> str:
    """A run's work directory: as recorded (relative to the checkout that trained it), else under ``out/runs``."""
    recorded = os.path.join(ROOT, run["work_dir"])
    return recorded if os.path.isdir(recorded) else os.path.join(out, "runs", os.path.basename(run["work_dir"]))


def summarize(results: dict, out: str, size_name: str) -> str:
    """Markdown tables (one per data set), the related/unrelated overlap histogram and the
    `rankssl analyze` plot of the two-digit Hydra checkpoint."""
    import glob

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = SIZES[size_name]
    lines = []
    for dataset, res in results.items():
        seeds = sorted({r["seed"] for runs in res["rows"].values() for r in runs})
        lines += [f"**{dataset}** ({size['epochs']} epochs, batch 256, seeds {seeds}; mean ± std over seeds; "
                  "test split)", "",
                  "| row | lr | kNN k=20 | kNN k=200 | linear | erank backbone | erank projection "
                  "| gates q05-q95 | AUC Jaccard(g(a,a), g(b,b)) | AUC mean g(a,b) | AUC class-mean cosine |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, runs in res["rows"].items():
            r = runs[0]
            pct = lambda k: _mean_std([100 * x[k] for x in runs]) if k in r else "-"  # noqa: E731
            val = lambda k: f"{np.mean([x[k] for x in runs]):.2f}" if k in r else "-"  # noqa: E731
            gates = f"{r['gate_q05']:.2f}-{r['gate_q95']:.2f}" if "gate_q05" in r else "-"
            lines.append(f"| {name} | {r['lr']:g} | {pct('knn20')} | {pct('knn200')} | {pct('linear')} | "
                         f"{np.mean([x['erank_backbone'] for x in runs]):.1f} | "
                         f"{np.mean([x['erank_projection'] for x in runs]):.1f} | {gates} | "
                         f"{val('auc_jaccard_own_gates')} | {val('auc_pair_mean_gate')} | {val('auc_class_mean_cosine')} |")
        for name, b in res.get("baselines", {}).items():
            erank = f"{b['erank_backbone']:.1f}" if "erank_backbone" in b else "-"
            lines.append(f"| {name} | - | {100 * b['knn20']:.1f} | {100 * b['knn200']:.1f} | {100 * b['linear']:.1f} | "
                         f"{erank} | - | - | - | - | - |")
        lines.append("")
        if res.get("tuning"):
            lines += ["Learning-rate selection (val kNN k=20 on a fifth of the training split, seed 0; "
                      "**bold** = chosen):", "", "| row | lr: val kNN | where the winner fell |", "|---|---|---|"]
            for name, tuning in res["tuning"].items():
                grid = ", ".join((f"**{lr}: {100 * acc:.1f}**" if float(lr) == tuning["lr"] else
                                  f"{lr}: {100 * acc:.1f}") for lr, acc in tuning["scores"].items())
                lines.append(f"| {name} | {grid} | {tuning['position']} |")
            lines.append("")
    two = results.get("two-digits", {}).get("rows", {})
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for name in two:
        npz = os.path.join(_work_dir(two[name][0], out), "relations.npz")
        if os.path.exists(npz) and "jaccard" in np.load(npz).files and name.startswith("Hydra"):
            stored = np.load(npz)
            for flag, style in ((True, "-"), (False, ":")):
                ax.hist(stored["jaccard"][stored["related"] == flag], bins=30, range=(0, 1), histtype="step",
                        linestyle=style, density=True, label=f"{name}, {'related' if flag else 'unrelated'}")
    ax.set_xlabel("Jaccard overlap of open dimensions of g(a, a) and g(b, b)")
    ax.set_ylabel("density over class pairs")
    ax.set_title("two-digit numbers: related (shared digit) vs unrelated classes")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "gate_overlap_related.png"), dpi=100)
    plt.close(fig)
    if "Hydra" in two:
        checkpoints = sorted(glob.glob(os.path.join(_work_dir(two["Hydra"][0], out), "epoch_*.pth")))
        if checkpoints:
            from rankssl.mm.analyze import analyze_checkpoint

            analyze_checkpoint(checkpoints[-1], os.path.join(out, "hydra_analysis"),
                               classes=[0, 1, 2, 10, 11, 12, 20, 21, 22],
                               class_names=[f"{i:02d}" for i in range(100)])
    for dataset, res in results.items():
        lines += claims(res["rows"], dataset)
    table = "\n".join(lines)
    with open(os.path.join(out, f"table_{size_name}.md"), "w") as handle:
        handle.write(table + "\n")
    return table


def main(argv=None) -> None:
    torch.set_flush_denormal(True)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="default", choices=list(SIZES))
    parser.add_argument("--datasets", nargs="+", default=["two-digits", "digits"], choices=["two-digits", "digits"])
    parser.add_argument("--label-free", action="store_true", help="also SimCLR, GroCo, S2R2 (their lr tuned alike)")
    parser.add_argument("--rows", nargs="*", default=None, help="only these rows (names)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (run one process per core)")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "hydra_claims"))
    parser.add_argument("--summarize-only", action="store_true", help="only rebuild tables and plots")
    args = parser.parse_args(argv)
    size = SIZES[args.size]
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    log = lambda m: print(m, flush=True)  # noqa: E731
    for dataset in [] if args.summarize_only else args.datasets:
        data = load_data(dataset)
        rows = {name: (recipe, ov, BASE_LR) for name, (recipe, ov) in {**LABEL_BASED, **CONTROLS}.items()}
        if args.label_free:
            rows.update(LABEL_FREE)
        for name, (recipe, overrides, base_lr) in rows.items():
            if args.rows and name not in args.rows:
                continue
            tuning = None
            if name in CONTROLS:  # Hydra's choice (tuned here if Hydra's row has not run yet)
                recipe_h, overrides_h = LABEL_BASED["Hydra"]
                tuning_h = sweep("Hydra", recipe_h, dataset, overrides_h, data, size, BASE_LR, args.out, log) \
                    if size["grid"] else None
                lr = tuning_h["lr"] if tuning_h else BASE_LR
            elif size["grid"]:
                tuning = sweep(name, recipe, dataset, overrides, data, size, base_lr, args.out, log)
                lr = tuning["lr"]
            else:
                lr = base_lr
            for seed in size["seeds"]:
                def run() -> dict:
                    model, seconds, work_dir = train(recipe, dataset, overrides, lr, size["epochs"], seed, args.out)
                    r = dict(score(model, data, save=os.path.join(work_dir, "relations.npz")), seed=seed,
                             seconds=seconds, lr=lr, work_dir=os.path.relpath(work_dir, ROOT))
                    return {"size": args.size, "kind": "final", "dataset": dataset, "row": name,
                            "tuning": tuning, "result": r}

                r = cached(args.out, f"{dataset}_{slug(name)}_final_lr{lr:g}_s{seed}_e{size['epochs']}", run)["result"]
                log(f"{dataset} | {name} | " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                                         for k, v in r.items()))
    results = collect(args.out, args.size)
    for dataset, res in results.items():
        res["baselines"] = cached(args.out, f"{dataset}_baselines", lambda: baselines(load_data(dataset)))
    with open(os.path.join(args.out, f"results_{args.size}.json"), "w") as handle:
        json.dump(results, handle, indent=1)
    print(summarize(results, args.out, args.size))


if __name__ == "__main__":
    main()
