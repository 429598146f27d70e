"""The series' step 6: hardness, mistakenness and uniqueness from LeNet's outputs."""

import numpy as np

import dagster as dg
import fiftyone.brain as fob
from mnist_assets.assets.lenet import lenet_embeddings, lenet_predictions
from mnist_assets.metadata import markdown_table, png
from mnist_assets.ml import plots
from mnist_assets.ml.fiftyone_store import split_view
from mnist_assets.ml.label_errors import known_errors_in_top
from mnist_assets.partitions import split_partitions
from mnist_assets.resources import MnistSettings

QUALITY_FIELDS = ("hardness", "mistakenness", "uniqueness")
SAVED_VIEW_SIZE = 200


def saved_view_names(split: str) -> dict[str, str]:
    """The dataset's saved views for a split, keyed by the field they sort on."""
    return {"hardness": f"hardest-{split}", "mistakenness": f"likely-mislabeled-{split}", "uniqueness": f"most-unique-{split}"}


@dg.asset(
    partitions_def=split_partitions,
    deps=[lenet_predictions, lenet_embeddings],
    group_name="quality",
    kinds={"fiftyone"},
    check_specs=[dg.AssetCheckSpec("scores_complete", asset="hardness_scores")],
)
def hardness_scores(context: dg.AssetExecutionContext, settings: MnistSettings):
    """Per-sample hardness, mistakenness (LeNet vs ground truth) and uniqueness (LeNet embeddings)."""
    split = context.partition_key
    dataset = settings.dataset()
    view = split_view(dataset, split)
    fob.compute_hardness(view, "lenet_predictions", hardness_field="hardness", progress=False)
    fob.compute_mistakenness(view, "lenet_predictions", label_field="ground_truth", use_logits=True, progress=False)
    fob.compute_uniqueness(view, embeddings="lenet_embeddings", uniqueness_field="uniqueness", progress=False)

    for field, name in saved_view_names(split).items():
        dataset.save_view(name, view.sort_by(field, reverse=True).limit(SAVED_VIEW_SIZE), overwrite=True)

    values = dict(zip(QUALITY_FIELDS, view.values(list(QUALITY_FIELDS))))
    source_index, truth, predicted = view.values(["source_index", "ground_truth.label", "lenet_predictions.label"])
    top = np.argsort(-np.asarray(values["mistakenness"], dtype=float))[:20]
    top_rows = [
        {
            "source_index": source_index[i],
            "ground_truth": truth[i],
            "lenet": predicted[i],
            "mistakenness": float(values["mistakenness"][i]),
            "hardness": float(values["hardness"][i]),
        }
        for i in top
    ]
    known_label_errors = {}
    if split == "test":
        found, present = known_errors_in_top(source_index, values["mistakenness"], 0.01)
        known_label_errors = {"known_label_errors_in_top_1pct": f"{found} of {present}"}
        context.log.info(f"known MNIST test label errors in the top 1% by mistakenness: {found} of {present}")
    context.log.info(f"{split}: scored {len(view)} samples; saved views {list(saved_view_names(split).values())}")
    arrays = {field: np.asarray([v for v in vals if v is not None], dtype=float) for field, vals in values.items()}
    yield dg.MaterializeResult(
        metadata={
            "count": len(view),
            **{f"{field}_mean": float(array.mean()) for field, array in arrays.items()},
            "distributions": png(plots.histograms(arrays, f"{split}: quality scores")),
            "top20_likely_mislabeled": markdown_table(top_rows),
            "saved_views": ", ".join(saved_view_names(split).values()),
            **known_label_errors,
        }
    )
    missing = {field: len(view) - len(array) for field, array in arrays.items()}
    yield dg.AssetCheckResult(
        asset_key="hardness_scores",
        check_name="scores_complete",
        passed=not any(missing.values()) and all(np.isfinite(a).all() for a in arrays.values()),
        metadata={"missing": str(missing)},
    )
