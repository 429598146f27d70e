"""Label in Label Studio: send a saved view's samples out, bring finished annotations back as decisions.

    python -m mnist_assets.annotate send [--dataset mnist] [--view review-queue-train] [--json]
    python -m mnist_assets.annotate pull [--dataset mnist] [--here] [--json]

`send` (`make annotate`) puts the view's samples, in its order, into the dataset's Label Studio
project (`mnist_assets <dataset>`, created on first use): the image (served from disk), the label in
use, the platform's prediction as a pre-annotation. A sample already waiting there unanswered is not
sent twice.

`pull` (`make annotate-pull`) records every task's latest finished answer in the dataset's one
review log (mnist_assets/annotation/answers.py: matched by split, source index and pixel hash,
`via: label-studio:<project>:<task>`, nothing recorded twice): a class is a relabel (or a confirm of
the source's label, or a label for an unlabeled sample), the "exclude" box an exclusion. Then
`label_review` applies them as for any decision (the daemon's review sensor, or this process when
none runs). `<dataset>_label_studio_sensor` does the same every minute once turned on. Answers that
cannot be recorded are listed with why.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from mnist_assets.annotation import tasks as ls_tasks
from mnist_assets.annotation.answers import record_answers, sample_key
from mnist_assets.annotation.client import LabelStudioError, connect
from mnist_assets.review import apply_recorded, declared_store, exit_status

PREDICTION_FIELDS = ("release_predictions", "lenet_predictions", "clip_zero_shot")  # the first one present is sent


def view_samples(view) -> list[ls_tasks.Sample]:
    """The view's samples, in its order, as tasks name them."""
    from mnist_assets.ml.core.field_names import GROUND_TRUTH, GROUND_TRUTH_ORIGINAL, IMAGE_HASH, SOURCE_INDEX, SPLIT

    schema = view.get_field_schema()
    predicted_field = next((name for name in PREDICTION_FIELDS if name in schema), None)
    fields = [SPLIT, SOURCE_INDEX, IMAGE_HASH, "filepath", f"{GROUND_TRUTH}.label", f"{GROUND_TRUTH_ORIGINAL}.label"]
    columns = list(view.values(fields + ([f"{predicted_field}.label"] if predicted_field else [])))
    predicted = columns[6] if predicted_field else [None] * len(columns[0])
    columns[3] = [os.path.realpath(path) for path in columns[3]]  # resolved once: what the server serves is the real file
    return [ls_tasks.Sample(*values, p) for *values, p in zip(*columns[:6], predicted)]


def send(dataset: str, view_name: str, spec=None) -> dict:
    """`spec` stands for the declaration of a dataset built outside the code location (a test's)."""
    from mnist_assets.annotation import server

    spec, _, store = declared_store(dataset, spec)
    data = store.dataset()
    saved = data.list_saved_views()
    if view_name not in saved:
        raise SystemExit(f"no saved view {view_name!r} in {data.name!r}; saved views: {', '.join(saved) or 'none yet (make run)'}.")
    samples = view_samples(data.load_saved_view(view_name))
    root = server.document_root()
    outside = [s.filepath for s in samples if not Path(s.filepath).is_relative_to(root)]
    if outside:
        raise SystemExit(
            f"{len(outside)} images are outside the folder Label Studio serves ({root}), e.g. {outside[0]}: "
            "start it with LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT set to a folder above them."
        )
    client = connect()
    title = ls_tasks.project_title(dataset)
    config = ls_tasks.label_config(spec.classes())
    project = client.project(title) or client.create_project(title, config, f"{dataset}: sent by mnist_assets")
    # The server serves a project's file only from under one of its storages, and refuses a storage
    # at the document root itself: the storage is the folder that holds these images.
    folder = os.path.commonpath([os.path.dirname(s.filepath) for s in samples]) if samples else str(root)
    if Path(folder) == root:
        raise SystemExit(f"the images lie directly in {root}: set LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT to a folder above it.")
    client.connect_local_files(project["id"], folder)
    waiting = {sample_key(task["data"]) for task in client.export(project["id"]) if not task.get("annotations")}
    new = [s for s in samples if (s.split, s.source_index, s.image_hash) not in waiting]
    sent = client.import_tasks(project["id"], [ls_tasks.task(s, dataset, root) for s in new])
    url = f"{client.url}/projects/{project['id']}"
    return {"project": project["id"], "sent": sent, "already_waiting": len(samples) - len(new), "url": url}


def pull(dataset: str, here: bool = False) -> dict:
    spec, settings, store = declared_store(dataset)
    pulled = record_answers(connect(), spec, store, settings.source_dir, settings.downloads_dir)
    if pulled.decisions:
        apply_recorded(dataset, pulled.decisions, store, here)
    return pulled.summary()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    out = commands.add_parser("send", help="a saved view's samples to the dataset's Label Studio project")
    out.add_argument("--dataset", default="mnist")
    out.add_argument("--view", default="review-queue", help="a saved view (review-queue, review-queue-<split>, to-label, ...)")
    back = commands.add_parser("pull", help="finished annotations into the review log, then applied")
    back.add_argument("--dataset", default="mnist")
    back.add_argument("--here", action="store_true", help="apply in this process even when a daemon runs")
    for command in (out, back):
        command.add_argument("--json", action="store_true", help="end with what was done as one JSON line (for scripts)")
    args = parser.parse_args(argv)

    def command() -> None:
        if args.command == "send":
            done = send(args.dataset, args.view)
            print(f"sent {done['sent']} samples ({done['already_waiting']} already waiting unanswered) to {done['url']}")
        else:
            done = pull(args.dataset, args.here)
            print(f"recorded {sum(done['recorded'].values())} decisions from Label Studio project {done['project']}: {done['recorded']}")
            if done["not_recorded"]:
                print("not recorded: " + "; ".join(f"{count} {why}" for why, count in done["not_recorded"].items()))
        if args.json:
            print(json.dumps(done))

    return exit_status(command, LabelStudioError)


if __name__ == "__main__":
    sys.exit(main())
