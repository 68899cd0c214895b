"""`rankssl test RECIPE CKPT` refuses a checkpoint trained as another model."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from _mm_helpers import tiny_digits_recipe

from rankssl.cli import main
from rankssl.mm.checkpoint_match import (CheckpointMismatch, check_checkpoint_matches, model_config_differences,
                                         state_dict_differences, trained_recipe)

SIMCLR = """
model = dict(_delete_=True, type='SimCLR', backbone=dict(type='SmallCNN', in_channels=1, widths=(8, 16)),
             neck=dict(type='MLPHead', hidden_dim=32, out_dim=16), loss=dict(type='NTXentLoss', temperature=0.2),
             data_preprocessor=dict(type='MultiViewDataPreprocessor', mean=[0.2], std=[0.25]))
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A GroCo checkpoint of one tiny epoch, written by `rankssl train`."""
    tmp = tmp_path_factory.mktemp("match")
    recipe = tiny_digits_recipe(tmp, max_epochs=1, name="tiny_groco.py")
    work = tmp / "work"
    assert main(["train", recipe, "--work-dir", str(work)]) == 0
    return tmp, recipe, str(work / "epoch_1.pth")


@pytest.mark.slow
def test_test_command_refuses_another_recipes_checkpoint_in_two_lines(trained):
    tmp, _, ckpt = trained
    simclr = tiny_digits_recipe(tmp, SIMCLR, max_epochs=1, name="tiny_simclr.py")
    out = subprocess.run([sys.executable, "-m", "rankssl", "test", simclr, ckpt], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 2, out.stderr
    assert "does not match recipe 'tiny_simclr'" in lines[0] and "model.type: checkpoint 'GroCo', recipe 'SimCLR'" \
        in lines[0] and "recorded: 'tiny_groco'" in lines[0]
    assert lines[1] == "(add --debug to see the full traceback)"
    assert "knn" not in out.stdout  # no metrics reported


@pytest.mark.slow
def test_test_command_accepts_its_own_checkpoint(trained, capsys):
    _, recipe, ckpt = trained
    assert main(["test", recipe, ckpt]) == 0
    assert "knn/top1" in capsys.readouterr().out


def test_model_config_differences_name_the_entries(trained):
    from rankssl.mm.checkpoint import load_checkpoint_file

    _, recipe, ckpt = trained
    checkpoint = load_checkpoint_file(ckpt)
    assert trained_recipe(checkpoint) == "tiny_groco"
    from mmengine.config import Config

    model = Config.fromfile(recipe).model
    assert model_config_differences(checkpoint, model) == []
    model.loss.n_negatives = 3
    model.data_preprocessor.mean = [0.5]  # a data choice: not compared
    assert model_config_differences(checkpoint, model) == ["model.loss.n_negatives: checkpoint 10, recipe 3"]


def test_state_dict_check_catches_checkpoints_without_a_recorded_config():
    from rankssl.registry import MODELS

    def build(out_dim):
        return MODELS.build(dict(type="GroCo", backbone=dict(type="SmallCNN", in_channels=1, widths=(4, 8)),
                                 neck=dict(type="GroCoProjectionHead", hidden_dim=8, out_dim=out_dim)))

    model = build(8)
    bare = {"state_dict": build(4).state_dict()}  # no meta: nothing recorded
    assert state_dict_differences(model, {"state_dict": model.state_dict()}) == []
    problems = state_dict_differences(model, bare)
    assert problems and "other shapes" in problems[0]
    with pytest.raises(CheckpointMismatch, match="does not match recipe 'r'"):
        check_checkpoint_matches(bare, dict(type="GroCo"), "c.pth", "r", model=model)
    extra = {"state_dict": dict(model.state_dict(), **{"head.w": torch.zeros(1)})}
    assert "not in the recipe's model" in state_dict_differences(model, extra)[0]
