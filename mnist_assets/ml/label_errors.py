"""Published label errors in MNIST's test file, to judge how well mistakenness ranks them.

Source indices (positions in t10k-*-ubyte) listed by cleanlab's confident-learning
examples ("Finding Label Errors in MNIST train and test datasets"): eight blatant
errors and four less blatant ones.
"""

import numpy as np

KNOWN_TEST_LABEL_ERRORS = (947, 5937, 3520, 4163, 2597, 9729, 4874, 3776, 2130, 9642, 449, 659)


def known_errors_in_top(source_indices, scores, fraction: float = 0.01) -> tuple[int, int]:
    """How many known errors present in the split rank in the top `fraction` by score; and how many are present."""
    source_indices = np.asarray(source_indices)
    scores = np.asarray(scores, dtype=float)
    present = np.isin(source_indices, KNOWN_TEST_LABEL_ERRORS)
    top = max(1, int(round(len(scores) * fraction)))
    top_positions = np.argsort(-scores, kind="stable")[:top]
    return int(present[top_positions].sum()), int(present.sum())
