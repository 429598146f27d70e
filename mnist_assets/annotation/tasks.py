"""What goes to Label Studio and what comes back, as plain data (no server, no FiftyOne).

Out: one task per sample. The task's data names the sample the way the decision log does (split,
source index, pixel hash), never by position or FiftyOne id, which a re-ingest may change; the
image is a local-files link (nothing is uploaded); the label in use and the platform's prediction go
along, the prediction as a pre-annotation an annotator accepts or changes.

Back: each task's latest finished answer becomes one decision row: the class chosen is a `confirm`
when it is the source's label, otherwise a `relabel` (a `label`, for a sample the source left
unlabeled); an `exclude` when the annotator ticked "exclude". A skipped
task, or one without an answer, decides nothing.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

CHOICES = "label"  # the Choices control's name: the class
FLAGS = "flags"  # a second Choices control: "exclude"
EXCLUDE = "exclude"
IMAGE = "image"
PREDICTION_VERSION = "mnist_assets"
NONE = "(none)"  # a task's label for a sample without one


def project_title(dataset: str) -> str:
    """The dataset's one Label Studio project."""
    return f"mnist_assets {dataset}"


def label_config(classes: list[str]) -> str:
    """The labeling interface: the image, one class to choose, and an optional exclusion."""
    choices = "\n    ".join(f"<Choice value={quoteattr(name)}/>" for name in classes)
    return (
        "<View>\n"
        f'  <Image name="{IMAGE}" value="${IMAGE}" zoom="true"/>\n'
        '  <Header value="Label in use: $label_in_use"/>\n'
        f'  <Choices name="{CHOICES}" toName="{IMAGE}" choice="single" showInline="true">\n'
        f"    {choices}\n"
        "  </Choices>\n"
        f'  <Choices name="{FLAGS}" toName="{IMAGE}" choice="multiple">\n'
        f'    <Choice value="{EXCLUDE}" hint="keep the image out of training and evaluation"/>\n'
        "  </Choices>\n"
        "</View>"
    )


def local_file_url(path: str, document_root: Path) -> str:
    """The link Label Studio serves a local file under (its local-files mode), for a resolved `path`
    (no link left in it); refuses a file outside the root, which the server would not serve."""
    relative = Path(path).relative_to(document_root.resolve())  # ValueError outside the root
    return "/data/local-files/?d=" + urllib.parse.quote(relative.as_posix())


@dataclass(frozen=True)
class Sample:
    split: str
    source_index: int
    image_hash: str
    filepath: str
    label: str | None  # the label in use; None: unlabeled
    original_label: str | None  # the source's label; None: unlabeled
    predicted: str | None  # the platform's prediction, or None


def task(sample: Sample, dataset: str, document_root: Path) -> dict:
    """One Label Studio task for a sample, with the prediction as a pre-annotation."""
    data = {
        IMAGE: local_file_url(sample.filepath, document_root),
        "dataset": dataset,
        "split": sample.split,
        "source_index": sample.source_index,
        "image_hash": sample.image_hash,
        "label_in_use": sample.label or NONE,
        "source_label": sample.original_label or NONE,
    }
    found = {"data": data}
    if sample.predicted is not None:
        result = [{"from_name": CHOICES, "to_name": IMAGE, "type": "choices", "value": {"choices": [sample.predicted]}}]
        found["predictions"] = [{"model_version": PREDICTION_VERSION, "result": result}]
    return found


@dataclass(frozen=True)
class Answer:
    """A task's latest finished answer, as a decision row (`row`) or why it decides nothing (`why`)."""

    task_id: int
    row: dict | None
    why: str | None = None
    at: str = ""  # when the answer was last changed (Label Studio's ISO time)


def _chosen(result: list[dict], name: str) -> list[str]:
    return [choice for item in result if item.get("from_name") == name for choice in item.get("value", {}).get("choices", [])]


def answer(exported: dict, classes: list[str]) -> Answer:
    """The decision row of one exported task (Label Studio's JSON export: data and annotations)."""
    task_id, data = int(exported["id"]), exported.get("data", {})
    finished = [a for a in exported.get("annotations", []) if not a.get("was_cancelled")]
    if not finished:
        skipped = any(a.get("was_cancelled") for a in exported.get("annotations", []))
        return Answer(task_id, None, "skipped" if skipped else "not answered")
    latest = max(finished, key=lambda a: (a.get("updated_at") or a.get("created_at") or "", a.get("id", 0)))
    result, at = latest.get("result", []), latest.get("updated_at") or latest.get("created_at") or ""
    row = {"split": data.get("split"), "source_index": data.get("source_index")}
    if EXCLUDE in _chosen(result, FLAGS):
        return Answer(task_id, {**row, "decision": "exclude"}, at=at)
    chosen = _chosen(result, CHOICES)
    if len(chosen) != 1:
        return Answer(task_id, None, "no class chosen")
    if chosen[0] not in classes:
        return Answer(task_id, None, f"class {chosen[0]!r} is not one the dataset declares (renamed in the tool?)")
    if data.get("source_label") == NONE:
        return Answer(task_id, {**row, "decision": "label", "label": chosen[0]}, at=at)
    if chosen[0] == data.get("source_label"):
        return Answer(task_id, {**row, "decision": "confirm"}, at=at)
    return Answer(task_id, {**row, "decision": "relabel", "label": chosen[0]}, at=at)
