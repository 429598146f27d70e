"""Declared datasets: the component loads them, Fashion-MNIST comes verified offline and runs
through the graph with its own classes and statistics, and bad declarations are refused."""

import gzip
import shutil
import subprocess

import dagster as dg
import numpy as np
import pytest
from pydantic import ValidationError

from graph import asset
from mnist_assets.ml.dataset_spec import FASHION, DatasetSpec
from mnist_assets.ml.fiftyone_store import split_view
from mnist_assets.ml.mnist_source import DEBIAN_FASHION_MNIST, MnistSourceError, load_fashion_mnist
from processes import REPO


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    return load_fashion_mnist(None, tmp_path_factory.mktemp("fashion-downloads"))


def test_fashion_mnist_comes_verified_from_debians_copy(fashion):
    assert "Debian" in fashion.source and str(DEBIAN_FASHION_MNIST) in fashion.source
    assert fashion.train_images.shape == (60000, 28, 28) and fashion.test_images.shape == (10000, 28, 28)
    assert np.bincount(fashion.train_labels).tolist() == [6000] * 10
    assert np.bincount(fashion.test_labels).tolist() == [1000] * 10
    assert abs(fashion.train_images.mean() / 255 - 0.2860) < 1e-3  # Zalando's published statistics


def test_a_corrupted_fashion_mnist_file_is_refused(tmp_path):
    for path in DEBIAN_FASHION_MNIST.glob("*.gz"):
        shutil.copy(path, tmp_path / path.name)
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[100] = (raw[100] + 1) % 10  # one label changed, the file still a valid IDX
    labels.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(MnistSourceError, match="MD5.*not Fashion-MNIST"):
        load_fashion_mnist(tmp_path, tmp_path / "downloads")


@pytest.mark.parametrize(
    "attributes, message",
    [
        ({"name": "my-pets", "source": "mnist"}, "letters, digits and '_'"),
        ({"name": "pets", "source": "kmnist"}, "'mnist' or 'fashion-mnist'"),
        ({"name": "pets", "source": "mnist", "class_names": ["a", "b", "c"]}, "10 classes"),
        ({"name": "pets", "source": "mnist", "clip_templates": ["a photo"]}, "exactly one"),
        ({"name": "pets", "source": "mnist", "colour": "red"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_declarations_are_refused_with_the_fix(attributes, message):
    with pytest.raises((ValidationError, ValueError), match=message):
        DatasetSpec(**attributes)


def test_dg_check_defs_validates_the_shipped_declarations():
    result = subprocess.run([str(REPO / ".venv" / "bin" / "dg"), "check", "defs"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "All definitions loaded successfully" in result.stdout + result.stderr


def test_fashion_mnist_through_the_graph(make_settings):
    """2,000 samples per split, one epoch: its own classes, statistics and a model that learned."""
    settings = make_settings(limit=2000, epochs=1)
    resources = {"settings": settings}
    for split in ("train", "validation", "test"):
        result = dg.materialize([asset("raw_dataset", "fashion_mnist")], partition_key=split, resources=resources)
        assert result.success
    raw = {k: v.value for k, v in result.get_asset_materialization_events()[0].event_specific_data.materialization.metadata.items()}
    assert raw["count"] == 2000 and raw["available"] == 10000 and raw["limited"] is True
    assert dg.materialize([asset("lenet_checkpoint", "fashion_mnist")], resources=resources).success
    predictions = dg.materialize([asset("lenet_predictions", "fashion_mnist")], partition_key="test", resources=resources)
    assert predictions.success
    store = settings.store("fashion_mnist")
    assert store.name.endswith("-fashion_mnist") and store.dir.name == store.name
    view = split_view(store.dataset(), "test")
    truth, predicted = view.values(["ground_truth.label", "lenet_predictions.label"])
    assert set(truth) == set(FASHION) and set(predicted) <= set(FASHION)
    accuracy = float(np.mean(np.array(truth) == np.array(predicted)))
    assert accuracy > 0.5  # one epoch on 2,000 clothes; chance is 0.1
    normalization = (store.dir / "normalization.json").read_text()
    assert '"mean": 0.28' in normalization  # Fashion-MNIST's own statistics, not MNIST's 0.1307
    # The MNIST store of the same settings is untouched.
    assert len(settings.store("mnist").dataset()) == 0


def test_two_declarations_of_one_name_are_refused_naming_both_files(tmp_path):
    from mnist_assets.ml.dataset_spec import DatasetSpecError
    from mnist_assets.pipeline import DEFS_FOLDER, check_unique_names

    check_unique_names()  # the shipped ones are distinct
    for folder in ("mnist", "digits_again"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "defs.yaml").write_text((DEFS_FOLDER / "mnist" / "defs.yaml").read_text())
    with pytest.raises(DatasetSpecError, match=r"mnist/defs.yaml and .*digits_again/defs.yaml both declare the dataset 'mnist'"):
        check_unique_names(tmp_path)
