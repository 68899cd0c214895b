"""mmengine's ``CheckpointHook`` with every file written atomically.

Each checkpoint (``best_*`` too) and the ``last_checkpoint`` marker are written to a
temporary file in the same folder, fsynced and renamed (:mod:`rankssl.mm.checkpoint`),
so a kill leaves the previous file or the new one, never a torn one; outdated
checkpoints are deleted only after the new one is in place; temporary files a kill
left behind are removed when training starts.

:class:`AtomicWriteCheckpointHook` is the base of the recipes' ``AtomicCheckpointHook``
(:mod:`rankssl.mm.checkpoint_hook`), which adds saves at validation and on signals and the
random-number continuity; it is not registered by itself.
"""

from __future__ import annotations

import os

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook

from rankssl.mm.checkpoint import atomic_write_text, publish, remove_stale_temporaries, temporary_path

__all__ = ["AtomicWriteCheckpointHook"]


class AtomicWriteCheckpointHook(CheckpointHook):
    """``CheckpointHook`` whose checkpoints and ``last_checkpoint`` marker are written atomically.

    Takes mmengine ``CheckpointHook``'s arguments (``interval``, ``max_keep_ckpts``,
    ``save_last``, ``out_dir``, ...). Remote ``out_dir``s (a file backend other than a
    local folder) are written as mmengine writes them.
    """

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if is_main_process():
            for folder in {self.out_dir, runner.work_dir}:
                if isinstance(folder, str) and os.path.isdir(folder):
                    remove_stale_temporaries(folder)

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        filename = self.filename_tmpl.format(step)
        self.write_checkpoint(runner, filename, meta)
        if self.max_keep_ckpts > 0 and (not self.keep_ckpt_ids or self.keep_ckpt_ids[-1] != step):
            # outdated checkpoints go only once the new one is in place
            while len(self.keep_ckpt_ids) >= self.max_keep_ckpts:
                old = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(self.keep_ckpt_ids.popleft()))
                if is_main_process() and self.file_backend.isfile(old) and old != self.last_ckpt:
                    self.file_backend.remove(old)
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info("keep_ckpt_ids", list(self.keep_ckpt_ids))

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

        # mmengine's logic calls runner.save_checkpoint; this runner's calls go through the
        # atomic writer for the duration of that call only.
        runner.save_checkpoint = save_atomically
        try:
            super()._save_best_checkpoint(runner, metrics)
        finally:
            del runner.save_checkpoint  # the Runner method again

    def write_checkpoint(self, runner, filename: str, meta: dict) -> None:
        """Save ``filename`` in ``out_dir`` through a temporary file, rename it, then update ``last_checkpoint``."""
        path = self.file_backend.join_path(self.out_dir, filename)
        self.last_ckpt = path
        runner.message_hub.update_info("last_ckpt", path)
        local = os.path.isdir(self.out_dir)
        tmp = temporary_path(path) if local else path
        runner.save_checkpoint(
            os.path.dirname(tmp),
            os.path.basename(tmp),
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args,
        )
        if not is_main_process():
            return
        if local:
            publish(tmp, path)
        atomic_write_text(os.path.join(runner.work_dir, "last_checkpoint"), path)
