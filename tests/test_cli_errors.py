"""Bad input to the rankssl command, as the command line shows it.

The cases are the CLI rows of the one bad-input table (``tests/test_bad_input.py``), which
checks that each raises from Python (``main(argv)``); here, with ``short_errors=True`` (what
the ``rankssl`` script does), each must print one or two lines on stderr with exit status 1
and no traceback.
"""

import os
import subprocess
import sys

import pytest

from rankssl.cli import CommandError, main
from test_bad_input import CLI_ROWS, DIGITS

# The rows (id, argv, exception, words) live in the one bad-input table, tests/test_bad_input.py,
# which checks that each raises from Python; here each is checked from the command line.
# --cfg-options values of the wrong type: named with the key and the expected type before anything is built.
OPTION_ROWS = [
    ("lr not a number", ["train", DIGITS, "--cfg-options", "optim_wrapper.optimizer.lr=abc"], CommandError,
     ["optim_wrapper.optimizer.lr", "a number", "'abc'"]),
    ("checkpoint interval not a number", ["train", DIGITS, "--cfg-options", "default_hooks.checkpoint.interval=abc"],
     CommandError, ["default_hooks.checkpoint.interval", "whole number", "'abc'"]),
    ("seed not a number", ["train", DIGITS, "--cfg-options", "randomness.seed=abc"], CommandError,
     ["randomness.seed", "whole number", "'abc'"]),
    ("val_interval=0", ["train", DIGITS, "--cfg-options", "train_cfg.val_interval=0"], CommandError,
     ["train_cfg.val_interval", ">= 1", "got 0"]),
    ("widths not a sequence", ["train", DIGITS, "--cfg-options", "model.backbone.widths=7"], CommandError,
     ["model.backbone.widths", "sequence", "(32, 64, 128)", "got 7"]),
    ("batch size a float", ["train", DIGITS, "--cfg-options", "train_dataloader.batch_size=12.5"], CommandError,
     ["train_dataloader.batch_size", "whole number", "12.5"]),
    ("dict replaced by a number", ["test", DIGITS, "x.pth", "--cfg-options", "model.neck=3"], CommandError,
     ["model.neck", "dict", "got 3"]),
]
ROWS = CLI_ROWS + OPTION_ROWS


@pytest.fixture(autouse=True)
def _no_torchrun_env(monkeypatch, tmp_path):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)  # nothing may be written into the checkout


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


@pytest.mark.parametrize("argv, error, words", [r[1:] for r in OPTION_ROWS], ids=[r[0] for r in OPTION_ROWS])
def test_wrong_option_types_raise_from_python(argv, error, words):
    with pytest.raises(error) as info:
        main(argv)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_options_of_the_right_type_pass():
    from rankssl.mm.option_types import check_option_types

    recipe = {"optim_wrapper": {"optimizer": {"lr": 4.5}}, "model": {"backbone": {"widths": (8, 16)}},
              "default_hooks": {"checkpoint": {"interval": 5}}, "randomness": {"seed": 0}, "label": "x"}
    check_option_types(recipe, {"optim_wrapper.optimizer.lr": 1, "model.backbone.widths": [4, 8],
                                "default_hooks.checkpoint.interval": -1, "randomness.seed": None,
                                "label": 3, "new_key": "anything"})


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
