"""The series' step 1: a dataset's verified images in FiftyOne per split, and their metadata."""

import time

import dagster as dg
import numpy as np

from mnist_assets import checks
from mnist_assets.assets.common import Pipeline
from mnist_assets.assets.data import pixel_statistics, split_tensors
from mnist_assets.automation import weekly_refresh
from mnist_assets.metadata import class_counts, markdown_table, png
from mnist_assets.ml.core.field_names import GROUND_TRUTH
from mnist_assets.ml.data.sources import load_source, split_of, watched_fingerprint
from mnist_assets.resources import Settings


def build(p: Pipeline) -> list:
    classes = p.classes()
    spec = p.spec

    @p.asset(
        "raw_dataset",
        stage="dataset",
        per_split=True,
        automation_condition=weekly_refresh(),
        checks=[
            p.check("sample_count", "raw_dataset"),
            p.check("labels_in_range", "raw_dataset"),
            p.check("class_balance", "raw_dataset"),
            p.check(
                "files_readable",
                "raw_dataset",
                description="Warns naming each file of the folder that is not a readable image (left out; `strict: true` refuses instead).",
            ),
        ],
        kinds={"fiftyone", "python"},
        code_version="4",
        description=(
            f"{spec.source} images, verified{' and converted' if spec.source == 'folder' else ''}, as PNG files and FiftyOne "
            "samples with ground_truth (the label in use), ground_truth_original and split; unchanged samples are kept, "
            "and the review log's decisions applied."
        ),
    )
    def raw_dataset(context: dg.AssetExecutionContext, settings: Settings):
        from mnist_assets.ml.ingest import ingest_split
        from mnist_assets.ml.store.fiftyone_store import split_view

        split = context.partition_key
        started = time.perf_counter()
        store = p.store(settings)
        source = load_source(spec, settings.source_dir, settings.downloads_dir)  # verifies before anything is written
        data = split_of(source, spec, split, settings.limit)
        context.log.info(f"{p.name}/{split}: {len(data.labels)} samples from {source.source}")
        for name, why in source.unreadable:
            context.log.warning(f"left out (not a readable image): {name}: {why}")

        dataset = store.dataset()
        result = ingest_split(dataset, store.decision_log(), data, split, store.images_dir, classes)
        changes, review = result.changes, result.review
        context.log.info(
            f"{split}: {result.new_png_files} new PNG files; {changes['count']} samples in dataset {dataset.name!r} (kept "
            f"{changes['kept']}, replaced {changes['replaced']}, added {changes['added']}, removed {changes['removed']}); review "
            f"log: {result.decisions_from_app} new decisions from the App, {review.plan.counts()} in force, {len(review.plan.stale)} stale"
        )
        in_use = split_view(dataset, split).values(f"{GROUND_TRUTH}.label")
        stored_labels = [label for label in in_use if label is not None]  # not the samples no one has labeled yet
        metadata = ingest_metadata(p, settings, split, source, data, result, dataset, stored_labels)
        yield dg.MaterializeResult(
            # Same source samples, labels and pixels give the same data version: the UI marks downstream
            # assets stale, and automation re-runs them, only when the source changed. (Decisions this
            # ingest applied change label_review's data version; the review sensor runs it for them.)
            data_version=dg.DataVersion(result.data_version),
            metadata={**metadata, "seconds": round(time.perf_counter() - started, 2)},
        )
        expected = min(data.available, settings.limit or data.available)
        yield checks.check_count(p.key("raw_dataset"), changes["count"], expected, settings.limit)
        yield checks.check_labels_in_range(p.key("raw_dataset"), stored_labels, classes)
        yield checks.check_class_balance(p.key("raw_dataset"), class_counts(stored_labels, classes))
        yield dg.AssetCheckResult(
            asset_key=p.key("raw_dataset"),
            check_name="files_readable",
            passed=not source.unreadable,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"unreadable": ", ".join(f for f, _ in source.unreadable) or "none"},
        )

    @p.asset(
        "dataset_metadata",
        stage="dataset",
        per_split=True,
        parents=["label_review"],
        checks=[p.check("images_match_declared_shape", "dataset_metadata")],
        kinds={"fiftyone", "python"},
        code_version="3",
        description="FiftyOne image metadata, file-size and pixel statistics, and class counts (labels in use) of a split.",
    )
    def dataset_metadata(context: dg.AssetExecutionContext, settings: Settings):
        from mnist_assets.ml.figures import plots
        from mnist_assets.ml.store.fiftyone_store import usable_view

        split = context.partition_key
        dataset, view, tensors = split_tensors(p, settings, split, standardize=False, with_excluded=True)
        view.compute_metadata(num_workers=4, progress=False)
        sizes, widths, heights, channels = view.values(
            ["metadata.size_bytes", "metadata.width", "metadata.height", "metadata.num_channels"]
        )
        labels = usable_view(dataset, split).values(f"{GROUND_TRUTH}.label")  # the labels in use of the samples that count
        unlabeled = int((tensors.labels < 0).sum())  # UNLABELED
        pixels = tensors.images.float() / 255.0
        missing = sum(size is None for size in sizes)
        sizes_array = np.array([s for s in sizes if s is not None], dtype=np.float64)
        counts = class_counts(labels, classes)
        yield dg.MaterializeResult(
            metadata={
                "count": len(view),
                "labeled": len(view) - unlabeled,
                "unlabeled": unlabeled,
                "excluded": len(view) - len(labels) - unlabeled,
                "size_bytes_min": int(sizes_array.min()),
                "size_bytes_max": int(sizes_array.max()),
                "size_bytes_mean": round(float(sizes_array.mean()), 1),
                "size_bytes_std": round(float(sizes_array.std()), 1),
                "pixel_mean": round(float(pixels.mean()), 4),
                "pixel_std": round(float(pixels.std()), 4),
                "class_counts": markdown_table([counts]),
                "class_chart": png(plots.bar_chart(list(counts), list(counts.values()), f"{split}: samples per class")),
            }
        )
        yield checks.check_images(p.key("dataset_metadata"), widths, heights, channels, missing, spec.image_size, spec.channels)

    return [raw_dataset, dataset_metadata]


def ingest_metadata(p: Pipeline, settings: Settings, split: str, source, data, result, dataset, stored_labels: list) -> dict:
    """What raw_dataset records of an ingest: counts, what changed, the decisions in force, where the
    images are, train's pixel statistics, the classes and an example of each."""
    from mnist_assets.ml.figures import plots

    classes, changes, review, count = p.classes(), result.changes, result.review, result.changes["count"]
    images_dir = p.store(settings).images_dir
    images_folder = (images_dir / data.image_files[0]).parent if data.image_files else images_dir
    # The train split's mean and std standardize training (computed where it trains, from the same pixels).
    normalization = dict(zip(("mean", "std"), pixel_statistics(data.images))) if split == "train" else {}
    examples = [int(np.flatnonzero(data.labels == c)[0]) for c in range(len(classes)) if (data.labels == c).any()]
    return {
        "count": count,
        "available": data.available,
        "limited": count < data.available,
        "labeled": len(stored_labels),
        "unlabeled": count - len(stored_labels),
        **{f"samples_{change}": changes[change] for change in ("kept", "replaced", "added", "removed")},
        **{f"decisions_{kind}": count for kind, count in review.plan.counts().items()},
        "stale_decisions": len(review.plan.stale),
        "source": source.source,
        # what the source sensor compares with (sensors.py): the watched files as this ingest saw them
        "source_fingerprint": watched_fingerprint(p.spec, settings.source_dir),
        "dataset": dataset.name,
        "images_dir": dg.MetadataValue.path(str(images_folder)),
        "new_png_files": result.new_png_files,
        **{f"pixel_{name}": value for name, value in normalization.items()},
        "class_counts": markdown_table([class_counts(stored_labels, classes)]),
        "examples": png(plots.image_grid(data.images[examples], [f"{classes[data.labels[i]]} (#{data.indices[i]})" for i in examples])),
        "unreadable_files": len(source.unreadable),
        **({"unreadable": markdown_table([{"file": f, "why": why} for f, why in source.unreadable])} if source.unreadable else {}),
    }
