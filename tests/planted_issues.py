"""Real MNIST digits, tinted (a colour dataset), with known issues planted in some of them: the truth
the data-issue checks are judged on (tests/test_data_issues.py)."""

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFilter

PLANTED_PER_TYPE = 20
# An underperforming group: a batch of digits scanned sideways (a quarter turn), labels right. Planted
# apart from the rest (`sideways=`): 6% of a split far from their class raise train's outlier fence.
SIDEWAYS = 60
SIZE = 28


@dataclass
class Planted:
    images: np.ndarray  # uint8 [N, 28, 28, 3]
    labels: np.ndarray
    widths: np.ndarray  # of the files the images came from
    heights: np.ndarray
    truth: dict[str, np.ndarray] = field(default_factory=dict)  # issue type -> bool [N]
    twins: dict[int, int] = field(default_factory=dict)  # a copy and its original, both ways

    @property
    def clean(self) -> np.ndarray:
        """The samples no issue was planted in."""
        return ~np.any(np.stack(list(self.truth.values())), axis=0)


def _tinted(gray: np.ndarray, rng) -> np.ndarray:
    return (gray[..., None] * rng.uniform(0.45, 1.0, size=3)).astype(np.uint8)


def plant_issues(mnist, fashion, per_class: int = 100, seed: int = 0, sideways: int = 0) -> Planted:
    """`per_class` MNIST test digits of each class, tinted, then PLANTED_PER_TYPE of them changed per
    type (darkened, over-exposed, blurred, flat, left gray, files shrunk or stretched), `sideways`
    turned a quarter (a group a model gets wrong), copies of others added, and outliers added (noise,
    Fashion-MNIST photos) with a digit's label."""
    rng = np.random.default_rng(seed)
    positions = np.concatenate([np.flatnonzero(mnist.test_labels == label)[:per_class] for label in range(10)])
    gray_digits = mnist.test_images[positions]
    images = np.stack([_tinted(image, rng) for image in gray_digits])
    labels = mnist.test_labels[positions].astype(np.int64)
    n = len(images)
    widths, heights = np.full(n, SIZE), np.full(n, SIZE)
    order = rng.permutation(n)
    chosen = {
        name: order[i * PLANTED_PER_TYPE : (i + 1) * PLANTED_PER_TYPE]
        for i, name in enumerate(("dark", "light", "blurry", "low_information", "grayscale", "odd_size", "odd_aspect_ratio", "copied"))
    }
    if sideways:
        chosen["underperforming_group"] = order[len(chosen) * PLANTED_PER_TYPE :][:sideways]
    truth = {name: np.zeros(n, dtype=bool) for name in chosen if name != "copied"}
    for name, where in chosen.items():
        if name in truth:
            truth[name][where] = True
    images[chosen["dark"]] = (images[chosen["dark"]] * 0.2).astype(np.uint8)
    images[chosen["light"]] = (255 - (255 - images[chosen["light"]].astype(np.float32)) * 0.04).astype(np.uint8)
    for i in chosen["blurry"]:
        images[i] = np.asarray(Image.fromarray(images[i]).filter(ImageFilter.GaussianBlur(1.5)))
    images[chosen["low_information"]] = rng.integers(100, 104, size=(PLANTED_PER_TYPE, 1, 1, 3), dtype=np.uint8)
    images[chosen["grayscale"]] = gray_digits[chosen["grayscale"]][..., None].repeat(3, axis=-1)
    if sideways:
        images[chosen["underperforming_group"]] = np.rot90(images[chosen["underperforming_group"]], axes=(1, 2))
    widths[chosen["odd_size"]] = heights[chosen["odd_size"]] = 8
    widths[chosen["odd_aspect_ratio"]], heights[chosen["odd_aspect_ratio"]] = 28, 100

    copies = images[chosen["copied"]].copy()
    noise = rng.integers(0, 256, size=(PLANTED_PER_TYPE, SIZE, SIZE, 3), dtype=np.uint8)
    photos = np.stack([_tinted(image, rng) for image in fashion.test_images[:PLANTED_PER_TYPE]])
    extra = np.concatenate([copies, noise, photos])
    images = np.concatenate([images, extra])
    labels = np.concatenate([labels, labels[chosen["copied"]], rng.integers(0, 10, size=2 * PLANTED_PER_TYPE)])
    widths, heights = np.concatenate([widths, np.full(len(extra), SIZE)]), np.concatenate([heights, np.full(len(extra), SIZE)])
    total = len(images)
    truth = {name: np.concatenate([flags, np.zeros(len(extra), dtype=bool)]) for name, flags in truth.items()}
    truth["near_duplicate"] = np.zeros(total, dtype=bool)
    truth["near_duplicate"][chosen["copied"]] = True
    truth["near_duplicate"][n : n + PLANTED_PER_TYPE] = True
    truth["outlier"] = np.zeros(total, dtype=bool)
    truth["outlier"][n + PLANTED_PER_TYPE :] = True
    twins = {int(original): n + k for k, original in enumerate(chosen["copied"])}
    twins.update({copy: original for original, copy in list(twins.items())})
    return Planted(images, labels, widths, heights, truth, twins)


def recall_and_precision(flags: np.ndarray, truth: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    """Recall of the planted samples; precision against false flags on clean samples (a flag on a
    sample planted with another issue, a darkened image also low in information, is not counted)."""
    found = int((flags & truth).sum())
    false = int((flags & clean).sum())
    return found / max(int(truth.sum()), 1), found / max(found + false, 1)


SMALL_CLASS, SMALL_CLASS_COUNT = 9, 5  # the folder's "9" keeps 5 clean digits: under 1% of a split
CORRUPT_FILES = 3


def file_name(planted: Planted, i: int) -> str:
    return f"{planted.labels[i]}/{i:05d}.png"


def write_planted_folder(root, planted: Planted) -> dict[str, dict[str, bool]]:
    """The planted images as a user's folder `root/<digit>/<n>.png`, the odd-sized ones saved at their
    odd size (ingest converts them back to 28x28), a small class, and a few corrupt files. Returns
    each written file's planted truth: path relative to root -> issue type -> planted?"""
    from pathlib import Path

    root = Path(root)
    keep = (planted.labels != SMALL_CLASS) | planted.clean
    small = np.flatnonzero((planted.labels == SMALL_CLASS) & planted.clean)
    keep[small[SMALL_CLASS_COUNT:]] = False
    truth = {}
    for i in np.flatnonzero(keep):
        folder = root / str(planted.labels[i])
        folder.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(planted.images[i])
        if (planted.widths[i], planted.heights[i]) != (SIZE, SIZE):
            image = image.resize((int(planted.widths[i]), int(planted.heights[i])), Image.Resampling.BILINEAR)
        name = file_name(planted, i)
        image.save(root / name)
        truth[name] = {issue: bool(flags[i]) for issue, flags in planted.truth.items()}
    for k in range(CORRUPT_FILES):
        good = (root / "3" / next(name for name in sorted(truth) if name.startswith("3/")).split("/")[1]).read_bytes()
        (root / "3" / f"corrupt_{k}.png").write_bytes(good[: 60 + 10 * k])
    return truth
