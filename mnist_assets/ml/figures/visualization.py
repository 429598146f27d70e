"""2-d projections of stored embeddings as FiftyOne brain runs (the App's embeddings panel reads them)."""

from pathlib import Path

import fiftyone.brain as fob
import numpy as np

from mnist_assets.ml.figures.numba_cache import cache_umap_compilation
from mnist_assets.ml.figures.projection_growth import Fitted, load_fitted, place_points, plan_projection, save_fitted
from mnist_assets.ml.store.fiftyone_store import read_vectors, register_brain_run
from mnist_assets.ml.store.sample_cache import stored_keys

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


def grow_umap(dataset, view, embeddings_field: str, brain_key: str, saved: Path, numba_cache_dir: Path | None = None):
    """The UMAP of the view under `brain_key`, fitted again only when due, new samples placed into
    the earlier fit until then (ml/figures/projection_growth.py); `saved` keeps the points between
    runs. Returns the points (view order), which of them were placed, and what was done."""
    sample_ids = view.values("id")
    keys = [key or "" for key in stored_keys(view, embeddings_field)]  # "": never projected from a known embedding
    previous = load_fitted(saved)
    plan = plan_projection(previous, sample_ids, keys)
    if plan.refit:
        points = compute_projection(dataset, view, embeddings_field, brain_key, "umap", numba_cache_dir)
        placed, fitted, done = np.zeros(len(points), bool), len(points), f"fitted on {len(points)} samples ({plan.refit})"
    else:
        old = plan.kept >= 0
        points = np.zeros((len(sample_ids), previous.points.shape[1]), np.float32)
        points[old] = previous.points[plan.kept[old]]
        if plan.new:
            embeddings = read_vectors(view, embeddings_field)
            points[~old] = place_points(embeddings[old], points[old], embeddings[~old])
        register_brain_run(dataset, brain_key, lambda: fob.compute_visualization(view, points=points, brain_key=brain_key, progress=False))
        placed = ~old
        placed[old] = previous.placed[plan.kept[old]]
        fitted, done = previous.fitted, f"{plan.new} new samples placed into the fit of {previous.fitted}, no refit"
    save_fitted(saved, Fitted(np.array(sample_ids), np.array(keys), points, placed, fitted))
    return points, placed, done
