"""Re-runs from outside the graph: sensors on a dataset's source folder, on its human review, and
on its Label Studio project.

The weekly refresh is raw_dataset's cron automation condition (automation.py);
everything downstream follows by lineage.
"""

import json

import dagster as dg
from dagster._core.definitions.data_version import DATA_VERSION_TAG, get_input_event_pointer_tag  # the tags Dagster records

from mnist_assets.assets.common import latest_materialization
from mnist_assets.ml.data.dataset_spec import SPLITS, DatasetSpec
from mnist_assets.ml.data.sources import watched_fingerprint
from mnist_assets.resources import Settings

IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def _recorded_source_fingerprints(instance, raw_key: dg.AssetKey) -> list[str | None]:
    """The source fingerprint each split's latest ingest recorded (None: never ingested, or before
    raw_dataset recorded it)."""
    found = []
    for split in SPLITS:
        record = latest_materialization(instance, raw_key, split)
        entry = record.asset_materialization.metadata.get("source_fingerprint") if record else None
        found.append(entry.value if entry is not None else None)
    return found


def build_source_sensor(spec: DatasetSpec, job, raw_key: dg.AssetKey) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"{spec.name}_source_sensor",
        job=job,
        minimum_interval_seconds=60,
        description=(
            f"Re-ingests every split of {spec.name} when its source files are added or change "
            "(MNIST: MNIST_ASSETS_SOURCE_DIR or `path`; Fashion-MNIST: `path` or Debian's copy; folder: `path` and `unlabeled`), "
            "compared with what the last ingest of each split recorded."
        ),
    )
    def source_sensor(context: dg.SensorEvaluationContext, settings: Settings):
        fingerprint = watched_fingerprint(spec, settings.source_dir)
        if not fingerprint:
            return dg.SkipReason(f"no source folder to watch for {spec.name}.")
        # The first tick after the sensor is turned on starts from what the ingests recorded, so
        # turning it on re-ingests nothing that is already in.
        seen = [context.cursor] * len(SPLITS) if context.cursor else _recorded_source_fingerprints(context.instance, raw_key)
        context.update_cursor(fingerprint)
        if all(recorded == fingerprint for recorded in seen):
            return dg.SkipReason(f"{spec.name} source files unchanged since the last ingest.")
        # Train and validation both come from the training files, so any change affects every split.
        return [dg.RunRequest(run_key=f"{fingerprint[:16]}-{split}", partition_key=split) for split in SPLITS]

    return source_sensor


def _dataset_activity(dataset, log) -> str:
    """Cheap signs of any change: sample count, the newest sample edit and deletion (indexed), the
    review log's files. Unchanged, no split can hold a new decision."""
    newest = dataset.sort_by("last_modified_at", reverse=True).limit(1).values("last_modified_at")
    dataset.reload()
    return repr((len(dataset), newest, dataset.last_deletion_at, log.signature()))


def _recorded_fingerprint(instance, key: dg.AssetKey, split: str) -> str | None:
    """The review fingerprint label_review[split] recorded at its latest materialization."""
    record = latest_materialization(instance, key, split)
    entry = record.asset_materialization.metadata.get("review_fingerprint") if record else None
    return entry.value if entry is not None else None


def _ingested_since_review(instance, raw_key: dg.AssetKey, review_key: dg.AssetKey, split: str) -> bool:
    """Whether the split's content changed since its last review: automation runs label_review next.
    A re-ingest that changed nothing keeps its data version and re-runs nothing: the sensor's job."""
    raw, review = latest_materialization(instance, raw_key, split), latest_materialization(instance, review_key, split)
    if raw is None or review is None:
        return raw is not None
    pointer = review.asset_materialization.tags.get(get_input_event_pointer_tag(raw_key))  # the ingest it reviewed
    if pointer is None or int(pointer) == raw.storage_id:
        return raw.storage_id > review.storage_id
    reviewed = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=raw_key, storage_ids=[int(pointer)]), limit=1).records
    version = raw.asset_materialization.tags.get(DATA_VERSION_TAG)
    return not reviewed or reviewed[0].asset_materialization.tags.get(DATA_VERSION_TAG) != version


def _writing(instance, keys: list[dg.AssetKey], split: str) -> bool:
    """Whether a run that writes this split's labels (its ingest or its review) is queued or running."""
    runs = instance.get_runs(dg.RunsFilter(statuses=IN_FLIGHT, tags={"dagster/partition": split}))
    return any(run.asset_selection and set(keys) & set(run.asset_selection) for run in runs)


def build_review_sensor(spec: DatasetSpec, review_key: dg.AssetKey, raw_key: dg.AssetKey) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"{spec.name}_review_sensor",
        asset_selection=[review_key],
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Materializes {spec.name}/label_review[split] when a person acts on that split: a ground_truth edited in "
            "the FiftyOne App, a review tag (review:exclude, review:ok, relabel:<class>), or decisions added to the "
            "review log (`python -m mnist_assets.review import`); automation then re-runs what depends on that split."
        ),
    )
    def review_sensor(context: dg.SensorEvaluationContext, settings: Settings):
        from mnist_assets.ml.decisions import SplitSamples, review_fingerprint
        from mnist_assets.ml.store.fiftyone_store import split_view

        store = settings.store(spec.name)
        if not store.exists():
            return dg.SkipReason(f"no FiftyOne dataset {store.name!r} yet.")
        dataset, log = store.dataset(), store.decision_log()
        cursor = json.loads(context.cursor) if context.cursor else {}
        activity = _dataset_activity(dataset, log)
        if cursor.get("activity") == activity:
            return dg.SkipReason(f"{spec.name}: no change since the last look.")
        decisions, requests, busy = log.by_key(), [], False
        for split in SPLITS:
            if _writing(context.instance, [review_key, raw_key], split) or _ingested_since_review(
                context.instance, raw_key, review_key, split
            ):
                busy = True  # its labels are being written, or the lineage reviews them next: look again later
                continue
            recorded = _recorded_fingerprint(context.instance, review_key, split)
            if recorded is None:
                continue  # never reviewed: the lineage materializes it after the split's ingest
            current = review_fingerprint(SplitSamples.read(split_view(dataset, split)), decisions, split)
            if current not in (recorded, cursor.get(split)):
                requests.append(dg.RunRequest(partition_key=split, tags={"mnist_assets/launched_by": "review sensor"}))
                cursor[split] = current
        if not busy:
            cursor["activity"] = activity
        context.update_cursor(json.dumps(cursor))
        return requests or dg.SkipReason(f"{spec.name}: no new decisions.")

    return review_sensor


def build_label_studio_sensor(spec: DatasetSpec) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"{spec.name}_label_studio_sensor",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.STOPPED,  # a person turns it on where a Label Studio runs
        description=(
            f"Records the finished answers of {spec.name}'s Label Studio project (`make annotate`) in its review log, "
            f"as `make annotate-pull` does, every minute; {spec.name}_review_sensor then applies them. Off by default."
        ),
    )
    def label_studio_sensor(context: dg.SensorEvaluationContext, settings: Settings):
        from mnist_assets.annotation.answers import record_answers
        from mnist_assets.annotation.client import LabelStudioError, connect

        store = settings.store(spec.name)
        if not store.exists():
            return dg.SkipReason(f"no FiftyOne dataset {store.name!r} yet.")
        try:
            pulled = record_answers(connect(settings.home_path), spec, store, settings.source_dir, settings.downloads_dir)
        except LabelStudioError as error:
            return dg.SkipReason(f"{spec.name}: {error}.")
        done = pulled.summary()
        if pulled.decisions:
            context.log.info(f"{spec.name}: recorded {done['recorded']} from Label Studio project {pulled.project}")
        return dg.SkipReason(
            f"{spec.name}: recorded {sum(done['recorded'].values())} decisions from Label Studio project {pulled.project} "
            f"({spec.name}_review_sensor applies them); not recorded: {done['not_recorded'] or 'none'}."
        )

    return label_studio_sensor
