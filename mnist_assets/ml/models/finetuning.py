"""Fine-tuning a trained classifier on its training split plus an augmented set: the one step that
`finetuned_model` runs and `scripts/strategy_study.py` repeats per strategy and seed, for any
declared dataset."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from mnist_assets.ml.core.errors import MissingInputError
from mnist_assets.ml.data.dataset_spec import DatasetSpec
from mnist_assets.ml.data.tensors import SplitTensors, concatenate
from mnist_assets.ml.models import recipes
from mnist_assets.ml.models.training import FitResult, TrainConfig, fit

# What ml/models/checkpoints.py builds a checkpoint's model with when its settings do not say.
CHECKPOINT_DEFAULTS = {"num_classes": 10, "in_channels": 1, "image_size": 28}


@dataclass
class Finetuned:
    """The fine-tuned model (its kept state loaded), the recipe it followed, the fit's history and
    kept state, and the training split standardized as the model reads its inputs."""

    model: nn.Module
    config: TrainConfig
    result: FitResult
    train: SplitTensors


def standardized_as(checkpoint: dict, tensors: SplitTensors) -> SplitTensors:
    """`tensors` with the pixel statistics `checkpoint` was trained with (the tensors' own where the
    checkpoint records none)."""
    settings = checkpoint["settings"]
    mean, std = settings.get("mean", tensors.mean), settings.get("std", tensors.std)
    return SplitTensors(tensors.images, tensors.labels, tensors.sample_ids, mean, std)


def check_shape(spec: DatasetSpec, checkpoint: dict) -> None:
    """Refuse a checkpoint built for another shape of data than `spec` declares (classes, channels, size)."""
    recorded = {name: checkpoint["settings"].get(name, default) for name, default in CHECKPOINT_DEFAULTS.items()}
    if recorded != spec.model_shape():
        raise MissingInputError(
            f"the checkpoint was built for {recorded}, but {spec.name} declares {spec.model_shape()}; train its own checkpoint first"
        )


def finetune(
    spec: DatasetSpec,
    model: nn.Module,
    checkpoint: dict,
    train: SplitTensors,
    augmented: SplitTensors,
    validation: SplitTensors,
    chosen: dict | None = None,
    *,
    env_epochs: int | None = None,
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
) -> Finetuned:
    """Fine-tune `model` (loaded from `checkpoint`, its payload: ml/models/checkpoints.py) on `train` followed
    by `augmented`, choosing the state on `validation`, with the `finetune` recipe of `spec`
    (ml/models/recipes.py: `chosen` holds what a person set, None values ignored; `env_epochs`
    MNIST_ASSETS_EPOCHS). Every split is standardized with the checkpoint's pixel statistics, as the
    model was trained; the architecture stays the checkpoint's. Seeded: the same inputs give the same
    weights on the CPU. `model` is trained in place."""
    check_shape(spec, checkpoint)
    config = recipes.resolve("finetune", spec, chosen or {}, env_epochs=env_epochs, arch=checkpoint["arch"])
    train, validation = standardized_as(checkpoint, train), standardized_as(checkpoint, validation)
    combined = concatenate(train, augmented)  # the augmented samples standardized as train
    say = log or (lambda message: None)
    epochs = config.planned_epochs(len(combined))
    say(f"{spec.name}: fine-tuning on {len(train)} + {len(augmented)} augmented samples, {epochs} epochs")
    result = fit(
        model,
        combined,
        validation,
        config,
        device,
        on_epoch=lambda row: say(f"epoch {row['epoch']}/{epochs}: val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.4f}"),
    )
    return Finetuned(model, config, result, train)
