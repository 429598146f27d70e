"""Classify image files with a dataset's released model, with nothing but onnxruntime, NumPy and Pillow.

    python -m mnist_assets.predict --dataset mnist img1.png img2.jpg
    python -m mnist_assets.predict --dataset mnist --json img1.png      # a list: file, label, probability, top, or error
    python -m mnist_assets.predict --model path/to/model.onnx img1.png  # a release copied elsewhere
    make predict DATASET=mnist IMAGES="img1.png img2.jpg"

The release is `<MNIST_ASSETS_HOME>/datasets/<dataset>/release/model.onnx` (materialize
`<dataset>/model_release` to make it); its metadata says the classes, size and channels, and every
image, of any size and mode, is converted as ingest converts a folder's images. A file that cannot
be read is reported and the others still predicted; the exit code is then 1. This module imports
neither Dagster nor FiftyOne nor torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from mnist_assets.environment import REPO_ROOT, dataset_dir
from mnist_assets.ml.image_conversion import ImageConversionError, convert_image

TOP = 3


class ReleaseError(ValueError):
    """No usable release for the dataset asked for."""


def release_path(dataset: str) -> Path:
    if not (REPO_ROOT / "mnist_assets" / "defs" / dataset / "defs.yaml").is_file():
        declared = sorted(p.parent.name for p in (REPO_ROOT / "mnist_assets" / "defs").glob("*/defs.yaml"))
        raise ReleaseError(f"no dataset {dataset!r} is declared; declared: {', '.join(declared)}")
    path = dataset_dir(dataset) / "release" / "model.onnx"
    if not path.is_file():
        raise ReleaseError(f"{dataset} has no released model at {path}; materialize {dataset}/model_release first (`make run`).")
    return path


class Release:
    """A released ONNX model and what its metadata says about its input."""

    def __init__(self, path: Path):
        import onnxruntime

        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        self.classes = json.loads(meta["classes"])
        self.size, self.channels = int(meta["image_size"]), int(meta["channels"])

    def predict(self, images: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W] or [N, H, W, 3] (as convert_image gives them) -> probabilities [N, classes]."""
        batch = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
        return self.session.run(None, {self.session.get_inputs()[0].name: np.ascontiguousarray(batch, dtype=np.uint8)})[0]


def predict_files(release: Release, files: list[str], top: int = TOP) -> list[dict]:
    """One result per file, in order: label, probability and the `top` classes, or the error."""
    results, images, readable = [], [], []
    for position, name in enumerate(files):
        try:
            images.append(convert_image(name, release.size, release.channels))
            readable.append(position)
            results.append({"file": name})
        except ImageConversionError as error:
            results.append({"file": name, "error": str(error)})
    if images:
        for position, row in zip(readable, release.predict(np.stack(images))):
            order = np.argsort(-row)[:top]
            results[position].update(
                label=release.classes[order[0]],
                probability=float(row[order[0]]),
                top=[{"label": release.classes[i], "probability": float(row[i])} for i in order],
            )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--model", type=Path, help="a model.onnx released by model_release (instead of --dataset's)")
    parser.add_argument("--json", action="store_true", help="print a JSON list, one object per file")
    parser.add_argument("--top", type=int, default=TOP)
    args = parser.parse_args(argv)
    try:
        if args.model and not args.model.is_file():
            raise ReleaseError(f"{args.model} does not exist; pass the model.onnx of a release (datasets/<name>/release/).")
        release = Release(args.model or release_path(args.dataset))
    except ReleaseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    results = predict_files(release, args.files, args.top)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            if "error" in result:
                print(f"{result['file']}: error: {result['error']}")
            else:
                tops = ", ".join(f"{t['label']} {t['probability']:.3f}" for t in result["top"])
                print(f"{result['file']}: {result['label']} ({tops})")
    return 1 if any("error" in result for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
