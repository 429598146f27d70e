"""Data that grows (issue 47): what a batch of new training images costs, against `make run` of the
whole graph on the same data in the same bench run.

Arrivals: `make run` of mnist on `--limit` samples per split; then batches of new train images
(`--batch-fraction` of train each: samples the IDX source held back, as `MNIST_ASSETS_LIMIT` grows),
each refreshed as a user sees it: `make ui` running, train re-ingested from the UI, and
`lineage_automation` under the daemon doing the rest. `--batches` batches stay under the retrain
policy's `new_fraction` (the models are kept and predict the new images); one more batch passes it
(the models retrain). Per batch: seconds from the launch until no run is left, the ratio to
`make run`, which assets ran, what the per-sample assets computed and reused, which models retrained.

    .venv/bin/python benchmarks/bench_growth.py [--limit 2000] [--batches 5] [--batch-fraction 0.01]
        [--epochs 1] [--clip-model mnist-tiny] [--out benchmarks/growth.json]

Targets (issue 47): a batch without a retrain in at most 5% of `make run`'s time; with a retrain, at
most the training's time plus 10% of the rest. `--clip-model ViT-B-32` runs the same with a real-size
CLIP (random weights: the time is real, the vectors are not), so CLIP's share of the work is real.
Not yet here: the growth of the whole graph to 2x and 4x MNIST.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

from bench_refresh import REPO, launch_raw_train, make_run, materializations  # it puts tests/ on the path
from processes import graphql, make_server, quick_run_env, runs_in_flight, wait_until_quiet

SPLITS = ("train", "validation", "test")
TRAINED = ("lenet_checkpoint", "lenet_oof_predictions", "cnn_checkpoint", "finetuned_model")
TIMEOUT = 7200
# What a batch runs is decided by automation, not known beforehand: the batch is done once no run
# has been queued or running for this long after train's re-ingest (six automation intervals).
QUIET_SECONDS = 30

ENTRIES = """metadataEntries { label ... on IntMetadataEntry { intValue } ... on BoolMetadataEntry { boolValue }
  ... on TextMetadataEntry { text } }"""
# Each asset's last materialization of train (per-split assets) and its last one (the models).
METADATA = """{ assetNodes { assetKey { path } partitionKeys
  train: assetMaterializations(partitions: ["train"], limit: 1) { %s }
  last: assetMaterializations(limit: 1) { %s } } }""" % (ENTRIES, ENTRIES)


def settle(port: int, since: float) -> tuple[float, dict]:
    """Once nothing has run for QUIET_SECONDS: the time of the last materialization since `since`, and
    every (asset, partition) materialized since."""
    deadline, quiet_since, new = time.time() + TIMEOUT, None, {}
    while time.time() < deadline:
        new = {(name, partition): stamp for name, partition, stamp in materializations(port) if stamp >= since}
        quiet_since = (quiet_since or time.time()) if new and runs_in_flight(port) == 0 else None
        if quiet_since and time.time() - quiet_since > QUIET_SECONDS:
            return max(new.values()), new
        time.sleep(2)
    raise TimeoutError(f"runs kept going for {TIMEOUT} s")


def latest_metadata(port: int) -> dict[str, dict]:
    """Each asset's metadata: of its last materialization of train where it is per split, else of its last."""
    found = {}
    for node in graphql(port, METADATA)["assetNodes"]:
        name = "/".join(node["assetKey"]["path"])
        for event in node["train" if node["partitionKeys"] else "last"]:
            found[name] = {e["label"]: e.get("intValue", e.get("boolValue", e.get("text"))) for e in event["metadataEntries"]}
    return found


def batch_report(port: int, started: float, baseline: float) -> dict:
    finished, ran = settle(port, started)
    seconds = finished - started
    metadata = latest_metadata(port)
    recomputed = {
        name.split("/", 1)[1]: {"computed": values["computed"], "reused": values["reused"]}
        for name, values in metadata.items()
        if name.startswith("mnist/") and (name, "train") in ran and "computed" in values
    }
    models = {name: metadata[f"mnist/{name}"] for name in TRAINED if (f"mnist/{name}", None) in ran}
    return {
        "seconds": round(seconds, 1),
        "over_make_run": round(seconds / baseline, 3),
        "materializations": len(ran),
        "ran": sorted(f"{name}[{partition}]" if partition else name for name, partition in ran),
        "train_recomputed": recomputed,
        "retrained": {name: bool(values.get("retrained")) for name, values in models.items()},
        "retrain_why": {name: values.get("retrain") for name, values in models.items()},
    }


def arrivals(root: Path, limit: int, batches: int, fraction: float, epochs: int, clip_model: str = "mnist-tiny") -> dict:
    env = quick_run_env(root, "growth")
    env.update(MNIST_ASSETS_LIMIT=str(limit), MNIST_ASSETS_EPOCHS=str(epochs), DATASETS="mnist", MNIST_ASSETS_CLIP_MODEL=clip_model)
    env.pop("MNIST_ASSETS_EXECUTOR")  # the daemon's runs on a user's default executor (multiprocess)
    print(f"== make run: mnist, {limit} per split, {epochs} epoch(s), CLIP {clip_model} (random weights)", flush=True)
    baseline = make_run(env)
    print(f"make run {baseline:.1f} s", flush=True)
    step = max(1, math.ceil(fraction * limit))
    # The retrain policy counts new samples against what the models trained on (train and validation):
    # the last batch brings enough to pass the shipped new_fraction of 5%.
    sizes = [step] * batches + [max(step, math.ceil(0.05 * 2 * limit) - step * batches + 1)]
    results, grown = [], limit
    for index, size in enumerate(sizes, 1):
        grown += size
        # Settings are read when the code location loads: the UI starts with the larger limit, as a
        # user's would after the folder grew (the start is not timed).
        with make_server("ui", "PORT", {**env, "MNIST_ASSETS_LIMIT": str(grown)}, "/server_info", root / f"ui-{index}.log") as port:
            wait_until_quiet(port, seconds=20, timeout=TIMEOUT, poll=2)
            started = launch_raw_train(port)
            report = {"batch": index, "new_train_images": size, "train_images": grown, **batch_report(port, started, baseline)}
        kept = [name for name, retrained in report["retrained"].items() if not retrained]
        print(
            f"batch {index}: +{size} train images, {report['seconds']} s ({report['over_make_run']:.1%} of make run), "
            f"{report['materializations']} materializations, models kept: {', '.join(kept) or 'none'}",
            flush=True,
        )
        results.append(report)
    return {
        "limit_per_split": limit,
        "epochs": epochs,
        "clip_model": clip_model,
        "make_run_seconds": round(baseline, 1),
        "batches": results,
    }


def summary(result: dict) -> dict:
    """The figures `make bench` tabulates: the slowest batch that kept the models, and the one that
    retrained, each over `make run`."""
    kept = [b["over_make_run"] for b in result["batches"] if not any(b["retrained"].values())]
    retrained = [b["over_make_run"] for b in result["batches"] if any(b["retrained"].values())]
    return {
        "growth_batch_over_make_run": max(kept) if kept else None,
        "growth_retrain_batch_over_make_run": max(retrained) if retrained else None,
    }


def table(result: dict) -> str:
    rows = [
        "| batch | new train images | seconds | of `make run` | materializations | models retrained |",
        "|---|---|---|---|---|---|",
    ]
    for batch in result["batches"]:
        retrained = [name for name, flag in batch["retrained"].items() if flag]
        rows.append(
            f"| {batch['batch']} | {batch['new_train_images']} | {batch['seconds']} | {batch['over_make_run']:.1%} "
            f"| {batch['materializations']} | {', '.join(retrained) or 'none'} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=2000, help="samples per split for make run (default 2000)")
    parser.add_argument("--batches", type=int, default=5, help="batches under the retrain policy (default 5)")
    parser.add_argument("--batch-fraction", type=float, default=0.01, help="each batch's share of train (default 0.01)")
    parser.add_argument("--epochs", type=int, default=1, help="MNIST_ASSETS_EPOCHS for every model (default 1)")
    parser.add_argument("--clip-model", default="mnist-tiny", help="MNIST_ASSETS_CLIP_MODEL, random weights (default mnist-tiny)")
    parser.add_argument("--work", type=Path, help="folder for the bench's instance and data (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "growth.json")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_growth_"))
    work.mkdir(parents=True, exist_ok=True)
    result = {"arrivals": arrivals(work, args.limit, args.batches, args.batch_fraction, args.epochs, args.clip_model)}
    result["date"] = time.strftime("%Y-%m-%d %H:%M")
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(args.out)
    print(table(result["arrivals"]))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
