"""Reading image files: every PIL-readable format, as RGB, with errors that name the file.

A corrupt or truncated file raises :class:`ImageReadError` naming its path. Raised inside
a DataLoader worker, torch re-raises the error in the main process with the worker's
whole traceback as its message; :class:`ImageReadError` keeps only its own line from
it (plus which worker), so the command line shows one clear sentence.

Example::

    >>> import os, tempfile
    >>> from PIL import Image
    >>> folder = tempfile.mkdtemp()
    >>> Image.new('L', (4, 3)).save(os.path.join(folder, 'a.png'))
    >>> load_rgb(os.path.join(folder, 'a.png')).mode, find_images(folder) == [os.path.join(folder, 'a.png')]
    ('RGB', True)
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterable, List, Optional

__all__ = ["ImageReadError", "load_rgb", "find_images", "image_extensions"]

_WORKER = re.compile(r"^Caught \w+ (in DataLoader worker process \d+)\.")


class ImageReadError(OSError):
    """An image file that cannot be read (corrupt, truncated, not an image); the message names the path.

    Built from torch's re-raised worker message (``"Caught ImageReadError in DataLoader
    worker process N. Original Traceback ..."``), it keeps only its own last line.
    """

    def __init__(self, message: Any = "", *args: Any) -> None:
        text = str(message)
        if text.startswith("Caught ") and "Original Traceback" in text:
            text = self._from_worker(text)
        super().__init__(text, *args)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    @classmethod
    def _from_worker(cls, text: str) -> str:
        worker = _WORKER.match(text)
        own = f"{cls.__name__}: "
        lines = [line for line in text.splitlines() if own in line and not line.startswith(" ")]
        if not lines:
            return text
        message = lines[-1].split(own, 1)[1]
        return f"{message} (raised in {worker.group(1)})" if worker else message


def load_rgb(path: str) -> Any:
    """The image at ``path`` as a fully decoded RGB PIL image.

    Raises:
        ImageReadError: the file is missing, not an image, corrupt or truncated (names ``path``).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()  # decode now: a truncated file fails here, not later inside a transform
            if image.mode == "RGB":
                return image.copy()
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                image = image.convert("RGBA")  # keep the colours; transparency is dropped below
            return image.convert("RGB")
    except FileNotFoundError as exc:
        raise ImageReadError(f"image file {path!r} not found ({exc.strerror}).") from exc
    except UnidentifiedImageError as exc:
        raise ImageReadError(
            f"image file {path!r} is not an image PIL can read (corrupt, or not an image); remove or replace it."
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:  # PIL reports truncation and bad data as OSError/SyntaxError
        raise ImageReadError(f"image file {path!r} is corrupt or truncated ({exc}); remove or replace it.") from exc


def image_extensions() -> List[str]:
    """Lower-case file extensions (``'.png'``, ...) of every format PIL can open here."""
    from PIL import Image

    Image.init()
    return sorted(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def find_images(root: str, extensions: Optional[Iterable[str]] = None) -> List[str]:
    """Every image file under ``root`` (recursively, following no hidden folders), sorted by path.

    Args:
        extensions: file extensions to take (default: every format PIL can open); case-insensitive.
    """
    wanted = {e.lower() if e.startswith(".") else "." + e.lower() for e in (extensions or image_extensions())}
    found = []
    for folder, subfolders, files in os.walk(root, followlinks=True):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in files:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in wanted:
                found.append(os.path.join(folder, name))
    return sorted(found)
