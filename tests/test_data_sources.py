"""Data on disk: --data-root, Fashion-MNIST's IDX files, folders of one's own images, channel order, bad files."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest
import torch

from rankssl.cli import load_config, main
from rankssl.mm.data_root import set_data_root
from rankssl.mm.fashion_mnist import DEBIAN_ROOT, FashionMNIST, find_fashion_mnist, read_idx
from rankssl.mm.image_io import ImageReadError, find_images, load_rgb
from rankssl.mm.own_images import UnlabelledImages
from rankssl.mm.transforms import EvalView, MultiView, channel_order_of, to_pil

# ----------------------------------------------------------------------------- helpers


def write_idx(path: str, array: np.ndarray, compress: bool = False) -> None:
    """An IDX file of unsigned bytes (the MNIST format), written independently of the reader under test."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    with (gzip.open if compress else open)(path + (".gz" if compress else ""), "wb") as handle:
        handle.write(data)


def fake_fashion_mnist(root: str, n_train: int = 300, n_test: int = 40, torchvision_layout: bool = True,
                       compress: bool = False, seed: int = 0) -> dict:
    """A tiny Fashion-MNIST in torchvision's layout (root/FashionMNIST/raw) or flat; returns the arrays."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "FashionMNIST", "raw") if torchvision_layout else root
    os.makedirs(folder, exist_ok=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte"), images, compress)
        write_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte"), labels, compress)
        arrays[prefix] = (images, labels)
    return arrays


def image_folder(root: str) -> dict:
    """A small folder of one's own images: PNG (RGB, grey, RGBA), JPEG in a sub-folder, one corrupt JPEG."""
    from PIL import Image

    os.makedirs(os.path.join(root, "trip", "day2"), exist_ok=True)
    paths = {
        "rgb": os.path.join(root, "a_red.png"),
        "grey": os.path.join(root, "b_grey.png"),
        "rgba": os.path.join(root, "c_rgba.png"),
        "jpeg": os.path.join(root, "trip", "d_photo.JPG"),
        "deep": os.path.join(root, "trip", "day2", "e_photo.jpeg"),
    }
    Image.new("RGB", (24, 16), (255, 0, 0)).save(paths["rgb"])
    Image.new("L", (20, 20), 128).save(paths["grey"])
    Image.new("RGBA", (12, 12), (0, 0, 255, 128)).save(paths["rgba"])
    Image.new("RGB", (32, 32), (0, 200, 0)).save(paths["jpeg"], quality=95)
    Image.new("RGB", (32, 32), (0, 0, 200)).save(paths["deep"], quality=95)
    with open(os.path.join(root, "notes.txt"), "w") as handle:  # not an image: ignored
        handle.write("not an image")
    with open(os.path.join(root, ".hidden.png"), "wb") as handle:  # hidden: ignored
        handle.write(b"junk")
    with open(paths["deep"], "rb") as handle:
        jpeg = handle.read()
    paths["corrupt"] = os.path.join(root, "trip", "f_truncated.jpg")
    with open(paths["corrupt"], "wb") as handle:  # a JPEG cut in the middle of its data
        handle.write(jpeg[: len(jpeg) // 2])
    return paths


# ----------------------------------------------------------------------------- --data-root


def test_set_data_root_moves_every_dataset_and_keeps_suffixes(tmp_path):
    cfg = load_config("groco_resnet50_32xb32-coslr-100e_in1k")
    assert set_data_root(cfg, str(tmp_path)) >= 3  # train, kNN bank, kNN query (test may share val's dicts)
    assert cfg.train_dataloader.dataset.data_root == os.path.join(str(tmp_path), "train")
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        assert loader.dataset.bank.data_root == os.path.join(str(tmp_path), "train")
        assert loader.dataset.query.data_root == os.path.join(str(tmp_path), "val")

    cfg = load_config("simclr_resnet18_1xb256-coslr-200e_cifar10")
    set_data_root(cfg, str(tmp_path))
    roots = [cfg.train_dataloader.dataset.data_root] + [
        d.data_root for loader in (cfg.val_dataloader, cfg.test_dataloader) for d in (loader.dataset.bank,
                                                                                       loader.dataset.query)]
    assert roots == [str(tmp_path)] * 5


def test_set_data_root_refuses_recipes_without_files():
    cfg = load_config("groco_smallcnn_1xb256-50e_digits")
    with pytest.raises(ValueError, match="read no files"):
        set_data_root(cfg, "/somewhere")


def test_missing_data_error_names_the_option(tmp_path, capsys):
    missing = str(tmp_path / "nothing_here")
    status = main(["train", "simclr_resnet18_1xb256-coslr-200e_cifar10", "--data-root", missing,
                   "--work-dir", str(tmp_path / "w")], short_errors=True)
    err = capsys.readouterr().err
    assert status == 1 and "--data-root" in err and missing in err
    status = main(["train", "groco_smallcnn_1xb256-50e_digits", "--data-root", missing,
                   "--work-dir", str(tmp_path / "w")], short_errors=True)
    assert status == 1 and "read no files" in capsys.readouterr().err


def test_data_root_reaches_every_dataset_of_the_imagenet_recipe(tmp_path):
    """Build the recipe's train, bank and query datasets from a generated class-folder layout."""
    from PIL import Image

    from rankssl.mm.builder import build_from_config

    for split, n in (("train", 3), ("val", 2)):
        for cls in ("cat", "dog"):
            os.makedirs(tmp_path / split / cls)
            for i in range(n):
                Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / split / cls / f"{i}.png")
    cfg = load_config("groco_resnet50_32xb32-coslr-100e_in1k")
    set_data_root(cfg, str(tmp_path))
    train = build_from_config(cfg.train_dataloader.dataset, "DATASETS")
    val = build_from_config(cfg.val_dataloader.dataset, "DATASETS")
    assert len(train) == 6 and len(val.bank) == 6 and len(val.query) == 4


# ----------------------------------------------------------------------------- Fashion-MNIST


@pytest.mark.parametrize("torchvision_layout,compress", [(True, False), (False, True)])
def test_fashion_mnist_reads_both_layouts(tmp_path, torchvision_layout, compress):
    arrays = fake_fashion_mnist(str(tmp_path), 30, 12, torchvision_layout, compress)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        ds = FashionMNIST(str(tmp_path), split=split)
        images, labels = arrays[prefix]
        assert len(ds) == len(images)
        item = ds[len(ds) - 1]
        np.testing.assert_array_equal(item["img"], images[-1])
        assert item["gt_label"] == labels[-1]


def test_fashion_mnist_matches_torchvision(tmp_path):
    """torchvision's own FashionMNIST class reads the same files (its layout) to the same images and labels."""
    torchvision = pytest.importorskip("torchvision")
    fake_fashion_mnist(str(tmp_path), 25, 10)
    ours = FashionMNIST(str(tmp_path), split="train")
    theirs = torchvision.datasets.FashionMNIST(str(tmp_path), train=True, download=False)
    np.testing.assert_array_equal(ours.images, theirs.data.numpy())
    np.testing.assert_array_equal(ours.labels, theirs.targets.numpy())


def test_fashion_mnist_errors_name_the_file_and_the_fixes(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist.*--data-root|--data-root"):
        FashionMNIST(str(tmp_path))
    assert find_fashion_mnist(str(tmp_path)) is None
    fake_fashion_mnist(str(tmp_path), 20, 10, torchvision_layout=False)
    path = os.path.join(str(tmp_path), "train-images-idx3-ubyte")
    with open(path, "r+b") as handle:
        handle.truncate(100)
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.*truncated"):
        read_idx(path)
    with pytest.raises(ValueError, match="split"):
        FashionMNIST(str(tmp_path), split="val")


@pytest.mark.slow
def test_train_fashion_mnist_recipe_with_data_root(tmp_path, capsys):
    """`rankssl train RECIPE --data-root DIR` end to end on a generated Fashion-MNIST, then `rankssl test`."""
    fake_fashion_mnist(str(tmp_path / "fm"), n_train=260, n_test=20)
    work = str(tmp_path / "work")
    args = ["--data-root", str(tmp_path / "fm"), "--work-dir", work]
    assert main(["train", "simclr_smallcnn_1xb256-50e_fashion-mnist", "--epochs", "1"] + args) == 0
    assert os.path.isfile(os.path.join(work, "epoch_1.pth"))
    assert main(["test", "simclr_smallcnn_1xb256-50e_fashion-mnist", os.path.join(work, "epoch_1.pth"),
                 "--cfg-options", "test_evaluator.0.k=5"] + args) == 0
    assert "knn/top1" in capsys.readouterr().out


@pytest.mark.skipif(find_fashion_mnist(DEBIAN_ROOT) is None,
                    reason=f"Fashion-MNIST not installed in {DEBIAN_ROOT} (apt-get install dataset-fashion-mnist)")
def test_installed_fashion_mnist():
    train, test = FashionMNIST(DEBIAN_ROOT, split="train"), FashionMNIST(DEBIAN_ROOT, split="test")
    assert (len(train), len(test)) == (60000, 10000)
    assert train.images.shape == (60000, 28, 28)
    assert np.bincount(test.labels).tolist() == [1000] * 10


@pytest.mark.parametrize("recipe", ["simclr_smallcnn_1xb256-50e_fashion-mnist",
                                    "groco_smallcnn_1xb256-50e_fashion-mnist",
                                    "s2r2_smallcnn_1xb256-4v-50e_fashion-mnist"])
def test_fashion_mnist_recipes_keep_the_digits_settings(recipe):
    """Model, loss, learning rate and schedule are the digits recipe's; only the data differs."""
    ours, digits = load_config(recipe), load_config(recipe.replace("_fashion-mnist", "_digits"))
    assert ours.model.backbone == digits.model.backbone and ours.model.loss == digits.model.loss
    assert ours.optim_wrapper.optimizer.lr == digits.optim_wrapper.optimizer.lr
    assert ours.param_scheduler == digits.param_scheduler
    assert ours.train_dataloader.dataset.type == "FashionMNIST"
    views = ours.train_dataloader.dataset.pipeline[0]["views"]
    assert views[0]["input_size"] == 28
    assert views[0]["num_views"] == digits.train_dataloader.dataset.pipeline[0]["views"][0]["num_views"]


# ----------------------------------------------------------------------------- one's own images


def test_unlabelled_images_reads_every_format_recursively(tmp_path):
    paths = image_folder(str(tmp_path))
    found = find_images(str(tmp_path))
    assert found == sorted(p for p in paths.values())  # .txt and hidden files left out, sub-folders searched
    ds = UnlabelledImages(str(tmp_path))
    good = [i for i, p in enumerate(ds.paths) if p != paths["corrupt"]]  # the corrupt one raises (next test)
    images = {os.path.basename(ds.paths[i]): ds[i]["img"] for i in good}
    assert all(img.mode == "RGB" for img in images.values())
    assert images["a_red.png"].getpixel((0, 0)) == (255, 0, 0)
    assert images["b_grey.png"].getpixel((0, 0)) == (128, 128, 128)
    assert images["a_red.png"].size == (24, 16)
    assert all(ds[i]["gt_label"] == -1 for i in good)


def test_corrupt_image_is_named_by_path(tmp_path):
    paths = image_folder(str(tmp_path))
    ds = UnlabelledImages(str(tmp_path))
    with pytest.raises(ImageReadError, match="f_truncated.jpg.*(corrupt|truncated)"):
        ds[ds.paths.index(paths["corrupt"])]
    with pytest.raises(ImageReadError, match="notes.txt.*not an image"):
        load_rgb(str(tmp_path / "notes.txt"))
    with pytest.raises(ImageReadError, match="not found"):
        load_rgb(str(tmp_path / "missing.png"))


def test_truncated_image_in_a_dataloader_worker_is_one_clear_line(tmp_path, capsys):
    """From a worker process, the error keeps its type, names the file and the worker, and has no traceback."""
    paths = image_folder(str(tmp_path))
    ds = UnlabelledImages(str(tmp_path), pipeline=[dict(type="EvalView", resize=8, crop_size=8),
                                                     dict(type="PackViews")])
    loader = torch.utils.data.DataLoader(ds, batch_size=len(ds), num_workers=1)
    with pytest.raises(ImageReadError) as info:
        next(iter(loader))
    message = str(info.value)
    assert paths["corrupt"] in message and "DataLoader worker process 0" in message
    assert "Traceback" not in message and "\n" not in message

    from rankssl.errors import short_error as _short_error

    short = _short_error(info.value)
    assert short.count("\n") == 1 and paths["corrupt"] in short


def test_empty_or_missing_image_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no image file"):
        UnlabelledImages(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="--data-root"):
        UnlabelledImages(str(tmp_path / "missing"))


@pytest.mark.slow
def test_train_on_own_images_recipe(tmp_path):
    """The README's commands on a generated folder: one epoch at batch 12 (GroCo needs 10 negatives), then
    the backbone loads into torchvision's ResNet-18."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(24):
        fmt = "png" if i % 2 else "jpg"
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(tmp_path / f"{i}.{fmt}")
    work = str(tmp_path / "work")
    status = main(["train", "groco_resnet18_1xb64-coslr-100e_own-images", "--data-root", str(tmp_path),
                   "--epochs", "1", "--work-dir", work, "--cfg-options", "train_dataloader.batch_size=12",
                   "train_dataloader.num_workers=0", "train_dataloader.persistent_workers=False",
                   "input_size=32"])
    assert status == 0 and os.path.isfile(os.path.join(work, "epoch_1.pth"))
    state = torch.load(os.path.join(work, "epoch_1.pth"), map_location="cpu", weights_only=False)["state_dict"]
    import torchvision

    backbone = {k[len("backbone.net."):]: v for k, v in state.items() if k.startswith("backbone.net.")}
    missing, unexpected = torchvision.models.resnet18().load_state_dict(backbone, strict=False)
    assert not unexpected and set(missing) == {"fc.weight", "fc.bias"}


# ----------------------------------------------------------------------------- channel order


def _red_png(tmp_path) -> str:
    from PIL import Image

    path = str(tmp_path / "red.png")
    Image.new("RGB", (16, 16), (230, 20, 10)).save(path)
    return path


def test_mmcv_loader_bgr_arrays_become_rgb_views(tmp_path):
    """mmcv's LoadImageFromFile decodes BGR; the views of a red image must still be red."""
    from mmcv.transforms import LoadImageFromFile

    results = LoadImageFromFile()({"img_path": _red_png(tmp_path)})
    assert results["img"][0, 0].tolist() == [10, 20, 230]  # mmcv's BGR, the premise of the fix
    assert channel_order_of(results) == "bgr"
    view = EvalView()(dict(results))["inputs"][0]
    assert view[:, 0, 0].mul(255).round().tolist() == [230, 20, 10]
    views = MultiView([dict(type="ToTensor")])(dict(results))["inputs"]
    assert views[0][:, 0, 0].mul(255).round().tolist() == [230, 20, 10]


def test_mmpretrain_pipeline_keeps_colours(tmp_path):
    """mmpretrain's CustomDataset + its LoadImageFromFile + rankssl's MultiView: red stays red."""
    pytest.importorskip("mmpretrain")
    from mmpretrain.datasets import CustomDataset

    from rankssl.mm.transforms import PackViews

    os.makedirs(tmp_path / "imgs")
    _red_png(tmp_path / "imgs")
    ds = CustomDataset(data_root=str(tmp_path / "imgs"), with_label=False,
                       pipeline=[dict(type="LoadImageFromFile"), MultiView([dict(type="ToTensor")]), PackViews()])
    view = ds[0]["inputs"][0]
    assert view[:, 0, 0].mul(255).round().tolist() == [230, 20, 10]


def test_rgb_arrays_and_explicit_orders(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 200  # red in RGB
    assert channel_order_of({"img": rgb}) == "rgb"  # rankssl's / torchvision's arrays
    assert EvalView()({"img": rgb})["inputs"][0][:, 0, 0].mul(255).round().tolist() == [200, 0, 0]
    # an explicit key wins over mmcv's marks; an explicit setting wins over both
    item = {"img": rgb, "img_path": "x.png", "channel_order": "rgb"}
    assert EvalView()(dict(item))["inputs"][0][:, 0, 0].mul(255).round().tolist() == [200, 0, 0]
    assert EvalView(channel_order="bgr")(dict(item))["inputs"][0][:, 0, 0].mul(255).round().tolist() == [0, 0, 200]
    assert to_pil(rgb[..., :1]).mode == "L"
    with pytest.raises(ValueError, match="channel_order"):
        EvalView(channel_order="brg")
    with pytest.raises(ValueError, match="channel_order"):
        channel_order_of({"img": rgb, "channel_order": "hsv"})
