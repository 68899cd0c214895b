"""The rankssl command: train and test mmengine recipes, list components and recipes, run the demo.

Layer 7. ``rankssl train RECIPE`` runs a recipe (a shipped recipe's name or a path)
with mmengine's ``Runner``, exactly as ``Runner.from_cfg(Config.fromfile(path))``
would, plus the conveniences below:

- Progress: the console gets a short line every few iterations (loss, learning rate,
  ETA) and one per validation; mmengine's environment and config dump and its own log
  lines go to the work dir's log file (``--verbose`` prints them too).
- ``--epochs N`` (or ``--cfg-options train_cfg.max_epochs=N``) changes the run's length
  and stretches the warm-up + cosine schedule to the new end, as ``rankssl demo
  --epochs`` does.
- Errors: one or two lines saying what was wrong and what to do; ``--debug`` shows the
  traceback. Data sets are checked before anything is built.
- ``--launcher pytorch`` under ``torchrun`` works on CPUs: the gloo process group is
  initialised here (mmengine's ``init_dist`` assumes CUDA) and the model is wrapped by
  ``CPUDistributedDataParallel``; ``AmpOptimWrapper`` and SyncBN fall back to their CPU
  equivalents with a warning.
- One run per work dir: a second ``rankssl train`` into a work dir in use stops at once
  naming the pid that holds it (:mod:`rankssl.mm.workdir_lock`).
- ``--resume`` continues from the work dir's newest intact checkpoint (damaged ones are
  skipped and named; nothing to resume is an error unless ``--resume-or-start``);
  mmengine's checkpoint types are allow-listed for ``torch.load(weights_only=True)``;
  the checkpoint is compared with the new config first (:mod:`rankssl.mm.resume_check`).
- ``--cfg-options`` values are checked against the recipe's (:mod:`rankssl.mm.option_types`).

This module parses the command line and dispatches; the commands live in
:mod:`rankssl.commands` (train, test, export, list, recipes) and :mod:`rankssl.demo`, config
handling in :mod:`rankssl.run_config`, error display in :mod:`rankssl.errors`. mmengine is
imported only by the commands that need it, so ``rankssl --help`` and ``rankssl recipes``
answer at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

# Also importable from here: the names scripts and benchmarks use to run recipes as the command does.
from rankssl.commands import build_runner, cmd_export, cmd_list, cmd_recipes, cmd_test, cmd_train
from rankssl.demo import cmd_demo
from rankssl.errors import CommandError, short_error
from rankssl.run_config import load_config, set_epochs

__all__ = ["main", "run", "CommandError", "load_config", "set_epochs", "build_runner"]

DESCRIPTION = """Ranking- and sorting-based self-supervised learning (GroCo, S2R2, Hydra) with
mmengine: train and evaluate the shipped recipes, list components, run the demo."""
EPILOG = """examples:
  rankssl demo                                   the main job (GroCo vs SimCLR on the embedded digits)
  rankssl recipes                                the shipped recipes
  rankssl train groco_smallcnn_1xb256-50e_digits --epochs 20
  rankssl test RECIPE work_dirs/RECIPE/epoch_20.pth
Add --debug to any command to see the full traceback of an error."""


# ----------------------------------------------------------------------------- parser
def _parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The argument parser; ``argv`` decides whether the analyze command's arguments are needed."""
    from rankssl import __version__

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback of an error"
    )

    parser = argparse.ArgumentParser(
        prog="rankssl",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"rankssl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".", parents=[common])

    data_root_help = (
        "folder of the recipe's data set: sets data_root of every dataset (train, kNN bank and queries, test)"
    )
    options_help = "override config entries: KEY=VALUE ... (e.g. optim_wrapper.optimizer.lr=0.1)"
    train = add("train", "train a recipe")
    train.add_argument("recipe", help="shipped recipe name (see `rankssl recipes`) or path to a config file")
    train.add_argument(
        "--work-dir", help="where logs, checkpoints, scalars and plots go (default: work_dirs/<recipe name>)"
    )
    train.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="train N epochs; the warm-up + cosine schedule is stretched to end at N",
    )
    train.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE", help=options_help)
    train.add_argument("--data-root", metavar="DIR", default=None, help=data_root_help)
    train.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        help="resume from the work dir's newest intact checkpoint, or from the given checkpoint",
    )
    train.add_argument(
        "--resume-or-start",
        action="store_true",
        help="resume like --resume if the work dir has a checkpoint, else start fresh",
    )
    train.add_argument(
        "--launcher",
        choices=["none", "pytorch"],
        default="none",
        help="'pytorch' under torchrun (CPU/gloo or GPU/NCCL)",
    )
    train.add_argument("--amp", action="store_true", help="mixed precision (AmpOptimWrapper, GPUs)")
    train.add_argument(
        "--verbose", action="store_true", help="print mmengine's environment, config and log lines on the console too"
    )

    test = add("test", "evaluate a checkpoint with a recipe's test set and metrics")
    test.add_argument("recipe", help="shipped recipe name or path to a config file")
    test.add_argument("checkpoint", help="checkpoint file (.pth) written by `rankssl train`")
    test.add_argument("--work-dir")
    test.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE", help=options_help)
    test.add_argument("--data-root", metavar="DIR", default=None, help=data_root_help)
    test.add_argument("--launcher", choices=["none", "pytorch"], default="none")
    test.add_argument("--verbose", action="store_true", help="print mmengine's log lines on the console too")

    export = add(
        "export", "write a checkpoint's trained backbone as a plain state_dict (torchvision names for ResNets)"
    )
    export.add_argument("checkpoint", help="checkpoint file (.pth) written by `rankssl train`")
    export.add_argument("out", help="output file, e.g. resnet18_groco.pth")

    add("list", "list every registered component with its kind and hosts")
    add("recipes", "list the shipped recipes")

    demo = add("demo", "the main job: GroCo and SimCLR on the embedded digits, then a kNN table")
    demo.add_argument("--work-dir", default="work_dirs/demo")
    demo.add_argument("--epochs", type=int, default=None, help="override both recipes' epochs")
    demo.add_argument(
        "--write-results",
        nargs="?",
        const="",
        default=None,
        metavar="CHECKOUT",
        help="record the numbers in benchmarks/demo_results.json and rewrite the README's and "
        "benchmarks/RESULTS.md's main-job lines (in this source checkout, or the one given)",
    )
    demo.add_argument("--verbose", action="store_true", help="print mmengine's log lines on the console too")

    analyze = add("analyze", "Hydra checkpoint: class-pair gates, overlap of active dimensions, CSV/NPZ, heatmaps")
    if "analyze" in argv:  # its arguments live with its code, which imports torch: only when used
        _add_analyze_arguments(analyze)
    return parser


def _add_analyze_arguments(parser: argparse.ArgumentParser) -> None:
    # Imported lazily by the analyze command itself; its arguments are declared there.
    from rankssl.mm.analyze import add_analyze_arguments

    add_analyze_arguments(parser)


COMMANDS = {
    "train": cmd_train,
    "test": cmd_test,
    "list": cmd_list,
    "recipes": cmd_recipes,
    "demo": cmd_demo,
    "export": cmd_export,
}


def run(argv: Optional[Sequence[str]] = None) -> int:
    """Parse ``argv`` and run the command; errors propagate as exceptions."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser(argv).parse_args(argv)
    if args.command == "analyze":
        from rankssl.mm.analyze import run_analyze

        return run_analyze(args)
    return COMMANDS[args.command](args)


def main(argv: Optional[Sequence[str]] = None, *, short_errors: Optional[bool] = None) -> int:
    """The ``rankssl`` command; returns the exit status.

    From the command line (``argv=None``: the ``rankssl`` script, ``python -m rankssl``)
    an error prints one or two lines and exits with status 1; ``--debug`` shows the
    traceback. Called from Python with an explicit ``argv``, errors propagate as
    exceptions unless ``short_errors=True``.
    """
    if "torch" not in sys.modules:
        # Before torch starts its OpenMP team: idle team threads sleep instead of spinning.
        # On a busy machine spinners are descheduled mid-op and every small op waits for
        # them (one GroCo/NT-Xent loss at batch 256, 2 threads: ~1 s spinning, ~70 ms
        # passive; benchmarks/contention.py). An explicit OMP_WAIT_POLICY wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if short_errors is None:
        short_errors = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if not short_errors or "--debug" in argv:
        return run(argv)
    try:
        return run(argv)
    except KeyboardInterrupt:
        print("rankssl: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the command line shows every error briefly
        print(short_error(exc), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
