"""One training run per work dir: an exclusive lock on ``WORK_DIR/.rankssl.lock``.

Two runs writing into one work dir interleave their logs, scalars and checkpoints, and
a resume then mixes them. ``rankssl train`` (and ``AtomicCheckpointHook`` for plain
mmengine runs) therefore takes an exclusive ``fcntl.flock`` on ``WORK_DIR/.rankssl.lock``
before any work; a second run into the same work dir stops at once with::

    work dir DIR in use by pid N (started 2026-12-06 03:41:07 UTC: rankssl train ...); ...

The lock is held by the open file, not by the file's existence: the kernel drops it when
the process ends in any way (normal exit, exception, SIGKILL, a crash), so a lock file
left behind by a dead run is stale by construction and the next run simply takes it.
The file's contents (pid, start time, command line) only serve the message.

Within one process the lock is re-entrant (a counter per work dir), so the command line
and the checkpoint hook can both take it. On platforms without ``fcntl`` (Windows) no
lock is taken. In distributed runs only rank 0 takes it (every rank shares the work dir).

Example:
    >>> import tempfile
    >>> with hold_work_dir(tempfile.mkdtemp()) as lock:
    ...     lock.held
    True
"""

from __future__ import annotations

import os
import sys
import time
from typing import Dict, Optional

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "WorkDirInUseError", "WorkDirLock", "hold_work_dir", "lock_owner"]

LOCK_NAME = ".rankssl.lock"

_HELD: Dict[str, WorkDirLock] = {}  # real path of the work dir -> this process's lock


class WorkDirInUseError(RuntimeError):
    """Another live process holds the work dir's lock."""


def _lock_path(work_dir: str) -> str:
    return os.path.join(work_dir, LOCK_NAME)


def lock_owner(work_dir: str) -> str:
    """What the lock file says about its holder ("pid N (started ...)"), or ``"another process"``."""
    try:
        with open(_lock_path(work_dir), encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return "another process"
    info = dict(line.split("=", 1) for line in lines if "=" in line)
    if not info.get("pid", "").isdigit():
        return "another process (it has not written its pid yet)"
    details = "; ".join(x for x in (info.get("started"), info.get("command")) if x)
    return f"pid {info['pid']}" + (f" (started {details})" if details else "")


class WorkDirLock:
    """An exclusive, re-entrant (within a process) lock on a work dir; see the module docstring.

    Args:
        work_dir: the run's work dir (created if missing).
    """

    def __init__(self, work_dir: str) -> None:
        self.work_dir = work_dir
        self.key = os.path.realpath(work_dir)
        self._fd: Optional[int] = None
        self._count = 0
        self._owner: Optional[WorkDirLock] = None  # the process's lock this one re-entered

    @property
    def held(self) -> bool:
        return self._count > 0

    def acquire(self) -> WorkDirLock:
        """Take the lock or raise :class:`WorkDirInUseError` naming the holder; returns the lock held."""
        held = _HELD.get(self.key)
        if held is not None:
            held._count += 1
            if held is not self:
                self._owner = held
            return held
        if fcntl is None:
            self._count = 1
            _HELD[self.key] = self
            return self
        os.makedirs(self.work_dir, exist_ok=True)
        fd = os.open(_lock_path(self.work_dir), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise WorkDirInUseError(
                f"work dir {os.path.abspath(self.work_dir)} in use by {lock_owner(self.work_dir)}; wait for that "
                "run to end (or stop it), or train into another --work-dir."
            ) from None
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        command = (
            " ".join(["rankssl"] + sys.argv[1:])
            if sys.argv and sys.argv[0].endswith(("rankssl", "__main__.py"))
            else " ".join(sys.argv)
        )
        os.ftruncate(fd, 0)
        os.write(fd, f"pid={os.getpid()}\nstarted={started}\ncommand={command}\n".encode())
        self._fd, self._count = fd, 1
        _HELD[self.key] = self
        return self

    def release(self) -> None:
        """Undo one :meth:`acquire`; the last one unlocks (the file stays, emptied)."""
        if self._owner is not None:
            owner, self._owner = self._owner, None
            owner.release()
            return
        if self._count == 0:
            return
        self._count -= 1
        if self._count:
            return
        _HELD.pop(self.key, None)
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            os.close(fd)  # closing the only descriptor drops the flock

    def __enter__(self) -> WorkDirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def hold_work_dir(work_dir: str, rank: Optional[int] = None) -> WorkDirLock:
    """The lock of ``work_dir`` for a ``with`` block; ranks other than 0 get a lock that does nothing.

    ``rank`` defaults to the ``RANK`` environment variable (torchrun's), else 0.
    """
    if rank is None:
        rank = int(os.environ.get("RANK", "0") or 0)
    if rank != 0:
        return _NoLock(work_dir)
    return _HELD.get(os.path.realpath(work_dir)) or WorkDirLock(work_dir)


class _NoLock(WorkDirLock):
    def acquire(self) -> WorkDirLock:
        self._count += 1
        return self

    def release(self) -> None:
        self._count = max(self._count - 1, 0)
