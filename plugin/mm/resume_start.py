"""Before a resumed run trains: pick the checkpoint to resume, and check that it fits the run.

With ``resume=True`` and no ``load_from``, :func:`choose_resume` picks the newest intact
checkpoint of the work dir (:func:`~rankssl.mm.checkpoint.select_resume_checkpoint`)
instead of trusting mmengine's ``last_checkpoint`` marker, and logs what it skipped.
:func:`check_resume_fits` refuses a checkpoint of another recipe or of a changed model
(:mod:`rankssl.mm.resume_check`) and warns about changed settings the checkpoint overrides.
"""

from __future__ import annotations

import os

from mmengine.logging import print_log

__all__ = ["choose_resume", "check_resume_fits"]


def choose_resume(runner) -> None:
    """Set ``runner``'s checkpoint to resume from (or turn resuming off), then check it fits."""
    if not getattr(runner, "_resume", False):
        return
    if getattr(runner, "_load_from", None) is None:
        from rankssl.mm.checkpoint import select_resume_checkpoint

        choice = select_resume_checkpoint(runner.work_dir)
        for line in choice.messages():
            print_log(line, logger="current", level=30 if line.startswith(("skipped", "nothing")) else 20)
        if choice.path is None:
            print_log("resume=True but nothing to resume: training starts from scratch.", logger="current", level=30)
            runner._resume = False
            return
        runner._load_from = choice.path
    check_resume_fits(runner, runner._load_from)


def check_resume_fits(runner, path: str) -> None:
    """Refuse a checkpoint that does not fit the run (``ValueError``); say which changed settings it overrides."""
    if not (isinstance(path, str) and os.path.isfile(path)):
        return  # remote or missing: mmengine's own loader reports it
    from mmengine.model import is_model_wrapper

    from rankssl.mm.checkpoint import load_checkpoint_file
    from rankssl.mm.resume_check import check_resume

    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    report = check_resume(
        path, load_checkpoint_file(path, map_location="cpu"), runner.cfg, model.state_dict(), runner.experiment_name
    )
    if report.errors:
        raise ValueError(report.error_message())
    for line in report.messages():  # warnings reach the console in quiet runs too
        print_log(line, logger="current", level=30)
