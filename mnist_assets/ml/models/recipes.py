"""The training recipe of each role, decided in one place.

Roles: `checkpoint` (lenet_checkpoint), `folds` (the fold models of lenet_oof_predictions),
`finetune` (finetuned_model) and `cnn` (cnn_checkpoint, the stronger release candidate). A recipe
field comes from, in this order:

1. what a person set for the run (the asset's config in the Launchpad),
2. the environment (`MNIST_ASSETS_EPOCHS`, for quick runs),
3. the dataset's declaration (`checkpoint_epochs`, `epochs`, `batch_augmentation`, `horizontal_flip`,
   `cnn_arch`, `cnn_epochs`; the CNN's augmentation follows `horizontal_flip`),
4. the role's defaults below, scaled to the device where a role says so (the CNN on a GPU: wider
   and twice as long, GPU_SCALE).

When the epochs come from 3 or 4, a small dataset still gets at least MIN_STEPS optimizer steps:
ten epochs of a few hundred images are 80 steps, far from trained (`TrainConfig.min_steps`).
"""

from __future__ import annotations

from mnist_assets.ml.data.dataset_spec import DatasetSpec
from mnist_assets.ml.models.training import TrainConfig

ROLES = ("checkpoint", "folds", "finetune", "cnn")
# About what ten MNIST epochs give ~8,000; a 600-image folder (80 steps in ten epochs) reached 69%
# and, with this minimum and the batch affine, 100% on test (docs/recipes.md).
MIN_STEPS = 1000

# The LeNets keep the state of the highest validation accuracy, not the lowest validation loss: on
# validation labels as noisy as train's, a review of train moved the lowest loss to an early state and
# cost 2.5-4 points of clean-test accuracy, where the highest accuracy held or gained
# (scripts/keep_rule_study.py; docs/label-cleaning.md, "When validation is as noisy as train").
NOISE_PROOF_KEEP = "accuracy"
ROLE_DEFAULTS = {
    "checkpoint": {"keep": NOISE_PROOF_KEEP},
    # The fold models score label quality: plain, whatever the checkpoint's augmentation (on MNIST
    # affine-trained models ranked the confirmed label errors worse, docs/label-errors.md).
    "folds": {"batch_augmentation": "none", "keep": NOISE_PROOF_KEEP},
    # Fine-tuning from the checkpoint: one-cycle to 1e-3 with the batch affine, the last state kept
    # (docs/recipes.md, "Augmentation strategies").
    "finetune": {"epochs": 15, "lr": 1e-3, "batch_augmentation": "affine", "keep": "last"},
    # The release candidate beside LeNet (docs/recipes.md, "Models worth releasing"): a VGG-style net
    # with batch norm, batch 128, label smoothing 0.1, the augmentation the classes allow (digits: the
    # affine; clothes and photos: shifts and mirror images). No moving average of the weights: at the
    # end of the one-cycle schedule it was no better than the annealed weights themselves. The last
    # state is kept: with label smoothing the lowest validation loss fell at epoch 6, 8 and 10 of 15 in
    # three MNIST runs, 0.2-0.4 points below the annealed end (99.49% validation, 99.70% test). bf16
    # autocast where the device has it in hardware: on this CPU (AVX-512 BF16) 12.5 s per MNIST epoch
    # against 15.8, at 99.65% test; Fashion-MNIST 93.70% (93.82% in fp32): within a seed's spread.
    "cnn": {"arch": "vgg_small", "epochs": 15, "batch_size": 128, "label_smoothing": 0.1, "keep": "last", "precision": "auto"},
}
# Few labels (train holds fewer labels than validation, as under a label budget): LeNet keeps its last
# state rather than choose one on a validation split holding more labels than the budget, and trains
# with the batch affine unless the declaration says otherwise (100 MNIST labels, 1,000 steps: 84.8% test
# without it, 92.0% with it; docs/active-learning.md).
FEW_LABELS = {"keep": "last", "batch_augmentation": "affine"}
# What a GPU affords the CNN beyond this CPU's budget: the wider net, twice the epochs.
GPU_SCALE = {"arch": {"vgg_small": "vgg_wide"}, "epochs": 2}


def declared(role: str, spec: DatasetSpec) -> dict:
    """What the dataset's declaration says for a role."""
    if role == "checkpoint":
        return {"epochs": spec.checkpoint_epochs or spec.epochs, "batch_augmentation": spec.checkpoint_augmentation}
    if role == "folds":
        return {"epochs": spec.epochs}
    if role == "cnn":
        # Clothes and photos: shifts, mirror images and random erasing (30 Fashion-MNIST epochs: 93.82%
        # test against 93.55% for 20 without erasing); digits: the affine alone (docs/recipes.md).
        augmentation = {"batch_augmentation": "shift", "random_erasing": 0.5} if spec.flips else {"batch_augmentation": "affine"}
        found = {"arch": spec.cnn_arch, "epochs": spec.cnn_epochs, **augmentation}
        return {name: value for name, value in found.items() if value is not None}
    return {}


def scaled_for_device(role: str, values: dict, device: str) -> dict:
    """The CNN's recipe on a GPU: the wider net and more epochs (GPU_SCALE); other roles unchanged."""
    if role != "cnn" or not device.startswith("cuda"):
        return values
    return {**values, "arch": GPU_SCALE["arch"].get(values["arch"], values["arch"]), "epochs": values["epochs"] * GPU_SCALE["epochs"]}


def few_labels(train_labels: int, validation_labels: int) -> bool:
    """Whether a checkpoint trains on few labels: fewer in train than validation holds."""
    return train_labels < validation_labels


def resolve(
    role: str,
    spec: DatasetSpec,
    chosen: dict,
    env_epochs: int | None = None,
    arch: str | None = None,
    device: str = "cpu",
    scarce: bool = False,
    pooled: bool = False,
) -> TrainConfig:
    """The TrainConfig of `role` for `spec`: `chosen` holds the fields a person set (None values are
    ignored), `env_epochs` MNIST_ASSETS_EPOCHS, `arch` an architecture the role must keep (fine-tuning
    continues the checkpoint's), `device` where it trains (the budget: scaled_for_device), `scarce`
    whether train has few labels (`few_labels`: the checkpoint's FEW_LABELS recipe), `pooled` whether
    the pool's spread labels train too (ml/models/pseudo_labels.py): a set of tens of thousands, so the
    few-labels fit's MIN_STEPS steps rather than epochs of it."""
    if role not in ROLES:
        raise ValueError(f"unknown training role {role!r}; one of {ROLES}")
    chosen = {name: value for name, value in chosen.items() if value is not None}
    unknown = set(chosen) - set(TrainConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"not training settings: {sorted(unknown)}")
    if arch is not None and chosen.get("arch", arch) != arch:
        raise ValueError(f"the {role} recipe continues the {arch!r} model; drop `arch` ({chosen['arch']!r}) from its config")
    values = scaled_for_device(role, {**ROLE_DEFAULTS[role], **declared(role, spec)}, device)
    if scarce and role == "checkpoint":
        values.update({name: value for name, value in FEW_LABELS.items() if getattr(spec, name, None) is None})
    if env_epochs:
        values["epochs"] = env_epochs
    values.update(chosen)
    values["horizontal_flip"] = spec.flips
    if arch is not None:
        values["arch"] = arch
    explicit_epochs = "epochs" in chosen or bool(env_epochs)
    if pooled and not explicit_epochs:
        values.update(epochs=1, min_steps=MIN_STEPS)
    values.setdefault("min_steps", 0 if explicit_epochs else MIN_STEPS)
    return TrainConfig(**values).validate()
