"""What a person did in the FiftyOne App, read as decisions.

`collect` finds, on a split's samples, a `ground_truth` that differs from the label the log says is
in use, or a review tag (`review:exclude`, `review:ok`, `relabel:<class>`) not recorded yet. Tags
stay on the samples as the person set them. `undecided` is what the review queues show, and
`review_queue` which samples they hold.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from mnist_assets.ml.core.field_names import (
    DATA_ISSUES,
    GROUND_TRUTH,
    GROUND_TRUTH_ORIGINAL,
    IMAGE_HASH,
    RELABEL_TAG_PREFIX,
    REVIEW_DECISION,
    REVIEW_LABEL,
    REVIEW_ORDER,
    REVIEW_PRIORITY,
    SOURCE_INDEX,
    TAG_CONFIRM,
    TAG_EXCLUDE,
    review_queue_view_name,
)
from mnist_assets.ml.decisions.model import KINDS, SOURCE_PART, Decision, SampleState, fold, now, step


@dataclass
class SplitSamples:
    """What collect and apply read of a split's samples, in one query."""

    ids: list[str]
    source_index: list[int]
    image_hash: list[str | None]
    label: list[str | None]  # ground_truth, the label in use as stored
    original: list[str | None]  # ground_truth_original
    tags: list[list[str]]
    decision: list[str | None]  # review_decision as stored
    applied: list[str | None]  # review_label: the label the log last gave the sample (None: none yet)

    FIELDS = (
        "id",
        SOURCE_INDEX,
        IMAGE_HASH,
        f"{GROUND_TRUTH}.label",
        f"{GROUND_TRUTH_ORIGINAL}.label",
        "tags",
        REVIEW_DECISION,
        REVIEW_LABEL,
    )

    @classmethod
    def read(cls, view) -> SplitSamples:
        schema = view.get_field_schema()
        fields = [name for name in cls.FIELDS if name.split(".")[0] in schema or name in ("id", "tags")]
        values = dict(zip(fields, view.values(fields))) if len(view) else {name: [] for name in fields}
        count = len(values["id"])
        column = lambda name: list(values.get(name, [None] * count))  # noqa: E731
        return cls(
            column("id"),
            [int(i) for i in column(SOURCE_INDEX)],
            column(IMAGE_HASH),
            column(f"{GROUND_TRUTH}.label"),
            column(f"{GROUND_TRUTH_ORIGINAL}.label"),
            [list(t or []) for t in column("tags")],
            column(REVIEW_DECISION),
            column(REVIEW_LABEL),
        )

    def fingerprint(self) -> str:
        """A hash of what a person can change in the App: labels, tags, and the decisions applied."""
        digest = hashlib.sha256()
        for row in zip(self.ids, self.label, self.tags, self.decision):
            digest.update(repr(row).encode())
        return digest.hexdigest()[:16]


def review_tags(tags: list[str]) -> list[str]:
    return [tag for tag in tags if tag in (TAG_EXCLUDE, TAG_CONFIRM) or tag.startswith(RELABEL_TAG_PREFIX)]


def _consumed_tags(decisions: list[Decision]) -> set[str]:
    return {decision.via.removeprefix("tag:") for decision in decisions if decision.via.startswith("tag:")}


@dataclass
class Collected:
    new: list[Decision] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # App input that cannot be used, with the fix


def collect(samples: SplitSamples, split: str, log: dict[tuple[str, int], list[Decision]], classes: list[str]) -> Collected:
    """New decisions made in the App on these samples: edited labels first, then new review tags
    (`review:ok`, `relabel:<class>`, then `review:exclude`, so exclusion wins when set together).

    A label is a person's edit when it differs from the one the platform last wrote to the sample
    (`review_label`, else the source's) and from the one the log says: a sample just re-created
    from the source, whose decisions are not applied yet, holds the source's label, not an edit."""
    result, at = Collected(), now()
    for position, source_index in enumerate(samples.source_index):
        image_hash, original = samples.image_hash[position], samples.original[position]
        earlier = log.get((SOURCE_PART[split], source_index), [])
        state, _ = fold(earlier, original, image_hash)
        intents, rejected = _app_intents(samples, position, state, earlier, classes, f"{split} sample with source_index {source_index}")
        result.rejected += rejected
        for kind, label, via in intents:
            decision = Decision(split, source_index, image_hash, kind, label, state.label, original, at, via)
            result.new.append(decision)
            state = step(state, decision, original)
    return result


def _app_intents(samples: SplitSamples, position: int, state: SampleState, earlier: list[Decision], classes: list[str], where: str):
    """What a person did to one sample in the App since the log last looked, as (decision, label,
    via) in the order they count, and the input that cannot be used (with the fix)."""
    original = samples.original[position]

    def relabel(target: str, via: str) -> tuple:
        if original is None:  # the source left it unlabeled: a person labels it
            return ("label", target, via)
        return ("relabel", target, via) if target != original else ("confirm", None, via)

    intents, rejected = [], []
    label = samples.label[position]
    written = samples.applied[position] if samples.applied[position] is not None else original
    if label not in (written, state.label):
        if label in classes:
            intents.append(relabel(label, "app"))
        else:
            rejected.append(
                f"{where}: ground_truth {label!r} is not a declared class ({', '.join(classes)}); "
                "set it to one of them in the App, or tag the sample review:exclude."
            )
    new_tags = [tag for tag in review_tags(samples.tags[position]) if tag not in _consumed_tags(earlier)]
    relabels = [tag for tag in new_tags if tag.startswith(RELABEL_TAG_PREFIX)]
    if len(relabels) > 1:
        rejected.append(f"{where}: tags {relabels} name more than one class; keep one relabel:<class> tag.")
        relabels = []
    if TAG_CONFIRM in new_tags:
        intents.append(("confirm", None, f"tag:{TAG_CONFIRM}"))
    for tag in relabels:
        target = tag.removeprefix(RELABEL_TAG_PREFIX)
        if target in classes:
            intents.append(relabel(target, f"tag:{tag}"))
        else:
            rejected.append(f"{where}: tag {tag!r} names no declared class ({', '.join(classes)}); use relabel:<class>.")
    if TAG_EXCLUDE in new_tags:
        intents.append(("exclude", None, f"tag:{TAG_EXCLUDE}"))
    return intents, rejected


def review_order(dataset):
    """The review queues of every split that has one (at least one), one after another in
    REVIEW_ORDER: a query like each of them (FiftyOne's concat), so a decided sample leaves it too."""
    names = set(dataset.list_saved_views())
    queues = [dataset.load_saved_view(review_queue_view_name(split)) for split in REVIEW_ORDER if review_queue_view_name(split) in names]
    combined = queues[0]
    for queue in queues[1:]:
        combined = combined.concat(queue)
    return combined


def undecided(view):
    """The samples of `view` no one has decided on: no decision in force, the source's label, and no
    review tag (so a sample leaves a review queue the moment a person acts on it in the App)."""
    from fiftyone import ViewField as F

    review_tag = F().is_in([TAG_EXCLUDE, TAG_CONFIRM]) | F().starts_with(RELABEL_TAG_PREFIX)
    return view.match(
        ~F(REVIEW_DECISION).is_in(list(KINDS))
        & (F(f"{GROUND_TRUTH}.label") == F(f"{GROUND_TRUTH_ORIGINAL}.label"))
        & (F("tags").filter(review_tag).length() == 0)
    )


def review_queue(view, candidate_ids: list[str]):
    """The review queue of a split: the label candidates (`candidate_ids`) and every sample
    `data_issues` flags for an image issue (dark, blurry, an outlier, ...), that no one has decided on,
    highest review priority first. It is a query, so a sample leaves it the moment a person acts on
    it, and a sample enters it the moment data_issues flags it, whichever asset ran last."""
    from bson import ObjectId

    flagged = {f"{DATA_ISSUES}.0": {"$exists": True}}  # a query, not an expression: a missing field is no error
    chosen = view.match({"$or": [{"_id": {"$in": [ObjectId(i) for i in candidate_ids]}}, flagged]})
    return undecided(chosen).sort_by(REVIEW_PRIORITY, reverse=True)
