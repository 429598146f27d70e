"""A split's tensors and a checkpoint's models, as the assets read them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mnist_assets.assets.common import Pipeline, materialize_first
from mnist_assets.resources import DatasetStore, Settings

if TYPE_CHECKING:  # for annotations only: imported where used, at run time
    from mnist_assets.ml.data.tensors import SplitTensors


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
    with_unlabeled: bool = False,
):
    """The dataset, the split's view and its tensors (through the cached bridge), standardized with
    `statistics`, by default the train split's pixel mean and std (unless `standardize` is off: pixels
    only). The samples a person excluded are left out unless `with_excluded` (pixels every sample
    needs: embeddings, predictions), those no one has labeled unless `with_unlabeled` or `with_excluded`."""
    from mnist_assets.ml.data.tensors import SplitTensors, load_view_tensors
    from mnist_assets.ml.store.fiftyone_store import split_view, usable_view

    store = store or p.store(settings)
    dataset = store.dataset()
    view = split_view(dataset, split) if with_excluded else usable_view(dataset, split, with_unlabeled)
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
    """The models and payloads of a checkpoint or checkpoint set (ml/models/checkpoints.py), and the tensors
    standardized as they were trained (the members of a set share the train split's statistics)."""
    from mnist_assets.ml.data.tensors import SplitTensors
    from mnist_assets.ml.models.checkpoints import load_models

    with materialize_first(p, name):
        models, payloads = zip(*load_models(checkpoint_path(store, name)))
    settings = payloads[0]["settings"]
    mean, std = settings.get("mean", tensors.mean), settings.get("std", tensors.std)
    return list(models), list(payloads), SplitTensors(tensors.images, tensors.labels, tensors.sample_ids, mean, std)
