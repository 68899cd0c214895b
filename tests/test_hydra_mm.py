"""Hydra in mmengine: the algorithm, EffectiveRank metric, SpectrumHook and `rankssl analyze`."""

import csv
import os
import types

import numpy as np
import pytest
import torch

from rankssl.mm.analyze import analyze_checkpoint, main as analyze_main
from rankssl.mm.diagnostics import EffectiveRank, SpectrumHook
from rankssl.mm.hydra import Hydra
from rankssl.ops import effective_rank, singular_spectrum


def _model(**kwargs):
    return Hydra(backbone=dict(type="SmallCNN", in_channels=1, widths=(8, 16)),
                 neck=dict(type="HydraProjectionHead", hidden_dim=32, out_dim=16),
                 loss=dict(type="HydraLoss", embed_dim=16, hidden_dim=16, seed=0), **kwargs)


def test_algorithm_trains_filter_and_reads_labels():
    model = _model(num_classes=4)
    assert model.loss_module.dim == 16 and model.loss_module.num_classes == 4
    names = [n for n, _ in model.named_parameters()]
    assert "loss_module.feature_filter.class_embedding.weight" in names
    views = torch.rand(2, 8, 1, 32, 32)
    labels = torch.arange(4).repeat(2)
    loss = model([views], dict(label=labels), mode="loss")["loss"]
    loss.backward()
    assert model.feature_filter.class_embedding.weight.grad is not None
    out = model([views[0]], dict(label=labels), mode="predict")
    assert len(out) == 8 and out[0]["feat"].dim() == 1 and int(out[1]["label"]) == 1


def test_algorithm_bad_input():
    with pytest.raises(ValueError, match="number of classes"):
        _model()
    with pytest.raises(ValueError, match="needs class labels"):
        _model(num_classes=4)([torch.rand(2, 8, 1, 32, 32)], None, mode="loss")
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        _model(num_classes=4)([torch.rand(2, 8, 1, 32, 32)], dict(label=torch.arange(8)), mode="loss")


def test_feature_filter_from_config_and_registry():
    from mmengine.registry import MODELS

    model = MODELS.build(dict(
        type="rankssl.Hydra", backbone=dict(type="SmallCNN", in_channels=1, widths=(8, 16)),
        neck=dict(type="HydraProjectionHead", hidden_dim=32, out_dim=16),
        loss=dict(type="HydraLoss", num_classes=3,
                  feature_filter=dict(type="FeatureFilter", num_classes=3, out_dim=16, embed_dim=8, mode="product"))))
    assert model.feature_filter.mode == "product" and model.feature_filter.embed_dim == 8


def test_effective_rank_metric_matches_ops_and_subsets():
    feats = torch.randn(30, 6)
    metric = EffectiveRank()
    metric.process(None, [{"feat": f, "is_bank": i < 10} for i, f in enumerate(feats)])
    got = metric.compute_metrics(metric.results)
    want = effective_rank(singular_spectrum(feats, normalize=True), from_singular_values=True)
    assert got["erank"] == pytest.approx(want) and got["erank_ratio"] == pytest.approx(want / 6)
    query = EffectiveRank(subset="query", normalize=False)
    query.process(None, [{"feat": f, "is_bank": i < 10} for i, f in enumerate(feats)])
    assert len(query.results) == 20
    assert query.compute_metrics(query.results)["erank"] == pytest.approx(effective_rank(feats[10:]))
    with pytest.raises(KeyError, match="'feat'"):
        EffectiveRank().process(None, [{"x": 1}])
    with pytest.raises(ValueError, match="subset"):
        EffectiveRank(subset="train")


def test_spectrum_hook_writes_png_and_npz(tmp_path):
    metric = EffectiveRank()
    metric.process(None, [{"feat": f} for f in torch.randn(20, 5)])
    metric.compute_metrics(metric.results)
    runner = types.SimpleNamespace(rank=0, epoch=3, work_dir=str(tmp_path),
                                   val_loop=types.SimpleNamespace(evaluator=types.SimpleNamespace(metrics=[metric])),
                                   logger=None)
    hook = SpectrumHook()
    hook.after_val_epoch(runner, {})
    assert (tmp_path / "spectrum.png").stat().st_size > 1000
    stored = np.load(tmp_path / "spectrum.npz")
    np.testing.assert_allclose(stored["epoch_3"], metric.last_spectrum)


def _checkpoint(tmp_path, mode="fused"):
    model = Hydra(backbone=dict(type="SmallCNN", in_channels=1, widths=(8, 16)),
                  neck=dict(type="HydraProjectionHead", hidden_dim=32, out_dim=12),
                  loss=dict(type="HydraLoss", num_classes=4, gate_mode=mode, embed_dim=8, hidden_dim=16))
    model.train()
    with torch.no_grad():  # move the BatchNorm running statistics away from their defaults
        model.feature_filter(torch.randint(0, 4, (16,)), torch.randint(0, 4, (16,)))
    path = tmp_path / "epoch_1.pth"
    cfg = f"model = dict(type='Hydra', loss=dict(type='HydraLoss', num_classes=4, gate_mode='{mode}'))\n"
    torch.save({"state_dict": model.state_dict(),
                "meta": {"cfg": cfg, "dataset_meta": {"classes": ["zero", "one", "two", "three"]}}}, path)
    return model.feature_filter.eval(), str(path)


@pytest.mark.parametrize("mode", ["fused", "product"])
def test_analyze_exports_pair_gates(tmp_path, mode):
    filt, path = _checkpoint(tmp_path, mode)
    result = analyze_checkpoint(path, str(tmp_path / "out"), classes=[0, 2, 3])
    table = result["table"]
    assert table["pairs"].tolist() == [[0, 0], [0, 2], [0, 3], [2, 2], [2, 3], [3, 3]]
    with torch.no_grad():
        torch.testing.assert_close(table["gates"][4], filt(torch.tensor([2]), torch.tensor([3]))[0])
    stored = np.load(tmp_path / "out" / "pair_gates.npz")
    np.testing.assert_allclose(stored["overlap"], table["overlap"].numpy())
    assert list(stored["class_names"]) == ["zero", "two", "three"]
    with open(tmp_path / "out" / "pair_gates.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0][:4] == ["class_a", "class_b", "name_a", "name_b"] and len(rows) == 7
    assert rows[5][2:4] == ["two", "three"] and len(rows[5]) == 6 + 12
    assert float(rows[5][6]) == pytest.approx(float(table["gates"][4, 0]), rel=1e-5)
    for png in ("open_fraction.png", "pair_overlap.png"):
        assert (tmp_path / "out" / png).stat().st_size > 1000


def test_analyze_command_line(tmp_path, capsys):
    _, path = _checkpoint(tmp_path)
    assert analyze_main([path, "--no-plot", "--class-names", "a,b,c,d"]) == 0
    out_dir = os.path.splitext(path)[0] + "_analysis"
    assert "10 class pairs of 4 classes" in capsys.readouterr().out
    assert sorted(os.listdir(out_dir)) == ["pair_gates.csv", "pair_gates.npz", "pair_overlap.csv"]


def test_analyze_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError):
        analyze_checkpoint(str(tmp_path / "missing.pth"))
    torch.save({"state_dict": {"backbone.weight": torch.zeros(2)}}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="no Hydra feature filter"):
        analyze_checkpoint(str(tmp_path / "other.pth"))
    _, path = _checkpoint(tmp_path)
    with pytest.raises(ValueError, match="class names"):
        analyze_checkpoint(path, class_names=["a"], plot=False)
    with pytest.raises(ValueError, match="at most 2"):
        analyze_checkpoint(path, max_classes=2, plot=False)


def test_checkpoint_loader_refuses_arbitrary_getattr(tmp_path):
    import pickle

    from rankssl.mm.analyze import _load

    from collections import OrderedDict

    class Evil:  # getattr on an allowed class: the first step of reaching arbitrary code
        def __reduce__(self):
            return (getattr, (OrderedDict, "fromkeys"))

    torch.save({"state_dict": {}, "x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(pickle.UnpicklingError):
        _load(str(tmp_path / "evil.pth"))


def test_rankssl_cli_has_analyze(tmp_path, capsys):
    from rankssl.cli import main as cli_main

    _, path = _checkpoint(tmp_path)
    assert cli_main(["analyze", path, "--classes", "1,3", "--out", str(tmp_path / "cli"), "--no-plot"]) == 0
    assert "3 class pairs of 2 classes" in capsys.readouterr().out
    assert (tmp_path / "cli" / "pair_gates.npz").exists()


def test_instance_loss_mixing():
    model = Hydra(backbone=dict(type="SmallCNN", in_channels=1, widths=(8, 16)),
                  neck=dict(type="HydraProjectionHead", hidden_dim=32, out_dim=16), num_classes=4,
                  loss=dict(type="HydraLoss", embed_dim=16, hidden_dim=16),
                  instance_loss=dict(type="NTXentLoss", temperature=0.2), pair_weight=2.0)
    proj = [torch.randn(8, 16), torch.randn(8, 16)]
    labels = torch.arange(4).repeat(2)
    pair_labels_seed = torch.random.get_rng_state()
    got = model.compute_loss(proj, dict(label=labels))
    torch.random.set_rng_state(pair_labels_seed)
    want = (model.instance_loss(*proj) + 2.0 * model.loss_module(proj, labels)) / 3.0
    torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="pair_weight"):
        Hydra(backbone=dict(type="SmallCNN", in_channels=1, widths=(8, 16)), num_classes=4, pair_weight=-1)
