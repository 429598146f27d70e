"""The series' steps 4-5: train LeNet-5 on train (model selection on validation), predict every split."""

import time

import dagster as dg
from mnist_assets import checks
from mnist_assets.assets.common import HEAVY_POOL, checkpoint_path, prediction_metadata, split_tensors
from mnist_assets.assets.dataset import raw_mnist
from mnist_assets.automation import follows_lineage
from mnist_assets.metadata import markdown_table, png
from mnist_assets.ml import plots
from mnist_assets.ml.checkpoints import load_model, save_checkpoint
from mnist_assets.ml.models import build_model
from mnist_assets.ml.fiftyone_store import evaluate, write_classifications, write_vectors
from mnist_assets.ml.training import TrainConfig, config_dict, fit, predict
from mnist_assets.ml.visualization import compute_umap
from mnist_assets.partitions import TRAINING_SPLITS, split_partitions
from mnist_assets.resources import MnistSettings

class TrainingConfig(dg.Config):
    """LeNet hyperparameters; MNIST_ASSETS_EPOCHS overrides `epochs` for quick runs."""

    arch: str = "lenet5"  # or "resnet_small"
    recipe: str = "onecycle"  # or "series": Adam at a constant lr, the series' recipe
    epochs: int = 10
    batch_size: int = 64
    lr: float = 3e-3
    batch_augmentation: str = "none"  # or "affine": a random affine on every training batch
    seed: int = 51
    accuracy_threshold: float = 0.98


def train_config(config: dg.Config, settings: MnistSettings, **overrides) -> TrainConfig:
    """The TrainConfig named by an asset's config: every TrainConfig field the config has, epochs
    overridden by MNIST_ASSETS_EPOCHS, then `overrides`."""
    values = {name: getattr(config, name) for name in TrainConfig.__dataclass_fields__ if hasattr(config, name)}
    values["epochs"] = settings.epochs or config.epochs
    values.update(overrides)
    return TrainConfig(**values).validate()


def training_metadata(result, config: TrainConfig, path) -> dict:
    best = result.best_metrics
    return {
        "arch": config.arch,
        "recipe": config.recipe,
        "epochs": config.epochs,
        "kept": config.keep,  # best_* describe the kept state: lowest validation loss, or the last epoch
        "best_epoch": result.best_epoch,
        "best_val_loss": best["val_loss"],
        "best_val_accuracy": best["val_accuracy"],
        "training_seconds": round(result.seconds, 1),
        "history": markdown_table(result.history),
        "curves": png(plots.training_curves(result.history)),
        "checkpoint": dg.MetadataValue.path(str(path)),
    }


@dg.asset(
    deps=[dg.AssetDep(raw_mnist, partition_mapping=dg.SpecificPartitionsPartitionMapping(TRAINING_SPLITS))],
    group_name="lenet",
    kinds={"pytorch"},
    pool=HEAVY_POOL,
    code_version="1",
    automation_condition=follows_lineage(),
    check_specs=[dg.AssetCheckSpec("accuracy_gate", asset="lenet_checkpoint", blocking=True)],
)
def lenet_checkpoint(context: dg.AssetExecutionContext, config: TrainingConfig, settings: MnistSettings):
    """LeNet-5 trained on train, keeping the state with the best validation loss (atomic checkpoint)."""
    settings.configure_torch()
    train_cfg = train_config(config, settings)
    _, _, train = split_tensors(settings, "train")
    _, _, validation = split_tensors(settings, "validation")
    device = settings.torch_device()
    context.log.info(f"training {train_cfg.arch} ({train_cfg.recipe}) on {len(train)} samples, {train_cfg.epochs} epochs, {device}")

    def log_epoch(row):
        context.log.info(
            f"epoch {row['epoch']}/{train_cfg.epochs}: train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.4f}, "
            f"val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.4f} ({row['seconds']} s)"
        )

    result = fit(build_model(train_cfg.arch, train_cfg.seed), train, validation, train_cfg, device, on_epoch=log_epoch)
    path = checkpoint_path(settings, "lenet_checkpoint")
    save_checkpoint(
        path,
        arch=train_cfg.arch,
        model=result.best_state,
        optimizer=result.best_optimizer_state,
        epoch=result.best_epoch,
        metrics=result.best_metrics,
        settings={**config_dict(train_cfg), "train_count": len(train), "validation_count": len(validation)},
    )
    yield dg.MaterializeResult(metadata=training_metadata(result, train_cfg, path))
    limited = settings.limit is not None or settings.epochs is not None
    yield checks.check_accuracy_gate(
        "lenet_checkpoint", result.best_metrics["val_accuracy"], config.accuracy_threshold, limited
    )


def predict_split(context, settings: MnistSettings, checkpoint_name: str, field: str, eval_prefix: str) -> dict:
    """Write `field` predictions of a checkpoint on the context's split; returns metadata."""
    settings.configure_torch()
    split = context.partition_key
    dataset, view, tensors = split_tensors(settings, split)
    model, payload = load_model(checkpoint_path(settings, checkpoint_name))
    started = time.perf_counter()
    logits, _ = predict(model, tensors.images, settings.torch_device())
    write_classifications(view, field, logits, tensors.sample_ids)
    report = evaluate(dataset, view, field, f"{eval_prefix}_{split}")
    context.log.info(f"{field}[{split}]: accuracy {report.metrics()['accuracy']:.4f}")
    return {
        "count": len(tensors),
        "checkpoint_epoch": payload["epoch"],
        "seconds": round(time.perf_counter() - started, 2),
        "logits": logits,
        **prediction_metadata(report, split, field),
    }


@dg.asset(
    partitions_def=split_partitions,
    deps=[lenet_checkpoint, raw_mnist],
    group_name="lenet",
    kinds={"pytorch", "fiftyone"},
    code_version="1",
    automation_condition=follows_lineage(),
    check_specs=[dg.AssetCheckSpec("logits_finite", asset="lenet_predictions")],
)
def lenet_predictions(context: dg.AssetExecutionContext, settings: MnistSettings):
    """LeNet label, confidence and 10 logits per sample, evaluated against ground truth."""
    metadata = predict_split(context, settings, "lenet_checkpoint", "lenet_predictions", "eval_lenet")
    logits = metadata.pop("logits")
    yield dg.MaterializeResult(metadata=metadata)
    yield checks.check_finite("lenet_predictions", "logits", logits, (metadata["count"], 10))


@dg.asset(
    partitions_def=split_partitions,
    deps=[lenet_checkpoint, raw_mnist],
    group_name="lenet",
    kinds={"pytorch", "fiftyone"},
    pool=HEAVY_POOL,
    code_version="1",
    automation_condition=follows_lineage(),
    check_specs=[dg.AssetCheckSpec("embeddings_finite", asset="lenet_embeddings")],
)
def lenet_embeddings(context: dg.AssetExecutionContext, settings: MnistSettings):
    """LeNet's 84-d fc1 activations per sample, with a UMAP of them as a FiftyOne brain run."""
    settings.configure_torch()
    split = context.partition_key
    dataset, view, tensors = split_tensors(settings, split)
    model, _ = load_model(checkpoint_path(settings, "lenet_checkpoint"))
    _, embeddings = predict(model, tensors.images, settings.torch_device())
    write_vectors(view, "lenet_embeddings", embeddings, tensors.sample_ids)
    points = compute_umap(dataset, view, "lenet_embeddings", f"lenet_umap_{split}")
    yield dg.MaterializeResult(
        metadata={
            "count": len(tensors),
            "dimensions": int(embeddings.shape[1]),
            "brain_key": f"lenet_umap_{split}",
            "umap": png(plots.scatter_by_label(points, tensors.labels.numpy(), f"LeNet fc1 UMAP, {split}")),
        }
    )
    yield checks.check_finite("lenet_embeddings", "embeddings", embeddings, (len(tensors), 84))
