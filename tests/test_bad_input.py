"""Bad input to every public entry point gets a clear error: one table, one row per case.

Each row is ``bad(covers, id, call, error, *words)``: calling ``call()`` must raise
``error`` whose message contains every one of ``words`` (case-insensitive). ``covers``
names the public object the row exercises; ``test_every_public_callable_has_a_row``
fails when a name in ``rankssl.ops.__all__``, ``rankssl.losses.__all__`` or
``rankssl.pml.__all__`` has no row (the ``rankssl`` command's rows are here too), so a new public function must come with its rows.

To add rows: append ``bad(...)`` entries to the list of your area (or add a list and
put it in ``CASES``). Keep inputs tiny: the whole module runs in seconds.

The second half checks inputs that are odd but valid get the correct result (huge
magnitudes, int8 labels, Python lists, raw dot products, tiny kNN temperatures).
"""

from __future__ import annotations

import math
import os
from typing import Callable, List, NamedTuple, Tuple

import numpy as np
import pytest
import torch

import rankssl.losses as L
import rankssl.ops as O
import rankssl.pml as P
from rankssl.losses.hydra_base import PartnerDraw
from rankssl.losses.pair_sampling import draw_partners, sample_pair_labels
from rankssl.cli import CommandError
from rankssl.cli import main as rankssl_main
from rankssl.mm.metrics import KNNAccuracy
from rankssl.mm.optimizers import LARS
from rankssl.mm.samplers import MPerClassSampler


class Bad(NamedTuple):
    covers: str
    id: str
    call: Callable[[], object]
    error: type
    words: Tuple[str, ...]


def bad(covers: str, id: str, call: Callable[[], object], error: type, *words: str) -> Bad:
    return Bad(covers, id, call, error, words)


def nan_at(shape, row, col=0, value=float("nan")):
    x = torch.randn(*shape)
    x[row, col] = value
    return x


def meta(*shape):
    return torch.empty(*shape, device="meta")


def _with_env(**values):
    """Run a call with environment variables set, then restore them."""
    def run(call):
        saved = {key: os.environ.get(key) for key in values}
        os.environ.update(values)
        try:
            return call()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    return run


def views(n=2, b=8, d=4):
    return [torch.randn(b, d) for _ in range(n)]


def _with(module, **settings):
    """``module`` after setting attributes on it (a setting changed after construction)."""
    for name, value in settings.items():
        setattr(module, name, value)
    return module


LABELS8 = torch.arange(4).repeat(2)  # 8 rows, 4 classes


# --------------------------------------------------------------------------- ops
OPS: List[Bad] = [
    bad("soft_sort", "nan", lambda: O.soft_sort(nan_at((4, 5), 2)), ValueError, "x", "non-finite", "row 2"),
    bad("soft_sort", "inf", lambda: O.soft_sort(nan_at((4, 5), 3, 1, float("inf"))), ValueError, "row 3", "column 1"),
    bad("soft_sort", "meta", lambda: O.soft_sort(meta(4, 5)), ValueError, "x", "meta device"),
    bad("soft_sort", "list", lambda: O.soft_sort([1.0, 2.0]), TypeError, "x", "torch.Tensor"),
    bad("soft_sort", "int", lambda: O.soft_sort(torch.arange(6).view(2, 3)), TypeError, "x", "floating-point"),
    bad("soft_sort", "n=1", lambda: O.soft_sort(torch.randn(4, 1)), ValueError, "n >= 2"),
    bad("soft_sort", "typo", lambda: O.soft_sort(torch.randn(2, 3), network="bitnic"), ValueError, "sorting network", "did you mean 'bitonic'"),
    bad("soft_sort", "steep-inf", lambda: O.soft_sort(torch.randn(2, 3), steepness=math.inf), ValueError, "steepness", "finite"),
    bad("soft_sort", "steep-bool", lambda: O.soft_sort(torch.randn(2, 3), steepness=True), TypeError, "steepness"),
    bad("soft_sort", "relax-typo", lambda: O.soft_sort(torch.randn(2, 3), distribution="cauchi"), ValueError, "relaxation", "'cauchy'"),
    bad("soft_permutation_matmul", "v-batch", lambda: O.soft_permutation_matmul(torch.randn(4, 3), torch.ones(5, 3, 1)), ValueError, "v must have shape", "(4, 'n', 'm')", "(5, 3, 1)"),
    bad("soft_permutation_matmul", "v-rows", lambda: O.soft_permutation_matmul(torch.randn(4, 3), torch.ones(4, 1)), ValueError, "v must have shape", "n=3"),
    bad("soft_permutation_matmul", "v-nan", lambda: O.soft_permutation_matmul(torch.randn(4, 3), nan_at((3, 1), 1)), ValueError, "v", "row 1"),
    bad("soft_permutation_matmul", "x-nan", lambda: O.soft_permutation_matmul(nan_at((4, 3), 1), torch.ones(3, 1)), ValueError, "x", "row 1"),
    bad("soft_permutation_matmul", "transpose-int", lambda: O.soft_permutation_matmul(torch.randn(4, 3), torch.ones(3, 1), transpose=1), TypeError, "transpose", "True or False"),
    bad("soft_permutation_matmul", "v-list", lambda: O.soft_permutation_matmul(torch.randn(4, 3), [[1.0]] * 3), TypeError, "v", "torch.Tensor"),
    bad("DiffSortNet", "network", lambda: O.DiffSortNet("bubble", 4), ValueError, "sorting network", "odd_even"),
    bad("DiffSortNet", "size-1", lambda: O.DiffSortNet("odd_even", 1), ValueError, "size", ">= 2"),
    bad("DiffSortNet", "size-float", lambda: O.DiffSortNet("odd_even", 4.0), TypeError, "size"),
    bad("DiffSortNet", "shape", lambda: O.DiffSortNet("odd_even", 4)(torch.randn(2, 5)), ValueError, "vectors", "(batch, 4)"),
    bad("DiffSortNet", "list", lambda: O.DiffSortNet("odd_even", 4)([1.0, 2.0, 3.0, 4.0]), TypeError, "vectors", "torch.Tensor"),
    bad("DiffSortNet", "nan", lambda: O.DiffSortNet("odd_even", 3)(nan_at((2, 3), 1)), ValueError, "row 1"),
    bad("DiffSortNet", "relax", lambda: O.DiffSortNet("odd_even", 3, distribution="cauchi")(torch.randn(2, 3)), ValueError, "distribution", "cauchy"),
    bad("DiffSortNetwork", "size-bool", lambda: O.DiffSortNetwork("odd_even", True), TypeError, "size"),
    bad("DiffSortNetwork", "size-1", lambda: O.DiffSortNetwork("odd_even", 1), ValueError, "size", ">= 2"),
    bad("DiffSortNetwork", "nan", lambda: O.DiffSortNetwork("odd_even", 3)(nan_at((2, 3), 1)), ValueError, "row 1"),
    bad("get_network", "n-1", lambda: O.get_network("odd_even", 1), ValueError, ">= 2"),
    bad("get_network", "unknown", lambda: O.get_network("shell", 4), ValueError, "Unknown sorting network", "odd_even"),
    # P for 100000 rows of 256 values with gradients: about 2.7 TB; refused before any work.
    bad("soft_sort", "too-big", lambda: O.soft_sort(torch.randn(1, 256, requires_grad=True).expand(100000, 256)), ValueError, "GiB", "return_permutation=False", "soft_permutation_matmul", "bitonic"),
    # P for one row of 4096 values without gradients: 192 MiB, but 2^36 entry updates (over an hour on a CPU).
    bad("soft_sort", "too-slow", lambda: O.soft_sort(torch.randn(1, 4096)), ValueError, "matrix-entry updates", "MAX_CPU_PERMUTATION_WORK", "return_permutation=False", "78 layers instead of 4096"),
    bad("soft_permutation_matmul", "kernels-env", lambda: _with_env(RANKSSL_KERNELS="gpu")(lambda: O.soft_permutation_matmul(torch.randn(2, 3), torch.ones(3, 1))), ValueError, "RANKSSL_KERNELS", "auto, torch, cpu, triton", "'gpu'"),
    bad("average_precision", "nan", lambda: O.average_precision(nan_at((3, 5), 2, 4), torch.ones(3, 5, dtype=torch.bool)), ValueError, "scores", "query 2", "column 4"),
    bad("average_precision", "nan-sorting", lambda: O.average_precision(nan_at((3, 5), 1), torch.ones(3, 5, dtype=torch.bool), estimator="sorting"), ValueError, "scores", "query 1"),
    bad("average_precision", "range-nan", lambda: O.average_precision(torch.randn(2, 3), torch.ones(2, 3, dtype=torch.bool), score_range=(math.nan, 1.0)), ValueError, "score_range"),
    bad("average_precision", "range-str", lambda: O.average_precision(torch.randn(2, 3), torch.ones(2, 3, dtype=torch.bool), score_range="wide"), ValueError, "score_range", "'batch'"),
    bad("average_precision", "chunk-bool", lambda: O.average_precision(torch.randn(2, 3), torch.ones(2, 3, dtype=torch.bool), chunk_size=True), TypeError, "chunk_size"),
    bad("average_precision", "meta", lambda: O.average_precision(meta(2, 3), torch.ones(2, 3, dtype=torch.bool)), ValueError, "scores", "meta device"),
    bad("average_precision", "no-relevant", lambda: O.average_precision(torch.randn(2, 3), torch.zeros(2, 3, dtype=torch.bool)), ValueError, "no relevant"),
    bad("exact_average_precision", "inf", lambda: O.exact_average_precision(nan_at((2, 3), 1, 0, -math.inf), torch.ones(2, 3, dtype=torch.bool)), ValueError, "scores", "query 1"),
    bad("check_ap_estimator", "typo", lambda: O.check_ap_estimator("sigmod"), ValueError, "Unknown AP estimator", "did you mean 'sigmoid'"),
    bad("check_ap_estimator", "bins-bool", lambda: O.check_ap_estimator("binned", num_bins=True), TypeError, "num_bins"),
    bad("check_ap_estimator", "temp-inf", lambda: O.check_ap_estimator("sigmoid", temperature=math.inf), ValueError, "temperature", "finite"),
    bad("singular_spectrum", "nan", lambda: O.singular_spectrum(nan_at((4, 3), 1)), ValueError, "NaN"),
    bad("singular_spectrum", "1-d", lambda: O.singular_spectrum(torch.randn(4)), ValueError, "num_samples, dim"),
    bad("effective_rank", "negative", lambda: O.effective_rank(torch.tensor([1.0, -1.0]), from_singular_values=True), ValueError, "non-negative"),
]

# --------------------------------------------------------------------------- lightly-style losses
LOSSES: List[Bad] = [
    bad("GroCoLoss", "steepness-set-to-nan", lambda: _with(L.GroCoLoss(3), steepness=math.nan)(torch.randn(8, 4), torch.randn(8, 4)), ValueError, "steepness", "finite"),
    bad("GroCoLoss", "nan", lambda: L.GroCoLoss(3)(torch.randn(8, 4), nan_at((8, 4), 5)), ValueError, "View 1", "row 5", "non-finite"),
    bad("GroCoLoss", "inf", lambda: L.GroCoLoss(3)(nan_at((8, 4), 2, 3, math.inf), torch.randn(8, 4)), ValueError, "View 0", "row 2", "inf"),
    bad("GroCoLoss", "width-0", lambda: L.GroCoLoss(3)(torch.randn(8, 0), torch.randn(8, 0)), ValueError, "width 0", "dim >= 1"),
    bad("GroCoLoss", "meta", lambda: L.GroCoLoss(3)(meta(8, 4), meta(8, 4)), ValueError, "View 0", "meta device"),
    bad("GroCoLoss", "n_negatives-bool", lambda: L.GroCoLoss(n_negatives=True), TypeError, "n_negatives", "integer"),
    bad("GroCoLoss", "n_negatives-float", lambda: L.GroCoLoss(n_negatives=2.0), TypeError, "n_negatives"),
    bad("GroCoLoss", "labels-list", lambda: L.GroCoLoss(3)(views(), LABELS8), TypeError, "GroCoLoss takes no labels", "rankssl.pml.GroCoLoss"),
    bad("GroCoLoss", "labels-last", lambda: L.GroCoLoss(3)(*views(), LABELS8), TypeError, "takes no labels", "rankssl.pml.GroCoLoss"),
    bad("GroCoLoss", "steepness-inf", lambda: L.GroCoLoss(3, steepness=math.inf), ValueError, "steepness"),
    bad("GroCoLoss", "network-typo", lambda: L.GroCoLoss(3, sorting_network="odd-even"), ValueError, "did you mean 'odd_even'"),
    bad("group_ordering_loss", "nan", lambda: L.group_ordering_loss(torch.randn(3, 2), nan_at((3, 4), 1)), ValueError, "negative_scores", "anchor 1"),
    bad("group_ordering_loss", "1-d", lambda: L.group_ordering_loss(torch.randn(3), torch.randn(3, 4)), ValueError, "positive_scores", "(A, P)"),
    bad("S2R2Loss", "nan-binned", lambda: L.S2R2Loss()(torch.randn(4, 3), nan_at((4, 3), 3)), ValueError, "View 1", "row 3"),
    bad("S2R2Loss", "nan-sigmoid", lambda: L.S2R2Loss("sigmoid")(nan_at((4, 3), 0), torch.randn(4, 3)), ValueError, "View 0", "row 0"),
    bad("S2R2Loss", "nan-sorting", lambda: L.S2R2Loss("sorting")(torch.randn(4, 3), nan_at((4, 3), 2)), ValueError, "View 1", "row 2"),
    bad("S2R2Loss", "nan-fastap", lambda: L.S2R2Loss("fastap")(torch.randn(4, 3), nan_at((4, 3), 1)), ValueError, "View 1", "row 1"),
    bad("S2R2Loss", "labels", lambda: L.S2R2Loss()(views(b=4), torch.arange(4)), TypeError, "S2R2Loss takes no labels", "rankssl.pml.S2R2Loss"),
    bad("S2R2Loss", "range-sigmoid", lambda: L.S2R2Loss("sigmoid", score_range=(0, 1)), ValueError, "score_range", "binned"),
    bad("S2R2Loss", "range-reversed", lambda: L.S2R2Loss(score_range=(1, -1)), ValueError, "score_range"),
    bad("S2R2Loss", "similarity-typo", lambda: L.S2R2Loss(similarity="cosin"), ValueError, "similarity", "did you mean 'cosine'"),
    bad("S2R2Loss", "width-0", lambda: L.S2R2Loss()(torch.randn(4, 0), torch.randn(4, 0)), ValueError, "width 0"),
    bad("ranking_ap_loss", "nan", lambda: L.ranking_ap_loss(nan_at((3, 4), 2), torch.randn(5, 4), torch.ones(3, 5, dtype=torch.bool)), ValueError, "query_emb", "row 2"),
    bad("ranking_ap_loss", "callable-nan", lambda: L.ranking_ap_loss(torch.randn(3, 4), torch.randn(5, 4), torch.ones(3, 5, dtype=torch.bool), similarity=lambda q, d: nan_at((3, 5), 1)), ValueError, "scores", "query 1"),
    bad("HydraLoss", "key_views-typo", lambda: L.HydraLoss(4, 4, key_views="othr"), ValueError, "key_views", "did you mean 'other'"),
    bad("HydraLoss", "reduction-typo", lambda: L.HydraLoss(4, 4, reduction="pair"), ValueError, "reduction", "pair_mean"),
    bad("HydraLoss", "warmup-negative", lambda: L.HydraLoss(4, 4, filter_warmup_epochs=-1), ValueError, "filter_warmup_epochs", ">= 0"),
    bad("HydraLoss", "other-one-view", lambda: L.HydraLoss(4, 4, key_views="other")([torch.randn(8, 4)], LABELS8), ValueError, "key_views='other'", "two views"),
    bad("HydraLoss", "temperature-inf", lambda: L.HydraLoss(4, 4, temperature=math.inf), ValueError, "temperature", "finite"),
    bad("HydraLoss", "gate_penalty-nan", lambda: L.HydraLoss(4, 4, gate_penalty=math.nan), ValueError, "gate_penalty"),
    bad("HydraLoss", "nan", lambda: L.HydraLoss(4, 4)([torch.randn(8, 4), nan_at((8, 4), 6)], LABELS8), ValueError, "View 1", "row 6"),
    bad("HydraLoss", "labels-range-int8", lambda: L.HydraLoss(4, 4)(torch.randn(8, 4), (LABELS8 + 1).to(torch.int8)), ValueError, "[0, 4)", "row 3"),
    bad("HydraLoss", "labels-str", lambda: L.HydraLoss(4, 4)(torch.randn(8, 4), "abcdefgh"), TypeError, "labels"),
    bad("HydraLoss", "meta", lambda: L.HydraLoss(4, 4)(meta(8, 4), LABELS8), ValueError, "meta device"),
    bad("HydraLoss", "gate-mode-typo", lambda: L.HydraLoss(4, 4, gate_mode="fuse"), ValueError, "gate mode", "did you mean 'fused'"),
    bad("HydraLoss", "labels-positional-after-views", lambda: L.HydraLoss(4, 4)(torch.randn(8, 4), torch.randn(8, 4), LABELS8), TypeError, "labels=", "2 views"),
    bad("HydraLoss", "out0-without-out1", lambda: L.HydraLoss(4, 4)(out0=torch.randn(8, 4), labels=LABELS8), TypeError, "out0=", "out1="),
    bad("HydraLoss", "temperature-set-to-0", lambda: _with(L.HydraLoss(4, 4), temperature=0)(views(), LABELS8), ValueError, "temperature"),
    bad("HydraLoss", "pml-temperature-set-to-0", lambda: _with(P.HydraLoss(4, 4), temperature=0)(_E, LABELS8), ValueError, "temperature"),
    bad("HydraLoss", "pml-mined-indices", lambda: P.HydraLoss(4, 4)(_E, LABELS8, indices_tuple=tuple(torch.arange(3) for _ in range(4))), ValueError, "miner", "efficient=False"),
    bad("HydraLoss", "extra-state", lambda: L.HydraLoss(4, 4).set_extra_state(None), ValueError, "extra state"),
    bad("HydraLoss", "pml-extra-state-short", lambda: P.HydraLoss(4, 4).set_extra_state(torch.zeros(3, dtype=torch.uint8)), ValueError, "extra state"),
    bad("HydraLoss", "seed-float", lambda: L.HydraLoss(4, 4, seed=1.5), TypeError, "seed", "integer"),
    bad("HydraLoss", "pml-seed-set-to-str", lambda: _with(P.HydraLoss(4, 4), seed="0"), TypeError, "seed", "integer"),
    bad("PartnerDraw", "seed-bool", lambda: PartnerDraw(True), TypeError, "seed", "integer"),
    bad("PartnerDraw", "state-float", lambda: PartnerDraw(0).load_state(torch.zeros(12)), ValueError, "extra state", "uint8"),
    bad("PartnerDraw", "process-seed-without-seed", lambda: PartnerDraw(None).process_seed(), ValueError, "seed=None"),
    bad("PartnerDraw", "pair_draw-typo", lambda: PartnerDraw(0)(LABELS8, LABELS8, LABELS8, None, "arbitrary", "per-row"), ValueError, "pair_draw", "did you mean 'per_row'"),
    bad("PartnerDraw", "pairing-typo", lambda: PartnerDraw(0)(LABELS8, LABELS8, LABELS8, None, "arbitary", "permutation"), ValueError, "pairing", "did you mean 'arbitrary'"),
    bad("draw_partners", "pairing-typo", lambda: draw_partners(LABELS8, "distinkt"), ValueError, "pairing", "did you mean 'distinct'"),
    bad("draw_partners", "generator-device", lambda: draw_partners(LABELS8.to("meta"), generator=torch.Generator()), ValueError, "generator", "device"),
    bad("sample_pair_labels", "distinct-one-class", lambda: sample_pair_labels(torch.zeros(4, dtype=torch.long), "distinct"), ValueError, "anchor 0", "single class"),
    bad("hydra_pair_loss", "gates-shape", lambda: L.hydra_pair_loss(torch.randn(4, 3), torch.randn(4, 3), torch.ones(4, 2), LABELS8[:4], LABELS8[:4], LABELS8[:4]), ValueError, "gates", "(4, 3)"),
    bad("hydra_pair_loss", "nan-keys", lambda: L.hydra_pair_loss(torch.randn(4, 3), nan_at((4, 3), 2), torch.ones(4, 3), LABELS8[:4], LABELS8[:4], LABELS8[:4]), ValueError, "keys", "row 2"),
    bad("hydra_pair_loss", "labels-length", lambda: L.hydra_pair_loss(torch.randn(4, 3), torch.randn(4, 3), torch.ones(4, 3), LABELS8[:3], LABELS8[:4], LABELS8[:4]), ValueError, "anchor_labels", "4 rows"),
]

# --------------------------------------------------------------------------- pytorch-metric-learning objects
_E = torch.randn(8, 4)
PML: List[Bad] = []
for _name, _make in (("GroCoLoss", lambda: P.GroCoLoss(n_negatives=2)), ("S2R2Loss", lambda: P.S2R2Loss())):
    PML += [
        bad(_name, "pml-ref_emb-no-ref_labels", lambda m=_make: m()(_E, LABELS8, ref_emb=torch.randn(5, 4)), ValueError, "ref_emb needs ref_labels"),
        bad(_name, "pml-indices-length", lambda m=_make: m()(_E, indices_tuple=(LABELS8, LABELS8)), ValueError, "indices_tuple", "length 2"),
        bad(_name, "pml-indices-range", lambda m=_make: m()(_E, indices_tuple=(LABELS8, LABELS8 + 5, LABELS8)), ValueError, "positives", "[0, 8)"),
        bad(_name, "pml-indices-float", lambda m=_make: m()(_E, indices_tuple=(LABELS8.float(), LABELS8, LABELS8)), TypeError, "anchors", "integer"),
        bad(_name, "pml-indices-negative", lambda m=_make: m()(_E, indices_tuple=(LABELS8, LABELS8, LABELS8 - 1)), ValueError, "negatives", "negative indices"),
        bad(_name, "pml-indices-uneven", lambda m=_make: m()(_E, indices_tuple=(LABELS8, LABELS8[:3], LABELS8)), ValueError, "equal lengths"),
        bad(_name, "pml-nan", lambda m=_make: m()(nan_at((8, 4), 7), LABELS8), ValueError, "embeddings", "row 7"),
        bad(_name, "pml-ref-nan", lambda m=_make: m()(_E, LABELS8, ref_emb=nan_at((5, 4), 4), ref_labels=LABELS8[:5]), ValueError, "ref_emb", "row 4"),
        bad(_name, "pml-labels-strings", lambda m=_make: m()(_E, list("abcdefgh")), TypeError, "labels", "integer"),
        bad(_name, "pml-labels-length", lambda m=_make: m()(_E, list(range(7))), ValueError, "labels", "(8,)"),
        bad(_name, "pml-meta", lambda m=_make: m()(meta(8, 4), LABELS8), ValueError, "meta device"),
        bad(_name, "pml-ref_labels-no-ref_emb", lambda m=_make: m()(_E, LABELS8, ref_labels=LABELS8), ValueError, "ref_labels", "without ref_emb"),
        bad(_name, "pml-width-0", lambda m=_make: m()(torch.randn(8, 0), LABELS8), ValueError, "width 0"),
    ]
PML += [
    bad("GroCoLoss", "pml-n_negatives-bool", lambda: P.GroCoLoss(n_negatives=True), TypeError, "n_negatives"),
    bad("GroCoLoss", "pml-n_positives-zero", lambda: P.GroCoLoss(n_positives=0), ValueError, "n_positives"),
    bad("GroCoLoss", "pml-uniform_groups-str", lambda: P.GroCoLoss(n_positives=1, uniform_groups="yes"), TypeError, "uniform_groups", "True or False", "'yes'"),
    bad("GroCoLoss", "pml-uniform_groups-no-n_positives", lambda: P.GroCoLoss(uniform_groups=True), ValueError, "uniform_groups=True needs n_positives"),
    bad("GroCoLoss", "pml-uniform_groups-broken", lambda: P.GroCoLoss(n_negatives=2, n_positives=1, uniform_groups=True)(_E, torch.tensor([0, 0, 1, 1, 2, 2, 3, 4])), ValueError, "uniform_groups=True promises", "n_positives=1"),
    bad("S2R2Loss", "pml-chunk-bool", lambda: P.S2R2Loss(chunk_size=True), TypeError, "chunk_size"),
    bad("HydraLoss", "pml-temperature-inf", lambda: P.HydraLoss(4, 4, temperature=math.inf), ValueError, "temperature", "finite"),
    bad("HydraLoss", "pml-ref_emb-no-ref_labels", lambda: P.HydraLoss(4, 4)(_E, LABELS8, ref_emb=_E), ValueError, "ref_labels"),
    bad("HydraLoss", "pml-indices", lambda: P.HydraLoss(4, 4)(_E, LABELS8, indices_tuple=(LABELS8,) * 3), ValueError, "indices_tuple"),
    bad("HydraLoss", "pml-nan", lambda: P.HydraLoss(4, 4)(nan_at((8, 4), 3), LABELS8), ValueError, "embeddings", "row 3"),
    bad("HydraLoss", "pml-labels-range", lambda: P.HydraLoss(4, 4)(_E, LABELS8 + 1), ValueError, "[0, 4)"),
    bad("HydraLoss", "pml-reduction-typo", lambda: P.HydraLoss(4, 4, reduction="pair"), ValueError, "reduction", "pair_mean"),
    bad("HydraLoss", "pml-permutation-distinct", lambda: P.HydraLoss(4, 4, pair_draw="permutation", pairing="distinct"), ValueError, "pair_draw", "distinct"),
    bad("SelfSupervisedLoss", "unsupported", lambda: P.SelfSupervisedLoss(__import__("pytorch_metric_learning.losses", fromlist=["x"]).ArcFaceLoss(10, 4)), ValueError, "does not support ArcFaceLoss"),
    bad("SelfSupervisedLoss", "shapes", lambda: P.SelfSupervisedLoss(P.GroCoLoss(n_negatives=2))(torch.randn(8, 4), torch.randn(7, 4)), ValueError, "view 1"),
    bad("SelfSupervisedLoss", "nan", lambda: P.SelfSupervisedLoss(P.GroCoLoss(n_negatives=2))(torch.randn(8, 4), nan_at((8, 4), 2)), ValueError, "embeddings", "row 10"),  # view 1 row 2 of the concatenated views
    bad("CrossBatchMemory", "unsupported", lambda: P.CrossBatchMemory(__import__("pytorch_metric_learning.losses", fromlist=["x"]).ArcFaceLoss(10, 4), embedding_size=4), ValueError, "does not support ArcFaceLoss"),
    bad("CrossBatchMemory", "nan", lambda: P.CrossBatchMemory(P.GroCoLoss(n_negatives=2), embedding_size=4, memory_size=16)(nan_at((8, 4), 1), LABELS8), ValueError, "embeddings", "row 1"),
]
# GroCo and S2R2: settings changed after construction, lightly keywords, estimator
# arguments, pml reducers and dtypes, scores a fixed score_range would clamp.
LOSSES += [
    bad("GroCoLoss", "n_negatives-set-0", lambda: _with(L.GroCoLoss(3), n_negatives=0)(*views()), ValueError, "n_negatives"),
    bad("GroCoLoss", "steepness-set-0", lambda: _with(L.GroCoLoss(3), steepness=0)(*views()), ValueError, "steepness"),
    bad("GroCoLoss", "out0-only", lambda: L.GroCoLoss(3)(out0=views()[0]), TypeError, "out1 is missing"),
    bad("GroCoLoss", "out0-and-positional", lambda: L.GroCoLoss(3)(views()[0], out1=views()[1]), TypeError, "not both"),
    bad("S2R2Loss", "out1-only", lambda: L.S2R2Loss()(out1=views()[0]), TypeError, "out0 is missing"),
    bad("S2R2Loss", "temperature-binned", lambda: L.S2R2Loss(temperature=0.01), ValueError, "temperature", "'sigmoid'"),
    bad("S2R2Loss", "num_bins-sorting", lambda: L.S2R2Loss("sorting", num_bins=10), ValueError, "num_bins", "'binned'"),
    bad("S2R2Loss", "temperature-set-0", lambda: _with(L.S2R2Loss("sigmoid"), estimator_settings={"temperature": 0})(*views()), ValueError, "temperature"),
    bad("S2R2Loss", "similarity-set", lambda: _with(L.S2R2Loss(), similarity="cos")(*views()), ValueError, "similarity", "cosine"),
    bad("S2R2Loss", "dot-fixed-range-clamps", lambda: L.S2R2Loss(similarity="dot", score_range=(-1, 1))(*[10 * v for v in views()]), ValueError, "outside score_range"),
]
PML += [
    bad("S2R2Loss", "pml-temperature-binned", lambda: P.S2R2Loss(temperature=0.01), ValueError, "temperature", "'sigmoid'"),
    bad("S2R2Loss", "pml-chunk-set-0", lambda: _with(P.S2R2Loss(), chunk_size=0)(_E, LABELS8), ValueError, "chunk_size"),
    bad("GroCoLoss", "pml-n_negatives-set-0", lambda: _with(P.GroCoLoss(2), n_negatives=0)(_E, LABELS8), ValueError, "n_negatives"),
    bad("GroCoLoss", "pml-ref_emb-float64", lambda: P.GroCoLoss(2)(_E, LABELS8, ref_emb=_E.double(), ref_labels=LABELS8), TypeError, "ref_emb", "float64", "float32"),
    bad("S2R2Loss", "pml-ref_emb-float64", lambda: P.S2R2Loss()(_E, LABELS8, ref_emb=_E.double(), ref_labels=LABELS8), TypeError, "ref_emb", "float64"),
    bad("GroCoLoss", "pml-divisor-reducer", lambda: P.GroCoLoss(2, reducer=__import__("pytorch_metric_learning.reducers", fromlist=["x"]).DivisorReducer())(_E, LABELS8), ValueError, "DivisorReducer", "divisor"),
    bad("S2R2Loss", "pml-divisor-reducer", lambda: P.S2R2Loss(reducer=__import__("pytorch_metric_learning.reducers", fromlist=["x"]).DivisorReducer())(_E, LABELS8), ValueError, "DivisorReducer"),
    bad("S2R2Loss", "pml-range-clamps", lambda: P.S2R2Loss(score_range=(-1, 1), distance=__import__("pytorch_metric_learning.distances", fromlist=["x"]).DotProductSimilarity(normalize_embeddings=False))(10 * _E, LABELS8), ValueError, "outside score_range"),
]


# --------------------------------------------------------------------------- mmengine components
def _knn(results_feats, labels, is_bank, **kwargs):
    metric = KNNAccuracy(**kwargs)
    results = [{"feat": f, "label": int(l), "is_bank": bool(b)} for f, l, b in zip(results_feats, labels, is_bank)]
    return metric.compute_metrics(results)


class _Labelled:
    def __init__(self, labels):
        self._labels = np.asarray(labels)

    def get_gt_labels(self):
        return self._labels

    def __len__(self):
        return len(self._labels)


MISSING_DATA = os.path.join(os.sep, "nonexistent", "rankssl-images")
_BANK = [torch.randn(4) for _ in range(6)]
MM: List[Bad] = [
    bad("LARS", "lr-negative", lambda: LARS(torch.nn.Linear(2, 2).parameters(), lr=-0.1), ValueError, "lr", ">= 0"),
    bad("LARS", "momentum-nan", lambda: LARS(torch.nn.Linear(2, 2).parameters(), momentum=math.nan), ValueError, "momentum", "finite"),
    bad("KNNAccuracy", "temperature-0", lambda: KNNAccuracy(temperature=0.0), ValueError, "temperature"),
    bad("KNNAccuracy", "k-bool", lambda: KNNAccuracy(k=True), TypeError, "k"),
    bad("KNNAccuracy", "nan", lambda: _knn(_BANK[:5] + [nan_at((1, 4), 0)[0]], [0, 1, 0, 1, 0, 1], [1, 1, 1, 1, 0, 0]), ValueError, "query features", "sample 1"),
    bad("KNNAccuracy", "labels>=classes", lambda: _knn(_BANK, [0, 1, 5, 1, 0, 1], [1] * 4 + [0] * 2, num_classes=3), ValueError, "bank_labels", "[0, 3)"),
    bad("KNNAccuracy", "query-labels>=classes", lambda: _knn(_BANK, [0, 1, 0, 1, 0, 7], [1] * 4 + [0] * 2, num_classes=3), ValueError, "query labels", "[0, 3)"),
    bad("KNNAccuracy", "dims", lambda: _knn(_BANK[:5] + [torch.randn(5)], [0, 1] * 3, [1] * 4 + [0] * 2), ValueError, "sample 5", "same dimension"),
    bad("MPerClassSampler", "m=0", lambda: MPerClassSampler(_Labelled([0, 1] * 8), m=0), ValueError, "m (samples per class)", ">= 1"),
    bad("MPerClassSampler", "m-float", lambda: MPerClassSampler(_Labelled([0, 1] * 8), m=2.5), TypeError, "m (samples per class)"),
]

# --------------------------------------------------------------------------- data on disk
def _data(name):
    import importlib

    module, attr = name.rsplit(".", 1)
    return getattr(importlib.import_module(module), attr)


DATA: List[Bad] = [
    bad("FashionMNIST", "missing", lambda: _data("rankssl.mm.fashion_mnist.FashionMNIST")(MISSING_DATA), FileNotFoundError,
        "FashionMNIST", MISSING_DATA, "dataset-fashion-mnist", "--data-root"),
    bad("FashionMNIST", "split", lambda: _data("rankssl.mm.fashion_mnist.FashionMNIST")(split="val"), ValueError,
        "split", "'train' or 'test'", "'val'"),
    bad("read_idx", "not-idx", lambda: _data("rankssl.mm.fashion_mnist.read_idx")(__file__), ValueError,
        "test_bad_input.py", "not an idx file"),
    bad("UnlabelledImages", "missing", lambda: _data("rankssl.mm.own_images.UnlabelledImages")(MISSING_DATA),
        FileNotFoundError, MISSING_DATA, "--data-root"),
    bad("load_rgb", "not-an-image", lambda: _data("rankssl.mm.image_io.load_rgb")(__file__), OSError,
        "test_bad_input.py", "not an image"),
    bad("EvalView", "channel_order", lambda: _data("rankssl.mm.transforms.EvalView")(channel_order="brg"), ValueError,
        "channel_order", "'brg'"),
    bad("set_data_root", "empty", lambda: _data("rankssl.mm.data_root.set_data_root")({}, ""), ValueError,
        "--data-root", "folder"),
]

# --------------------------------------------------------------------------- the rankssl command
# (id, argv, exception type, words); tests/test_cli_errors.py checks the same rows on the command line.
DIGITS = "groco_smallcnn_1xb256-50e_digits"
CIFAR = "groco_resnet18_1xb256-coslr-200e_cifar10"
MISSING = os.path.join(os.sep, "nonexistent", "rankssl-data")

# (id, argv, exception type, words the message must contain)
CLI_ROWS = [
    ("unknown recipe", ["train", "groco_smallcnn_1xb256_50e_digits"], FileNotFoundError,
     ["No recipe", "Did you mean", DIGITS, "rankssl recipes"]),
    ("unknown recipe in test", ["test", "nope_recipe", "x.pth"], FileNotFoundError, ["No recipe", "rankssl recipes"]),
    ("missing data", ["train", CIFAR, "--cfg-options", f"train_dataloader.dataset.data_root={MISSING}"],
     FileNotFoundError, ["CIFAR10", MISSING, "never downloads", "data_root"]),
    ("missing data with --data-root", ["train", CIFAR, "--data-root", MISSING], FileNotFoundError,
     ["CIFAR10", MISSING, "never downloads", "--data-root"]),
    ("--data-root on embedded data", ["train", DIGITS, "--data-root", MISSING], CommandError,
     ["--data-root", "read no files"]),
    ("test without data", ["test", CIFAR, __file__, "--cfg-options",
                                 f"test_dataloader.dataset.bank.data_root={MISSING}",
                                 f"test_dataloader.dataset.query.data_root={MISSING}"],
     FileNotFoundError, ["CIFAR10", "never downloads"]),
    ("option without =", ["train", DIGITS, "--cfg-options", "train_cfg.max_epochs"], CommandError,
     ["KEY=VALUE", "'train_cfg.max_epochs'"]),
    ("option with empty key", ["train", DIGITS, "--cfg-options", "=3"], CommandError, ["KEY=VALUE"]),
    ("zero epochs", ["train", DIGITS, "--epochs", "0"], CommandError, ["--epochs", ">= 1", "got 0"]),
    ("negative epochs", ["train", DIGITS, "--epochs", "-2"], CommandError, ["--epochs", ">= 1"]),
    ("max_epochs=0", ["train", DIGITS, "--cfg-options", "train_cfg.max_epochs=0"], CommandError,
     ["train_cfg.max_epochs", ">= 1", "got 0"]),
    ("max_epochs not a number", ["train", DIGITS, "--cfg-options", "train_cfg.max_epochs=ten"], CommandError,
     ["train_cfg.max_epochs", "'ten'"]),
    ("demo zero epochs", ["demo", "--epochs", "0"], CommandError, ["--epochs", ">= 1"]),
    ("demo results from a shortened run", ["demo", "--epochs", "2", "--write-results"], CommandError,
     ["--write-results", "--epochs"]),
    ("demo results without a checkout", ["demo", "--write-results", MISSING], CommandError,
     ["source checkout", "README.md"]),
    ("missing checkpoint", ["test", DIGITS, "no_such_checkpoint.pth"], CommandError,
     ["no_such_checkpoint.pth", "not found", "rankssl train"]),
    ("torchrun launcher without torchrun", ["train", DIGITS, "--launcher", "pytorch"], CommandError,
     ["torchrun", "missing"]),
]


CLI: List[Bad] = [
    bad(f"rankssl {argv[0]}", id, (lambda argv=argv: rankssl_main(argv)), error, *words)
    for id, argv, error, words in CLI_ROWS
]


@pytest.fixture(autouse=True)
def _outside_the_checkout(monkeypatch, tmp_path):
    """CLI rows must not see a torchrun environment nor write into the checkout."""
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)


CASES: List[Bad] = OPS + LOSSES + PML + MM + DATA + CLI


@pytest.mark.parametrize("case", CASES, ids=[f"{c.covers}-{c.id}" for c in CASES])
def test_bad_input_raises_clear_error(case: Bad):
    with pytest.raises(case.error) as info:
        case.call()
    assert type(info.value) is case.error or case.error in type(info.value).__mro__
    message = str(info.value).lower()
    missing = [w for w in case.words if w.lower() not in message]
    assert not missing, f"message lacks {missing}: {info.value}"


def test_ids_are_unique():
    ids = [f"{c.covers}-{c.id}" for c in CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("module", [O, L, P], ids=lambda m: m.__name__)
def test_every_public_callable_has_a_row(module):
    covered = {c.covers for c in CASES}
    public = [name for name in module.__all__ if callable(getattr(module, name))]
    assert public, module.__name__
    missing = [name for name in public if name not in covered]
    assert not missing, f"{module.__name__} public callables without a bad-input row: {missing}"


# --------------------------------------------------------------------------- odd but valid input: correct results
def _loss_and_grad(loss_fn, xs, *extra):
    xs = [x.clone().requires_grad_(True) for x in xs]
    loss = loss_fn(xs, *extra) if extra else loss_fn(*xs)
    loss.backward()
    return loss.detach(), [x.grad for x in xs]


@pytest.mark.parametrize(
    "make,labelled",
    [
        (lambda: L.GroCoLoss(3, stop_gradient=False), False),
        (lambda: L.S2R2Loss(), False),
        (lambda: L.S2R2Loss("sigmoid", temperature=0.1), False),
        (lambda: L.HydraLoss(4, 6, seed=0, embed_dim=8, hidden_dim=8), True),
    ],
    ids=["groco", "s2r2-binned", "s2r2-sigmoid", "hydra"],
)
# Powers of two of the magnitude 1e30 / 1e-30: multiplying by them is exact in float32, so the
# comparison measures the loss's own scale handling, not the rounding of ``x * scale`` (which can
# move a score across a kink of the 640-bin estimator's piecewise-linear gradient).
@pytest.mark.parametrize("scale", [2.0**100, 2.0**-100], ids=["1e30", "1e-30"])
def test_huge_and_tiny_magnitudes_give_the_loss_and_gradient_of_the_rescaled_input(make, labelled, scale):
    torch.manual_seed(0)
    xs = [torch.randn(8, 6, dtype=torch.float32) for _ in range(2)]
    extra = (LABELS8,) if labelled else ()
    torch.manual_seed(1)
    reference_fn = make()
    torch.manual_seed(1)
    scaled_fn = make()
    loss, grads = _loss_and_grad(reference_fn, xs, *extra)
    scaled_loss, scaled_grads = _loss_and_grad(scaled_fn, [x * scale for x in xs], *extra)
    assert torch.isfinite(scaled_loss) and loss > 0
    torch.testing.assert_close(scaled_loss, loss, rtol=1e-5, atol=1e-6)
    for g, sg in zip(grads, scaled_grads):
        # Scale invariance: d L(s x) / d(s x) = (d L(x) / dx) / s.
        assert sg.abs().sum() > 0
        # atol: float32 accumulation noise of the 640-bin histograms reaches ~2e-6 of the largest
        # gradient entry; broken scale handling errs by O(1) of it (or zeroes the gradient).
        torch.testing.assert_close(sg.double() * scale, g.double(), rtol=1e-4, atol=1e-5 * float(g.abs().max()))


@pytest.mark.parametrize("make", [lambda: P.GroCoLoss(n_negatives=2), lambda: P.S2R2Loss(),
                                  lambda: P.HydraLoss(4, 6, seed=0, embed_dim=8, hidden_dim=8)],
                         ids=["groco", "s2r2", "hydra"])
# 2**70 (1e21): float32 squares overflow; 2**-70: they underflow. Not 2**100: the gradient with
# respect to 1e30 inputs is ~1e-38 and meets float32's subnormal range (flushed in some tests).
@pytest.mark.parametrize("scale", [2.0**70, 2.0**-70], ids=["1e21", "1e-21"])
def test_pml_losses_at_huge_and_tiny_magnitudes_match_the_rescaled_input(make, scale):
    """pml's own CosineSimilarity overflows at 1e21 (every score 0); the losses' default distance does not."""
    torch.manual_seed(0)
    x = torch.randn(8, 6)
    torch.manual_seed(1)
    reference_fn = make()
    torch.manual_seed(1)
    scaled_fn = make()
    loss, (grad,) = _loss_and_grad(lambda e: reference_fn(e, LABELS8), [x])
    scaled_loss, (scaled_grad,) = _loss_and_grad(lambda e: scaled_fn(e, LABELS8), [x * scale])
    assert loss > 0 and scaled_grad.abs().sum() > 0
    torch.testing.assert_close(scaled_loss, loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(scaled_grad.double() * scale, grad.double(), rtol=1e-4,
                               atol=1e-5 * float(grad.abs().max()))


@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.int16, torch.int32])
def test_hydra_accepts_any_integer_label_dtype(dtype):
    z = [torch.randn(8, 6), torch.randn(8, 6)]
    expected = L.HydraLoss(4, 6, seed=0, embed_dim=8, hidden_dim=8)
    got = L.HydraLoss(4, 6, seed=0, embed_dim=8, hidden_dim=8)
    got.load_state_dict(expected.state_dict())
    torch.testing.assert_close(got(z, LABELS8.to(dtype)), expected(z, LABELS8))
    pml_expected = P.HydraLoss(4, 6, seed=0, embed_dim=8, hidden_dim=8)
    pml_got = P.HydraLoss(4, 6, seed=0, embed_dim=8, hidden_dim=8)
    pml_got.load_state_dict(pml_expected.state_dict())
    torch.testing.assert_close(pml_got(z[0], LABELS8.to(dtype)), pml_expected(z[0], LABELS8))


@pytest.mark.parametrize("make", [lambda: P.GroCoLoss(n_negatives=2), lambda: P.S2R2Loss()], ids=["groco", "s2r2"])
def test_pml_losses_accept_python_label_lists_and_valid_indices(make):
    from pytorch_metric_learning.miners import MultiSimilarityMiner

    emb = torch.randn(8, 4)
    labels = LABELS8.tolist()
    torch.testing.assert_close(make()(emb, labels), make()(emb, LABELS8))
    ref = torch.randn(6, 4)
    torch.testing.assert_close(
        make()(emb, labels, ref_emb=ref, ref_labels=[0, 1, 2, 3, 0, 1]),
        make()(emb, LABELS8, ref_emb=ref, ref_labels=torch.tensor([0, 1, 2, 3, 0, 1])),
    )
    mined = MultiSimilarityMiner(epsilon=1.0)(emb, LABELS8)
    as_lists = tuple(t.tolist() for t in mined)
    torch.testing.assert_close(make()(emb, indices_tuple=as_lists), make()(emb, indices_tuple=mined))


def test_s2r2_dot_similarity_bins_over_the_batch_range_and_keeps_gradients():
    torch.manual_seed(0)
    xs = [torch.randn(16, 32) * 3 for _ in range(4)]  # raw dot products span about +-300
    loss, grads = _loss_and_grad(L.S2R2Loss(similarity="dot"), xs)
    grad = torch.cat(grads)
    zero_rows = float((grad.abs().sum(1) == 0).float().mean())
    assert zero_rows < 0.05, zero_rows
    # Clamping raw dot products to a given [-1, 1] (most rows without gradient) is refused.
    with pytest.raises(ValueError, match="outside score_range"):
        _loss_and_grad(L.S2R2Loss(similarity="dot", score_range=(-1.0, 1.0)), xs)
    # "batch" is exactly the explicit range of the batch's valid scores.
    queries = torch.cat(xs)
    scores = queries @ queries.T
    off_diagonal = scores[~torch.eye(64, dtype=torch.bool)]
    low, high = float(off_diagonal.min()), float(off_diagonal.max())
    margin = 1e-6 * max(1.0, abs(low), abs(high))
    explicit, _ = _loss_and_grad(L.S2R2Loss(similarity="dot", score_range=(low - margin, high + margin)), xs)
    torch.testing.assert_close(loss, explicit)
    # AP is invariant to a monotone rescaling of the scores: so is the batch-range estimate.
    scaled, _ = _loss_and_grad(L.S2R2Loss(similarity="dot"), [x * 10 for x in xs])
    torch.testing.assert_close(scaled, loss, rtol=1e-4, atol=1e-5)


def _numpy_knn_top1(query, bank, bank_labels, num_classes, k, temperature):
    """Reference in float64 with log-sum-exp per class (NumPy only)."""
    q = query / np.linalg.norm(query, axis=1, keepdims=True)
    b = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    preds = []
    for row in q:
        sims = b @ row
        nearest = np.argsort(-sims, kind="stable")[:k]
        log_votes = np.full(num_classes, -np.inf)
        for c in range(num_classes):
            logits = sims[nearest][bank_labels[nearest] == c] / temperature
            if logits.size:
                log_votes[c] = logits.max() + np.log(np.exp(logits - logits.max()).sum())
        preds.append(int(np.argmax(log_votes)))
    return np.array(preds)


@pytest.mark.parametrize("temperature", [0.01, 0.005, 0.001])
def test_knn_accuracy_is_stable_at_small_temperatures(temperature):
    rng = np.random.default_rng(0)
    num_classes, k = 4, 20
    centres = rng.normal(size=(num_classes, 16))
    bank_labels = np.repeat(np.arange(num_classes), 30)
    query_labels = np.repeat(np.arange(num_classes), 10)
    bank = centres[bank_labels] + 0.8 * rng.normal(size=(120, 16))
    query = centres[query_labels] + 0.8 * rng.normal(size=(40, 16))
    feats = [torch.tensor(f, dtype=torch.float32) for f in np.concatenate([bank, query])]
    labels = np.concatenate([bank_labels, query_labels])
    is_bank = np.arange(160) < 120
    ours = _knn(feats, labels, is_bank, k=k, temperature=temperature)["top1"]
    bank32, query32 = bank.astype(np.float32).astype(np.float64), query.astype(np.float32).astype(np.float64)
    reference = _numpy_knn_top1(query32, bank32, bank_labels, num_classes, k, temperature)
    assert ours == pytest.approx(100.0 * (reference == query_labels).mean())
    # The limit T -> 0: each query takes the class of its nearest neighbour.
    nearest = _numpy_knn_top1(query32, bank32, bank_labels, num_classes, 1, 1.0)
    if temperature <= 0.005:
        assert ours == pytest.approx(100.0 * (nearest == query_labels).mean())
    assert ours > 80
