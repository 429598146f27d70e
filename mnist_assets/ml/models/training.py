"""Training and inference loops over in-memory tensors, in the style of torchvision's references."""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from scipy.special import log_softmax, logsumexp
from torch import nn
from tqdm.auto import tqdm

from mnist_assets.ml.data.tensors import SplitTensors, iterate_batches, on_device
from mnist_assets.ml.models.augmentation import BATCH_AUGMENTATIONS, batch_augmentation
from mnist_assets.ml.models.precision import check_precision, training_dtype

RECIPES = ("onecycle", "series")
KEEP = ("best", "accuracy", "last")
MAX_VALIDATIONS = 20  # with keep "last": validate this many epochs, evenly spaced (the last always)
NAN = float("nan")  # an epoch not validated
RECIPE_WEIGHT_DECAY = {"onecycle": 0.05, "series": 0.0}


@dataclass
class TrainConfig:
    """How to train. `series` is the series' recipe: Adam at a constant 3e-3.

    `onecycle` (the default) keeps architecture, batch size, epochs and peak
    learning rate but warms the rate up and anneals it with a cosine, so the
    last epochs settle instead of wandering, and decouples weight decay (AdamW,
    0.05) so the small network stops overfitting in those last epochs.
    `weight_decay=None` means the recipe's own value.
    """

    arch: str = "lenet5"
    recipe: str = "onecycle"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float | None = None
    label_smoothing: float = 0.0
    ema: float = 0.0  # > 0: validate and keep a moving average of the weights, with this decay per step
    batch_augmentation: str = "none"  # "affine": a random affine per training sample and epoch; "shift": up to 2 pixels
    horizontal_flip: bool = False  # with "affine": also mirror half the samples (clothes, not digits)
    random_erasing: float = 0.0  # > 0: blank a random rectangle in this share of the training images
    # "best": the lowest validation loss (the series); "accuracy": the highest validation accuracy, the
    # later epoch on a tie (it holds when validation labels are as noisy as train's: docs/label-cleaning.md);
    # "last": the final epoch
    keep: str = "best"
    precision: str = "fp32"  # "bf16": bf16 autocast in training; "auto": where the device computes bf16 in hardware
    seed: int = 51
    min_steps: int = 0  # at least this many optimizer steps: more epochs on a small training set

    def planned_epochs(self, samples: int) -> int:
        """`epochs`, or more where that many epochs of `samples` give fewer than `min_steps` steps."""
        steps = max(1, int(np.ceil(samples / self.batch_size)))
        return max(self.epochs, int(np.ceil(self.min_steps / steps)))

    @property
    def resolved_weight_decay(self) -> float:
        if self.weight_decay is not None:
            return self.weight_decay
        return RECIPE_WEIGHT_DECAY[self.recipe]

    def validate(self) -> TrainConfig:
        if self.recipe not in RECIPES:
            raise ValueError(f"unknown recipe {self.recipe!r}; choose one of {RECIPES}")
        if self.epochs <= 0:
            raise ValueError(f"epochs must be a positive integer, got {self.epochs}")
        if self.batch_size <= 0 or self.lr <= 0:
            raise ValueError("batch_size and lr must be positive")
        if self.keep not in KEEP:
            raise ValueError(f"unknown keep {self.keep!r}; choose one of {KEEP}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema is a decay per step in [0, 1) (0: off), got {self.ema}")
        if not 0.0 <= self.random_erasing <= 1.0:
            raise ValueError(f"random_erasing is a probability in [0, 1], got {self.random_erasing}")
        if self.batch_augmentation not in BATCH_AUGMENTATIONS:
            raise ValueError(f"unknown batch_augmentation {self.batch_augmentation!r}; choose one of {BATCH_AUGMENTATIONS}")
        check_precision(self.precision)
        return self


@dataclass
class FitResult:
    best_state: dict
    best_optimizer_state: dict
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    precision: str = "fp32"  # what the training steps computed in (config.precision resolved for the device)

    @property
    def best_metrics(self) -> dict:
        return self.history[self.best_epoch - 1]


def _progress(total: int, description: str):
    return tqdm(total=total, desc=description, leave=False, mininterval=2.0, disable=not sys.stderr.isatty())


def train_one_epoch(
    model,
    data: SplitTensors,
    optimizer,
    scheduler,
    batch_size,
    generator,
    device,
    description="train",
    label_smoothing=0.0,
    augment: nn.Module | None = None,
    averaged: nn.Module | None = None,
    memory_format=torch.contiguous_format,
    dtype: torch.dtype | None = None,
):
    """One epoch; `dtype`: the autocast precision of the forward pass and loss (None: fp32)."""
    model.train()
    loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    total_loss, correct = 0.0, 0
    with _progress(len(data), description) as bar:
        for images, labels in iterate_batches(data, batch_size, shuffle=True, generator=generator):
            images, labels = images.to(device), labels.to(device)
            if augment is not None:
                images = augment(images)
            with torch.autocast(torch.device(device).type, dtype=dtype or torch.float32, enabled=dtype is not None):
                logits = model(images.contiguous(memory_format=memory_format))
                loss = loss_fn(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if averaged is not None:
                averaged.update_parameters(model)
            if scheduler is not None:
                scheduler.step()
            total_loss += loss.item() * len(labels)
            correct += (logits.argmax(1) == labels).sum().item()
            bar.update(len(labels))
    return total_loss / len(data), correct / len(data)


@torch.inference_mode()
def evaluate(model, data: SplitTensors, device, batch_size: int = 4096, memory_format=torch.contiguous_format) -> tuple[float, float]:
    model.eval()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    total_loss, correct = 0.0, 0
    for images, labels in iterate_batches(data, batch_size):
        images, labels = images.to(device), labels.to(device)
        logits = model(images.contiguous(memory_format=memory_format))
        total_loss += loss_fn(logits, labels).item()
        correct += (logits.argmax(1) == labels).sum().item()
    return total_loss / len(data), correct / len(data)


def _better(keep: str, val_loss: float, val_accuracy: float, kept: tuple[float, float]) -> bool:
    """Whether this epoch's state replaces the kept one (`kept`: its validation loss and accuracy)."""
    return val_accuracy >= kept[1] if keep == "accuracy" else val_loss < kept[0]


def fit(
    model: nn.Module,
    train: SplitTensors,
    validation: SplitTensors,
    config: TrainConfig,
    device: str = "cpu",
    optimizer_state: dict | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> FitResult:
    """Train for `config.epochs`, keeping the state `config.keep` says: the lowest validation loss, the
    highest validation accuracy, or the last one.
    With `config.ema`, the state validated and kept is the weights' moving average (BatchNorm's running
    statistics averaged too)."""
    config.validate()
    for name, data in (("train", train), ("validation", validation)):
        if len(data) and int(data.labels.min()) < 0:  # UNLABELED: usable_view leaves these out
            raise ValueError(f"{name} holds samples no one has labeled; train on the labeled ones (fiftyone_store.usable_view).")
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    memory_format = torch.channels_last if getattr(model, "channels_last", False) and device == "cpu" else torch.contiguous_format
    model.to(device, memory_format=memory_format)
    train, validation = on_device(train, device), on_device(validation, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.resolved_weight_decay)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
        for group in optimizer.param_groups:
            group["lr"] = config.lr
    steps = int(np.ceil(len(train) / config.batch_size))
    epochs = config.planned_epochs(len(train))
    scheduler = (
        torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=epochs * steps)
        if config.recipe == "onecycle"
        else None
    )
    averaged = (
        torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=ema_with_warmup(config.ema), use_buffers=True) if config.ema else None
    )
    kept = averaged.module if averaged is not None else model  # what is validated and kept
    augment = batch_augmentation(
        config.batch_augmentation, -train.mean / train.std, config.horizontal_flip, train.images.shape[-1], config.random_erasing
    )  # runs on the batch's device
    dtype = training_dtype(config.precision, device)
    history, best = [], None
    # Keeping the last state, the validation curve needs no more than MAX_VALIDATIONS points: 100 labels
    # train 500 epochs of two steps each, and validating after every one would cost most of the time.
    validate_every = max(1, epochs // MAX_VALIDATIONS) if config.keep == "last" else 1
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        epoch_started = time.perf_counter()
        train_loss, train_accuracy = train_one_epoch(
            model,
            train,
            optimizer,
            scheduler,
            config.batch_size,
            generator,
            device,
            f"epoch {epoch}/{epochs}",
            config.label_smoothing,
            augment,
            averaged,
            memory_format,
            dtype,
        )
        validated = epoch % validate_every == 0 or epoch == epochs
        val_loss, val_accuracy = evaluate(kept, validation, device, memory_format=memory_format) if validated else (NAN, NAN)
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_accuracy": train_accuracy,
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
            "seconds": round(time.perf_counter() - epoch_started, 2),
        }
        if averaged is not None and validated:  # what the average adds: the trained weights' own accuracy beside it
            row["trained_val_accuracy"] = evaluate(model, validation, device, memory_format=memory_format)[1]
        history.append(row)
        if best is None or config.keep == "last" or _better(config.keep, val_loss, val_accuracy, best[0]):
            best = ((val_loss, val_accuracy), epoch, copy.deepcopy(kept.state_dict()), copy.deepcopy(optimizer.state_dict()))
        if on_epoch is not None:
            on_epoch(row)
    _, best_epoch, best_state, best_optimizer = best
    model.load_state_dict(best_state)
    return FitResult(best_state, best_optimizer, best_epoch, history, time.perf_counter() - started, "bf16" if dtype else "fp32")


def ema_with_warmup(decay: float):
    """AveragedModel's update for an exponential moving average whose decay grows to `decay` as
    min(decay, (1 + n) / (10 + n)) after n updates (timm's warm-up): without it the average of a short
    run is mostly its random initial weights (0.999 keeps 0.999^n of them)."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged) -> None:
        n = int(num_averaged)
        weight = 1.0 - min(decay, (1 + n) / (10 + n))
        for average, value in zip(averaged, current):
            if average.is_floating_point():
                average.lerp_(value, weight)
            else:  # BatchNorm's count of batches: the model's own
                average.copy_(value)

    return update


@torch.inference_mode()
def predict(model: nn.Module, data: SplitTensors, device: str = "cpu", batch_size: int = 2048):
    """Logits [N, classes] and fc1 embeddings [N, 84] in input order (fc1 read through a forward hook)."""
    model.to(device).eval()
    captured = []
    hook = model.fc1.register_forward_hook(lambda _module, _inputs, output: captured.append(output.cpu()))
    logits = []
    try:
        for images, _ in iterate_batches(on_device(data, device), batch_size):  # uint8 to the device once, batches there
            logits.append(model(images).cpu())
    finally:
        hook.remove()
    if not logits:
        return np.zeros((0, model.fc2.out_features), np.float32), np.zeros((0, 84), np.float32)
    return torch.cat(logits).numpy(), torch.cat(captured).numpy()


def ensemble_logits(models: list[torch.nn.Module], data: SplitTensors, device: str = "cpu") -> np.ndarray:
    """Logits [N, classes] whose softmax is the models' mean probability (one model: its own logits)."""
    if len(models) == 1:
        return predict(models[0], data, device)[0]
    log_probabilities = np.stack([log_softmax(predict(model, data, device)[0].astype(np.float64), axis=1) for model in models])
    return mean_probability_logits(log_probabilities)


def mean_probability_logits(log_probabilities: np.ndarray) -> np.ndarray:
    """[models, N, classes] log-probabilities -> [N, classes] logits whose softmax is the models'
    mean probability (the log of that mean, computed stably)."""
    return (logsumexp(log_probabilities, axis=0) - np.log(len(log_probabilities))).astype(np.float32)


def config_dict(config: TrainConfig) -> dict:
    return asdict(config)
