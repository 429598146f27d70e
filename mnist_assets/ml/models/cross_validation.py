"""Out-of-sample predictions for the training split: K-fold cross-validation with one recipe.

A model scores the samples it trained on as it memorized them (a 99.2% LeNet gets 72 of 51,000
training samples wrong), so hardness, mistakenness and cleanlab on `train` read these instead:
each sample's logits come from the fold model that never saw it (the confident-learning paper's
and cleanlab's practice). The fold models are kept: as an ensemble (`training.ensemble_logits`,
the mean of their probabilities) they score the other splits, and ranked the 15 confirmed MNIST
test label errors better than the checkpoint alone (docs/label-errors.md).
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.model_selection import KFold, StratifiedKFold

from mnist_assets.ml.data.tensors import SplitTensors
from mnist_assets.ml.models.architectures import build_model
from mnist_assets.ml.models.training import FitResult, TrainConfig, fit, predict


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """The fold (0..folds-1) of each sample: seeded, shuffled, each class spread evenly over the folds."""
    labels = np.asarray(labels)
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    if len(labels) < folds:
        raise ValueError(f"{len(labels)} samples cannot be split into {folds} folds")
    # Classes absent from this split (a class index with no samples) are no obstacle; scikit-learn
    # warns when a present class has fewer samples than folds and spreads the ones it has. When no
    # class has as many samples as folds (20 labels over ten classes) there is nothing to stratify:
    # a seeded shuffle into folds of equal size.
    fold_of = np.empty(len(labels), dtype=np.int64)
    stratify = np.bincount(labels - labels.min()).max() >= folds
    splitter = (StratifiedKFold if stratify else KFold)(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        fold_of[held_out] = fold
    return fold_of


def subset(data: SplitTensors, positions: np.ndarray) -> SplitTensors:
    index = torch.as_tensor(positions)
    return SplitTensors(data.images[index], data.labels[index], [data.sample_ids[i] for i in positions], data.mean, data.std)


@dataclass
class OutOfFoldResult:
    logits: np.ndarray  # [N, classes], each row from the model that did not train on the sample
    labels: np.ndarray  # [N], the given labels
    fold_of: np.ndarray  # [N]
    fold_rows: list[dict]  # per fold: samples, held-out accuracy, best epoch, seconds
    fits: list[FitResult] = field(default_factory=list)  # per fold: the kept state, for the ensemble

    @property
    def misclassified(self) -> int:
        return int((self.logits.argmax(axis=1) != self.labels).sum())

    @property
    def accuracy(self) -> float:
        return 1.0 - self.misclassified / len(self.labels)


def out_of_fold_logits(
    build_model: Callable[[int], torch.nn.Module],
    train: SplitTensors,
    validation: SplitTensors,
    config: TrainConfig,
    folds: int,
    device: str = "cpu",
    on_fold: Callable[[dict], None] | None = None,
) -> OutOfFoldResult:
    """Train one model per fold on the other folds (state picked on `validation`, as the checkpoint's
    recipe does) and predict the held-out fold. `build_model(fold)` returns a fresh, seeded model."""
    labels = train.labels.numpy()
    fold_of = stratified_folds(labels, folds, config.seed)
    logits = None
    rows, fits = [], []
    for fold in range(folds):
        held_out = np.flatnonzero(fold_of == fold)
        model = build_model(fold)
        result = fit(model, subset(train, np.flatnonzero(fold_of != fold)), validation, config, device)
        fold_logits, _ = predict(model, subset(train, held_out), device)
        if logits is None:
            logits = np.zeros((len(train), fold_logits.shape[1]), dtype=np.float32)
        logits[held_out] = fold_logits
        fits.append(result)
        row = {
            "fold": fold + 1,
            "held_out": len(held_out),
            "held_out_accuracy": round(float((fold_logits.argmax(axis=1) == labels[held_out]).mean()), 4),
            "best_epoch": result.best_epoch,
            "val_accuracy": round(result.best_metrics["val_accuracy"], 4),
            "seconds": round(result.seconds, 1),
        }
        rows.append(row)
        if on_fold is not None:
            on_fold(row)
    return OutOfFoldResult(logits, labels, fold_of, rows, fits)


def train_fold_models(
    spec,
    config: TrainConfig,
    train: SplitTensors,
    validation: SplitTensors,
    folds: int,
    device: str = "cpu",
    on_fold: Callable[[dict], None] | None = None,
) -> OutOfFoldResult:
    """`out_of_fold_logits` with the declared dataset's model: fold k's model is `config.arch` seeded
    `config.seed + k`, shaped by the declaration (lenet_oof_predictions and benchmarks train the same)."""
    return out_of_fold_logits(
        lambda fold: build_model(config.arch, config.seed + fold, **spec.model_shape()), train, validation, config, folds, device, on_fold
    )


def fold_ensemble(spec, config: TrainConfig, result: OutOfFoldResult) -> list[torch.nn.Module]:
    """The fold models of `result` with their kept states, as fold_ensemble_predictions loads them."""
    models = []
    for fold, fold_fit in enumerate(result.fits):
        model = build_model(config.arch, config.seed + fold, **spec.model_shape())
        model.load_state_dict(fold_fit.best_state)
        models.append(model.eval())
    return models
