"""The fused-kernel cache survives damage: a truncated, overwritten or unrecorded library
is rebuilt (or the torch path taken) with a warning naming it, never loaded.

Loading a truncated shared library maps pages past its end, and the first call into them
kills the process with SIGBUS; so every case runs in a subprocess, where that would show
as a negative return code instead of killing pytest. The real compiler runs once (the
fixture); the subprocesses use a stand-in compiler that copies that build and logs each
call, so the tests can count rebuilds.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from rankssl.ops.fused import build

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(build._compiler() is None, reason="no C++ compiler"),
]

NOTICE = "rankssl: compiling the fused CPU kernels once"

# One GroCo forward + backward on the fused path, then the same on the torch path; prints
# whether the kernels loaded and the largest difference between the two.
PROBE = textwrap.dedent(
    """
    import json, os, torch
    from rankssl.losses import GroCoLoss
    from rankssl.ops.fused import build

    def run():
        torch.manual_seed(0)
        a, b = torch.randn(12, 8, dtype=torch.float64, requires_grad=True), torch.randn(12, 8, dtype=torch.float64)
        loss = GroCoLoss(n_negatives=5)(a, b)
        (grad,) = torch.autograd.grad(loss, a)
        return loss.detach(), grad

    loaded = build.load() is not None
    fused_loss, fused_grad = run()
    os.environ["RANKSSL_DISABLE_FUSED"] = "1"
    os.environ["RANKSSL_KERNELS"] = "torch"
    torch_loss, torch_grad = run()
    diff = max(float((fused_loss - torch_loss).abs()), float((fused_grad - torch_grad).abs().max()))
    print(json.dumps({"loaded": loaded, "diff": diff, "loss": float(torch_loss)}))
    """
)


@pytest.fixture(scope="module")
def compilers(tmp_path_factory):
    """A real build of the kernels, and two stand-in compilers: one copies it, one fails."""
    root = tmp_path_factory.mktemp("compilers")
    real = root / "real.so"
    build.build(build._compiler(), real)
    log = root / "calls.log"
    copying = root / "copying-cxx"
    copying.write_text(
        "#!/bin/sh\n"
        f"echo call >> '{log}'\n"
        'while [ $# -gt 0 ]; do if [ "$1" = "-o" ]; then out="$2"; fi; shift; done\n'
        f"cp '{real}' \"$out\"\n"
    )
    failing = root / "failing-cxx"
    failing.write_text("#!/bin/sh\necho 'fatal error: out of memory' >&2\nexit 1\n")
    for script in (copying, failing):
        script.chmod(0o755)
    return {"copying": copying, "failing": failing, "log": log}


def _calls(compilers) -> int:
    log = compilers["log"]
    return len(log.read_text().splitlines()) if log.exists() else 0


def _probe(cache, compiler):
    env = {k: v for k, v in os.environ.items() if k not in ("RANKSSL_DISABLE_FUSED", "RANKSSL_KERNELS")}
    env.update(RANKSSL_CACHE_DIR=str(cache), CXX=str(compiler), OMP_NUM_THREADS="1", PYTHONWARNINGS="default")
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"probe died with {done.returncode} (SIGBUS is -7):\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def _library(cache, compiler, monkeypatch):
    monkeypatch.setenv("RANKSSL_CACHE_DIR", str(cache))
    return build.library_path(str(compiler))


def _built_cache(tmp_path, compilers, monkeypatch):
    """A cache holding an intact library built by the stand-in compiler."""
    cache = tmp_path / "cache"
    target = _library(cache, compilers["copying"], monkeypatch)
    build.build(str(compilers["copying"]), target)
    assert build.verify(target) is None
    return cache, target


def test_first_use_builds_once_says_so_and_later_processes_only_load(tmp_path, compilers, monkeypatch):
    before = _calls(compilers)
    cache = tmp_path / "cache"
    result, stderr = _probe(cache, compilers["copying"])
    assert result["loaded"] and result["diff"] < 1e-8
    assert stderr.count(NOTICE) == 1 and str(cache) in stderr
    assert _calls(compilers) == before + 1
    target = _library(cache, compilers["copying"], monkeypatch)
    record = json.loads(build.record_path(target).read_text())
    assert record["size"] == target.stat().st_size == compilers["copying"].parent.joinpath("real.so").stat().st_size
    assert not [p for p in cache.iterdir() if p.name.startswith(".")], "temporary files left behind"

    result, stderr = _probe(cache, compilers["copying"])
    assert result["loaded"] and NOTICE not in stderr and "RuntimeWarning" not in stderr
    assert _calls(compilers) == before + 1


@pytest.mark.parametrize(
    "damage, reason",
    [
        ("truncated", "bytes where"),
        ("garbage", "SHA-256 differs"),
        ("no record", "is missing"),
        ("bad record", "unreadable"),
    ],
)
def test_a_damaged_library_is_rebuilt_with_a_warning_naming_it(tmp_path, compilers, monkeypatch, damage, reason):
    cache, target = _built_cache(tmp_path, compilers, monkeypatch)
    data = target.read_bytes()
    if damage == "truncated":
        target.write_bytes(data[: len(data) // 3])
    elif damage == "garbage":  # same size: only the digest can tell
        target.write_bytes(os.urandom(len(data)))
    elif damage == "no record":
        build.record_path(target).unlink()
    else:
        build.record_path(target).write_text("{\"size\": ")
    before = _calls(compilers)
    result, stderr = _probe(cache, compilers["copying"])
    assert f"cached kernel library {target} is damaged" in stderr and reason in stderr
    assert _calls(compilers) == before + 1 and NOTICE in stderr
    assert result["loaded"] and result["diff"] < 1e-8
    assert build.verify(target) is None and target.read_bytes() == data


def test_a_damaged_library_that_cannot_be_rebuilt_falls_back_to_torch(tmp_path, compilers, monkeypatch):
    cache, target = _built_cache(tmp_path, compilers, monkeypatch)
    # The failing compiler has another cache key: put the damaged library under its name.
    broken = _library(cache, compilers["failing"], monkeypatch)
    broken.write_bytes(target.read_bytes()[:5000])
    shutil.copy(build.record_path(target), build.record_path(broken))
    result, stderr = _probe(cache, compilers["failing"])
    assert f"cached kernel library {broken} is damaged" in stderr
    assert f"unavailable for {broken}" in stderr and "out of memory" in stderr and "pure-torch path" in stderr
    assert not result["loaded"] and result["diff"] == 0.0


def test_an_unwritable_cache_builds_privately_with_a_warning(tmp_path, compilers):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    cache = blocker / "cache"  # cannot be created, even by root
    before = _calls(compilers)
    result, stderr = _probe(cache, compilers["copying"])
    assert f"cannot write the kernel cache {cache}" in stderr and "RANKSSL_CACHE_DIR" in stderr
    assert result["loaded"] and result["diff"] < 1e-8
    assert _calls(compilers) == before + 1
    assert blocker.read_text() == "not a directory"
