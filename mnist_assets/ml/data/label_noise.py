"""Label noise a dataset can declare, so the data-quality loop is measured where the truth is known.

`label_noise: {rate, sparsity, splits, seed}` replaces the label of about a `rate` of the samples of
the named splits (train and validation; test never) with another class drawn from a noise matrix of
that `sparsity`, the confident-learning paper's parametrization (Northcutt et al., JAIR 2021; built
by cleanlab's `generate_noise_matrix_from_trace`): at 0 a wrong label can be any other class, at 0.6
most off-diagonal entries are zero, so errors concentrate on a few class pairs.

Which samples are flipped, and to what, depends only on the seed and each sample's own source key
(two seeded hashes), never on the order, the split a sample lands in or a sample limit: a re-ingest
flips the same samples to the same labels. The true label is kept beside (`ground_truth_clean`) for
benchmarks and tests; the pipeline itself only ever sees the noisy one.
"""

from __future__ import annotations

import hashlib

import numpy as np

NOISY_SPLITS = ("train", "validation")


def noise_matrix(num_classes: int, rate: float, sparsity: float, seed: int) -> np.ndarray:
    """P(noisy label = row | true label = column), columns summing to 1, average diagonal 1 - rate."""
    from cleanlab.benchmarking.noise_generation import generate_noise_matrix_from_trace

    matrix = generate_noise_matrix_from_trace(
        num_classes,
        num_classes * (1.0 - rate),
        py=np.full(num_classes, 1.0 / num_classes),
        frac_zero_noise_rates=sparsity,
        valid_noise_matrix=True,
        seed=seed,
    )
    if matrix is None:
        raise ValueError(f"no valid noise matrix for {num_classes} classes at rate {rate} and sparsity {sparsity}; lower the rate.")
    return matrix


def flip_targets(matrix: np.ndarray) -> np.ndarray:
    """For each true class (row here), where a flipped label goes: the matrix's off-diagonal column,
    normalized (uniform over the other classes where the matrix keeps the class always right)."""
    targets = matrix.T.copy()
    np.fill_diagonal(targets, 0.0)
    totals = targets.sum(axis=1, keepdims=True)
    uniform = (1.0 - np.eye(len(targets))) / (len(targets) - 1)
    return np.where(totals > 0, targets / np.where(totals > 0, totals, 1.0), uniform)


def seeded_rank(keys: np.ndarray, seed: int | str) -> np.ndarray:
    """A seeded pseudo-random order of samples that depends only on each sample's own key."""
    return np.array([int.from_bytes(hashlib.sha1(f"{seed}:{int(key)}".encode()).digest()[:8], "big") for key in keys], dtype=np.uint64)


def seeded_uniform(keys: np.ndarray, seed: int, purpose: str) -> np.ndarray:
    """A number in [0, 1) per key, from a seeded hash of the key alone (the splits' seeded rank, scaled)."""
    return seeded_rank(keys, f"{seed}:{purpose}") / 2.0**64


def noisy_labels(labels: np.ndarray, keys: np.ndarray, num_classes: int, rate: float, sparsity: float, seed: int) -> np.ndarray:
    """The labels with about `rate` of them replaced (each by another class), chosen per key."""
    labels = np.asarray(labels, dtype=np.int64)
    flipped = seeded_uniform(keys, seed, "flip") < rate
    cumulative = np.cumsum(flip_targets(noise_matrix(num_classes, rate, sparsity, seed)), axis=1)
    draws = seeded_uniform(keys, seed, "label")
    # scaled by the row's total, so rounding can never land on the true class (it has no mass)
    chosen = np.array([np.searchsorted(cumulative[true], draw * cumulative[true][-1], side="right") for true, draw in zip(labels, draws)])
    return np.where(flipped, chosen, labels)


def noisy_declaration(spec, rate: float, sparsity: float, seed: int = 0, splits: tuple[str, ...] | None = None):
    """A declared dataset with label noise added (what a `label_noise` YAML of the same source would
    declare) on `splits` (default: the declaration's, train and validation), named after it:
    `<name>_noise_<rate %>_<sparsity %>`, e.g. fashion_mnist_noise_20_60."""
    noise = {"rate": rate, "sparsity": sparsity, "seed": seed, **({"splits": list(splits)} if splits else {})}
    return spec.model_copy(update={"name": f"{spec.name}_noise_{round(rate * 100)}_{round(sparsity * 100)}", "label_noise": noise})
