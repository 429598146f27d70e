"""One split of a source into the FiftyOne dataset: PNG files, samples, and the review log applied."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mnist_assets.ml.data.dataset_spec import label_names
from mnist_assets.ml.data.sources import SplitArrays
from mnist_assets.ml.decisions import DecisionLog, ReviewResult, review_split
from mnist_assets.ml.store.fiftyone_store import (
    backfill_original_labels,
    split_fingerprint,
    split_lock,
    split_view,
    sync_split,
    write_clean_labels,
    write_pngs,
    write_source_files,
)


@dataclass
class IngestResult:
    changes: dict[str, int]  # kept, replaced, added, removed, count
    new_png_files: int
    decisions_from_app: int  # recorded into the log during this ingest
    review: ReviewResult  # the log as applied after the sync
    data_version: str  # of the source's content: samples, labels, pixels


def ingest_split(dataset, log: DecisionLog, data: SplitArrays, split: str, images_dir: Path, classes: list[str]) -> IngestResult:
    """Write the split's PNGs (those not there yet) and make the split hold exactly these samples,
    keeping every sample that is unchanged, and a person's work with it.

    Under the split's lock: samples ingested before `ground_truth_original` existed get it; what a
    person did in the App since the last review is recorded in the log before any sample is
    replaced; after the sync the log gives every sample, new ones too, its label and decision.
    """
    paths = [images_dir / name for name in data.image_files]
    written = write_pngs(data.images, paths)
    with split_lock(dataset, split):
        backfill_original_labels(dataset, split, label_names(data.labels, classes), data.indices, data.hashes)
        recorded = review_split(split_view(dataset, split), split, log, classes)
        changes = sync_split(dataset, split, paths, data.labels, data.indices, data.hashes, classes)
        if data.clean_labels is not None:  # declared label noise: the truth beside, for benchmarks and tests
            write_clean_labels(dataset, split, data.indices, data.clean_labels, classes)
        if data.source_files is not None:  # a folder: which file each sample came from, as it was
            write_source_files(dataset, split, data.indices, data.source_files, data.file_info)
        review = review_split(split_view(dataset, split), split, log, classes)
    return IngestResult(
        changes, written, len(recorded.new) + len(review.new), review, split_fingerprint(data.indices, data.labels, data.hashes)
    )
