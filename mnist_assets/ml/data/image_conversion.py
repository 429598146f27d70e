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
files refused. Memory stays near the decoded file's: converted a band of rows at a time, in 8 bits
(floats only band by band), and at most MAX_PIXELS decoded at once across threads. Only Pillow and
NumPy: the predict command runs without the platform.
"""

from __future__ import annotations

import stat
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

MAX_PIXELS = 50_000_000  # about 7,000 x 7,000: far above any useful input, far below a bomb's memory
BAND_PIXELS = 1 << 16  # pixels converted at a time: a few MB of temporaries, whatever the image's size
EXACT_PIXELS = 1 << 22  # up to about 2,000 x 2,000, an image is resized whole (a larger one band by band: _converted)
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
ORIENTATIONS = {  # EXIF orientation -> the transpose that stands the image upright, as ImageOps.exif_transpose
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
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
    """The image file at `path` decoded fully and converted: uint8 [H, W] or [H, W, 3]; `conversion.fit(read_image(...))`
    without the full-size copy, so a large file costs little more than its decoded pixels (`_converted` says how exactly)."""
    side = conversion.source_size if conversion.resize == "pad" else conversion.size
    return conversion.fit(_read(path, conversion.channels, conversion.background, side))  # already `side`: fit only pads


def read_image(path: Path | str, channels: int, background: int = 255) -> np.ndarray:
    """The image at `path` as uint8 gray [H, W] (1 channel) or RGB [H, W, 3] at its own size, or an
    ImageConversionError naming the file and what is wrong with it."""
    return _read(path, channels, background, None)


class _PixelBudget:
    """At most `limit` pixels decoded at once across threads (a folder ingest converts several files at a
    time): a huge image waits for the others and is decoded alone."""

    def __init__(self, limit: int):
        self.limit, self.used, self.changed = limit, 0, threading.Condition()

    @contextmanager
    def hold(self, pixels: int):
        pixels = min(pixels, self.limit)
        with self.changed:
            self.changed.wait_for(lambda: self.used + pixels <= self.limit)
            self.used += pixels
        try:
            yield
        finally:
            with self.changed:
                self.used -= pixels
                self.changed.notify_all()


DECODING = _PixelBudget(MAX_PIXELS)


def _read(path: Path | str, channels: int, background: int, side: int | None) -> np.ndarray:
    """read_image, resized to `side` x `side` if given."""
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
                with DECODING.hold(width * height):
                    image.load()
                    return _converted(image, channels, background, side, path)
    except ImageConversionError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageConversionError(f"{path} is too large to decode safely ({error}); scale it down first.") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageConversionError(f"{path} is not a readable image ({error}); remove or replace it.") from error


def _converted(image: Image.Image, channels: int, background: int, side: int | None, path) -> np.ndarray:
    """The loaded image upright, converted a band of rows at a time (temporaries stay small whatever its size), and
    resized to `side` if given: in one call, exactly as ever, up to EXACT_PIXELS; a larger one band by band as it goes,
    rows first, which is Pillow's order for a photo shrunk to a small square (where Pillow picks the other order, a few
    pixels differ by one level)."""
    bands = _Bands(image)
    if image.mode in WIDE_MODES:
        convert = _from_wide(bands, channels, path)
    elif image.mode == "P" or "A" in image.getbands() or "transparency" in image.info:
        convert = _compositing(bands, channels, background)
    else:
        mode = "L" if channels == 1 else "RGB"

        def convert(band: Image.Image) -> Image.Image:
            return band.convert(mode)

    width = side if side and bands.width * bands.height > EXACT_PIXELS else bands.width
    out = np.empty((bands.height, width) + (() if channels == 1 else (3,)), np.uint8)
    for top, band in bands:
        rows = convert(band)
        if width != bands.width:
            rows = rows.resize((width, rows.height), Image.Resampling.BILINEAR)
        out[top : top + rows.height] = np.asarray(rows)
    return _resized(out, side) if side else out


class _Bands:
    """The image upright (its EXIF orientation applied, as ImageOps.exif_transpose does) as (top row, band of rows),
    one band at a time: a turned image's band is read from the columns it comes from, so the image is never copied whole."""

    def __init__(self, image: Image.Image):
        self.image = image
        self.method = ORIENTATIONS.get(image.getexif().get(ExifTags.Base.Orientation, 1))
        turned = Image.Transpose.TRANSPOSE, Image.Transpose.ROTATE_270, Image.Transpose.ROTATE_90, Image.Transpose.TRANSVERSE
        self.columns = self.method in turned  # its rows are the image's columns
        self.from_end = self.method in (Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.ROTATE_180, *turned[2:])  # read back to front
        self.width, self.height = image.size[::-1] if self.columns else image.size
        self.rows = max(1, BAND_PIXELS // self.width)

    def __iter__(self):
        for top in range(0, self.height, self.rows):
            bottom = min(top + self.rows, self.height)
            start, end = (self.height - bottom, self.height - top) if self.from_end else (top, bottom)
            band = self.image.crop((start, 0, end, self.image.height) if self.columns else (0, start, self.image.width, end))
            yield top, band if self.method is None else band.transpose(self.method)


def _from_wide(bands: _Bands, channels: int, path):
    """16-bit and 32-bit integer images scaled from their range, float ones from [0, 1] or [0, 255] (a first pass finds which)."""
    mode = bands.image.mode
    low, high = np.inf, -np.inf
    if mode in ("I", "F"):  # the 16-bit modes cannot hold a value out of range
        for _, band in bands:
            values = np.asarray(band)
            if mode == "F" and not np.isfinite(values).all():
                raise ImageConversionError(f"{path} holds NaN or infinite pixel values; save it as an 8-bit image.")
            low, high = min(low, float(values.min())), max(high, float(values.max()))
        if mode == "F" and (low < 0 or high > 255):
            raise ImageConversionError(
                f"{path} is a float image with values in [{low:g}, {high:g}]: neither [0, 1] nor [0, 255]; save it as an 8-bit image."
            )
        if mode == "I" and (low < 0 or high > 65535):
            raise ImageConversionError(f"{path} is a {mode} image with values beyond 16 bits; save it as an 8- or 16-bit image.")

    def convert(band: Image.Image) -> Image.Image:
        values = np.asarray(band, dtype=np.float64)
        if mode != "F":
            values /= 257.0  # 65535 -> 255
        elif high <= 1.0:
            values *= 255.0
        gray = Image.fromarray(np.clip(np.rint(values, out=values), 0, 255, out=values).astype(np.uint8))
        return gray if channels == 1 else Image.merge("RGB", (gray,) * 3)

    return convert


def _compositing(bands: _Bands, channels: int, background: int):
    """RGBA over the background. A drawing whose colour is the same everywhere (its shape only in the
    alpha channel, as drawing apps save strokes) is drawn in the colour opposite the background, so
    black strokes on a transparent canvas stay visible on MNIST's black (a first pass finds out)."""
    counts = np.zeros((3, 256), np.int64)  # the visible pixels' colours
    alpha_low, alpha_high = 255, 0
    for _, band in bands:
        rgba = band.convert("RGBA")
        counts += np.reshape(rgba.histogram(mask=rgba.getchannel("A")), (4, 256))[:3]
        low, high = rgba.getchannel("A").getextrema()
        alpha_low, alpha_high = min(alpha_low, low), max(alpha_high, high)
    drawn = None  # a drawing: its pixel at each opacity
    used = [np.flatnonzero(row) for row in counts]
    if used[0].size and max(u[-1] - u[0] for u in used) <= 8 and alpha_high > alpha_low:
        mean = int((counts * np.arange(256)).sum()) / int(counts.sum())
        ink = 255.0 - background if abs(mean - background) < 128 else mean
        alpha = np.arange(256) / 255.0
        drawn = np.clip(np.rint(ink * alpha + background * (1.0 - alpha)), 0, 255).astype(np.uint8).tolist()

    def convert(band: Image.Image) -> Image.Image:
        rgba = band.convert("RGBA")
        if drawn is not None:
            gray = rgba.getchannel("A").point(drawn)
            return gray if channels == 1 else Image.merge("RGB", (gray,) * 3)
        rgb = Image.new("RGB", rgba.size, (background,) * 3)
        rgb.paste(rgba, mask=rgba)  # Pillow rounds colour * alpha + background * (255 - alpha), over 255, exactly as floats would
        return rgb.convert("L") if channels == 1 else rgb

    return convert
