"""The duplicate and leak finders (FiftyOne Brain's exact duplicates, the one near-copy search), as the
pipeline runs them, on real digits with planted copies."""

import fiftyone as fo
import numpy as np
from PIL import Image

from mnist_assets.ml.quality.duplicates import NEAR_DUPLICATE_THRESHOLD, find_duplicates_and_leaks, pixel_embeddings


def test_planted_copies_of_test_images_in_train_are_found(make_settings, mnist, tmp_path):
    rng = np.random.default_rng(0)
    train, test = mnist.train_images[:150], mnist.test_images[:60]
    exact_copy = test[0]  # the same pixels again: a byte-identical PNG
    noisy_copy = np.clip(test[1].astype(int) + rng.integers(-12, 13, test[1].shape), 0, 255).astype(np.uint8)  # re-encoded, retouched
    rows = [("train", image) for image in train] + [("test", image) for image in test] + [("train", exact_copy), ("train", noisy_copy)]
    samples = []
    for i, (split, image) in enumerate(rows):
        path = tmp_path / f"{i}.png"
        Image.fromarray(image).save(path)
        samples.append(fo.Sample(filepath=str(path), split=split))
    dataset = make_settings().store("mnist").dataset()
    dataset.add_samples(samples)
    ids = dataset.values("id")
    images = np.stack([image for _, image in rows])

    report = find_duplicates_and_leaks(dataset, ids, images, "split", NEAR_DUPLICATE_THRESHOLD)

    test_0, test_1, planted_exact, planted_noisy = ids[150], ids[151], ids[-2], ids[-1]
    assert report.exact_duplicate_ids == sorted([test_0, planted_exact])
    assert sorted(map(sorted, report.groups)) == sorted([sorted([test_0, planted_exact]), sorted([test_1, planted_noisy])])
    assert report.leaks_between == {("test", "train"): 2, ("train", "test"): 2}
    assert set(report.leak_ids) == {test_0, test_1, planted_exact, planted_noisy}
    split_of = dict(zip(ids, dataset.values("split")))
    assert [group[0] for group in report.leak_groups(split_of, "test")] in ([test_0, test_1], [test_1, test_0])
    assert report.leak_groups(split_of, "validation") == []


def test_pixel_embeddings_are_one_row_per_image():
    images = np.full((4, 1, 8, 8), 255, dtype=np.uint8)
    vectors = pixel_embeddings(images)
    assert vectors.shape == (4, 64) and vectors.dtype == np.float32 and vectors.max() == 1.0
