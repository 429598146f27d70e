"""MNIST test label errors confirmed by human reviewers, to judge how well a score ranks them.

Northcutt, Athalye and Mueller, "Pervasive Label Errors in Test Sets Destabilize Machine
Learning Benchmarks" (NeurIPS 2021 Datasets and Benchmarks; public data in cleanlab/label-errors,
`mturk/mnist_mturk.json`): of the 100 test images their confident learning flagged, these 15 were
confirmed as label errors (at most 2 of 5 reviewers kept the given label). Indices are positions
in t10k-*-ubyte, i.e. `source_index` of the test split.
"""

from __future__ import annotations

import numpy as np

CONFIRMED_TEST_LABEL_ERRORS = (947, 1621, 1901, 2130, 2462, 2597, 2654, 3520, 3558, 5937, 6651, 6783, 8527, 9679, 9729)
TOPS = (20, 50, 100)


def ranks_of_known_errors(source_indices, scores, known=CONFIRMED_TEST_LABEL_ERRORS) -> dict[int, int]:
    """0-based rank (highest score first, ties in input order) of each known error present."""
    source_indices = np.asarray(source_indices)
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    rank_of_position = np.empty(len(order), dtype=int)
    rank_of_position[order] = np.arange(len(order))
    position = {int(index): i for i, index in enumerate(source_indices)}
    return {index: int(rank_of_position[position[index]]) for index in known if index in position}


def known_errors_in_tops(source_indices, scores, tops=TOPS, known=CONFIRMED_TEST_LABEL_ERRORS) -> dict[int, int]:
    """How many of the known errors rank in the top N, for each N in `tops`."""
    ranks = ranks_of_known_errors(source_indices, scores, known).values()
    return {top: sum(rank < top for rank in ranks) for top in tops}


def ranking_rows(source_indices, rankings: dict[str, np.ndarray], known=CONFIRMED_TEST_LABEL_ERRORS) -> list[dict]:
    """One row per ranking (name -> scores, highest first): how many known errors are in each top N."""
    return [
        {"ranking": name, **{f"top{top}": found for top, found in known_errors_in_tops(source_indices, scores, known=known).items()}}
        for name, scores in rankings.items()
    ]
