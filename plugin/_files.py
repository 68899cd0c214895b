"""File-system helpers shared by every layer (the kernel cache in ``ops`` and the
checkpoints in ``mm``): standard library only, so any layer may import them."""

from __future__ import annotations

import os

__all__ = ["fsync_directory"]


def fsync_directory(folder: str | os.PathLike[str]) -> None:
    """Make a rename inside ``folder`` durable; a no-op where directories cannot be
    opened or synced (some platforms and file systems do not allow it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
