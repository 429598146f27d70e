"""The declaration of one image-classification dataset: what a `defs.yaml` says, checked.

Plain pydantic, no Dagster: the component turns one of these into the asset graph
of that dataset, and the ML code reads shapes, classes and augmentations from it.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mnist_assets.ml.core.environment import REPO_ROOT
from mnist_assets.ml.core.field_names import ISSUE_TYPES
from mnist_assets.ml.data.label_errors import CONFIRMED_TEST_LABEL_ERRORS

SPLITS = ("train", "validation", "test")  # every dataset's partitions; validation comes from the training images
IDX_SIZES = (28, 32)  # the IDX sources' 28x28 images, as stored or centred in a 32x32 field
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")
DIGITS = [str(digit) for digit in range(10)]
UNLABELED = -1  # the class position of a sample no one has labeled (its ground_truth is empty)
SEEDS = 2**32  # NumPy's and scikit-learn's seeds are 0 to 2**32 - 1
IDX_TEST_SIZE = 10_000  # MNIST's and Fashion-MNIST's test files
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
KEEP_RELEASES = 5  # release versions kept by default (`keep_releases`): the champion's and the newest


def label_names(labels, classes: list[str]) -> list[str | None]:
    """Class positions as names; UNLABELED (a sample no one has labeled) as None."""
    return [None if int(label) == UNLABELED else classes[int(label)] for label in labels]


class DatasetSpecError(ValueError):
    """A dataset declaration the pipeline cannot use."""


class LabelNoise(BaseModel):
    """Declared label noise (ml/data/label_noise.py): about `rate` of the labels of `splits` replaced by
    other classes from a noise matrix of `sparsity` (0: any other class; 0.6: a few class pairs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate: float = Field(gt=0, lt=0.9)
    sparsity: float = Field(0.0, ge=0, lt=1)
    splits: tuple[Literal["train", "validation"], ...] = ("train", "validation")  # test is never noised
    seed: int = Field(0, ge=0, lt=SEEDS)

    @field_validator("splits")
    @classmethod
    def _splits(cls, value: tuple) -> tuple:
        if not value:
            raise DatasetSpecError("label_noise.splits is empty: name train, validation or both (test is never noised), or leave it out.")
        return value


class LabelBudget(BaseModel):
    """For measuring label-efficient training where the truth is known: all but `labeled` of the
    train split's labels hidden (seeded per sample, the same on every re-ingest), the truth kept in
    `ground_truth_clean` as declared label noise keeps it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    labeled: int = Field(ge=0)  # 0: every train label hidden (a benchmark's cold start; training needs some)
    seed: int = Field(0, ge=0, lt=SEEDS)


class RetrainPolicy(BaseModel):
    """When automation trains a model again (ml/models/retrain_policy.py): past `new_fraction` new
    samples, after `max_age_days`, and always after a person's label decisions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    new_fraction: float = Field(0.05, ge=0)  # 0: every new sample retrains
    max_age_days: float = Field(7.0, gt=0)


class DatasetSpec(BaseModel):
    """One dataset: where its images come from, the shape the pipeline works at, and its classes.

    `mnist` and `fashion-mnist` are 28x28 grayscale with their ten classes (`path`: a folder
    of their four IDX files, optional), worked on at 28x28 or, zero-padded, at 32x32. `folder` is
    a user's image-classification tree at `path` (one sub-folder per class, optionally under
    `train/` and `test/`), converted once at ingest to `image_size` x `image_size` with `channels`
    (1 gray, 3 RGB); its classes are its sub-folders (sorted) unless `class_names` orders them. Validation is a seeded, stratified
    `validation_fraction` of the training images (no source has a validation split); a folder
    without `test/` gives a seeded, stratified `test_fraction` of its images to test.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    source: Literal["mnist", "fashion-mnist", "folder"]
    path: Optional[str] = None
    image_size: int = Field(28, ge=16, le=256)  # LeNet-5 needs at least 16 pixels
    channels: Literal[1, 3] = 1
    class_names: Optional[list[str]] = None
    validation_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0, lt=0.5)  # folders without a test/ sub-folder
    split_seed: int = Field(51, ge=0, lt=SEEDS - 1)  # validation is drawn with split_seed + 1
    horizontal_flip: Optional[bool] = None  # digits: no; clothes: yes
    clip_class_names: Optional[list[str]] = None
    clip_templates: Optional[list[str]] = None
    label_errors: Optional[list[int]] = None  # test-file indices of confirmed label errors
    epochs: int = Field(10, ge=1)  # every LeNet's: the checkpoint's unless checkpoint_epochs says, the fold models'
    checkpoint_epochs: Optional[int] = Field(None, ge=1)  # lenet_checkpoint's, where it needs more (batch augmentation)
    # lenet_checkpoint's per-batch augmentation: "none", "affine" (random affine per sample and epoch)
    # or "flip"; default: "affine" for a folder (a few hundred photos need it: docs/recipes.md), "none"
    # for the IDX sources. The fold models that score label quality always train without it: on MNIST
    # affine-trained models are more accurate but rank the confirmed label errors worse (docs/label-errors.md).
    batch_augmentation: Optional[Literal["none", "affine", "flip"]] = None
    # cnn_checkpoint, the release candidate beside LeNet (ml/models/recipes.py: default vgg_small, 15 epochs).
    # This is the CPU's budget: on a GPU the recipe takes the wider net and twice the epochs.
    cnn_arch: Optional[Literal["lenet5", "resnet_small", "vgg_small", "vgg_wide"]] = None
    cnn_epochs: Optional[int] = Field(None, ge=1)
    accuracy_gate: Optional[float] = Field(None, ge=0, le=1)  # blocking validation-accuracy floor
    # For measuring the review loop where the truth is known: the attributes of LabelNoise (a plain
    # dict here, checked by it, because Dagster's component attributes cannot hold a nested model).
    label_noise: Optional[dict] = None
    # The same for label budgets: `{labeled, seed}` (LabelBudget), train's other labels hidden.
    label_budget: Optional[dict] = None
    # A folder: images no one has labeled yet (any layout below it); they join train without a label.
    unlabeled: Optional[str] = None
    # How many unlabeled samples label_requests proposes at a time (the to-label view, the requests file).
    label_batch: int = Field(100, ge=1)
    # lenet_checkpoint on few labels: the unlabeled pool trains too, with labels spread from the given
    # ones along its pixels (ml/models/pseudo_labels.py; never stored as labels). On where it was
    # measured to help (MNIST: docs/active-learning.md); off by default, as on Fashion-MNIST, where it did not.
    pool_labels: bool = False
    # What label_requests ranks the unlabeled pool on and pool_labels spread along (ml/data/pixel_embedding.py):
    # the pixels' principal components, or their gradients' (HOG), chosen per dataset by measurement
    # (docs/active-learning.md: HOG on MNIST, the pixels on Fashion-MNIST and by default).
    pool_embedding: Literal["pixels", "hog"] = "pixels"
    # data_issues' blocking checks: issue type -> the largest share of a split that may be flagged
    # (e.g. {dark: 0.05}); the types not named only warn.
    issue_gates: Optional[dict[str, float]] = None
    # Where data_issues looks for outliers: the pixels, and CLIP's embedding where real weights exist
    # (then data_issues follows clip_embeddings, and refuses random weights).
    outlier_spaces: list[Literal["pixels", "clip"]] = ["pixels"]
    # A folder: refuse the whole ingest on an unreadable file (default: ingest the rest, report the file).
    strict: bool = False
    # model_release keeps the release in use and the newest `keep_releases` versions, removing older ones.
    keep_releases: int = Field(KEEP_RELEASES, ge=1)
    # When automation retrains the models: `{new_fraction, max_age_days}` (RetrainPolicy; default 5%, 7 days).
    retrain: Optional[dict] = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise DatasetSpecError(
                f"name {value!r} is not allowed: use letters, digits and '_', starting with a letter "
                "(it becomes the asset key prefix and the FiftyOne dataset name)."
            )
        return value

    @field_validator("label_noise")
    @classmethod
    def _label_noise(cls, value: dict | None) -> dict | None:
        return None if value is None else LabelNoise(**value).model_dump()

    @field_validator("label_budget")
    @classmethod
    def _label_budget(cls, value: dict | None) -> dict | None:
        return None if value is None else LabelBudget(**value).model_dump()

    @field_validator("retrain")
    @classmethod
    def _retrain(cls, value: dict | None) -> dict | None:
        return None if value is None else RetrainPolicy(**value).model_dump()

    @property
    def retrain_policy(self) -> RetrainPolicy:
        return RetrainPolicy(**(self.retrain or {}))

    @field_validator("issue_gates")
    @classmethod
    def _issue_gates(cls, value: dict | None) -> dict | None:
        for issue, share in (value or {}).items():
            if issue not in ISSUE_TYPES:
                raise DatasetSpecError(f"issue_gates: unknown issue type {issue!r}; the types are {', '.join(ISSUE_TYPES)}.")
            if not 0 <= share <= 1:
                raise DatasetSpecError(f"issue_gates: {issue}: {share} is not a share of the split (0 to 1), e.g. 0.05 for 5%.")
        return value

    @field_validator("outlier_spaces")
    @classmethod
    def _outlier_spaces(cls, value: list[str]) -> list[str]:
        if "pixels" not in value:
            raise DatasetSpecError(f"outlier_spaces: {value} leaves out the pixels; declare [pixels] or [pixels, clip].")
        return list(dict.fromkeys(value))

    @property
    def noise(self) -> LabelNoise | None:
        """The declared label noise, if any."""
        return LabelNoise(**self.label_noise) if self.label_noise is not None else None

    @property
    def budget(self) -> LabelBudget | None:
        """The declared label budget, if any."""
        return LabelBudget(**self.label_budget) if self.label_budget is not None else None

    @property
    def has_unlabeled(self) -> bool:
        """Whether some samples come without a label (then the graph proposes which to label)."""
        return self.label_budget is not None or self.unlabeled is not None

    @property
    def unlabeled_folder(self) -> Path | None:
        """`unlabeled` as a folder, taken as `path` is."""
        return REPO_ROOT / Path(self.unlabeled).expanduser() if self.unlabeled else None

    @model_validator(mode="after")
    def _consistent(self) -> DatasetSpec:
        if self.class_names is not None:
            if len(self.class_names) < 2 or len(set(self.class_names)) != len(self.class_names):
                raise DatasetSpecError(f"dataset {self.name!r}: class_names must list at least two distinct names.")
            if self.source != "folder" and len(self.class_names) != 10:
                raise DatasetSpecError(f"dataset {self.name!r}: {self.source} has 10 classes; class_names lists {len(self.class_names)}.")
        if self.unlabeled is not None and self.source != "folder":
            raise DatasetSpecError(
                f"dataset {self.name!r}: `unlabeled` is a folder dataset's folder of images without labels; "
                f"{self.source} declares hidden labels with label_budget: {{labeled: N}} instead."
            )
        if self.unlabeled is not None and not self.unlabeled_folder.is_dir():
            raise DatasetSpecError(
                f"dataset {self.name!r}: unlabeled folder {self.unlabeled_folder} does not exist; create it or fix `unlabeled`."
            )
        if self.source == "folder":
            if not self.path:
                raise DatasetSpecError(f"dataset {self.name!r}: a folder dataset needs `path`, the folder of class sub-folders.")
            self._check_folder_classes()
        elif self.image_size not in IDX_SIZES or self.channels != 1:
            raise DatasetSpecError(
                f"dataset {self.name!r}: {self.source} images are 28x28 grayscale; declare image_size: 28 (or 32: "
                "zero-padded by 2 pixels, LeNet-5's input in the 1998 paper) and channels: 1 (other shapes are for `source: folder`)."
            )
        self._check_label_noise()
        self._check_label_errors()
        if self.clip_class_names is not None and len(self.clip_class_names) != len(self.classes()):
            raise DatasetSpecError(f"dataset {self.name!r}: clip_class_names must have one name per class.")
        for template in self.clip_templates or []:
            if template.count("{}") != 1:
                raise DatasetSpecError(f"dataset {self.name!r}: CLIP template {template!r} needs exactly one '{{}}'.")
        return self

    def _check_label_noise(self) -> None:
        # cleanlab's noise matrix needs its trace, classes x (1 - rate), above 1: a noisy label must
        # stay likelier right than wrong, else ingest fails on "trace > 1" three steps later.
        if self.noise is None:
            return
        classes = len(self.classes())  # a folder's: listed once
        if self.noise.rate >= 1 - 1 / classes:
            raise DatasetSpecError(
                f"dataset {self.name!r}: label_noise.rate {self.noise.rate} is too high for {classes} classes "
                f"(a label must stay likelier right than wrong); declare a rate below {1 - 1 / classes:.3g}."
            )

    def _check_label_errors(self) -> None:
        bad = [index for index in self.label_errors or [] if index < 0 or (self.source != "folder" and index >= IDX_TEST_SIZE)]
        if bad:
            where = "0 or more" if self.source == "folder" else f"0 to {IDX_TEST_SIZE - 1}"
            raise DatasetSpecError(
                f"dataset {self.name!r}: label_errors {bad[:5]} are not test-file indices ({where}); list the positions of "
                "the test images whose labels were confirmed wrong."
            )

    def _check_folder_classes(self) -> None:
        from mnist_assets.ml.data.folder_source import class_folders, has_test_split, training_counts

        found = class_folders(self.folder)  # refuses a missing folder or fewer than two classes
        # A class of more images than this holds out at least one for test and one for validation.
        enough = math.ceil(1 / min(self.test_fraction, self.validation_fraction * (1 - self.test_fraction))) + 2
        self._check_fractions(training_counts(self.folder, enough), has_test_split(self.folder))
        if self.class_names is not None and sorted(self.class_names) != found:
            raise DatasetSpecError(
                f"dataset {self.name!r}: class_names {sorted(self.class_names)} do not match the class sub-folders "
                f"{found} of {self.folder}; rename the folders or fix class_names."
            )

    def _check_fractions(self, counts: list[int], split_already: bool) -> None:
        """Refuse a test or validation fraction that holds out no image of any class (sources.held_out
        takes round(fraction x count) of each class), which loaded and then failed at training. A folder
        with no images yet is left to ingest, which names the empty class."""
        if not any(counts):
            return
        if not split_already:
            if not any(round(self.test_fraction * count) for count in counts):
                raise DatasetSpecError(
                    f"dataset {self.name!r}: test_fraction {self.test_fraction} holds out no test image ({max(counts)} "
                    f"images in the largest class); raise it to at least {1 / max(counts):.3g}, add images, "
                    "or give the folder train/ and test/ sub-folders."
                )
            counts = [count - round(self.test_fraction * count) for count in counts]
        if not any(round(self.validation_fraction * count) for count in counts):
            raise DatasetSpecError(
                f"dataset {self.name!r}: validation_fraction {self.validation_fraction} leaves no validation image "
                f"({max(counts)} training images in the largest class); raise it to at least "
                f"{1 / max(counts):.3g}, or add images."
            )

    @property
    def folder(self) -> Path | None:
        """`path` as a folder: `~` expanded, a relative path taken from the project root."""
        return REPO_ROOT / Path(self.path).expanduser() if self.path else None

    def classes(self) -> list[str]:
        """The ordered class names (label i of the source is class i)."""
        if self.class_names is not None:
            return list(self.class_names)
        if self.source == "folder":
            from mnist_assets.ml.data.folder_source import class_folders

            return class_folders(self.folder)
        return DIGITS if self.source == "mnist" else FASHION

    def conversion(self):
        """What ingest does to this source's images, and predict to any image (ml/data/image_conversion.py):
        the IDX sources' 28 x 28 digits and clothes centred on black, a folder's images resized and
        their transparency composited on white (what image viewers show behind it)."""
        from mnist_assets.ml.data.image_conversion import Conversion

        if self.source == "folder":
            return Conversion(self.image_size, self.channels, "bilinear", background=255)
        return Conversion(self.image_size, self.channels, "pad", source_size=IDX_SIZES[0], background=0)

    def model_shape(self) -> dict:
        """What a classifier for this dataset is built with (and its checkpoint records)."""
        return {"num_classes": len(self.classes()), "in_channels": self.channels, "image_size": self.image_size}

    @property
    def checkpoint_augmentation(self) -> str:
        """lenet_checkpoint's per-batch augmentation: the declared one, else affine for a folder."""
        return self.batch_augmentation or ("affine" if self.source == "folder" else "none")

    @property
    def flips(self) -> bool:
        """Whether a mirrored image is still an image of its class (digits: no)."""
        return self.horizontal_flip if self.horizontal_flip is not None else self.source != "mnist"

    @property
    def gate(self) -> float:
        """The validation accuracy a full-data training must reach (MNIST 0.98, Fashion-MNIST 0.88)."""
        if self.accuracy_gate is not None:
            return self.accuracy_gate
        return {"mnist": 0.98, "fashion-mnist": 0.88}.get(self.source, 0.0)

    @property
    def known_label_errors(self) -> list[int]:
        if self.label_errors is not None:
            return list(self.label_errors)
        # The MNIST test labels human reviewers confirmed wrong (ml/data/label_errors.py cites the source).
        return list(CONFIRMED_TEST_LABEL_ERRORS) if self.source == "mnist" else []
