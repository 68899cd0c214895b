"""Checkpoints that load safely, are written atomically, and resume from the newest intact file.

Loading. Since torch 2.6 ``torch.load`` refuses any class it does not know, and mmengine's
checkpoints hold a message hub with ``HistoryBuffer`` objects and NumPy scalars, so a
plain ``Runner(..., resume=True)`` stops with ``UnpicklingError``. Instead of turning
``weights_only`` off (which would let a checkpoint run code), we allow-list exactly the
plain-data types those checkpoints contain, and only while a checkpoint is read
(:func:`mmengine_safe_globals`; importing rankssl changes nothing in torch). Loading stays
safe: these classes are rebuilt from their state, no arbitrary callable is ever invoked.
:func:`check_runner_loads` routes a runner's own loads (``load_from``, ``resume``) through
:func:`load_checkpoint_file` while they run, not mmengine's loader for the whole process. Before loading,
:func:`verify_checkpoint` checks the zip archive's CRC-32s and says plainly when a file
is empty, truncated, damaged or not a checkpoint at all.

Writing. :func:`publish` / :func:`atomic_write_text` write through a temporary file in
the same folder, fsync and ``os.replace``: a kill leaves the old file or the new one,
never a torn one (used by ``AtomicCheckpointHook``).

Resuming. :func:`select_resume_checkpoint` picks the newest checkpoint of a work dir
that passes :func:`verify_checkpoint`, ignoring an empty or dangling ``last_checkpoint``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import pickle
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterator, List, Optional, Set, Tuple

import numpy as np
import torch

from rankssl._files import fsync_directory

_DONE = False


def mmengine_checkpoint_types() -> List[Any]:
    """The non-tensor types found in mmengine 0.10 checkpoints (message hub, meta)."""
    from mmengine.logging.history_buffer import HistoryBuffer

    types: List[Any] = [HistoryBuffer, np.ndarray, np.dtype]
    # NumPy 1.x (the `mmpretrain` extra pins it): numpy._core is only a shim there
    numpy_2 = int(np.__version__.split(".")[0]) >= 2
    multiarray: Any = importlib.import_module("numpy._core.multiarray" if numpy_2 else "numpy.core.multiarray")
    types.append(multiarray.scalar)
    types.append(multiarray._reconstruct)
    for name in ("Float64DType", "Float32DType", "Int64DType", "Int32DType", "BoolDType", "UInt8DType"):
        dtype_cls = getattr(getattr(np, "dtypes", None), name, None)
        if dtype_cls is not None:
            types.append(dtype_cls)
    return types


def _history_buffer_attribute(obj: object, name: str) -> object:
    """Stands in for ``getattr`` while unpickling: only a ``HistoryBuffer``'s statistics methods.

    mmengine pickles each ``HistoryBuffer`` with its statistics functions, which pickle
    writes as ``getattr(HistoryBuffer, 'mean')``. Allow-listing the real ``getattr``
    would let a checkpoint reach any attribute of any allowed object; this stand-in
    answers only that call.
    """
    from mmengine.logging.history_buffer import HistoryBuffer

    allowed = {"min", "max", "current", "mean"} | set(HistoryBuffer._statistics_methods)
    if isinstance(obj, type) and issubclass(obj, HistoryBuffer) and name in allowed:
        return getattr(obj, name)
    raise pickle.UnpicklingError(f"Checkpoint asks for attribute {name!r} of {obj!r}; refused.")


def _mmengine_safe_globals() -> List[Any]:
    """What ``torch.load(weights_only=True)`` must accept for mmengine's checkpoints."""
    entries: List[Any] = mmengine_checkpoint_types()
    return entries + [(_history_buffer_attribute, "builtins.getattr")]


def allow_mmengine_checkpoints() -> None:
    """Allow-list mmengine's checkpoint types for every later ``torch.load(weights_only=True)``; idempotent.

    Process-wide, by the caller's choice (for a plain ``torch.load(ckpt)`` of a rankssl
    checkpoint). rankssl itself never calls it: its own loads use :func:`mmengine_safe_globals`.
    """
    global _DONE
    if _DONE or not hasattr(torch.serialization, "add_safe_globals"):
        return
    torch.serialization.add_safe_globals(_mmengine_safe_globals())
    _DONE = True


@contextlib.contextmanager
def mmengine_safe_globals() -> Iterator[None]:
    """Within the block, ``torch.load(weights_only=True)`` accepts mmengine's checkpoint types.

    On leaving, torch's safe globals are what they were: only the entries this block
    added are removed (an earlier :func:`allow_mmengine_checkpoints` stays in force).

    Example:
        >>> from mmengine.logging.history_buffer import HistoryBuffer
        >>> before = list(torch.serialization.get_safe_globals())
        >>> with mmengine_safe_globals():
        ...     HistoryBuffer in torch.serialization.get_safe_globals()
        True
        >>> torch.serialization.get_safe_globals() == before
        True
    """
    present = torch.serialization.get_safe_globals()
    added = [entry for entry in _mmengine_safe_globals() if entry not in present]
    with torch.serialization.safe_globals(added):
        yield


# ----------------------------------------------------------------------------- atomic files
class CheckpointError(ValueError):
    """A file that is not a loadable checkpoint: empty, truncated, damaged or of another kind."""


def temporary_path(path: str) -> str:
    """A hidden name in ``path``'s folder for writing ``path`` before the rename (``.NAME.<pid>.tmp``)."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.{os.getpid()}{TMP_SUFFIX}")


def publish(tmp: str, path: str) -> None:
    """Flush ``tmp`` to disk and rename it to ``path`` in one step: readers see the old or the new file."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_directory(os.path.dirname(os.path.abspath(path)))


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder, fsync and rename."""
    tmp = temporary_path(path)
    with open(tmp, "w") as f:
        f.write(text)
    publish(tmp, path)


TMP_SUFFIX = ".tmp"


# ----------------------------------------------------------------------------- verification
def verify_checkpoint(path: str) -> None:
    """Raise :class:`CheckpointError` unless ``path`` is an intact torch checkpoint archive.

    Reads the whole zip archive and checks every member's CRC-32 (``torch.load`` does
    not), so a truncated or bit-flipped file is refused instead of loading silently.
    Files in torch's legacy (pre-1.6, non-zip) format have no checksums and pass.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"Checkpoint {path!r} does not exist.")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path!r} is not a checkpoint: it is not a file.")
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError(
            f"{path!r} is not a checkpoint: the file is empty "
            "(a write interrupted before the atomic checkpoint writes leaves such files)."
        )
    with open(path, "rb") as f:
        head = f.read(4)
    if not zipfile.is_zipfile(path):
        if head[:1] == b"\x80":  # a pickle: torch's legacy format, no checksums to verify
            return
        what = (
            "its zip directory is missing (truncated?)"
            if head[:2] == b"PK"
            else (f"it is not a torch zip archive (starts with {head!r})")
        )
        raise CheckpointError(f"{path!r} is not a checkpoint ({size} bytes): {what}.")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, ValueError) as exc:
        raise CheckpointError(f"{path!r} is a damaged checkpoint: {exc}.") from exc
    if damaged is not None:
        raise CheckpointError(
            f"{path!r} is a damaged checkpoint: the CRC-32 of {damaged!r} does not match "
            "its contents (bytes changed after writing); refusing to load it."
        )
    if not any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
        raise CheckpointError(f"{path!r} is not a checkpoint: a zip archive without torch's data.pkl.")


def load_checkpoint_file(path: str, map_location=None) -> dict:
    """``torch.load(path, weights_only=True)`` after :func:`verify_checkpoint`, with clear errors."""
    verify_checkpoint(path)
    try:
        with mmengine_safe_globals():
            return torch.load(path, map_location=map_location, weights_only=True)
    except (EOFError, IndexError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path!r} is not a loadable checkpoint ({type(exc).__name__}: {exc}).") from exc
    except RuntimeError as exc:
        if "zip" in str(exc).lower() or "archive" in str(exc).lower():
            raise CheckpointError(f"{path!r} is a damaged checkpoint: {exc}") from exc
        raise


@contextlib.contextmanager
def checked_checkpoint_loading() -> Iterator[None]:
    """Within the block, mmengine reads local checkpoints through :func:`load_checkpoint_file`.

    mmengine looks its checkpoint loaders up by path prefix, and its loader of plain local
    paths calls ``torch.load`` without any check (and, since torch 2.6, fails on the
    message hub). The block registers :func:`load_checkpoint_file` for that prefix (CRC
    check, clear errors, mmengine's types allowed only while loading) and puts the previous
    loader back on leaving, so nothing outside the block changes.
    """
    from mmengine.runner.checkpoint import CheckpointLoader

    previous = CheckpointLoader._schemes.get("")
    CheckpointLoader.register_scheme(prefixes="", loader=load_checkpoint_file, force=True)
    try:
        yield
    finally:
        if previous is None:
            CheckpointLoader._schemes.pop("", None)
        else:
            CheckpointLoader.register_scheme(prefixes="", loader=previous, force=True)


_CHECKED = "_rankssl_checked_loads"
# Runner methods that read checkpoints through mmengine's loader: ``init_cfg``'s pretrained weights,
# then ``load_from`` / ``resume``.
_LOADING_METHODS = ("_init_model_weights", "load_or_resume")


def check_runner_loads(runner) -> None:
    """Make ``runner`` read its checkpoints through :func:`load_checkpoint_file`; idempotent.

    Wraps this runner object's loading methods (``load_or_resume`` and the initialisation
    of pretrained weights) in :func:`checked_checkpoint_loading`, so mmengine's loader is
    replaced only while this runner loads; other runners and plain ``torch.load`` calls
    are unaffected.
    """
    if getattr(runner, _CHECKED, False):
        return
    for name in _LOADING_METHODS:
        original = getattr(runner, name, None)
        if original is None:
            continue

        def checked(*args, _original=original, **kwargs):
            with checked_checkpoint_loading():
                return _original(*args, **kwargs)

        setattr(runner, name, functools.wraps(original)(checked))
    setattr(runner, _CHECKED, True)


# ----------------------------------------------------------------------------- resume
@dataclass
class ResumeChoice:
    """What :func:`select_resume_checkpoint` found: the checkpoint to resume and what it skipped."""

    work_dir: str
    path: Optional[str]
    skipped: List[Tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def messages(self) -> List[str]:
        """One line per decision, for the log or the terminal."""
        lines = [f"skipped {path}: {reason}" for path, reason in self.skipped]
        if self.path is not None:
            lines.append(f"resuming from {self.path}")
        else:
            lines.append(f"nothing to resume in {self.work_dir!r}: no intact checkpoint (*.pth) there")
        return lines


def _step_number(path: str) -> int:
    digits = re.findall(r"\d+", os.path.basename(path))
    return int(digits[-1]) if digits else -1


def _is_resume_candidate(name: str) -> bool:
    return name.endswith(".pth") and not name.startswith((".", "best_"))


def select_resume_checkpoint(work_dir: str) -> ResumeChoice:
    """The newest intact checkpoint of ``work_dir`` (by modification time, then step number).

    Considers every ``*.pth`` in ``work_dir`` (not ``best_*`` ones, not temporary files)
    and the file that mmengine's ``last_checkpoint`` marker names; an empty marker or
    one naming a missing file is ignored (and reported). Checkpoints that fail
    :func:`verify_checkpoint` are skipped with their reason.

    Example:
        >>> import tempfile
        >>> select_resume_checkpoint(tempfile.mkdtemp()).path is None
        True
    """
    choice = ResumeChoice(work_dir=work_dir, path=None)
    candidates: Set[str] = set()
    if os.path.isdir(work_dir):
        candidates.update(os.path.join(work_dir, n) for n in os.listdir(work_dir) if _is_resume_candidate(n))
    marker = os.path.join(work_dir, "last_checkpoint")
    if os.path.isfile(marker):
        with open(marker) as f:
            named = f.read().strip()
        if not named:
            choice.skipped.append((marker, "the marker is empty (ignored)"))
        elif not os.path.isfile(named):
            choice.skipped.append((marker, f"names {named!r}, which does not exist (ignored)"))
        else:
            candidates.add(named)

    def newest_first(path: str) -> Tuple[int, int]:
        return os.stat(path).st_mtime_ns, _step_number(path)

    for path in sorted(candidates, key=newest_first, reverse=True):
        try:
            verify_checkpoint(path)
        except (CheckpointError, OSError) as exc:
            choice.skipped.append((path, str(exc)))
            continue
        choice.path = path
        break
    return choice


def remove_stale_temporaries(folder: str) -> List[str]:
    """Delete temporary files left by writes that a kill interrupted; return their paths."""
    removed: List[str] = []
    if not os.path.isdir(folder):
        return removed
    for name in os.listdir(folder):
        if re.fullmatch(r"\..+\.\d+" + re.escape(TMP_SUFFIX), name):  # temporary_path()'s names
            try:
                os.remove(os.path.join(folder, name))
                removed.append(os.path.join(folder, name))
            except OSError:
                pass
    return removed
