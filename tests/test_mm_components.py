"""rankssl.mm: data preprocessor, algorithms' forward modes, kNN vs brute force, datasets, sampler."""

import numpy as np
import pytest
import torch

import rankssl.registry  # noqa: F401  (registers the components)
from rankssl.mm.data_preprocessor import MultiViewDataPreprocessor
from rankssl.mm.metrics import KNNAccuracy, LinearProbeAccuracy, weighted_knn_predict


def test_preprocessor_stacks_views_once_per_resolution():
    pre = MultiViewDataPreprocessor(mean=[0.5], std=[0.25])
    views = [torch.rand(4, 1, 16, 16), torch.rand(4, 1, 16, 16), torch.rand(4, 1, 8, 8)]
    out = pre({"inputs": views, "data_samples": {"label": torch.arange(4)}})
    shapes = [tuple(g.shape) for g in out["inputs"]]
    assert shapes == [(2, 4, 1, 16, 16), (1, 4, 1, 8, 8)]
    torch.testing.assert_close(out["inputs"][0][1], (views[1] - 0.5) / 0.25)
    # pseudo_collate layout: lists of per-sample tensors
    out2 = pre({"inputs": [list(v) for v in views]})
    torch.testing.assert_close(out2["inputs"][1], out["inputs"][1])


def test_backbone_runs_once_per_resolution_group():
    from rankssl.mm.algorithms import GroCo

    model = GroCo(backbone=dict(type="SmallCNN", in_channels=1, widths=(8, 16)),
                  neck=dict(type="GroCoProjectionHead", hidden_dim=16, out_dim=8),
                  loss=dict(type="GroCoLoss", n_negatives=2, n_positive_views=2))
    calls = []
    model.backbone.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    data = model.data_preprocessor({"inputs": [torch.rand(4, 1, 16, 16)] * 2 + [torch.rand(4, 1, 8, 8)] * 3})
    loss = model(**data, mode="loss")["loss"]
    assert calls == [8, 12] and torch.isfinite(loss)
    projections = model(**data, mode="tensor")
    assert len(projections) == 5 and projections[0].shape == (4, 8)


def test_predict_returns_backbone_features_per_sample():
    from rankssl.mm.algorithms import SimCLR

    model = SimCLR(backbone=dict(type="SmallCNN", in_channels=1, widths=(8, 16)),
                   neck=dict(type="MLPHead", hidden_dim=16, out_dim=8)).eval()
    x = torch.rand(3, 1, 16, 16)
    out = model.val_step({"inputs": [x], "data_samples": {"label": torch.tensor([1, 2, 3]),
                                                          "is_bank": torch.tensor([True, False, False])}})
    assert len(out) == 3 and out[1]["label"].item() == 2 and out[0]["is_bank"].item() is True
    torch.testing.assert_close(out[2]["feat"], model.backbone(x)[2])


def test_simclr_matches_lightly_ntxent_on_two_views():
    from lightly.loss import NTXentLoss

    from rankssl.mm.algorithms import SimCLR

    model = SimCLR(backbone=dict(type="SmallCNN", in_channels=1, widths=(8,), norm="none"),
                   neck=dict(type="MLPHead", hidden_dim=16, out_dim=8, batch_norm=False),
                   loss=dict(type="NTXentLoss", temperature=0.3))
    views = [torch.rand(5, 1, 8, 8), torch.rand(5, 1, 8, 8)]
    loss = model(model.data_preprocessor({"inputs": views})["inputs"], mode="loss")["loss"]
    z0, z1 = model.neck(model.backbone(views[0])), model.neck(model.backbone(views[1]))
    torch.testing.assert_close(loss, NTXentLoss(temperature=0.3)(z0, z1))


def _brute_force_knn(query, bank, labels, num_classes, k, t):
    q = query / np.linalg.norm(query, axis=1, keepdims=True)
    b = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    preds = []
    for row in q:
        sims = b @ row
        order = np.argsort(-sims, kind="stable")[:k]
        votes = np.zeros(num_classes)
        for j in order:
            votes[labels[j]] += np.exp(sims[j] / t)
        preds.append(votes)
    return np.array(preds)


@pytest.mark.parametrize("k,t", [(20, 0.07), (200, 0.1), (1, 0.5)])
def test_weighted_knn_matches_brute_force(k, t):
    rng = np.random.default_rng(0)
    bank, query = rng.normal(size=(300, 16)), rng.normal(size=(50, 16))
    labels = rng.integers(0, 5, size=300)
    ours = weighted_knn_predict(torch.tensor(query), torch.tensor(bank), torch.tensor(labels), 5, k, t, chunk_size=7)
    ref = _brute_force_knn(query, bank, labels, 5, min(k, 300), t)
    np.testing.assert_allclose(ours.double().numpy(), ref, rtol=1e-4)


def test_knn_metric_separates_bank_and_queries_and_matches_sklearn_k1():
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(1)
    feats = rng.normal(size=(120, 8)).astype(np.float32)
    labels = rng.integers(0, 3, size=120)
    feats[:, 0] += labels * 1.5
    is_bank = np.arange(120) < 90
    metric = KNNAccuracy(k=1, temperature=0.1)
    metric.process(None, [{"feat": torch.tensor(f), "label": torch.tensor(l), "is_bank": torch.tensor(b)}
                          for f, l, b in zip(feats, labels, is_bank)])
    ours = metric.compute_metrics(metric.results)["top1"]
    normed = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    ref = KNeighborsClassifier(1).fit(normed[is_bank], labels[is_bank]).score(normed[~is_bank], labels[~is_bank])
    assert ours == pytest.approx(100 * ref)


def test_linear_probe_learns_separable_features():
    rng = np.random.default_rng(2)
    labels = np.arange(200) % 4
    feats = rng.normal(size=(200, 6)) + np.eye(4, 6)[labels] * 4
    metric = LinearProbeAccuracy(max_iter=50)
    metric.results = [{"feat": torch.tensor(f), "label": int(l), "is_bank": i < 150}
                      for i, (f, l) in enumerate(zip(feats, labels))]
    assert metric.compute_metrics(metric.results)["top1"] > 90


def test_digits_canvas_is_deterministic_and_needs_invariance():
    from rankssl.mm.digits import make_digits_canvas

    xtr, ytr = make_digits_canvas("train")
    xte, yte = make_digits_canvas("test")
    assert xtr.shape == (1437, 32, 32) and xte.shape == (360, 32, 32)
    assert np.bincount(ytr).min() >= 130
    make_digits_canvas.cache_clear()
    assert np.array_equal(make_digits_canvas("test")[0], xte)
    # raw-pixel kNN is far from solving the task
    scores = weighted_knn_predict(torch.tensor(xte.reshape(360, -1), dtype=torch.float32),
                                  torch.tensor(xtr.reshape(1437, -1), dtype=torch.float32), torch.tensor(ytr), 10)
    assert (scores.argmax(1).numpy() == yte).mean() < 0.5


def test_knn_eval_dataset_flags_bank_and_query():
    from rankssl.mm.datasets import KNNEvalDataset

    pipe = [dict(type="EvalView"), dict(type="PackViews")]
    ds = KNNEvalDataset(bank=dict(type="FakeImageDataset", num_samples=6, image_size=8, pipeline=pipe),
                        query=dict(type="FakeImageDataset", num_samples=4, image_size=8, pipeline=pipe))
    assert len(ds) == 10
    assert ds[5]["data_samples"]["is_bank"] and not ds[6]["data_samples"]["is_bank"]
    assert ds[0]["inputs"][0].shape == (3, 8, 8)


@pytest.mark.parametrize("cls", ["CIFAR10", "STL10", "ImageFolder"])
def test_missing_data_root_says_how_to_get_data(cls, tmp_path):
    from mmengine.registry import DATASETS

    with pytest.raises(FileNotFoundError, match="never downloads"):
        DATASETS.build(dict(type=f"rankssl.{cls}", data_root=str(tmp_path / "nothing")))


def test_image_folder_reads_a_tiny_folder(tmp_path):
    from PIL import Image

    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(2):
            Image.fromarray(np.full((10, 10, 3), 40 * i, np.uint8)).save(tmp_path / c / f"{i}.png")
    from mmengine.registry import DATASETS

    ds = DATASETS.build(dict(type="rankssl.ImageFolder", data_root=str(tmp_path),
                             pipeline=[dict(type="EvalView", resize=8, crop_size=8), dict(type="PackViews")]))
    assert len(ds) == 4 and ds[3]["data_samples"]["label"] == 1 and ds[0]["inputs"][0].shape == (3, 8, 8)


def test_multiview_multicrop_pipeline():
    from rankssl.mm.transforms import MultiView

    mv = MultiView(views=[dict(type="DINOTransform", global_crop_size=16, local_crop_size=8, n_local_views=3,
                               normalize=None)])
    out = mv({"img": np.zeros((20, 20, 3), np.uint8)})
    assert [tuple(v.shape) for v in out["inputs"]] == [(3, 16, 16)] * 2 + [(3, 8, 8)] * 3
    with pytest.raises(KeyError, match="SimCLRViewTransform"):
        MultiView(views=[dict(type="SimCLRViewTransfrom")])


def test_mperclass_sampler_adapter():
    from mmengine.registry import DATA_SAMPLERS

    from rankssl.mm.datasets import FakeImageDataset

    ds = FakeImageDataset(num_samples=40, num_classes=4)
    sampler = DATA_SAMPLERS.build(dict(type="rankssl.MPerClassSampler", m=4, batch_size=8),
                                  default_args=dict(dataset=ds, seed=0))
    order = list(sampler)
    assert len(order) == len(sampler) == 40
    labels = ds.get_gt_labels()
    for start in range(0, 40, 8):
        counts = np.bincount(labels[order[start:start + 8]], minlength=4)
        assert sorted(counts[counts > 0]) == [4, 4]
    assert order == list(sampler)  # deterministic per epoch
    sampler.set_epoch(1)
    assert order != list(sampler)
