"""The project's FiftyOne dataset: one persistent dataset, samples tagged by split.

Writes are bulk (`add_samples`, `set_values`); a split is replaced by staging the
new samples first and deleting the old ones only once the new ones are in, so a
failed ingest leaves the previous split as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import fiftyone as fo
import fiftyone.core.odm as foo
import fiftyone.core.service as fos
import fiftyone.service.util as fosu
import numpy as np
import psutil
from fiftyone import ViewField as F
from PIL import Image
from scipy.special import softmax

from mnist_assets.ml.core.environment import PORT_OWNER_VARIABLE, configure_fiftyone
from mnist_assets.ml.core.errors import MissingInputError
from mnist_assets.ml.core.field_names import (
    GROUND_TRUTH,
    GROUND_TRUTH_CLEAN,
    GROUND_TRUTH_ORIGINAL,
    IMAGE_HASH,
    REVIEW_DECISION,
    REVIEW_LABEL,
    SOURCE_HEIGHT,
    SOURCE_INDEX,
    SOURCE_MODE,
    SOURCE_PATH,
    SOURCE_WIDTH,
    SPLIT,
)
from mnist_assets.ml.core.files import atomic_write_bytes, remove_abandoned_temporaries
from mnist_assets.ml.core.names import check_safe_name
from mnist_assets.ml.data.dataset_spec import label_names
from mnist_assets.ml.store.bulk_writes import (
    classification_document,
    classification_documents,
    set_fields,
    stored_vectors,
    vectors_from_stored,
)
from mnist_assets.ml.store.locks import COLLECTION, LeaseLock, fence_held_locks, lease_lock, local_file_lock
from mnist_assets.ml.store.sample_cache import key_field


def _has_running_mongod(service_process: psutil.Process) -> bool:
    try:
        return any(child.name().startswith("mongod") and child.status() != psutil.STATUS_ZOMBIE for child in service_process.children())
    except psutil.Error:
        return False


def _start_service_for_this_folder(service) -> None:
    """Attach to the embedded database service of *this* database folder, or start one.

    FiftyOne's own `DatabaseService.start` attaches to the first database
    service it finds on the machine, whatever its folder, so two processes with
    different FIFTYONE_DATABASE_DIRs (a test run beside `make run`, two
    MNIST_ASSETS_HOMEs) would silently share one database.
    """
    wanted = ["--dbpath", fo.config.database_dir]
    for process in fosu.find_processes_by_args(service._service_args):
        try:
            cmdline = process.cmdline()
        except psutil.Error:
            continue
        if not any(cmdline[i : i + 2] == wanted for i in range(len(cmdline) - 1)):
            continue
        if not _has_running_mongod(process):
            # A service whose mongod was stopped would hand out a dead port; retire it.
            with contextlib.suppress(psutil.Error):
                process.terminate()
            continue
        try:
            if fosu.send_ipc_message(process, ("register", os.getpid())) is True:
                service.attached, service.child = True, process
                return
        except OSError:
            continue
    fos.Service.start(service)


def connect() -> None:
    """Connect to FiftyOne's database, one process at a time.

    Concurrent first connections (e.g. Dagster's multiprocess executor) would
    each try to start the embedded mongod on the same folder and time out; a
    file lock (the database is not there yet) makes the second wait and find the first one's service.
    """
    configure_fiftyone(fo)
    if fo.config.database_uri:
        return
    # Here, not at import: FiftyOne's service start attaches to any folder's database (above).
    fos.DatabaseService.start = _start_service_for_this_folder
    with local_file_lock("fiftyone_db"):
        foo.get_db_conn()
    os.environ[PORT_OWNER_VARIABLE] = fo.config.database_dir  # for child processes: whose port they inherit


def exclusive(name: str) -> LeaseLock:
    """The lock `name` in the database FiftyOne uses (connected first), one object per process."""
    connect()
    return lease_lock(name, fo.config.database_uri or fo.config.database_dir, foo.get_db_conn()[COLLECTION])


def get_dataset(name: str) -> fo.Dataset:
    """Load the persistent dataset `name`, creating it if needed."""
    check_safe_name(name, "dataset name")
    connect()
    # Runs of different splits may start at once on a new dataset: one creates it.
    with exclusive(f"dataset-{name}"):
        if fo.dataset_exists(name):
            # FiftyOne hands out one object per dataset and process; a warm Celery worker keeps it from
            # task to task, so re-read the document: fields other processes declared meanwhile appear.
            dataset = fo.load_dataset(name)
            dataset.reload()
            return dataset
        return _create_dataset(name)


def _create_dataset(name: str) -> fo.Dataset:
    dataset = fo.Dataset(name, persistent=True)
    dataset.media_type = "image"  # now, not at the first insert, which concurrent runs would race for
    dataset.add_sample_field(SPLIT, fo.StringField)
    dataset.add_sample_field(SOURCE_INDEX, fo.IntField)
    dataset.add_sample_field(IMAGE_HASH, fo.StringField)
    dataset.add_sample_field(GROUND_TRUTH, fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
    _declare_review_fields(dataset)
    dataset.create_index(SPLIT)
    return dataset


def _declare_review_fields(dataset: fo.Dataset) -> None:
    declare_field(dataset, GROUND_TRUTH_ORIGINAL, fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
    declare_field(dataset, REVIEW_DECISION, fo.StringField)
    declare_field(dataset, REVIEW_LABEL, fo.StringField)


def split_view(dataset: fo.Dataset, split: str) -> fo.DatasetView:
    """The samples of one split, in source order (so arrays line up across assets)."""
    return dataset.match(F(SPLIT) == split).sort_by(SOURCE_INDEX)


def usable_view(dataset: fo.Dataset, split: str, with_unlabeled: bool = False) -> fo.DatasetView:
    """The samples of a split that count: all but those a person excluded (ml/decisions.py) and those
    no one has labeled yet. Training, fold models, evaluations, quality scores, augmentation and
    duplicates read these; `with_unlabeled`: those too (what the pixels alone say: data issues)."""
    counted = (F(SPLIT) == split) & (F(REVIEW_DECISION) != "exclude")
    return dataset.match(counted if with_unlabeled else counted & labeled()).sort_by(SOURCE_INDEX)


def labeled():
    """The samples with a label in use (an unlabeled sample's ground_truth has none)."""
    return F(f"{GROUND_TRUTH}.label").exists()


def _png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")  # [H, W] gray or [H, W, 3] RGB
    return buffer.getvalue()


def write_pngs(images: np.ndarray, paths: list[Path], workers: int = 4) -> int:
    """Write each image as a PNG unless a file is already there; returns how many were written.

    PNG paths are derived from verified source content, so an existing file holds
    the same pixels and need not be rewritten.
    """
    todo = [i for i, path in enumerate(paths) if not path.is_file()]
    for folder in {paths[i].parent for i in todo}:
        remove_abandoned_temporaries(folder)  # left by an ingest killed mid-write

    def write(i: int) -> None:
        atomic_write_bytes(paths[i], _png_bytes(images[i]))

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(write, todo))
    return len(todo)


def write_clean_labels(dataset: fo.Dataset, split: str, source_indices, clean_labels, classes: list[str]) -> int:
    """Declared label noise: each sample's true label as `ground_truth_clean` (benchmarks and tests
    read it; the pipeline never does). Writes only what differs; returns how many were written."""
    declare_field(dataset, GROUND_TRUTH_CLEAN, fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
    truth = {int(index): classes[int(label)] for index, label in zip(source_indices, clean_labels)}
    ids, indices, stored = split_view(dataset, split).values(["id", SOURCE_INDEX, f"{GROUND_TRUTH_CLEAN}.label"])
    todo = [
        (sample_id, truth[int(index)]) for sample_id, index, label in zip(ids, indices, stored) if truth.get(int(index), label) != label
    ]
    if todo:
        fence_held_locks()
        set_fields(dataset, [i for i, _ in todo], {GROUND_TRUTH_CLEAN: [classification_document(label) for _, label in todo]})
    return len(todo)


def write_source_files(dataset: fo.Dataset, split: str, source_indices, files: list[str], info: list[tuple[int, int, str]]) -> int:
    """A folder's samples: the file each came from (relative to the declared folder) and that file's
    width, height and mode before ingest converted it, so a person who finds a bad sample knows which
    file to fix. Writes only what differs; returns how many samples were written."""
    columns = (SOURCE_PATH, SOURCE_WIDTH, SOURCE_HEIGHT, SOURCE_MODE)
    for field, ftype in zip(columns, (fo.StringField, fo.IntField, fo.IntField, fo.StringField)):
        declare_field(dataset, field, ftype)
    wanted = {int(index): (name, int(w), int(h), mode) for index, name, (w, h, mode) in zip(source_indices, files, info)}
    ids, indices, *stored = split_view(dataset, split).values(["id", SOURCE_INDEX, *columns])
    todo = [(i, wanted[int(index)]) for i, index, *now in zip(ids, indices, *stored) if wanted.get(int(index), tuple(now)) != tuple(now)]
    if todo:
        fence_held_locks()
        set_fields(dataset, [i for i, _ in todo], {field: [row[k] for _, row in todo] for k, field in enumerate(columns)})
    return len(todo)


def split_fingerprint(source_indices, labels, hashes) -> str:
    """One hash of a split's content (which samples, their labels and pixels): its data version."""
    digest = hashlib.sha256()
    for parts in zip(source_indices, labels, hashes):
        digest.update("\x1f".join(str(p) for p in parts).encode() + b"\x1e")
    return digest.hexdigest()[:24]


def _new_sample(path, split, index, label: str, image_hash, extra: dict) -> fo.Sample:
    return fo.Sample(
        filepath=str(path),
        split=split,
        source_index=int(index),
        image_hash=image_hash,
        ground_truth=fo.Classification(label=label),
        tags=[split.removeprefix(STAGING_PREFIX)],
        **extra,
    )


STAGING_PREFIX = "_staging_"


def sync_split(
    dataset: fo.Dataset,
    split: str,
    filepaths: list[Path],
    labels: np.ndarray,
    source_indices: np.ndarray,
    hashes: list[str],
    classes: list[str],
) -> dict[str, int]:
    """Make `split` hold exactly these samples (labels are positions in `classes`), keeping every
    sample that is still true.

    A stored sample with the same source index, file, source label (`ground_truth_original`) and
    pixel hash is kept as it is (same id, every field it has, a person's label in `ground_truth`
    and tags included); one whose image or source label
    changed is replaced by a new sample, new source indices are added and
    vanished ones removed. New samples are staged first and old ones deleted
    only once the new ones are in, so a failed ingest leaves the split as it
    was. Returns the counts: kept, replaced, added, removed, count.
    """
    with split_lock(dataset, split):
        return _sync_split(dataset, split, filepaths, label_names(labels, classes), source_indices, hashes)


def split_lock(dataset: fo.Dataset, split: str):
    """The lock of one split's samples: its ingest and its review decisions, one at a time."""
    return exclusive(f"ingest-{dataset.name}-{split}")


def backfill_original_labels(dataset: fo.Dataset, split: str, labels: list[str], source_indices, hashes) -> int:
    """Give samples ingested before `ground_truth_original` existed their source label (matched by
    source index and pixel hash), so that a label a person changed in `ground_truth` before then is
    recognized as their decision instead of a changed source. Returns how many samples it filled."""
    _declare_review_fields(dataset)
    view = split_view(dataset, split).match(~F(f"{GROUND_TRUTH_ORIGINAL}.label").exists())
    if len(view) == 0:
        return 0
    source = {int(index): (label, image_hash) for index, label, image_hash in zip(source_indices, labels, hashes)}
    ids, indices, stored_hashes = view.values(["id", SOURCE_INDEX, IMAGE_HASH])
    matched = [
        (i, source[int(index)][0])
        for i, index, h in zip(ids, indices, stored_hashes)
        if source.get(int(index), (None, None))[1] == h and source[int(index)][0] is not None
    ]
    if matched:
        fence_held_locks()
        set_fields(dataset, [i for i, _ in matched], {GROUND_TRUTH_ORIGINAL: [classification_document(label) for _, label in matched]})
    return len(matched)


def _sync_split(dataset, split, filepaths, labels, source_indices, hashes) -> dict[str, int]:
    staging = STAGING_PREFIX + split
    declare_field(dataset, IMAGE_HASH, fo.StringField)  # datasets made before these existed
    _declare_review_fields(dataset)
    fence_held_locks()  # every write of an ingest first checks that this process still holds the split's lock
    dataset.delete_samples(dataset.match(F(SPLIT) == staging))  # leftovers of an interrupted ingest
    stored = split_view(dataset, split)
    ids, indices, paths, stored_hashes, in_use, original, has_original = stored.values(
        [
            "id",
            SOURCE_INDEX,
            "filepath",
            IMAGE_HASH,
            f"{GROUND_TRUTH}.label",
            f"{GROUND_TRUTH_ORIGINAL}.label",
            F(GROUND_TRUTH_ORIGINAL).exists(),
        ]
    )
    # Samples ingested before ground_truth_original existed hold the source's label in ground_truth
    # (an unlabeled sample has the document, with no label: a label a person gave it is theirs).
    source_labels = [o if has else label for o, has, label in zip(original, has_original, in_use)]
    old = {
        int(index): (sample_id, path, label, image_hash)
        for sample_id, index, path, label, image_hash in zip(ids, indices, paths, source_labels, stored_hashes)
    }
    wanted = {int(index): position for position, index in enumerate(source_indices)}
    unchanged = {
        index
        for index, position in wanted.items()
        if old.get(index, (None,))[1:] == (str(filepaths[position]), labels[position], hashes[position])
    }
    to_add = [position for index, position in wanted.items() if index not in unchanged]
    to_delete = [old[index][0] for index in old if index not in unchanged]
    counts = {
        "kept": len(unchanged),
        "replaced": sum(1 for p in to_add if int(source_indices[p]) in old),
        "added": sum(1 for p in to_add if int(source_indices[p]) not in old),
        "removed": sum(1 for index in old if index not in wanted),
    }
    if to_add:
        samples = [
            _new_sample(
                filepaths[p],
                staging,
                source_indices[p],
                labels[p],
                hashes[p],
                {GROUND_TRUTH_ORIGINAL: fo.Classification(label=labels[p]), REVIEW_DECISION: None, REVIEW_LABEL: None},
            )
            for p in to_add
        ]
        fence_held_locks()
        try:
            # Samples built here have known types: skip FiftyOne's per-sample validation (4x faster).
            dataset.add_samples(samples, validate=False, progress=False)
        except BaseException:
            dataset.delete_samples(dataset.match(F(SPLIT) == staging))
            raise
        del samples  # FiftyOne would otherwise reload each in-memory sample after the bulk update
    fence_held_locks()  # the commit: old samples go, staged ones become the split
    if to_delete:
        dataset.delete_samples(to_delete)
    if to_add:
        staged = dataset.match(F(SPLIT) == staging)
        staged.set_values(SPLIT, [split] * len(staged))
    counts["count"] = len(split_view(dataset, split))
    return counts


def replace_split(
    dataset: fo.Dataset,
    split: str,
    filepaths: list[Path],
    labels: np.ndarray,
    source_indices: np.ndarray,
    classes: list[str],
    extra_fields: dict[str, list] | None = None,
) -> int:
    """Make `split` hold exactly these new samples (plus any `extra_fields` values); other splits
    are untouched. For derived sets (the augmented samples), which are rebuilt whole."""
    with split_lock(dataset, split):
        staging = STAGING_PREFIX + split
        fence_held_locks()
        dataset.delete_samples(dataset.match(F(SPLIT) == staging))
        samples = [
            _new_sample(path, staging, index, classes[int(label)], None, {name: values[i] for name, values in (extra_fields or {}).items()})
            for i, (path, label, index) in enumerate(zip(filepaths, labels, source_indices))
        ]
        try:
            dataset.add_samples(samples, validate=False, progress=False)
        except BaseException:
            dataset.delete_samples(dataset.match(F(SPLIT) == staging))
            raise
        del samples
        fence_held_locks()
        dataset.delete_samples(dataset.match(F(SPLIT) == split))
        staged = dataset.match(F(SPLIT) == staging)
        staged.set_values(SPLIT, [split] * len(staged))
        return len(split_view(dataset, split))


def declare_field(dataset: fo.Dataset, field: str, ftype, **kwargs) -> None:
    """Add a sample field unless it exists, one process at a time.

    Runs of different splits write the same fields at once; without the lock two
    of them would both add the field to the dataset's schema document.
    """
    if field in dataset.get_field_schema():
        return
    with exclusive(f"dataset-{dataset.name}"):
        dataset.reload()
        if field not in dataset.get_field_schema():
            fence_held_locks()
            dataset.add_sample_field(field, ftype, **kwargs)


def save_view(dataset: fo.Dataset, name: str, view) -> None:
    """Save (or replace) a named view. The names live in one list on the dataset's document, which
    partitions running at once in other processes rewrite in turn (a stale copy lost another
    split's view, and then failed replacing its own): so under the dataset's lock, reloaded first.
    `view` may be a function of the reloaded dataset, for a view built from other saved views (read
    under the same lock, so the last writer saves what every split saved before it)."""
    with exclusive(f"dataset-{dataset.name}"):
        dataset.reload()
        fence_held_locks()  # a stale copy of the views list must not land after the lock was lost
        dataset.save_view(name, view(dataset) if callable(view) else view, overwrite=True)


def write_classifications(
    view: fo.DatasetView, field: str, logits: np.ndarray, sample_ids: list[str], classes: list[str], keys: list[str] | None = None
) -> None:
    """Store predictions (label, max-softmax confidence, logits) in bulk; `keys` as write_vectors'."""
    logits = np.asarray(logits, dtype=np.float64)
    if not np.isfinite(logits).all():
        raise ValueError(f"refusing to write {field}: logits contain NaN or infinite values")
    probabilities = softmax(logits, axis=1)
    predicted = probabilities.argmax(axis=1)
    labels = [classes[p] for p in predicted.tolist()]
    confidences = probabilities[np.arange(len(predicted)), predicted]
    declare_field(view._dataset, field, fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
    _set_with_keys(view, sample_ids, {field: classification_documents(labels, confidences, logits)}, keys)


def _set_with_keys(view: fo.DatasetView, sample_ids: list[str], columns: dict, keys: list[str] | None) -> None:
    """`columns` (one result field) and, given `keys`, the key each result was computed under
    (ml/store/sample_cache.py) in the same update: a result is never stored under another's key."""
    if keys is not None:
        (field,) = columns
        declare_field(view._dataset, key_field(field), fo.StringField)
        columns = {**columns, key_field(field): keys}
    set_fields(view._dataset, sample_ids, columns)


def write_vectors(view: fo.DatasetView, field: str, vectors: np.ndarray, sample_ids: list[str], keys: list[str] | None = None) -> None:
    """Store one vector per sample in bulk; `keys`: with each, the key it was computed under."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if not np.isfinite(vectors).all():
        raise ValueError(f"refusing to write {field}: vectors contain NaN or infinite values")
    declare_field(view._dataset, field, fo.VectorField)
    _set_with_keys(view, sample_ids, {field: stored_vectors(vectors)}, keys)


def write_floats(view: fo.DatasetView, columns: dict[str, np.ndarray], sample_ids: list[str]) -> None:
    """Store one number per sample in each field of `columns`, all fields in one bulk update."""
    columns = {field: np.asarray(values, dtype=np.float64) for field, values in columns.items()}
    for field, values in columns.items():
        if not np.isfinite(values).all():
            raise ValueError(f"refusing to write {field}: values contain NaN or infinite values")
    for field in columns:
        declare_field(view._dataset, field, fo.FloatField)
    set_fields(view._dataset, sample_ids, {field: values.tolist() for field, values in columns.items()})


def read_vectors(view: fo.DatasetView, field: str) -> np.ndarray:
    """The vectors of `field` for every sample of the view, in view order (read in their stored
    form and decoded at once: see ml/store/bulk_writes.py)."""
    values = view.values(field, _raw=True)
    missing = sum(value is None for value in values)
    if missing:
        raise MissingInputError(f"{missing} samples have no {field!r}")
    return vectors_from_stored(values).astype(np.float32)


def evaluate(dataset: fo.Dataset, view: fo.DatasetView, pred_field: str, eval_key: str, classes: list[str]):
    """`evaluate_classifications` against ground truth (replacing an earlier run of the key), under
    the dataset's lock, reloaded first: it rewrites the dataset's document (its evaluations and its
    field schema), which other splits' runs rewrite in turn; a stale copy saved by one of them left
    samples with an `eval_*` field the schema no longer had, and every later read of them failed."""
    with exclusive(f"dataset-{dataset.name}"):
        dataset.reload()
        fence_held_locks()
        if eval_key in dataset.list_evaluations():
            dataset.delete_evaluation(eval_key)
        return view.evaluate_classifications(pred_field, gt_field=GROUND_TRUTH, eval_key=eval_key, classes=classes)


def register_brain_run(dataset: fo.Dataset, brain_key: str, register) -> object:
    """Replace the brain run `brain_key` with what `register()` records, under the dataset's lock and
    reloaded first (brain runs live on the dataset's document, as evaluations do)."""
    with exclusive(f"dataset-{dataset.name}"):
        dataset.reload()
        fence_held_locks()
        if brain_key in dataset.list_brain_runs():
            dataset.delete_brain_run(brain_key)
        return register()
