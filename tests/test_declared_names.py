"""A dataset is found by the name its defs.yaml declares, whatever its folder is called, by every
command that takes one (`review import`, `predict --dataset`, `make app`); names FiftyOne cannot
tell apart are refused when the declarations load; run configs out of range fail before any work."""

import importlib
import textwrap

import dagster as dg
import pytest
from defs_folders import MNIST_YAML, defs_package
from pydantic import ValidationError

import mnist_assets.declared as declared
import mnist_assets.pipeline as pipeline
from mnist_assets import review
from mnist_assets.predict import ReleaseError, release_path


def declaration(name: str) -> str:
    return MNIST_YAML.replace("name: mnist\n", f"name: {name}\n")


@pytest.fixture
def clothes(tmp_path, monkeypatch):
    """A defs folder whose `clothes/` declares `my_clothes` (as `dg scaffold` into another folder makes)."""
    assert "name: mnist\n" in MNIST_YAML
    folder = defs_package(tmp_path, "clothes_project", {"mnist": MNIST_YAML, "clothes": declaration("my_clothes")})
    monkeypatch.setattr(declared, "DEFS_FOLDER", folder)
    monkeypatch.setattr(pipeline, "DEFS_FOLDER", folder)
    monkeypatch.setenv("MNIST_ASSETS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MNIST_ASSETS_NAMESPACE", raising=False)
    decisions = tmp_path / "decisions.csv"
    decisions.write_text("source_index,decision,label\n947,relabel,9\n")
    return tmp_path, decisions


def test_review_import_predict_and_the_app_find_a_dataset_by_its_declared_name(clothes, capsys):
    home, decisions = clothes
    assert pipeline.declared_spec("my_clothes").name == "my_clothes"  # what `make app DATASET=` and `review` look up
    assert review.main(["import", str(decisions), "--dataset", "my_clothes", "--split", "test", "--no-apply"]) == 0
    assert (home / "home" / "reviews" / "my_clothes" / "log").is_dir()
    assert not (home / "home" / "reviews" / "clothes").exists()  # nothing recorded where no asset reads
    from mnist_assets.resources import Settings

    logged = Settings.from_env().store("my_clothes").decision_log().read()
    assert [(d.split, d.source_index, d.label) for d in logged] == [("test", 947, "9")]
    # The folder's name is not a dataset: refused, pointing at the declared name, nothing recorded.
    capsys.readouterr()
    assert review.main(["import", str(decisions), "--dataset", "clothes", "--split", "test", "--no-apply"]) == 2
    err = capsys.readouterr().err
    assert "no dataset 'clothes' is declared (the folder clothes/ declares the dataset 'my_clothes': use that name)" in err
    assert len(err.strip().splitlines()) == 1 and not (home / "home" / "reviews" / "clothes").exists()
    with pytest.raises(ReleaseError, match=r"my_clothes has no released model at .*/datasets/my_clothes/release/model.onnx"):
        release_path("my_clothes")
    with pytest.raises(ReleaseError, match="the folder clothes/ declares the dataset 'my_clothes'"):
        release_path("clothes")


def test_the_slug_is_fiftyones():
    from fiftyone.core.utils import to_slug

    for name in ("mnist", "MNIST", "mnist_augmented", "Fashion__MNIST_", "a1_b2", "mnist-augmented"):
        assert declared.slug(name) == to_slug(name)


def test_names_fiftyone_cannot_tell_apart_are_refused_when_the_declarations_load(tmp_path, monkeypatch):
    """`MNIST` beside `mnist`, and `mnist_augmented` beside mnist's `mnist-augmented`, loaded and then
    collided on FiftyOne's slug at ingest."""
    from mnist_assets.definitions import code_location
    from mnist_assets.ml.data.dataset_spec import DatasetSpecError

    folder = defs_package(
        tmp_path,
        "slug_project",
        {"mnist": MNIST_YAML, "upper": declaration("MNIST"), "augmented": declaration("mnist_augmented"), "other": declaration("digits")},
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    defs, broken = code_location(importlib.import_module("slug_project.defs"))
    assert sorted((item.folder, item.name) for item in broken) == [("augmented", "mnist_augmented"), ("upper", "MNIST")]
    assert all("which FiftyOne cannot tell from 'mnist'" in item.error and "give it another `name`" in item.error for item in broken)
    keys = {key.to_user_string() for key in defs.resolve_all_asset_keys()}
    assert {"mnist/raw_dataset", "digits/raw_dataset"} <= keys and "MNIST/raw_dataset" not in keys
    assert sorted(declared.declarations(folder)) == ["digits", "mnist"]
    with pytest.raises(DatasetSpecError, match=r"'mnist' and '(MNIST|mnist_augmented)', which FiftyOne cannot tell apart"):
        pipeline.check_unique_names(folder)


@pytest.mark.parametrize(
    "config, values, field",
    [
        ("mnist_assets.assets.training:OutOfFoldConfig", {"folds": 0}, "folds"),  # a ZeroDivisionError before its own check
        ("mnist_assets.assets.training:TrainingConfig", {"label_smoothing": 2.0}, "label_smoothing"),
        ("mnist_assets.assets.training:TrainingConfig", {"epochs": 0}, "epochs"),
        ("mnist_assets.assets.duplicates:DuplicatesConfig", {"threshold": -5.0}, "threshold"),
        ("mnist_assets.assets.augmentation:AugmentationConfig", {"budget": 0}, "budget"),
        ("mnist_assets.assets.clip:ClipEmbeddingConfig", {"batch_size": 0}, "batch_size"),
    ],
)
def test_run_config_out_of_range_is_refused_by_name(config, values, field):
    module, name = config.split(":")
    cls = getattr(importlib.import_module(module), name)
    with pytest.raises(ValidationError, match=rf"{field}\n  Input should be (greater|less) than"):
        cls(**values)
    cls()  # the defaults are in range


def test_a_step_with_config_out_of_range_fails_before_its_body_runs(make_settings):
    from graph import asset, op_config

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [asset("duplicates_and_leaks")],
        instance=instance,
        resources={"settings": make_settings()},
        run_config=op_config("duplicates_and_leaks", {"threshold": -5.0}),
        raise_on_error=False,
    )
    assert not result.success
    failure = next(event for event in result.all_events if event.is_step_failure)
    text = textwrap.dedent(str(failure.event_specific_data.error.to_string()))
    assert "threshold" in text and "greater than or equal to 0" in text
