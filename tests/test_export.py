"""`rankssl export`: a checkpoint's backbone as a plain state_dict that torchvision loads."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torchvision

from rankssl.cli import main
from rankssl.mm.export import backbone_state_dict, export_backbone


def _mmengine_checkpoint(path, model):
    """A checkpoint as mmengine's runner writes it: meta, state_dict and a message hub with HistoryBuffers."""
    from mmengine.logging import MessageHub

    hub = MessageHub(name="export-test")
    hub.update_scalar("train/loss", 1.5)
    torch.save({"meta": {"epoch": 1, "iter": 4}, "state_dict": model.state_dict(),
                "message_hub": hub.state_dict()}, path)


def _groco_resnet18():
    from rankssl.registry import MODELS

    torch.manual_seed(0)
    model = MODELS.build(dict(type="GroCo", backbone=dict(type="TorchvisionResNet", depth=18),
                              neck=dict(type="GroCoProjectionHead", hidden_dim=32, out_dim=16)))
    with torch.no_grad():  # make every tensor distinguishable from a fresh torchvision model
        for tensor in model.backbone.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.rand_like(tensor))
    return model


def test_resnet18_backbone_loads_into_torchvision_resnet18_with_every_tensor(tmp_path):
    model = _groco_resnet18()
    ckpt, out = tmp_path / "epoch_1.pth", tmp_path / "resnet18.pth"
    _mmengine_checkpoint(ckpt, model)
    assert main(["export", str(ckpt), str(out)]) == 0
    state = torch.load(out)  # torch's default weights_only=True: a plain dict of tensors
    net = torchvision.models.resnet18(weights=None)
    result = net.load_state_dict(state, strict=False)
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"] and result.unexpected_keys == []
    assert set(state) == set(net.state_dict()) - {"fc.weight", "fc.bias"}
    for name, tensor in model.backbone.net.state_dict().items():
        if not name.startswith("fc."):
            torch.testing.assert_close(net.state_dict()[name], tensor, rtol=0, atol=0)
    assert not any(k.startswith(("neck", "loss")) for k in state)


def test_other_backbones_keep_their_own_names(tmp_path):
    from rankssl.models.backbones import SmallCNN
    from rankssl.registry import MODELS

    model = MODELS.build(dict(type="S2R2", backbone=dict(type="SmallCNN", in_channels=1, widths=(4, 8)),
                              neck=dict(type="MLPHead", hidden_dim=8, out_dim=4)))
    ckpt = tmp_path / "s2r2.pth"
    _mmengine_checkpoint(ckpt, model)
    summary = export_backbone(str(ckpt), str(tmp_path / "cnn.pth"))
    assert "own names" in summary
    fresh = SmallCNN(in_channels=1, widths=(4, 8))
    fresh.load_state_dict(torch.load(tmp_path / "cnn.pth"), strict=True)
    torch.testing.assert_close(fresh.features[0].weight, model.backbone.features[0].weight)


def test_small_stem_export_says_how_to_load(tmp_path):
    from rankssl.registry import MODELS

    model = MODELS.build(dict(type="GroCo", backbone=dict(type="TorchvisionResNet", depth=18, small_stem=True),
                              neck=dict(type="GroCoProjectionHead", hidden_dim=8, out_dim=8)))
    _mmengine_checkpoint(tmp_path / "c.pth", model)
    summary = export_backbone(str(tmp_path / "c.pth"), str(tmp_path / "o.pth"))
    assert "conv1 is (64, 3, 3, 3)" in summary
    net = torchvision.models.resnet18(weights=None)
    net.conv1, net.maxpool = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False), torch.nn.Identity()
    assert net.load_state_dict(torch.load(tmp_path / "o.pth"), strict=False).unexpected_keys == []


def test_export_refuses_what_is_not_a_backbone_checkpoint(tmp_path):
    torch.save({"state_dict": {"encoder.weight": torch.zeros(2)}}, tmp_path / "x.pth")
    with pytest.raises(ValueError, match="no backbone tensors"):
        export_backbone(str(tmp_path / "x.pth"), str(tmp_path / "y.pth"))
    with pytest.raises(ValueError, match="must differ"):
        export_backbone(str(tmp_path / "x.pth"), str(tmp_path / "x.pth"))
    with pytest.raises(ValueError, match="expected a dict"):
        backbone_state_dict([1, 2])
    assert not (tmp_path / "y.pth").exists()


def test_plain_torch_load_of_a_checkpoint_after_the_allow_list(tmp_path):
    """What the README says: plain torch.load refuses mmengine's HistoryBuffer; after rankssl's
    allow-list (or with load_checkpoint_file) it loads, still with weights_only=True."""
    ckpt = tmp_path / "epoch_1.pth"
    _mmengine_checkpoint(ckpt, _groco_resnet18())
    script = f"""
import pickle, torch
try:
    torch.load({str(ckpt)!r})
    print("plain: loaded")
except pickle.UnpicklingError:
    print("plain: refused")
from rankssl.mm.checkpoint import allow_mmengine_checkpoints
allow_mmengine_checkpoints()
ckpt = torch.load({str(ckpt)!r})
print("allowed:", sorted(ckpt))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "plain: refused" in out.stdout
    assert "allowed: ['message_hub', 'meta', 'state_dict']" in out.stdout
