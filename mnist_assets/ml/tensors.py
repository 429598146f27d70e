"""The bridge from FiftyOne to PyTorch: a split's pixels and labels as in-memory uint8 tensors.

One query per view reads ids, file paths and labels; the PNGs are decoded once
(threads) and cached as an `.npz` keyed by a hash of that content, so a re-run
reuses the cache and a changed split gets a new key. Training then slices
batches straight from memory: no database reads or PNG decodes in a loader.
"""

from __future__ import annotations

import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mnist_assets.ml.files import atomic_write_bytes

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


@dataclass
class SplitTensors:
    """A view's samples as tensors, in view order, with the pixel statistics to standardize them by
    (the dataset's train split, recorded at ingest; MNIST's by default)."""

    images: torch.Tensor  # uint8 [N, 28, 28]
    labels: torch.Tensor  # int64 [N], class positions
    sample_ids: list[str]
    mean: float = MNIST_MEAN
    std: float = MNIST_STD

    def __len__(self) -> int:
        return len(self.labels)


def content_key(sample_ids: list[str], filepaths: list[str], labels: list[str | None]) -> str:
    digest = hashlib.sha256()
    for parts in zip(sample_ids, filepaths, labels):
        digest.update("\x1f".join(str(p) for p in parts).encode())
        digest.update(b"\x1e")
    return digest.hexdigest()[:24]


def decode_png(path: str) -> np.ndarray:
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("L"))
    except (FileNotFoundError, OSError) as error:
        raise FileNotFoundError(
            f"image {path} is missing or unreadable ({error}); re-materialize raw_dataset for its split."
        ) from error
    if array.shape != (28, 28):
        raise ValueError(f"image {path} is {array.shape}, expected 28x28; re-materialize raw_dataset.")
    return array


def decode_pngs(paths: list[str], workers: int = 4) -> np.ndarray:
    with ThreadPoolExecutor(workers) as pool:
        return np.stack(list(pool.map(decode_png, paths))) if paths else np.zeros((0, 28, 28), np.uint8)


def load_view_tensors(
    view, cache_dir: Path | None = None, label_field: str = "ground_truth", classes: list[str] | None = None
) -> SplitTensors:
    """Read a FiftyOne view's pixels and labels once, from the cache when its content is unchanged.

    Works for any view of 28x28 grayscale images with a Classification label field holding one
    of `classes` (default the digits "0".."9"); labels become positions in `classes`.
    """
    classes = classes or [str(digit) for digit in range(10)]
    position = {name: i for i, name in enumerate(classes)}
    sample_ids, filepaths, labels = view.values(["id", "filepath", f"{label_field}.label"])
    unknown = {label for label in labels if label not in position}
    if unknown:
        raise ValueError(f"some samples have no {label_field} label or one outside the classes: {sorted(map(str, unknown))[:5]}")
    key = content_key(sample_ids, filepaths, labels)
    cache_file = cache_dir / f"{key}.npz" if cache_dir is not None else None
    if cache_file is not None and cache_file.is_file():
        with np.load(cache_file, allow_pickle=False) as cached:
            images = cached["images"]
    else:
        images = decode_pngs(filepaths)
        if cache_file is not None:
            buffer = io.BytesIO()
            np.savez(buffer, images=images)
            atomic_write_bytes(cache_file, buffer.getvalue())
    return SplitTensors(
        images=torch.from_numpy(np.ascontiguousarray(images)),
        labels=torch.tensor([position[label] for label in labels], dtype=torch.int64),
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


def normalize(images_uint8: torch.Tensor, mean: float = MNIST_MEAN, std: float = MNIST_STD) -> torch.Tensor:
    """uint8 [B, 28, 28] -> float [B, 1, 28, 28], standardized with the given mean and std."""
    return (images_uint8.unsqueeze(1).float() / 255.0 - mean) / std


def iterate_batches(
    data: SplitTensors, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None
):
    """Yield (normalized images, labels) batches sliced from memory; seeded shuffling."""
    count = len(data)
    order = torch.randperm(count, generator=generator) if shuffle else None
    for start in range(0, count, batch_size):
        if order is None:
            index = slice(start, start + batch_size)
            yield normalize(data.images[index], data.mean, data.std), data.labels[index]
        else:
            index = order[start : start + batch_size]
            yield normalize(data.images[index], data.mean, data.std), data.labels[index]
