"""One's own unlabelled images: every image file under a folder, for self-supervised training.

Example::

    >>> import os, tempfile
    >>> from PIL import Image
    >>> root = tempfile.mkdtemp(); os.mkdir(os.path.join(root, 'holiday'))
    >>> Image.new('RGB', (40, 30), 'red').save(os.path.join(root, 'a.jpg'))
    >>> Image.new('L', (20, 20)).save(os.path.join(root, 'holiday', 'b.png'))
    >>> ds = UnlabelledImages(root)
    >>> len(ds), ds[1]['img'].mode, ds[1]['gt_label'], os.path.basename(ds[1]['img_path'])
    (2, 'RGB', -1, 'b.png')
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence

from rankssl.mm.datasets import _ImageDataset, _missing
from rankssl.mm.image_io import find_images, image_extensions, load_rgb

__all__ = ["UnlabelledImages"]


class UnlabelledImages(_ImageDataset):
    """Every image file under ``data_root`` (sub-folders included), as RGB, label -1.

    Any format PIL opens (JPEG, PNG, WebP, BMP, TIFF, GIF, ...); grey, palette and RGBA
    images are converted to RGB. Files are listed once, sorted by path, so ``indices``
    picks a fixed subset. A file that cannot be decoded raises
    :class:`~rankssl.mm.image_io.ImageReadError` naming it, also from DataLoader workers.

    Items: ``img`` (an RGB PIL image), ``gt_label`` = -1, ``img_path``, ``channel_order`` = ``'rgb'``.

    Args:
        data_root: the folder of images.
        extensions: only files with these extensions (default: every format PIL opens).
        pipeline, indices, test_mode: as in mmengine's ``BaseDataset``.
    """

    METAINFO: Dict[str, Any] = {"classes": ()}

    @staticmethod
    def check_data_root(data_root: str = "data/my_images") -> None:
        """Raise ``FileNotFoundError`` naming the folder when it holds no image file."""
        if not os.path.isdir(data_root):
            raise _missing(
                "UnlabelledImages",
                data_root,
                "Point it at a folder of your images (any PIL-readable format, sub-folders included).",
            )

    def __init__(
        self, data_root: str = "data/my_images", extensions: Optional[Sequence[str]] = None, **kwargs: Any
    ) -> None:
        self.check_data_root(data_root)
        self.data_root = data_root
        self.paths: List[str] = find_images(data_root, extensions)
        if not self.paths:
            shown = ", ".join(extensions or image_extensions()[:12])
            raise FileNotFoundError(
                f"UnlabelledImages: no image file under {os.path.abspath(data_root)!r} "
                f"(looked for {shown}, ... in all sub-folders)."
            )
        super().__init__(**kwargs)

    def load_data_list(self) -> List[Dict[str, Any]]:
        return [
            {"gt_label": -1, "source_index": i, "img_path": p, "channel_order": "rgb"} for i, p in enumerate(self.paths)
        ]

    def _labels(self) -> Sequence[int]:
        return [-1] * len(self.paths)

    def _load_image(self, index: int) -> Any:
        return load_rgb(self.paths[index])
