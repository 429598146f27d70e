"""Small matplotlib figures rendered to PNG bytes, for asset metadata and reports."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mnist_assets.ml.data.tensors import channels_first, channels_last  # noqa: E402


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def image_grid(images: np.ndarray, titles: list[str], columns: int = 10) -> bytes:
    """A grid of images (gray or RGB, channels first or last) with a title under each."""
    images = channels_last(channels_first(np.asarray(images)))
    rows = max(1, int(np.ceil(len(images) / columns)))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 0.9, rows * 1.05))
    for axis in np.atleast_1d(axes).ravel():
        axis.axis("off")
    for axis, image, title in zip(np.atleast_1d(axes).ravel(), images, titles):
        axis.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
        axis.set_title(title, fontsize=7)
    return _png(figure)


def bar_chart(names: list[str], values: list[float], title: str, ylabel: str = "count") -> bytes:
    figure, axis = plt.subplots(figsize=(5, 2.8))
    axis.bar(names, values, color="#4c72b0")
    axis.set_title(title)
    axis.set_ylabel(ylabel)
    return _png(figure)


def confusion_matrix_plot(matrix: np.ndarray, title: str, classes: list[str] | None = None) -> bytes:
    figure, axis = plt.subplots(figsize=(4.5, 4))
    axis.imshow(np.log1p(matrix), cmap="Blues")
    for (row, column), value in np.ndenumerate(matrix):
        if value:
            axis.text(column, row, str(int(value)), ha="center", va="center", fontsize=6)
    axis.set_xticks(range(matrix.shape[1]), labels=classes or None, rotation=90 if classes else 0, fontsize=6)
    axis.set_yticks(range(matrix.shape[0]), labels=classes or None, fontsize=6)
    axis.set_xlabel("predicted")
    axis.set_ylabel("ground truth")
    axis.set_title(title)
    return _png(figure)


def training_curves(history: list[dict]) -> bytes:
    """Loss and accuracy per epoch, train vs validation."""
    epochs = [row["epoch"] for row in history]
    validated = [row for row in history if row["val_loss"] == row["val_loss"]]  # not NaN: keeping the last state validates some epochs
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(8, 3))
    loss_axis.plot(epochs, [row["train_loss"] for row in history], label="train")
    loss_axis.plot([row["epoch"] for row in validated], [row["val_loss"] for row in validated], label="validation")
    loss_axis.set_title("loss")
    loss_axis.legend()
    accuracy_axis.plot(epochs, [row["train_accuracy"] for row in history], label="train")
    accuracy_axis.plot([row["epoch"] for row in validated], [row["val_accuracy"] for row in validated], label="validation")
    accuracy_axis.set_title("accuracy")
    for axis in (loss_axis, accuracy_axis):
        axis.set_xlabel("epoch")
    return _png(figure)


def scatter_by_label(
    points: np.ndarray, labels: np.ndarray, title: str, max_points: int = 10000, marked: np.ndarray | None = None
) -> bytes:
    """A 2-d scatter coloured by class position (subsampled, seeded, to keep the PNG small);
    `marked` points (placed into an earlier projection) drawn on top, ringed in black."""
    marked = np.zeros(len(points), bool) if marked is None else np.asarray(marked, bool)
    if len(points) > max_points:
        keep = np.random.default_rng(0).choice(len(points), max_points, replace=False)
        keep = np.union1d(keep, np.flatnonzero(marked))
        points, labels, marked = points[keep], labels[keep], marked[keep]
    figure, axis = plt.subplots(figsize=(5, 4.5))
    top = max(int(labels.max(initial=0)), 9)
    style = {"cmap": "tab10" if top < 10 else "tab20", "vmin": -0.5, "vmax": top + 0.5}
    scatter = axis.scatter(points[~marked, 0], points[~marked, 1], c=labels[~marked], s=2, **style)
    if marked.any():
        axis.scatter(
            points[marked, 0],
            points[marked, 1],
            c=labels[marked],
            s=18,
            edgecolors="black",
            linewidths=0.6,
            label="placed, not fitted",
            **style,
        )
        axis.legend(loc="best", fontsize=7)
    figure.colorbar(scatter, ax=axis, ticks=range(top + 1))
    axis.set_title(title)
    return _png(figure)


def histograms(series: dict[str, np.ndarray], title: str) -> bytes:
    figure, axes = plt.subplots(1, len(series), figsize=(3.2 * len(series), 2.6))
    for axis, (name, values) in zip(np.atleast_1d(axes), series.items()):
        axis.hist(values, bins=50, color="#4c72b0")
        axis.set_title(name)
        axis.set_yscale("log")
    figure.suptitle(title)
    return _png(figure)


def grouped_bars(groups: list[str], series: dict[str, list[float]], title: str, ylabel: str) -> bytes:
    figure, axis = plt.subplots(figsize=(6, 3))
    width = 0.8 / max(1, len(series))
    for offset, (name, values) in enumerate(series.items()):
        axis.bar(np.arange(len(groups)) + offset * width, values, width, label=name)
    axis.set_xticks(np.arange(len(groups)) + width * (len(series) - 1) / 2, groups)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.legend(fontsize=7)
    return _png(figure)


def review_curves(curves: dict[str, tuple[list[float], list[float]]], accuracy: dict[str, float], title: str) -> bytes:
    """Left: share of the wrong labels found against the share of the split reviewed, one line per
    order. Right: test accuracy (%) of each model, one bar each."""
    figure, (found, bars) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1, 1.2]})
    for name, (reviewed, share) in curves.items():
        found.plot(reviewed, share, marker=".", label=name)
    found.set_xlabel("share of the split reviewed")
    found.set_ylabel("share of the wrong labels found")
    found.set_ylim(0, 1.02)
    found.legend(fontsize=7)
    names, values = list(accuracy), [100 * value for value in accuracy.values()]
    bars.barh(np.arange(len(names)), values, color="tab:gray")
    bars.set_yticks(np.arange(len(names)), names, fontsize=8)
    bars.invert_yaxis()
    low, high = min(values), max(values)
    bars.set_xlim(low - max(0.5, (high - low) * 0.5), high + max(0.3, (high - low) * 0.2))
    for position, value in enumerate(values):
        bars.text(value, position, f" {value:.2f}", va="center", fontsize=7)
    bars.set_xlabel("accuracy on the clean test split, %")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return _png(figure)
