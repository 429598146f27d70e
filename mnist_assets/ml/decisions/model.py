"""What a decision is and what a sample's decisions add up to.

A decision about one sample is `relabel` (to a declared class), `exclude` (keep the sample, leave it
out of training, fold models, evaluation and augmentation), `confirm` (the source's label is right)
or `label` (a declared class for a sample the source left unlabeled).
Each records the sample's source index and pixel hash, the label before and after, when, how it was
made (`app`: an edited `ground_truth`; `tag:<tag>`; `file:<name>:<line>`; `python`) and an optional
note. A sample's decisions are folded in order (the latest wins); one made for pixels that have
changed since is stale: reported, not applied.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from datetime import UTC, datetime

KINDS = ("relabel", "exclude", "confirm", "label")
LABELING = ("relabel", "label")  # `label`: a class for a sample the source left unlabeled
# Train and validation are drawn from one source file, so their source indices name the same images.
SOURCE_PART = {"train": "train", "validation": "train", "test": "test"}


class DecisionError(ValueError):
    """Decisions that cannot be recorded: the message names each bad line or sample and the fix."""


@dataclass(frozen=True)
class Decision:
    split: str
    source_index: int
    image_hash: str
    decision: str  # relabel | exclude | confirm | label
    label: str | None  # relabel, label: the new class; otherwise None
    old_label: str | None  # the label in use before the decision
    original_label: str | None  # the source's label
    at: str  # when, ISO 8601 UTC
    via: str  # app | tag:<tag> | file:<name>:<line> | python
    note: str | None = None  # a person's words (a decision file's `note` column)

    def __post_init__(self):
        # A log line edited by hand is refused where it is read, naming it, not a KeyError or a
        # silent exclusion later (`step` takes any other kind for an exclusion).
        if self.split not in SOURCE_PART:
            raise DecisionError(f"split {self.split!r} is not one of {', '.join(SOURCE_PART)}")
        if self.decision not in KINDS:
            raise DecisionError(f"decision {self.decision!r} is not one of {', '.join(KINDS)}")

    @property
    def key(self) -> tuple[str, int]:
        return SOURCE_PART[self.split], self.source_index

    def as_dict(self) -> dict:
        """The fields, without `note` when there is none: lines written before notes existed read the same."""
        values = dict(vars(self))  # not dataclasses.asdict: it deep-copies, ten times slower on a long log
        if values["note"] is None:
            del values["note"]
        return values

    def to_json(self) -> str:
        """One log line."""
        return json.dumps(self.as_dict(), sort_keys=True)


DECISION_FIELDS = tuple(field.name for field in fields(Decision))


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class SampleState:
    """What the log says of one sample: the label in use and the latest decision (None: undecided)."""

    label: str | None
    decision: str | None = None

    @property
    def excluded(self) -> bool:
        return self.decision == "exclude"


def step(state: SampleState, decision: Decision, original_label: str | None) -> SampleState:
    """The state after one more decision: exclusion keeps the label in use, the others set it."""
    if decision.decision in LABELING and decision.label != original_label:
        return SampleState(decision.label, decision.decision)
    if decision.decision in (*LABELING, "confirm"):  # relabelled to the source's label: a confirmation
        return SampleState(original_label, "confirm")
    return SampleState(state.label, "exclude")


def fold(decisions: list[Decision], original_label: str | None, image_hash: str | None) -> tuple[SampleState, list[Decision]]:
    """The state after a sample's decisions in order, and those that are stale (made for other pixels)."""
    state, stale = SampleState(original_label), []
    for decision in decisions:
        if decision.image_hash != image_hash:
            stale.append(decision)
        else:
            state = step(state, decision, original_label)
    return state, stale


def superseded_removed(decisions: list[Decision]) -> list[Decision]:
    """A sample's decisions (in order) without those no fold can need any more: for each image hash,
    the last decision and the last one that set a label (an exclusion keeps it); the last of each App
    tag (a tag once recorded is not recorded again) and of each split (`absent` counts by split).
    They stay in their order; the rest changes nothing. Folding the result gives what folding them
    all gives, for any image hash."""
    keep = set()
    seen_last, seen_label, seen_tag, seen_split = set(), set(), set(), set()
    for position in range(len(decisions) - 1, -1, -1):
        decision = decisions[position]
        if decision.image_hash not in seen_last:
            seen_last.add(decision.image_hash)
            keep.add(position)
        if decision.decision != "exclude" and decision.image_hash not in seen_label:
            seen_label.add(decision.image_hash)
            keep.add(position)
        if decision.via.startswith("tag:") and decision.via not in seen_tag:
            seen_tag.add(decision.via)
            keep.add(position)
        if decision.split not in seen_split:
            seen_split.add(decision.split)
            keep.add(position)
    return [decisions[position] for position in sorted(keep)]
