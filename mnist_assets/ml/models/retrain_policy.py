"""When a trained model trains again: by a policy, not on every change of its data.

Run by automation (a refresh, a new file, a sensor), a model keeps serving while its data grows a
little. It trains again when
- it was trained by other code (its code version) or from another model (the fine-tuned one's base),
- a person's decision changed what it learns from: a sample it trained on got another label, was
  excluded or brought back, or a sample without a label got one (the review loop relies on this),
- samples it trained on are gone,
- the new samples are more than `new_fraction` of those it trained on,
- it is older than `max_age_days` (the weekly clock).
Between retrains new samples are predicted and scored with the current model (inference only). A
person's own materialization, a backfill and `make run` always train.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mnist_assets.ml.core.files import atomic_write_arrays, read_arrays
from mnist_assets.ml.data.dataset_spec import RetrainPolicy


@dataclass(frozen=True)
class TrainedOn:
    """What a model learned from: every sample of its splits (labeled or not) with the label it had
    in use then ("" for none or excluded), what else it was built from (its code version, the model
    it started from), and when it trained."""

    sample_ids: np.ndarray
    labels: np.ndarray
    built_from: str
    trained_at: float

    @property
    def trained(self) -> int:
        return int((self.labels != "").sum())


def current(sample_ids: list[str], labels_in_use: dict[str, str], built_from: str) -> TrainedOn:
    """The training set as it is now: `labels_in_use` maps each sample it trains on to its label."""
    labels = np.array([labels_in_use.get(sample_id, "") for sample_id in sample_ids], dtype=str)
    return TrainedOn(np.array(sample_ids, dtype=str), labels, built_from, time.time())


def load_trained_on(path: Path) -> TrainedOn | None:
    saved = read_arrays(path)
    if saved is None:
        return None
    return TrainedOn(saved["sample_ids"], saved["labels"], str(saved["built_from"]), float(saved["trained_at"]))


def save_trained_on(path: Path, trained: TrainedOn) -> None:
    atomic_write_arrays(path, **asdict(trained))


def retrain_due(previous: TrainedOn | None, now: TrainedOn, policy: RetrainPolicy) -> tuple[bool, str]:
    """Whether the model trains again, and why (or why not), in words the UI shows."""
    if previous is None:
        return True, "no record of what the model trained on"
    if previous.built_from != now.built_from:
        return True, f"its code version or the model it starts from changed ({previous.built_from} -> {now.built_from})"
    before = dict(zip(previous.sample_ids.tolist(), previous.labels.tolist()))
    shared = [(sample_id, label) for sample_id, label in zip(now.sample_ids.tolist(), now.labels.tolist()) if sample_id in before]
    decided = sum(before[sample_id] != label for sample_id, label in shared)
    if decided:
        return True, f"{decided} samples it trained on, or had no label for, have another label or exclusion (a person's decisions)"
    gone = sum(label != "" for label in before.values()) - sum(before[sample_id] != "" for sample_id, _ in shared)
    if gone:
        return True, f"{gone} samples it trained on are gone"
    new = int((now.labels != "").sum()) - sum(label != "" for _, label in shared)
    limit = policy.new_fraction * max(previous.trained, 1)
    if new > limit:
        return True, f"{new} new samples, more than {policy.new_fraction:.0%} of the {previous.trained} it trained on"
    age = (now.trained_at - previous.trained_at) / 86400
    if age >= policy.max_age_days:
        return True, f"trained {age:.1f} days ago, the policy retrains after {policy.max_age_days:g}"
    return False, (
        f"kept: {new} new samples, {new / max(previous.trained, 1):.1%} of the {previous.trained} it trained on "
        f"(retrains past {policy.new_fraction:.0%}, after {policy.max_age_days:g} days or after a person's decision)"
    )
