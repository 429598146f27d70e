"""A person's label decisions: a durable log per dataset, and how it meets the FiftyOne dataset.

A decision about one sample is `relabel` (to a declared class), `exclude` (keep the sample, leave it
out of training, fold models, evaluation and augmentation) or `confirm` (the source's label is right).
Each records the sample's source index and pixel hash, the label before and after, when, and how
it was made (`app`: an edited `ground_truth`; `tag:<tag>`; `file:<name>:<line>`; `python`).

The log is a JSON-lines file outside the database, written whole to a temporary file and renamed
under a lock, so a re-ingest, a dataset rebuilt from scratch or a fresh database gets every decision
back. Two operations meet the dataset:

- `collect`: what a person did in the App since the last look: a `ground_truth` that differs from
  the label the log says is in use, or a review tag (`review:exclude`, `review:ok`,
  `relabel:<class>`) not recorded yet. Tags stay on the samples as the person set them.
- `plan_apply`: the label in use and the decision of every sample, the log's decisions folded in
  order (the latest wins); a decision made for an image whose pixels have changed since is stale:
  reported, not applied.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from mnist_assets.ml.dataset_spec import SPLITS
from mnist_assets.ml.field_names import (
    GROUND_TRUTH,
    GROUND_TRUTH_ORIGINAL,
    IMAGE_HASH,
    RELABEL_TAG_PREFIX,
    REVIEW_DECISION,
    REVIEW_LABEL,
    SOURCE_INDEX,
    TAG_CONFIRM,
    TAG_EXCLUDE,
)
from mnist_assets.ml.files import atomic_write_bytes

KINDS = ("relabel", "exclude", "confirm")
# Train and validation are drawn from one source file, so their source indices name the same images.
SOURCE_PART = {"train": "train", "validation": "train", "test": "test"}


class DecisionError(ValueError):
    """Decisions that cannot be recorded: the message names each bad line or sample and the fix."""


@dataclass(frozen=True)
class Decision:
    split: str
    source_index: int
    image_hash: str
    decision: str  # relabel | exclude | confirm
    label: str | None  # relabel: the new class; otherwise None
    old_label: str | None  # the label in use before the decision
    original_label: str | None  # the source's label
    at: str  # when, ISO 8601 UTC
    via: str  # app | tag:<tag> | file:<name>:<line> | python

    @property
    def key(self) -> tuple[str, int]:
        return SOURCE_PART[self.split], self.source_index


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
    if decision.decision == "relabel" and decision.label != original_label:
        return SampleState(decision.label, "relabel")
    if decision.decision in ("relabel", "confirm"):  # relabelled to the source's label: a confirmation
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


# --- The log ----------------------------------------------------------------------------------


class DecisionLog:
    """The append-only log of one dataset's decisions, `lock` held while it is rewritten."""

    def __init__(self, path: Path, lock):
        self.path = Path(path)
        self.lock = lock

    def read(self) -> list[Decision]:
        if not self.path.is_file():
            return []
        decisions = []
        for number, line in enumerate(self.path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                decisions.append(Decision(**json.loads(line)))
            except (ValueError, TypeError) as error:
                raise DecisionError(
                    f"{self.path} line {number} is not a decision ({error}); restore it from a backup or delete that line."
                ) from error
        return decisions

    def append(self, new: list[Decision]) -> None:
        """Add decisions after the ones there (read again under the lock, so none is lost)."""
        if not new:
            return
        with self.lock:
            lines = [line for line in (self.path.read_text().splitlines() if self.path.is_file() else []) if line.strip()]
            lines += [json.dumps(asdict(decision), sort_keys=True) for decision in new]
            atomic_write_bytes(self.path, ("\n".join(lines) + "\n").encode())

    def by_key(self) -> dict[tuple[str, int], list[Decision]]:
        found = defaultdict(list)
        for decision in self.read():
            found[decision.key].append(decision)
        return found


def log_fingerprint(decisions: list[Decision], split: str) -> str:
    """A hash of the decisions that could apply to `split`."""
    digest = hashlib.sha256()
    for decision in decisions:
        if SOURCE_PART[decision.split] == SOURCE_PART[split]:
            digest.update(json.dumps(asdict(decision), sort_keys=True).encode())
    return digest.hexdigest()[:16]


# --- The dataset side ------------------------------------------------------------------------


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


# --- Decision files ---------------------------------------------------------------------------

FILE_COLUMNS = ("split", "source_index", "decision", "label", "note")


def read_decision_file(path: Path, default_split: str | None = None) -> list[tuple[int, dict]]:
    """The rows of a CSV (header `source_index,decision,label`, optional `split` and `note`; lines
    starting with # are comments) or JSON (a list of such objects) file, with their line numbers
    (JSON: positions from 1). `default_split` fills a missing split."""
    path = Path(path)
    if not path.is_file():
        raise DecisionError(f"decision file {path} does not exist; give the path of a .csv or .json file.")
    text = path.read_text()
    if path.suffix.lower() == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as error:
            raise DecisionError(f"{path} is not valid JSON (line {error.lineno}: {error.msg}); fix the file.") from error
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise DecisionError(f"{path}: expected a JSON list of objects with source_index, decision and label.")
        numbered = list(enumerate(rows, start=1))
    elif path.suffix.lower() == ".csv":
        lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip() and not line.lstrip().startswith("#")]
        if not lines:
            raise DecisionError(f"{path} holds no decisions; write a header source_index,decision,label and one row per sample.")
        reader = csv.DictReader(io.StringIO("\n".join(line for _, line in lines)))
        missing = {"source_index", "decision"} - set(reader.fieldnames or [])
        if missing:
            raise DecisionError(
                f"{path} line {lines[0][0]}: the header lacks {sorted(missing)}; start the file with source_index,decision,label."
            )
        numbered = [(number, row) for (number, _), row in zip(lines[1:], reader)]
    else:
        raise DecisionError(f"{path}: decision files are .csv or .json, not {path.suffix or 'without a suffix'}.")
    for _, row in numbered:
        if default_split and not row.get("split"):
            row["split"] = default_split
    return numbered


def decisions_from_rows(
    rows: list[tuple[int, dict]], origin: str, sources: dict[str, dict[int, tuple[str, str]]], classes: list[str], states=None
) -> list[Decision]:
    """Check every row and turn them into decisions, or raise naming every bad row and its fix (then
    nothing is recorded). `sources[split]` maps each source index of the split to (pixel hash, source
    label); `states` optionally gives the label in use now, for the decisions' `old_label`."""
    errors, decisions, at = [], [], now()
    for number, row in rows:
        where = f"{origin} line {number}"
        split, kind, label = (
            str(row.get("split") or ""),
            str(row.get("decision") or "").strip(),
            (str(row.get("label") or "").strip() or None),
        )
        if split not in SPLITS:
            errors.append(f"{where}: split {split!r} is not one of {', '.join(SPLITS)}; add a split column or pass --split.")
            continue
        try:
            source_index = int(str(row.get("source_index", "")).strip())
        except ValueError:
            errors.append(f"{where}: source_index {row.get('source_index')!r} is not a whole number.")
            continue
        if source_index not in sources[split]:
            errors.append(
                f"{where}: no {split} sample has source_index {source_index}; check the index (the `source_index` field in the App)."
            )
            continue
        if kind not in KINDS:
            errors.append(f"{where}: decision {kind!r} is not one of {', '.join(KINDS)}.")
            continue
        if kind == "relabel" and label not in classes:
            errors.append(f"{where}: relabel needs a declared class in `label`, got {label!r}; use one of {', '.join(classes)}.")
            continue
        if kind != "relabel" and label is not None:
            errors.append(f"{where}: {kind} takes no label (got {label!r}); leave `label` empty or use relabel.")
            continue
        image_hash, original = sources[split][source_index]
        old = (states or {}).get((split, source_index), original)
        decisions.append(
            Decision(
                split, source_index, image_hash, kind, label, old, original, at, origin if origin == "python" else f"{origin}:{number}"
            )
        )
    if errors:
        raise DecisionError(f"{len(errors)} of {len(rows)} decisions refused, none recorded:\n  " + "\n  ".join(errors))
    return decisions


# --- Collect and apply on a split ---------------------------------------------------------------


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
    from mnist_assets.ml.bulk_writes import set_fields

    samples = SplitSamples.read(view)
    collected = collect(samples, split, log.by_key(), classes)
    log.append(collected.new)
    decisions = log.by_key()
    plan = plan_apply(samples, split, decisions)
    todo = [position for position in plan.updates if samples.label[position] in classes]
    written = 0
    if todo:
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


def import_decision_file(log: DecisionLog, path, spec, source_dir, downloads_dir, default_split: str | None = None) -> list[Decision]:
    """Check a decision file against the dataset's source and add its decisions to the log (see
    `record_rows`); each decision's `via` names the file and line."""
    return record_rows(log, read_decision_file(path, default_split), f"file:{Path(path).name}", spec, source_dir, downloads_dir)


def record_rows(log: DecisionLog, rows: list[tuple[int, dict]], origin: str, spec, source_dir, downloads_dir) -> list[Decision]:
    """Check decision rows against the dataset's source (each names a sample the source holds, a
    declared class) and add them to the log: all of them, or none with every bad row named. The
    images' pixel hashes come from the source, so a decision about a sample not ingested yet (a
    limited run) applies when it is."""
    from mnist_assets.ml.sources import decision_sources, load_source

    sources = decision_sources(load_source(spec, source_dir, downloads_dir), spec)
    earlier = log.by_key()
    in_use = {}  # the label each named sample has now, for the decisions' old_label
    for _, row in rows:
        split, index = row.get("split"), _as_int(row.get("source_index"))
        if split in sources and index in sources[split]:
            image_hash, original = sources[split][index]
            in_use[(split, index)] = fold(earlier.get((SOURCE_PART[split], index), []), original, image_hash)[0].label
    decisions = decisions_from_rows(rows, origin, sources, spec.classes(), in_use)
    log.append(decisions)
    return decisions


def _as_int(value) -> int | None:
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def accuracy_side_by_side(view) -> list[dict]:
    """Each model's accuracy on a split against the labels in use (excluded samples left out) and
    against the source's labels (every sample), for the prediction fields the split holds."""
    from mnist_assets.ml.field_names import LENET_OOF_PREDICTIONS, MODEL_FIELDS

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
