"""Where to draw the outlier's fence: one for all classes (the shipped rule), one per class, or on
the log of the distance; the share of full MNIST's and Fashion-MNIST's train files flagged (28x28, in
the pixel space data_issues uses) and the planted set's outliers found (tests/planted_issues.py).

    .venv/bin/python scripts/outlier_fence_study.py
"""

import sys
import tempfile
from pathlib import Path

import numpy as np

from mnist_assets.ml.data.idx_source import load_fashion_mnist, load_mnist
from mnist_assets.ml.quality import data_issues

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from planted_issues import plant_issues, recall_and_precision  # noqa: E402

IQR_FACTOR = 1 / data_issues.OUTLIER_THRESHOLD - 1  # the shipped 2


def flags(distances: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    per_class = np.zeros(len(distances), dtype=bool)
    for label in np.unique(labels):
        members = labels == label
        per_class[members] = distances[members] > data_issues.fence(distances[members], IQR_FACTOR)
    logs = np.log(np.maximum(distances, 1e-6))
    return {
        "one fence (shipped)": distances > data_issues.fence(distances, IQR_FACTOR),
        "a fence per class": per_class,
        "one fence on log distance": logs > data_issues.fence(logs, IQR_FACTOR),
    }


def train_distances(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    pixels = data_issues.centred_pixels(images)
    return data_issues.distance_within_class(pixels, labels, pixels, labels, same=True)


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    mnist, fashion = load_mnist(None, folder / "mnist"), load_fashion_mnist(None, folder / "fashion")
    planted = plant_issues(mnist, fashion)
    found = flags(train_distances(planted.images, planted.labels), planted.labels)
    shares = {}
    for name, data in (("MNIST", mnist), ("Fashion-MNIST", fashion)):
        labels = data.train_labels.astype(np.int64)
        shares[name] = flags(train_distances(data.train_images, labels), labels)
    print("| rule | planted outliers found (recall) | precision | MNIST train flagged | Fashion-MNIST train flagged |")
    print("|---|---|---|---|---|")
    for rule, flagged in found.items():
        recall, precision = recall_and_precision(flagged, planted.truth["outlier"], planted.clean)
        digits, clothes = shares["MNIST"][rule].mean(), shares["Fashion-MNIST"][rule].mean()
        print(f"| {rule} | {recall:.2f} | {precision:.2f} | {digits:.1%} | {clothes:.1%} |")


if __name__ == "__main__":
    main()
