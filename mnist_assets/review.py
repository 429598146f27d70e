"""Record label decisions from a file or from Python, and see where a dataset's review stands.

    python -m mnist_assets.review import FILE [--dataset mnist] [--split test] [--no-apply]
    python -m mnist_assets.review status [--dataset mnist]
    python -m mnist_assets.review requests [--dataset mnist]

`import` checks every row of a CSV (`source_index,decision,label`, optional `split` and `note`; `#`
lines are comments) or JSON file against the dataset's source, adds the decisions to the dataset's
review log (all of them, or none with every bad row named), then has `label_review` applied for
each split they touch, so the labels in use change and automation re-runs what depends on them.
When a Dagster daemon runs for the instance (`make ui`), its review sensor applies them within its
interval (30 s): a run through the run queue and the `heavy` pool, as the UI's would be. Headless (no
daemon), or with `--here`, this process materializes `label_review` itself, in process, and says so.
`make review DECISIONS=FILE` runs it. When they cannot be
applied (the code location does not load, or the dataset's declaration in it is broken) they stay
recorded, it says why, and exits with status 3: they apply at the next materialization of
`<dataset>/label_review`. Exit status 2: nothing recorded (a bad file, an unknown or unusable dataset).

From Python:

    from mnist_assets.review import record_decisions
    record_decisions("mnist", [{"split": "test", "source_index": 947, "decision": "relabel", "label": "9"}])
"""

from __future__ import annotations

import argparse
import sys
import time

from mnist_assets.ml.decisions import SPLITS, DecisionError

NOT_APPLIED = 3  # exit status: recorded, not applied
DAEMON_HEARTBEAT_SECONDS = 120  # a sensor daemon heard from within this long counts as running


class NotApplied(RuntimeError):
    """Decisions recorded in the log but not applied now: `reason` says why; label_review applies
    them at its next materialization."""

    def __init__(self, dataset: str, reason: str, decisions: list | None = None, log=None):
        self.dataset, self.reason, self.decisions, self.log = dataset, reason, list(decisions or []), log
        super().__init__(reason)

    def __str__(self) -> str:
        recorded = f"recorded {len(self.decisions)} decisions in {self.log}, " if self.log else ""
        return (
            f"{recorded}not applied: {self.reason}; they apply at the next materialization of {self.dataset}/label_review "
            "(fix that, then `make run`, or materialize it in the UI)"
        )


def declared_store(name: str, spec=None):
    """A declared dataset's (declaration, settings, store); `spec` stands for one built outside the code location."""
    from mnist_assets.pipeline import declared_spec
    from mnist_assets.resources import Settings

    settings = Settings.from_env()
    return spec or declared_spec(name), settings, settings.store(name)


def record_decisions(dataset: str, rows: list[dict], apply: bool = True, via: str = "python", spec=None, here: bool = False):
    """Check and record decisions (dicts with split, source_index, decision, label) for a declared
    dataset; with `apply`, have label_review applied for the splits they touch (by the running
    daemon's review sensor, or `here`, in this process). Returns the decisions. `spec` stands for the
    declaration of a dataset built outside the code location (a benchmark's)."""
    from mnist_assets.ml.decisions import record_rows

    spec, settings, store = declared_store(dataset, spec)
    decisions = record_rows(store.decision_log(), list(enumerate(rows, start=1)), via, spec, settings.source_dir, settings.downloads_dir)
    if apply:
        apply_recorded(dataset, decisions, store, here)
    return decisions


def import_file(dataset: str, path: str, split: str | None = None, apply: bool = True, here: bool = False):
    """`record_decisions` for a decision file; `split` fills rows without one."""
    from mnist_assets.ml.decisions import import_decision_file

    spec, settings, store = declared_store(dataset)
    decisions = import_decision_file(store.decision_log(), path, spec, settings.source_dir, settings.downloads_dir, split)
    if apply:
        apply_recorded(dataset, decisions, store, here)
    return decisions


def apply_recorded(dataset: str, decisions: list, store, here: bool) -> None:
    """Leave the decisions to the running daemon's review sensor, or apply_review them here;
    NotApplied names what was recorded."""
    splits = sorted({d.split for d in decisions}, key=SPLITS.index)
    try:
        defs = _code_location(dataset)
        if not here and daemon_running():
            print(
                f"a Dagster daemon runs for this instance: {dataset}_review_sensor applies them within 30 s, a run of "
                f"{dataset}/label_review for {', '.join(splits)} through the run queue (with the sensor stopped, import with --here)"
            )
            return
        print(f"no Dagster daemon runs for this instance{' (or --here)' if here else ''}: {dataset}/label_review applied in this process")
        apply_review(dataset, splits, defs)
    except NotApplied as error:
        raise NotApplied(dataset, error.reason, decisions, store.decision_log().path) from None


def daemon_running() -> bool:
    """Whether a Dagster daemon's sensor loop has beaten for the instance (DAGSTER_HOME) lately."""
    import os

    import dagster as dg

    if not os.environ.get("DAGSTER_HOME"):
        return False  # no instance named: no daemon can be running on it
    with dg.DagsterInstance.get() as instance:
        beat = instance.get_daemon_heartbeats().get("SENSOR")
    return beat is not None and time.time() - beat.timestamp < DAEMON_HEARTBEAT_SECONDS


def _code_location(dataset: str):
    """The code location's Definitions, when they hold `<dataset>/label_review`; else NotApplied
    saying why (the location does not load, or the dataset's declaration in it is broken)."""
    import dagster as dg

    from mnist_assets.declared import one_line_error

    try:
        from mnist_assets.definitions import broken_declarations, defs
    except Exception as error:  # whatever stops the location loading stops the apply, not the record
        raise NotApplied(dataset, f"the code location mnist_assets.definitions does not load: {one_line_error(error)}") from None
    if dg.AssetKey([dataset, "label_review"]) not in defs.resolve_all_asset_keys():
        own = [item for item in broken_declarations if dataset in (item.name, item.folder)]
        if own:
            raise NotApplied(dataset, f"its declaration {own[0].shown_path} is broken: {own[0].error}")
        raise NotApplied(dataset, f"the code location has no {dataset}/label_review")
    return defs


def apply_review(dataset: str, splits: list[str], defs=None) -> None:
    """Materialize `<dataset>/label_review[split]` for each split in this process, in the instance
    the UI reads; NotApplied when the code location cannot (it does not load, or the dataset's
    declaration is broken)."""
    import dagster as dg

    from mnist_assets.ml.core.environment import dagster_home

    defs = defs or _code_location(dataset)
    from mnist_assets.run_all import materialize_stage, summarize  # imports the code location: after the check

    dagster_home().mkdir(parents=True, exist_ok=True)
    instance = dg.DagsterInstance.get()
    for split in splits:
        result = materialize_stage(instance, [dg.AssetKey([dataset, "label_review"])], split, defs.resources, defs.assets)
        lines, failures = summarize(result, split)
        print("\n".join(lines + failures))
        if not result.success:
            raise SystemExit(f"{dataset}/label_review[{split}] failed; see above.")


def status(dataset: str) -> list[dict]:
    """Per split: the decisions in force by kind, stale ones, and the review queue's length."""
    from mnist_assets.ml.core.field_names import review_queue_view_name
    from mnist_assets.ml.decisions import SplitSamples, plan_apply
    from mnist_assets.ml.store.fiftyone_store import split_view

    _, _, store = declared_store(dataset)
    if not store.exists():
        raise SystemExit(f"dataset {store.name!r} does not exist yet; materialize {dataset}/raw_dataset first (`make run`).")
    data, decisions = store.dataset(), store.decision_log().by_key()
    rows = []
    for split in SPLITS:
        plan = plan_apply(SplitSamples.read(split_view(data, split)), split, decisions)
        queue = review_queue_view_name(split)
        pending = len(data.load_saved_view(queue)) if queue in data.list_saved_views() else None
        rows.append({"split": split, **plan.counts(), "stale": len(plan.stale), "pending": pending})
    return rows


def label_requests(dataset: str) -> str:
    """The file of the next batch to label (sample, file, the model's guess), where it is, and how to
    answer it; a ValueError with the fix when the dataset has no unlabeled samples or none proposed yet."""
    from mnist_assets.assets.label_requests import requests_file

    spec, _, store = declared_store(dataset)
    path = requests_file(store)
    if not spec.has_unlabeled:
        raise ValueError(f"{dataset} declares no unlabeled samples (label_budget), so nothing is proposed for labeling.")
    if not path.is_file():
        raise ValueError(f"no label requests for {dataset} yet: materialize {dataset}/label_requests (make run) first.")
    return (
        f"# {path}\n# label them in the App (saved view to-label) or answer with a decision file: "
        "source_index,decision,label with decision `label` (make review DECISIONS=... SPLIT=train)\n" + path.read_text()
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    importing = commands.add_parser("import", help="record the decisions of a CSV or JSON file")
    importing.add_argument("file")
    importing.add_argument("--dataset", default="mnist")
    importing.add_argument("--split", choices=SPLITS, help="the split of rows that name none")
    importing.add_argument("--no-apply", action="store_true", help="only record; label_review applies them later")
    importing.add_argument("--here", action="store_true", help="apply in this process even when a daemon runs")
    showing = commands.add_parser("status", help="decisions in force, stale ones and pending reviews per split")
    showing.add_argument("--dataset", default="mnist")
    requesting = commands.add_parser("requests", help="the next batch of unlabeled samples to label (label_requests' file)")
    requesting.add_argument("--dataset", default="mnist")
    args = parser.parse_args(argv)

    def command() -> None:
        if args.command == "import":
            decisions = import_file(args.dataset, args.file, args.split, apply=not args.no_apply, here=args.here)
            print(f"recorded {len(decisions)} decisions from {args.file} in {declared_store(args.dataset)[2].decision_log().path}")
        elif args.command == "requests":
            print(label_requests(args.dataset), end="")
        else:
            for row in status(args.dataset):
                print("  ".join(f"{key}={value}" for key, value in row.items()))

    return exit_status(command, DecisionError)


def exit_status(command, *errors: type[Exception]) -> int:
    """Run a command line's work: 0 when done, NOT_APPLIED when decisions were recorded but not
    applied now, 2 with a one-line error (no traceback) for `errors` and ValueError."""
    try:
        command()
    except NotApplied as error:  # recorded; label_review applies them at its next materialization
        print(error, file=sys.stderr)
        return NOT_APPLIED
    except (*errors, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
