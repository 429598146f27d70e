"""Declared datasets: the component loads them, Fashion-MNIST comes verified offline and runs
through the graph with its own classes and statistics, a user's folder of RGB images of another
size goes through every asset, and bad declarations are refused."""

import gzip
import re
import shutil

import dagster as dg
import numpy as np
import pytest
import torch
from graph_runs import failed_checks, materialize_every_asset
from image_folders import FOLDER_CLASSES, folder_declaration, write_image_folder
from PIL import Image
from processes import REPO, run_ok
from pydantic import ValidationError

from mnist_assets.ml.data.dataset_spec import FASHION, DatasetSpec
from mnist_assets.ml.data.folder_source import FolderSourceError
from mnist_assets.ml.data.idx_source import DEBIAN_FASHION_MNIST, IdxSourceError, load_fashion_mnist
from mnist_assets.ml.data.sources import load_source, split_of
from mnist_assets.ml.store.fiftyone_store import split_view
from mnist_assets.pipeline import build_pipeline_defs
from mnist_assets.predict import Release, predict_files
from mnist_assets.run_all import materialize_stage, stages


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
    with pytest.raises(IdxSourceError, match="MD5.*not Fashion-MNIST"):
        load_fashion_mnist(tmp_path, tmp_path / "downloads")


@pytest.mark.parametrize(
    "attributes, message",
    [
        ({"name": "my-pets", "source": "mnist"}, "letters, digits and '_'"),
        ({"name": "pets", "source": "kmnist"}, "'mnist', 'fashion-mnist' or 'folder'"),
        ({"name": "pets", "source": "mnist", "class_names": ["a", "b", "c"]}, "10 classes"),
        ({"name": "pets", "source": "mnist", "clip_templates": ["a photo"]}, "exactly one"),
        ({"name": "pets", "source": "mnist", "colour": "red"}, "Extra inputs are not permitted"),
        ({"name": "pets", "source": "mnist", "issue_gates": {"darkness": 0.1}}, "unknown issue type 'darkness'; the types are dark"),
        ({"name": "pets", "source": "mnist", "outlier_spaces": ["clip"]}, r"leaves out the pixels; declare \[pixels\] or \[pixels, clip\]"),
        ({"name": "pets", "source": "mnist", "outlier_spaces": ["pixels", "lenet"]}, "'pixels' or 'clip'"),
        # Each of these loaded and then failed inside NumPy, scikit-learn or cleanlab at ingest.
        (
            {"name": "pets", "source": "mnist", "label_noise": {"rate": 0.2, "seed": -1}},
            r"seed\n\s+Input should be greater than or equal to 0",
        ),
        (
            {"name": "pets", "source": "mnist", "label_noise": {"rate": 0.2, "seed": 2**32}},
            r"seed\n\s+Input should be less than 4294967296",
        ),
        ({"name": "pets", "source": "mnist", "split_seed": -5}, r"split_seed\n\s+Input should be greater than or equal to 0"),
        (
            {"name": "pets", "source": "mnist", "label_noise": {"rate": 0.2, "splits": []}},
            "label_noise.splits is empty: name train, validation or both",
        ),
        (
            {"name": "pets", "source": "mnist", "label_errors": [947, 10000, -1]},
            r"label_errors \[10000, -1\] are not test-file indices \(0 to 9999\)",
        ),
    ],
)
def test_bad_declarations_are_refused_with_the_fix(attributes, message):
    with pytest.raises((ValidationError, ValueError), match=message):
        DatasetSpec(**attributes)


def test_dg_check_defs_validates_the_shipped_declarations():
    result = run_ok([str(REPO / ".venv" / "bin" / "dg"), "check", "defs"], timeout=600)
    assert "All definitions loaded successfully" in result.stdout + result.stderr


def test_fashion_mnist_through_the_graph_to_a_release_that_predicts_28px_files(make_settings, tmp_path):
    """2,000 samples per split, one epoch, everything model_release needs: its own classes and
    statistics, a model that learned, and a release that predicts Fashion-MNIST's own 28x28 images
    as files exactly as the graph predicted them at 32x32 (ingest centres them; predict must too,
    not stretch them)."""
    import json

    from reliability.helpers import subprocess_env

    from mnist_assets.pipeline import declared_spec

    settings = make_settings(limit=2000, epochs=1)
    resources = {"settings": settings}
    defs = dg.Definitions.merge(build_pipeline_defs(declared_spec("fashion_mnist")), dg.Definitions(resources=resources))
    graph = defs.resolve_asset_graph()
    wanted = dg.AssetSelection.assets(dg.AssetKey(["fashion_mnist", "model_release"])).upstream().resolve(graph)
    instance = dg.DagsterInstance.ephemeral()
    ingested = {}
    for keys, partitioned in stages(graph, ["fashion_mnist"]):
        for partition in ("train", "validation", "test") if partitioned else [None]:
            if [key for key in keys if key in wanted]:
                result = materialize_stage(instance, [key for key in keys if key in wanted], partition, resources, defs.assets)
                assert result.success, f"{keys} [{partition}] failed"
                for event in result.get_asset_materialization_events():
                    materialization = event.event_specific_data.materialization
                    if materialization.asset_key.path[-1] == "raw_dataset":
                        ingested[partition] = {k: v.value for k, v in materialization.metadata.items()}
    raw = ingested["test"]
    assert raw["count"] == 2000 and raw["available"] == 10000 and raw["limited"] is True
    store = settings.store("fashion_mnist")
    view = split_view(store.dataset(), "test")
    truth, released, paths = view.values(["ground_truth.label", "release_predictions.label", "filepath"])
    assert set(truth) == set(FASHION) and set(released) <= set(FASHION)
    assert float(np.mean(np.array(truth) == np.array(released))) > 0.5  # one epoch on 2,000 clothes; chance is 0.1
    # Fashion-MNIST's own statistics (not MNIST's 0.1307), of the images as declared: centred in 32x32.
    spec = DatasetSpec(name="fashion_mnist", source="fashion-mnist", image_size=32)
    train = split_of(load_source(spec, None, store.dir / "downloads"), spec, "train", 2000).images
    assert train.shape == (2000, 32, 32) and not train[:, :2].any() and not train[:, :, -2:].any()
    payload = torch.load(store.dir / "checkpoints" / "lenet_checkpoint.pt", weights_only=True)
    # The checkpoint standardizes by the train split's own pixel statistics, as raw_dataset[train] reports them.
    assert payload["settings"]["mean"] == pytest.approx(train.mean() / 255, abs=1e-5) and 0.2 < payload["settings"]["mean"] < 0.25
    assert ingested["train"]["pixel_mean"] == pytest.approx(payload["settings"]["mean"], abs=1e-6)
    assert payload["settings"]["image_size"] == 32  # LeNet-5 with the paper's 5x5 C5

    # The release says how ingest converted the images, and predict does the same to a 28x28 file.
    release = Release(store.dir / "release" / "model.onnx", "fashion_mnist")
    assert (release.conversion.resize, release.conversion.source_size, release.conversion.background) == ("pad", 28, 0)
    files = []
    for number, path in enumerate(paths):
        original = tmp_path / f"clothes-{number}.png"
        Image.fromarray(np.asarray(Image.open(path))[2:30, 2:30]).save(original)  # the source's own 28x28 pixels
        files.append(str(original))
    done = run_ok(
        [str(REPO / ".venv" / "bin" / "python"), "-m", "mnist_assets.predict", "--dataset", "fashion_mnist", "--json", *files],
        env=subprocess_env(settings),
        timeout=600,
    )
    predicted = [row["label"] for row in json.loads(done.stdout)]
    disagree = [(files[i], predicted[i], released[i]) for i in range(len(files)) if predicted[i] != released[i]]
    assert not disagree, f"{len(disagree)} of {len(files)} files predicted unlike the graph, e.g. {disagree[:3]}"
    # The MNIST store of the same settings is untouched.
    assert len(settings.store("mnist").dataset()) == 0


def test_two_declarations_of_one_name_are_refused_naming_both_files(tmp_path):
    from mnist_assets.ml.data.dataset_spec import DatasetSpecError
    from mnist_assets.pipeline import DEFS_FOLDER, check_unique_names

    check_unique_names()  # the shipped ones are distinct
    for folder in ("mnist", "digits_again"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "defs.yaml").write_text((DEFS_FOLDER / "mnist" / "defs.yaml").read_text())
    with pytest.raises(DatasetSpecError, match=r"mnist/defs.yaml and .*digits_again/defs.yaml both declare the dataset 'mnist'"):
        check_unique_names(tmp_path)


# A user's own folder: RGB photos at 36x36 in PNG and JPEG, declared at 32x32 RGB.


@pytest.fixture(scope="module")
def clothes_folder(tmp_path_factory, fashion):
    return write_image_folder(tmp_path_factory.mktemp("clothes"), fashion, per_class=200)


def test_a_folder_of_images_is_converted_and_split_stratified(clothes_folder, fashion, tmp_path):
    spec = DatasetSpec(**folder_declaration(clothes_folder))
    assert spec.classes() == sorted(FOLDER_CLASSES) and spec.model_shape() == {"num_classes": 3, "in_channels": 3, "image_size": 32}
    source = load_source(spec, None, tmp_path)
    splits = {split: split_of(source, spec, split, None) for split in ("train", "validation", "test")}
    # 600 images: 20% test, then 15% of the rest validation, each stratified by class.
    assert {split: len(data.labels) for split, data in splits.items()} == {"train": 408, "validation": 72, "test": 120}
    assert np.bincount(splits["test"].labels).tolist() == [40, 40, 40]
    assert splits["train"].images.shape == (408, 32, 32, 3) and splits["train"].images.dtype == np.uint8
    keys = np.concatenate([data.indices for data in splits.values()])
    assert len(set(keys.tolist())) == 600  # one stable key per file
    assert all(name.startswith("my_clothes/") and name.endswith(".png") for name in splits["test"].image_files)
    # A gray file became three equal channels; a tinted one kept its colour.
    test = splits["test"]
    gray = [i for i, name in enumerate(test.image_files) if name.split("/")[-1].split("-")[0].endswith(("6", "3")) is False]
    assert any(not np.array_equal(test.images[i][..., 0], test.images[i][..., 2]) for i in gray)
    # A limit takes a sample of every class, not the first folder's files.
    assert np.bincount(split_of(source, spec, "train", 30).labels).min() >= 5
    # Adding a file changes no other file's key or PNG name, and moves at most one other sample between splits.
    Image.fromarray(fashion.train_images[0]).save(clothes_folder / "bag" / "zz_new.png")
    try:
        grown = load_source(spec, None, tmp_path)
        again = {split: split_of(grown, spec, split, None) for split in splits}
        before = dict(zip(test.indices.tolist(), test.image_files))
        assert all(before[key] == name for key, name in zip(again["test"].indices.tolist(), again["test"].image_files) if key in before)
        moved = sum(len(set(splits[s].indices.tolist()) - set(again[s].indices.tolist())) for s in splits)
        assert moved <= 1 and sum(len(data.labels) for data in again.values()) == 601
    finally:
        (clothes_folder / "bag" / "zz_new.png").unlink()


def test_a_folder_with_train_and_test_keeps_its_test_split(fashion, tmp_path):
    root = write_image_folder(tmp_path / "split", fashion, per_class=50, split_layout=True)
    spec = DatasetSpec(**folder_declaration(root, name="split_clothes"))
    source = load_source(spec, None, tmp_path)
    test = split_of(source, spec, "test", None)
    assert len(test.labels) == 30 and all("/test/" in f"/{name}" for name in test.image_files)
    assert len(split_of(source, spec, "train", None).labels) + len(split_of(source, spec, "validation", None).labels) == 120


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda root: {"path": str(root / "missing")}, r"missing does not exist; set `path`"),
        (lambda root: {"class_names": ["bag", "shoe", "trouser"]}, r"do not match the class sub-folders \['bag', 'sneaker', 'trouser'\]"),
        (lambda root: {"path": None}, "needs `path`"),
        (lambda root: {"path": str(root / "bag")}, "has 0 class sub-folder"),
        (lambda root: {"source": "mnist", "path": None}, r"declare image_size: 28 \(or 32"),
        (lambda root: {"channels": 4}, "Input should be 1 or 3"),
        # Three classes: cleanlab's noise matrix needs 3 x (1 - rate) > 1 (it failed at ingest on "trace > 1").
        (lambda root: {"label_noise": {"rate": 0.7}}, r"label_noise.rate 0.7 is too high for 3 classes .* below 0.667"),
        # 200 images a class: 0.2 to test leaves 160, of which 0.001 is 0.16, rounded to none (training failed on it).
        (
            lambda root: {"validation_fraction": 0.001},
            r"validation_fraction 0.001 leaves no validation image \(160 training images .*at least 0.00625",
        ),
        (lambda root: {"test_fraction": 0.002}, r"test_fraction 0.002 holds out no test image \(200 images .*at least 0.005"),
    ],
)
def test_bad_folder_declarations_are_refused_at_load(clothes_folder, change, message):
    with pytest.raises((ValidationError, ValueError), match=message):
        DatasetSpec(**{**folder_declaration(clothes_folder), **change(clothes_folder)})


def test_unreadable_files_are_left_out_and_reported_or_with_strict_refused(fashion, tmp_path):
    root = write_image_folder(tmp_path / "bad", fashion, per_class=10)
    spec = DatasetSpec(**folder_declaration(root, name="bad_clothes"))
    broken = root / "sneaker" / "sneaker_0000.png"
    broken.write_bytes(broken.read_bytes()[:100])  # truncated
    (root / "bag" / "notes.png").write_text("not an image")
    source = load_source(spec, None, tmp_path)
    assert [name for name, _ in source.unreadable] == ["bag/notes.png", "sneaker/sneaker_0000.png"]
    assert "not a readable image" in source.unreadable[1][1]
    assert len(source.train.labels) + len(source.test.labels) == 30 - 1  # the rest, all of it
    assert source.train.file_info[0] == (36, 36, "RGB")  # the file as it was, before conversion to 32x32
    strict = DatasetSpec(**folder_declaration(root, name="bad_clothes", strict=True))
    with pytest.raises(FolderSourceError, match=r"notes.png is not a readable image .*remove or replace it.*strict: true refuses"):
        load_source(strict, None, tmp_path)
    for image in (root / "trouser").iterdir():
        image.unlink()
    with pytest.raises(FolderSourceError, match=r"trouser holds no images"):
        load_source(spec, None, tmp_path)


def test_a_folder_dataset_goes_through_every_asset(make_settings, clothes_folder):
    """Every asset of the graph on 32x32 RGB photos of three classes, then a bad file that loses nothing."""
    spec = DatasetSpec(**folder_declaration(clothes_folder))
    settings = make_settings(epochs=5)
    instance, checks, defs = materialize_every_asset(spec, settings)
    failed = failed_checks(checks)
    # What the data-issue checks warn about: the folder's gray files (every 7th) in a colour set, and
    # what a few photos are (a dark item in a dark tint, an odd one, two alike), and a region of the
    # few images where the briefly trained models are far less sure of the labels than elsewhere.
    warned = {
        f"my_clothes/data_issues:few_{issue}" for issue in ("grayscale", "dark", "near_duplicate", "outlier", "underperforming_group")
    }
    assert "my_clothes/data_issues:few_grayscale" in failed and failed <= warned
    assert all(c.severity == dg.AssetCheckSeverity.WARN for c in checks if not c.passed)  # warnings, nothing blocked

    store = settings.store("my_clothes")
    dataset = store.dataset()
    # the grayscale warning is the gray files, each of them and nothing else
    modes, flagged = dataset.values(["source_mode", "data_issues"])
    assert [mode == "L" for mode in modes] == ["grayscale" in names for names in flagged] and "L" in modes
    assert {split: len(split_view(dataset, split)) for split in ("train", "validation", "test")} == {
        "train": 408,
        "validation": 72,
        "test": 120,
    }
    test = split_view(dataset, "test")
    widths, channels = test.values(["metadata.width", "metadata.num_channels"])
    assert set(widths) == {32} and set(channels) == {3}
    truth, predicted, finetuned = test.values(["ground_truth.label", "lenet_predictions.label", "finetuned_predictions.label"])
    assert set(truth) == set(FOLDER_CLASSES)
    accuracy = float(np.mean(np.array(truth) == np.array(predicted)))
    assert accuracy > 0.8, accuracy  # bags, sneakers and trousers; chance is 1/3
    assert len(test.values("clip_embeddings")[0]) == 64 and test.values("clip_zero_shot.label")[0] in FOLDER_CLASSES
    assert all(value is not None for value in test.values("hardness")) and set(finetuned) <= set(FOLDER_CLASSES)
    # Every sample names its file as it was; the gray files are the grayscale ones data_issues flags.
    sources, modes, flagged = test.values(["source_path", "source_mode", "data_issues"])
    assert all((clothes_folder / name).is_file() for name in sources) and set(modes) <= {"RGB", "L", "P"}
    assert [mode == "L" for mode in modes] == ["grayscale" in names for names in flagged]
    payload = torch.load(store.dir / "checkpoints" / "lenet_checkpoint.pt", weights_only=True)
    assert (payload["settings"]["in_channels"], payload["settings"]["image_size"], payload["settings"]["num_classes"]) == (3, 32, 3)
    # The release predicts the folder's own files, read from disk as a user's would be, as the graph did.
    release = Release(store.dir / "release" / "model.onnx")
    files, released = test.values(["filepath", "release_predictions.label"])
    stems = [re.sub(r"-[0-9a-f]{12}\.png$", "", name.split("/my_clothes/", 1)[1]) for name in files]  # sources.py's names
    originals = [str(next(clothes_folder.glob(f"{stem}.*"))) for stem in stems]
    assert [r["label"] for r in predict_files(release, originals)] == released
    assert float(np.mean(np.array(released) == np.array(truth))) > 0.8

    # Declared strict, a truncated image fails the next ingest with its name, and the stored split
    # stays as it was (by default the rest is ingested and the file reported: the test above).
    strict = DatasetSpec(**folder_declaration(clothes_folder, strict=True))
    strict_assets = build_pipeline_defs(strict).assets
    before = split_view(dataset, "train").values("id")
    broken = clothes_folder / "bag" / "bag_0001.png"
    original = broken.read_bytes()
    broken.write_bytes(original[:80])
    try:
        failed = materialize_stage(instance, [dg.AssetKey(["my_clothes", "raw_dataset"])], "train", {"settings": settings}, strict_assets)
        assert not failed.success
        failure = next(e for e in failed.all_events if e.event_type_value == "STEP_FAILURE")
        assert "bag_0001.png is not a readable image" in str(failure.event_specific_data.error)
        dataset.reload()
        assert split_view(dataset, "train").values("id") == before
    finally:
        broken.write_bytes(original)
