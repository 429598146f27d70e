"""Human review: a person's label decisions (the App, tags, a file) recorded and applied per split."""

from typing import Optional

import dagster as dg

from mnist_assets.assets.common import Pipeline, parent_metadata
from mnist_assets.metadata import markdown_table
from mnist_assets.ml.core.field_names import review_queue_view_name
from mnist_assets.ml.decisions import KINDS, accuracy_side_by_side, import_decision_file, recent_yield, review_split
from mnist_assets.resources import Settings

SHOWN = 20  # rows of the decision tables in the metadata


class LabelReviewConfig(dg.Config):
    # A CSV or JSON file of decisions to import first (columns source_index, decision, label; optional
    # split, default this partition's, and note). Every row is checked; one bad row refuses the file.
    decision_file: Optional[str] = None


def decision_rows(decisions) -> list[dict]:
    return [
        {"source_index": d.source_index, "decision": d.decision, "label": d.label or "", "was": d.old_label or "", "via": d.via, "at": d.at}
        for d in decisions[-SHOWN:]
    ]


def build(p: Pipeline) -> list:
    classes = p.classes()

    @p.asset(
        "label_review",
        stage="quality",
        per_split=True,
        parents=["raw_dataset"],
        checks=[
            p.check(
                "review_inputs_usable",
                "label_review",
                blocking=True,
                description="Every label and review tag a person set in the App names a declared class.",
            ),
        ],
        kinds={"fiftyone"},
        code_version="1",
        description=(
            "A person's label decisions (relabel, exclude, confirm, label) from the App (an edited ground_truth, or the tags "
            "review:exclude, review:ok, relabel:<class>) and decision files, recorded in the dataset's review log and "
            "applied: ground_truth is the label in use, ground_truth_original the source's."
        ),
    )
    def label_review(context: dg.AssetExecutionContext, config: LabelReviewConfig, settings: Settings):
        from mnist_assets.ml.store.fiftyone_store import split_lock, split_view

        split = context.partition_key
        store = p.store(settings)
        dataset = store.dataset()
        log = store.decision_log()
        imported = []
        if config.decision_file:
            imported = import_decision_file(log, config.decision_file, p.spec, settings.source_dir, settings.downloads_dir, split)
            context.log.info(f"{p.name}: imported {len(imported)} decisions from {config.decision_file}")
        with split_lock(dataset, split):
            result = review_split(split_view(dataset, split), split, log, classes)
        for message in result.rejected:
            context.log.warning(message)
        recent = recent_yield(log.by_key(), split)
        queue_name = review_queue_view_name(split)
        pending = len(dataset.load_saved_view(queue_name)) if queue_name in dataset.list_saved_views() else None
        counts = result.plan.counts()
        context.log.info(
            f"{p.name}/label_review[{split}]: {len(result.new)} new decisions from the App, {result.written} samples updated; "
            f"in force: {counts}; {len(result.plan.stale)} stale"
        )
        yield dg.MaterializeResult(
            data_version=dg.DataVersion(result.version),
            metadata={
                "count": len(result.plan.states),
                # ingested with a sample limit (raw_dataset's word): the accuracy gates below skip such runs
                "limited": bool(
                    parent_metadata(context, p.key("raw_dataset"), split, missing={"limited": settings.limit is not None})["limited"]
                ),
                "usable": sum(not state.excluded for state in result.plan.states),
                **{f"decisions_{kind}": counts[kind] for kind in KINDS},
                "new_from_app": len(result.new),
                "imported_from_file": len(imported),
                "samples_updated": result.written,
                "stale_decisions": len(result.plan.stale),
                # of the latest 50 decisions on this split, how many changed a label: when reviewing stops paying
                "review_yield_last_50": (
                    f"{recent['relabelled']} of {recent['reviewed']} changed a label" if recent["reviewed"] else "no decisions yet"
                ),
                "stale": markdown_table(decision_rows(result.plan.stale)) if result.plan.stale else "none",
                "decided_elsewhere": result.absent,
                "rejected_inputs": len(result.rejected),
                "pending_review": pending if pending is not None else "no review queue yet (materialize hardness_scores)",
                "recent_decisions": markdown_table(decision_rows(result.new + imported)) if result.new or imported else "none",
                "accuracy_by_labels": markdown_table(accuracy_side_by_side(split_view(dataset, split))),
                "review_log": dg.MetadataValue.path(str(log.path)),
                "review_fingerprint": result.fingerprint,
            },
        )
        yield dg.AssetCheckResult(
            asset_key=p.key("label_review"),
            check_name="review_inputs_usable",
            passed=not result.rejected,
            metadata={"rejected": "\n".join(result.rejected[:SHOWN]) or "none"},
        )

    return [label_review]
