"""Classify image files with a dataset's released model, with nothing but onnxruntime, NumPy and Pillow.

    python -m mnist_assets.predict --dataset mnist img1.png img2.jpg
    python -m mnist_assets.predict --dataset mnist --json img1.png      # a list: file, label, probability, top, or error
    python -m mnist_assets.predict --model path/to/model.onnx img1.png  # a release copied elsewhere
    python -m mnist_assets.predict --dataset mnist --releases           # every release kept, the current one marked
    make predict DATASET=mnist IMAGES="img1.png img2.jpg"

The release is `<MNIST_ASSETS_HOME>/datasets/<dataset>/release/model.onnx` (materialize
`<dataset>/model_release` to make it); its metadata says the classes, the size, the channels and
the conversion ingest applied to the dataset's images (`ml/data/image_conversion.py`), and every image,
of any size and mode, is converted the same way. A file that cannot be read is reported and the
others still predicted; the exit code is then 1. A release that cannot be used is one line and exit
code 2 (a `current` link whose version is gone: which version to point it at). `--releases` lists
the versions kept; a damaged one (its card unreadable, its model missing) is one error line naming
the file, the others still listed, and the exit code 1; no release in use: 2, the versions listed.
This module imports neither Dagster nor FiftyOne nor torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from mnist_assets.declared import UnknownDataset, declaration_path
from mnist_assets.ml.core.environment import dataset_dir
from mnist_assets.ml.data.image_conversion import Conversion, ImageConversionError, convert_image

TOP = 3
BATCH = 256  # files converted and classified at a time: memory stays flat for any number of files
SIZES = (16, 256)  # what a dataset may declare (ml/data/dataset_spec.py)
METADATA = ("classes", "image_size", "channels")


class ReleaseError(ValueError):
    """No usable release for the dataset asked for."""


class MissingRelease(ReleaseError):
    """A declared dataset whose release folder has no model in use: never released, or `current` broken."""

    def __init__(self, message: str, folder: Path):
        super().__init__(message)
        self.folder = folder


def release_path(dataset: str) -> Path:
    from mnist_assets.ml.core.names import SAFE_NAME
    from mnist_assets.ml.release.folder import broken_current

    if not SAFE_NAME.match(dataset):
        raise ReleaseError(f"--dataset {dataset!r} is not a dataset name (letters, digits, '_'); give one of the declared datasets.")
    try:
        declaration_path(dataset)  # by the name it declares, whatever its folder is called
    except UnknownDataset as error:
        raise ReleaseError(str(error)) from None
    path = dataset_dir(dataset) / "release" / "model.onnx"
    if not path.is_file():
        broken = broken_current(path.parent)
        missing = f"has no released model at {path}; materialize {dataset}/model_release first (`make run`)."
        raise MissingRelease(f"{dataset}'s release is broken: {broken}" if broken else f"{dataset} {missing}", path.parent)
    return path


class Release:
    """A released ONNX model and what its metadata says about its input, checked before any image
    is read: a file that is not such a model is a ReleaseError naming it and the fix."""

    def __init__(self, path: Path, dataset: str | None = None):
        import onnxruntime

        fix = "materialize the dataset's model_release again (`make run`), or give the model.onnx of a release"
        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime's own error types: InvalidProtobuf, Fail, InvalidGraph, ...
            raise ReleaseError(f"{path} is not a readable ONNX model ({str(error).splitlines()[0][:200]}); {fix}.") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        missing = [key for key in METADATA if key not in meta]
        if missing:
            raise ReleaseError(f"{path} lacks the release metadata {missing}: not a model_release export; {fix}.")
        try:
            self.classes = json.loads(meta["classes"])
            self.conversion = Conversion.from_metadata(meta)
        except (ValueError, TypeError) as error:
            raise ReleaseError(f"{path} has malformed release metadata ({error}); {fix}.") from None
        if not (isinstance(self.classes, list) and len(self.classes) >= 2 and all(isinstance(c, str) for c in self.classes)):
            raise ReleaseError(f"{path}: its `classes` metadata is not a list of class names; {fix}.")
        if not SIZES[0] <= self.conversion.size <= SIZES[1] or self.conversion.channels not in (1, 3):
            raise ReleaseError(
                f"{path}: image_size {self.conversion.size} and channels {self.conversion.channels} are outside what a dataset "
                f"declares ({SIZES[0]}-{SIZES[1]} pixels, 1 or 3 channels); {fix}."
            )
        if dataset is not None and meta.get("dataset", dataset) != dataset:
            raise ReleaseError(f"{path} is the release of {meta['dataset']!r}, not of {dataset!r}; {fix}.")
        self._check_shapes(path, fix)
        self.size, self.channels = self.conversion.size, self.conversion.channels

    def _check_shapes(self, path: Path, fix: str) -> None:
        (given,), (answer,) = self.session.get_inputs(), self.session.get_outputs()
        expected = [self.conversion.channels, self.conversion.size, self.conversion.size]
        if given.type != "tensor(uint8)" or [d if isinstance(d, int) else None for d in given.shape[1:]] != expected:
            raise ReleaseError(
                f"{path} takes {given.type} {given.shape}, not the uint8 [batch, {', '.join(map(str, expected))}] its metadata says; {fix}."
            )
        if isinstance(answer.shape[-1], int) and answer.shape[-1] != len(self.classes):
            raise ReleaseError(f"{path} answers {answer.shape[-1]} classes, its metadata names {len(self.classes)}; {fix}.")

    def predict(self, images: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W] or [N, H, W, 3] (as convert_image gives them) -> probabilities [N, classes]."""
        batch = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
        return self.session.run(None, {self.session.get_inputs()[0].name: np.ascontiguousarray(batch, dtype=np.uint8)})[0]


def predict_files(release: Release, files: list[str], top: int = TOP) -> list[dict]:
    """One result per file, in order: label, probability and the `top` classes, or the error."""
    results = [{"file": name} for name in files]
    for start in range(0, len(files), BATCH):
        images, readable = [], []
        for position in range(start, min(start + BATCH, len(files))):
            try:
                images.append(convert_image(files[position], release.conversion))
                readable.append(position)
            except ImageConversionError as error:
                results[position]["error"] = str(error)
        if images:
            for position, row in zip(readable, release.predict(np.stack(images))):
                order = np.argsort(-row)[:top]
                results[position].update(
                    label=release.classes[order[0]],
                    probability=float(row[order[0]]),
                    top=[{"label": release.classes[i], "probability": float(row[i])} for i in order],
                )
    return results


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: give 1 or more classes to show")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--model", type=Path, help="a model.onnx released by model_release (instead of --dataset's)")
    parser.add_argument("--json", action="store_true", help="print a JSON list, one object per file")
    parser.add_argument("--top", type=_positive, default=TOP, help="how many classes to show per file (default 3)")
    parser.add_argument("--releases", action="store_true", help="list the dataset's releases, the current one marked")
    args = parser.parse_args(argv)
    if args.releases:
        return _list_releases(args.dataset)
    if not args.files:
        parser.error("give one or more image files")
    try:
        if args.model and not args.model.is_file():
            raise ReleaseError(f"{args.model} does not exist; pass the model.onnx of a release (datasets/<name>/release/).")
        release = Release(args.model, None) if args.model else Release(release_path(args.dataset), args.dataset)
    except ReleaseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    results = predict_files(release, args.files, min(args.top, len(release.classes)))
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


def _list_releases(dataset: str) -> int:
    """Every version kept, one line each (a damaged one: an error line naming the file); 0, 1 when a
    version is damaged, 2 when there is no release in use (the versions still listed, to recover)."""
    from mnist_assets.ml.release.folder import list_releases

    try:
        folder, unusable = release_path(dataset).parent, None
    except MissingRelease as error:
        folder, unusable = error.folder, error
    except ReleaseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    rows = list_releases(folder)
    for row in rows:
        if row["problem"]:
            which, fix = (" (current)", "restore the file") if row["current"] else ("", "restore the file, or remove the version's folder")
            print(f"error: release {row['version']}{which}: {row['problem']}; {fix}", file=sys.stderr)
        else:
            mark = "*" if row["current"] else " "
            print(f"{mark} {row['version']}  {row['model']}  validation {row['validation_accuracy']}  {row['released_at']}")
    if unusable:
        print(f"error: {unusable}", file=sys.stderr)
        return 2
    return 1 if any(row["problem"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
