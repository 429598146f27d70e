"""Which unlabeled images to label next (ml/quality/label_requests.py): for datasets with samples no one has labeled."""

import csv
import io

import dagster as dg
import numpy as np
from pydantic import Field

from mnist_assets.assets.common import Pipeline
from mnist_assets.assets.data import split_tensors
from mnist_assets.metadata import markdown_table
from mnist_assets.ml.core.field_names import LABEL_PRIORITY, LENET_PREDICTIONS, REVIEW_DECISION, SOURCE_INDEX, TO_LABEL_VIEW
from mnist_assets.resources import Settings

POOL_SPLIT = "train"  # where unlabeled samples live (docs/decisions.md): a label makes them train on the spot
REQUEST_COLUMNS = ("rank", "split", "source_index", "sample_id", "file", "predicted")


class LabelRequestsConfig(dg.Config):
    """The strategy (default: chosen by what is known, ml/quality/label_requests.choose_strategy) and batch size."""

    strategy: str | None = None  # typiclust | probcover | margin_clusters | random
    batch: int | None = Field(None, ge=1)  # default: the declaration's label_batch


def requests_file(store):
    """The next batch to label, for annotators outside the App (`make label-requests`)."""
    return store.artifact_path("label_requests", "label_requests.csv")


def last_batch_yield(path, labels_now: dict[str, str | None]) -> tuple[int, int]:
    """Of the previous batch's samples labeled since, how many got another class than the model
    predicted when it asked (labels that changed the model's mind), and how many were labeled."""
    if not path.is_file():
        return 0, 0
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    answered = [(labels_now.get(row["sample_id"]), row["predicted"]) for row in rows if labels_now.get(row["sample_id"]) is not None]
    return sum(label != predicted for label, predicted in answered), len(answered)


def build(p: Pipeline) -> list:
    if not p.spec.has_unlabeled:
        return []
    classes = p.classes()

    @p.asset(
        "label_requests",
        stage="quality",
        per_split=False,
        parents=[
            dg.AssetDep(p.key("label_review"), partition_mapping=dg.SpecificPartitionsPartitionMapping([POOL_SPLIT])),
            dg.AssetDep(p.key("lenet_predictions"), partition_mapping=dg.SpecificPartitionsPartitionMapping([POOL_SPLIT])),
        ],
        kinds={"fiftyone", "python"},
        code_version="2",  # 2: the default follows the model from a label per class on
        description=(
            "Which unlabeled train samples to label next: label_priority on each (higher: sooner), the saved view "
            "`to-label` (the next batch, in that order) and a file of the batch with the model's guess "
            "(`make label-requests`); the strategy chosen by what is known (ml/quality/label_requests.py)."
        ),
    )
    def label_requests(context: dg.AssetExecutionContext, config: LabelRequestsConfig, settings: Settings):
        from scipy.special import softmax

        from mnist_assets.ml.core.files import atomic_write_bytes
        from mnist_assets.ml.data.dataset_spec import label_names
        from mnist_assets.ml.data.pixel_embedding import pool_embedding
        from mnist_assets.ml.quality.label_requests import ASSET_STRATEGIES, check_strategy, request_labels
        from mnist_assets.ml.store.fiftyone_store import labeled, read_vectors, save_view, usable_view, write_floats

        check_strategy(config.strategy, ASSET_STRATEGIES)  # refused before any work
        store = p.store(settings)
        dataset, view, tensors = split_tensors(p, settings, POOL_SPLIT, store, standardize=False, with_excluded=True)
        ids, files, indices, predicted, decisions = (
            np.asarray(values, dtype=object)
            for values in view.values(["id", "filepath", SOURCE_INDEX, f"{LENET_PREDICTIONS}.label", REVIEW_DECISION])
        )
        excluded = decisions == "exclude"
        labels = tensors.labels.numpy()
        kept = np.flatnonzero(~excluded)  # a sample a person excluded is neither asked for nor counted
        batch_size = config.batch or p.spec.label_batch
        probabilities = softmax(read_vectors(view, f"{LENET_PREDICTIONS}.logits"), axis=1)
        embedding = pool_embedding(tensors.images.numpy()[kept], p.spec.pool_embedding, seed=p.spec.split_seed)
        request = request_labels(
            embedding, labels[kept], batch_size, probabilities[kept], config.strategy, len(classes), seed=p.spec.split_seed
        )
        context.log.info(
            f"{p.name}: {request.strategy} ({request.why}); {len(request.batch)} of {int((labels[kept] < 0).sum())} unlabeled proposed"
        )
        priority = np.zeros(len(labels))
        priority[kept] = request.priority
        write_floats(view, {LABEL_PRIORITY: priority}, tensors.sample_ids)
        # a query, not a list: a sample leaves the view as soon as someone labels or excludes it
        pool = usable_view(dataset, POOL_SPLIT, with_unlabeled=True).match(~labeled())
        save_view(dataset, TO_LABEL_VIEW, pool.sort_by(LABEL_PRIORITY, reverse=True).limit(len(request.batch)))

        chosen = kept[request.batch]
        path = requests_file(store)
        changed, answered = last_batch_yield(path, dict(zip(ids, label_names(labels, classes))))
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(REQUEST_COLUMNS)
        for rank, position in enumerate(chosen, start=1):
            writer.writerow([rank, POOL_SPLIT, indices[position], ids[position], files[position], predicted[position]])
        atomic_write_bytes(path, buffer.getvalue().encode())
        mix = {name: int(sum(predicted[position] == name for position in chosen)) for name in classes}
        return dg.MaterializeResult(
            metadata={
                "strategy": request.strategy,
                "embedding": p.spec.pool_embedding,
                "why": request.why,
                "labeled": int((labels[kept] >= 0).sum()),
                "unlabeled": int((labels[kept] < 0).sum()),
                "batch": len(chosen),
                "predicted_class_mix": markdown_table([mix]),
                "last_batch_labeled": answered,
                "last_batch_changed_the_models_mind": changed,
                "requests_file": dg.MetadataValue.path(str(path)),
            }
        )

    return [label_requests]
