"""A run is never lost: damaged checkpoints are refused, resume finds the newest intact one,
a stop saves, a resumed run continues the same random stream, a frozen peer times out."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from rankssl.cli import main
from rankssl.mm.checkpoint import (
    CheckpointError,
    checked_checkpoint_loading,
    load_checkpoint_file,
    select_resume_checkpoint,
    verify_checkpoint,
)
from rankssl.mm.hooks import read_scalars

from _mm_helpers import tiny_digits_recipe


def _tiny_recipe(tmp_path, extra: str = "", name: str = "tiny.py") -> str:
    return tiny_digits_recipe(tmp_path, extra, name, max_epochs=3, checkpoint_interval=5, max_keep_ckpts=3)


def _save(path, **extra):
    torch.save({"meta": {"epoch": 1}, "state_dict": {"w": torch.arange(4096.0).reshape(64, 64)}, **extra}, path)


# ----------------------------------------------------------------------------- damaged files
def _damage(tmp_path):
    good = tmp_path / "good.pth"
    _save(good)
    data = bytearray(good.read_bytes())
    start = data.index(b"data/0") + 200  # inside the tensor's bytes
    flipped = bytearray(data)
    flipped[start + 1000] ^= 0x04
    files = {
        "empty.pth": (b"", "empty"),
        "text.pth": (b"epoch_3.pth\n", "not a torch zip archive"),
        "truncated.pth": (bytes(data[: len(data) // 2]), "truncated"),
        "flipped.pth": (bytes(flipped), "CRC-32"),
    }
    for name, (content, _) in files.items():
        (tmp_path / name).write_bytes(content)
    return good, {name: words for name, (_, words) in files.items()}


def test_damaged_checkpoints_are_refused_with_the_file_named(tmp_path):
    good, cases = _damage(tmp_path)
    verify_checkpoint(str(good))
    assert torch.equal(load_checkpoint_file(str(good))["state_dict"]["w"], torch.arange(4096.0).reshape(64, 64))
    for name, words in cases.items():
        path = str(tmp_path / name)
        with pytest.raises(CheckpointError) as info:
            load_checkpoint_file(path)
        assert path in str(info.value) and words in str(info.value), (name, str(info.value))
    # the bit flip really loads silently without the check: the check is what refuses it
    assert not torch.equal(torch.load(tmp_path / "flipped.pth")["state_dict"]["w"],
                           torch.load(good)["state_dict"]["w"])
    # mmengine's own loader (Runner.load_checkpoint / resume) goes through the same check
    from mmengine.runner.checkpoint import _load_checkpoint

    with checked_checkpoint_loading():
        with pytest.raises(CheckpointError, match="CRC-32"):
            _load_checkpoint(str(tmp_path / "flipped.pth"))
        with pytest.raises(CheckpointError, match="empty"):
            _load_checkpoint(str(tmp_path / "empty.pth"))
        assert _load_checkpoint(str(good))["meta"] == {"epoch": 1}
    # outside the block mmengine's own loader is back (it loads the flipped file without a check)
    _load_checkpoint(str(tmp_path / "flipped.pth"))


def test_constructing_the_hook_or_importing_rankssl_mm_changes_nothing_global():
    """No process-wide side effect: torch's safe globals and mmengine's checkpoint loaders stay as they
    were after importing every rankssl.mm module and constructing the checkpoint hook; the checked loader
    is in place only while a runner that the hook serves loads."""
    script = """
import importlib, pkgutil, signal, torch
from mmengine.runner.checkpoint import CheckpointLoader
safe, loaders, handler = list(torch.serialization.get_safe_globals()), dict(CheckpointLoader._schemes), \
    signal.getsignal(signal.SIGTERM)
import rankssl.mm, rankssl.registry
for info in pkgutil.iter_modules(rankssl.mm.__path__):
    importlib.import_module("rankssl.mm." + info.name)
rankssl.registry.import_all()
from rankssl.mm.checkpoint_hook import AtomicCheckpointHook
AtomicCheckpointHook(interval=1)
# torch allow-lists its own classes as its submodules load (torch.distributed.tensor ...): only those may differ
added = [g for g in torch.serialization.get_safe_globals() if g not in safe]
assert not [g for g in added if not getattr(g, "__module__", "").startswith(("torch", "builtins"))], added
from rankssl.mm.checkpoint import mmengine_checkpoint_types
assert not [t for t in mmengine_checkpoint_types() if t in torch.serialization.get_safe_globals()]
assert dict(CheckpointLoader._schemes) == loaders
assert signal.getsignal(signal.SIGTERM) == handler
print("unchanged")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "unchanged" in out.stdout, out.stderr[-3000:]


def test_scoped_allow_list_leaves_an_earlier_process_wide_one_in_force():
    script = """
import torch
from rankssl.mm.checkpoint import allow_mmengine_checkpoints, mmengine_checkpoint_types, mmengine_safe_globals
types = mmengine_checkpoint_types()
with mmengine_safe_globals():
    assert all(t in torch.serialization.get_safe_globals() for t in types)
assert not any(t in torch.serialization.get_safe_globals() for t in types)
allow_mmengine_checkpoints()  # the user's process-wide choice
with mmengine_safe_globals():
    pass
assert all(t in torch.serialization.get_safe_globals() for t in types)
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]


def test_runner_loads_are_checked_only_while_they_run(tmp_path):
    from mmengine.runner.checkpoint import CheckpointLoader

    from rankssl.mm.checkpoint import check_runner_loads

    good, _ = _damage(tmp_path)
    seen = []

    class Runner:
        def load_or_resume(self):
            seen.append(CheckpointLoader._get_checkpoint_loader(str(good)))

    before = dict(CheckpointLoader._schemes)
    runner = Runner()
    check_runner_loads(runner)
    check_runner_loads(runner)  # idempotent: wrapped once
    runner.load_or_resume()
    assert seen == [load_checkpoint_file]
    assert dict(CheckpointLoader._schemes) == before
    assert Runner().load_or_resume() is None and seen[-1] is not load_checkpoint_file  # another runner: untouched


def test_resume_picks_newest_intact_checkpoint_and_ignores_bad_marker(tmp_path):
    for i in (1, 2):
        _save(tmp_path / f"epoch_{i}.pth", step=i)
        time.sleep(0.02)
    (tmp_path / "epoch_3.pth").write_bytes((tmp_path / "epoch_2.pth").read_bytes()[:3000])  # a torn write
    (tmp_path / "best_knn_epoch_9.pth").write_bytes(b"")
    (tmp_path / "last_checkpoint").write_text("")  # a kill while mmengine rewrote it
    choice = select_resume_checkpoint(str(tmp_path))
    assert choice.path == str(tmp_path / "epoch_2.pth")
    skipped = dict(choice.skipped)
    assert set(skipped) == {str(tmp_path / "last_checkpoint"), str(tmp_path / "epoch_3.pth")}
    assert "empty" in skipped[str(tmp_path / "last_checkpoint")]
    assert any("resuming from" in line and "epoch_2.pth" in line for line in choice.messages())
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "epoch_7.pth"))  # dangling
    choice = select_resume_checkpoint(str(tmp_path))
    assert choice.path == str(tmp_path / "epoch_2.pth") and "does not exist" in dict(choice.skipped)[
        str(tmp_path / "last_checkpoint")]
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    assert select_resume_checkpoint(str(empty)).path is None


def test_resume_with_nothing_to_resume_is_an_error(tmp_path):
    recipe = _tiny_recipe(tmp_path)
    with pytest.raises(FileNotFoundError, match="nothing to resume.*--resume-or-start"):
        main(["train", recipe, "--work-dir", str(tmp_path / "w"), "--resume"])


# ----------------------------------------------------------------------------- kill during a write
KILL_SCRIPT = """
import os, signal, sys
import mmengine.runner.runner as runner_module
from mmengine.config import Config
from mmengine.runner import Runner

real_save = runner_module.save_checkpoint
calls = []

def save_then_die(checkpoint, filename, **kwargs):
    calls.append(filename)
    if len(calls) < 2:
        return real_save(checkpoint, filename, **kwargs)
    real_save(checkpoint, filename, **kwargs)
    with open(filename, 'r+b') as f:  # the second write is cut short by a kill
        f.truncate(os.path.getsize(filename) // 3)
    os.kill(os.getpid(), signal.SIGKILL)

runner_module.save_checkpoint = save_then_die
cfg = Config.fromfile(sys.argv[1])
cfg.work_dir = sys.argv[2]
Runner.from_cfg(cfg).train()
"""


@pytest.mark.slow
def test_kill_during_checkpoint_write(tmp_path, capsys):
    """SIGKILL in the middle of writing epoch_2.pth: the previous checkpoint and the marker stay intact."""
    recipe = _tiny_recipe(tmp_path)
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    work = tmp_path / "w"
    proc = subprocess.run([sys.executable, str(script), recipe, str(work)], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    # the torn bytes went to a temporary file; epoch_1 and the marker are intact
    assert not (work / "epoch_2.pth").exists()
    assert (work / "last_checkpoint").read_text() == str(work / "epoch_1.pth")
    assert [n for n in os.listdir(work) if n.endswith(".tmp")]
    # the curve survives the kill: every iteration recorded before it (2 epochs x 4)
    train, _ = read_scalars(str(work))
    assert [r["iter"] for r in train] == list(range(1, 9))
    # what mmengine's own CheckpointHook leaves after such a kill: a torn file, newer than the rest
    (work / "epoch_2.pth").write_bytes((work / "epoch_1.pth").read_bytes()[:20000])
    # `rankssl train --resume-or-start` (as --resume) skips it, says so, continues from epoch 1, finishes
    main(["train", recipe, "--work-dir", str(work), "--resume-or-start"])
    err = capsys.readouterr().err
    assert f"skipped {work / 'epoch_2.pth'}" in err and f"resuming from {work / 'epoch_1.pth'}" in err
    assert (work / "last_checkpoint").read_text().strip() == str(work / "epoch_3.pth")
    verify_checkpoint(str(work / "epoch_3.pth"))
    verify_checkpoint(str(work / "epoch_2.pth"))  # rewritten whole
    assert not [n for n in os.listdir(work) if n.endswith(".tmp")]  # stale temporaries cleaned
    train, val = read_scalars(str(work))
    assert [r["iter"] for r in train] == list(range(1, 13)) and [r["epoch"] for r in val] == [1, 2, 3]


# ----------------------------------------------------------------------------- stop and continue
def _register_signal_hook():
    from mmengine.hooks import Hook

    from rankssl.registry import HOOKS

    class SendSignalAt(Hook):
        def __init__(self, at: int, signum: int = int(signal.SIGTERM)) -> None:
            self.at, self.signum = at, signum

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
            if runner.iter + 1 == self.at:
                os.kill(os.getpid(), self.signum)

    HOOKS.register_module(name="SendSignalAt", module=SendSignalAt, force=True)


def _losses(work_dir):
    train, _ = read_scalars(work_dir)
    return {r["iter"]: (r["loss"], r["lr"]) for r in train}


@pytest.mark.slow
def test_sigterm_saves_and_resume_continues_the_same_random_stream(tmp_path, capsys):
    _register_signal_hook()
    recipe = _tiny_recipe(tmp_path)
    ref, run = str(tmp_path / "ref"), str(tmp_path / "run")
    # --resume-or-start in an empty work dir starts fresh and says so
    main(["train", recipe, "--work-dir", ref, "--resume-or-start",
          "--cfg-options", "default_hooks.checkpoint.save_best=knn/top1"])
    assert "nothing to resume" in capsys.readouterr().err
    # checkpoint interval 5, 3 epochs each followed by validation: a checkpoint at each validation
    names = sorted(n for n in os.listdir(ref) if n.endswith(".pth"))
    assert [n for n in names if n.startswith("epoch_")] == [f"epoch_{i}.pth" for i in (1, 2, 3)]
    best = [n for n in names if n.startswith("best_")]
    assert len(best) == 1 and not [n for n in os.listdir(ref) if n.endswith(".tmp")]
    verify_checkpoint(os.path.join(ref, best[0]))
    hooks = "custom_hooks = [dict(type='CurvesHook'), dict(type='FlushDenormalHook'), dict(type='SendSignalAt', at=6)]\n"
    stopping = _tiny_recipe(tmp_path, hooks, "stopping.py")
    handler_before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as info:  # stopped in the middle of epoch 2
        main(["train", stopping, "--work-dir", run])
    assert info.value.code == 128 + signal.SIGTERM
    assert "stopped by SIGTERM after iteration 6" in capsys.readouterr().err
    saved = os.path.join(run, "interrupted_iter_6.pth")
    assert open(os.path.join(run, "last_checkpoint")).read() == saved
    assert signal.getsignal(signal.SIGTERM) is handler_before  # handlers restored
    # plain mmengine resume=True, with the marker emptied as a kill during its rewrite would leave it
    open(os.path.join(run, "last_checkpoint"), "w").close()
    from mmengine.config import Config
    from mmengine.runner import Runner

    cfg = Config.fromfile(recipe)
    cfg.work_dir, cfg.resume = run, True
    Runner.from_cfg(cfg).train()
    expected, got = _losses(ref), _losses(run)
    assert sorted(got) == sorted(expected) == list(range(1, 13))
    for it in range(1, 13):  # the resumed iterations 7..12 see the same batches and augmentations
        assert got[it][0] == pytest.approx(expected[it][0], rel=1e-6, abs=1e-8), it  # observed: bit-identical
        assert got[it][1] == pytest.approx(expected[it][1], rel=1e-9), it
    assert not os.path.exists(saved)  # superseded by the regular checkpoints
    assert os.path.isfile(os.path.join(run, "epoch_3.pth"))


# ----------------------------------------------------------------------------- distributed
def _gather_uneven(rank, world_size):
    from rankssl.losses import GroCoLoss

    batch = 6 if rank == 0 else 5
    views = [torch.randn(batch, 8, requires_grad=True) for _ in range(2)]
    try:
        GroCoLoss(n_negatives=2, gather_distributed=True)(views)
    except ValueError as exc:
        return str(exc)
    return None


@pytest.mark.slow
@pytest.mark.dist
def test_gather_with_uneven_batches_raises_on_every_rank():
    from dist_utils import run_distributed

    messages = run_distributed(_gather_uneven, 2)
    for message in messages:  # a clear error on both ranks instead of a gloo SIGABRT
        assert message is not None and "rank 0: (6, 8)" in message and "rank 1: (5, 8)" in message
        assert "same batch size" in message


FREEZE_MODULE = """
import os, signal
from mmengine.hooks import Hook
from rankssl.registry import HOOKS


@HOOKS.register_module(force=True)
class FreezeRankOne(Hook):
    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.rank == 1 and runner.iter + 1 == 2:
            os.kill(os.getpid(), signal.SIGSTOP)
"""

FROZEN_PEER = """
custom_imports = dict(imports=['freeze_rank_one'], allow_failed_imports=False)
custom_hooks = [dict(type='FreezeRankOne')]
env_cfg = dict(dist_cfg=dict(timeout={timeout}))
train_cfg = dict(max_epochs=2)
"""


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


@pytest.mark.slow
@pytest.mark.dist
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_frozen_peer_ends_the_survivor_within_the_recipe_timeout(tmp_path):
    from dist_utils import _free_port

    timeout = 20
    (tmp_path / "freeze_rank_one.py").write_text(FREEZE_MODULE)
    recipe = _tiny_recipe(tmp_path, FROZEN_PEER.format(timeout=timeout))
    env = dict(os.environ, OMP_NUM_THREADS="1", WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
               MASTER_PORT=str(_free_port()),
               PYTHONPATH=str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = []
    for rank in range(2):
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "rankssl", "train", recipe, "--work-dir", str(tmp_path / "w"),
             "--launcher", "pytorch"], env=dict(env, RANK=str(rank), LOCAL_RANK=str(rank)),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    survivor, frozen = procs
    try:
        deadline = time.time() + 300
        while _state(frozen.pid) != "T":  # rank 1 stops itself after its second iteration
            assert survivor.poll() is None and frozen.poll() is None, survivor.stderr.read()[-3000:]
            assert time.time() < deadline, "rank 1 never reached its second iteration"
            time.sleep(0.2)
        stopped_at = time.time()
        _, err = survivor.communicate(timeout=timeout + 120)  # torch's default would block 30 minutes
        waited = time.time() - stopped_at
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert survivor.returncode != 0
    assert timeout / 2 < waited < timeout + 120  # the recipe's timeout ended it, not another error
    assert "timed out" in err.lower() or "timeout" in err.lower(), err[-3000:]


def test_signal_handler_defers_the_first_signal_and_stops_at_the_second():
    from rankssl.mm.checkpoint_hook import AtomicCheckpointHook
    from rankssl.mm.stop_signals import StopOnSignal

    stop = AtomicCheckpointHook(interval=1)._stop
    assert isinstance(stop, StopOnSignal)
    before = signal.getsignal(signal.SIGINT)
    stop.install()
    try:
        os.kill(os.getpid(), signal.SIGINT)  # first Ctrl-C: noted, training goes on to a checkpoint
        time.sleep(0.05)
        assert stop.signal == signal.SIGINT and stop.requested()
        with pytest.raises(KeyboardInterrupt):  # second: stop at once
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
    finally:
        stop.remove()
    assert signal.getsignal(signal.SIGINT) is before


# ----------------------------------------------------------------------------- one run per work dir
HOLD_LOCK = """
import sys
from rankssl.mm.workdir_lock import WorkDirLock
WorkDirLock(sys.argv[1]).acquire()
print('held', flush=True)
sys.stdin.read()
"""


def _hold_in_another_process(work_dir):
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(work_dir)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_run_into_a_work_dir_in_use_stops_before_any_work(tmp_path, capsys):
    from rankssl.mm.workdir_lock import LOCK_NAME, WorkDirInUseError, WorkDirLock

    recipe = _tiny_recipe(tmp_path)
    work = tmp_path / "w"
    holder = _hold_in_another_process(work)
    try:
        assert main(["train", recipe, "--work-dir", str(work)], short_errors=True) == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 2 and lines[0].startswith("rankssl: error: "), lines
        assert f"work dir {work} in use by pid {holder.pid} (started " in lines[0], lines[0]
        assert os.listdir(work) == [LOCK_NAME]  # nothing was built, logged or written
        with pytest.raises(WorkDirInUseError, match=f"pid {holder.pid}"):
            WorkDirLock(str(work)).acquire()
    finally:
        holder.kill()  # SIGKILL: no cleanup runs, the lock file stays behind
        holder.wait()
    assert f"pid={holder.pid}" in (work / LOCK_NAME).read_text()  # the dead run's file is still there ...
    with WorkDirLock(str(work)) as lock:  # ... but its lock died with the process
        assert lock.held and f"pid={os.getpid()}" in (work / LOCK_NAME).read_text()
    assert (work / LOCK_NAME).read_text() == ""  # released on exit


def test_work_dir_lock_is_reentrant_in_a_process_and_released_by_the_last_holder(tmp_path):
    from rankssl.mm.workdir_lock import WorkDirInUseError, WorkDirLock, hold_work_dir

    outer = hold_work_dir(str(tmp_path)).acquire()
    inner = WorkDirLock(str(tmp_path)).acquire()  # the checkpoint hook inside `rankssl train`
    inner_again = WorkDirLock(str(tmp_path))
    inner_again.acquire()
    inner_again.release()
    outer.release()
    probe = HOLD_LOCK.replace("print('held', flush=True)\nsys.stdin.read()", "print('held')")
    busy = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True)
    assert busy.returncode != 0 and "WorkDirInUseError" in busy.stderr and f"pid {os.getpid()}" in busy.stderr
    inner.release()
    free = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True)
    assert free.returncode == 0 and free.stdout.strip() == "held", free.stderr
    holder = _hold_in_another_process(tmp_path)
    try:
        hold_work_dir(str(tmp_path), rank=1).acquire()  # ranks > 0 share rank 0's work dir: no lock
        from mmengine.config import Config
        from mmengine.runner import Runner

        cfg = Config.fromfile(_tiny_recipe(tmp_path))
        cfg.work_dir = str(tmp_path)
        with pytest.raises(WorkDirInUseError):  # a plain mmengine run is refused too, by the checkpoint hook
            Runner.from_cfg(cfg).train()
    finally:
        holder.kill()
        holder.wait()


# ----------------------------------------------------------------------------- resume with a changed config
OTHER_METHOD = """
model = dict(type='SimCLR', neck=dict(_delete_=True, type='MLPHead', hidden_dim=32, out_dim=16, num_layers=2),
             loss=dict(_delete_=True, type='NTXentLoss', temperature=0.2))
"""


@pytest.mark.slow
def test_resume_compares_the_checkpoint_with_the_new_config_before_training(tmp_path, capsys):
    from rankssl.mm.resume_check import compare_state_dicts

    recipe = _tiny_recipe(tmp_path)  # 3 epochs, schedule: 5 warm-up epochs + cosine to 50
    work = str(tmp_path / "w")
    main(["train", recipe, "--work-dir", work, "--cfg-options", "train_cfg.max_epochs=1"])
    checkpoint = os.path.join(work, "epoch_1.pth")
    capsys.readouterr()
    # a changed model: refused before training, naming the recipe, the tensor and both shapes
    with pytest.raises(ValueError) as info:
        main(["train", recipe, "--work-dir", work, "--resume", "--cfg-options", "model.backbone.widths=(8,32)"])
    message = str(info.value)
    assert f"cannot resume from {checkpoint}" in message and "recipe 'tiny'" in message
    assert "tensor 'backbone.features.4.weight' is (16, 8, 3, 3) in the checkpoint, (32, 8, 3, 3)" in message
    assert not os.path.exists(os.path.join(work, "epoch_2.pth"))
    # another recipe's checkpoint (another method): refused, naming both recipes and the component
    other = _tiny_recipe(tmp_path, OTHER_METHOD, "other_method.py")
    with pytest.raises(ValueError) as info:
        main(["train", other, "--work-dir", work, "--resume"])
    message = str(info.value)
    assert "written by recipe 'tiny'" in message and "(recipe 'other_method')" in message
    assert "model.type is 'GroCo' in the checkpoint, 'SimCLR' in this run" in message
    assert "model.neck.type is 'GroCoProjectionHead' in the checkpoint, 'MLPHead'" in message
    # torch's own load would have refused too, but later and without the recipe (what the check replaces)
    assert compare_state_dicts({"w": torch.zeros(2)}, {"w": torch.zeros(2)}) == []
    # a changed learning rate: the warning says the checkpoint's optimizer state wins; and it does
    capsys.readouterr()
    main(["train", recipe, "--work-dir", work, "--resume",
          "--cfg-options", "optim_wrapper.optimizer.lr=0.5", "train_cfg.max_epochs=2"])
    out = "".join(capsys.readouterr())
    assert "these changed settings have no effect: optim_wrapper.optimizer.lr 4.5 -> 0.5" in out, out[-3000:]
    assert "applied from the resumed iteration on: train_cfg.max_epochs 1 -> 2" in out
    lrs = {it: lr for it, (_, lr) in _losses(work).items()}
    # still warming up from base 4.5 (iteration 5 of 20): the new base 0.5 would give lr < 0.13 < lr[4]
    assert lrs[5] > lrs[4] > 0.5, lrs


# ----------------------------------------------------------------------------- damaged scalars log
def test_damaged_scalars_lines_are_skipped_with_file_and_line_named(tmp_path):
    import json
    from types import SimpleNamespace

    from rankssl.mm.hooks import CurvesHook

    lines = [
        json.dumps({"iter": 1, "epoch": 1, "loss": 2.0, "split": "train"}).encode(),
        json.dumps({"epoch": 1, "loss": 1.9, "split": "train"}).encode(),  # 2: no iter
        b"null",  # 3
        b'{"iter": 3, "epoch": 1, "loss": \xff\xfe}',  # 4: not UTF-8
        b'{"iter": 4, "epoch": 1, "lo',  # 5: torn in the middle of the file (a copy cut short)
        json.dumps({"iter": 5, "epoch": 2, "loss": "nan?", "split": "train"}).encode(),  # 6: not a number
        json.dumps({"iter": 6, "loss": 1.5, "split": "val"}).encode(),  # 7: val without epoch
        json.dumps({"iter": 8, "epoch": 2, "loss": 1.2, "split": "train"}).encode(),
        json.dumps({"iter": 8, "epoch": 2, "knn/top1": 50.0, "split": "val"}).encode(),
        b'{"iter": 9, "ep',  # 10: the last write, torn by a kill
    ]
    log = tmp_path / "scalars.jsonl"
    log.write_bytes(b"\n".join(lines))
    with pytest.warns(UserWarning) as record:
        train, val = read_scalars(str(tmp_path))
    assert [r["iter"] for r in train] == [1, 8] and val == [{"iter": 8, "epoch": 2, "knn/top1": 50.0}]
    messages = [str(w.message) for w in record]
    assert [m.split(",")[0] for m in messages] == [str(log)] * 7
    for number, words in [(2, "no numeric 'iter'"), (3, "NoneType"), (4, "not UTF-8"), (5, "not a complete JSON"),
                          (6, "'loss' is 'nan?'"), (7, "no numeric 'epoch'"), (10, "not a complete JSON")]:
        assert any(m.startswith(f"{log}, line {number}: skipped") and words in m for m in messages), (number,
                                                                                                    messages)
    # resume: the curves hook keeps the good records up to the checkpoint and rewrites a clean log
    hook = CurvesHook()
    with pytest.warns(UserWarning, match="line 2"):
        hook.before_train(SimpleNamespace(iter=8, rank=0, work_dir=str(tmp_path)))
    assert [r["iter"] for r in hook.train] == [1, 8] and len(hook.val) == 1
    assert len(log.read_text().splitlines()) == 3
    # a damaged scalars.json (no scalars.jsonl) is ignored with a warning, not a crash
    log.unlink()
    (tmp_path / "scalars.json").write_bytes(b'{"train": [{"iter": 1, "lo')
    with pytest.warns(UserWarning, match="scalars.json: ignored, it is damaged"):
        assert read_scalars(str(tmp_path)) == ([], [])


# ----------------------------------------------------------------------------- Hydra: stop and continue
def _tiny_hydra_recipe(tmp_path, extra: str = "", name: str = "tiny_hydra.py") -> str:
    from rankssl.recipes import find_recipe

    path = tmp_path / name
    path.write_text(f"""
_base_ = {find_recipe("hydra_smallcnn_1xb256-50e_digits")!r}
model = dict(backbone=dict(widths=(8, 16)), neck=dict(hidden_dim=32, out_dim=16),
             loss=dict(embed_dim=16, hidden_dim=32))
train_dataloader = dict(batch_size=12, dataset=dict(indices=48), sampler=dict(m=3, batch_size=12))
val_dataloader = dict(dataset=dict(bank=dict(indices=60), query=dict(indices=30)))
test_dataloader = val_dataloader
val_evaluator = [dict(type='KNNAccuracy', k=20, temperature=0.07)]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=5, max_keep_ckpts=3))
train_cfg = dict(max_epochs=2, val_interval=1)
custom_hooks = [dict(type='CurvesHook'), dict(type='FlushDenormalHook')]
""" + extra)
    return str(path)


@pytest.mark.slow
def test_hydra_run_stopped_by_sigterm_and_resumed_equals_the_uninterrupted_run(tmp_path, capsys):
    """Hydra draws partner classes from its own generator and batches from MPerClassSampler:
    a resumed run must continue both streams (and the global ones) exactly."""
    _register_signal_hook()
    ref, run = str(tmp_path / "ref"), str(tmp_path / "run")
    main(["train", _tiny_hydra_recipe(tmp_path), "--work-dir", ref])
    stopping = _tiny_hydra_recipe(tmp_path, "custom_hooks = [dict(type='CurvesHook'), dict(type='FlushDenormalHook'), "
                                  "dict(type='SendSignalAt', at=6)]\n", "tiny_hydra_stopping.py")
    with pytest.raises(SystemExit) as info:  # stopped in the middle of epoch 2
        main(["train", stopping, "--work-dir", run])
    assert info.value.code == 128 + signal.SIGTERM
    main(["train", _tiny_hydra_recipe(tmp_path), "--work-dir", run, "--resume"])
    expected, got = _losses(ref), _losses(run)
    assert sorted(got) == sorted(expected) == list(range(1, 9))
    assert [got[it] for it in range(1, 9)] == [expected[it] for it in range(1, 9)]  # bit-identical
    _, val_ref = read_scalars(ref)
    _, val_run = read_scalars(run)
    assert val_run == val_ref


def test_generators_a_sampler_or_dataset_owns_are_saved_and_restored():
    import numpy as np
    from torch.utils.data import DataLoader, RandomSampler

    from rankssl.mm.batch_skipping import SkipFirstBatches
    from rankssl.mm.rng_state import capture_generators, loader_generators, restore_generators

    class Noisy(torch.utils.data.Dataset):
        def __init__(self):
            self.rng = np.random.default_rng(3)
            self.legacy = np.random.RandomState(4)

        def __len__(self):
            return 10

        def __getitem__(self, i):
            return torch.tensor([float(i), self.rng.random(), self.legacy.rand()])

    data = Noisy()
    loader = SkipFirstBatches(DataLoader(data, batch_size=5, sampler=RandomSampler(
        data, generator=torch.Generator().manual_seed(1))), 0)
    owned = loader_generators(loader)
    assert set(owned) == {"sampler.generator", "dataset.rng", "dataset.legacy"}
    saved = torch.load(_roundtrip(capture_generators(owned)), weights_only=True)  # what a checkpoint holds
    first = torch.cat(list(loader))
    assert not torch.equal(torch.cat(list(loader)), first)  # the streams moved on
    assert restore_generators(owned, saved) == []
    assert torch.equal(torch.cat(list(loader)), first)  # same order, same per-item draws
    assert restore_generators(owned, {}) == list(owned)  # named when a checkpoint lacks them


def _roundtrip(obj):
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return buffer


# ----------------------------------------------------------------------------- kill during validation
KILL_IN_VALIDATION = """
import os, signal
from mmengine.hooks import Hook
from rankssl.registry import HOOKS


@HOOKS.register_module(force=True)
class KillInValidation(Hook):
    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.epoch == 1:
            os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.slow
def test_validation_cut_short_by_a_kill_is_redone_on_resume(tmp_path):
    recipe = tiny_digits_recipe(tmp_path, max_epochs=2, checkpoint_interval=5)
    ref, work = str(tmp_path / "ref"), tmp_path / "w"
    (tmp_path / "kill_in_validation.py").write_text(KILL_IN_VALIDATION)
    killing = tiny_digits_recipe(tmp_path, "custom_imports = dict(imports=['kill_in_validation'])\n"
                           "custom_hooks = [dict(type='CurvesHook'), dict(type='FlushDenormalHook'), "
                           "dict(type='KillInValidation')]\n", "killing.py", max_epochs=2, checkpoint_interval=5)
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def train(*args):  # every run in its own process, as a user runs them (and bit-comparable)
        return subprocess.run([sys.executable, "-m", "rankssl", "train", *args], capture_output=True, text=True,
                              timeout=300, env=env)

    assert train(recipe, "--work-dir", ref).returncode == 0
    proc = train(killing, "--work-dir", str(work))
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    _, val = read_scalars(str(work))
    assert val == []  # epoch 1's validation was lost with the kill
    proc = train(recipe, "--work-dir", str(work), "--resume")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert f"resuming from {work / 'epoch_1.pth'}" in out
    assert "The validation after epoch 1 did not finish before the run stopped: running it now" in out
    _, val_ref = read_scalars(ref)
    _, val = read_scalars(str(work))
    assert [r["epoch"] for r in val] == [1, 2] and val == val_ref  # redone, and the run goes on unchanged
    assert _losses(str(work)) == _losses(ref)  # bit-identical training, redone validation included
