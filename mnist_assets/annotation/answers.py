"""Finished Label Studio answers into a dataset's one review log: what `make annotate-pull` and the
Label Studio sensor both do.

Each task's latest finished answer is matched by split, source index and pixel hash (never by
position) and recorded `via: label-studio:<project>:<task>`. An answer recorded before is not
recorded again, so a pull repeated after a failure, or the sensor's next look, records nothing twice;
a changed answer is recorded anew (the latest decision wins). Answers that cannot be recorded are
counted with why: a skipped task, a class the dataset does not declare (renamed in the tool), a
sample gone or whose pixels changed since it was sent.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from mnist_assets.annotation import tasks as ls_tasks
from mnist_assets.annotation.client import LabelStudio, LabelStudioError


@dataclass
class Pulled:
    project: int
    decisions: list = field(default_factory=list)  # recorded now
    not_recorded: Counter = field(default_factory=Counter)  # why -> how many

    def summary(self) -> dict:
        recorded = Counter(d.decision for d in self.decisions)
        return {"project": self.project, "recorded": dict(recorded), "not_recorded": dict(self.not_recorded)}


def sample_key(data: dict) -> tuple:
    """How a task names its sample: split, source index, pixel hash."""
    return data.get("split"), data.get("source_index"), data.get("image_hash")


def record_answers(client: LabelStudio, spec, store, source_dir, downloads_dir) -> Pulled:
    """Record the project's new finished answers in the store's review log (applying them is the
    caller's: the review sensor, or `apply_recorded`)."""
    from mnist_assets.ml.core.field_names import IMAGE_HASH, SOURCE_INDEX, SPLIT
    from mnist_assets.ml.decisions import record_rows
    from mnist_assets.ml.store.fiftyone_store import exclusive

    title = ls_tasks.project_title(spec.name)
    project = client.project(title)
    if project is None:
        raise LabelStudioError(f"Label Studio has no project {title!r} (deleted in the tool?): send samples first (make annotate)")
    exported = [task for task in client.export(project["id"]) if task.get("data", {}).get("dataset") == spec.name]
    origin = f"label-studio:{project['id']}"
    pulled, log = Pulled(project["id"]), store.decision_log()
    present = set(zip(*store.dataset().values([SPLIT, SOURCE_INDEX, IMAGE_HASH]))) if store.exists() else set()
    # One pull at a time (a person's beside the sensor's), so neither records what the other just did.
    with exclusive(f"label-studio-pull-{store.name}"):
        # The whole history, not the folded log: a person's later decision elsewhere must not make a
        # task's old answer look new (and be recorded over it).
        recorded = {d.via: (d.decision, d.label) for d in log.history() if d.via.startswith(origin + ":")}
        latest = {}
        for task in exported:
            found = ls_tasks.answer(task, spec.classes())
            if found.row is None:
                pulled.not_recorded[found.why] += 1
            elif sample_key(task["data"]) not in present:
                pulled.not_recorded["the sample is gone, or its pixels changed since it was sent"] += 1
            elif recorded.get(f"{origin}:{found.task_id}") == (found.row["decision"], found.row.get("label")):
                pulled.not_recorded["recorded by an earlier pull"] += 1
            else:
                key = (found.row["split"], found.row["source_index"])
                if key not in latest or found.at > latest[key][0]:  # one sample in two tasks: the later answer
                    latest[key] = (found.at, found.task_id, found.row)
        rows = [(task_id, row) for _, task_id, row in sorted(latest.values(), key=lambda item: item[1])]
        if rows:
            pulled.decisions = record_rows(log, rows, origin, spec, source_dir, downloads_dir)
    return pulled
