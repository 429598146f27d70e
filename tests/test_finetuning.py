"""Fine-tuning is one plain step (ml/models/finetuning.py) that finetuned_model and scripts/strategy_study.py
both run, for any declared dataset: the study measures what the asset does."""

import importlib.util

import dagster as dg
import numpy as np
import pytest
import torch
from graph import asset, op_config, saved_payload
from processes import REPO

from mnist_assets.ml.core.errors import MissingInputError
from mnist_assets.ml.data.dataset_spec import FASHION, DatasetSpec
from mnist_assets.ml.data.tensors import SplitTensors
from mnist_assets.ml.models import finetuning
from mnist_assets.ml.models.architectures import build_model
from mnist_assets.ml.models.checkpoints import checkpoint_payload


def coloured_squares(count: int, classes: int, seed: int) -> SplitTensors:
    """RGB 16x16 images whose class is the channel that is bright: learnable in one epoch."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % classes
    images = torch.randint(0, 60, (count, 3, 16, 16), generator=generator, dtype=torch.uint8)
    images[torch.arange(count), labels] += 150
    return SplitTensors(images, labels, [f"{seed}-{i}" for i in range(count)], 0.3, 0.3)


def test_finetune_follows_the_recipe_of_any_declared_dataset(tmp_path):
    """A three-class RGB folder at 16x16: the model keeps the checkpoint's shape, the recipe is the
    dataset's (a folder of objects may be mirrored), the inputs are standardized as the checkpoint
    was trained, and the same inputs give the same weights."""
    for name in ("bag", "sneaker", "trouser"):
        (tmp_path / name).mkdir()
    spec = DatasetSpec(name="my_clothes", source="folder", path=str(tmp_path), image_size=16, channels=3)
    shape = spec.model_shape()
    assert shape == {"num_classes": 3, "in_channels": 3, "image_size": 16}
    base = build_model("lenet5", 51, **shape)
    payload = checkpoint_payload(
        arch="lenet5", model=base.state_dict(), optimizer={}, epoch=1, metrics={}, settings={**shape, "mean": 0.25, "std": 0.35}
    )
    train, augmented, validation = coloured_squares(60, 3, 1), coloured_squares(30, 3, 2), coloured_squares(30, 3, 3)

    def tuned(log=None):
        model = build_model("lenet5", **shape)
        model.load_state_dict(payload["model"])
        return finetuning.finetune(spec, model, payload, train, augmented, validation, {"epochs": 1, "seed": 7}, log=log)

    said = []
    first = tuned(said.append)
    assert (first.model.fc2.out_features, first.model.features[0].in_channels) == (3, 3)
    config = first.config
    assert (config.arch, config.epochs, config.seed, config.lr, config.keep) == ("lenet5", 1, 7, 1e-3, "last")
    assert (config.batch_augmentation, config.horizontal_flip) == ("affine", True)  # MNIST's digits are never mirrored
    assert (first.train.mean, first.train.std) == (0.25, 0.35) and len(first.train) == 60
    assert len(first.result.history) == 1 and first.result.best_epoch == 1
    assert said[0] == "my_clothes: fine-tuning on 60 + 30 augmented samples, 1 epochs" and said[1].startswith("epoch 1/1: val loss")
    second = tuned()
    assert all(torch.equal(first.result.best_state[k], second.result.best_state[k]) for k in first.result.best_state)
    # A checkpoint of another shape (MNIST's) is refused before any training.
    mnist_shaped = {**payload, "settings": {"num_classes": 10, "in_channels": 1, "image_size": 28}}
    with pytest.raises(MissingInputError, match="declares"):
        finetuning.finetune(spec, build_model("lenet5"), mnist_shaped, train, augmented, validation)


def load_script():
    location = REPO / "scripts" / "strategy_study.py"
    module_spec = importlib.util.spec_from_file_location("strategy_study", location)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def test_the_asset_and_the_strategy_study_fine_tune_fashion_mnist_with_one_function(make_settings, monkeypatch, tmp_path):
    """finetuned_model and `strategy_study.py --dataset fashion_mnist` both go through
    ml/models/finetuning.finetune, with Fashion-MNIST's declaration (its recipe mirrors clothes), and each
    gets a classifier of its shape; the asset saves the state that step kept."""
    from mnist_assets.ml.core.field_names import HARDNESS, UNIQUENESS
    from mnist_assets.ml.models.selection import scored_predictions
    from mnist_assets.ml.store.fiftyone_store import usable_view, write_classifications, write_floats

    settings = make_settings(limit=60, epochs=1)
    for variable, value in {"HOME": settings.home, "NAMESPACE": settings.namespace, "LIMIT": "60", "EPOCHS": "1", "DEVICE": "cpu"}.items():
        monkeypatch.setenv(f"MNIST_ASSETS_{variable}", value)
    resources = {"settings": settings}
    for split in ("train", "validation", "test"):
        assert dg.materialize([asset("raw_dataset", "fashion_mnist")], partition_key=split, resources=resources).success
    assert dg.materialize([asset("lenet_checkpoint", "fashion_mnist")], resources=resources).success
    # The scores augmented_set chooses by, written directly: what is tested is the fine-tuning.
    store = settings.store("fashion_mnist")
    train = usable_view(store.dataset(), "train")
    ids, rng = train.values("id"), np.random.default_rng(0)
    write_classifications(train, scored_predictions("train"), rng.normal(size=(len(ids), 10)), ids, FASHION)
    write_floats(train, {HARDNESS: rng.random(len(ids)), UNIQUENESS: rng.random(len(ids))}, ids)

    calls = []
    real = finetuning.finetune

    def spy(spec, *args, **kwargs):
        calls.append((spec.name, real(spec, *args, **kwargs)))
        return calls[-1][1]

    monkeypatch.setattr(finetuning, "finetune", spy)
    config = op_config("augmented_set", {"budget": 20, "copies": 2}, "fashion_mnist")
    assert dg.materialize([asset("augmented_set", "fashion_mnist")], resources=resources, run_config=config).success
    assert dg.materialize([asset("finetuned_model", "fashion_mnist")], resources=resources).success
    assert [name for name, _ in calls] == ["fashion_mnist"]
    saved = saved_payload(store.dir / "checkpoints" / "finetuned_model.pt")
    kept = calls[0][1].result.best_state
    assert saved["model"].keys() == kept.keys() and all(torch.equal(saved["model"][k], kept[k].cpu()) for k in kept)
    assert saved["settings"]["augmented_count"] == 40

    runs = load_script().main(
        [
            "--dataset",
            "fashion_mnist",
            "--strategies",
            "hardest",
            "--seeds",
            "51",
            "--budget",
            "20",
            "--copies",
            "2",
            "--json",
            str(tmp_path / "runs.json"),
        ]
    )
    assert [(run["strategy"], run["selected"]) for run in runs] == [("hardest", 20)]
    assert [name for name, _ in calls] == ["fashion_mnist", "fashion_mnist"]
    for _, tuned in calls:
        assert (tuned.model.fc2.out_features, tuned.model.features[0].in_channels) == (10, 1)
        assert tuned.config.horizontal_flip and tuned.config.epochs == 1
        assert tuned.train.mean == saved["settings"]["mean"]  # both standardize as the checkpoint was trained
