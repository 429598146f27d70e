"""Settings are read from the environment and bad values are refused before any work starts."""

import subprocess
import sys

import pytest

from mnist_assets.ml.names import check_safe_name
from mnist_assets.resources import MnistSettings, SettingsError


def test_defaults_and_values_from_the_environment(tmp_path):
    settings = MnistSettings.from_env({"MNIST_ASSETS_HOME": str(tmp_path), "MNIST_ASSETS_LIMIT": "500", "MNIST_ASSETS_EPOCHS": "2"})
    assert settings.home == str(tmp_path) and settings.limit == 500 and settings.epochs == 2
    assert settings.store("mnist").name == "mnist" and settings.clip_model == "ViT-B-32" and settings.clip_pretrained == "openai"
    assert (
        settings.store("mnist").artifact_path("checkpoints", "lenet_checkpoint.pt")
        == tmp_path / "datasets" / "mnist" / "checkpoints" / "lenet_checkpoint.pt"
    )


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"MNIST_ASSETS_LIMIT": "lots"}, "MNIST_ASSETS_LIMIT='lots' is not a whole number"),
        ({"MNIST_ASSETS_EPOCHS": "0"}, "MNIST_ASSETS_EPOCHS=0 must be a positive integer"),
        ({"MNIST_ASSETS_EPOCHS": "-3"}, "MNIST_ASSETS_EPOCHS=-3 must be a positive integer"),
    ],
)
def test_bad_numbers_are_refused(environ, message):
    with pytest.raises(SettingsError, match=message):
        MnistSettings.from_env(environ)


@pytest.mark.parametrize("name", ["../escape", "a/b", "", ".hidden", "x" * 65])
def test_names_cannot_escape_their_folder(name, tmp_path):
    with pytest.raises(ValueError, match="not allowed"):
        check_safe_name(name, "name")
    if name:  # an empty namespace is the default: datasets keep their own names
        with pytest.raises(Exception, match="not allowed"):
            MnistSettings(home=str(tmp_path), namespace=name)


def test_code_location_refuses_a_bad_setting_at_load():
    env = {"MNIST_ASSETS_LIMIT": "ten", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", "import mnist_assets.definitions"], env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "MNIST_ASSETS_LIMIT='ten' is not a whole number" in result.stderr


def test_training_takes_the_datasets_batch_augmentation_unless_the_config_says(make_settings):
    from mnist_assets.assets.common import Pipeline
    from mnist_assets.assets.lenet import TrainingConfig, train_config
    from mnist_assets.ml.dataset_spec import DatasetSpec

    declared = Pipeline(DatasetSpec(name="digits", source="mnist", batch_augmentation="affine"))
    settings = make_settings()
    assert train_config(TrainingConfig(), declared, settings).batch_augmentation == "affine"
    assert train_config(TrainingConfig(batch_augmentation="none"), declared, settings).batch_augmentation == "none"
    assert train_config(TrainingConfig(), Pipeline(DatasetSpec(name="digits", source="mnist")), settings).batch_augmentation == "none"
    with pytest.raises(ValueError, match="batch_augmentation"):
        DatasetSpec(name="digits", source="mnist", batch_augmentation="rotate")


def test_the_checkpoint_takes_checkpoint_epochs_and_the_fold_models_the_plain_recipe(make_settings):
    from mnist_assets.assets.common import Pipeline
    from mnist_assets.assets.lenet import OutOfFoldConfig, TrainingConfig, train_config
    from mnist_assets.ml.dataset_spec import DatasetSpec

    declared = Pipeline(DatasetSpec(name="digits", source="mnist", epochs=8, checkpoint_epochs=20, batch_augmentation="affine"))
    settings = make_settings()
    checkpoint, folds = train_config(TrainingConfig(), declared, settings), train_config(OutOfFoldConfig(), declared, settings)
    assert (checkpoint.epochs, checkpoint.batch_augmentation) == (20, "affine")
    assert (folds.epochs, folds.batch_augmentation) == (8, "none")
    assert train_config(OutOfFoldConfig(epochs=3, batch_augmentation="affine"), declared, settings).batch_augmentation == "affine"
    assert train_config(TrainingConfig(), Pipeline(DatasetSpec(name="digits", source="mnist", epochs=8)), settings).epochs == 8
    assert train_config(TrainingConfig(), declared, make_settings(epochs=2)).epochs == 2  # MNIST_ASSETS_EPOCHS: quick runs
    with pytest.raises(ValueError, match="checkpoint_epochs"):
        DatasetSpec(name="digits", source="mnist", checkpoint_epochs=0)
