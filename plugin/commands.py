"""The ``rankssl`` commands that run recipes and inspect the package: train, test, export, list, recipes.

Each ``cmd_*`` takes the parsed arguments (:mod:`rankssl.cli`) and returns the exit status;
:func:`build_runner` builds the mmengine ``Runner`` they share (and the demo,
:mod:`rankssl.demo`). Config handling lives in :mod:`rankssl.run_config`; host packages are
imported inside the commands, so ``rankssl --help`` stays fast.
"""

from __future__ import annotations

import os
import sys
from typing import List, Optional

from rankssl.errors import CommandError
from rankssl.run_config import (
    apply_data_root,
    check_data,
    check_epochs,
    cpu_fallbacks,
    load_config,
    parse_cfg_options,
    set_epochs,
    setup_launcher,
)

__all__ = [
    "build_runner",
    "recipe_label",
    "component_rows",
    "cmd_train",
    "cmd_test",
    "cmd_export",
    "cmd_list",
    "cmd_recipes",
]


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


def recipe_label(cfg) -> str:
    """The recipe's file name without ``.py``: the label of its progress lines."""
    return os.path.splitext(os.path.basename(cfg.filename or "recipe"))[0]


def cmd_train(args) -> int:
    if args.epochs is not None:
        check_epochs(args.epochs, "--epochs")
    cfg = load_config(args.recipe, args.work_dir, parse_cfg_options(args.cfg_options))
    if args.epochs is not None:
        set_epochs(cfg, args.epochs)
    apply_data_root(cfg, args.data_root)
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
            raise FileNotFoundError(
                "--resume: "
                + "; ".join(choice.messages())
                + ". Train without --resume to start fresh (or pass --resume-or-start)."
            )
        for line in choice.messages():
            print(f"rankssl: {line}", file=sys.stderr)
        cfg.resume, cfg.load_from = choice.path is not None, choice.path
    elif args.resume:
        cfg.resume, cfg.load_from = True, args.resume
    setup_launcher(cfg, args.launcher)
    cpu_fallbacks(cfg)
    label = recipe_label(cfg)
    print(
        f"[{label}] training {cfg.train_cfg.get('max_epochs', '?')} epochs; work dir {os.path.abspath(cfg.work_dir)}",
        flush=True,
    )
    build_runner(cfg, progress=None if args.verbose else label).train()
    print(f"[{label}] done: checkpoints, scalars.json, loss.png and metrics.png in {os.path.abspath(cfg.work_dir)}")
    return 0


def cmd_test(args) -> int:
    cfg = load_config(args.recipe, args.work_dir, parse_cfg_options(args.cfg_options))
    if not os.path.isfile(args.checkpoint):
        raise CommandError(
            f"checkpoint {args.checkpoint!r} not found; give the path of a .pth file written by "
            "`rankssl train` (e.g. work_dirs/RECIPE/epoch_N.pth)."
        )
    from rankssl.mm.checkpoint import load_checkpoint_file
    from rankssl.mm.checkpoint_match import check_checkpoint_matches

    apply_data_root(cfg, args.data_root)
    check_data(cfg)
    checkpoint = load_checkpoint_file(args.checkpoint, map_location="cpu")
    check_checkpoint_matches(checkpoint, cfg.model, args.checkpoint, recipe_label(cfg))  # before any build
    cfg.load_from = args.checkpoint
    setup_launcher(cfg, args.launcher)
    cpu_fallbacks(cfg)
    runner = build_runner(cfg, progress=None if args.verbose else recipe_label(cfg))
    check_checkpoint_matches(checkpoint, cfg.model, args.checkpoint, recipe_label(cfg), model=runner.model)
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
    print(
        f"\n{len(rows)} components in scope 'rankssl' (use type='NAME' with default_scope='rankssl', "
        "or type='rankssl.NAME')."
    )
    for line in plugins.report_lines():  # failed plugins, and names a plugin tried to take over
        print(line)
    return 0


def cmd_recipes(args) -> int:
    from rankssl.recipes import RECIPES_DIR, list_recipes

    for name in list_recipes():
        print(name)
    print(f"\n({RECIPES_DIR}; `rankssl train NAME`)")
    return 0


def cmd_export(args) -> int:
    from rankssl.mm.export import export_backbone

    if not os.path.isfile(args.checkpoint):
        raise CommandError(
            f"checkpoint {args.checkpoint!r} not found; give the path of a .pth file written by "
            "`rankssl train` (e.g. work_dirs/RECIPE/epoch_N.pth)."
        )
    print(export_backbone(args.checkpoint, args.out))
    return 0
