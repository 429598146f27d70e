"""Settings are read from the environment and bad values are refused before any work starts."""

import subprocess
import sys

import pytest

from mnist_assets.ml.core.names import check_safe_name
from mnist_assets.resources import Settings, SettingsError


def test_defaults_and_values_from_the_environment(tmp_path):
    settings = Settings.from_env({"MNIST_ASSETS_HOME": str(tmp_path), "MNIST_ASSETS_LIMIT": "500", "MNIST_ASSETS_EPOCHS": "2"})
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
        Settings.from_env(environ)


@pytest.mark.parametrize("name", ["../escape", "a/b", "", ".hidden", "x" * 65])
def test_names_cannot_escape_their_folder(name, tmp_path):
    with pytest.raises(ValueError, match="not allowed"):
        check_safe_name(name, "name")
    if name:  # an empty namespace is the default: datasets keep their own names
        with pytest.raises(Exception, match="not allowed"):
            Settings(home=str(tmp_path), namespace=name)


def test_code_location_refuses_a_bad_setting_at_load():
    env = {"MNIST_ASSETS_LIMIT": "ten", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", "import mnist_assets.definitions"], env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "MNIST_ASSETS_LIMIT='ten' is not a whole number" in result.stderr


def test_each_recipe_field_comes_from_config_then_environment_then_declaration_then_defaults():
    from mnist_assets.ml.data.dataset_spec import DatasetSpec
    from mnist_assets.ml.models.recipes import MIN_STEPS, resolve

    digits = DatasetSpec(name="digits", source="mnist", epochs=8, checkpoint_epochs=20, batch_augmentation="affine")
    checkpoint, folds, finetune = (resolve(role, digits, {}) for role in ("checkpoint", "folds", "finetune"))
    assert (checkpoint.epochs, checkpoint.batch_augmentation, checkpoint.lr, checkpoint.min_steps) == (20, "affine", 3e-3, MIN_STEPS)
    assert (folds.epochs, folds.batch_augmentation) == (8, "none")  # the fold models stay plain
    assert (finetune.epochs, finetune.lr, finetune.batch_augmentation, finetune.keep) == (15, 1e-3, "affine", "last")
    assert resolve("checkpoint", DatasetSpec(name="digits", source="mnist"), {}).batch_augmentation == "none"
    assert resolve("checkpoint", digits, {}, env_epochs=2).epochs == 2  # MNIST_ASSETS_EPOCHS beats the declaration
    chosen = resolve("checkpoint", digits, {"epochs": 3, "batch_augmentation": "none", "lr": None}, env_epochs=2)
    assert (chosen.epochs, chosen.batch_augmentation, chosen.lr) == (3, "none", 3e-3)  # the config beats both; None is unset
    # Explicit epochs are taken as given; declared ones get at least MIN_STEPS optimizer steps.
    assert chosen.min_steps == 0 and resolve("checkpoint", digits, {}, env_epochs=2).min_steps == 0
    assert checkpoint.planned_epochs(51000) == 20 and checkpoint.planned_epochs(510) == 125  # 8 steps per epoch
    assert resolve("checkpoint", DatasetSpec(name="digits", source="mnist"), {}).horizontal_flip is False
    # The CNN: its recipe, the augmentation the classes allow, and what a GPU affords beyond this CPU.
    cnn = resolve("cnn", digits, {})
    recipe = (cnn.arch, cnn.epochs, cnn.batch_size, cnn.label_smoothing, cnn.ema, cnn.batch_augmentation, cnn.keep)
    assert recipe == ("vgg_small", 15, 128, 0.1, 0.0, "affine", "last")
    clothes = DatasetSpec(name="clothes", source="fashion-mnist", cnn_epochs=12)
    clothes_cnn = resolve("cnn", clothes, {})
    assert (clothes_cnn.batch_augmentation, clothes_cnn.horizontal_flip, clothes_cnn.random_erasing) == ("shift", True, 0.5)
    assert cnn.random_erasing == 0.0  # digits: erasing a stroke can make another digit
    # bf16 autocast where the device has it in hardware (the CNN only: the LeNets' figures are fp32's)
    assert cnn.precision == "auto" and resolve("checkpoint", digits, {}).precision == "fp32"
    on_gpu = resolve("cnn", clothes, {}, device="cuda")
    assert (on_gpu.arch, on_gpu.epochs) == ("vgg_wide", 24)  # the declared epochs are the CPU's budget
    assert resolve("cnn", clothes, {"arch": "vgg_small"}, device="cuda").arch == "vgg_small"  # a person's choice stands
    assert resolve("checkpoint", digits, {}, device="cuda").epochs == 20  # the LeNets keep their recipe anywhere
    with pytest.raises(ValueError, match="cnn_arch"):
        DatasetSpec(name="digits", source="mnist", cnn_arch="vgg19")
    with pytest.raises(ValueError, match="continues the 'lenet5' model; drop `arch`"):
        resolve("finetune", digits, {"arch": "resnet_small"}, arch="lenet5")
    with pytest.raises(ValueError, match="checkpoint_epochs"):
        DatasetSpec(name="digits", source="mnist", checkpoint_epochs=0)
    with pytest.raises(ValueError, match="batch_augmentation"):
        DatasetSpec(name="digits", source="mnist", batch_augmentation="rotate")


def test_the_launchpad_configs_leave_the_recipe_to_the_recipe(make_settings):
    """Config fields default to None (the recipe decides); fine-tuning shows no architecture to set."""
    from mnist_assets.assets.augmentation import FinetuneConfig
    from mnist_assets.assets.common import Pipeline
    from mnist_assets.assets.training import OutOfFoldConfig, TrainingConfig, train_config
    from mnist_assets.ml.data.dataset_spec import DatasetSpec

    assert "arch" not in FinetuneConfig.model_fields and "arch" in TrainingConfig.model_fields
    assert all(value is None for name, value in TrainingConfig().model_dump().items())
    digits = Pipeline(DatasetSpec(name="digits", source="mnist", epochs=8, checkpoint_epochs=20, batch_augmentation="affine"))
    assert train_config(TrainingConfig(), digits, make_settings(), "checkpoint").epochs == 20
    assert train_config(OutOfFoldConfig(epochs=3), digits, make_settings(epochs=2), "folds").epochs == 3
    assert train_config(FinetuneConfig(), digits, make_settings(), "finetune", arch="resnet_small").arch == "resnet_small"
