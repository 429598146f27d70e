"""A person's label decisions: what they are (`model`), the durable log per dataset (`log`), what a
person did in the FiftyOne App (`app`), decision files (`files`), and the log applied to a split
(`apply`). The names below are the package's public face; docs/review.md describes the whole."""

from mnist_assets.ml.data.dataset_spec import SPLITS
from mnist_assets.ml.decisions.app import Collected, SplitSamples, collect, review_order, review_queue, review_tags, undecided
from mnist_assets.ml.decisions.apply import (
    ApplyPlan,
    ReviewResult,
    absent,
    accuracy_side_by_side,
    labels_in_use_version,
    log_fingerprint,
    plan_apply,
    recent_yield,
    review_fingerprint,
    review_split,
)
from mnist_assets.ml.decisions.files import FILE_COLUMNS, decisions_from_rows, import_decision_file, read_decision_file, record_rows
from mnist_assets.ml.decisions.log import DecisionLog
from mnist_assets.ml.decisions.model import KINDS, SOURCE_PART, Decision, DecisionError, SampleState, fold, now, step

__all__ = [
    "FILE_COLUMNS",
    "KINDS",
    "SOURCE_PART",
    "SPLITS",
    "ApplyPlan",
    "Collected",
    "Decision",
    "DecisionError",
    "DecisionLog",
    "ReviewResult",
    "SampleState",
    "SplitSamples",
    "absent",
    "accuracy_side_by_side",
    "collect",
    "decisions_from_rows",
    "fold",
    "import_decision_file",
    "labels_in_use_version",
    "log_fingerprint",
    "now",
    "plan_apply",
    "read_decision_file",
    "recent_yield",
    "record_rows",
    "review_fingerprint",
    "review_split",
    "review_order",
    "review_queue",
    "review_tags",
    "step",
    "undecided",
]
