"""Per-sample results that outlive a materialization: each result is stored with a key made of the
sample's pixels (its `image_hash`) and a fingerprint of what computed it (model, weights,
preprocessing). A later run computes only the samples whose key differs (new, re-ingested with other
pixels, or computed under another model or setting) and keeps the rest: one new image in a split
costs one image's work, not the split's."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import fiftyone as fo
import numpy as np

from mnist_assets.ml.core.field_names import IMAGE_HASH


def settings_fingerprint(**settings) -> str:
    """A short, stable hash of everything a per-sample result depends on besides the pixels."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def key_field(result_field: str) -> str:
    """The sample field holding the key a result was computed under: `clip_embeddings_key`."""
    return f"{result_field}_key"


@dataclass(frozen=True)
class Reuse:
    """Which samples of a view need the result computed (`stale`), in view order, and the key each
    result is to be stored under."""

    sample_ids: list[str]
    keys: list[str]
    stale: np.ndarray  # bool per sample

    @property
    def computed(self) -> int:
        return int(self.stale.sum())

    @property
    def reused(self) -> int:
        return len(self.sample_ids) - self.computed

    def stale_ids(self) -> list[str]:
        return [sample_id for sample_id, stale in zip(self.sample_ids, self.stale) if stale]

    def stale_keys(self) -> list[str]:
        return [key for key, stale in zip(self.keys, self.stale) if stale]

    def stale_positions(self, sample_ids: list[str]) -> np.ndarray:
        """Where the stale samples are in another ordering of the same samples (a split's tensors)."""
        position = {sample_id: index for index, sample_id in enumerate(sample_ids)}
        return np.array([position[sample_id] for sample_id in self.stale_ids()], dtype=np.int64)


def stored_keys(view: fo.DatasetView, result_field: str) -> list[str | None]:
    """The key each sample's result was stored under, in view order (None: none yet)."""
    if key_field(result_field) not in view._dataset.get_field_schema():
        return [None] * len(view)
    return view.values(key_field(result_field))


def plan_reuse(view: fo.DatasetView, result_field: str, fingerprint: str) -> Reuse:
    """Compare each sample's stored key with the key it would get now; a sample without the result
    (or without a pixel hash) is computed whatever its key says."""
    sample_ids, hashes = view.values(["id", IMAGE_HASH])
    stored = stored_keys(view, result_field)
    present = set(view.exists(result_field).values("id")) if result_field in view._dataset.get_field_schema() else set()
    keys = [f"{fingerprint}:{image_hash}" for image_hash in hashes]
    stale = np.array(
        [
            image_hash is None or key != old or sample_id not in present
            for sample_id, image_hash, key, old in zip(sample_ids, hashes, keys, stored)
        ],
        dtype=bool,
    )
    return Reuse(sample_ids, keys, stale)
