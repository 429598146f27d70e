"""New samples placed into an existing 2-d projection instead of refitting it on every arrival.

A UMAP of a split is refitted only when it is due: no earlier fit, or more new samples (or samples
whose embedding changed) since the last fit than `REFIT_NEW_FRACTION` of the samples it was fitted
on. Until then a new sample is placed where UMAP's own `transform` starts it: the weighted mean of
the 2-d points of its nearest fitted neighbours in the embedding (without unpickling a reducer from
disk). A sample that is gone is dropped; the others keep their points exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mnist_assets.ml.core.files import atomic_write_arrays, read_arrays

REFIT_NEW_FRACTION = 0.05
NEIGHBOURS = 15  # UMAP's default n_neighbors


@dataclass(frozen=True)
class Fitted:
    """A split's projection as last written: each sample's id, the key of the embedding it was
    projected from, its 2-d point, whether it was placed (not fitted); how many samples the last
    full fit saw."""

    sample_ids: np.ndarray
    keys: np.ndarray
    points: np.ndarray
    placed: np.ndarray
    fitted: int


def load_fitted(path: Path) -> Fitted | None:
    saved = read_arrays(path)
    return None if saved is None else Fitted(**{**saved, "fitted": int(saved["fitted"])})


def save_fitted(path: Path, fitted: Fitted) -> None:
    atomic_write_arrays(path, **asdict(fitted))


@dataclass(frozen=True)
class Plan:
    kept: np.ndarray  # per current sample: its point from the earlier projection (-1: new or changed)
    refit: str | None  # why the projection is fitted again; None: new samples are placed

    @property
    def new(self) -> int:
        return int((self.kept < 0).sum())


def plan_projection(previous: Fitted | None, sample_ids: list[str], keys: list[str], new_fraction: float = REFIT_NEW_FRACTION) -> Plan:
    """Which current samples keep their earlier point, and whether the projection is due a refit."""
    if previous is None:
        return Plan(np.full(len(sample_ids), -1), "no earlier projection")
    earlier = {(sample_id, key): index for index, (sample_id, key) in enumerate(zip(previous.sample_ids.tolist(), previous.keys.tolist()))}
    kept = np.array([earlier.get((sample_id, key), -1) for sample_id, key in zip(sample_ids, keys)], dtype=np.int64)
    new = int((kept < 0).sum())
    if new > new_fraction * previous.fitted:
        return Plan(kept, f"{new} new or changed samples, more than {new_fraction:.0%} of the {previous.fitted} it was fitted on")
    if (kept >= 0).sum() < NEIGHBOURS:
        return Plan(kept, f"fewer than {NEIGHBOURS} samples kept to place new ones among")
    return Plan(kept, None)


def place_points(reference: np.ndarray, reference_points: np.ndarray, new: np.ndarray, neighbours: int = NEIGHBOURS) -> np.ndarray:
    """2-d points for `new` embeddings: the mean of their nearest `reference` embeddings' points,
    weighted as UMAP weighs a point's neighbours (exp of minus the distance beyond the nearest, over
    the spread of the distances), where UMAP's transform starts them."""
    from sklearn.neighbors import NearestNeighbors

    if len(new) == 0:
        return np.zeros((0, reference_points.shape[1]), np.float32)
    k = min(neighbours, len(reference))
    distances, indices = NearestNeighbors(n_neighbors=k).fit(reference).kneighbors(new)
    beyond = distances - distances[:, :1]
    spread = np.maximum(beyond.mean(axis=1, keepdims=True), 1e-12)
    weights = np.exp(-beyond / spread)
    weights /= weights.sum(axis=1, keepdims=True)
    return np.einsum("nk,nkd->nd", weights, reference_points[indices]).astype(np.float32)
