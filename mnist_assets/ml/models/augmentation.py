"""The series' augmentations (affine, elastic, grid distortion), drawn per sample on batches with kornia, seeded."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import kornia.augmentation as K
import numpy as np
import torch
import torch.nn.functional as F

from mnist_assets.ml.data.tensors import channels_first
from mnist_assets.ml.models.selection import STRATEGIES, select_samples

BATCH_AUGMENTATIONS = ("none", "affine", "flip", "shift")
# Part of the stored copies' folder name: change it with series_augmentation or augment_images, so
# that copies made by other code are never reused.
AUGMENTATION_VERSION = "2"


class GridDistortion(torch.nn.Module):
    """Albumentations-style grid distortion, per sample of a batch: each of `num_steps` cells per axis
    is stretched by up to `distort_limit`, applied with probability `p`.

    Neither torchvision nor kornia has one; this is albumentations' piecewise-linear remap done
    with one `grid_sample` over the batch. Takes and returns [B, C, H, W] (or one [C, H, W]) of
    the input's dtype.
    """

    def __init__(self, num_steps: int = 3, distort_limit: float = 0.1, p: float = 1.0):
        super().__init__()
        self.num_steps = num_steps
        self.distort_limit = distort_limit
        self.p = p

    def _axis(self, batch: int, size: int) -> torch.Tensor:
        """[batch, size] source positions in [-1, 1] for the output pixels along one axis."""
        stretch = 1 + (torch.rand(batch, self.num_steps) * 2 - 1) * self.distort_limit
        knots = torch.cat([torch.zeros(batch, 1), torch.cumsum(stretch, 1)], 1)
        knots = knots / knots[:, -1:]
        u = torch.linspace(0, 1, size) * self.num_steps
        cell = u.floor().clamp(max=self.num_steps - 1).long()
        fraction = u - cell
        positions = knots[:, cell] + fraction * (knots[:, cell + 1] - knots[:, cell])
        return positions * 2 - 1

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        single = images.ndim == 3
        batch = images.unsqueeze(0) if single else images
        count, _, height, width = batch.shape
        gy, gx = self._axis(count, height), self._axis(count, width)
        grid = torch.stack([gx[:, None, :].expand(count, height, width), gy[:, :, None].expand(count, height, width)], dim=-1)
        warped = F.grid_sample(batch.float(), grid, mode="bilinear", align_corners=True)
        chosen = (torch.rand(count) < self.p).view(count, 1, 1, 1)
        out = torch.where(chosen, warped, batch.float())
        if not batch.dtype.is_floating_point:
            out = out.round().clamp(0, 255)
        out = out.to(batch.dtype)
        return out[0] if single else out


def series_augmentation(image_size: int = 28, horizontal_flip: bool = False) -> torch.nn.Sequential:
    """The series' augmentations on batches of [0, 1] images, drawn per sample: affine (translate 0.1,
    scale 0.9-1.1, rotate 10) p 0.8; elastic (torchvision's alpha 20 px and sigma 5) p 0.6; grid
    distortion (3 steps, 0.1) p 0.3; and a mirror image at p 0.5 where the classes allow it."""
    kernel = min(41, 2 * (image_size // 2) - 1)  # torchvision's 8 * sigma + 1, smaller for small images
    return torch.nn.Sequential(
        *([K.RandomHorizontalFlip(p=0.5)] if horizontal_flip else []),
        K.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1), p=0.8),
        # kornia's displacement is in [-1, 1] units, torchvision's alpha in pixels: alpha / size.
        K.RandomElasticTransform(kernel_size=(kernel, kernel), sigma=(5.0, 5.0), alpha=(20.0 / image_size, 20.0 / image_size), p=0.6),
        GridDistortion(num_steps=3, distort_limit=0.1, p=0.3),
    )


def copies_key(images_uint8: torch.Tensor, copies: int, seed: int, horizontal_flip: bool = False) -> str:
    """A name for the augmented copies of these images: it changes with their pixels, the number of
    copies, the seed, the flips and AUGMENTATION_VERSION, everything that determines the output."""
    digest = hashlib.sha1(f"{AUGMENTATION_VERSION}|{copies}|{seed}|{horizontal_flip}|{tuple(images_uint8.shape)}".encode())
    digest.update(np.ascontiguousarray(images_uint8.numpy()).tobytes())
    return digest.hexdigest()[:12]


def augment_images(
    images_uint8: torch.Tensor, copies: int, seed: int, horizontal_flip: bool = False, chunk: int = 2048
) -> tuple[torch.Tensor, torch.Tensor]:
    """`copies` augmented versions of each image (uint8 [N, C, H, W], or gray [N, H, W]): uint8
    [N*copies, C, H, W], each image's copies next to each other, and the source position of each."""
    images_uint8 = channels_first(images_uint8)
    sources = torch.arange(len(images_uint8)).repeat_interleave(copies)
    transform = series_augmentation(images_uint8.shape[-1], horizontal_flip)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        out = [
            (transform(images_uint8[sources[start : start + chunk]].float() / 255.0) * 255.0).round().clamp(0, 255).to(torch.uint8)
            for start in range(0, len(sources), chunk)
        ]
    finally:
        torch.random.set_rng_state(state)
    return (torch.cat(out) if out else torch.zeros((0, *images_uint8.shape[1:]), dtype=torch.uint8)), sources


class BackgroundErasing(torch.nn.Module):
    """kornia's random erasing with a fill of `background`: kornia takes fills in [0, 1] only, and
    standardized images have a negative background, so the rectangle is erased to 0 around it."""

    def __init__(self, p: float, background: float):
        super().__init__()
        self.erase = K.RandomErasing(p=p, value=0.0)
        self.background = float(background)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        shifted = images - self.background
        # Untouched pixels stay bit-identical (adding the background back would round them).
        return torch.where(self.erase(shifted) == shifted, images, torch.full_like(images, self.background))


def batch_augmentation(
    name: str, background: float, horizontal_flip: bool = False, image_size: int = 28, erasing: float = 0.0
) -> torch.nn.Module | None:
    """On-the-fly augmentation of normalized training batches, a new draw per sample and epoch.

    `affine` is the series' affine (rotate 10 degrees, translate 0.1, scale 0.9-1.1) at p 0.5,
    with kornia because torchvision's v2 transforms draw one set of parameters per batch. `shift` is
    the crop of the CIFAR and Fashion-MNIST recipes: every image moved by up to 2 pixels each way (a
    random crop of the image padded by 2). Pixels shifted in are `background` (a black pixel after
    standardization). Both mirror half the images where the classes allow it (`horizontal_flip`).
    `erasing` > 0 then blanks a random rectangle (2-33% of the image, background-filled) in that share of
    the images: random erasing (Zhong et al. 2020), for any name. Elastic and grid distortion are left to
    the stored augmented set: on a CPU they cost several times the training step itself.
    """
    if name not in BATCH_AUGMENTATIONS:
        raise ValueError(f"unknown batch augmentation {name!r}; choose one of {BATCH_AUGMENTATIONS}")
    if not 0.0 <= erasing <= 1.0:
        raise ValueError(f"random erasing is a probability in [0, 1], got {erasing}")
    augment = _batch_augmentation(name, background, horizontal_flip, image_size)
    if not erasing:
        return augment
    erase = BackgroundErasing(erasing, background)
    return erase if augment is None else torch.nn.Sequential(augment, erase)


def _batch_augmentation(name: str, background: float, horizontal_flip: bool, image_size: int) -> torch.nn.Module | None:
    if name == "none":
        return None
    if name == "flip":  # a mirror image only: for classes that allow it (clothes), without the affine
        if not horizontal_flip:
            raise ValueError("batch augmentation 'flip' needs a dataset whose classes allow mirror images (horizontal_flip)")
        return K.RandomHorizontalFlip(p=0.5)
    fill = torch.tensor([float(background)])
    if name == "shift":
        shift = K.RandomCrop((image_size, image_size), padding=2, fill=float(background))
        return torch.nn.Sequential(K.RandomHorizontalFlip(p=0.5), shift) if horizontal_flip else shift
    affine = K.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1), padding_mode="fill", fill_value=fill, p=0.5)
    return torch.nn.Sequential(K.RandomHorizontalFlip(p=0.5), affine) if horizontal_flip else affine


def check_copies_settings(strategy: str, budget: int, copies: int) -> None:
    """Refuse a strategy, budget or number of copies that cannot work, before any work."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown selection strategy {strategy!r}; choose one of {STRATEGIES}")
    if budget <= 0 or copies <= 0:
        raise ValueError(f"budget and copies must be positive integers, got {budget} and {copies}")


@dataclass
class AugmentedCopies:
    """Augmented copies of the training samples a strategy chose."""

    chosen: np.ndarray  # positions in the training split, most wanted first
    images: torch.Tensor  # uint8 [len(chosen) * copies, C, H, W], each source's copies next to each other
    sources: np.ndarray  # the training-split position of each copy's source
    copy_number: np.ndarray  # 0 .. copies - 1 for each copy
    key: str  # names the copies' folder: it changes with everything that determines their pixels


def augment_chosen(
    images_uint8: torch.Tensor, scores: dict, strategy: str, budget: int, copies: int, seed: int, horizontal_flip: bool
) -> AugmentedCopies:
    """The series' step 7: choose training samples by `strategy` (ml/models/selection.py; `scores` as
    `read_scores` gives them) and make `copies` augmented versions of each."""
    check_copies_settings(strategy, budget, copies)
    chosen = select_samples(strategy, budget, **scores)
    picked = channels_first(images_uint8)[torch.as_tensor(chosen, dtype=torch.long)]
    images, sources = augment_images(picked, copies, seed, horizontal_flip)
    return AugmentedCopies(
        chosen, images, chosen[sources.numpy()], np.tile(np.arange(copies), len(chosen)), copies_key(picked, copies, seed, horizontal_flip)
    )
