"""The series' augmentations (affine, elastic, grid distortion) with torchvision transforms v2, seeded."""

from __future__ import annotations

import kornia.augmentation as K
import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from mnist_assets.ml.tensors import MNIST_MEAN, MNIST_STD, channels_first

BATCH_AUGMENTATIONS = ("none", "affine", "flip")


class GridDistortion(torch.nn.Module):
    """Albumentations-style grid distortion: each of `num_steps` cells per axis is stretched by up to `distort_limit`.

    torchvision has no grid distortion; this is the same piecewise-linear remap
    done with `grid_sample`.
    """

    def __init__(self, num_steps: int = 3, distort_limit: float = 0.1):
        super().__init__()
        self.num_steps = num_steps
        self.distort_limit = distort_limit

    def _axis(self, size: int) -> torch.Tensor:
        stretch = 1 + (torch.rand(self.num_steps) * 2 - 1) * self.distort_limit
        source_knots = torch.cat([torch.zeros(1), torch.cumsum(stretch, 0)])
        source_knots = source_knots / source_knots[-1]
        output_knots = torch.linspace(0, 1, self.num_steps + 1)
        positions = np.interp(np.linspace(0, 1, size), output_knots.numpy(), source_knots.numpy())
        return torch.from_numpy(positions).float() * 2 - 1

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        gy, gx = torch.meshgrid(self._axis(height), self._axis(width), indexing="ij")
        grid = torch.stack([gx, gy], dim=-1).unsqueeze(0)
        warped = F.grid_sample(image.float().reshape(1, -1, height, width), grid, mode="bilinear", align_corners=True)
        return warped.round().clamp(0, 255).to(image.dtype).reshape(image.shape)


def series_augmentation(horizontal_flip: bool = False) -> v2.Compose:
    """affine (translate 0.1, scale 0.9-1.1, rotate 10) p 0.8; elastic (alpha 20, sigma 5) p 0.6; grid (3 steps, 0.1) p 0.3;
    and a mirror image at p 0.5 where the classes allow it (clothes, not digits)."""
    return v2.Compose(
        ([v2.RandomHorizontalFlip(p=0.5)] if horizontal_flip else [])
        + [
            v2.RandomApply([v2.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1))], p=0.8),
            v2.RandomApply([v2.ElasticTransform(alpha=20.0, sigma=5.0)], p=0.6),
            v2.RandomApply([GridDistortion(num_steps=3, distort_limit=0.1)], p=0.3),
        ]
    )


def augment_images(
    images_uint8: torch.Tensor, copies: int, seed: int, horizontal_flip: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """`copies` augmented versions of each image (uint8 [N, C, H, W], or gray [N, H, W]): uint8
    [N*copies, C, H, W] and the source position of each."""
    images_uint8 = channels_first(images_uint8)
    transform = series_augmentation(horizontal_flip)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        out = [transform(image) for image in images_uint8 for _ in range(copies)]
    finally:
        torch.random.set_rng_state(state)
    sources = torch.arange(len(images_uint8)).repeat_interleave(copies)
    if not out:
        return torch.zeros((0, *images_uint8.shape[1:]), dtype=torch.uint8), sources
    return torch.stack(out), sources


def batch_augmentation(
    name: str, background: float = -MNIST_MEAN / MNIST_STD, horizontal_flip: bool = False
) -> torch.nn.Module | None:
    """On-the-fly augmentation of normalized training batches, a new draw per sample and epoch.

    `affine` is the series' affine (rotate 10 degrees, translate 0.1, scale 0.9-1.1) at p 0.5,
    with kornia because torchvision's v2 transforms draw one set of parameters per batch. Pixels
    shifted in are `background` (a black pixel after standardization). Elastic and grid distortion are left to
    the stored augmented set: on a CPU they cost several times the training step itself.
    """
    if name not in BATCH_AUGMENTATIONS:
        raise ValueError(f"unknown batch augmentation {name!r}; choose one of {BATCH_AUGMENTATIONS}")
    if name == "none":
        return None
    if name == "flip":  # a mirror image only: for classes that allow it (clothes), without the affine
        if not horizontal_flip:
            raise ValueError("batch augmentation 'flip' needs a dataset whose classes allow mirror images (horizontal_flip)")
        return K.RandomHorizontalFlip(p=0.5)
    fill = torch.tensor([float(background)])
    affine = K.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1), padding_mode="fill", fill_value=fill, p=0.5)
    return torch.nn.Sequential(K.RandomHorizontalFlip(p=0.5), affine) if horizontal_flip else affine
