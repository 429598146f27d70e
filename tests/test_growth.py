"""Data that grows (issue 47): per-sample work is done once per sample. A re-ingest with one new
image embeds and predicts that image and keeps every other embedding as it was; a changed setting
embeds all; changed prompts predict all again without embedding any."""

import dagster as dg
import numpy as np
from image_folders import folder_declaration, write_shapes_folder
from PIL import Image

from mnist_assets.ml.data.dataset_spec import DatasetSpec
from mnist_assets.ml.store.fiftyone_store import split_view
from mnist_assets.pipeline import build_pipeline_defs
from mnist_assets.run_all import materialize_stage

SPLITS = ("train", "validation", "test")


def embed(spec, settings, instance, configs=None, read="clip_embeddings") -> dict[str, dict]:
    """raw_dataset, label_review, clip_embeddings and zero_shot_predictions of every split, as a
    refresh runs them: each split's metadata of `read`, or of both CLIP assets (`read` None)."""
    defs = build_pipeline_defs(spec)
    names = ("raw_dataset", "label_review", "clip_embeddings", "zero_shot_predictions")
    keys = [dg.AssetKey([spec.name, name]) for name in names]
    found = {}
    for split in SPLITS:
        result = materialize_stage(instance, keys, split, {"settings": settings}, defs.assets, configs)
        assert result.success, split
        for name in names[2:]:
            (event,) = result.asset_materializations_for_node(f"{spec.name}__{name}")
            found.setdefault(name, {})[split] = {entry: value.value for entry, value in event.metadata.items()}
    return found[read] if read else found


def computed(found: dict) -> int:
    return sum(found[split]["computed"] for split in SPLITS)


def vectors(dataset) -> dict[str, np.ndarray]:
    """Each sample's embedding by its file."""
    paths, stored = dataset.values(["filepath", "clip_embeddings"])
    return {path: np.asarray(vector) for path, vector in zip(paths, stored)}


def test_one_new_image_is_embedded_and_no_other_and_a_changed_setting_embeds_all(make_settings, tmp_path):
    root = write_shapes_folder(tmp_path / "shapes", per_class=20, test_per_class=8, size=32)
    spec = DatasetSpec(**folder_declaration(root, name="growing_shapes"))
    settings = make_settings()
    instance = dg.DagsterInstance.ephemeral()

    first = embed(spec, settings, instance)
    count = sum(first[split]["count"] for split in SPLITS)
    assert count == 84 and computed(first) == count
    dataset = settings.store(spec.name).dataset()
    before = vectors(dataset)

    # Nothing changed: every embedding is kept.
    again = embed(spec, settings, instance)
    assert [again[split]["computed"] for split in SPLITS] == [0, 0, 0] and sum(again[s]["reused"] for s in SPLITS) == count

    # One new file: that image is embedded, every other vector is bit for bit the one kept.
    original = next((root / "train" / "circle").glob("*.png"))
    Image.open(original).rotate(90).save(root / "train" / "circle" / "zz_new.png")
    grown = embed(spec, settings, instance)
    assert computed(grown) == 1
    assert sum(grown[split]["reused"] for split in SPLITS) == count
    dataset.reload()
    after = vectors(dataset)
    assert len(after) == count + 1 and set(before) < set(after)
    assert all(np.array_equal(before[path], after[path]) for path in before)
    (new_path,) = set(after) - set(before)
    assert new_path.endswith(".png") and after[new_path].shape == (64,) and abs(np.linalg.norm(after[new_path]) - 1) < 1e-5

    # Another preprocessing setting: every sample embedded again, with other vectors.
    config = {dg.AssetKey([spec.name, "clip_embeddings"]): {"invert": True}}
    inverted = embed(spec, settings, instance, configs=config)
    assert computed(inverted) == count + 1
    assert len({inverted[split]["fingerprint"] for split in SPLITS}) == 1 != first["train"]["fingerprint"]
    dataset.reload()
    assert not any(np.array_equal(after[path], vector) for path, vector in vectors(dataset).items())
    assert len(split_view(dataset, "train").exists("clip_embeddings_key")) == len(split_view(dataset, "train"))
    # The zero-shot predictions followed: each one's key names the embedding it was predicted from.
    predicted = embed(spec, settings, instance, configs=config, read="zero_shot_predictions")
    assert computed(predicted) == 0 and all(predicted[split]["count"] == inverted[split]["count"] for split in SPLITS)

    # Other prompts: every sample predicted again, no image embedded again.
    prompts = {**config, dg.AssetKey([spec.name, "zero_shot_predictions"]): {"templates": ["a drawing of a {}."]}}
    found = embed(spec, settings, instance, configs=prompts, read=None)
    assert computed(found["clip_embeddings"]) == 0 and computed(found["zero_shot_predictions"]) == count + 1
