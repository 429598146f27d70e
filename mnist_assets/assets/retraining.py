"""Whether a training asset trains on this run (ml/models/retrain_policy.py), and what it yields when
it keeps its model: the same data version, so nothing downstream re-runs for the model's sake."""

import dagster as dg

from mnist_assets.assets.common import DATA_VERSION_TAG, Pipeline, latest_materialization, parent_data_version
from mnist_assets.assets.data import checkpoint_path
from mnist_assets.resources import Settings

FROM_AUTOMATION = "dagster/from_automation_condition"  # the tag Dagster puts on automation's runs
SPLITS_TRAINED_ON = ("train", "validation")  # validation chooses each model's kept state


def trained_on_path(store, name: str):
    return store.artifact_path("retrain", f"{name}.npz")  # beside, not in, the checkpoints folder


def training_set(context, p: Pipeline, settings: Settings, base: str | None = None):
    """The samples the models learn from now, each with its label in use (none: unlabeled or excluded),
    and what else the model is built from: its code version, and `base`'s data version (the model it
    starts from)."""
    from mnist_assets.ml.core.field_names import GROUND_TRUTH
    from mnist_assets.ml.models.retrain_policy import current
    from mnist_assets.ml.store.fiftyone_store import split_view, usable_view

    dataset = p.store(settings).dataset()
    sample_ids, labels = [], {}
    for split in SPLITS_TRAINED_ON:
        sample_ids += split_view(dataset, split).values("id")
        usable_ids, usable_labels = usable_view(dataset, split).values(["id", f"{GROUND_TRUTH}.label"])
        labels.update(zip(usable_ids, usable_labels))
    built_from = context.assets_def.code_versions_by_key.get(context.asset_key) or ""
    if base is not None:
        built_from += f", {base} {parent_data_version(context, p.key(base))}"
    return current(sample_ids, labels, built_from)


def retrain_decision(context, p: Pipeline, settings: Settings, name: str, base: str | None = None):
    """(trains, why, the training set now): a run a person, a backfill or `make run` started always
    trains; automation's trains by the declaration's `retrain` policy (and whenever `base`, the
    model it starts from, changed)."""
    from mnist_assets.ml.models.retrain_policy import load_trained_on, retrain_due

    now = training_set(context, p, settings, base)
    if context.run.tags.get(FROM_AUTOMATION) != "true":
        return True, "asked for (a person, a backfill or make run: not automation)", now
    store = p.store(settings)
    if not checkpoint_path(store, name).is_file() or latest_materialization(context.instance, p.key(name)) is None:
        return True, "no model yet", now
    due, why = retrain_due(load_trained_on(trained_on_path(store, name)), now, p.spec.retrain_policy)
    return due, why, now


def record_training_set(p: Pipeline, settings: Settings, name: str, trained_on) -> None:
    """After the model's checkpoint is written: what it trained on, for the next decision."""
    from mnist_assets.ml.models.retrain_policy import save_trained_on

    save_trained_on(trained_on_path(p.store(settings), name), trained_on)


def kept_model_result(context, p: Pipeline, name: str, why: str, **changes) -> dg.MaterializeResult:
    """The earlier materialization's metadata (with `changes`) and data version: the model is kept."""
    context.log.info(f"{p.name}/{name}: {why}")
    earlier = latest_materialization(context.instance, p.key(name)).asset_materialization
    version = earlier.tags.get(DATA_VERSION_TAG)
    metadata = {**earlier.metadata, **changes, "retrained": False, "retrain": why}
    return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(version) if version else None)
