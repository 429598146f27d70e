"""2-d projections of stored embeddings as FiftyOne brain runs (the App's embeddings panel reads them)."""

from pathlib import Path

import fiftyone.brain as fob
import numpy as np

from mnist_assets.ml.figures.numba_cache import cache_umap_compilation
from mnist_assets.ml.store.fiftyone_store import register_brain_run

PROJECTION_SEED = 51


def compute_projection(
    dataset, view, embeddings_field: str, brain_key: str, method: str = "umap", numba_cache_dir: Path | None = None
) -> np.ndarray:
    """Run `compute_visualization` under `brain_key` (replacing an earlier run); returns the 2-d points.
    With `numba_cache_dir`, UMAP's compiled code is kept there for later processes."""
    if method == "umap" and numba_cache_dir is not None:
        cache_umap_compilation(numba_cache_dir)
    # The projection is computed outside the dataset's lock (UMAP takes a while) and only recorded
    # under it, as a run of the points computed (store.fiftyone_store.register_brain_run says why).
    computed = fob.compute_visualization(view, embeddings=embeddings_field, method=method, num_dims=2, seed=PROJECTION_SEED, progress=False)
    points = np.asarray(computed.points)
    register_brain_run(dataset, brain_key, lambda: fob.compute_visualization(view, points=points, brain_key=brain_key, progress=False))
    return points


def compute_umap(dataset, view, embeddings_field: str, brain_key: str, numba_cache_dir: Path | None = None) -> np.ndarray:
    return compute_projection(dataset, view, embeddings_field, brain_key, method="umap", numba_cache_dir=numba_cache_dir)
