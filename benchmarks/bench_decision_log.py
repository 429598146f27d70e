"""The review log at 650,000 decisions: reading every decision (what each read did before the log was
folded) against reading the folded log, each in a fresh process (seconds inside it, peak RSS).

650,000 decisions about MNIST's 70,000 samples (about nine each: relabels, confirmations and
exclusions from the App, tags and files), recorded as 65 appends of 10,000. The folded read is what
`review status`, the review sensor and label_review pay; the first read after many appends folds
and caches (measured too).

    .venv/bin/python benchmarks/bench_decision_log.py [--decisions N] [--work DIR]
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, resource, sys, time
from collections import defaultdict
from mnist_assets.ml.decisions import DecisionLog
log = DecisionLog(sys.argv[1])
started = time.perf_counter()
if sys.argv[2] == "history":  # every decision read and grouped, as each read did before folding
    found = defaultdict(list)
    for decision in log.history():
        found[decision.key].append(decision)
else:
    found = log.by_key()
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "keys": len(found)}))
"""


def write_log(folder: Path, decisions: int, per_append: int = 10000) -> None:
    import numpy as np

    from mnist_assets.ml.decisions import Decision, DecisionLog

    rng = np.random.default_rng(0)
    log = DecisionLog(folder)
    kinds = np.array(["relabel", "confirm", "exclude"])
    vias = np.array(["app", "tag:review:ok", "tag:review:exclude", "tag:relabel:7", "file:reviewed.csv:12", "python"])
    for start in range(0, decisions, per_append):
        count = min(per_append, decisions - start)
        parts = rng.integers(0, 2, count)
        indices = np.where(parts == 0, rng.integers(0, 60000, count), rng.integers(0, 10000, count))
        chosen = rng.choice(kinds, count)
        labels = rng.integers(0, 10, count)
        log.append(
            [
                Decision(
                    "train" if part == 0 else "test",
                    int(index),
                    f"{int(index):020x}",
                    str(kind),
                    str(label) if kind == "relabel" else None,
                    "3",
                    "3",
                    "2026-12-04T00:00:00+00:00",
                    str(via),
                )
                for part, index, kind, label, via in zip(parts, indices, chosen, labels, rng.choice(vias, count))
            ]
        )


def _read(folder: Path, how: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(folder), how], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(work: Path, decisions: int = 650_000) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    write_log(work, decisions)
    size_mb = sum(p.stat().st_size for p in (work / "log").iterdir()) / 1e6
    history = _read(work, "history")
    first = _read(work, "folded")  # folds all and writes the cache
    folded = min((_read(work, "folded") for _ in range(2)), key=lambda r: r["seconds"])
    assert history["keys"] == first["keys"] == folded["keys"]
    return {
        "decision_log_decisions": decisions,
        "decision_log_mb": round(size_mb, 1),
        "decision_log_history_seconds": round(history["seconds"], 2),
        "decision_log_first_fold_seconds": round(first["seconds"], 2),
        "decision_log_folded_seconds": round(folded["seconds"], 2),
        "decision_log_history_over_folded": round(history["seconds"] / folded["seconds"], 1),
        "decision_log_history_peak_rss_mb": round(history["peak_rss_mb"]),
        "decision_log_folded_peak_rss_mb": round(folded["peak_rss_mb"]),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=650_000)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench_decision_log")
    args = parser.parse_args()
    print(json.dumps(run(args.work, args.decisions), indent=2))
