"""`make run`: materialize the whole graph, every split, headless, in the instance the UI reads.

Dagster runs hold assets of one partitioning, so the graph runs as four stages:
per split (ingest, metadata, CLIP), the LeNet checkpoint, per split (LeNet
predictions, embeddings, quality), then augmentation, fine-tuning and the
comparison. A failed step (for example CLIP without weights) skips only what
depends on it; the summary says what failed and why.
"""

import argparse
import sys
import time

import dagster as dg

from mnist_assets.definitions import (
    FINETUNE_ASSETS,
    PER_SPLIT_ASSETS,
    SCORED_SPLIT_ASSETS,
    TRAINING_ASSETS,
    all_assets,
    defs,
)
from mnist_assets.environment import assets_home
from mnist_assets.ml.mnist_source import SPLITS

RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
SUMMARY_KEYS = ("count", "accuracy", "best_val_accuracy", "test_accuracy", "fixed", "broken", "weights", "images_per_second")


def stages(splits):
    for split in splits:
        yield PER_SPLIT_ASSETS, split
    yield TRAINING_ASSETS, None
    for split in splits:
        yield SCORED_SPLIT_ASSETS, split
    yield FINETUNE_ASSETS, None


def materialize_stage(instance, keys, partition, resources):
    return dg.materialize(
        all_assets,
        selection=keys,
        partition_key=partition,
        instance=instance,
        resources=resources,
        run_config=RUN_CONFIG,
        raise_on_error=False,
        tags={"mnist_assets/launched_by": "make run"},
    )


def summarize(result, partition) -> tuple[list[str], list[str]]:
    lines, failures = [], []
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            materialization = event.event_specific_data.materialization
            shown = {
                key: value.value
                for key, value in materialization.metadata.items()
                if key in SUMMARY_KEYS or key.endswith("_accuracy")
            }
            label = materialization.asset_key.to_user_string() + (f"[{partition}]" if partition else "")
            values = ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())
            lines.append(f"  ok    {label:34s} {values}")
        elif event.event_type_value == "STEP_FAILURE":
            error = event.event_specific_data.error
            message = (error.cause or error).message.strip().splitlines()[-1] if error else "failed"
            failures.append(f"  FAIL  {event.step_key}{f'[{partition}]' if partition else ''}: {message[:400]}")
        elif event.event_type_value == "STEP_SKIPPED":
            failures.append(f"  skip  {event.step_key}{f'[{partition}]' if partition else ''} (an upstream step failed)")
    return lines, failures


def run_graph(instance, resources, splits=SPLITS) -> tuple[list[str], list[str]]:
    """Materialize every stage; returns the summary lines and the failures."""
    summary, failures = [], []
    for keys, partition in stages(splits):
        print(f"\n=== materializing {', '.join(keys)}{f' [{partition}]' if partition else ''}", flush=True)
        result = materialize_stage(instance, keys, partition, resources)
        lines, failed = summarize(result, partition)
        summary += lines
        failures += failed
    return summary, failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    args = parser.parse_args()
    instance = dg.DagsterInstance.get()
    started = time.perf_counter()
    summary, failures = run_graph(instance, defs.resources, args.splits)
    print(f"\n=== mnist_assets: whole graph in {time.perf_counter() - started:.0f} s")
    print("\n".join(summary))
    if failures:
        print("\n".join(failures))
    print(
        f"\nData: {assets_home()}   Dagster instance: {instance.root_directory}\n"
        "Look at it: `make ui` (Dagster UI, lineage and metadata), `make app` (samples in the FiftyOne App)."
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
