"""Duplicates and leaks between splits: the checks a data-centric user runs before trusting a test score."""

import time

import dagster as dg
import numpy as np
from pydantic import Field

from mnist_assets.assets.common import Pipeline
from mnist_assets.assets.data import split_tensors
from mnist_assets.metadata import markdown_table, png
from mnist_assets.ml.core.field_names import DUPLICATES_VIEW, GROUND_TRUTH, SPLIT, leaks_view_name
from mnist_assets.ml.data.dataset_spec import SPLITS
from mnist_assets.ml.quality.duplicates import NEAR_DUPLICATE_THRESHOLD, find_duplicates_and_leaks
from mnist_assets.resources import Settings

PAIRS_SHOWN = 10


class DuplicatesConfig(dg.Config):
    # Cosine distance between centred pixel vectors under which two images count as one.
    threshold: float = Field(NEAR_DUPLICATE_THRESHOLD, ge=0, le=2)  # a cosine distance: 0 (the same) to 2 (opposite)


def build(p: Pipeline) -> list:
    @p.asset(
        "duplicates_and_leaks",
        stage="quality",
        per_split=False,
        parents=["label_review"],  # every split; the samples a person excluded are left out
        checks=[
            p.check(
                "no_test_leaks_into_train",
                "duplicates_and_leaks",
                blocking=False,
                description="Warns when a test image has a (near) copy in train: the test score then flatters the model.",
            ),
        ],
        kinds={"fiftyone"},
        code_version="3",  # 3: near copies by near_copies, the search data_issues flags with
        description=(
            "Exact duplicates (file hashes, FiftyOne Brain), near duplicates (pixel correlation, the search data_issues "
            "flags near_duplicate and leak with) and leaks between train, validation and test; saved views `duplicates` "
            "and `leaks-<split>`."
        ),
    )
    def duplicates_and_leaks(context: dg.AssetExecutionContext, config: DuplicatesConfig, settings: Settings):
        from mnist_assets.ml.store.fiftyone_store import save_view

        started = time.perf_counter()
        store = p.store(settings)
        parts = [split_tensors(p, settings, split, store, standardize=False) for split in SPLITS]
        dataset = parts[0][0]
        sample_ids = [sid for _, _, tensors in parts for sid in tensors.sample_ids]
        images = np.concatenate([tensors.images.numpy() for _, _, tensors in parts])
        context.log.info(f"{len(sample_ids)} images; exact duplicates, then near duplicates under {config.threshold}")
        report = find_duplicates_and_leaks(dataset, sample_ids, images, SPLIT, config.threshold)

        split_of = dict(zip(*dataset.values(["id", SPLIT])))
        save_view(dataset, DUPLICATES_VIEW, dataset.select(report.duplicate_groups_in_order, ordered=True))
        for split in SPLITS:
            ordered = [sid for group in report.leak_groups(split_of, split) for sid in group]
            save_view(dataset, leaks_view_name(split), dataset.select(ordered, ordered=True))

        test_into_train = report.leaks_between[("test", "train")]
        leak_rows = [{"split": a, "twin in": b, "samples": n} for (a, b), n in sorted(report.leaks_between.items())]
        pairs = report.leak_groups(split_of, "test")[:PAIRS_SHOWN]
        metadata = {
            "images": len(sample_ids),
            "threshold": config.threshold,
            "exact_duplicates": len(report.exact_duplicate_ids),
            "near_duplicate_groups": report.near_duplicate_groups,
            "near_duplicates": len(report.near_duplicate_ids),
            "leaking_samples": len(report.leak_ids),
            "test_leaks_into_train": test_into_train,
            "validation_leaks_into_train": report.leaks_between[("validation", "train")],
            "test_leaks_into_validation": report.leaks_between[("test", "validation")],
            "leaks": markdown_table(leak_rows) if leak_rows else "none",
            "saved_views": ", ".join([DUPLICATES_VIEW, *(leaks_view_name(s) for s in SPLITS)]),
            "seconds": round(time.perf_counter() - started, 1),
        }
        if pairs:
            metadata["test_leaks"] = png(_pairs_grid(dataset, parts, pairs, split_of))
        context.log.info(f"{metadata['near_duplicates']} near duplicates; {test_into_train} test images with a twin in train")
        yield dg.MaterializeResult(metadata=metadata)
        yield dg.AssetCheckResult(
            asset_key=p.key("duplicates_and_leaks"),
            check_name="no_test_leaks_into_train",
            passed=test_into_train == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"test_leaks_into_train": test_into_train, "view": leaks_view_name("test")},
        )

    return [duplicates_and_leaks]


def _pairs_grid(dataset, parts, groups: list[list[str]], split_of: dict[str, str]) -> bytes:
    """Each leaking test image followed by its twins, titled with split and label."""
    from mnist_assets.ml.figures import plots

    pixels = {sid: image for _, _, tensors in parts for sid, image in zip(tensors.sample_ids, tensors.images)}
    ids = [sid for group in groups for sid in group]
    labels = dict(zip(*dataset.select(ids).values(["id", f"{GROUND_TRUTH}.label"])))
    return plots.image_grid(np.stack([pixels[sid] for sid in ids]), [f"{split_of[sid]}: {labels[sid]}" for sid in ids], columns=6)
