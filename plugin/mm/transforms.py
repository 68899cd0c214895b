"""Multi-view transforms for mmengine pipelines, built on lightly's view transforms.

A pipeline item is a dict with ``img`` (a PIL image or an (H, W) / (H, W, C) uint8
array) and ``gt_label``. Colour arrays are RGB (rankssl's datasets, torchvision's) except
where mmcv's ``LoadImageFromFile`` made them: mmcv decodes to BGR. The transforms tell the
two apart by the item's ``channel_order`` key when present, else by mmcv's marks (an array
``img`` beside ``img_path``), and swap BGR to RGB before any colour transform.
:class:`MultiView` turns it into ``inputs``: a list of
view tensors (C, H, W) in [0, 1]; :class:`PackViews` then keeps ``inputs`` and a
``data_samples`` dict. Normalisation happens once per batch in the data preprocessor.

Example (two SimCLR-style views of a 32x32 canvas, as the digits recipes use)::

    pipeline = [
        dict(type='MultiView', views=[
            dict(type='SimCLRViewTransform', num_views=2, input_size=32, min_scale=0.3,
                 hf_prob=0.0, gaussian_blur=0.0, random_gray_scale=0.0, normalize=None),
        ]),
        dict(type='PackViews'),
    ]

Multi-crop (2x224 + 6x96) uses lightly's ``DINOTransform``, which returns all 8 views.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

__all__ = ["MultiView", "EvalView", "PackViews", "to_pil", "channel_order_of"]


CHANNEL_ORDERS = ("auto", "rgb", "bgr")


def channel_order_of(results: Dict[str, Any], img_key: str = "img", setting: str = "auto") -> str:
    """``'rgb'`` or ``'bgr'``: the channel order of ``results[img_key]``.

    ``setting`` other than ``'auto'`` wins; then the item's own ``channel_order`` key; then
    mmcv's ``LoadImageFromFile``, which leaves a NumPy array decoded as BGR beside
    ``img_path``; anything else (PIL images, rankssl's and torchvision's arrays) is RGB.
    """
    if setting not in CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {setting!r}.")
    if setting != "auto":
        return setting
    order = results.get("channel_order")
    if order is not None:
        order = str(order).lower()
        if order not in ("rgb", "bgr"):
            raise ValueError(f"The pipeline item's channel_order must be 'rgb' or 'bgr', got {order!r}.")
        return order
    if "img_path" in results and isinstance(results.get(img_key), np.ndarray):
        return "bgr"  # mmcv.transforms.LoadImageFromFile: mmcv.imfrombytes decodes to BGR
    return "rgb"


def to_pil(img: Any, channel_order: str = "rgb") -> Any:
    """A PIL image from a PIL image, a uint8 array (H, W) / (H, W, C) or a tensor (C, H, W) in [0, 1].

    ``channel_order='bgr'``: a 3-channel array is BGR (mmcv's loader) and is turned to RGB.

    Example::

        >>> import numpy as np
        >>> blue_bgr = np.zeros((2, 2, 3), np.uint8); blue_bgr[..., 0] = 255
        >>> to_pil(blue_bgr, 'bgr').getpixel((0, 0))
        (0, 0, 255)
    """
    from PIL import Image

    if isinstance(img, Image.Image):
        return img
    if isinstance(img, torch.Tensor):
        img = (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).squeeze(-1).numpy()
    array = np.asarray(img)
    if array.dtype != np.uint8:
        raise TypeError(f"Images must be uint8 arrays, got dtype {array.dtype}.")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if channel_order == "bgr" and array.ndim == 3 and array.shape[2] in (3, 4):
        array = np.ascontiguousarray(array[..., [2, 1, 0] + ([3] if array.shape[2] == 4 else [])])
    return Image.fromarray(array)


def _lightly_transform(cfg: dict) -> Callable:
    """Build a transform class of ``lightly.transforms`` (or torchvision) from ``dict(type=..., **kwargs)``."""
    import lightly.transforms as lightly_transforms

    cfg = dict(cfg)
    name = cfg.pop("type")
    cls = getattr(lightly_transforms, name, None)
    if cls is None:
        import torchvision.transforms as tv

        cls = getattr(tv, name, None)
    if cls is None:
        import difflib

        known = [n for n in dir(lightly_transforms) if n.endswith("Transform")]
        close = difflib.get_close_matches(name, known, n=3)
        raise KeyError(
            f"Unknown view transform {name!r}: not in lightly.transforms or torchvision.transforms. "
            f"Closest lightly transforms: {close}."
        )
    try:
        return cls(**cfg)
    except TypeError as exc:
        raise TypeError(f"View transform {name}: {exc}") from exc


class MultiView:
    """Make the list of views of one image.

    Args:
        views: a list of view configs. Each is ``dict(type=NAME, num_views=n, **kwargs)``
            where NAME is a class of ``lightly.transforms`` (for example
            ``SimCLRViewTransform``, or ``DINOTransform`` which itself returns the
            global and local crops of a multi-crop setting) or of
            ``torchvision.transforms``. A transform that returns a list contributes
            all of its views once; one that returns a tensor is applied ``num_views``
            times (default 1). Views keep their order: global views first.
        img_key: the key of the image in the pipeline dict.
        channel_order: ``'auto'`` (see :func:`channel_order_of`: BGR after mmcv's
            ``LoadImageFromFile``, else RGB), ``'rgb'`` or ``'bgr'``.

    Views must end as tensors (lightly's transforms end with ``ToTensor``; pass
    ``normalize=None`` and normalise in the data preprocessor).
    """

    def __init__(self, views: Sequence[dict], img_key: str = "img", channel_order: str = "auto") -> None:
        channel_order_of({}, img_key, channel_order)  # validates the setting
        self.channel_order = channel_order
        if not views:
            raise ValueError("MultiView needs at least one view config.")
        self.view_cfgs = [copy.deepcopy(dict(v)) for v in views]
        self.transforms: List[tuple] = []
        for cfg in self.view_cfgs:
            num = cfg.pop("num_views", 1)
            if not isinstance(num, int) or num < 1:
                raise ValueError(f"num_views must be a positive integer, got {num!r}.")
            self.transforms.append((_lightly_transform(cfg), num))
        self.img_key = img_key

    def __call__(self, results: Dict[str, Any]) -> Dict[str, Any]:
        image = to_pil(results[self.img_key], channel_order_of(results, self.img_key, self.channel_order))
        views: List[torch.Tensor] = []
        for transform, num in self.transforms:
            out = transform(image)
            if isinstance(out, (list, tuple)):
                views.extend(out)
                continue
            views.append(out)
            views.extend(transform(image) for _ in range(num - 1))
        if not all(isinstance(v, torch.Tensor) for v in views):
            raise TypeError("Every view transform must return tensors (end with ToTensor).")
        results["inputs"] = views
        return results

    def __repr__(self) -> str:
        return f"MultiView(views={self.view_cfgs})"


class EvalView:
    """The single deterministic view used for evaluation: optional resize and centre crop, then ToTensor.

    Args:
        resize: shorter-side resize before cropping (``None``: keep).
        crop_size: centre-crop side (``None``: keep).
        channel_order: as in :class:`MultiView`.
    """

    def __init__(
        self,
        resize: Optional[int] = None,
        crop_size: Optional[int] = None,
        img_key: str = "img",
        channel_order: str = "auto",
    ) -> None:
        import torchvision.transforms as tv

        channel_order_of({}, img_key, channel_order)  # validates the setting
        self.channel_order = channel_order

        steps: List[Callable] = []
        if resize is not None:
            steps.append(tv.Resize(resize))
        if crop_size is not None:
            steps.append(tv.CenterCrop(crop_size))
        steps.append(tv.ToTensor())
        self.transform = tv.Compose(steps)
        self.img_key = img_key
        self.resize, self.crop_size = resize, crop_size

    def __call__(self, results: Dict[str, Any]) -> Dict[str, Any]:
        order = channel_order_of(results, self.img_key, self.channel_order)
        results["inputs"] = [self.transform(to_pil(results[self.img_key], order))]
        return results

    def __repr__(self) -> str:
        return f"EvalView(resize={self.resize}, crop_size={self.crop_size})"


class PackViews:
    """Keep ``inputs`` (the views) and a ``data_samples`` dict (``label``, ``index``, ``is_bank``)."""

    def __init__(self, meta_keys: Sequence[str] = ()) -> None:
        self.meta_keys = tuple(meta_keys)

    def __call__(self, results: Dict[str, Any]) -> Dict[str, Any]:
        if "inputs" not in results:
            raise KeyError("PackViews needs 'inputs'; put MultiView or EvalView before it in the pipeline.")
        samples = {
            "label": int(results.get("gt_label", -1)),
            "index": int(results.get("sample_idx", -1)),
            "is_bank": bool(results.get("is_bank", False)),
        }
        for key in self.meta_keys:
            samples[key] = results[key]
        return {"inputs": results["inputs"], "data_samples": samples}

    def __repr__(self) -> str:
        return f"PackViews(meta_keys={self.meta_keys})"
