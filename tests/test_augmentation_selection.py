"""Augmentation and sample selection on real digits (no Dagster)."""

import numpy as np
import pytest
import torch

from mnist_assets.ml.data.idx_source import MNIST_PIXEL_MEAN, MNIST_PIXEL_STD
from mnist_assets.ml.data.tensors import normalize
from mnist_assets.ml.models.augmentation import GridDistortion, augment_images, batch_augmentation
from mnist_assets.ml.models.selection import STRATEGIES, active_score, select_samples

MEAN, STD = MNIST_PIXEL_MEAN, MNIST_PIXEL_STD
BACKGROUND = -MEAN / STD  # a black pixel, standardized


def test_augmentations_are_seeded_shaped_and_change_pixels(mnist):
    images = torch.from_numpy(mnist.train_images[:20].copy()).unsqueeze(1)  # [N, C, H, W]
    first, sources = augment_images(images, copies=3, seed=5)
    again, _ = augment_images(images, copies=3, seed=5)
    other, _ = augment_images(images, copies=3, seed=6)
    assert first.shape == (60, 1, 28, 28) and first.dtype == torch.uint8
    assert sources.tolist() == [i for i in range(20) for _ in range(3)]
    assert torch.equal(first, again) and not torch.equal(first, other)
    changed = (first.float() - images[sources].float()).abs().mean(dim=(1, 2, 3)) > 1
    assert changed.float().mean() > 0.7  # p(no transform at all) = 0.2 * 0.4 * 0.7 = 0.056
    # Digits stay digits: the ink is still there.
    assert (first.float().mean(dim=(1, 2, 3)) > 10).all()
    # Gray images without a channel axis get one.
    assert torch.equal(augment_images(images[:, 0], copies=3, seed=5)[0], first)


def test_augmentations_keep_rgb_images_rgb(mnist):
    """An RGB image at another size (a digit in colour, 40x40) stays [3, 40, 40], each channel warped alike."""
    gray = torch.nn.functional.interpolate(torch.from_numpy(mnist.train_images[:8].copy()).unsqueeze(1).float(), size=40)
    rgb = (gray * torch.tensor([1.0, 0.5, 0.25]).view(1, 3, 1, 1)).round().to(torch.uint8)
    augmented, _ = augment_images(rgb, copies=2, seed=1, horizontal_flip=True)
    assert augmented.shape == (16, 3, 40, 40) and augmented.dtype == torch.uint8
    # One draw per image for all its channels: the red channel still carries the most ink, green about half of it.
    red, green = augmented[:, 0].float().sum(dim=(1, 2)), augmented[:, 1].float().sum(dim=(1, 2))
    assert torch.allclose(green / red, torch.full_like(red, 0.5), atol=0.03)


def test_grid_distortion_keeps_shape_and_mostly_the_image(mnist):
    image = torch.from_numpy(mnist.train_images[0].copy()).unsqueeze(0)
    torch.manual_seed(0)
    warped = GridDistortion(3, 0.1)(image)
    assert warped.shape == image.shape and warped.dtype == torch.uint8
    assert 0 < (warped.float() - image.float()).abs().mean() < 30


def test_batch_affine_draws_per_sample_and_shifts_in_background(mnist):
    batch = normalize(torch.from_numpy(mnist.train_images[:256].copy()), MEAN, STD)
    augment = batch_augmentation("affine", BACKGROUND)
    torch.manual_seed(3)
    first = augment(batch)
    torch.manual_seed(3)
    assert torch.equal(first, augment(batch))  # seeded through torch's generator, as fit() seeds it
    assert first.shape == batch.shape
    changed = (first - batch).abs().mean(dim=(1, 2, 3)) > 0.05
    assert 0.35 < changed.float().mean() < 0.65  # p 0.5, drawn per sample, not once per batch
    # Background stays background: a blank image is unchanged, and the corners (no ink in MNIST) too.
    blank = normalize(torch.zeros(4, 28, 28, dtype=torch.uint8), MEAN, STD)
    assert torch.allclose(augment(blank), blank, atol=1e-5)
    assert torch.allclose(first[:, :, 0, 0], batch[:, :, 0, 0], atol=1e-4)
    assert batch_augmentation("none", BACKGROUND) is None
    with pytest.raises(ValueError, match="unknown batch augmentation"):
        batch_augmentation("mixup", BACKGROUND)


SCORES = dict(
    correct=np.array([True, False, True, False, True]),
    hardness=np.array([0.1, 0.9, 0.5, 0.3, 0.2]),
    uniqueness=np.array([0.9, 0.1, 0.2, 0.3, 0.4]),
    confidence=np.array([0.99, 0.4, 0.6, 0.5, 0.97]),
)


def test_each_strategy_picks_what_it_says():
    assert select_samples("misclassified", 10, **SCORES).tolist() == [1, 3]  # hardest first
    assert select_samples("hardest", 2, **SCORES).tolist() == [1, 2]
    assert select_samples("most_unique", 1, **SCORES).tolist() == [0]
    assert select_samples("least_confident", 2, **SCORES).tolist() == [1, 3]
    active = select_samples("active", 5, **SCORES)
    assert sorted(active.tolist()) == [0, 1, 2, 3, 4]
    score = active_score(SCORES["hardness"], SCORES["uniqueness"], SCORES["confidence"])
    assert np.all(np.diff(score[active]) <= 0) and score.min() >= 0 and score.max() <= 1
    assert set(STRATEGIES) == {"misclassified", "hardest", "most_unique", "least_confident", "active"}


def test_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="unknown selection strategy 'random'"):
        select_samples("random", 5, **SCORES)


def test_confirmed_label_errors_ranked_and_counted():
    from mnist_assets.ml.data.label_errors import CONFIRMED_TEST_LABEL_ERRORS, known_errors_in_tops, ranks_of_known_errors

    assert len(CONFIRMED_TEST_LABEL_ERRORS) == 15 and {947, 9729, 1621} <= set(CONFIRMED_TEST_LABEL_ERRORS)
    indices = np.arange(10000)
    scores = np.zeros(10000)
    scores[[947, 1621, 1901]] = [3.0, 2.0, 1.0]  # three errors ranked first, second, third
    scores[5] = 2.5  # a correct sample between them
    ranks = ranks_of_known_errors(indices, scores)
    assert (ranks[947], ranks[1621], ranks[1901]) == (0, 2, 3)
    assert len(ranks) == 15 and sorted(ranks.values())[3] > 100  # the other twelve tie at zero, far down
    assert known_errors_in_tops(indices, scores) == {20: 3, 50: 3, 100: 3}
    # Only the errors present in a split are ranked.
    assert set(ranks_of_known_errors(indices[:2000], scores[:2000])) == {947, 1621, 1901}


def test_batch_flip_mirrors_about_half_the_samples_and_only_where_allowed(mnist):
    batch = normalize(torch.from_numpy(mnist.train_images[:256].copy()), MEAN, STD)
    augment = batch_augmentation("flip", BACKGROUND, horizontal_flip=True)
    torch.manual_seed(5)
    out = augment(batch)
    mirrored = torch.tensor([torch.equal(o, b.flip(-1)) for o, b in zip(out, batch)])
    unchanged = torch.tensor([torch.equal(o, b) for o, b in zip(out, batch)])
    assert bool((mirrored | unchanged).all())  # each sample is either mirrored or left as it is
    assert 0.35 < mirrored.float().mean() < 0.65  # p 0.5, per sample
    with pytest.raises(ValueError, match="allow mirror images"):
        batch_augmentation("flip", BACKGROUND)  # digits: a mirrored 2 is not a 2
    # The affine for clothes also mirrors: some outputs are exact mirror images of their input.
    torch.manual_seed(5)
    clothes = batch_augmentation("affine", BACKGROUND, horizontal_flip=True)(batch)
    assert any(torch.equal(o, b.flip(-1)) for o, b in zip(clothes, batch))


def test_batch_shift_moves_each_image_by_at_most_two_pixels_shifting_in_background(mnist):
    """`shift`, the crop of the CIFAR and Fashion-MNIST recipes: every image is itself moved by -2..2
    pixels each way, a new draw per sample; what comes in from the edge is background."""
    batch = normalize(torch.from_numpy(mnist.train_images[:128].copy()), MEAN, STD)
    torch.manual_seed(9)
    out = batch_augmentation("shift", BACKGROUND, image_size=28)(batch)
    assert out.shape == batch.shape
    padded = torch.nn.functional.pad(batch, (2, 2, 2, 2), value=BACKGROUND)
    offsets = []
    for moved, source in zip(out, padded):
        found = [(dy, dx) for dy in range(5) for dx in range(5) if torch.allclose(moved, source[:, dy : dy + 28, dx : dx + 28], atol=1e-5)]
        assert found, "every output is its input moved by at most 2 pixels"
        offsets.append(found[0])
    assert len(set(offsets)) > 10  # drawn per sample, not once per batch
    torch.manual_seed(9)
    clothes = batch_augmentation("shift", BACKGROUND, horizontal_flip=True, image_size=28)(batch)
    assert not torch.allclose(clothes, out)  # mirror images too, where the classes allow them


def test_random_erasing_blanks_one_background_rectangle_in_its_share_of_images(mnist):
    """`erasing`, random erasing after any batch augmentation: in about that share of the images one
    rectangle (2-33% of the image) becomes background; the other images are untouched."""
    batch = normalize(torch.from_numpy(mnist.train_images[:512].copy()), MEAN, STD)
    torch.manual_seed(4)
    out = batch_augmentation("none", BACKGROUND, erasing=0.5)(batch)
    changed = ~(out == batch).flatten(1).all(1)
    assert 0.4 < changed.float().mean() < 0.6
    for moved, source in zip(out[changed], batch[changed]):
        rows, cols = torch.nonzero((moved != source)[0], as_tuple=True)
        box = moved[0, rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert torch.allclose(box, torch.full_like(box, BACKGROUND), atol=1e-5)  # one rectangle, all background
        assert box.numel() <= 0.34 * 28 * 28
    torch.manual_seed(4)
    shifted = batch_augmentation("shift", BACKGROUND, image_size=28, erasing=1.0)(batch)
    assert ((shifted - BACKGROUND).abs() < 1e-5).flatten(1).float().mean(1).min() > 0.02  # every image erased, after the shift
    with pytest.raises(ValueError, match="random erasing is a probability"):
        batch_augmentation("shift", BACKGROUND, erasing=1.5)
