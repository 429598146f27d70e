"""Any image file to the array the pipeline works with: the declared channels and square size.

One function, shared by the ingest of a folder dataset and by `python -m mnist_assets.predict`, so
an image is predicted exactly as its like was trained. Only Pillow and NumPy: the predict command
runs without the platform.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError


class ImageConversionError(ValueError):
    """A file that is not a readable image."""


def convert_image(path: Path | str, size: int, channels: int) -> np.ndarray:
    """The image at `path` decoded fully (a truncated file fails here), converted to gray (1 channel)
    or RGB (3) and resized (bilinear) to `size` x `size`: uint8 [H, W] or [H, W, 3]."""
    try:
        with Image.open(path) as image:
            image.load()
            converted = image.convert("L" if channels == 1 else "RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageConversionError(f"{path} is not a readable image ({error}); remove or replace it.") from error
    if converted.size != (size, size):
        converted = converted.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(converted, dtype=np.uint8)
