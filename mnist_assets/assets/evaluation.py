"""Predictions of a model on a split, written to FiftyOne and evaluated: lenet_predictions,
fold_ensemble_predictions and finetuned_predictions are made the same way."""

from __future__ import annotations

import time

import dagster as dg
import numpy as np

# Training, embedding and UMAP run in this concurrency pool so that concurrent
# partitions don't oversubscribe the machine (set its limit in the UI or dagster.yaml).
from mnist_assets.assets.common import Pipeline
from mnist_assets.assets.data import load_models_for, split_tensors
from mnist_assets.metadata import png
from mnist_assets.ml.core.field_names import GROUND_TRUTH, GROUND_TRUTH_ORIGINAL, eval_key
from mnist_assets.resources import Settings


def prediction_metadata(truth: list[str], predicted: list[str], classes: list[str], split: str, name: str) -> dict:
    """Accuracy, per-class recall and a confusion-matrix plot."""
    from sklearn.metrics import confusion_matrix

    from mnist_assets.ml.figures import plots
    from mnist_assets.ml.release.comparison import per_class_recall

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
    from mnist_assets.ml.store.fiftyone_store import evaluate, split_view, usable_view

    usable = usable_view(dataset, split)
    evaluate(dataset, usable, field, eval_key(eval_prefix, split), classes)
    truth, predicted = usable.values([f"{GROUND_TRUTH}.label", f"{field}.label"])
    source, every, in_use = split_view(dataset, split).values([f"{GROUND_TRUTH_ORIGINAL}.label", f"{field}.label", f"{GROUND_TRUTH}.label"])
    with_source = [(label, guess) for label, guess in zip(source, every) if label is not None]  # not those the source left unlabeled
    unlabeled = sum(label is None for label in in_use)
    return {
        **prediction_metadata(truth, predicted, classes, split, field),
        "accuracy_source_labels": float(np.mean([label == guess for label, guess in with_source])) if with_source else 0.0,
        "evaluated": len(truth),
        "excluded": len(every) - len(truth) - unlabeled,
        "unlabeled": unlabeled,
    }


def predict_split(context, p: Pipeline, settings: Settings, checkpoint: str, field: str, eval_prefix: str) -> dict:
    """Write `field` predictions of a checkpoint on the context's split (only samples whose pixels or
    whose model changed since: ml/store/sample_cache.py) and evaluate them all; returns metadata,
    and the new logits under "logits" for the caller's check."""
    from mnist_assets.ml.models.checkpoints import weights_fingerprint
    from mnist_assets.ml.models.cross_validation import subset
    from mnist_assets.ml.models.training import ensemble_logits
    from mnist_assets.ml.store.fiftyone_store import write_classifications
    from mnist_assets.ml.store.sample_cache import plan_reuse

    settings.configure_torch()
    split = context.partition_key
    store = p.store(settings)
    classes = p.classes()
    dataset, view, tensors = split_tensors(p, settings, split, store, with_excluded=True)
    models, payloads, tensors = load_models_for(p, store, checkpoint, tensors)
    reuse = plan_reuse(view, field, weights_fingerprint(models, payloads))
    started = time.perf_counter()
    logits = np.zeros((0, len(classes)), np.float32)
    if reuse.computed:
        stale = subset(tensors, reuse.stale_positions(tensors.sample_ids))
        logits = ensemble_logits(models, stale, settings.torch_device())  # one model: its own logits
        write_classifications(view, field, logits, stale.sample_ids, classes, keys=reuse.stale_keys())
    metadata = evaluation_metadata(dataset, split, field, eval_prefix, classes)
    context.log.info(
        f"{p.name}/{field}[{split}]: accuracy {metadata['accuracy']:.4f} (labels in use), "
        f"{metadata['accuracy_source_labels']:.4f} (source labels); {reuse.computed} predicted, {reuse.reused} kept"
    )
    return {
        "count": len(tensors),
        "computed": reuse.computed,
        "reused": reuse.reused,
        # the kept epoch (of each member, for a set)
        "checkpoint_epoch": payloads[0]["epoch"] if len(payloads) == 1 else ", ".join(str(payload["epoch"]) for payload in payloads),
        "seconds": round(time.perf_counter() - started, 2),
        "logits": logits,
        **metadata,
    }


def prediction_asset(p: Pipeline, name: str, stage: str, checkpoint: str, eval_prefix: str, description: str) -> dg.AssetsDefinition:
    """A per-split asset writing the `checkpoint` model's predictions into the field `name`, evaluated
    under `<eval_prefix>_<split>` (lenet_predictions and finetuned_predictions are two of these)."""
    from mnist_assets import checks

    @p.asset(
        name,
        stage=stage,
        per_split=True,
        parents=[checkpoint, "label_review"],
        checks=[p.check("logits_finite", name)],
        kinds={"pytorch", "fiftyone"},
        code_version="3",
        description=description,
    )
    def predictions(context, settings: Settings):  # (no context annotation: this module has postponed annotations)
        metadata = predict_split(context, p, settings, checkpoint, name, eval_prefix)
        logits = metadata.pop("logits")
        yield dg.MaterializeResult(metadata=metadata)
        yield checks.check_finite(p.key(name), "logits", logits, (metadata["computed"], len(p.classes())))

    return predictions
