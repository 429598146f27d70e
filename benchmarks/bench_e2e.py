"""`make run` end to end in fresh folders: wall time, peak memory of every process, time per asset.

CLIP runs as mnist-tiny with random weights (no weights exist offline); run
with --breakdown DAGSTER_HOME to print the per-asset times of an instance.
"""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]


def _peak_rss_sampler(root: psutil.Process, db_dir: str, stop: threading.Event, peaks: dict, samples: list) -> None:
    """Sample the resident memory of the run's process tree and of its mongod, keep the largest of
    each kind, and every sample's largest Python process with its time (to attribute to steps)."""
    while not stop.is_set():
        processes = [root]
        try:
            processes += root.children(recursive=True)
        except psutil.Error:
            pass
        for process in psutil.process_iter(["cmdline"]):
            if process.info["cmdline"] and "mongod" in process.info["cmdline"][0] and db_dir in " ".join(process.info["cmdline"]):
                processes.append(process)
        largest = 0.0
        for process in processes:
            try:
                rss = process.memory_info().rss / 2**20
                name = "mongod" if "mongod" in process.name() else "python"
                peaks[name] = max(peaks.get(name, 0), rss)
                largest = max(largest, rss) if name == "python" else largest
            except psutil.Error:
                continue
        samples.append((time.time(), largest))
        stop.wait(0.5)


def step_times(dagster_home: str) -> tuple[dict, dict]:
    """Seconds per step (summed over partitions) and each step's (start, end) times, from the
    instance's event log."""
    env = {**os.environ, "DAGSTER_HOME": dagster_home}
    code = (
        "import json, dagster as dg\n"
        "from collections import defaultdict\n"
        "instance = dg.DagsterInstance.get()\n"
        "times, spans = defaultdict(float), defaultdict(list)\n"
        "for run in instance.get_runs():\n"
        "    starts = {}\n"
        "    for entry in instance.all_logs(run.run_id):\n"
        "        event = entry.dagster_event\n"
        "        if event is None: continue\n"
        "        if event.event_type_value == 'STEP_START': starts[event.step_key] = entry.timestamp\n"
        "        if event.event_type_value == 'STEP_SUCCESS' and event.step_key in starts:\n"
        "            times[event.step_key] += entry.timestamp - starts[event.step_key]\n"
        "            spans[event.step_key].append((starts[event.step_key], entry.timestamp))\n"
        "seconds = {k: round(v, 1) for k, v in sorted(times.items(), key=lambda kv: -kv[1])}\n"
        "print(json.dumps({'seconds': seconds, 'spans': spans}))\n"
    )
    output = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    found = json.loads(output.strip().splitlines()[-1])
    return found["seconds"], found["spans"]


def step_breakdown(dagster_home: str) -> dict:
    """Seconds per asset (summed over partitions) from the instance's event log."""
    return step_times(dagster_home)[0]


def peak_rss_by_step(spans: dict, samples: list) -> dict:
    """The largest Python process's resident memory (MiB) sampled while each step ran."""
    return {
        step: round(max((rss for at, rss in samples if any(start <= at <= end for start, end in windows)), default=0.0), 1)
        for step, windows in spans.items()
    }


def run(work_dir: Path, limit: int | None = None, datasets: tuple[str, ...] = ("mnist",), epochs: int | None = None) -> dict:
    """`make run` of `datasets` (`limit` samples per split; every model's `epochs`, default the declared recipes)."""
    work_dir = work_dir.resolve()  # DAGSTER_HOME must be absolute
    home, dagster_home = work_dir / "home", work_dir / "dagster_home"
    for folder in (home, dagster_home):
        subprocess.run(["rm", "-rf", str(folder)], check=True)
    dagster_home.mkdir(parents=True)
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        "MNIST_ASSETS_HOME": str(home),
        "DAGSTER_HOME": str(dagster_home),
        "MNIST_ASSETS_CLIP_MODEL": "mnist-tiny",
        "MNIST_ASSETS_CLIP_PRETRAINED": "none",
    }
    env.pop("FIFTYONE_DATABASE_DIR", None)
    env.pop("FIFTYONE_DATABASE_URI", None)
    env.pop("MNIST_ASSETS_EPOCHS", None)
    env.pop("MNIST_ASSETS_LIMIT", None)
    env.pop("MNIST_ASSETS_NAMESPACE", None)
    env["DATASETS"] = ",".join(datasets)  # make bench's e2e_seconds is MNIST alone
    if limit:
        env["MNIST_ASSETS_LIMIT"] = str(limit)
    if epochs:
        env["MNIST_ASSETS_EPOCHS"] = str(epochs)
    log_path = work_dir / f"run-{limit or 'all'}.log"
    started = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "mnist_assets.run_all"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        peaks, samples, stop = {}, [], threading.Event()
        sampler = threading.Thread(target=_peak_rss_sampler, args=(psutil.Process(process.pid), str(home), stop, peaks, samples))
        sampler.start()
        code = process.wait()
        stop.set()
        sampler.join()
    seconds = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"make run failed (exit {code}); see {log_path}")
    summary = [line for line in log_path.read_text().splitlines() if line.startswith(("  ok", "  FAIL", "  skip"))]
    per_step, spans = step_times(str(dagster_home))
    return {
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(max(peaks.values()), 1),
        "peak_rss_by_process_mb": {k: round(v, 1) for k, v in peaks.items()},
        "per_asset_seconds": per_step,
        "per_asset_peak_rss_mb": peak_rss_by_step(spans, samples),
        "summary": summary,
    }


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("work", nargs="?", help="a folder for the run's home and Dagster instance")
    parser.add_argument("limit", nargs="?", type=int, help="samples per split (default: all)")
    parser.add_argument("--datasets", nargs="+", default=["mnist"])
    parser.add_argument("--breakdown", metavar="DAGSTER_HOME", help="only print the per-asset times of that instance")
    args = parser.parse_args()
    if args.breakdown:
        print(json.dumps(step_breakdown(args.breakdown), indent=2))
    else:
        print(json.dumps(run(Path(args.work), args.limit, tuple(args.datasets)), indent=2))
