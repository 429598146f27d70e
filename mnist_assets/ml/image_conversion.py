"""Any image to the array the pipeline works with: the declared channels and square size.

One conversion, shared by ingest and by `python -m mnist_assets.predict`, so an image is predicted
exactly as its like was trained. `Conversion` says what ingest did to a source's images and travels
in the release's metadata:

- `bilinear` (a folder): the image resized to the declared square;
- `pad` (MNIST, Fashion-MNIST): the image at its source size (28 x 28; another size is first resized
  to it) centred in a field of the background, as ingest centres the IDX images (32: LeNet-5's input).

Files are read right or refused by name: EXIF orientation applied (a phone's portrait JPEG),
16-bit images scaled (not saturated), float images in [0, 1] or [0, 255] scaled (others refused),
transparency composited on the background (and a drawing that lives only in the alpha channel
drawn in the colour opposite the background), decompression bombs, non-files and undecodable
files refused. Only Pillow and NumPy: the predict command runs without the platform.
"""

from __future__ import annotations

import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 50_000_000  # about 7,000 x 7,000: far above any useful input, far below a bomb's memory
RESIZES = ("bilinear", "pad")


class ImageConversionError(ValueError):
    """A file that is not a readable image, or one that cannot be converted faithfully."""


@dataclass(frozen=True)
class Conversion:
    """What the pipeline does to an image: `size` x `size`, `channels` (1 or 3); `resize` bilinear
    or pad (to `source_size` first, then centred); transparency composited on `background` (0-255)."""

    size: int
    channels: int
    resize: str = "bilinear"
    source_size: int | None = None  # pad: the size of the source's images
    background: int = 255

    def __post_init__(self):
        if self.resize not in RESIZES:
            raise ValueError(f"resize {self.resize!r} is not one of {', '.join(RESIZES)}")
        if self.resize == "pad" and not (self.source_size and self.source_size <= self.size):
            raise ValueError(f"pad needs a source_size of at most {self.size}, got {self.source_size}")

    def metadata(self) -> dict[str, str]:
        """The release's ONNX metadata entries that describe it (predict reads them back)."""
        entries = {"image_size": str(self.size), "channels": str(self.channels), "resize": self.resize, "background": str(self.background)}
        if self.source_size:
            entries["source_size"] = str(self.source_size)
        return entries

    @classmethod
    def from_metadata(cls, entries: dict[str, str]) -> Conversion:
        """From a release's metadata; releases made before the conversion was recorded resized bilinearly."""
        return cls(
            size=int(entries["image_size"]),
            channels=int(entries["channels"]),
            resize=entries.get("resize", "bilinear"),
            source_size=int(entries["source_size"]) if entries.get("source_size") else None,
            background=int(entries.get("background", 255)),
        )

    def fit(self, image: np.ndarray) -> np.ndarray:
        """One uint8 image [H, W] or [H, W, 3] at the declared square."""
        if self.resize == "pad":
            image = _resized(image, self.source_size)
            return pad(image, self.size, self.background)
        return _resized(image, self.size)


def pad(images: np.ndarray, size: int, background: int = 0) -> np.ndarray:
    """Images [..., H, W(, 3)] of side `side` <= `size`, centred in a `size` x `size` field of `background`."""
    gray = images.shape[-1] != 3 or images.ndim == 2
    height_axis = images.ndim - (2 if gray else 3)
    side = images.shape[height_axis]
    before = (size - side) // 2
    after = size - side - before
    if not before and not after:
        return images
    widths = [(0, 0)] * images.ndim
    widths[height_axis] = widths[height_axis + 1] = (before, after)
    return np.pad(images, widths, constant_values=background)


def _resized(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def convert_image(path: Path | str, conversion: Conversion) -> np.ndarray:
    """The image file at `path` decoded fully and converted: uint8 [H, W] or [H, W, 3]."""
    return conversion.fit(read_image(path, conversion.channels, conversion.background))


def read_image(path: Path | str, channels: int, background: int = 255) -> np.ndarray:
    """The image at `path` as uint8 gray [H, W] (1 channel) or RGB [H, W, 3] at its own size, or an
    ImageConversionError naming the file and what is wrong with it."""
    try:
        if not stat.S_ISREG(Path(path).stat().st_mode):
            raise ImageConversionError(f"{path} is not a regular file (a folder, a pipe or a device); give an image file.")
    except OSError as error:
        raise ImageConversionError(f"{path} cannot be read ({error.strerror or error}); check the path.") from error
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise ImageConversionError(
                        f"{path} is {width} x {height} pixels, more than {MAX_PIXELS:,}: refused (a decompression bomb, or far "
                        "larger than the model needs); scale it down first."
                    )
                image.load()
                image = ImageOps.exif_transpose(image)  # a phone's portrait photo stands upright
                return _to_uint8(image, channels, background, path)
    except ImageConversionError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageConversionError(f"{path} is too large to decode safely ({error}); scale it down first.") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageConversionError(f"{path} is not a readable image ({error}); remove or replace it.") from error


def _to_uint8(image: Image.Image, channels: int, background: int, path) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _from_wide(image, channels, path)
    if image.mode == "P":
        image = image.convert("RGBA")
    if "A" in image.getbands() or "transparency" in image.info:
        return _composited(image.convert("RGBA"), channels, background)
    return np.asarray(image.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)


def _from_wide(image: Image.Image, channels: int, path) -> np.ndarray:
    """16-bit and 32-bit integer images scaled from their range, float ones from [0, 1] or [0, 255]."""
    values = np.asarray(image).astype(np.float64)
    if image.mode == "F":
        finite = values[np.isfinite(values)]
        if finite.size != values.size:
            raise ImageConversionError(f"{path} holds NaN or infinite pixel values; save it as an 8-bit image.")
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        if low < 0 or high > 255:
            raise ImageConversionError(
                f"{path} is a float image with values in [{low:g}, {high:g}]: neither [0, 1] nor [0, 255]; save it as an 8-bit image."
            )
        scaled = values * 255.0 if high <= 1.0 else values
    else:
        if values.min() < 0 or values.max() > 65535:
            raise ImageConversionError(f"{path} is a {image.mode} image with values beyond 16 bits; save it as an 8- or 16-bit image.")
        scaled = values / 257.0  # 65535 -> 255
    gray = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return gray if channels == 1 else np.repeat(gray[..., None], 3, axis=-1)


def _composited(image: Image.Image, channels: int, background: int) -> np.ndarray:
    """RGBA over the background. A drawing whose colour is the same everywhere (its shape only in the
    alpha channel, as drawing apps save strokes) is drawn in the colour opposite the background, so
    black strokes on a transparent canvas stay visible on MNIST's black."""
    rgba = np.asarray(image, dtype=np.float64)
    alpha = rgba[..., 3:] / 255.0
    colour = rgba[..., :3]
    visible = alpha[..., 0] > 0
    if visible.any() and np.ptp(colour[visible], axis=0).max() <= 8 and np.ptp(alpha) > 0:
        ink = 255.0 - background if abs(float(colour[visible].mean()) - background) < 128 else float(colour[visible].mean())
        colour = np.full_like(colour, ink)
    out = np.clip(np.rint(colour * alpha + background * (1.0 - alpha)), 0, 255).astype(np.uint8)
    rgb = Image.fromarray(out, "RGB")
    return np.asarray(rgb.convert("L") if channels == 1 else rgb, dtype=np.uint8)
