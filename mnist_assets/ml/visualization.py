"""2-d projections of stored embeddings as FiftyOne brain runs (the App's embeddings panel reads them)."""

import numpy as np

import fiftyone.brain as fob

from mnist_assets.ml.fiftyone_store import delete_brain_run

PROJECTION_SEED = 51


def compute_projection(dataset, view, embeddings_field: str, brain_key: str, method: str = "umap") -> np.ndarray:
    """Run `compute_visualization` under `brain_key` (replacing an earlier run); returns the 2-d points."""
    delete_brain_run(dataset, brain_key)
    results = fob.compute_visualization(
        view,
        embeddings=embeddings_field,
        method=method,
        brain_key=brain_key,
        num_dims=2,
        seed=PROJECTION_SEED,
        progress=False,
    )
    return np.asarray(results.points)


def compute_umap(dataset, view, embeddings_field: str, brain_key: str) -> np.ndarray:
    return compute_projection(dataset, view, embeddings_field, brain_key, method="umap")
