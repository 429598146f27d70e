"""Re-runs from outside the graph: sensors on a dataset's source folder and on its human review.

The weekly refresh is raw_dataset's cron automation condition (automation.py);
everything downstream follows by lineage.
"""

import hashlib
import json
import os
from pathlib import Path

import dagster as dg

from mnist_assets.ml.dataset_spec import DatasetSpec
from mnist_assets.ml.mnist_source import DEBIAN_FASHION_MNIST, SPLITS
from mnist_assets.resources import MnistSettings

IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def source_fingerprint(folder: Path, recursive: bool = False) -> str:
    """Names, sizes and modification times of the source files in `folder`: the IDX files, or
    (`recursive`) every file of an image folder."""
    digest = hashlib.sha256()
    files = (p for p in folder.rglob("*") if p.is_file()) if recursive else folder.glob("*-ubyte*")
    for path in sorted(files):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()


def watched_folder(spec: DatasetSpec) -> str | None:
    """The folder a dataset's files are read from, when it is one a user can change."""
    if spec.source == "mnist":
        return os.environ.get("MNIST_ASSETS_SOURCE_DIR") or (str(spec.folder) if spec.folder else None)
    if spec.source == "folder":
        return str(spec.folder)
    return str(spec.folder or DEBIAN_FASHION_MNIST)


def build_source_sensor(spec: DatasetSpec, job) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"{spec.name}_source_sensor",
        job=job,
        minimum_interval_seconds=60,
        description=(
            f"Re-ingests every split of {spec.name} when its source files are added or change "
            "(MNIST: MNIST_ASSETS_SOURCE_DIR or `path`; Fashion-MNIST: `path` or Debian's copy; folder: `path`)."
        ),
    )
    def source_sensor(context: dg.SensorEvaluationContext):
        folder = watched_folder(spec)
        if not folder or not Path(folder).is_dir():
            return dg.SkipReason(f"no source folder to watch for {spec.name}.")
        fingerprint = source_fingerprint(Path(folder), recursive=spec.source == "folder")
        if fingerprint == context.cursor:
            return dg.SkipReason(f"{spec.name} source files unchanged.")
        context.update_cursor(fingerprint)
        # Train and validation both come from the training files, so any change affects every split.
        return [dg.RunRequest(run_key=f"{fingerprint[:16]}-{split}", partition_key=split) for split in SPLITS]

    return source_sensor


def _dataset_activity(dataset, log_path: Path) -> str:
    """Cheap signs of any change: sample count, the newest sample edit and deletion (indexed), the
    review log's size and time. Unchanged, no split can hold a new decision."""
    newest = dataset.sort_by("last_modified_at", reverse=True).limit(1).values("last_modified_at")
    dataset.reload()
    stat = log_path.stat() if log_path.is_file() else None
    return repr((len(dataset), newest, dataset.last_deletion_at, stat and (stat.st_size, stat.st_mtime_ns)))


def _recorded_fingerprint(instance, key: dg.AssetKey, split: str) -> str | None:
    """The review fingerprint label_review[split] recorded at its latest materialization."""
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key, asset_partitions=[split]), limit=1).records
    if not records:
        return None
    entry = records[0].asset_materialization.metadata.get("review_fingerprint")
    return entry.value if entry is not None else None


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
    def review_sensor(context: dg.SensorEvaluationContext, settings: MnistSettings):
        from mnist_assets.ml.decisions import SplitSamples, review_fingerprint
        from mnist_assets.ml.fiftyone_store import split_view

        store = settings.store(spec.name)
        if not store.exists():
            return dg.SkipReason(f"no FiftyOne dataset {store.name!r} yet.")
        dataset, log = store.dataset(), store.decision_log()
        cursor = json.loads(context.cursor) if context.cursor else {}
        activity = _dataset_activity(dataset, log.path)
        if cursor.get("activity") == activity:
            return dg.SkipReason(f"{spec.name}: no change since the last look.")
        decisions, requests, busy = log.by_key(), [], False
        for split in SPLITS:
            if _writing(context.instance, [review_key, raw_key], split):
                busy = True  # its labels are being written: look again next time
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
