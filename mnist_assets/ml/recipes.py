"""The training recipe of each role, decided in one place.

Roles: `checkpoint` (lenet_checkpoint), `folds` (the fold models of lenet_oof_predictions) and
`finetune` (finetuned_model). A recipe field comes from, in this order:

1. what a person set for the run (the asset's config in the Launchpad),
2. the environment (`MNIST_ASSETS_EPOCHS`, for quick runs),
3. the dataset's declaration (`checkpoint_epochs`, `epochs`, `batch_augmentation`, `horizontal_flip`),
4. the role's defaults below.

When the epochs come from 3 or 4, a small dataset still gets at least MIN_STEPS optimizer steps:
ten epochs of a few hundred images are 80 steps, far from trained (`TrainConfig.min_steps`).
"""

from __future__ import annotations

from mnist_assets.ml.dataset_spec import DatasetSpec
from mnist_assets.ml.training import TrainConfig

ROLES = ("checkpoint", "folds", "finetune")
# About what ten MNIST epochs give ~8,000; a 600-image folder (80 steps in ten epochs) reached 69%
# and, with this minimum and the batch affine, 100% on test (docs/recipes.md).
MIN_STEPS = 1000

ROLE_DEFAULTS = {
    "checkpoint": {},
    # The fold models score label quality: plain, whatever the checkpoint's augmentation (on MNIST
    # affine-trained models ranked the confirmed label errors worse, docs/label-errors.md).
    "folds": {"batch_augmentation": "none"},
    # Fine-tuning from the checkpoint: one-cycle to 1e-3 with the batch affine, the last state kept
    # (docs/recipes.md, "Augmentation strategies").
    "finetune": {"epochs": 15, "lr": 1e-3, "batch_augmentation": "affine", "keep": "last"},
}


def declared(role: str, spec: DatasetSpec) -> dict:
    """What the dataset's declaration says for a role."""
    if role == "checkpoint":
        return {"epochs": spec.checkpoint_epochs or spec.epochs, "batch_augmentation": spec.checkpoint_augmentation}
    if role == "folds":
        return {"epochs": spec.epochs}
    return {}


def resolve(role: str, spec: DatasetSpec, chosen: dict, env_epochs: int | None = None, arch: str | None = None) -> TrainConfig:
    """The TrainConfig of `role` for `spec`: `chosen` holds the fields a person set (None values are
    ignored), `env_epochs` MNIST_ASSETS_EPOCHS, `arch` an architecture the role must keep (fine-tuning
    continues the checkpoint's)."""
    if role not in ROLES:
        raise ValueError(f"unknown training role {role!r}; one of {ROLES}")
    chosen = {name: value for name, value in chosen.items() if value is not None}
    unknown = set(chosen) - set(TrainConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"not training settings: {sorted(unknown)}")
    if arch is not None and chosen.get("arch", arch) != arch:
        raise ValueError(f"the {role} recipe continues the {arch!r} model; drop `arch` ({chosen['arch']!r}) from its config")
    values = {**ROLE_DEFAULTS[role], **declared(role, spec)}
    if env_epochs:
        values["epochs"] = env_epochs
    values.update(chosen)
    values["horizontal_flip"] = spec.flips
    if arch is not None:
        values["arch"] = arch
    explicit_epochs = "epochs" in chosen or bool(env_epochs)
    values.setdefault("min_steps", 0 if explicit_epochs else MIN_STEPS)
    return TrainConfig(**values).validate()
