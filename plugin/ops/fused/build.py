"""Build and load the fused CPU kernels (``kernels.cpp``) on first use.

The kernels are plain C++ with OpenMP and a C ABI, loaded with :mod:`ctypes`; they need
no torch headers, so a build takes seconds, not minutes. Nothing is compiled at
``import rankssl``: :func:`load` builds on the first call that needs the kernels and
caches the shared library under ``$RANKSSL_CACHE_DIR`` (default
``~/.cache/rankssl``), keyed by the source, the compiler, its flags and the CPU, so
later processes only load it.

If the kernels are disabled (``RANKSSL_DISABLE_FUSED=1``) or cannot be built (no
compiler, a failed build), :func:`load` returns ``None`` and callers use the pure-torch
path; a failed build warns once per process.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Optional

SOURCE = Path(__file__).with_name("kernels.cpp")
FLAGS = ["-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-std=c++17", "-shared", "-fPIC"]
if platform.machine().lower() in ("x86_64", "amd64"):
    # Blocks of 32 float32 rows: one or two 512-bit registers per comparator where the
    # CPU has AVX-512 (twice as fast as gcc's default 256-bit preference, measured).
    FLAGS.append("-mprefer-vector-width=512")
ABI_VERSION = 1

_lock = threading.Lock()
_library: Optional[ctypes.CDLL] = None
_tried = False


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


def build(compiler: str, target: Path) -> None:
    """Compile ``kernels.cpp`` into ``target`` atomically (a temporary file, then a rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run(
            [compiler, *FLAGS, str(SOURCE), "-o", temporary],
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        )
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _declare(library: ctypes.CDLL) -> ctypes.CDLL:
    i64, i32, f64, ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_double, ctypes.c_void_p
    for name in ("rankssl_network_f32", "rankssl_network_f64"):
        function = getattr(library, name)
        function.restype = i32
        function.argtypes = [
            i64, i64, i64, ptr, ptr, ptr, ptr, ptr,  # n, layers, comparators, ptr, a, b, lo, hi
            i32, f64, f64, i32, i32,  # kind, steepness, art_lambda, mode, threads
            ptr, ptr, i32, i64, i64,  # x, v, v_batched, m, rows
            ptr, ptr, ptr, ptr, i64,  # grad_out, out, grad_x, grad_v, num_neg
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
        try:
            compiler = _compiler()
            if compiler is None:
                raise RuntimeError("no C++ compiler found (set CXX or install g++)")
            target = library_path(compiler)
            if not target.exists():
                build(compiler, target)
            _library = _declare(ctypes.CDLL(str(target)))
        except Exception as error:  # any failure: fall back to torch, say so once
            detail = getattr(error, "stderr", "") or str(error)
            warnings.warn(
                "rankssl: the fused CPU sorting-network kernels are unavailable "
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
