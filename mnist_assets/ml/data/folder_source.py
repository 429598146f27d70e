"""A user's folder of images, one sub-folder per class, as verified arrays at the declared shape.

Layouts: `<root>/<class>/*.png|jpg|...`, or `<root>/train/<class>/...` and
`<root>/test/<class>/...`. Every image is opened, converted to the declared
channels and resized to the declared square size once, here. An unreadable or
truncated file, or one whose name is not UTF-8 text (FiftyOne and the logs store
names as text), is left out and reported by path (`unreadable`); with `strict` it
stops the load with its path instead, before anything is written.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnist_assets.ml.data.image_conversion import Conversion, ImageConversionError, convert_image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


class FolderSourceError(ValueError):
    """A folder dataset is missing, empty, or holds a file that is not a readable image."""


@dataclass(frozen=True)
class FolderImages:
    """The images of one folder split at the declared shape, with labels and their files."""

    images: np.ndarray  # uint8 [N, H, W] (1 channel) or [N, H, W, 3]
    labels: np.ndarray  # int64 [N], positions in the class list
    files: list[str]  # relative to the dataset root, in a stable order: the samples' source keys
    file_info: list[tuple[int, int, str]]  # each file as it was: width, height, PIL mode (data_issues judges sizes on these)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # files left out: path relative to the root, why


def has_test_split(root: Path) -> bool:
    """Whether the folder is split already: `train/<class>/...` and `test/<class>/...`."""
    return (root / "train").is_dir() and (root / "test").is_dir()


def _class_root(root: Path) -> Path:
    return root / "train" if has_test_split(root) else root


def _sub_folders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def class_folders(root: Path | None) -> list[str]:
    """The class names of a folder dataset: its (training) sub-folders, sorted."""
    if root is None or not Path(root).is_dir():
        raise FolderSourceError(
            f"dataset folder {root} does not exist; set `path` in the dataset's defs.yaml to a folder of class sub-folders."
        )
    names = _sub_folders(_class_root(Path(root)))
    if len(names) < 2:
        raise FolderSourceError(
            f"{_class_root(Path(root))} has {len(names)} class sub-folder(s); an image-classification folder needs at least two."
        )
    return names


def training_counts(root: Path, at_most: int) -> list[int]:
    """Image files per class of the training part (the whole folder without `train/` and `test/`),
    counted by name only and no further than `at_most` (a large folder is not listed whole at every
    load): what the declaration checks its fractions against before anything is read."""
    part = _class_root(Path(root))
    return [sum(1 for _ in itertools.islice(_image_paths(part / name), at_most)) for name in _sub_folders(part)]


def _image_paths(folder: Path):
    return (p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _image_files(folder: Path) -> list[Path]:
    return sorted(_image_paths(folder))


def _printable(name: str) -> str:
    """A file name as text: the bytes of a name that is not UTF-8 written as `\\xff`."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _load_one(path: Path, conversion: Conversion) -> tuple[np.ndarray, tuple[int, int, str]] | ImageConversionError:
    """The converted image and the file's width, height and mode, or why it cannot be read."""
    from PIL import Image

    if _printable(str(path)) != str(path):  # undecodable bytes in the name, kept by Python as lone surrogates
        return ImageConversionError(f"{_printable(str(path))}: its name is not UTF-8 text, which FiftyOne cannot store; rename the file.")
    try:
        image = convert_image(path, conversion)  # exactly as `python -m mnist_assets.predict` converts
        with Image.open(path) as header:  # read fully above: the header is there
            return image, (*header.size, header.mode)
    except ImageConversionError as error:
        return error


def _convert_all(paths: list[Path], conversion: Conversion, strict: bool):
    """Each file decoded and converted (threads): the results, the positions that worked and the
    files that did not with why (`strict`: refuse at the first one)."""
    with ThreadPoolExecutor(4) as pool:
        loaded = list(pool.map(lambda p: _load_one(p, conversion), paths))
    failed = [(path, result) for path, result in zip(paths, loaded) if isinstance(result, ImageConversionError)]
    if failed and strict:
        raise FolderSourceError(f"{failed[0][1]} (strict: true refuses the ingest; without it the rest is ingested, the file reported)")
    return loaded, [i for i, result in enumerate(loaded) if not isinstance(result, ImageConversionError)], failed


def load_split_folder(folder: Path, root: Path, classes: list[str], conversion: Conversion, strict: bool = False) -> FolderImages:
    """Every readable image under `folder/<class>/`, converted (`strict`: refuse at the first unreadable
    one); classes must match the declared ones."""
    found = _sub_folders(folder)
    if found != sorted(classes):
        raise FolderSourceError(
            f"{folder}: class sub-folders {found} do not match the declared class_names {sorted(classes)}; "
            "rename the folders or fix class_names in defs.yaml."
        )
    paths, labels = [], []
    for label, name in enumerate(classes):
        files = _image_files(folder / name)
        if not files:
            raise FolderSourceError(f"{folder / name} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); add some or remove the class.")
        paths += files
        labels += [label] * len(files)
    loaded, kept, failed = _convert_all(paths, conversion, strict)
    kept_labels = np.asarray(labels, dtype=np.int64)[kept]
    for label, name in enumerate(classes):
        if not (kept_labels == label).any():
            raise FolderSourceError(f"{folder / name} holds no readable image; the first error: {failed[0][1]}")
    return FolderImages(
        images=np.stack([loaded[i][0] for i in kept]),
        labels=kept_labels,
        files=[str(paths[i].relative_to(root)) for i in kept],
        file_info=[loaded[i][1] for i in kept],
        unreadable=[(_printable(str(path.relative_to(root))), str(error)) for path, error in failed],
    )


UNLABELED_PREFIX = (
    "~unlabeled/"  # an unlabeled file's name: its own keys, never a labeled file's (a class folder is not expected to start with ~)
)


def load_unlabeled_folder(folder: Path, conversion: Conversion, unlabeled: int, strict: bool = False) -> FolderImages:
    """Every readable image anywhere under `folder` (any layout: no class), converted, labeled
    `unlabeled`, named `~unlabeled/<path relative to folder>`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FolderSourceError(
            f"unlabeled folder {folder} does not exist; set `unlabeled` in defs.yaml to a folder of images, or remove it."
        )
    paths = _image_files(folder)
    loaded, kept, failed = _convert_all(paths, conversion, strict)
    empty = np.zeros((0, conversion.size, conversion.size) + ((3,) if conversion.channels == 3 else ()), np.uint8)
    return FolderImages(
        images=np.stack([loaded[i][0] for i in kept]) if kept else empty,
        labels=np.full(len(kept), unlabeled, dtype=np.int64),
        files=[UNLABELED_PREFIX + str(paths[i].relative_to(folder)) for i in kept],
        file_info=[loaded[i][1] for i in kept],
        unreadable=[(UNLABELED_PREFIX + _printable(str(path.relative_to(folder))), str(error)) for path, error in failed],
    )


def file_keys(files: list[str]) -> np.ndarray:
    """A stable integer per file, its samples' `source_index`: 7 bytes of the path's SHA-1 (fits int64),
    so adding or removing other files changes no sample's key."""
    return np.array([int.from_bytes(hashlib.sha1(name.encode()).digest()[:7], "big") for name in files], dtype=np.int64)


def load_folder(root: Path, classes: list[str], conversion: Conversion, strict: bool = False) -> tuple[FolderImages, FolderImages | None]:
    """The training images (all of them without `train/` and `test/`) and the test images, if split."""
    root = Path(root)
    if not root.is_dir():
        class_folders(root)  # raises with the fix
    if has_test_split(root):
        return (
            load_split_folder(root / "train", root, classes, conversion, strict),
            load_split_folder(root / "test", root, classes, conversion, strict),
        )
    return load_split_folder(root, root, classes, conversion, strict), None
