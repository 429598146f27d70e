"""Data that grows (issue 47): per-sample work is done once per sample. A re-ingest with one new
image embeds and predicts that image and keeps every other embedding as it was; a changed setting
embeds all; changed prompts predict all again without embedding any."""

import dagster as dg
import numpy as np
from image_folders import folder_declaration, write_shapes_folder
from PIL import Image

from mnist_assets.ml.data.dataset_spec import DatasetSpec
from mnist_assets.ml.figures.projection_growth import load_fitted
from mnist_assets.ml.store.fiftyone_store import split_view
from mnist_assets.pipeline import build_pipeline_defs
from mnist_assets.run_all import materialize_stage

SPLITS = ("train", "validation", "test")


def embed(spec, settings, instance, configs=None) -> dict[str, dict]:
    """raw_dataset, label_review, clip_embeddings, zero_shot_predictions and umap_projection of every
    split, as a refresh runs them: the metadata of the last three, by asset and split."""
    defs = build_pipeline_defs(spec)
    names = ("raw_dataset", "label_review", "clip_embeddings", "zero_shot_predictions", "umap_projection")
    keys = [dg.AssetKey([spec.name, name]) for name in names]
    found = {}
    for split in SPLITS:
        result = materialize_stage(instance, keys, split, {"settings": settings}, defs.assets, configs)
        assert result.success, split
        for name in names[2:]:
            (event,) = result.asset_materializations_for_node(f"{spec.name}__{name}")
            found.setdefault(name, {})[split] = {entry: value.value for entry, value in event.metadata.items()}
    return found


def computed(found: dict, name: str) -> int:
    return sum(found[name][split]["computed"] for split in SPLITS)


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
    count = sum(first["clip_embeddings"][split]["count"] for split in SPLITS)
    assert count == 84 and computed(first, "clip_embeddings") == count == computed(first, "zero_shot_predictions")
    store = settings.store(spec.name)
    dataset = store.dataset()
    before = vectors(dataset)
    projected = load_fitted(store.artifact_path("projections", "train-umap.npz"))
    assert len(projected.sample_ids) == first["clip_embeddings"]["train"]["count"] and not projected.placed.any()

    # One new file: that image is embedded and predicted, every other vector is bit for bit the one kept.
    original = next((root / "train" / "circle").glob("*.png"))
    Image.open(original).rotate(90).save(root / "train" / "circle" / "zz_new.png")
    grown = embed(spec, settings, instance)
    assert computed(grown, "clip_embeddings") == 1 == computed(grown, "zero_shot_predictions")
    assert sum(grown["clip_embeddings"][split]["reused"] for split in SPLITS) == count
    dataset.reload()
    after = vectors(dataset)
    assert len(after) == count + 1 and set(before) < set(after)
    assert all(np.array_equal(before[path], after[path]) for path in before)
    (new_path,) = set(after) - set(before)
    assert new_path.endswith(".png") and after[new_path].shape == (64,) and abs(np.linalg.norm(after[new_path]) - 1) < 1e-5
    # ... and placed into its split's UMAP, not refitted: every other point stays where it was.
    split = next(split for split in SPLITS if grown["clip_embeddings"][split]["computed"])
    umap = grown["umap_projection"][split]
    assert umap["umap_placed"] == 1 and umap["umap_fit"].startswith("1 new samples placed into the fit")
    now = load_fitted(store.artifact_path("projections", f"{split}-umap.npz"))
    if split == "train":
        earlier = dict(zip(projected.sample_ids.tolist(), projected.points))
        assert all(np.array_equal(earlier[i], point) for i, point in zip(now.sample_ids.tolist(), now.points) if i in earlier)
    (new_point,) = now.points[now.placed]
    assert np.isfinite(new_point).all()

    # Nothing changed since: nothing computed, every point kept.
    again = embed(spec, settings, instance)
    assert computed(again, "clip_embeddings") == 0 == computed(again, "zero_shot_predictions")
    assert again["umap_projection"][split]["umap_fit"].startswith("0 new samples placed")

    # Another preprocessing setting: every sample embedded and predicted again, every UMAP refitted.
    config = {dg.AssetKey([spec.name, "clip_embeddings"]): {"invert": True}}
    inverted = embed(spec, settings, instance, configs=config)
    assert computed(inverted, "clip_embeddings") == count + 1 == computed(inverted, "zero_shot_predictions")
    fingerprints = {inverted["clip_embeddings"][split]["fingerprint"] for split in SPLITS}
    assert len(fingerprints) == 1 and fingerprints != {first["clip_embeddings"]["train"]["fingerprint"]}
    assert all(inverted["umap_projection"][split]["umap_placed"] == 0 for split in SPLITS)
    assert all(inverted["umap_projection"][split]["umap_fit"].startswith("fitted on") for split in SPLITS)
    dataset.reload()
    assert not any(np.array_equal(after[path], vector) for path, vector in vectors(dataset).items())
    assert len(split_view(dataset, "train").exists("clip_embeddings_key")) == len(split_view(dataset, "train"))

    # Other prompts: every sample predicted again, no image embedded again.
    prompts = {**config, dg.AssetKey([spec.name, "zero_shot_predictions"]): {"templates": ["a drawing of a {}."]}}
    found = embed(spec, settings, instance, configs=prompts)
    assert computed(found, "clip_embeddings") == 0 and computed(found, "zero_shot_predictions") == count + 1


def logits(dataset) -> np.ndarray:
    return np.array(split_view(dataset, "test").values("lenet_predictions.logits"))


def test_predictions_and_embeddings_of_a_model_that_did_not_change_are_kept_and_a_retrained_model_redoes_all(make_settings, tmp_path):
    root = write_shapes_folder(tmp_path / "shapes", per_class=20, test_per_class=8, size=32)
    spec = DatasetSpec(**folder_declaration(root, name="kept_predictions"))
    settings, instance = make_settings(epochs=1), dg.DagsterInstance.ephemeral()
    assets, resources = build_pipeline_defs(spec).assets, {"settings": settings}
    key = lambda name: dg.AssetKey([spec.name, name])  # noqa: E731

    def run(names, partition=None, configs=None):
        result = materialize_stage(instance, [key(name) for name in names], partition, resources, assets, configs)
        assert result.success, names
        return result

    for split in SPLITS:
        run(["raw_dataset", "label_review"], split)

    def predict() -> dict:
        """lenet_predictions[test]'s metadata, and lenet_embeddings[test]'s under "embeddings"."""
        result = run(["lenet_predictions", "lenet_embeddings"], "test")
        found = {}
        for name in ("lenet_predictions", "lenet_embeddings"):
            (event,) = result.asset_materializations_for_node(f"{spec.name}__{name}")
            found[name] = {entry: value.value for entry, value in event.metadata.items()}
        return {**found["lenet_predictions"], "embeddings": found["lenet_embeddings"]}

    run(["lenet_checkpoint"])
    first = predict()
    assert first["count"] == 24 and first["computed"] == 24 == first["embeddings"]["computed"]
    dataset = settings.store(spec.name).dataset()
    before = logits(dataset)

    # The same model again (a label decision on test re-runs its predictions to evaluate them): nothing predicted, all kept.
    again = predict()
    assert (again["computed"], again["reused"]) == (0, 24) and again["accuracy"] == first["accuracy"]
    assert np.array_equal(logits(dataset), before)
    assert again["embeddings"]["computed"] == 0 and again["embeddings"]["umap_fit"].startswith("0 new samples placed")

    # A retrained model (another seed): every sample predicted again.
    run(["lenet_checkpoint"], configs={key("lenet_checkpoint"): {"seed": 7}})
    retrained = predict()
    assert retrained["computed"] == 24 and not np.allclose(logits(dataset), before)
    assert retrained["embeddings"]["computed"] == 24 and retrained["embeddings"]["umap_fit"].startswith("fitted on 24")


def test_a_new_point_lands_among_its_neighbours_and_a_refit_comes_past_five_percent():
    from mnist_assets.ml.figures.projection_growth import Fitted, place_points, plan_projection

    rng = np.random.default_rng(0)
    centres = np.array([[0.0] * 8, [5.0] * 8])
    reference = np.concatenate([centre + rng.normal(0, 0.3, (50, 8)) for centre in centres])
    reference_points = np.concatenate([np.full((50, 2), -10.0), np.full((50, 2), 10.0)]) + rng.normal(0, 0.5, (100, 2))
    placed = place_points(reference, reference_points, centres + rng.normal(0, 0.3, (2, 8)))
    assert np.abs(placed[0] + 10).max() < 1.5 and np.abs(placed[1] - 10).max() < 1.5  # each among its own cluster's points

    ids, keys = [str(i) for i in range(100)], ["k"] * 100
    fitted = Fitted(np.array(ids), np.array(keys), reference_points, np.zeros(100, bool), 100)
    assert plan_projection(None, ids, keys).refit == "no earlier projection"
    five_new = plan_projection(fitted, ids + ["a", "b", "c", "d", "e"], keys + ["k"] * 5)
    assert five_new.refit is None and five_new.new == 5 and five_new.kept[:100].tolist() == list(range(100))
    assert "6 new or changed" in plan_projection(fitted, ids + list("abcdef"), keys + ["k"] * 6).refit
    changed = plan_projection(fitted, ids, ["other"] * 6 + keys[6:])  # another embedding counts as new
    assert changed.refit is not None and (changed.kept[:6] == -1).all()


AUTOMATION = {"dagster/from_automation_condition": "true"}  # the tag automation's runs carry


def test_models_retrain_by_the_policy_and_always_after_a_persons_decision(make_settings, tmp_path):
    from dagster._core.definitions.data_version import DATA_VERSION_TAG

    root = write_shapes_folder(tmp_path / "shapes", per_class=20, test_per_class=8, size=32)
    spec = DatasetSpec(**folder_declaration(root, name="policy_shapes"))
    settings, instance = make_settings(epochs=1), dg.DagsterInstance.ephemeral()
    assets, resources = build_pipeline_defs(spec).assets, {"settings": settings}
    models = [dg.AssetKey([spec.name, name]) for name in ("lenet_checkpoint", "lenet_oof_predictions")]
    store = settings.store(spec.name)

    def ingest():
        for split in SPLITS:
            keys = [dg.AssetKey([spec.name, name]) for name in ("raw_dataset", "label_review")]
            assert materialize_stage(instance, keys, split, resources, assets).success

    def train(tags=None) -> dict:
        result = dg.materialize(assets, selection=models, instance=instance, resources=resources, tags=tags or {}, raise_on_error=False)
        assert result.success
        found = {}
        for key in models:
            (event,) = result.asset_materializations_for_node("__".join(key.path))
            version = instance.get_latest_materialization_event(key).asset_materialization.tags[DATA_VERSION_TAG]
            found[key.path[1]] = {**{name: value.value for name, value in event.metadata.items()}, "version": version}
        return found

    ingest()
    first = train(AUTOMATION)  # no model yet: trains under automation too
    assert all(found["retrained"] for found in first.values()) and first["lenet_checkpoint"]["retrain"] == "no model yet"
    checkpoint = (store.dir / "checkpoints" / "lenet_checkpoint.pt").read_bytes()

    # One new image (1 of 61 train and validation samples): automation keeps both models.
    original = next((root / "train" / "square").glob("*.png"))
    Image.open(original).rotate(90).save(root / "train" / "square" / "zz_new.png")
    ingest()
    kept = train(AUTOMATION)
    for name, found in kept.items():
        assert found["retrained"] is False and found["retrain"].startswith("kept: 1 new samples"), found["retrain"]
        assert found["version"] == first[name]["version"]  # nothing downstream re-runs for the model's sake
    assert (store.dir / "checkpoints" / "lenet_checkpoint.pt").read_bytes() == checkpoint
    dataset = store.dataset()
    train_view = split_view(dataset, "train")
    assert len(train_view.exists("lenet_oof_predictions", False)) == 0  # a new train sample got the fold ensemble's prediction
    assert kept["lenet_oof_predictions"]["count"] == len(train_view)

    # A person's decision in the App (an exclusion on train) retrains both, under automation too.
    sample = train_view.first()
    sample.tags.append("review:exclude")
    sample.save()
    assert materialize_stage(instance, [dg.AssetKey([spec.name, "label_review"])], "train", resources, assets).success
    decided = train(AUTOMATION)
    for name, found in decided.items():
        assert found["retrained"] is True and "a person's decisions" in found["retrain"], found["retrain"]
        assert found["version"] != first[name]["version"]

    # A run a person starts always trains.
    assert all(found["retrained"] and found["retrain"].startswith("asked for") for found in train().values())


def test_the_retrain_policy_names_why_it_trains_or_keeps():
    from mnist_assets.ml.data.dataset_spec import RetrainPolicy
    from mnist_assets.ml.models.retrain_policy import TrainedOn, retrain_due

    ids = np.array([str(i) for i in range(100)])
    labels = np.array(["a"] * 90 + [""] * 10)  # 90 trained on, 10 unlabeled
    before = TrainedOn(ids, labels, "5", trained_at=0.0)
    policy = RetrainPolicy()

    def now(ids=ids, labels=labels, built_from="5", days=1.0):
        return TrainedOn(np.asarray(ids), np.asarray(labels), built_from, trained_at=days * 86400)

    assert retrain_due(None, now(), policy) == (True, "no record of what the model trained on")
    assert retrain_due(before, now(built_from="6"), policy)[0]
    four_new = now(np.concatenate([ids, ["n1", "n2", "n3", "n4"]]), np.concatenate([labels, ["a"] * 4]))
    due, why = retrain_due(before, four_new, policy)
    assert not due and why.startswith("kept: 4 new samples, 4.4% of the 90")
    assert retrain_due(before, four_new, RetrainPolicy(new_fraction=0.0))[0]  # every new sample retrains
    five_new = now(np.concatenate([ids, [f"n{i}" for i in range(5)]]), np.concatenate([labels, ["a"] * 5]))
    assert "5 new samples, more than 5%" in retrain_due(before, five_new, policy)[1]
    relabelled, labelled = labels.copy(), labels.copy()
    relabelled[0], labelled[95] = "b", "a"  # a person's relabel; a label given to an unlabeled sample
    assert all("a person's decisions" in retrain_due(before, now(labels=changed), policy)[1] for changed in (relabelled, labelled))
    assert "3 samples it trained on are gone" in retrain_due(before, now(ids[3:], labels[3:]), policy)[1]
    assert "days ago" in retrain_due(before, now(days=7.5), policy)[1]


def test_a_release_of_the_same_weights_on_grown_data_is_the_same_model():
    """model_release compares the network and weights, not the file: the ONNX file records the data's
    version, so a kept model on grown data would otherwise be released again."""
    import hashlib

    from mnist_assets.ml.models.architectures import build_model
    from mnist_assets.ml.release.export import Probabilities, export_onnx, weights_sha256

    def lenet(seed):
        return Probabilities([build_model("lenet5", seed, num_classes=10, in_channels=1, image_size=28)], 0.13, 0.31)

    model = lenet(0)
    before = export_onnx(model, 1, 28, {"data_version": '{"train": "a"}'})
    grown = export_onnx(model, 1, 28, {"data_version": '{"train": "b"}'})
    assert hashlib.sha256(before).hexdigest() != hashlib.sha256(grown).hexdigest()
    assert weights_sha256(before) == weights_sha256(grown)
    other = export_onnx(lenet(1), 1, 28, {"data_version": '{"train": "a"}'})
    assert weights_sha256(other) != weights_sha256(before)
