"""Bad input to the rankssl command: one table, each row an input, the error it must raise and
the words its message must contain (the same style as tests/test_bad_input.py).

From Python (``main(argv)``) the error propagates as an exception; from the command line
(``short_errors=True``, what the ``rankssl`` script does) it is one or two lines on stderr
with exit status 1 and no traceback.
"""

import os
import subprocess
import sys

import pytest

from rankssl.cli import CommandError, main

DIGITS = "groco_smallcnn_1xb256-50e_digits"
CIFAR = "groco_resnet18_1xb256-coslr-200e_cifar10"
MISSING = os.path.join(os.sep, "nonexistent", "rankssl-data")

# (id, argv, exception type, words the message must contain)
ROWS = [
    ("unknown recipe", ["train", "groco_smallcnn_1xb256_50e_digits"], FileNotFoundError,
     ["No recipe", "Did you mean", DIGITS, "rankssl recipes"]),
    ("unknown recipe in test", ["test", "nope_recipe", "x.pth"], FileNotFoundError, ["No recipe", "rankssl recipes"]),
    ("missing data", ["train", CIFAR, "--cfg-options", f"train_dataloader.dataset.data_root={MISSING}"],
     FileNotFoundError, ["CIFAR10", MISSING, "never downloads", "data_root"]),
    ("test without data", ["test", CIFAR, __file__, "--cfg-options",
                                 f"test_dataloader.dataset.bank.data_root={MISSING}",
                                 f"test_dataloader.dataset.query.data_root={MISSING}"],
     FileNotFoundError, ["CIFAR10", "never downloads"]),
    ("option without =", ["train", DIGITS, "--cfg-options", "train_cfg.max_epochs"], CommandError,
     ["KEY=VALUE", "'train_cfg.max_epochs'"]),
    ("option with empty key", ["train", DIGITS, "--cfg-options", "=3"], CommandError, ["KEY=VALUE"]),
    ("zero epochs", ["train", DIGITS, "--epochs", "0"], CommandError, ["--epochs", ">= 1", "got 0"]),
    ("negative epochs", ["train", DIGITS, "--epochs", "-2"], CommandError, ["--epochs", ">= 1"]),
    ("max_epochs=0", ["train", DIGITS, "--cfg-options", "train_cfg.max_epochs=0"], CommandError,
     ["train_cfg.max_epochs", ">= 1", "got 0"]),
    ("max_epochs not a number", ["train", DIGITS, "--cfg-options", "train_cfg.max_epochs=ten"], CommandError,
     ["train_cfg.max_epochs", "'ten'"]),
    ("demo zero epochs", ["demo", "--epochs", "0"], CommandError, ["--epochs", ">= 1"]),
    ("demo results from a shortened run", ["demo", "--epochs", "2", "--write-results"], CommandError,
     ["--write-results", "--epochs"]),
    ("demo results without a checkout", ["demo", "--write-results", MISSING], CommandError,
     ["source checkout", "README.md"]),
    ("missing checkpoint", ["test", DIGITS, "no_such_checkpoint.pth"], CommandError,
     ["no_such_checkpoint.pth", "not found", "rankssl train"]),
    ("torchrun launcher without torchrun", ["train", DIGITS, "--launcher", "pytorch"], CommandError,
     ["torchrun", "missing"]),
]


@pytest.fixture(autouse=True)
def _no_torchrun_env(monkeypatch, tmp_path):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)  # nothing may be written into the checkout


@pytest.mark.parametrize("argv, error, words", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_bad_command_raises_from_python(argv, error, words):
    with pytest.raises(error) as info:
        main(argv)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


@pytest.mark.parametrize("argv, error, words", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_bad_command_prints_a_short_error(argv, error, words, capsys):
    assert main(argv, short_errors=True) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("rankssl: error: ") and "--debug" in lines[1], captured.err
    assert "Traceback" not in captured.err + captured.out
    assert "Config:" not in captured.out  # nothing was built or printed before the check
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.mark.parametrize("argv", [["trian", DIGITS], ["train"], ["train", DIGITS, "--epochs", "two"]],
                         ids=["unknown command", "missing recipe", "epochs not an integer"])
def test_usage_errors_exit_with_argparse_message(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv, short_errors=True)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: rankssl") and "error:" in err and "Traceback" not in err


def test_command_line_hides_the_traceback_unless_debug(tmp_path):
    run = [sys.executable, "-m", "rankssl", "train", "groco_smallcnn_1xb256_50e_digits"]
    short = subprocess.run(run, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert short.returncode == 1
    assert short.stderr.startswith("rankssl: error: No recipe") and "Traceback" not in short.stderr
    assert len(short.stderr.strip().splitlines()) == 2
    debug = subprocess.run(run + ["--debug"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "FileNotFoundError" in debug.stderr
