"""Small pieces several asset modules share."""

import numpy as np

from mnist_assets.metadata import markdown_table, png
from mnist_assets.ml import plots
from mnist_assets.ml.fiftyone_store import split_view
from mnist_assets.ml.tensors import load_view_tensors
from mnist_assets.resources import MnistSettings

# Training, embedding and UMAP run in this concurrency pool so that concurrent
# partitions don't oversubscribe the machine (set its limit in the UI or dagster.yaml).
HEAVY_POOL = "heavy"


def split_tensors(settings: MnistSettings, split: str):
    """The dataset, the split's view and its tensors (through the cached bridge)."""
    dataset = settings.dataset()
    view = split_view(dataset, split)
    if len(view) == 0:
        raise ValueError(f"split {split!r} has no samples; materialize raw_mnist[{split}] first.")
    return dataset, view, load_view_tensors(view, settings.tensor_cache_dir)


def checkpoint_path(settings: MnistSettings, name: str):
    return settings.artifact_path("checkpoints", f"{name}.pt")


def per_class_recall(matrix: np.ndarray) -> list[float]:
    matrix = matrix[:10, :10]
    return (np.diag(matrix) / np.maximum(matrix.sum(axis=1), 1)).tolist()


def prediction_metadata(report, split: str, name: str) -> dict:
    """Accuracy, per-class recall and a confusion-matrix plot of a FiftyOne classification report."""
    matrix = report.confusion_matrix()
    return {
        "accuracy": float(report.metrics()["accuracy"]),
        "per_class_recall": markdown_table([{str(d): r for d, r in enumerate(per_class_recall(matrix))}]),
        "confusion_matrix": png(plots.confusion_matrix_plot(matrix[:10, :10], f"{name} on {split}")),
    }
