"""The two-digit data set (100 classes from scikit-learn's digits): determinism, split discipline, classes."""

import json

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from rankssl.mm.digits import make_two_digit_canvas, related_class_pairs, two_digit_sources


def _sklearn_split():
    target = load_digits().target
    train, test = train_test_split(np.arange(len(target)), test_size=0.2, random_state=0, stratify=target)
    return target, set(train.tolist()), set(test.tolist())


def test_deterministic_and_seeded():
    a_images, a_labels = make_two_digit_canvas.__wrapped__("test", per_class=3)
    b_images, b_labels = make_two_digit_canvas.__wrapped__("test", per_class=3)
    assert np.array_equal(a_images, b_images) and np.array_equal(a_labels, b_labels)
    c_images, _ = make_two_digit_canvas.__wrapped__("test", per_class=3, seed=1)
    assert not np.array_equal(a_images, c_images)
    assert a_images.dtype == np.uint8 and a_images.shape == (300, 32, 32)
    assert not a_images.flags.writeable


@pytest.mark.parametrize("split", ["train", "test"])
def test_digits_come_from_their_own_split_and_make_the_label(split):
    target, train, test = _sklearn_split()
    sources, labels = two_digit_sources(split, per_class=30 if split == "train" else 10)
    used = set(sources.ravel().tolist())
    assert used <= (train if split == "train" else test)
    assert not used & (test if split == "train" else train)  # no test digit in a training image
    assert np.array_equal(labels, 10 * target[sources[:, 0]] + target[sources[:, 1]])


def test_all_hundred_classes_balanced():
    _, labels = make_two_digit_canvas("test", per_class=4)
    assert np.array_equal(np.bincount(labels, minlength=100), np.full(100, 4))


def test_each_digit_lies_in_its_half():
    # A noiseless canvas: the tens digit's ink is left of the middle, the units digit's right of it.
    images, labels = make_two_digit_canvas("test", per_class=2, noise=0.0)
    ink = images.astype(float).sum(axis=1)  # (N, width) column ink
    for row, label in zip(ink, labels):
        assert row[:16].sum() > 0 and row[16:].sum() > 0, label


def test_related_pairs_share_a_digit():
    related = related_class_pairs()
    expected = np.zeros((100, 100), dtype=bool)
    for a in range(100):
        for b in range(100):
            expected[a, b] = a != b and (f"{a:02d}"[0] == f"{b:02d}"[0] or f"{a:02d}"[1] == f"{b:02d}"[1])
    assert np.array_equal(related, expected)
    assert related.sum() // 2 == 900 and set(related.sum(axis=1).tolist()) == {18}


def test_registered_dataset_builds_from_the_rankssl_scope():
    from mmengine.registry import DATASETS, DefaultScope

    import rankssl.registry  # noqa: F401

    with DefaultScope.overwrite_default_scope("rankssl"):
        dataset = DATASETS.build(dict(type="TwoDigitCanvas", split="test", per_class=2,
                                      pipeline=[dict(type="EvalView"), dict(type="PackViews")]))
    assert len(dataset) == 200 and dataset.metainfo["classes"][42] == "42"
    assert sorted(set(dataset.get_gt_labels().tolist())) == list(range(100))


@pytest.mark.slow
def test_two_digit_hydra_recipe_trains_on_the_real_data(tmp_path):
    from mmengine.config import Config
    from mmengine.runner import Runner

    from rankssl.recipes import find_recipe

    cfg = Config.fromfile(find_recipe("hydra_smallcnn_1xb256-50e_two-digits"))
    cfg.work_dir = str(tmp_path)
    cfg.train_dataloader.batch_size = 16
    cfg.train_dataloader.dataset.update(per_class=1, indices=32)
    for part in ("bank", "query"):
        cfg.val_dataloader.dataset[part].update(per_class=1, indices=20)
    cfg.test_dataloader = cfg.test_evaluator = cfg.test_cfg = None
    cfg.train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=1, val_interval=1)
    cfg.param_scheduler = None
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2
    val = json.load(open(tmp_path / "scalars.json"))["val"][-1]
    assert "knn/top1" in val and val["spectrum/erank"] >= 1.0
