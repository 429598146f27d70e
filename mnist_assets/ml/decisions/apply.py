"""The log applied to a split: every sample's label in use and decision, written compare-and-set.

`plan_apply` folds each sample's decisions (the latest wins; stale ones, made for other pixels, are
reported, not applied); `review_split` collects the App's new decisions into the log first, then
writes what changed. `accuracy_side_by_side` shows what the decisions do to each model's accuracy.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

from mnist_assets.ml.core.field_names import (
    GROUND_TRUTH,
    GROUND_TRUTH_ORIGINAL,
    LENET_OOF_PREDICTIONS,
    MODEL_FIELDS,
    REVIEW_DECISION,
    REVIEW_LABEL,
)
from mnist_assets.ml.decisions.app import SplitSamples, collect
from mnist_assets.ml.decisions.log import DecisionLog
from mnist_assets.ml.decisions.model import KINDS, SOURCE_PART, Decision, SampleState, fold
from mnist_assets.ml.store.locks import fence_held_locks


@dataclass
class ApplyPlan:
    """The state the log gives every sample of a split, and what it takes to get there."""

    states: list[SampleState]
    stale: list[Decision]
    updates: list[int]  # positions whose stored label or decision differ from their state

    def counts(self) -> dict[str, int]:
        found = Counter(state.decision for state in self.states if state.decision)
        return {kind: found.get(kind, 0) for kind in KINDS}


def plan_apply(samples: SplitSamples, split: str, log: dict[tuple[str, int], list[Decision]]) -> ApplyPlan:
    states, stale, updates = [], [], []
    for position, source_index in enumerate(samples.source_index):
        state, old = fold(log.get((SOURCE_PART[split], source_index), []), samples.original[position], samples.image_hash[position])
        states.append(state)
        stale += old
        applied = samples.applied[position] if samples.applied[position] is not None else samples.original[position]
        if (samples.label[position], samples.decision[position], applied) != (state.label, state.decision, state.label):
            updates.append(position)
    return ApplyPlan(states, stale, updates)


def absent(samples: SplitSamples, split: str, log: dict[tuple[str, int], list[Decision]]) -> int:
    """Decided samples of this split's source part that the split does not hold (a limited ingest,
    or a sample now in the other split of its part)."""
    present = {(SOURCE_PART[split], index) for index in samples.source_index}
    return sum(
        1
        for key, decisions in log.items()
        if key[0] == SOURCE_PART[split] and key not in present and any(d.split == split for d in decisions)
    )


@dataclass
class ReviewResult:
    version: str  # labels_in_use_version after the review
    new: list[Decision]  # recorded by this review (from the App)
    rejected: list[str]  # App input left as it is, with the fix
    plan: ApplyPlan
    written: int  # samples whose label or decision was updated
    skipped: int  # updates not made because a person changed the sample meanwhile (collected next time)
    absent: int
    fingerprint: str  # of the split after the review (SplitSamples.fingerprint)


def review_split(view, split: str, log: DecisionLog, classes: list[str]) -> ReviewResult:
    """Collect the App's new decisions on a split (its view of every sample) into the log, then
    give every sample the label and decision the log says. Writes compare and set: a label a person
    changes while this runs is not overwritten, and a sample whose label collect rejected is left as
    the person set it (they fix it). The caller holds the split's lock."""
    from mnist_assets.ml.store.bulk_writes import set_fields

    samples = SplitSamples.read(view)
    collected = collect(samples, split, log.by_key(), classes)
    fence_held_locks()
    log.append(collected.new)
    decisions = log.by_key()
    plan = plan_apply(samples, split, decisions)
    # (None: a sample the source left unlabeled, or one a person cleared: the log gives it its label)
    todo = [position for position in plan.updates if samples.label[position] in classes or samples.label[position] is None]
    written = 0
    if todo:
        fence_held_locks()  # no label lands after this process lost the split's lock (a pause past its lease)
        written = set_fields(
            view._dataset,
            [samples.ids[i] for i in todo],
            {
                f"{GROUND_TRUTH}.label": [plan.states[i].label for i in todo],
                REVIEW_DECISION: [plan.states[i].decision for i in todo],
                REVIEW_LABEL: [plan.states[i].label for i in todo],
            },
            where={f"{GROUND_TRUTH}.label": [samples.label[i] for i in todo]},
        )
    after = SplitSamples.read(view) if todo else samples
    return ReviewResult(
        labels_in_use_version(samples.source_index, plan.states),
        collected.new,
        collected.rejected,
        plan,
        written,
        len(todo) - written,
        absent(samples, split, decisions),
        review_fingerprint(after, decisions, split),
    )


def review_fingerprint(samples: SplitSamples, decisions: dict[tuple[str, int], list[Decision]], split: str) -> str:
    """What the review sensor compares: the split's labels, tags and decisions as stored, and the
    log's decisions for its source part. It changes when a person acts, in the App or the log."""
    logged = [decision for key in sorted(decisions) for decision in decisions[key]]
    return hashlib.sha256(f"{samples.fingerprint()}:{log_fingerprint(logged, split)}".encode()).hexdigest()[:16]


def labels_in_use_version(source_index: list[int], states: list[SampleState]) -> str:
    """A hash of which samples count and with which label: label_review's data version."""
    digest = hashlib.sha256()
    for index, state in zip(source_index, states):
        digest.update(f"{index}:{state.label}:{state.excluded};".encode())
    return digest.hexdigest()[:24]


def recent_yield(decisions: dict[tuple[str, int], list[Decision]], split: str, count: int = 50) -> dict:
    """Of the latest `count` decisions a person made on this split (one per sample, by time), how many
    changed a label: a reviewer sees when working down the queue stops paying."""
    latest = sorted((ds[-1] for ds in decisions.values() if ds and ds[-1].split == split), key=lambda d: d.at)[-count:]
    changed = sum(d.decision == "relabel" for d in latest)
    return {"reviewed": len(latest), "relabelled": changed, "yield": changed / len(latest) if latest else None}


def log_fingerprint(decisions: list[Decision], split: str) -> str:
    """A hash of the decisions that could apply to `split`."""
    digest = hashlib.sha256()
    for decision in decisions:
        if SOURCE_PART[decision.split] == SOURCE_PART[split]:
            digest.update(decision.to_json().encode())
    return digest.hexdigest()[:16]


def accuracy_side_by_side(view) -> list[dict]:
    """Each model's accuracy on a split against the labels in use (excluded samples left out) and
    against the source's labels (every sample), for the prediction fields the split holds."""
    schema = view.get_field_schema()
    models = {**MODEL_FIELDS, LENET_OOF_PREDICTIONS: "LeNet out of fold"}
    fields = [name for name in models if name in schema]
    if not fields or len(view) == 0:
        return []
    in_use, original, decision, *predicted = view.values(
        [f"{GROUND_TRUTH}.label", f"{GROUND_TRUTH_ORIGINAL}.label", REVIEW_DECISION, *(f"{name}.label" for name in fields)]
    )
    rows = []
    for name, labels in zip(fields, predicted):
        scored = [(p, t, o, d) for p, t, o, d in zip(labels, in_use, original, decision) if p is not None]
        if not scored:
            continue
        used = [(p, t) for p, t, _, d in scored if d != "exclude"]
        rows.append(
            {
                "model": models[name],
                "accuracy_labels_in_use": sum(p == t for p, t in used) / len(used) if used else 0.0,
                "accuracy_source_labels": sum(p == o for p, _, o, _ in scored) / len(scored),
                "evaluated": len(used),
                "excluded": len(scored) - len(used),
            }
        )
    return rows
