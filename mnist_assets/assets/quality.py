"""The series' step 6: hardness, mistakenness and uniqueness from LeNet's outputs."""

import dagster as dg
import numpy as np

from mnist_assets.assets.common import Pipeline, materialize_first
from mnist_assets.automation import follows_lineage
from mnist_assets.metadata import markdown_table, png
from mnist_assets.ml import plots, quality_scores
from mnist_assets.ml.field_names import (
    GROUND_TRUTH,
    HARDNESS,
    LABEL_QUALITY,
    LENET_EMBEDDINGS,
    MISTAKENNESS,
    QUALITY_FIELDS,
    SOURCE_INDEX,
    UNIQUENESS,
    label_issues_view_name,
    saved_view_names,
    scored_predictions,
)
from mnist_assets.ml.fiftyone_store import read_vectors, save_view, split_view, write_floats
from mnist_assets.ml.label_errors import ranking_rows, ranks_of_known_errors
from mnist_assets.partitions import split_partitions
from mnist_assets.resources import MnistSettings

SAVED_VIEW_SIZE = 200


def cleanlab_scores(view, dataset, split: str, sample_ids, truth, logits, classes) -> tuple[np.ndarray, np.ndarray, dict]:
    """cleanlab's label quality into its field and the split's label-issues view; the scores, the
    issue mask and metadata."""
    position = {name: i for i, name in enumerate(classes)}
    quality, issues = quality_scores.label_quality(logits, np.array([position[label] for label in truth]))
    write_floats(view, LABEL_QUALITY, quality, sample_ids)
    flagged = [sample_ids[i] for i in np.flatnonzero(issues)]
    save_view(dataset, label_issues_view_name(split), view.select(flagged).sort_by(LABEL_QUALITY))
    return quality, issues, {"label_issues": len(flagged), "label_quality_mean": float(quality.mean())}


def label_error_metadata(source_index, mistakenness, label_quality, issues, known: list[int]) -> dict:
    """Where mistakenness and cleanlab rank the test labels human reviewers confirmed wrong
    (ml/label_errors.py): top 20 / 50 / 100 of each (as keys and a table), the rank of each by
    mistakenness, and how many of them cleanlab flags."""
    rankings = {
        "confirmed_label_errors": ("mistakenness (brain's formula)", mistakenness),
        "cleanlab_confirmed_label_errors": ("cleanlab label quality (lowest first)", -np.asarray(label_quality)),
    }
    rows = ranking_rows(source_index, dict(rankings.values()), known)
    metadata = {f"{prefix}_in_{top}": found for prefix, row in zip(rankings, rows) for top, found in row.items() if top != "ranking"}
    ranks = ranks_of_known_errors(source_index, mistakenness, known)
    flagged = set(np.asarray(source_index)[issues].tolist())
    return {
        **metadata,
        "label_error_rankings": markdown_table(rows),
        "confirmed_label_errors_present": len(ranks),
        "confirmed_label_error_ranks": markdown_table([{str(index): rank for index, rank in ranks.items()}]),
        "cleanlab_flagged_confirmed_label_errors": len(flagged & set(known)),
    }


def build(p: Pipeline) -> list:
    @dg.asset(
        key=p.key("hardness_scores"),
        partitions_def=split_partitions,
        # lenet_oof_predictions is read by the train partition only (an unpartitioned parent is every
        # partition's); it changes together with the checkpoint, so this costs no extra run.
        deps=[p.key("lenet_predictions"), p.key("lenet_embeddings"), p.key("lenet_oof_predictions")],
        group_name=p.group("quality"),
        kinds={"fiftyone"},
        code_version="5",
        automation_condition=follows_lineage(),
        check_specs=[p.check("scores_complete", "hardness_scores")],
        description=(
            "Per-sample hardness, mistakenness (LeNet vs ground truth; on train the out-of-sample predictions), "
            "uniqueness (LeNet embeddings), and cleanlab's label quality and label issues."
        ),
    )
    def hardness_scores(context: dg.AssetExecutionContext, settings: MnistSettings):
        split = context.partition_key
        dataset = p.store(settings).dataset()
        view = split_view(dataset, split)
        predictions = scored_predictions(split)
        source = predictions if split == "train" else f"{predictions}[{split}]"  # the asset that writes them
        sample_ids, truth, predicted = view.values(["id", f"{GROUND_TRUTH}.label", f"{predictions}.label"])
        if not sample_ids or any(label is None for label in predicted):
            raise ValueError(f"samples of {split!r} lack {predictions}; materialize {p.name}/{source} first.")
        logits = read_vectors(view, f"{predictions}.logits")
        with materialize_first(p, "lenet_embeddings", split):
            embeddings = read_vectors(view, LENET_EMBEDDINGS)
        # fiftyone-brain's formulas, vectorized; one bulk write per field (see ml/quality_scores.py).
        scores = {
            HARDNESS: quality_scores.hardness(logits),
            MISTAKENNESS: quality_scores.mistakenness(logits, np.array(truth) == np.array(predicted)),
            UNIQUENESS: quality_scores.uniqueness(embeddings),
        }
        for field, values in scores.items():
            write_floats(view, field, values, sample_ids)
        for field, name in saved_view_names(split).items():
            save_view(dataset, name, view.sort_by(field, reverse=True).limit(SAVED_VIEW_SIZE))
        quality, issues, cleanlab = cleanlab_scores(view, dataset, split, sample_ids, truth, logits, p.classes())

        values = dict(zip(QUALITY_FIELDS, view.values(list(QUALITY_FIELDS))))
        source_index = view.values(SOURCE_INDEX)
        top = np.argsort(-np.asarray(values[MISTAKENNESS], dtype=float))[:20]
        top_rows = [
            {
                "source_index": source_index[i],
                "ground_truth": truth[i],
                predictions: predicted[i],
                "mistakenness": float(values[MISTAKENNESS][i]),
                "hardness": float(values[HARDNESS][i]),
            }
            for i in top
        ]
        known = p.spec.known_label_errors
        known_label_errors = (
            label_error_metadata(source_index, values[MISTAKENNESS], quality, issues, known) if split == "test" and known else {}
        )
        if known_label_errors:
            context.log.info(
                "confirmed test label errors in the top 20/50/100 by mistakenness: "
                + ", ".join(str(known_label_errors[f"confirmed_label_errors_in_top{t}"]) for t in (20, 50, 100))
            )
        context.log.info(f"{split}: scored {len(view)} samples; saved views {list(saved_view_names(split).values())}")
        arrays = {field: np.asarray([v for v in vals if v is not None], dtype=float) for field, vals in values.items()}
        yield dg.MaterializeResult(
            metadata={
                "count": len(view),
                "misclassified": int((np.array(truth) != np.array(predicted)).sum()),
                **{f"{field}_mean": float(array.mean()) for field, array in arrays.items()},
                "distributions": png(plots.histograms(arrays, f"{split}: quality scores")),
                "top20_likely_mislabeled": markdown_table(top_rows),
                "scored_predictions": predictions,
                "saved_views": ", ".join([*saved_view_names(split).values(), label_issues_view_name(split)]),
                **cleanlab,
                **known_label_errors,
            }
        )
        missing = {field: len(view) - len(array) for field, array in arrays.items()}
        yield dg.AssetCheckResult(
            asset_key=p.key("hardness_scores"),
            check_name="scores_complete",
            passed=not any(missing.values()) and all(np.isfinite(a).all() for a in arrays.values()),
            metadata={"missing": str(missing)},
        )

    return [hardness_scores]
