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

mmengine is imported only by the commands that need it, so ``rankssl --help`` and
``rankssl recipes`` answer at once.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from typing import List, Optional, Sequence

__all__ = ["main", "run", "CommandError", "load_config", "set_epochs", "build_runner"]

DEMO_RECIPES = (
    ("GroCo", "groco_smallcnn_1xb256-50e_digits"),
    ("SimCLR (lightly NTXentLoss)", "simclr_smallcnn_1xb256-50e_digits"),
)

DESCRIPTION = """Ranking- and sorting-based self-supervised learning (GroCo, S2R2, Hydra) with
mmengine: train and evaluate the shipped recipes, list components, run the demo."""
EPILOG = """examples:
  rankssl demo                                   the main job (GroCo vs SimCLR on the embedded digits)
  rankssl recipes                                the shipped recipes
  rankssl train groco_smallcnn_1xb256-50e_digits --epochs 20
  rankssl test RECIPE work_dirs/RECIPE/epoch_20.pth
Add --debug to any command to see the full traceback of an error."""


class CommandError(Exception):
    """A mistake in the command line or its inputs; shown without a traceback."""


# ----------------------------------------------------------------------------- parser
def _parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The argument parser; ``argv`` decides whether the analyze command's arguments are needed."""
    from rankssl import __version__

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error")

    parser = argparse.ArgumentParser(prog="rankssl", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, parents=[common])
    parser.add_argument("--version", action="version", version=f"rankssl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".", parents=[common])

    data_root_help = ("folder of the recipe's data set: sets data_root of every dataset (train, kNN bank and "
                      "queries, test)")
    options_help = "override config entries: KEY=VALUE ... (e.g. optim_wrapper.optimizer.lr=0.1)"
    train = add("train", "train a recipe")
    train.add_argument("recipe", help="shipped recipe name (see `rankssl recipes`) or path to a config file")
    train.add_argument("--work-dir", help="where logs, checkpoints, scalars and plots go "
                       "(default: work_dirs/<recipe name>)")
    train.add_argument("--epochs", type=int, default=None,
                       help="train N epochs; the warm-up + cosine schedule is stretched to end at N")
    train.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE", help=options_help)
    train.add_argument("--data-root", metavar="DIR", default=None, help=data_root_help)
    train.add_argument("--resume", nargs="?", const="auto", default=None,
                       help="resume from the work dir's newest intact checkpoint, or from the given checkpoint")
    train.add_argument("--resume-or-start", action="store_true",
                       help="resume like --resume if the work dir has a checkpoint, else start fresh")
    train.add_argument("--launcher", choices=["none", "pytorch"], default="none",
                       help="'pytorch' under torchrun (CPU/gloo or GPU/NCCL)")
    train.add_argument("--amp", action="store_true", help="mixed precision (AmpOptimWrapper, GPUs)")
    train.add_argument("--verbose", action="store_true",
                       help="print mmengine's environment, config and log lines on the console too")

    test = add("test", "evaluate a checkpoint with a recipe's test set and metrics")
    test.add_argument("recipe", help="shipped recipe name or path to a config file")
    test.add_argument("checkpoint", help="checkpoint file (.pth) written by `rankssl train`")
    test.add_argument("--work-dir")
    test.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE", help=options_help)
    test.add_argument("--data-root", metavar="DIR", default=None, help=data_root_help)
    test.add_argument("--launcher", choices=["none", "pytorch"], default="none")
    test.add_argument("--verbose", action="store_true", help="print mmengine's log lines on the console too")

    export = add("export", "write a checkpoint's trained backbone as a plain state_dict (torchvision names "
                           "for ResNets)")
    export.add_argument("checkpoint", help="checkpoint file (.pth) written by `rankssl train`")
    export.add_argument("out", help="output file, e.g. resnet18_groco.pth")

    add("list", "list every registered component with its kind and hosts")
    add("recipes", "list the shipped recipes")

    demo = add("demo", "the main job: GroCo and SimCLR on the embedded digits, then a kNN table")
    demo.add_argument("--work-dir", default="work_dirs/demo")
    demo.add_argument("--epochs", type=int, default=None, help="override both recipes' epochs")
    demo.add_argument("--write-results", nargs="?", const="", default=None, metavar="CHECKOUT",
                      help="record the numbers in benchmarks/demo_results.json and rewrite the README's and "
                           "benchmarks/RESULTS.md's main-job lines (in this source checkout, or the one given)")
    demo.add_argument("--verbose", action="store_true", help="print mmengine's log lines on the console too")

    analyze = add("analyze", "Hydra checkpoint: class-pair gates, overlap of active dimensions, CSV/NPZ, heatmaps")
    if "analyze" in argv:  # its arguments live with its code, which imports torch: only when used
        _add_analyze_arguments(analyze)
    return parser


def _add_analyze_arguments(parser: argparse.ArgumentParser) -> None:
    # Imported lazily by the analyze command itself; its arguments are declared there.
    from rankssl.mm.analyze import add_analyze_arguments

    add_analyze_arguments(parser)


# ----------------------------------------------------------------------------- config
def parse_cfg_options(pairs: Sequence[str]) -> dict:
    """``['a.b=1', 'c=[1,2]']`` -> ``{'a.b': 1, 'c': [1, 2]}`` with mmengine's value syntax."""
    from mmengine.config import DictAction

    for pair in pairs:
        if "=" not in pair or pair.startswith("="):
            raise CommandError(f"--cfg-options takes KEY=VALUE pairs, got {pair!r}; "
                               "e.g. --cfg-options train_cfg.max_epochs=20 optim_wrapper.optimizer.lr=0.1")
    namespace = argparse.Namespace()
    DictAction(option_strings=["--cfg-options"], dest="options")(None, namespace, list(pairs))
    return namespace.options


def load_config(recipe: str, work_dir: Optional[str] = None, cfg_options: Optional[dict] = None):
    """Load a recipe (name or path), merge overrides, set a default work dir.

    A ``train_cfg.max_epochs`` override stretches the recipe's schedule like
    :func:`set_epochs` when the schedule ended at the recipe's own last epoch, and
    warns when it ends elsewhere.
    """
    from mmengine.config import Config

    from rankssl.recipes import find_recipe

    path = find_recipe(recipe)
    cfg = Config.fromfile(path)
    recipe_epochs = (cfg.get("train_cfg") or {}).get("max_epochs")
    if cfg_options:
        from rankssl.mm.option_types import check_option_types

        try:  # lr=abc, widths=7, val_interval=0: named before anything is built
            check_option_types(cfg, cfg_options)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        cfg.merge_from_dict(cfg_options)
        epochs = (cfg.get("train_cfg") or {}).get("max_epochs")
        if epochs is not None and epochs != recipe_epochs:
            _check_epochs(epochs, "train_cfg.max_epochs")
            if _schedule_end(cfg) == recipe_epochs:
                set_epochs(cfg, epochs)
            elif _schedule_end(cfg) not in (None, epochs):
                warnings.warn(f"train_cfg.max_epochs={epochs} but the learning-rate schedule ends at epoch "
                              f"{_schedule_end(cfg)}; use --epochs {epochs} to stretch it.")
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = os.path.join("work_dirs", os.path.splitext(os.path.basename(path))[0])
    return cfg


def _schedule_end(cfg) -> Optional[int]:
    schedulers = cfg.get("param_scheduler") or []
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    if not schedulers or not schedulers[-1].get("by_epoch", True):
        return None
    return schedulers[-1].get("end")


def _check_epochs(epochs, name: str) -> None:
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise CommandError(f"{name} must be a whole number of epochs >= 1, got {epochs!r}; "
                           "a run of zero epochs would train nothing.")


def set_epochs(cfg, epochs: int) -> None:
    """Change an epoch-based recipe's length, stretching its last scheduler to the new end.

    The warm-up keeps its length (shortened if the run is shorter than it); the last
    scheduler (the cosine decay) begins where the warm-up ends and ends at ``epochs``.
    """
    _check_epochs(epochs, "epochs")
    cfg.train_cfg.max_epochs = epochs
    schedulers = cfg.get("param_scheduler") or []
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    if schedulers:
        last = schedulers[-1]
        begin = min(last.get("begin", 0), max(epochs - 1, 0))
        last["begin"], last["end"] = begin, epochs
        if "T_max" in last:
            last["T_max"] = max(epochs - begin, 1)
        for sched in schedulers[:-1]:
            sched["end"] = min(sched.get("end", epochs), begin) or 1
    cfg.train_cfg.val_interval = min(cfg.train_cfg.get("val_interval", epochs), epochs)


def check_data(cfg) -> None:
    """Fail early, with the data set's own instructions, when a recipe's data is not on disk."""
    from rankssl.registry import DATASETS

    def datasets(node):
        if isinstance(node, dict):
            if "type" in node and ("data_root" in node or node.get("type") in ("CIFAR10", "STL10", "ImageFolder")):
                yield node
            for value in node.values():
                yield from datasets(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                yield from datasets(value)

    for key in ("train_dataloader", "val_dataloader", "test_dataloader"):
        for dataset in datasets((cfg.get(key) or {}).get("dataset")):
            cls = dataset["type"] if not isinstance(dataset["type"], str) else DATASETS.get(dataset["type"])
            check = getattr(cls, "check_data_root", None)
            if check is not None:
                if "data_root" in dataset:
                    check(dataset["data_root"])
                else:
                    check()


def setup_launcher(cfg, launcher: str) -> None:
    """Prepare ``cfg`` (and the process group) for ``launcher``; CPU-only machines get gloo."""
    import torch

    cfg.launcher = launcher
    if launcher == "none":
        return
    if launcher != "pytorch":
        raise ValueError(f"launcher must be 'none' or 'pytorch', got {launcher!r}.")
    missing = [k for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise CommandError(f"--launcher pytorch needs torchrun's environment ({', '.join(missing)} missing): "
                           "run `torchrun --nproc_per_node N -m rankssl train RECIPE --launcher pytorch`.")
    if torch.cuda.is_available():
        return  # mmengine's init_dist handles NCCL and sets the device
    from rankssl.mm.launch import init_cpu_process_group

    init_cpu_process_group(cfg)  # honours env_cfg.dist_cfg.timeout (default 300 s)
    wrapper = dict(cfg.get("model_wrapper_cfg") or {})
    wrapper["type"] = "rankssl.CPUDistributedDataParallel"
    wrapper.setdefault("broadcast_buffers", False)
    cfg.model_wrapper_cfg = wrapper
    if cfg.get("sync_bn"):
        warnings.warn("SyncBatchNorm needs GPUs; running with per-process BatchNorm on CPU.")
        cfg.pop("sync_bn")


def cpu_fallbacks(cfg) -> None:
    """AMP needs an accelerator: use a plain OptimWrapper on CPU-only machines."""
    import torch

    if torch.cuda.is_available():
        return
    wrapper = cfg.get("optim_wrapper") or {}
    if wrapper.get("type") == "AmpOptimWrapper":
        warnings.warn("AmpOptimWrapper needs a GPU; training in float32 with OptimWrapper.")
        wrapper["type"] = "OptimWrapper"
        for key in ("loss_scale", "dtype"):
            wrapper.pop(key, None)


def build_runner(cfg, progress: Optional[str] = None):
    """mmengine ``Runner`` for ``cfg``; with ``progress`` (a label), a quiet console and progress lines."""
    from rankssl.mm.checkpoint import check_runner_loads

    if progress is not None:
        from rankssl.mm.progress import build_quiet_runner, log_file_of

        runner = build_quiet_runner(cfg, progress)
        print(f"[{progress}] full log (environment, config, mmengine lines): {log_file_of(runner)}", flush=True)
    else:
        from mmengine.runner import Runner

        runner = Runner.from_cfg(cfg)
    check_runner_loads(runner)  # its load_from / resume verify the file, whatever its checkpoint hook
    return runner


# ----------------------------------------------------------------------------- commands
def _recipe_label(cfg) -> str:
    return os.path.splitext(os.path.basename(cfg.filename or "recipe"))[0]


def _load_average() -> Optional[float]:
    """The machine's 1-minute load average (None where the OS has none)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _apply_data_root(cfg, args) -> None:
    if getattr(args, "data_root", None) is not None:
        from rankssl.mm.data_root import set_data_root

        try:
            set_data_root(cfg, args.data_root)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc


def cmd_train(args) -> int:
    if args.epochs is not None:
        _check_epochs(args.epochs, "--epochs")
    cfg = load_config(args.recipe, args.work_dir, parse_cfg_options(args.cfg_options))
    if args.epochs is not None:
        set_epochs(cfg, args.epochs)
    _apply_data_root(cfg, args)
    check_data(cfg)
    from rankssl.mm.workdir_lock import WorkDirInUseError, hold_work_dir

    try:
        lock = hold_work_dir(cfg.work_dir).acquire()  # before any work: one run per work dir
    except WorkDirInUseError as exc:
        raise CommandError(str(exc)) from None
    try:
        return _train(args, cfg)
    finally:
        lock.release()


def _train(args, cfg) -> int:
    if args.amp:
        cfg.optim_wrapper["type"] = "AmpOptimWrapper"
        cfg.optim_wrapper.setdefault("loss_scale", "dynamic")
    if args.resume == "auto" or args.resume_or_start:
        from rankssl.mm.checkpoint import select_resume_checkpoint

        choice = select_resume_checkpoint(cfg.work_dir)
        if choice.path is None and not args.resume_or_start:
            raise FileNotFoundError("--resume: " + "; ".join(choice.messages()) +
                                    ". Train without --resume to start fresh (or pass --resume-or-start).")
        for line in choice.messages():
            print(f"rankssl: {line}", file=sys.stderr)
        cfg.resume, cfg.load_from = choice.path is not None, choice.path
    elif args.resume:
        cfg.resume, cfg.load_from = True, args.resume
    setup_launcher(cfg, args.launcher)
    cpu_fallbacks(cfg)
    label = _recipe_label(cfg)
    print(f"[{label}] training {cfg.train_cfg.get('max_epochs', '?')} epochs; work dir "
          f"{os.path.abspath(cfg.work_dir)}", flush=True)
    build_runner(cfg, progress=None if args.verbose else label).train()
    print(f"[{label}] done: checkpoints, scalars.json, loss.png and metrics.png in {os.path.abspath(cfg.work_dir)}")
    return 0


def cmd_test(args) -> int:
    cfg = load_config(args.recipe, args.work_dir, parse_cfg_options(args.cfg_options))
    if not os.path.isfile(args.checkpoint):
        raise CommandError(f"checkpoint {args.checkpoint!r} not found; give the path of a .pth file written by "
                           "`rankssl train` (e.g. work_dirs/RECIPE/epoch_N.pth).")
    from rankssl.mm.checkpoint import load_checkpoint_file
    from rankssl.mm.checkpoint_match import check_checkpoint_matches

    _apply_data_root(cfg, args)
    check_data(cfg)
    checkpoint = load_checkpoint_file(args.checkpoint, map_location="cpu")
    check_checkpoint_matches(checkpoint, cfg.model, args.checkpoint, _recipe_label(cfg))  # before any build
    cfg.load_from = args.checkpoint
    setup_launcher(cfg, args.launcher)
    cpu_fallbacks(cfg)
    runner = build_runner(cfg, progress=None if args.verbose else _recipe_label(cfg))
    check_checkpoint_matches(checkpoint, cfg.model, args.checkpoint, _recipe_label(cfg), model=runner.model)
    del checkpoint
    metrics = runner.test()
    for key, value in metrics.items():
        print(f"{key}\t{value:.2f}")
    return 0


def component_rows() -> List[tuple]:
    """(kind, name, hosts, module) of every component registered in the rankssl scope."""
    import rankssl.registry as registry
    from rankssl.registry._catalog import CATALOG

    registry.import_all()
    rows = []
    for reg in registry.ALL_REGISTRIES:
        for name, obj in sorted(reg.module_dict.items()):
            hosts = CATALOG.get((reg.name, name), "mmengine")
            rows.append((reg.name, name, hosts, getattr(obj, "__module__", "?")))
    return rows


def cmd_list(args) -> int:
    from rankssl.registry import plugins

    rows = component_rows()
    widths = [max(len(r[i]) for r in rows + [("kind", "name", "hosts", "module")]) for i in range(3)]
    print(f"{'kind':<{widths[0]}}  {'name':<{widths[1]}}  {'hosts':<{widths[2]}}  module")
    for kind, name, hosts, module in rows:
        print(f"{kind:<{widths[0]}}  {name:<{widths[1]}}  {hosts:<{widths[2]}}  {module}")
    print(f"\n{len(rows)} components in scope 'rankssl' (use type='NAME' with default_scope='rankssl', "
          "or type='rankssl.NAME').")
    for line in plugins.report_lines():  # failed plugins, and names a plugin tried to take over
        print(line)
    return 0


def cmd_recipes(args) -> int:
    from rankssl.recipes import RECIPES_DIR, list_recipes

    for name in list_recipes():
        print(name)
    print(f"\n({RECIPES_DIR}; `rankssl train NAME`)")
    return 0


def demo_baselines(cfg) -> dict:
    """Raw-pixel and random-init weighted-kNN accuracies (k=20, T=0.07) on the recipe's kNN split."""
    import torch
    from mmengine.registry import DefaultScope

    from rankssl.mm.builder import build_module
    from rankssl.mm.evaluation import knn_accuracy

    val = cfg.val_dataloader.dataset
    bank, query = dict(val.bank), dict(val.query)
    out = {"raw pixels": knn_accuracy(bank, query, lambda x: x.flatten(1))}
    torch.manual_seed(cfg.get("randomness", {}).get("seed", 0))
    with DefaultScope.overwrite_default_scope("rankssl"):
        model = build_module(dict(cfg.model)).eval()
    out["random init"] = knn_accuracy(
        bank, query, lambda x: model.extract_feat(model.data_preprocessor({"inputs": [x]})["inputs"][0][0]))
    return out


def _set_plot_baselines(cfg, baselines: dict) -> None:
    for hook in cfg.get("custom_hooks") or []:
        if hook.get("type") in ("CurvesHook", "rankssl.CurvesHook"):
            hook["baselines"] = {f"knn/top1 {name}": value for name, value in baselines.items()}


def cmd_demo(args) -> int:
    import torch

    from rankssl import demo_results

    checkout = None
    if args.write_results is not None:  # fail before training, not after
        if args.epochs is not None:
            raise CommandError("--write-results records the main job as `make demo` runs it; drop --epochs.")
        checkout = demo_results.find_checkout(args.write_results or None)
    if args.epochs is not None:
        _check_epochs(args.epochs, "--epochs")
    torch.set_flush_denormal(True)
    load = _load_average()
    start = time.time()
    rows = []
    baselines = None
    for method, recipe in DEMO_RECIPES:
        cfg = load_config(recipe, os.path.join(args.work_dir, recipe))
        if args.epochs is not None:
            set_epochs(cfg, args.epochs)
        if baselines is None:
            print("Baselines without training (raw pixels, random init) ...", flush=True)
            baselines = demo_baselines(cfg)
            print("  " + ", ".join(f"{name} {acc:.1f}%" for name, acc in baselines.items()), flush=True)
        _set_plot_baselines(cfg, baselines)
        print(f"Training {method} ({recipe}, {cfg.train_cfg.max_epochs} epochs)", flush=True)
        t0 = time.time()
        runner = build_runner(cfg, progress=None if args.verbose else method.split(" ")[0])
        runner.train()
        rows.append((method, _last_knn(runner), time.time() - t0, cfg.train_cfg.max_epochs))
    total = time.time() - start
    print("\nMain job: self-supervised training on the embedded digits canvas "
          "(weighted kNN, k=20, T=0.07, 1,437 train / 360 test)")
    print(f"{'method':<30}{'kNN top-1 (%)':>15}{'epochs':>8}{'time (s)':>10}")
    for method, knn, seconds, epochs in rows:
        print(f"{method:<30}{knn:>15.1f}{epochs:>8}{seconds:>10.0f}")
    for name, acc in baselines.items():
        print(f"{name + ' (no training)':<30}{acc:>15.1f}{'-':>8}{'-':>10}")
    print(f"total wall time {total:.0f} s; work dir {os.path.abspath(args.work_dir)} "
          "(checkpoints, logs, scalars.json, loss.png, metrics.png per method)")
    if checkout is not None:
        record = demo_results.make_record(rows, baselines, total, sys.argv if sys.argv else None, load_average=load,
                                          load_average_at_end=_load_average())
        for path in demo_results.write(checkout, record):
            print(f"wrote {path}")
    return 0


def _last_knn(runner) -> float:
    from rankssl.mm.hooks import CurvesHook

    for hook in runner.hooks:
        if isinstance(hook, CurvesHook) and hook.val:
            return hook.val[-1].get("knn/top1", float("nan"))
    return float(runner.val().get("knn/top1", float("nan")))


def cmd_export(args) -> int:
    from rankssl.mm.export import export_backbone

    if not os.path.isfile(args.checkpoint):
        raise CommandError(f"checkpoint {args.checkpoint!r} not found; give the path of a .pth file written by "
                           "`rankssl train` (e.g. work_dirs/RECIPE/epoch_N.pth).")
    print(export_backbone(args.checkpoint, args.out))
    return 0


COMMANDS = {"train": cmd_train, "test": cmd_test, "list": cmd_list, "recipes": cmd_recipes, "demo": cmd_demo,
            "export": cmd_export}


def run(argv: Optional[Sequence[str]] = None) -> int:
    """Parse ``argv`` and run the command; errors propagate as exceptions."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser(argv).parse_args(argv)
    if args.command == "analyze":
        from rankssl.mm.analyze import run_analyze

        return run_analyze(args)
    return COMMANDS[args.command](args)


def _short_error(exc: BaseException) -> str:
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    message = str(message).strip() or type(exc).__name__
    if isinstance(exc, (KeyError, TypeError, RuntimeError)) and not isinstance(exc, CommandError):
        message = f"{type(exc).__name__}: {message}"  # names a recipe entry or a component's argument
    return f"rankssl: error: {message}\n(add --debug to see the full traceback)"


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
        print(_short_error(exc), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
