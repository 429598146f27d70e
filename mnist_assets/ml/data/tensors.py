"""The bridge from FiftyOne to PyTorch: a split's pixels and labels as in-memory uint8 tensors.

One query per view reads ids, file paths and labels; the PNGs are decoded once
(threads) and cached as an `.npz` keyed by a hash of that content, so a re-run
reuses the cache and a changed split gets a new key. Training then slices
batches straight from memory: no database reads or PNG decodes in a loader.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mnist_assets.ml.core.errors import MissingInputError
from mnist_assets.ml.core.field_names import GROUND_TRUTH
from mnist_assets.ml.core.files import atomic_write_arrays
from mnist_assets.ml.data.dataset_spec import UNLABELED


@dataclass
class SplitTensors:
    """A view's samples as tensors, in view order, with the pixel statistics to standardize them by
    (the dataset's train split, recorded at ingest; None until they are given)."""

    images: torch.Tensor  # uint8 [N, C, H, W]
    labels: torch.Tensor  # int64 [N], class positions (UNLABELED where no one has labeled the sample)
    sample_ids: list[str]
    mean: float | None = None
    std: float | None = None

    def __len__(self) -> int:
        return len(self.labels)


def content_key(sample_ids: list[str], filepaths: list[str], labels: list[str | None], shape: tuple = ()) -> str:
    digest = hashlib.sha256(repr(shape).encode())
    for parts in zip(sample_ids, filepaths, labels):
        digest.update("\x1f".join(str(p) for p in parts).encode())
        digest.update(b"\x1e")
    return digest.hexdigest()[:24]


def channels_first(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Images as a [N, C, H, W] tensor: gray [N, H, W] gains its channel axis, [N, H, W, 3] (PIL's
    layout) moves it; [N, C, H, W] passes unchanged."""
    images = torch.as_tensor(images)
    if images.ndim == 3:
        return images.unsqueeze(1)
    if images.ndim == 4 and images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
        return images.permute(0, 3, 1, 2).contiguous()
    return images


def channels_last(images: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] -> what PIL writes: [N, H, W] for gray, [N, H, W, 3] for RGB."""
    array = images.numpy() if isinstance(images, torch.Tensor) else images
    return array[:, 0] if array.shape[1] == 1 else np.ascontiguousarray(array.transpose(0, 2, 3, 1))


def decode_png(path: str, channels: int = 1, size: int = 28) -> np.ndarray:
    """One image as uint8 [C, H, W] at the declared shape."""
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("L" if channels == 1 else "RGB"))
    except (FileNotFoundError, OSError) as error:
        raise FileNotFoundError(f"image {path} is missing or unreadable ({error})") from error
    if array.shape[:2] != (size, size):
        raise MissingInputError(f"image {path} is {array.shape[1]}x{array.shape[0]}, expected {size}x{size}")
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def decode_pngs(paths: list[str], channels: int = 1, size: int = 28, workers: int = 4) -> np.ndarray:
    if not paths:
        return np.zeros((0, channels, size, size), np.uint8)
    with ThreadPoolExecutor(workers) as pool:
        return np.stack(list(pool.map(lambda path: decode_png(path, channels, size), paths)))


def class_positions(labels: list[str | None], classes: list[str]) -> np.ndarray:
    """Each label's position in `classes`, UNLABELED for none (a KeyError names a label outside them)."""
    position = {name: i for i, name in enumerate(classes)} | {None: UNLABELED}
    return np.array([position[label] for label in labels], dtype=np.int64)


def load_view_tensors(
    view,
    cache_dir: Path | None = None,
    label_field: str = GROUND_TRUTH,
    *,
    classes: list[str],
    channels: int,
    size: int,
) -> SplitTensors:
    """Read a FiftyOne view's pixels and labels once, from the cache when its content is unchanged.

    Works for any view of `size` x `size` images with `channels` (1 or 3) and a Classification
    label field holding one of `classes`; labels become positions in `classes`.
    """
    sample_ids, filepaths, labels = view.values(["id", "filepath", f"{label_field}.label"])
    unknown = set(labels) - set(classes) - {None}  # None: unlabeled (usable_view leaves those out of training)
    if unknown:
        raise ValueError(f"some samples have a {label_field} label outside the classes: {sorted(map(str, unknown))[:5]}")
    key = content_key(sample_ids, filepaths, labels, (channels, size, size))
    cache_file = cache_dir / f"{key}.npz" if cache_dir is not None else None
    if cache_file is not None and cache_file.is_file():
        with np.load(cache_file, allow_pickle=False) as cached:
            images = cached["images"]
    else:
        images = decode_pngs(filepaths, channels, size)
        if cache_file is not None:
            atomic_write_arrays(cache_file, images=images)
    return SplitTensors(
        images=torch.from_numpy(np.ascontiguousarray(images)),
        labels=torch.from_numpy(class_positions(labels, classes)),
        sample_ids=list(sample_ids),
    )


def concatenate(first: SplitTensors, second: SplitTensors) -> SplitTensors:
    """Both sets of samples, standardized as the first."""
    return SplitTensors(
        images=torch.cat([first.images, second.images]),
        labels=torch.cat([first.labels, second.labels]),
        sample_ids=first.sample_ids + second.sample_ids,
        mean=first.mean,
        std=first.std,
    )


def normalize(images_uint8: torch.Tensor, mean: float | None, std: float | None) -> torch.Tensor:
    """uint8 [B, C, H, W] (or gray [B, H, W]) -> float [B, C, H, W], standardized with the given mean and std."""
    if mean is None or std is None:
        raise MissingInputError("no pixel statistics to standardize with: give the train split's mean and std")
    return (channels_first(images_uint8).float() / 255.0 - mean) / std


def on_device(data: SplitTensors, device: str) -> SplitTensors:
    """The split with its uint8 images and labels copied to `device` once (a no-op where they are
    already), so that batches are sliced and standardized there instead of copied one by one."""
    return SplitTensors(data.images.to(device), data.labels.to(device), data.sample_ids, data.mean, data.std)


def iterate_batches(data: SplitTensors, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None):
    """Yield (normalized images, labels) batches sliced where the split's tensors are; seeded
    shuffling (the order is drawn on the CPU, so it is the same on every device)."""
    count = len(data)
    order = torch.randperm(count, generator=generator).to(data.images.device) if shuffle else None
    for start in range(0, count, batch_size):
        index = slice(start, start + batch_size) if order is None else order[start : start + batch_size]
        yield normalize(data.images[index], data.mean, data.std), data.labels[index]
