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
    LENET_PREDICTIONS,
    MISTAKENNESS,
    QUALITY_FIELDS,
    SOURCE_INDEX,
    UNIQUENESS,
    label_issues_view_name,
    saved_view_names,
)
from mnist_assets.ml.fiftyone_store import read_vectors, split_view, write_floats
from mnist_assets.ml.label_errors import known_errors_in_tops, ranks_of_known_errors
from mnist_assets.partitions import split_partitions
from mnist_assets.resources import MnistSettings

SAVED_VIEW_SIZE = 200
# cleanlab needs probabilities of a model that did not train on the samples (train waits for
# out-of-sample predictions, issue 13).
CLEANLAB_SPLITS = ("validation", "test")


def cleanlab_scores(view, dataset, split: str, sample_ids, truth, logits, classes) -> tuple[np.ndarray, np.ndarray, dict]:
    """cleanlab's label quality into its field and the split's label-issues view; the scores, the
    issue mask and metadata."""
    position = {name: i for i, name in enumerate(classes)}
    quality, issues = quality_scores.label_quality(logits, np.array([position[label] for label in truth]))
    write_floats(view, LABEL_QUALITY, quality, sample_ids)
    flagged = [sample_ids[i] for i in np.flatnonzero(issues)]
    dataset.save_view(label_issues_view_name(split), view.select(flagged).sort_by(LABEL_QUALITY), overwrite=True)
    return quality, issues, {"label_issues": len(flagged), "label_quality_mean": float(quality.mean())}


def ranking_comparison(source_index, rankings: dict, known: list[int]) -> dict:
    """How many of the known label errors each ranking puts in its top 20 / 50 / 100, as a table."""
    rows = [
        {"ranking": name, **{f"top{top}": found for top, found in known_errors_in_tops(source_index, scores, known=known).items()}}
        for name, scores in rankings.items()
    ]
    return {"label_error_rankings": markdown_table(rows)}


def label_error_metadata(source_index, mistakenness, known: list[int]) -> dict:
    """Where mistakenness ranks the test labels human reviewers confirmed wrong (ml/label_errors.py)."""
    ranks = ranks_of_known_errors(source_index, mistakenness, known)
    tops = known_errors_in_tops(source_index, mistakenness, known=known)
    return {
        **{f"confirmed_label_errors_in_top{top}": found for top, found in tops.items()},
        "confirmed_label_errors_present": len(ranks),
        "confirmed_label_error_ranks": markdown_table([{str(index): rank for index, rank in ranks.items()}]),
    }


def build(p: Pipeline) -> list:
    @dg.asset(
        key=p.key("hardness_scores"),
        partitions_def=split_partitions,
        deps=[p.key("lenet_predictions"), p.key("lenet_embeddings")],
        group_name=p.group("quality"),
        kinds={"fiftyone"},
        code_version="4",
        automation_condition=follows_lineage(),
        check_specs=[p.check("scores_complete", "hardness_scores")],
        description=(
            "Per-sample hardness, mistakenness (LeNet vs ground truth) and uniqueness (LeNet embeddings); on validation "
            "and test also cleanlab's label quality and label issues."
        ),
    )
    def hardness_scores(context: dg.AssetExecutionContext, settings: MnistSettings):
        split = context.partition_key
        dataset = p.store(settings).dataset()
        view = split_view(dataset, split)
        sample_ids, truth, predicted = view.values(["id", f"{GROUND_TRUTH}.label", f"{LENET_PREDICTIONS}.label"])
        if not sample_ids or any(label is None for label in predicted):
            raise ValueError(f"samples of {split!r} lack lenet_predictions; materialize {p.name}/lenet_predictions[{split}] first.")
        with materialize_first(p, "lenet_predictions", split):
            logits = read_vectors(view, f"{LENET_PREDICTIONS}.logits")
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
            dataset.save_view(name, view.sort_by(field, reverse=True).limit(SAVED_VIEW_SIZE), overwrite=True)
        cleanlab = {}
        if split in CLEANLAB_SPLITS:
            quality, issues, cleanlab = cleanlab_scores(view, dataset, split, sample_ids, truth, logits, p.classes())

        values = dict(zip(QUALITY_FIELDS, view.values(list(QUALITY_FIELDS))))
        source_index = view.values(SOURCE_INDEX)
        top = np.argsort(-np.asarray(values[MISTAKENNESS], dtype=float))[:20]
        top_rows = [
            {
                "source_index": source_index[i],
                "ground_truth": truth[i],
                "lenet": predicted[i],
                "mistakenness": float(values[MISTAKENNESS][i]),
                "hardness": float(values[HARDNESS][i]),
            }
            for i in top
        ]
        known = p.spec.known_label_errors
        known_label_errors = label_error_metadata(source_index, values[MISTAKENNESS], known) if split == "test" and known else {}
        if known_label_errors and cleanlab:
            rankings = {"mistakenness (brain's formula)": values[MISTAKENNESS], "cleanlab label quality (lowest first)": -quality}
            known_label_errors.update(ranking_comparison(source_index, rankings, known))
            for n, found in known_errors_in_tops(source_index, -quality, known=known).items():
                known_label_errors[f"cleanlab_confirmed_label_errors_in_top{n}"] = found
            flagged = set(np.asarray(source_index)[issues].tolist())
            known_label_errors["cleanlab_flagged_confirmed_label_errors"] = len(flagged & set(known))
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
                **{f"{field}_mean": float(array.mean()) for field, array in arrays.items()},
                "distributions": png(plots.histograms(arrays, f"{split}: quality scores")),
                "top20_likely_mislabeled": markdown_table(top_rows),
                "saved_views": ", ".join([*saved_view_names(split).values(), *([label_issues_view_name(split)] if cleanlab else [])]),
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
