"""Nearest neighbours by cosine distance, exact and in bulk: what the outlier, near-duplicate and leak
searches share (ml/quality/data_issues.py, ml/quality/duplicates.py)."""

from __future__ import annotations

import numpy as np

NEIGHBOURS = 10  # cleanlab's k


def unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def nearest(queries: np.ndarray, keys: np.ndarray, k: int, same: bool, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Cosine distances and positions of the k nearest `keys` (unit vectors) to each query, nearest
    first; `same`: queries are keys, and a sample is not its own neighbour. Chunked matrix products
    (sklearn's brute-force cosine search computes the same, about ten times slower here)."""
    import torch

    keys_t = torch.from_numpy(np.ascontiguousarray(keys, dtype=np.float32))
    k = min(k, len(keys) - (1 if same else 0))
    distances, positions = [], []
    for start in range(0, len(queries), chunk):
        block = torch.from_numpy(np.ascontiguousarray(queries[start : start + chunk], dtype=np.float32))
        similarity = block @ keys_t.T
        if same:
            rows = torch.arange(len(block))
            similarity[rows, rows + start] = -torch.inf
        top, where = similarity.topk(k, dim=1)
        distances.append((1 - top).clamp_min(0).numpy())
        positions.append(where.numpy())
    return np.concatenate(distances), np.concatenate(positions)
