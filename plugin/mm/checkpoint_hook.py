"""mmengine's ``CheckpointHook``, made so that a run is never lost.

``AtomicCheckpointHook`` is the ``checkpoint`` hook of every rankssl recipe
(``recipes/_base_/default_runtime.py``); it takes all of ``CheckpointHook``'s arguments
and adds:

- atomic writes: each checkpoint (``best_*`` too) and the ``last_checkpoint`` marker are written to a
  temporary file in the same folder, fsynced and renamed, so a kill leaves the previous
  file or the new one, never a torn one; outdated checkpoints are deleted only after
  the new one is in place;
- a checkpoint at every validation (not only every ``interval`` epochs), so a run
  shortened with ``train_cfg.max_epochs`` still leaves something to resume from;
- a clean stop on SIGTERM/SIGINT: the current iteration finishes, a checkpoint is
  written, the process exits with status 128 + signal number (a second signal stops at
  once);
- random-number continuity: the generators of every process (Python, NumPy, torch),
  those the data loader's sampler or dataset own, and the sampler's seed are saved
  (a loss's own generator travels in the model's state dict), and restored on resume,
  so a resumed run sees the same batches and augmentations as the uninterrupted one. Validation is kept off the training
  stream (the state at the end of a training epoch is put back before the next one), and
  a run stopped mid-epoch resumes at the next batch of that epoch: the batches already
  trained on are drawn again (same augmentations) and skipped without training;
- one run per work dir: the work dir's lock (:mod:`rankssl.mm.workdir_lock`) is taken
  before the run, released after it (a process that dies releases it by itself);
- a validation cut short (a kill) is redone on resume: a checkpoint written before a
  validation carries a token that the finished validation writes to ``.rankssl_validated``;
  a resume from a checkpoint whose token is not there validates first;
- resume fallback for plain mmengine too: with ``resume=True`` and no ``load_from``,
  it picks the newest intact checkpoint (``select_resume_checkpoint``) instead of
  trusting ``last_checkpoint``, and logs what it skipped;
- a resume is compared with the checkpoint before training (:mod:`rankssl.mm.resume_check`):
  a checkpoint of another recipe or of a changed model is refused, naming the recipe or the
  tensor and both shapes; changed settings that the resumed optimizer and schedule state
  override (the learning rate, ...) are named in a warning.

Example (a recipe):
    >>> default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook', interval=10, save_last=True))
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import uuid
from typing import Any, Dict, Optional

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log
from mmengine.runner import BaseLoop

from rankssl.mm.checkpoint import (
    atomic_write_text,
    install_checkpoint_safety,
    publish,
    remove_stale_temporaries,
    select_resume_checkpoint,
    temporary_path,
)
from rankssl.mm.rng_state import (
    capture_generators,
    gather_rng_states,
    loader_generators,
    restore_generators,
    restore_rng_state,
)
from rankssl.mm.workdir_lock import hold_work_dir

__all__ = ["AtomicCheckpointHook", "RESUME_KEY"]

RESUME_KEY = "rankssl_resume"  # checkpoint entry: generator states, sampler seed, batches done in the epoch
INTERRUPTED_PREFIX = "interrupted_"
VALIDATED_NAME = ".rankssl_validated"  # the token of the last checkpoint whose validation finished


def _read_validated(work_dir: str) -> Optional[str]:
    try:
        with open(os.path.join(work_dir, VALIDATED_NAME)) as f:
            return f.read().strip()
    except OSError:
        return None

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _SkipFirstBatches:
    """A dataloader that draws and discards its first ``n`` batches (then behaves as the original)."""

    def __init__(self, loader, n: int) -> None:
        self._loader, self._n = loader, n

    def __iter__(self):
        iterator = iter(self._loader)
        for _ in range(self._n):
            next(iterator, None)
        return iterator

    def __len__(self) -> int:
        return len(self._loader)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` with atomic writes, saves at validation and on signals, RNG continuity.

    Args:
        save_at_val: also save after each training epoch that is followed by validation.
        save_on_signal: on SIGTERM/SIGINT, save after the current iteration and exit.
        *args, **kwargs: mmengine ``CheckpointHook``'s arguments (``interval``,
            ``max_keep_ckpts``, ``save_last``, ``out_dir``, ...).
    """

    def __init__(self, *args, save_at_val: bool = True, save_on_signal: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        install_checkpoint_safety()
        self.save_at_val = save_at_val
        self.save_on_signal = save_on_signal
        self._to_save: Optional[Dict[str, Any]] = None  # RESUME_KEY entry for the next save
        self._pending: Optional[Dict[str, Any]] = None  # to restore before the next training epoch
        self._epoch_start_states = None
        self._signal: Optional[int] = None
        self._previous_handlers: Dict[int, Any] = {}
        self._active = False
        self._batches_done = 0
        self._lock = None
        self._val_token: Optional[str] = None  # written to VALIDATED_NAME when the validation ends
        self._redo_validation = False

    # ------------------------------------------------------------------ resume choice
    def before_run(self, runner) -> None:
        # One training run per work dir, plain mmengine runs too (re-entrant: `rankssl train` holds it
        # already). Runner.train builds its loop before this hook; Runner.test/val (which may share the
        # work dir with a training run) do not, and take no lock.
        if isinstance(getattr(runner, "_train_loop", None), BaseLoop):
            self._lock = hold_work_dir(runner.work_dir, rank=runner.rank).acquire()
        try:
            self._choose_and_check_resume(runner)
        except BaseException:
            self._release_lock()
            raise

    def _choose_and_check_resume(self, runner) -> None:
        if not getattr(runner, "_resume", False):
            return
        if getattr(runner, "_load_from", None) is None:
            choice = select_resume_checkpoint(runner.work_dir)
            for line in choice.messages():
                print_log(line, logger="current", level=30 if line.startswith(("skipped", "nothing")) else 20)
            if choice.path is None:
                print_log("resume=True but nothing to resume: training starts from scratch.", logger="current",
                          level=30)
                runner._resume = False
                return
            runner._load_from = choice.path
        self._check_resume(runner, runner._load_from)

    @staticmethod
    def _check_resume(runner, path: str) -> None:
        """Refuse a checkpoint that does not fit the run; say which changed settings it overrides."""
        if not (isinstance(path, str) and os.path.isfile(path)):
            return  # remote or missing: mmengine's own loader reports it
        from mmengine.model import is_model_wrapper

        from rankssl.mm.checkpoint import load_checkpoint_file
        from rankssl.mm.resume_check import check_resume

        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        report = check_resume(path, load_checkpoint_file(path, map_location="cpu"), runner.cfg,
                              model.state_dict(), runner.experiment_name)
        if report.errors:
            raise ValueError(report.error_message())
        for line in report.messages():  # warnings reach the console in quiet runs too
            print_log(line, logger="current", level=30)

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if is_main_process():
            for folder in {self.out_dir, runner.work_dir}:
                if isinstance(folder, str) and os.path.isdir(folder):
                    remove_stale_temporaries(folder)
        if self._redo_validation and getattr(runner, "_val_loop", None) is not None:
            # The checkpoint was written just before a validation that never finished (a kill):
            # run it now, as the uninterrupted run did (the training stream is restored after it).
            self._redo_validation = False
            print_log(f"The validation after epoch {runner.epoch} did not finish before the run stopped: "
                      "running it now.", logger="current", level=30)
            self._val_token = self._pending.get("validation_token") if self._pending else None
            runner.val_loop.run()
        self._install_signal_handlers()

    def after_val_epoch(self, runner, metrics) -> None:
        super().after_val_epoch(runner, metrics)
        token, self._val_token = self._val_token, None
        if token is not None and is_main_process() and os.path.isdir(runner.work_dir):
            atomic_write_text(os.path.join(runner.work_dir, VALIDATED_NAME), token)

    def after_train(self, runner) -> None:
        self._remove_signal_handlers()
        super().after_train(runner)

    def after_run(self, runner) -> None:
        self._release_lock()

    def _release_lock(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    # ------------------------------------------------------------------ epochs and RNG
    def before_train_epoch(self, runner) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            states = pending.get("rng_states") or []
            if len(states) == runner.world_size:
                restore_rng_state(states[runner.rank])
                owned = loader_generators(runner.train_loop.dataloader)
                missing = restore_generators(owned, states[runner.rank].get("generators") or {})
                if missing:
                    print_log(f"The checkpoint holds no state for the data loader's generator(s) {missing}: their "
                              "stream is not continued.", logger="current", level=30)
            elif states:
                print_log(f"The checkpoint holds the random state of {len(states)} processes, this run has "
                          f"{runner.world_size}: the augmentation stream is not continued.", logger="current",
                          level=30)
            skip = int(pending.get("batches_done", 0))
            if skip > 0:
                print_log(f"Resuming inside epoch {runner.epoch + 1}: drawing and skipping its first {skip} "
                          "batches, trained on before the stop.", logger="current")
                runner.train_loop.dataloader = _SkipFirstBatches(runner.train_loop.dataloader, skip)
        self._epoch_start_states = self._gather(runner)  # what a stop inside this epoch will save
        self._batches_done = int(pending.get("batches_done", 0)) if pending else 0

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._batches_done += 1
        super().after_train_iter(runner, batch_idx, data_batch, outputs)
        if self.save_on_signal and self._stop_requested(runner):
            self._save_and_exit(runner)

    def after_train_epoch(self, runner) -> None:
        loader = runner.train_loop.dataloader
        if isinstance(loader, _SkipFirstBatches):
            runner.train_loop.dataloader = loader._loader
        # Both the uninterrupted and a resumed run continue from this state (validation
        # in between draws from the generators and would otherwise shift the stream).
        states = self._gather(runner)
        self._pending = {"rng_states": states, "batches_done": 0}
        self._to_save = dict(self._pending, sampler_seed=self._sampler_seed(runner))
        if self._validation_follows(runner):  # redone on resume unless the marker says it finished
            self._val_token = uuid.uuid4().hex
            self._to_save["validation_token"] = self._val_token
        if not self.by_epoch:
            return
        if self.every_n_epochs(runner, self.interval, self.save_begin) or (
                self.save_last and self.is_last_train_epoch(runner)) or self._validates_after(runner):
            runner.logger.info(f"Saving checkpoint at {runner.epoch + 1} epochs")
            self._save_checkpoint(runner)
        self._to_save = None

    @staticmethod
    def _gather(runner):
        """Every process's global generators and its data loader's own (sampler, dataset) generators."""
        owned = loader_generators(runner.train_loop.dataloader)
        return gather_rng_states({"generators": capture_generators(owned)} if owned else None)

    def _validates_after(self, runner) -> bool:
        return self.save_at_val and self._validation_follows(runner)

    @staticmethod
    def _validation_follows(runner) -> bool:
        loop = runner.train_loop
        if getattr(runner, "_val_loop", None) is None or not hasattr(loop, "val_interval"):
            return False
        epoch = runner.epoch + 1
        return epoch >= loop.val_begin and (epoch % loop.val_interval == 0 or epoch == loop.max_epochs)

    @staticmethod
    def _sampler_seed(runner) -> Optional[int]:
        seed = getattr(getattr(runner.train_loop.dataloader, "sampler", None), "seed", None)
        return int(seed) if isinstance(seed, int) else None

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
        self._redo_validation = token is not None and _read_validated(runner.work_dir) != token
        seed = saved.get("sampler_seed")
        sampler = getattr(runner.train_loop.dataloader, "sampler", None)
        if seed is not None and hasattr(sampler, "seed"):
            sampler.seed = seed

    # ------------------------------------------------------------------ atomic saving
    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        filename = self.filename_tmpl.format(step)
        self._write(runner, filename, meta)
        if self.max_keep_ckpts > 0 and (not self.keep_ckpt_ids or self.keep_ckpt_ids[-1] != step):
            # outdated checkpoints go only once the new one is in place
            while len(self.keep_ckpt_ids) >= self.max_keep_ckpts:
                old = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(self.keep_ckpt_ids.popleft()))
                if is_main_process() and self.file_backend.isfile(old) and old != self.last_ckpt:
                    self.file_backend.remove(old)
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info("keep_ckpt_ids", list(self.keep_ckpt_ids))
        if is_main_process() and os.path.isdir(self.out_dir):
            for name in os.listdir(self.out_dir):  # a regular checkpoint supersedes an interrupted one
                if name.startswith(INTERRUPTED_PREFIX) and name.endswith(".pth"):
                    os.remove(os.path.join(self.out_dir, name))

    def _save_best_checkpoint(self, runner, metrics) -> None:
        """mmengine's best-checkpoint logic, with the file written atomically."""
        save = runner.save_checkpoint

        def save_atomically(out_dir, filename, *args, **kwargs):
            if not os.path.isdir(out_dir):
                return save(out_dir, filename, *args, **kwargs)
            path = os.path.join(out_dir, filename)
            tmp = temporary_path(path)
            save(os.path.dirname(tmp), os.path.basename(tmp), *args, **kwargs)
            if is_main_process():
                publish(tmp, path)

        runner.save_checkpoint = save_atomically
        try:
            super()._save_best_checkpoint(runner, metrics)
        finally:
            del runner.save_checkpoint  # the Runner method again

    def _write(self, runner, filename: str, meta: dict) -> None:
        """Save through a temporary file, rename it into place, then update ``last_checkpoint``."""
        path = self.file_backend.join_path(self.out_dir, filename)
        self.last_ckpt = path
        runner.message_hub.update_info("last_ckpt", path)
        local = os.path.isdir(self.out_dir)
        tmp = temporary_path(path) if local else path
        runner.save_checkpoint(
            os.path.dirname(tmp), os.path.basename(tmp), self.file_client_args, save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler, meta=meta, by_epoch=self.by_epoch,
            backend_args=self.backend_args, **self.args)
        if not is_main_process():
            return
        if local:
            publish(tmp, path)
        atomic_write_text(os.path.join(runner.work_dir, "last_checkpoint"), path)

    # ------------------------------------------------------------------ signals
    def _install_signal_handlers(self) -> None:
        self._active, self._signal = True, None
        if not self.save_on_signal or threading.current_thread() is not threading.main_thread():
            return
        for sig in _SIGNALS:
            self._previous_handlers[sig] = signal.signal(sig, self._on_signal)

    def _remove_signal_handlers(self) -> None:
        self._active = False
        for sig, handler in self._previous_handlers.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)  # None: set outside Python
        self._previous_handlers = {}

    def _on_signal(self, signum: int, frame) -> None:
        if not self._active or self._signal is not None:  # second signal, or a run that ended abnormally
            self._remove_signal_handlers()
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.raise_signal(signum)
            return
        self._signal = signum
        print(f"\nrankssl: received {signal.Signals(signum).name}; saving a checkpoint after the current "
              "iteration, then stopping (send it again to stop at once).", file=sys.stderr, flush=True)

    def _stop_requested(self, runner) -> bool:
        if runner.world_size > 1:  # every process stops at the same iteration
            import torch
            import torch.distributed as dist

            device = "cuda" if dist.get_backend() == "nccl" else "cpu"
            flag = torch.tensor([self._signal or 0], dtype=torch.int64, device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            self._signal = int(flag.item()) or None
        return self._signal is not None

    def _save_and_exit(self, runner) -> None:
        signum = self._signal
        # mmengine restarts an epoch-based run at the start of the epoch in meta; the
        # batches already done are then drawn again with the same generators and skipped.
        meta = dict(epoch=runner.epoch, iter=runner.iter + 1)
        self._to_save = {"rng_states": self._epoch_start_states, "batches_done": self._batches_done,
                         "sampler_seed": self._sampler_seed(runner)} if self.by_epoch else None
        filename = f"{INTERRUPTED_PREFIX}iter_{runner.iter + 1}.pth"
        self._write(runner, filename, meta)
        self._remove_signal_handlers()
        name = signal.Signals(signum).name
        message = (f"rankssl: stopped by {name} after iteration {runner.iter + 1}; saved "
                   f"{os.path.join(self.out_dir, filename)}. Continue with `--resume` (or resume=True).")
        print_log(message, logger="current")
        print(message, file=sys.stderr, flush=True)
        self._release_lock()
        raise SystemExit(128 + signum)
