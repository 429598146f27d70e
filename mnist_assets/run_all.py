"""`make run`: materialize every declared dataset's graph, every split, headless, in the instance
the UI reads (`DATASETS=a,b` or `--datasets a b` picks datasets).

A Dagster run holds assets of one partitioning, so the graph runs in stages
derived from the asset graph itself: as many per-split assets as are ready (one
run per split), then as many unpartitioned ones as are ready, and so on. An asset
whose parent failed is skipped with it (as a backfill would); the summary says
what failed and why.

A declaration under `mnist_assets/defs/` that does not load does not stop the others: it is named
at the start and in the summary, the other datasets run, and the exit status is 1 when it is one of
the datasets to run (all of them by default), so CI sees it.
"""

import argparse
import os
import sys
import time

import dagster as dg

from mnist_assets.components.declarations import PLACEHOLDER_TAG
from mnist_assets.definitions import broken_declarations, defs
from mnist_assets.ml.core.environment import assets_home, dagster_home
from mnist_assets.ml.data.dataset_spec import SPLITS

RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
SUMMARY_KEYS = ("count", "accuracy", "best_val_accuracy", "test_accuracy", "fixed", "broken", "weights", "images_per_second")


def dataset_names(asset_graph=None) -> list[str]:
    """The declared datasets that load: the first part of every asset key but the placeholders of
    broken declarations."""
    asset_graph = asset_graph or defs.resolve_asset_graph()
    return sorted({key.path[0] for key in asset_graph.get_all_asset_keys() if not is_placeholder(asset_graph, key)})


def is_placeholder(asset_graph, key) -> bool:
    """Whether `key` is a broken declaration's placeholder (components/declarations.py): nothing to run."""
    return PLACEHOLDER_TAG in (asset_graph.get(key).tags or {})


def stages(asset_graph=None, datasets=None):
    """[(asset keys, partitioned?)] in an order that respects lineage, alternating partitionings.

    Each stage takes every not-yet-run asset of one partitioning whose parents have all run
    (or are in the same stage, which Dagster orders within the run); `datasets` limits the
    assets to those datasets' graphs.
    """
    asset_graph = asset_graph or defs.resolve_asset_graph()
    order = [
        key
        for key in asset_graph.toposorted_asset_keys
        if (datasets is None or key.path[0] in datasets) and not is_placeholder(asset_graph, key)
    ]
    done: set = set()
    partitioned, idle = True, 0
    while len(done) < len(order):
        stage = []
        for key in order:
            node = asset_graph.get(key)
            if key in done or (node.partitions_def is not None) != partitioned:
                continue
            if all(parent in done or parent in stage for parent in node.parent_keys):
                stage.append(key)
        if stage:
            done.update(stage)
            yield stage, partitioned
        idle = 0 if stage else idle + 1
        if idle == 2:  # neither partitioning can go on: some parents are not among the assets to run
            missing = {key: sorted(p.to_user_string() for p in asset_graph.get(key).parent_keys if p not in order) for key in order}
            stuck = {key.to_user_string(): parents for key, parents in missing.items() if key not in done and parents}
            raise ValueError(f"these assets read assets outside the datasets to run, add their datasets: {stuck}")
        partitioned = not partitioned


def materialize_stage(instance, keys, partition, resources, assets=None, configs=None):
    """One stage of `assets` (default: every declared dataset's) for one partition, in this process;
    `configs` maps asset keys to their Launchpad config (those outside the stage are left out)."""
    ops = {"__".join(key.path): {"config": config} for key, config in (configs or {}).items() if key in keys}
    return dg.materialize(
        assets if assets is not None else defs.assets,
        selection=keys,
        partition_key=partition,
        instance=instance,
        resources=resources,
        run_config={**RUN_CONFIG, "ops": ops} if ops else RUN_CONFIG,
        raise_on_error=False,
        tags={"mnist_assets/launched_by": "make run"},
    )


def materialize_upstream(defs, targets: list, instance, resources, partitions=SPLITS, log=print, configs=None) -> None:
    """`targets` (asset keys of `defs`) and everything they read, stage by stage in this process, for
    `partitions` of the per-split assets (`configs`: as materialize_stage's); raises naming the first stage that fails."""
    graph = defs.resolve_asset_graph()
    wanted = dg.AssetSelection.assets(*targets).upstream().resolve(graph)
    for keys, partitioned in stages(graph, sorted({key.path[0] for key in targets})):
        chosen = [key for key in keys if key in wanted]
        for partition in partitions if partitioned else [None]:
            if not chosen:
                continue
            started = time.perf_counter()
            result = materialize_stage(instance, chosen, partition, resources, defs.assets, configs)
            names = ", ".join(key.path[-1] for key in chosen) + (f"[{partition}]" if partition else "")
            if not result.success:
                raise RuntimeError(f"{names} failed: {'; '.join(summarize(result, partition)[1])}")
            log(f"  {names}: {time.perf_counter() - started:.0f} s")


def materialized_keys(result) -> set:
    return {event.event_specific_data.materialization.asset_key for event in result.get_asset_materialization_events()}


def summarize(result, partition) -> tuple[list[str], list[str]]:
    lines, failures = [], []
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            materialization = event.event_specific_data.materialization
            shown = {
                key: value.value for key, value in materialization.metadata.items() if key in SUMMARY_KEYS or key.endswith("_accuracy")
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


def run_graph(instance, resources, splits=SPLITS, datasets=None) -> tuple[list[str], list[str]]:
    """Materialize every stage; returns the summary lines and the failures."""
    asset_graph = defs.resolve_asset_graph()
    summary, failures = [], []
    failed: set = set()  # assets that did not materialize for some split, and everything below them
    for keys, partitioned in stages(asset_graph, datasets):
        blocked = [key for key in keys if failed & asset_graph.get(key).parent_keys]
        for key in blocked:
            failures.append(f"  skip  {key.to_user_string()} (an upstream asset failed)")
        keys = [key for key in keys if key not in blocked]
        failed.update(blocked)
        if not keys:
            continue
        for partition in splits if partitioned else [None]:
            names = ", ".join(key.to_user_string() for key in keys)
            print(f"\n=== materializing {names}{f' [{partition}]' if partition else ''}", flush=True)
            result = materialize_stage(instance, keys, partition, resources)
            lines, failed_steps = summarize(result, partition)
            summary += lines
            failures += failed_steps
            failed.update(set(keys) - materialized_keys(result))
    return summary, failures


def datasets_variable(value: str, declared: list[str]) -> list[str]:
    """The names in DATASETS (`a,b`, spaces around a name ignored); none when it is unset or blank,
    which runs every dataset. ValueError when it holds separators only: a typo must not run them all."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    if value.strip() and not names:
        raise ValueError(f"DATASETS={value!r} names no dataset: give comma-separated names of {', '.join(declared)}, or unset it for all")
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    declared = dataset_names()
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    parser.add_argument("--datasets", nargs="+", help=f"default: every declared dataset ({', '.join(declared)})")
    args = parser.parse_args()
    try:
        picked = args.datasets or datasets_variable(os.environ.get("DATASETS", ""), declared)
    except ValueError as error:
        parser.error(str(error))
    # A broken declaration is picked by its name or its folder's; with no pick, every one is.
    asked = [item for item in broken_declarations if not picked or {item.name, item.folder} & set(picked)]
    unknown = sorted(set(picked) - set(declared) - {part for item in asked for part in (item.name, item.folder)})
    if unknown:
        parser.error(f"unknown dataset(s) {', '.join(unknown)}; declared under mnist_assets/defs/: {', '.join(declared)}")
    for item in broken_declarations:
        print(f"BROKEN declaration {item}; it does not run, the other datasets do.", file=sys.stderr, flush=True)
    args.datasets = [name for name in picked if name in declared] if picked else declared
    os.environ.setdefault("DAGSTER_HOME", str(dagster_home()))  # run history beside `make ui`'s, when not run by make
    dagster_home().mkdir(parents=True, exist_ok=True)
    instance = dg.DagsterInstance.get()
    started = time.perf_counter()
    summary, failures = run_graph(instance, defs.resources, args.splits, args.datasets)
    failures += [f"  BROKEN  {item}" for item in asked]
    print(f"\n=== mnist_assets: {', '.join(args.datasets) or 'no dataset'}, whole graph in {time.perf_counter() - started:.0f} s")
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
