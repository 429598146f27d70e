"""The series' step 6: hardness, mistakenness and uniqueness from LeNet's outputs."""

import dataclasses
from typing import TYPE_CHECKING

import dagster as dg
import numpy as np

from mnist_assets.assets.common import Pipeline, materialize_first
from mnist_assets.metadata import markdown_table, png
from mnist_assets.ml.core.field_names import (
    GROUND_TRUTH,
    GROUND_TRUTH_ORIGINAL,
    LABEL_QUALITY,
    LENET_EMBEDDINGS,
    MISTAKENNESS,
    REVIEW_DECISION,
    REVIEW_PRIORITY,
    REVIEW_QUEUE_VIEW,
    SOURCE_INDEX,
    label_issues_view_name,
    review_queue_view_name,
    saved_view_names,
    scored_predictions,
)
from mnist_assets.ml.data.label_errors import ranking_rows, ranks_of_known_errors
from mnist_assets.ml.decisions import review_order, review_queue
from mnist_assets.resources import Settings

if TYPE_CHECKING:  # for annotations only: imported where used, at run time
    from mnist_assets.ml.quality import split_scores

SAVED_VIEW_SIZE = 200
# Candidates for review: the lowest label qualities (the confident-learning study had people look at
# its top 100 of MNIST's test set) and cleanlab's label issues.
REVIEW_CANDIDATES = 100


def save_quality_views(dataset, view, split: str, scores: "split_scores.SplitScores", sample_ids) -> None:
    """The split's saved views: the SAVED_VIEW_SIZE highest of each score, cleanlab's label issues
    (lowest label quality first), and the review queue: the review candidates and the samples flagged
    for an image issue no one has decided on yet, highest review priority first (a saved view is a
    query, so a decided sample leaves it at once)."""
    from mnist_assets.ml.store.fiftyone_store import save_view

    for name, (field, highest_first) in saved_view_names(split).items():
        save_view(dataset, name, view.sort_by(field, reverse=highest_first).limit(SAVED_VIEW_SIZE))
    flagged = [sample_ids[i] for i in np.flatnonzero(scores.label_issues)]
    save_view(dataset, label_issues_view_name(split), view.select(flagged).sort_by(LABEL_QUALITY))
    candidates = [sample_ids[i] for i in scores.review_candidates(REVIEW_CANDIDATES)]
    save_view(dataset, review_queue_view_name(split), review_queue(view, candidates))
    save_view(dataset, REVIEW_QUEUE_VIEW, review_order)  # built from every split's queue under the same lock


def label_error_metadata(source_index, mistakenness, label_quality, issues, known: list[int]) -> dict:
    """Where mistakenness and cleanlab rank the test labels human reviewers confirmed wrong
    (ml/data/label_errors.py): top 20 / 50 / 100 of each (as keys and a table), the rank of each by
    cleanlab's label quality (the likely-mislabeled view's order), and how many of them cleanlab flags."""
    rankings = {
        "confirmed_label_errors": ("mistakenness (brain's formula)", mistakenness),
        "cleanlab_confirmed_label_errors": ("cleanlab label quality (lowest first)", -np.asarray(label_quality)),
    }
    rows = ranking_rows(source_index, dict(rankings.values()), known)
    metadata = {f"{prefix}_in_{top}": found for prefix, row in zip(rankings, rows) for top, found in row.items() if top != "ranking"}
    ranks = ranks_of_known_errors(source_index, -np.asarray(label_quality), known)
    flagged = set(np.asarray(source_index)[issues].tolist())
    return {
        **metadata,
        "label_error_rankings": markdown_table(rows),
        "confirmed_label_errors_present": len(ranks),
        "confirmed_label_error_ranks": markdown_table([{str(index): rank for index, rank in ranks.items()}]),
        "cleanlab_flagged_confirmed_label_errors": len(flagged & set(known)),
    }


def source_label_rankings(view, predictions: str, classes: list[str], known: list[int]) -> dict:
    """label_error_metadata on every sample of the view against the source's labels: published
    label errors are ranked by the labels they were found in, whatever a person decided since
    (so the figures stay comparable after someone fixes those very samples)."""
    from mnist_assets.ml.data.tensors import class_positions
    from mnist_assets.ml.quality import quality_scores
    from mnist_assets.ml.store.fiftyone_store import read_vectors

    source_index, source_labels = view.values([SOURCE_INDEX, f"{GROUND_TRUTH_ORIGINAL}.label"])
    logits = read_vectors(view, f"{predictions}.logits")
    labels = class_positions(source_labels, classes)
    quality, issues = quality_scores.label_quality(logits, labels)
    mistaken = quality_scores.mistakenness(logits, logits.argmax(axis=1) == labels)  # against the source's labels
    return label_error_metadata(source_index, mistaken, quality, issues, known)


def build(p: Pipeline) -> list:
    @p.asset(
        "hardness_scores",
        stage="quality",
        per_split=True,
        # What it reads: the labels in use; out-of-sample predictions, lenet_oof_predictions on train
        # (an unpartitioned parent is every partition's; it changes with the checkpoint, so this costs
        # no extra run) and the fold ensemble elsewhere; LeNet's embeddings for uniqueness.
        parents=[
            "label_review",
            "lenet_embeddings",
            "lenet_oof_predictions",
            "fold_ensemble_predictions",
        ],
        checks=[p.check("scores_complete", "hardness_scores")],
        kinds={"fiftyone"},
        code_version="10",  # 10: the saved view review-queue, every split's queue with validation's first
        description=(
            "Per-sample hardness, mistakenness and cleanlab's label quality and label issues (labels in use, excluded "
            "samples left out) from out-of-sample predictions (on train lenet_oof_predictions, elsewhere "
            "fold_ensemble_predictions), uniqueness from LeNet's embeddings; likely-mislabeled = lowest label quality "
            "first; review_priority on every sample (excluded: 0); review-queue-<split>: the likely mislabeled and the "
            "samples data_issues flags that no one has decided on, highest review priority first; review-queue: every "
            "split's queue in one order, validation's first (its labels choose every model's state and release)."
        ),
    )
    def hardness_scores(context: dg.AssetExecutionContext, settings: Settings):
        from mnist_assets.ml.store.fiftyone_store import split_view, usable_view

        split = context.partition_key
        dataset = p.store(settings).dataset()
        view = usable_view(dataset, split)  # the labels in use; excluded samples are not scored
        scored = score_and_store(p, settings, dataset, view, split)
        known = p.spec.known_label_errors
        known_label_errors = (
            source_label_rankings(split_view(dataset, split), scored.predictions, p.classes(), known) if split == "test" and known else {}
        )
        if known_label_errors:
            context.log.info(
                "confirmed test label errors in the top 20/50/100 by label quality: "
                + ", ".join(str(known_label_errors[f"cleanlab_confirmed_label_errors_in_top{t}"]) for t in (20, 50, 100))
            )
        context.log.info(f"{split}: scored {len(scored.sample_ids)} samples; saved views {list(saved_view_names(split))}")
        yield dg.MaterializeResult(metadata={**scored.metadata(dataset, split), **known_label_errors})
        yield scored.check(p, view)

    return [hardness_scores]


@dataclasses.dataclass
class Scored:
    """A split's samples as hardness_scores scored them, in the view's order."""

    predictions: str  # the out-of-sample predictions field scored
    sample_ids: list
    truth: list
    predicted: list
    source_index: list
    scores: "split_scores.SplitScores"

    def metadata(self, dataset, split: str) -> dict:
        from mnist_assets.ml.figures import plots

        values, quality = self.scores.fields(), self.scores.label_quality
        top = np.argsort(quality, kind="stable")[:20]  # the likely-mislabeled view's order
        top_rows = [
            {
                "source_index": self.source_index[i],
                "ground_truth": self.truth[i],
                self.predictions: self.predicted[i],
                "label_quality": float(quality[i]),
                "mistakenness": float(values[MISTAKENNESS][i]),
            }
            for i in top
        ]
        return {
            "count": len(self.sample_ids),
            "misclassified": int((np.array(self.truth) != np.array(self.predicted)).sum()),
            **{f"{field}_mean": float(array.mean()) for field, array in values.items()},
            "distributions": png(plots.histograms(values, f"{split}: quality scores")),
            "top20_likely_mislabeled": markdown_table(top_rows),
            "scored_predictions": self.predictions,
            "saved_views": ", ".join(
                [*saved_view_names(split), label_issues_view_name(split), review_queue_view_name(split), REVIEW_QUEUE_VIEW]
            ),
            "review_queue": len(dataset.load_saved_view(review_queue_view_name(split))),
            "label_issues": int(self.scores.label_issues.sum()),
        }

    def check(self, p: Pipeline, view) -> dg.AssetCheckResult:
        """Every score stored on every scored sample, and finite."""
        import fiftyone as fo

        values = self.scores.fields()
        stored = view.aggregate([fo.Count(field) for field in values])  # what the database holds, in one pass
        missing = {field: len(self.sample_ids) - count for field, count in zip(values, stored)}
        return dg.AssetCheckResult(
            asset_key=p.key("hardness_scores"),
            check_name="scores_complete",
            passed=not any(missing.values()) and all(np.isfinite(array).all() for array in values.values()),
            metadata={"missing": str(missing)},
        )


def score_and_store(p: Pipeline, settings: Settings, dataset, view, split: str) -> Scored:
    """Every quality score of the split's samples from their out-of-sample predictions and LeNet's
    embeddings, written in one bulk write (review priority 0 on excluded samples), and the split's
    saved views."""
    from fiftyone import ViewField as F

    from mnist_assets.ml.data.tensors import class_positions
    from mnist_assets.ml.quality import split_scores
    from mnist_assets.ml.store.fiftyone_store import read_vectors, split_view, write_floats

    predictions = scored_predictions(split)
    source = predictions if split == "train" else f"{predictions}[{split}]"  # the asset that writes them
    sample_ids, truth, predicted, source_index = view.values(["id", f"{GROUND_TRUTH}.label", f"{predictions}.label", SOURCE_INDEX])
    if not sample_ids or any(label is None for label in predicted):
        raise ValueError(f"samples of {split!r} lack {predictions}; materialize {p.name}/{source} first.")
    logits = read_vectors(view, f"{predictions}.logits")
    with materialize_first(p, "lenet_embeddings", split):
        embeddings = read_vectors(view, LENET_EMBEDDINGS)
    scores = split_scores.score_split(logits, class_positions(truth, p.classes()), embeddings, settings.torch_device())
    write_floats(view, scores.fields(), sample_ids)  # the five fields in one bulk write
    decided = split_view(dataset, split).match(F(REVIEW_DECISION) == "exclude")
    if len(decided):  # every sample has a review priority: one a person excluded has nothing left to review
        write_floats(decided, {REVIEW_PRIORITY: np.zeros(len(decided))}, decided.values("id"))
    save_quality_views(dataset, view, split, scores, sample_ids)
    return Scored(predictions, sample_ids, truth, predicted, source_index, scores)
