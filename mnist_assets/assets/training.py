"""What the training assets share: their Launchpad configs, the recipe each resolves to, and what
a training run yields (the checkpoint, its metadata and the accuracy gate)."""

from typing import TYPE_CHECKING, Optional

import dagster as dg
from pydantic import Field

from mnist_assets import checks
from mnist_assets.assets.common import Pipeline, limited_run
from mnist_assets.assets.data import checkpoint_path
from mnist_assets.assets.retraining import kept_model_result, record_training_set, retrain_decision
from mnist_assets.metadata import markdown_table, png
from mnist_assets.resources import Settings

if TYPE_CHECKING:  # for annotations only: imported where used, at run time
    from mnist_assets.ml.models.training import TrainConfig


class RecipeConfig(dg.Config):
    """A training run's settings for the Launchpad. Each field left empty takes the recipe's value:
    MNIST_ASSETS_EPOCHS, then the dataset's declaration, then the role's default (ml/models/recipes.py).
    A value out of its range fails the step before it starts, naming the field and its bounds."""

    recipe: Optional[str] = None  # onecycle (default) or series: Adam at a constant lr, the series' recipe
    epochs: Optional[int] = Field(None, ge=1)  # default: the dataset's checkpoint_epochs or epochs, at least 1,000 optimizer steps
    batch_size: Optional[int] = Field(None, ge=1)  # 64
    lr: Optional[float] = Field(None, gt=0)  # 3e-3
    batch_augmentation: Optional[str] = None  # none, affine, flip or shift; default: the dataset's
    label_smoothing: Optional[float] = Field(None, ge=0, lt=1)  # 0 (cnn_checkpoint: 0.1)
    # share of training images given a blank rectangle; 0 (cnn_checkpoint of clothes: 0.5)
    random_erasing: Optional[float] = Field(None, ge=0, le=1)
    ema: Optional[float] = Field(None, ge=0, lt=1)  # decay of the weights' moving average that is validated and kept; 0 (default): off
    keep: Optional[str] = None  # best (the lowest validation loss), accuracy (the LeNets' default) or last (cnn_checkpoint)
    precision: Optional[str] = None  # fp32, bf16 or auto (cnn_checkpoint: bf16 where the CPU or GPU has it in hardware)
    seed: Optional[int] = Field(None, ge=0, lt=2**32)  # 51
    accuracy_threshold: Optional[float] = Field(None, ge=0, le=1)  # default: the dataset's gate (MNIST 0.98, Fashion-MNIST 0.88)


class TrainingConfig(RecipeConfig):
    arch: Optional[str] = None  # lenet5, resnet_small, vgg_small or vgg_wide (ml/models/architectures.py); default: the role's
    # lenet_checkpoint on few labels: the unlabeled pool trains too, with labels spread from the given
    # ones (ml/models/pseudo_labels.py; never stored as labels); default: the declaration's `pool_labels`
    pool_labels: Optional[bool] = None


class OutOfFoldConfig(TrainingConfig):
    """The fold models train with the dataset's `epochs` and no batch augmentation unless set here."""

    folds: int = Field(5, ge=2, le=20)  # each sample is scored by the model that did not see it: at least two folds


def train_config(
    config: RecipeConfig, p: Pipeline, settings: Settings, role: str, arch: str | None = None, scarce: bool = False, pooled: bool = False
) -> "TrainConfig":
    """The recipe of `role` with what the config sets (ml/models/recipes.py says what wins); `scarce`: train
    has few labels (recipes.few_labels); `pooled`: the pool's spread labels train too."""
    from mnist_assets.ml.models import recipes
    from mnist_assets.ml.models.training import TrainConfig

    chosen = {name: value for name, value in config.model_dump().items() if name in TrainConfig.__dataclass_fields__}
    return recipes.resolve(
        role, p.spec, chosen, env_epochs=settings.epochs, arch=arch, device=settings.torch_device(), scarce=scarce, pooled=pooled
    )


def train_checkpoint(context, p: Pipeline, settings: Settings, config: TrainingConfig, role: str, name: str):
    """Train one model of `role`'s recipe on train, selected on validation, and yield what a training
    asset yields (training_results): lenet_checkpoint and cnn_checkpoint."""
    from mnist_assets.assets.data import split_tensors
    from mnist_assets.ml.models.architectures import build_model, parameter_count
    from mnist_assets.ml.models.recipes import few_labels
    from mnist_assets.ml.models.training import fit

    settings.configure_torch()
    train_config(config, p, settings, role)  # a bad config fails before the tensors are read
    trains, why, training_set = retrain_decision(context, p, settings, name)
    if not trains:  # automation, and the policy keeps the model: nothing downstream re-runs for it
        yield kept_model_result(context, p, name, why)
        yield kept_accuracy_gate(context, p, settings, name, config)
        return
    store = p.store(settings)
    _, _, train = split_tensors(p, settings, "train", store)
    _, _, validation = split_tensors(p, settings, "validation", store, statistics=(train.mean, train.std))
    labeled = len(train)
    scarce, pooled = few_labels(labeled, len(validation)), {}
    if scarce and role == "checkpoint":
        context.log.info(f"{p.name}: {labeled} train labels, fewer than validation's {len(validation)}: the few-labels recipe")
        if p.spec.pool_labels if config.pool_labels is None else config.pool_labels:
            train, pooled = with_pool_labels(context, p, settings, store, train)
    train_cfg = train_config(config, p, settings, role, scarce=scarce, pooled=bool(pooled.get("pseudo_labeled")))
    device = settings.torch_device()
    epochs = train_cfg.planned_epochs(len(train))
    model = build_model(train_cfg.arch, train_cfg.seed, **p.spec.model_shape())
    context.log.info(
        f"{p.name}: training {train_cfg.arch} ({parameter_count(model):,} parameters, {train_cfg.recipe}, "
        f"augmentation {train_cfg.batch_augmentation}) on {len(train)} samples, {epochs} epochs, {device}"
    )

    def log_epoch(row):
        context.log.info(
            f"epoch {row['epoch']}/{epochs}: train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.4f}, "
            f"val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.4f} ({row['seconds']} s)"
        )

    result = fit(model, train, validation, train_cfg, device, on_epoch=log_epoch)
    yield from training_results(
        context,
        p,
        settings,
        name,
        result,
        train_cfg,
        config,
        train,
        parameters=parameter_count(model),
        train_count=labeled,
        validation_count=len(validation),
        **pooled,
        retrain=(why, training_set),
    )


def with_pool_labels(context, p: Pipeline, settings: Settings, store, train):
    """Train's labeled samples with the pool's spread labels (ml/models/pseudo_labels.py), and what
    the metadata says of them."""
    from mnist_assets.assets.data import split_tensors
    from mnist_assets.ml.models.pseudo_labels import pool_training

    _, _, pool = split_tensors(p, settings, "train", store, with_unlabeled=True, statistics=(train.mean, train.std))
    found = pool_training(pool, len(p.classes()), seed=p.spec.split_seed, kind=p.spec.pool_embedding)
    context.log.info(f"{p.name}: {found.why}")
    return found.train, {"pseudo_labeled": found.pseudo_labeled, "pool_labels": found.why}


def training_metadata(result, config: "TrainConfig", path, train_samples: int, parameters: int | None = None) -> dict:
    from mnist_assets.ml.figures import plots

    best = result.best_metrics
    return {
        "arch": config.arch,
        **({"parameters": parameters} if parameters is not None else {}),
        "recipe": config.recipe,
        "train_samples": train_samples,  # labeled and not excluded
        "epochs": len(result.history),
        "kept": config.keep,  # best_* describe the kept state: lowest validation loss, highest accuracy, or the last epoch
        "best_epoch": result.best_epoch,
        "best_val_loss": best["val_loss"],
        "best_val_accuracy": best["val_accuracy"],
        "training_seconds": round(result.seconds, 1),
        "precision": result.precision,
        "history": markdown_table(result.history),
        "curves": png(plots.training_curves(result.history)),
        "checkpoint": dg.MetadataValue.path(str(path)),
    }


def fit_payload(result, train_cfg: "TrainConfig", train, **settings) -> dict:
    """The kept state of a fit as a checkpoint, with everything needed to use it again."""
    from mnist_assets.ml.models.checkpoints import checkpoint_payload
    from mnist_assets.ml.models.training import config_dict

    return checkpoint_payload(
        arch=train_cfg.arch,
        model=result.best_state,
        optimizer=result.best_optimizer_state,
        epoch=result.best_epoch,
        metrics=result.best_metrics,
        settings={**config_dict(train_cfg), "mean": train.mean, "std": train.std, "training_seconds": round(result.seconds, 1), **settings},
    )


def save_fit(path, result, train_cfg: "TrainConfig", train, **settings) -> None:
    """The kept state of a fit as an atomic checkpoint."""
    from mnist_assets.ml.models.checkpoints import save_payload

    save_payload(path, fit_payload(result, train_cfg, train, **settings))


def training_results(
    context, p: Pipeline, settings: Settings, name: str, result, train_cfg: "TrainConfig", config, train, retrain=None, **extra
):
    """What a training asset yields: the kept state saved as `<name>.pt`, its metadata, and the
    blocking accuracy gate (the dataset's, unless the config sets one; skipped on limited runs).
    `retrain`: (why it trained, what it trained on), recorded for the next retrain decision."""
    path = checkpoint_path(p.store(settings), name)
    save_fit(path, result, train_cfg, train, **p.spec.model_shape(), **extra)
    metadata = training_metadata(result, train_cfg, path, extra.get("train_count", len(train)), extra.get("parameters"))
    metadata.update({key: extra[key] for key in ("pseudo_labeled", "pool_labels") if key in extra})
    if retrain is not None:
        record_training_set(p, settings, name, retrain[1])
        metadata.update(retrained=True, retrain=retrain[0])
    yield dg.MaterializeResult(metadata=metadata)
    yield accuracy_gate(context, p, settings, name, config, result.best_metrics["val_accuracy"])


def accuracy_gate(context, p: Pipeline, settings: Settings, name: str, config, val_accuracy: float) -> dg.AssetCheckResult:
    threshold = p.spec.gate if config.accuracy_threshold is None else config.accuracy_threshold
    return checks.check_accuracy_gate(p.key(name), val_accuracy, threshold, limited_run(context, p, settings))


def kept_accuracy_gate(context, p: Pipeline, settings: Settings, name: str, config) -> dg.AssetCheckResult:
    """The gate on a kept model: its recorded validation accuracy."""
    from mnist_assets.ml.models.checkpoints import load_models

    (_, payload), *_ = load_models(checkpoint_path(p.store(settings), name))
    return accuracy_gate(context, p, settings, name, config, payload["metrics"]["val_accuracy"])
