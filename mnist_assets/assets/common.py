"""What every asset module of a dataset's graph shares: its keys, groups, store and small helpers."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import dagster as dg
import numpy as np
from sklearn.metrics import confusion_matrix

from mnist_assets.metadata import png
from mnist_assets.ml import plots
from mnist_assets.ml.checkpoints import load_models
from mnist_assets.ml.comparison import per_class_recall
from mnist_assets.ml.dataset_spec import DatasetSpec
from mnist_assets.ml.errors import MissingInputError
from mnist_assets.ml.field_names import GROUND_TRUTH, GROUND_TRUTH_ORIGINAL, eval_key
from mnist_assets.ml.fiftyone_store import evaluate, split_view, usable_view, write_classifications
from mnist_assets.ml.tensors import SplitTensors, load_view_tensors
from mnist_assets.ml.training import ensemble_logits
from mnist_assets.resources import DatasetStore, Settings

# Training, embedding and UMAP run in this concurrency pool so that concurrent
# partitions don't oversubscribe the machine (set its limit in the UI or dagster.yaml).
HEAVY_POOL = "heavy"


@dataclass(frozen=True)
class Pipeline:
    """One declared dataset's graph: asset keys under `<name>/`, groups `<name>_<stage>`."""

    spec: DatasetSpec

    @property
    def name(self) -> str:
        return self.spec.name

    def key(self, asset: str) -> dg.AssetKey:
        return dg.AssetKey([self.spec.name, asset])

    def group(self, stage: str) -> str:
        return f"{self.spec.name}_{stage}"

    def store(self, settings: Settings) -> DatasetStore:
        return settings.store(self.spec.name)

    def classes(self) -> list[str]:
        return self.spec.classes()

    def check(self, name: str, asset: str, **kwargs) -> dg.AssetCheckSpec:
        return dg.AssetCheckSpec(name, asset=self.key(asset), **kwargs)


@contextlib.contextmanager
def materialize_first(p: Pipeline, asset: str, split: str | None = None):
    """Plain-ML errors about a missing or unusable input, re-raised naming the asset that makes it."""
    try:
        yield
    except (MissingInputError, FileNotFoundError) as error:
        target = f"{p.name}/{asset}" + (f"[{split}]" if split else "")
        raise type(error)(f"{error}; materialize {target} (again) first.") from error


def parent_metadata(context, key: dg.AssetKey, partition: str | None = None, missing: dict | None = None) -> dict:
    """What a parent recorded at its latest materialization (of `partition`), as plain values: the
    way an asset reads what its parents said, along the lineage the UI shows. Without one, `missing`
    if given, else an error naming what to materialize."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None), limit=1
    ).records
    if not records and missing is not None:
        return missing
    if not records:
        target = key.to_user_string() + (f"[{partition}]" if partition else "")
        raise MissingInputError(f"{target} has no materialization; materialize it first.")
    return {name: value.value for name, value in records[0].asset_materialization.metadata.items()}


def pixel_statistics(images) -> tuple[float, float]:
    """The mean and std (0-1 scale) of a split's uint8 pixels: training standardizes by the train split's."""
    pixels = np.asarray(images, dtype=np.float64) / 255.0
    return round(float(pixels.mean()), 6), round(float(pixels.std()), 6)


def split_tensors(
    p: Pipeline,
    settings: Settings,
    split: str,
    store: DatasetStore | None = None,
    standardize: bool = True,
    with_excluded: bool = False,
    statistics: tuple[float, float] | None = None,
):
    """The dataset, the split's view and its tensors (through the cached bridge), standardized with
    `statistics`, by default the train split's pixel mean and std (unless `standardize` is off: pixels
    only). The samples a person excluded are left out unless `with_excluded` (pixels every sample
    needs: embeddings, predictions)."""
    store = store or p.store(settings)
    dataset = store.dataset()
    view = split_view(dataset, split) if with_excluded else usable_view(dataset, split)
    if len(view) == 0:
        raise ValueError(f"split {split!r} has no samples; materialize {p.name}/raw_dataset[{split}] first.")
    with materialize_first(p, "raw_dataset", split):
        tensors = load_view_tensors(view, store.tensor_cache_dir, classes=p.classes(), channels=p.spec.channels, size=p.spec.image_size)
    if not standardize:
        return dataset, view, tensors
    if statistics is None:
        train = tensors if split == "train" and not with_excluded else split_tensors(p, settings, "train", store, standardize=False)[2]
        statistics = pixel_statistics(train.images.numpy())
    return dataset, view, SplitTensors(tensors.images, tensors.labels, tensors.sample_ids, *statistics)


def checkpoint_path(store: DatasetStore, name: str):
    return store.artifact_path("checkpoints", f"{name}.pt")


def load_model_for(p: Pipeline, store: DatasetStore, name: str, tensors: SplitTensors):
    """A checkpoint's model and payload, and the tensors standardized as that model was trained."""
    models, payloads, tensors = load_models_for(p, store, name, tensors)
    return models[0], payloads[0], tensors


def load_models_for(p: Pipeline, store: DatasetStore, name: str, tensors: SplitTensors):
    """The models and payloads of a checkpoint or checkpoint set (ml/checkpoints.py), and the tensors
    standardized as they were trained (the members of a set share the train split's statistics)."""
    with materialize_first(p, name):
        models, payloads = zip(*load_models(checkpoint_path(store, name)))
    settings = payloads[0]["settings"]
    mean, std = settings.get("mean", tensors.mean), settings.get("std", tensors.std)
    return list(models), list(payloads), SplitTensors(tensors.images, tensors.labels, tensors.sample_ids, mean, std)


def prediction_metadata(truth: list[str], predicted: list[str], classes: list[str], split: str, name: str) -> dict:
    """Accuracy, per-class recall and a confusion-matrix plot."""
    matrix = confusion_matrix(truth, predicted, labels=classes)
    recall = per_class_recall(truth, predicted, classes)
    return {
        "accuracy": float(np.mean(np.asarray(truth) == np.asarray(predicted))) if truth else 0.0,
        "per_class_recall": dg.MetadataValue.table(
            [dg.TableRecord({"class": c, "recall": round(r, 4)}) for c, r in zip(classes, recall)],
            schema=dg.TableSchema(columns=[dg.TableColumn("class", "string"), dg.TableColumn("recall", "float")]),
        ),
        "confusion_matrix": png(plots.confusion_matrix_plot(matrix, f"{name} on {split}", classes)),
    }


def evaluation_metadata(dataset, split: str, field: str, eval_prefix: str, classes: list[str]) -> dict:
    """Evaluate a split's `field` predictions (the App's `<eval_prefix>_<split>`) against the labels
    in use, leaving out the samples a person excluded; and, beside it, the accuracy on every sample
    against the source's labels (what published numbers compare with)."""
    usable = usable_view(dataset, split)
    evaluate(dataset, usable, field, eval_key(eval_prefix, split), classes)
    truth, predicted = usable.values([f"{GROUND_TRUTH}.label", f"{field}.label"])
    source, every = split_view(dataset, split).values([f"{GROUND_TRUTH_ORIGINAL}.label", f"{field}.label"])
    return {
        **prediction_metadata(truth, predicted, classes, split, field),
        "accuracy_source_labels": float(np.mean(np.asarray(source) == np.asarray(every))) if every else 0.0,
        "evaluated": len(truth),
        "excluded": len(every) - len(truth),
    }


def predict_split(context, p: Pipeline, settings: Settings, checkpoint: str, field: str, eval_prefix: str) -> dict:
    """Write `field` predictions of a checkpoint on every sample of the context's split and evaluate
    them; returns metadata, and the logits under "logits" for the caller's check."""
    settings.configure_torch()
    split = context.partition_key
    store = p.store(settings)
    dataset, view, tensors = split_tensors(p, settings, split, store, with_excluded=True)
    models, payloads, tensors = load_models_for(p, store, checkpoint, tensors)
    started = time.perf_counter()
    logits = ensemble_logits(models, tensors, settings.torch_device())  # one model: its own logits
    classes = p.classes()
    write_classifications(view, field, logits, tensors.sample_ids, classes)
    metadata = evaluation_metadata(dataset, split, field, eval_prefix, classes)
    context.log.info(
        f"{p.name}/{field}[{split}]: accuracy {metadata['accuracy']:.4f} (labels in use), "
        f"{metadata['accuracy_source_labels']:.4f} (source labels)"
    )
    return {
        "count": len(tensors),
        # the kept epoch (of each member, for a set)
        "checkpoint_epoch": payloads[0]["epoch"] if len(payloads) == 1 else ", ".join(str(payload["epoch"]) for payload in payloads),
        "seconds": round(time.perf_counter() - started, 2),
        "logits": logits,
        **metadata,
    }


def limited_run(context, p: Pipeline, settings: Settings) -> bool:
    """A quick run: epochs cut by MNIST_ASSETS_EPOCHS, or training data that was ingested with a
    sample limit (as label_review recorded it, whatever the environment says now)."""
    if settings.epochs is not None:
        return True
    recorded = [parent_metadata(context, p.key("label_review"), split, missing={}).get("limited") for split in ("train", "validation")]
    # In an instance that did not record the review (data materialized elsewhere), the setting says.
    return any(recorded) if None not in recorded else settings.limit is not None


def prediction_asset(p: Pipeline, name: str, stage: str, checkpoint: str, eval_prefix: str, description: str) -> dg.AssetsDefinition:
    """A per-split asset writing the `checkpoint` model's predictions into the field `name`, evaluated
    under `<eval_prefix>_<split>` (lenet_predictions and finetuned_predictions are two of these)."""
    from mnist_assets import checks
    from mnist_assets.automation import follows_lineage
    from mnist_assets.partitions import split_partitions

    @dg.asset(
        key=p.key(name),
        partitions_def=split_partitions,
        deps=[p.key(checkpoint), p.key("label_review")],
        group_name=p.group(stage),
        kinds={"pytorch", "fiftyone"},
        code_version="3",
        automation_condition=follows_lineage(),
        check_specs=[p.check("logits_finite", name)],
        description=description,
    )
    def predictions(context, settings: Settings):  # (no context annotation: this module has postponed annotations)
        metadata = predict_split(context, p, settings, checkpoint, name, eval_prefix)
        logits = metadata.pop("logits")
        yield dg.MaterializeResult(metadata=metadata)
        yield checks.check_finite(p.key(name), "logits", logits, (metadata["count"], len(p.classes())))

    return predictions
