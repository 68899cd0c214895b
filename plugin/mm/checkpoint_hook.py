"""mmengine's ``CheckpointHook``, made so that a run is never lost.

``AtomicCheckpointHook`` is the ``checkpoint`` hook of every rankssl recipe
(``recipes/_base_/default_runtime.py``); it takes all of ``CheckpointHook``'s arguments
and adds the following, each in its own module:

- atomic writes (:mod:`rankssl.mm.atomic_checkpoint_writes`, the base class): each checkpoint
  (``best_*`` too) and the ``last_checkpoint`` marker are written to a temporary file in the same
  folder, fsynced and renamed, so a kill leaves the previous file or the new one, never a torn
  one; outdated checkpoints are deleted only after the new one is in place;
- a checkpoint at every validation (not only every ``interval`` epochs), so a run
  shortened with ``train_cfg.max_epochs`` still leaves something to resume from (this module);
- a clean stop on SIGTERM/SIGINT (:mod:`rankssl.mm.stop_signals`): the current iteration
  finishes, a checkpoint is written, the process exits with status 128 + signal number (a
  second signal stops at once);
- random-number continuity (:mod:`rankssl.mm.rng_continuity`): the generators of every process
  (Python, NumPy, torch), those the data loader's sampler or dataset own, and the sampler's seed
  are saved (a loss's own generator travels in the model's state dict), and restored on resume,
  so a resumed run sees the same batches and augmentations as the uninterrupted one. Validation
  is kept off the training stream (the state at the end of a training epoch is put back before
  the next one);
- batch skipping (:mod:`rankssl.mm.batch_skipping`): a run stopped mid-epoch resumes at the next
  batch of that epoch: the batches already trained on are drawn again (same augmentations) and
  skipped without training;
- one run per work dir (:mod:`rankssl.mm.workdir_lock`): the work dir's lock is taken before the
  run, released after it (a process that dies releases it by itself);
- a validation cut short (a kill) is redone on resume (:mod:`rankssl.mm.validation_marker`): a
  checkpoint written before a validation carries a token that the finished validation writes to
  ``.rankssl_validated``; a resume from a checkpoint whose token is not there validates first;
- resume choice and check (:mod:`rankssl.mm.resume_start`): with ``resume=True`` and no
  ``load_from``, the newest intact checkpoint is resumed instead of trusting ``last_checkpoint``
  (what it skipped is logged); a checkpoint of another recipe or of a changed model is refused,
  naming the recipe or the tensor and both shapes; changed settings that the resumed optimizer and
  schedule state override (the learning rate, ...) are named in a warning;
- checked loading (:func:`rankssl.mm.checkpoint.check_runner_loads`): the runner's own loads
  (``load_from``, ``resume``) verify the file's CRCs and allow mmengine's checkpoint types while
  they run; nothing changes for the rest of the process.

Example (a recipe):
    >>> default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook', interval=10, save_last=True))
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, Dict, List, Optional

from mmengine.dist import is_main_process
from mmengine.logging import print_log
from mmengine.runner import BaseLoop

from rankssl.mm.atomic_checkpoint_writes import AtomicWriteCheckpointHook
from rankssl.mm.batch_skipping import skip_first_batches, stop_skipping
from rankssl.mm.checkpoint import check_runner_loads
from rankssl.mm.resume_start import choose_resume
from rankssl.mm.rng_continuity import capture_run_states, restore_run_states, restore_sampler_seed, sampler_seed
from rankssl.mm.stop_signals import StopOnSignal, exit_status
from rankssl.mm.validation_marker import mark_validated, new_token, validation_finished, validation_follows
from rankssl.mm.workdir_lock import WorkDirLock, hold_work_dir

__all__ = ["AtomicCheckpointHook", "RESUME_KEY"]

RESUME_KEY = "rankssl_resume"  # checkpoint entry: generator states, sampler seed, batches done in the epoch
INTERRUPTED_PREFIX = "interrupted_"


class AtomicCheckpointHook(AtomicWriteCheckpointHook):
    """``CheckpointHook`` with atomic writes, saves at validation and on signals, RNG continuity.

    Args:
        save_at_val: also save after each training epoch that is followed by validation.
        save_on_signal: on SIGTERM/SIGINT, save after the current iteration and exit.
        *args, **kwargs: mmengine ``CheckpointHook``'s arguments (``interval``,
            ``max_keep_ckpts``, ``save_last``, ``out_dir``, ...).

    Constructing the hook changes nothing outside it: signal handlers are set while
    training runs, mmengine's checkpoint loader is replaced only while this hook's runner loads.
    """

    def __init__(self, *args, save_at_val: bool = True, save_on_signal: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.save_at_val = save_at_val
        self.save_on_signal = save_on_signal
        self._stop = StopOnSignal()
        self._to_save: Optional[Dict[str, Any]] = None  # RESUME_KEY entry for the next save
        self._pending: Optional[Dict[str, Any]] = None  # to restore before the next training epoch
        self._epoch_start_states: Optional[List[Dict[str, Any]]] = None
        self._batches_done = 0
        self._lock: Optional[WorkDirLock] = None
        self._val_token: Optional[str] = None  # marked validated when the validation ends
        self._redo_validation = False

    # ------------------------------------------------------------------ run: lock, loading, resume choice
    def before_run(self, runner) -> None:
        # mmengine calls before_run just before it loads load_from / resumes: route those loads
        # through the checked loader, for this runner only.
        check_runner_loads(runner)
        # One training run per work dir, plain mmengine runs too (re-entrant: `rankssl train` holds it
        # already). Runner.train builds its loop before this hook; Runner.test/val (which may share the
        # work dir with a training run) do not, and take no lock.
        if isinstance(getattr(runner, "_train_loop", None), BaseLoop):
            self._lock = hold_work_dir(runner.work_dir, rank=runner.rank).acquire()
        try:
            choose_resume(runner)
        except BaseException:
            self._release_lock()
            raise

    def after_run(self, runner) -> None:
        self._release_lock()

    def _release_lock(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    # ------------------------------------------------------------------ training and validation
    def before_train(self, runner) -> None:
        super().before_train(runner)
        if self._redo_validation and getattr(runner, "_val_loop", None) is not None:
            # The checkpoint was written just before a validation that never finished (a kill):
            # run it now, as the uninterrupted run did (the training stream is restored after it).
            self._redo_validation = False
            print_log(
                f"The validation after epoch {runner.epoch} did not finish before the run stopped: running it now.",
                logger="current",
                level=30,
            )
            self._val_token = self._pending.get("validation_token") if self._pending else None
            runner.val_loop.run()
        if self.save_on_signal:
            self._stop.install()

    def after_val_epoch(self, runner, metrics) -> None:
        super().after_val_epoch(runner, metrics)
        token, self._val_token = self._val_token, None
        if token is not None and is_main_process() and os.path.isdir(runner.work_dir):
            mark_validated(runner.work_dir, token)

    def after_train(self, runner) -> None:
        self._stop.remove()
        super().after_train(runner)

    # ------------------------------------------------------------------ epochs: RNG continuity, batch skipping
    def before_train_epoch(self, runner) -> None:
        pending, self._pending = self._pending, None
        skip = int(pending.get("batches_done", 0)) if pending else 0
        if pending is not None:
            restore_run_states(runner, pending.get("rng_states") or [])
            if skip > 0:
                print_log(
                    f"Resuming inside epoch {runner.epoch + 1}: drawing and skipping its first {skip} "
                    "batches, trained on before the stop.",
                    logger="current",
                )
                skip_first_batches(runner.train_loop, skip)
        self._epoch_start_states = capture_run_states(runner)  # what a stop inside this epoch will save
        self._batches_done = skip

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._batches_done += 1
        super().after_train_iter(runner, batch_idx, data_batch, outputs)
        if self.save_on_signal and self._stop.requested(runner.world_size):
            self._save_and_exit(runner)

    def after_train_epoch(self, runner) -> None:
        stop_skipping(runner.train_loop)
        # Both the uninterrupted and a resumed run continue from this state (validation
        # in between draws from the generators and would otherwise shift the stream).
        self._pending = {"rng_states": capture_run_states(runner), "batches_done": 0}
        self._to_save = dict(self._pending, sampler_seed=sampler_seed(runner))
        validates = validation_follows(runner)
        if validates:  # redone on resume unless the marker says it finished
            self._val_token = new_token()
            self._to_save["validation_token"] = self._val_token
        if not self.by_epoch:
            return
        if (
            self.every_n_epochs(runner, self.interval, self.save_begin)
            or (self.save_last and self.is_last_train_epoch(runner))
            or (self.save_at_val and validates)
        ):
            runner.logger.info(f"Saving checkpoint at {runner.epoch + 1} epochs")
            self._save_checkpoint(runner)
        self._to_save = None

    # ------------------------------------------------------------------ checkpoint contents
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._to_save is not None:
            checkpoint[RESUME_KEY] = self._to_save

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not getattr(runner, "_resume", False):
            return  # load_from for fine-tuning or testing: no training state to continue
        saved = checkpoint.get(RESUME_KEY)
        if not saved:
            return
        self._pending = saved
        token = saved.get("validation_token")
        self._redo_validation = token is not None and not validation_finished(runner.work_dir, token)
        restore_sampler_seed(runner, saved.get("sampler_seed"))

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        super()._save_checkpoint_with_step(runner, step, meta)
        if is_main_process() and os.path.isdir(self.out_dir):
            for name in os.listdir(self.out_dir):  # a regular checkpoint supersedes an interrupted one
                if name.startswith(INTERRUPTED_PREFIX) and name.endswith(".pth"):
                    os.remove(os.path.join(self.out_dir, name))

    # ------------------------------------------------------------------ stop on a signal
    def _save_and_exit(self, runner) -> None:
        signum = self._stop.signal
        assert signum is not None, "called only after a stop signal arrived"
        # mmengine restarts an epoch-based run at the start of the epoch in meta; the
        # batches already done are then drawn again with the same generators and skipped.
        meta = dict(epoch=runner.epoch, iter=runner.iter + 1)
        self._to_save = (
            {
                "rng_states": self._epoch_start_states,
                "batches_done": self._batches_done,
                "sampler_seed": sampler_seed(runner),
            }
            if self.by_epoch
            else None
        )
        filename = f"{INTERRUPTED_PREFIX}iter_{runner.iter + 1}.pth"
        self.write_checkpoint(runner, filename, meta)
        self._stop.remove()
        message = (
            f"rankssl: stopped by {signal.Signals(signum).name} after iteration {runner.iter + 1}; saved "
            f"{os.path.join(self.out_dir, filename)}. Continue with `--resume` (or resume=True)."
        )
        print_log(message, logger="current")
        print(message, file=sys.stderr, flush=True)
        self._release_lock()
        raise SystemExit(exit_status(signum))
