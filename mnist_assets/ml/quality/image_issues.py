"""CleanVision's image properties, computed for a whole split at once.

CleanVision (cleanvision 0.3.7, issue_managers/image_property.py) measures one PIL image at a time:
about 1 ms an image, 70 s for MNIST. Here the same definitions run on the split's uint8 array in a
few vectorized passes, and tests/test_data_issues.py checks them against CleanVision's own
functions: brightness percentiles (dark: the 99th, light: the 5th), entropy of the histogram (low
information), the edge filter's spread and the histogram's spread (blurry), size and aspect ratio
(of the files as they were before ingest) and whether a colour image is gray.

The scores are CleanVision's turned around to the platform's convention: in [0, 1], higher is worse.
"""

from __future__ import annotations

import numpy as np

BLUR_MAX_RESOLUTION = 64  # CleanVision shrinks larger images to this before measuring blur
# CleanVision's parameters (ImagePropertyIssueManager's defaults).
ENTROPY_NORMALIZING = 0.1
BLUR_NORMALIZING = 0.01
BLUR_COLOR_THRESHOLD = 0.18
SIZE_IQR_FACTOR = 3.0


def channels_last(images: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W], [N, 1, H, W], [N, 3, H, W] or [N, H, W, 3] as [N, H, W] or [N, H, W, 3]."""
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[1] in (1, 3) and images.shape[-1] not in (1, 3):
        images = np.moveaxis(images, 1, -1)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise ValueError(f"expected uint8 images [N, H, W] or [N, H, W, 3], got {images.dtype} {images.shape}")
    return images


def brightness(images: np.ndarray) -> np.ndarray:
    """Per pixel perceived brightness in [0, 1] (CleanVision's calculate_brightness; gray: the value)."""
    if images.ndim == 3:
        return images.astype(np.float32) / 255.0
    rgb = images.astype(np.float32)
    return np.sqrt(0.241 * rgb[..., 0] ** 2 + 0.691 * rgb[..., 1] ** 2 + 0.068 * rgb[..., 2] ** 2) / 255.0


def gray(images: np.ndarray) -> np.ndarray:
    """PIL's convert("L"): ITU-R 601-2 luma, rounded as PIL rounds it."""
    if images.ndim == 3:
        return images
    rgb = images.astype(np.uint32)
    return ((rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16).astype(np.uint8)


def histograms(images: np.ndarray) -> np.ndarray:
    """PIL's Image.histogram() per image: 256 counts per band, bands one after another: [N, 256 * bands]."""
    n = len(images)
    bands = images.reshape(n, -1, 1) if images.ndim == 3 else images.reshape(n, -1, 3)
    offsets = np.arange(bands.shape[2], dtype=np.int64) * 256 + np.arange(n, dtype=np.int64)[:, None, None] * 256 * bands.shape[2]
    flat = (bands.astype(np.int64) + offsets).ravel()
    return np.bincount(flat, minlength=n * 256 * bands.shape[2]).reshape(n, -1)


def entropy(images: np.ndarray) -> np.ndarray:
    """PIL's Image.entropy() (CleanVision's low-information measure): the entropy in bits of the
    histogram of all bands together."""
    counts = histograms(images).astype(np.float64)
    p = counts / counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log2(p), 0.0).sum(axis=1)


def find_edges(gray_images: np.ndarray) -> np.ndarray:
    """PIL's ImageFilter.FIND_EDGES (8 at the centre, -1 around it, clipped to 0-255); the border
    pixels keep their values, as PIL's 3x3 filter leaves them."""
    x = gray_images.astype(np.int32)
    out = x.copy()
    height, width = x.shape[1:3]
    around = sum(x[:, 1 + dy : height - 1 + dy, 1 + dx : width - 1 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    inner = 9 * x[:, 1:-1, 1:-1] - around
    out[:, 1:-1, 1:-1] = np.clip(inner, 0, 255)
    return out


def _blur_input(images: np.ndarray) -> np.ndarray:
    """The gray images CleanVision measures blur on: shrunk to BLUR_MAX_RESOLUTION first if larger."""
    height, width = images.shape[1:3]
    ratio = max(width, height) / BLUR_MAX_RESOLUTION
    if ratio <= 1:
        return gray(images)
    from PIL import Image

    size = (max(int(width // ratio), 1), max(int(height // ratio), 1))
    return np.stack([np.asarray(Image.fromarray(image).resize(size).convert("L")) for image in images])


def image_properties(images: np.ndarray, chunk: int = 8192) -> dict[str, np.ndarray]:
    """CleanVision's raw properties of every image, in chunks (memory stays a few hundred MB at any size)."""
    images = channels_last(images)
    parts = [_properties(images[start : start + chunk]) for start in range(0, len(images), chunk)]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]} if parts else {}


def _properties(images: np.ndarray) -> dict[str, np.ndarray]:
    light = brightness(images).reshape(len(images), -1)
    blur_gray = _blur_input(images)
    edges = find_edges(blur_gray).reshape(len(images), -1).astype(np.float64)
    gray_histograms = histograms(blur_gray).astype(np.float64)
    return {
        "brightness_perc_99": np.percentile(light, 99, axis=1),
        "brightness_perc_5": np.percentile(light, 5, axis=1),
        "entropy": entropy(images),
        "bands": np.full(len(images), 1 if images.ndim == 3 else 3),
        "blurriness": np.sqrt(edges.var(axis=1)),
        "blurriness_grayscale_std": gray_histograms.std(axis=1),
        "gray_std": blur_gray.reshape(len(images), -1).astype(np.float64).std(axis=1),
        "is_gray": np.ones(len(images), dtype=bool) if images.ndim == 3 else (images.min(axis=-1) == images.max(axis=-1)).all(axis=(1, 2)),
    }


def cleanvision_scores(properties: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """CleanVision's scores (lower: worse) of the properties that need no other image."""
    blur = 1 - np.exp(-properties["blurriness"] * BLUR_NORMALIZING)
    spread = 1 - np.exp(-properties["blurriness_grayscale_std"] * BLUR_NORMALIZING)
    spread[spread <= BLUR_COLOR_THRESHOLD] = 0
    return {
        "dark": properties["brightness_perc_99"],
        "light": 1 - properties["brightness_perc_5"],
        "low_information": np.minimum(band_entropy(properties) * ENTROPY_NORMALIZING, 1.0),
        "blurry": np.minimum(blur + spread, 1.0),
    }


def sharpness(properties: dict[str, np.ndarray]) -> np.ndarray:
    """The edges' spread for the image's contrast: CleanVision's blurriness over the gray image's std.
    Its blurriness alone also falls with the amount of ink (a thin, sharp "1" scores as blurred as a
    blurred "8"); over the contrast, a flat image is 0 and a sharp one is sharp however little it holds."""
    return properties["blurriness"] / np.maximum(properties["gray_std"], 1e-6)


def band_entropy(properties: dict[str, np.ndarray]) -> np.ndarray:
    """The entropy per band: PIL's less the log2(bands) bits that laying 3 bands' histograms side by
    side adds (a flat colour image: 0 bits, as a blank gray one, instead of 1.58)."""
    return np.maximum(properties["entropy"] - np.log2(properties["bands"]), 0.0)


def size_scores(widths, heights, reference_widths=None, reference_heights=None) -> tuple[np.ndarray, float]:
    """CleanVision's odd_size score (lower: worse) of each image and its threshold: the distance of
    sqrt(area) from the middle of the reference's fences, Q1 - 3 IQR and Q3 + 3 IQR."""
    size = np.sqrt(np.asarray(widths, dtype=np.float64) * np.asarray(heights, dtype=np.float64))
    reference = size if reference_widths is None else np.sqrt(np.asarray(reference_widths, float) * np.asarray(reference_heights, float))
    q1, q3 = np.percentile(reference, [25, 75])
    low, high = q1 - SIZE_IQR_FACTOR * (q3 - q1), q3 + SIZE_IQR_FACTOR * (q3 - q1)
    gap, middle = high - low, (low + high) / 2
    if gap > 0:
        return 1 - np.clip(np.abs(size - middle) / gap, 0, 1), 0.5
    return 1 - np.clip(np.abs(size - middle) / middle, 0, 1), 1.0


def aspect_ratio_scores(widths, heights) -> np.ndarray:
    """CleanVision's odd_aspect_ratio score: min(w / h, h / w)."""
    widths, heights = np.asarray(widths, dtype=np.float64), np.asarray(heights, dtype=np.float64)
    return np.minimum(widths / heights, heights / widths)
