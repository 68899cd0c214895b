"""Kernel launches and host syncs of one forward + backward of each rankssl loss and its peer.

The targets of the GPU path: every rankssl loss issues no host sync and no more
launches than its peer (lightly's or pytorch-metric-learning's loss for the same job).
Counted with :class:`launch_count.LaunchCounter` below autograd, on CPU tensors, with
value checks lazy (``validation_mode("lazy")``, what ``auto`` does for CUDA tensors).

The kernel path is whatever ``RANKSSL_KERNELS`` selects; the GPU path is
``RANKSSL_KERNELS=triton TRITON_INTERPRET=1``. A fused sorting-network call that runs
through ctypes (the CPU kernels) is invisible to a dispatch mode: it is counted here as
one launch forward and one backward, as a registered custom op would be.

Usage::

    RANKSSL_KERNELS=triton TRITON_INTERPRET=1 python benchmarks/launches.py --batch-size 256

prints a markdown table. ``ROWS`` is the table; the test (``tests/test_launches.py``)
runs the same rows.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from launch_count import LaunchCounter  # noqa: E402
from result_record import record_on_exit  # noqa: E402

Step = Callable[[], torch.Tensor]


@dataclass(frozen=True)
class Row:
    """One line of the table: a rankssl loss and its peer on the same batch.

    ``rankssl`` and ``peer`` build a loss step from ``(views, embeddings, labels)``:
    two (B, D) views, their (2B, D) concatenation and the image labels.
    ``uncounted_syncs``: host syncs of the rankssl step that the counter cannot see on CPU
    tensors (a ``.tolist()`` copies without an aten operator there; on CUDA it waits for
    the device), added to the counted ones.
    """

    name: str
    rankssl: Callable[..., Step]
    peer_name: str
    peer: Callable[..., Step]
    uncounted_syncs: int = 0


def _lightly_ntxent(views, embeddings, labels):
    from lightly.loss import NTXentLoss

    loss = NTXentLoss()
    return lambda: loss(*views)


def _pml(name: str, **kwargs):
    def build(views, embeddings, labels):
        import pytorch_metric_learning.losses as pml_losses

        loss = getattr(pml_losses, name)(**kwargs)
        return lambda: loss(embeddings, labels)

    return build


def _self_supervised(make_loss: Callable[[], object], wrapper: Callable[..., object]):
    """A pml loss inside a labels-from-views wrapper, called on the two views."""

    def build(views, embeddings, labels):
        loss = wrapper(make_loss())
        return lambda: loss(*views)

    return build


def _pml_self_supervised(name: str):
    import pytorch_metric_learning.losses as pml_losses

    return _self_supervised(lambda: getattr(pml_losses, name)(), pml_losses.SelfSupervisedLoss)


def _rankssl_self_supervised(name: str):
    import rankssl.pml as pml

    return _self_supervised(lambda: getattr(pml, name)(), pml.SelfSupervisedLoss)


def _lightly_style(name: str, **kwargs):
    def build(views, embeddings, labels):
        import rankssl.losses as losses

        loss = getattr(losses, name)(**kwargs)
        return lambda: loss(*views)

    return build


def _rankssl_pml(name: str, **kwargs):
    def build(views, embeddings, labels):
        import rankssl.pml as pml

        loss = getattr(pml, name)(**kwargs)
        return lambda: loss(embeddings, labels)

    return build


#: The table, one row per rankssl loss (add a row: one line).
ROWS: List[Row] = [
    Row("GroCoLoss (K=10)", _lightly_style("GroCoLoss"), "lightly NTXentLoss", _lightly_ntxent),
    Row("S2R2Loss binned", _lightly_style("S2R2Loss"), "pml FastAPLoss", _pml("FastAPLoss")),
    Row("S2R2Loss fastap", _lightly_style("S2R2Loss", estimator="fastap"), "pml FastAPLoss", _pml("FastAPLoss")),
    Row("S2R2Loss sigmoid", _lightly_style("S2R2Loss", estimator="sigmoid"), "pml SmoothAPLoss", _pml("SmoothAPLoss")),
    Row("S2R2Loss sorting", _lightly_style("S2R2Loss", estimator="sorting"), "pml FastAPLoss", _pml("FastAPLoss")),
    # The default reads the anchors' (P, K) group sizes on the host: one sync (see rankssl.pml.GroCoLoss).
    Row("pml GroCoLoss", _rankssl_pml("GroCoLoss"), "pml NTXentLoss", _pml("NTXentLoss"), uncounted_syncs=1),
    Row("pml GroCoLoss uniform_groups", _rankssl_pml("GroCoLoss", n_positives=1, uniform_groups=True),
        "pml NTXentLoss", _pml("NTXentLoss")),
    Row("pml S2R2Loss", _rankssl_pml("S2R2Loss"), "pml FastAPLoss", _pml("FastAPLoss")),
    Row(
        "pml SelfSupervisedLoss(GroCoLoss())",
        _rankssl_self_supervised("GroCoLoss"),
        "pml SelfSupervisedLoss(NTXentLoss())",
        _pml_self_supervised("NTXentLoss"),
    ),
]


class _CountCtypesKernels:
    """Count each call of the ctypes CPU kernels as one launch in the active counter."""

    def __init__(self, counter: LaunchCounter) -> None:
        self.counter = counter
        self.saved = None

    def __enter__(self):
        from rankssl.ops.fused import build

        library = build.load()
        if library is None:
            return self
        self.saved = (build, build.load)
        counter = self.counter

        class _Counted:
            def __getattr__(self, name):
                function = getattr(library, name)
                if not callable(function):
                    return function

                def counted(*args):
                    counter.launches += 1
                    counter.by_name[f"rankssl::{name}"] += 1
                    return function(*args)

                return counted

        wrapped = _Counted()
        build.load = lambda *a, **k: wrapped
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            build, load = self.saved
            build.load = load


def count_step(step: Step, warmup: int = 1) -> Dict[str, int]:
    """Launches and syncs of one ``step().backward()`` under lazy validation."""
    from rankssl.ops.validation import flush, validation_mode

    with validation_mode("lazy"):
        for _ in range(warmup):
            step().backward()
        with LaunchCounter() as counter, _CountCtypesKernels(counter):
            step().backward()
        flush()
    return {"launches": counter.launches, "syncs": counter.syncs}


def inputs(batch_size: int, dim: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    views = [torch.randn(batch_size, dim, generator=generator).requires_grad_(True) for _ in range(2)]
    embeddings = torch.randn(2 * batch_size, dim, generator=generator).requires_grad_(True)
    labels = torch.arange(batch_size).repeat(2)
    return views, embeddings, labels


def measure(rows: Optional[List[Row]] = None, batch_size: int = 256, dim: int = 128) -> List[dict]:
    """Counts of every row: ``{"row", "launches", "syncs", "peer", "peer_launches", "peer_syncs"}``."""
    results = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for row in rows if rows is not None else ROWS:
            data = inputs(batch_size, dim)
            ours = count_step(row.rankssl(*data))
            theirs = count_step(row.peer(*data))
            results.append(dict(
                row=row.name, launches=ours["launches"], syncs=ours["syncs"] + row.uncounted_syncs,
                uncounted_syncs=row.uncounted_syncs, peer=row.peer_name,
                peer_launches=theirs["launches"], peer_syncs=theirs["syncs"],
            ))
    return results


def markdown(results: List[dict]) -> str:
    lines = ["| loss | launches | host syncs | peer | peer's launches | peer's syncs | target met |", "|---|---|---|---|---|---|---|"]
    for r in results:
        met = "yes" if r["syncs"] == 0 and r["launches"] <= r["peer_launches"] else "no"
        uncounted = r.get("uncounted_syncs", 0)
        syncs = f"{r['syncs']} ({uncounted} uncounted: a .tolist())" if uncounted else f"{r['syncs']}"
        lines.append(
            f"| {r['row']} | {r['launches']:,} | {syncs} | {r['peer']} | {r['peer_launches']:,} | "
            f"{r['peer_syncs']} | {met} |"
        )
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--json", metavar="PATH", help="also write the printed tables as a record for report.py")
    args = parser.parse_args(argv)
    record_on_exit(args.json)
    torch.set_num_threads(1)
    kernels = os.environ.get("RANKSSL_KERNELS", "auto")
    print(f"B={args.batch_size}, D={args.dim}, two views; RANKSSL_KERNELS={kernels}, "
          f"TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET', '0')}, validation lazy\n")
    print(markdown(measure(batch_size=args.batch_size, dim=args.dim)))


if __name__ == "__main__":
    main()
