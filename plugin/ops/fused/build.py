"""Build and load the fused CPU kernels (``kernels.cpp``) on first use.

The kernels are plain C++ (std::thread, no OpenMP runtime) with a C ABI, loaded with :mod:`ctypes`; they need
no torch headers, so a build takes seconds, not minutes. Nothing is compiled at
``import rankssl``: :func:`load` builds on the first call that needs the kernels and
caches the shared library under ``$RANKSSL_CACHE_DIR`` (default
``~/.cache/rankssl``), keyed by the source, the compiler, its flags and the CPU, so
later processes only load it. The library and a sidecar record of its size and SHA-256
(``<name>.json``) are each written atomically and fsync'd, and a cached library is
loaded only if it matches its record: a truncated or overwritten file (a bad copy, a
full disk) would otherwise be mapped by ``dlopen`` and kill the process with SIGBUS. A
damaged library is rebuilt with a warning naming it; an unwritable cache directory
means a private build per process, with a warning. A build says so once on stderr.

If the kernels are disabled (``RANKSSL_DISABLE_FUSED=1``) or cannot be built (no
compiler, a failed build), :func:`load` returns ``None`` and callers use the pure-torch
path; a failed build warns once per process.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Iterator, Optional

from rankssl._files import fsync_directory

try:
    import fcntl
except ImportError:  # not POSIX: builds are not serialised across processes
    fcntl = None  # type: ignore[assignment]

SOURCE = Path(__file__).with_name("kernels.cpp")
# -fopenmp-simd: the `omp simd` loops vectorise without linking an OpenMP runtime (the
# kernels run their own helper threads, see kernels.cpp).
FLAGS = ["-O3", "-march=native", "-fopenmp-simd", "-pthread", "-fno-math-errno", "-std=c++17", "-shared", "-fPIC"]
if platform.machine().lower() in ("x86_64", "amd64"):
    # Blocks of 32 float32 rows: one or two 512-bit registers per comparator where the
    # CPU has AVX-512 (twice as fast as gcc's default 256-bit preference, measured).
    FLAGS.append("-mprefer-vector-width=512")
ABI_VERSION = 3
#: Seconds a build takes on an idle core (measured with g++ 12 on x86_64); said when one starts.
BUILD_SECONDS = 5

_lock = threading.Lock()
_library: Optional[ctypes.CDLL] = None
_tried = False
_announced = False


def disabled() -> bool:
    """Whether the user turned the fused kernels off with ``RANKSSL_DISABLE_FUSED=1``."""
    return os.environ.get("RANKSSL_DISABLE_FUSED", "").strip().lower() not in ("", "0", "false", "no")


def _compiler() -> Optional[str]:
    return shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")


def _cpu_signature() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return line
    except OSError:
        pass
    return platform.machine()


def cache_dir() -> Path:
    root = os.environ.get("RANKSSL_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rankssl"
    )
    return Path(root)


def library_path(compiler: str) -> Path:
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), compiler.encode(), " ".join(FLAGS).encode(), _cpu_signature().encode()):
        digest.update(part)
    return cache_dir() / f"fused_kernels_{digest.hexdigest()[:16]}.so"


class CacheUnwritable(OSError):
    """The cache directory cannot be created or written."""


def _write_atomically(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` so that readers see the old file or all of the new one."""
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o644)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    fsync_directory(target.parent)


def record_path(target: Path) -> Path:
    """The sidecar that records the size and SHA-256 of a built library (``<name>.json``)."""
    return target.with_name(target.name + ".json")


def _describe(data: bytes) -> dict:
    return {"abi": ABI_VERSION, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def verify(target: Path) -> Optional[str]:
    """Why the cached library ``target`` must not be loaded, or ``None`` if it is intact.

    A library is intact when its sidecar record exists and its size and SHA-256 equal the
    record's. A truncated library would otherwise be mapped by ``dlopen`` and kill the
    process with SIGBUS at the first call into the missing pages.
    """
    record_file = record_path(target)
    try:
        record = json.loads(record_file.read_text())
        size, digest = int(record["size"]), str(record["sha256"])
    except FileNotFoundError:
        return f"its record {record_file.name} is missing"
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"its record {record_file.name} is unreadable ({error})"
    try:
        data = target.read_bytes()
    except OSError as error:
        return f"it cannot be read ({error})"
    if len(data) != size:
        return f"it has {len(data)} bytes where {size} were written"
    if hashlib.sha256(data).hexdigest() != digest:
        return "its SHA-256 differs from the one recorded when it was written"
    return None


def build(compiler: str, target: Path) -> None:
    """Compile ``kernels.cpp`` into ``target``, then record its size and digest.

    Both files are written atomically (temporary file, fsync, rename, fsync of the
    directory), the library first: a record therefore never describes a library that is
    not complete on disk, and a crash between the two leaves a library without a record,
    which :func:`verify` refuses.

    Raises:
        CacheUnwritable: the cache directory cannot be created or written.
        subprocess.CalledProcessError: the compiler failed.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".so", dir=target.parent)
        os.close(fd)
    except OSError as error:
        raise CacheUnwritable(f"cannot write the kernel cache {target.parent} ({error})") from error
    try:
        subprocess.run(
            [compiler, *FLAGS, str(SOURCE), "-o", temporary],
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        )
        try:
            with open(temporary, "rb") as handle:
                data = handle.read()
                os.fsync(handle.fileno())
            os.chmod(temporary, 0o755)
            os.replace(temporary, target)
            fsync_directory(target.parent)
            _write_atomically(record_path(target), json.dumps(_describe(data)).encode())
        except OSError as error:  # e.g. the disk filled up
            raise CacheUnwritable(f"cannot write the kernel cache {target.parent} ({error})") from error
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


@contextlib.contextmanager
def _build_lock(target: Path) -> Iterator[None]:
    """Serialise check-and-build of one library across processes (best effort).

    Without it, processes started together would all compile, and one could find a
    library renamed into place before its record and rebuild it needlessly.
    """
    handle = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle = open(target.with_name(target.name + ".lock"), "a")
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    except (OSError, AttributeError):
        pass  # read-only cache or no flock: proceed unlocked
    try:
        yield
    finally:
        if handle is not None:
            handle.close()


def _announce(directory: Path) -> None:
    global _announced
    if not _announced:
        _announced = True
        print(
            f"rankssl: compiling the fused CPU kernels once (about {BUILD_SECONDS} s, longer on a busy machine), "
            f"cached in {directory}",
            file=sys.stderr,
            flush=True,
        )


def _build_and_open(compiler: str, target: Path) -> ctypes.CDLL:
    _announce(target.parent)
    build(compiler, target)
    problem = verify(target)
    if problem is not None:  # e.g. the disk filled between write and read-back
        raise RuntimeError(f"the freshly built {target} is damaged: {problem}")
    return _declare(ctypes.CDLL(str(target)))


def _build_private(compiler: str, name: str, reason: str) -> ctypes.CDLL:
    """Build into a temporary directory removed once the library is mapped."""
    directory = Path(tempfile.mkdtemp(prefix="rankssl-kernels-"))
    warnings.warn(
        f"rankssl: {reason}; compiling the fused CPU kernels into a temporary directory for this "
        "process only. Set RANKSSL_CACHE_DIR to a writable directory to keep them.",
        RuntimeWarning,
        stacklevel=4,
    )
    try:
        return _build_and_open(compiler, directory / name)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _open_cached(compiler: str, target: Path) -> ctypes.CDLL:
    """Load ``target`` if it verifies; otherwise say why and rebuild it."""
    with _build_lock(target):
        if target.exists() or record_path(target).exists():
            problem = verify(target)
            if problem is None:
                try:
                    return _declare(ctypes.CDLL(str(target)))
                except (OSError, RuntimeError, AttributeError) as error:
                    problem = f"it does not load ({error})"
            warnings.warn(
                f"rankssl: the cached kernel library {target} is damaged or stale ({problem}); rebuilding it.",
                RuntimeWarning,
                stacklevel=4,
            )
        try:
            return _build_and_open(compiler, target)
        except CacheUnwritable as error:
            return _build_private(compiler, target.name, str(error))


def _declare(library: ctypes.CDLL) -> ctypes.CDLL:
    i64, i32, f64, ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_double, ctypes.c_void_p
    for name in ("rankssl_network_f32", "rankssl_network_f64"):
        function = getattr(library, name)
        function.restype = i32
        function.argtypes = [
            i64,
            i64,
            i64,
            ptr,
            ptr,
            ptr,
            ptr,
            ptr,  # n, layers, comparators, ptr, a, b, lo, hi
            i32,
            f64,
            f64,
            i32,
            i32,  # kind, steepness, art_lambda, mode, threads
            ptr,
            ptr,
            i32,
            i64,
            i64,  # x, v, v_batched, m, rows
            ptr,
            ptr,
            ptr,
            ptr,
            i64,  # grad_out, out, grad_x, grad_v, num_neg
        ]
    library.rankssl_abi_version.restype = i32
    if library.rankssl_abi_version() != ABI_VERSION:
        raise RuntimeError("stale kernel library")
    return library


def load() -> Optional[ctypes.CDLL]:
    """The kernel library, built if needed, or ``None`` when disabled or unavailable."""
    global _library, _tried
    if disabled():
        return None
    if _tried:
        return _library
    with _lock:
        if _tried:
            return _library
        target: Optional[Path] = None
        try:
            compiler = _compiler()
            if compiler is None:
                raise RuntimeError("no C++ compiler found (set CXX or install g++)")
            target = library_path(compiler)
            _library = _open_cached(compiler, target)
        except Exception as error:  # any failure: fall back to torch, say so once
            detail = getattr(error, "stderr", "") or str(error)
            where = f" for {target}" if target is not None else ""
            warnings.warn(
                f"rankssl: the fused CPU sorting-network kernels are unavailable{where} "
                f"({detail.strip()[:300]}); using the pure-torch path, which is slower. "
                "Set RANKSSL_DISABLE_FUSED=1 to silence this.",
                RuntimeWarning,
                stacklevel=3,
            )
            _library = None
        _tried = True
        return _library


def reset() -> None:
    """Forget the loaded library so that the next :func:`load` tries again (tests)."""
    global _library, _tried
    with _lock:
        _library, _tried = None, False
