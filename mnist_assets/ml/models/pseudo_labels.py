"""Labels for the unlabeled pool, for training only: label spreading on the pool's declared embedding.

Where train holds few labels and many unlabeled images, and the declaration asks for it
(`pool_labels`, on where it was measured to help), the few-labels checkpoint also trains on the
labels that scikit-learn's LabelSpreading carries from the labeled samples to their neighbours. A
pseudo-label is never a person's label: it is never stored as `ground_truth` and never enters the
decision log; it only adds training samples.
"""

from dataclasses import dataclass

import numpy as np

from mnist_assets.ml.data.dataset_spec import UNLABELED
from mnist_assets.ml.data.pixel_embedding import pool_embedding
from mnist_assets.ml.data.tensors import SplitTensors
from mnist_assets.ml.models.cross_validation import subset

KEEP = 0.5  # the share of the unlabeled pool kept: the surest half, evenly over the classes
NEIGHBOURS = 10
# Past this many labels per class the pool's labels stop paying (MNIST, LeNet, 2-3 seeds: random
# +2.2 to +7.5 points from 10 to 200 labels, the default +2.4 to +9.0 from 10 to 100 and level at
# 200; both level at 500; 0.2-0.4 points lost at 1,000 and 2,000).
MAX_LABELS_PER_CLASS = 50


@dataclass(frozen=True)
class PseudoLabels:
    positions: np.ndarray  # the unlabeled samples kept, most confident first
    labels: np.ndarray  # their spread class positions
    confidence: np.ndarray  # the spread distribution's top probability, per kept sample

    @classmethod
    def none(cls) -> "PseudoLabels":
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))


@dataclass(frozen=True)
class PoolTraining:
    """What the few-labels checkpoint trains on."""

    train: SplitTensors  # the labeled samples (repeated), then the kept pseudo-labeled ones
    pseudo_labeled: int
    why: str


def spread_labels(embedding: np.ndarray, labels: np.ndarray, classes: int, keep: float = KEEP) -> PseudoLabels:
    """scikit-learn's LabelSpreading on a k-nearest-neighbour graph of `embedding` from the given
    `labels` (UNLABELED: none); keeps the `keep` share of the unlabeled samples it is surest of, the
    surest of each class it assigns in equal numbers, so one dense class does not crowd out the rest."""
    from sklearn.semi_supervised import LabelSpreading

    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], not {keep}")
    unlabeled = np.flatnonzero(labels == UNLABELED)
    if len(unlabeled) == 0 or len(np.unique(labels[labels != UNLABELED])) < 2:
        return PseudoLabels.none()
    model = LabelSpreading(kernel="knn", n_neighbors=min(NEIGHBOURS, len(labels) - 1), alpha=0.2, max_iter=50)
    model.fit(embedding, labels)
    distributions = model.label_distributions_[unlabeled]
    spread = model.classes_[distributions.argmax(axis=1)]
    confidence = distributions.max(axis=1)
    per_class = int(np.ceil(keep * len(unlabeled) / classes))
    chosen = [
        members[np.argsort(-confidence[members], kind="stable")[:per_class]]
        for members in (np.flatnonzero(spread == label) for label in np.unique(spread))
    ]
    order = np.concatenate(chosen)
    order = order[np.argsort(-confidence[order], kind="stable")]
    return PseudoLabels(unlabeled[order], spread[order].astype(np.int64), confidence[order].astype(np.float32))


def pool_training(
    pool: SplitTensors,
    classes: int,
    keep: float = KEEP,
    seed: int = 0,
    embedding: np.ndarray | None = None,
    kind: str = "pixels",
) -> PoolTraining:
    """The training set of a checkpoint on few labels: `pool` (train's labeled and unlabeled samples,
    standardized as training reads them) with the surest `keep` of the pool's spread labels, the labeled
    samples repeated to a tenth of the set at least (the batch affine varies each copy). `embedding`:
    the pool's embedding where the caller has it already, else the `kind` the dataset declares
    (`pool_embedding`)."""
    import torch

    labels = pool.labels.numpy()
    labeled = np.flatnonzero(labels != UNLABELED)
    if len(labeled) > MAX_LABELS_PER_CLASS * classes:
        why = f"{len(labeled)} labels, more than {MAX_LABELS_PER_CLASS} per class: the labeled samples alone (spread labels no longer help)"
        return PoolTraining(subset(pool, labeled), 0, why)
    spread = PseudoLabels.none()
    if len(labeled) < len(labels):
        embedding = pool_embedding(pool.images.numpy(), kind, seed=seed) if embedding is None else embedding
        spread = spread_labels(embedding, labels, classes, keep)
    if len(spread.positions) == 0:
        return PoolTraining(subset(pool, labeled), 0, "no unlabeled samples, or labels of fewer than two classes: nothing to spread")
    copies = max(1, int(np.ceil(0.1 * len(spread.positions) / len(labeled))))
    trained = subset(pool, np.concatenate([np.tile(labeled, copies), spread.positions]))
    trained.labels[len(labeled) * copies :] = torch.from_numpy(spread.labels)
    why = f"{len(spread.positions)} unlabeled samples train with labels spread from the {len(labeled)} given (those x{copies})"
    return PoolTraining(trained, len(spread.positions), why)
