"""Label Studio out and back at scale (issue 48): 10,000 MNIST train images sent from a saved view to a
real Label Studio (`make label-studio`), answered through Label Studio's own API by a simulated
annotator (every tenth relabelled, the rest confirmed), and pulled back into the review log.

    .venv/bin/python benchmarks/bench_annotation.py [--images 10000] [--work FOLDER]

Prints and writes (`--out`, default benchmarks/annotation.json): seconds out (`make annotate`'s
send), seconds back (`make annotate-pull` as a person runs it: its own process, the decisions
recorded and `label_review[train]` applied in it), and what was lost or misplaced: every answer must
be in the log once, on the sample it was given for, and in the labels in use. Targets: out and back
within 60 s each, nothing lost or misplaced. The annotator's own time is not counted.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
VIEW = "bench-annotate"


def prepare(work: Path, images: int) -> None:
    """This process's settings (the code under test reads them from the environment) and the train
    split ingested and reviewed, saved as a view."""
    os.environ.update(
        MNIST_ASSETS_HOME=str(work / "home"),
        MNIST_ASSETS_LIMIT=str(images),
        MNIST_ASSETS_NAMESPACE="annotatebench",
        MNIST_ASSETS_CLIP_MODEL="mnist-tiny",
        MNIST_ASSETS_CLIP_PRETRAINED="none",
        FIFTYONE_DATABASE_DIR=str(work / "db"),
        DAGSTER_HOME=str(work / "dagster_home"),
    )
    (work / "dagster_home").mkdir(parents=True, exist_ok=True)
    import dagster as dg

    from mnist_assets.ml.store.fiftyone_store import split_view
    from mnist_assets.pipeline import build_pipeline_defs, declared_spec
    from mnist_assets.resources import Settings
    from mnist_assets.run_all import materialize_stage

    settings = Settings.from_env()
    defs = build_pipeline_defs(declared_spec("mnist"))
    keys = [dg.AssetKey(["mnist", name]) for name in ("raw_dataset", "label_review")]
    assert materialize_stage(dg.DagsterInstance.ephemeral(), keys, "train", {"settings": settings}, defs.assets).success
    dataset = settings.store("mnist").dataset()
    dataset.save_view(VIEW, split_view(dataset, "train"), overwrite=True)


def answer_all(port: int, project: int, token: str) -> dict[int, tuple[int, str]]:
    """The simulated annotator: every task answered through the API (8 at a time); returns
    source_index -> (task id, the class given)."""
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    base = f"http://127.0.0.1:{port}"
    tasks = session.get(f"{base}/api/projects/{project}/export", params={"exportType": "JSON", "download_all_tasks": "true"}, timeout=600)
    given = {}
    for position, task in enumerate(sorted(tasks.json(), key=lambda task: task["id"])):
        data = task["data"]
        label = str((int(data["label_in_use"]) + 1) % 10) if position % 10 == 0 else data["label_in_use"]
        given[data["source_index"]] = (task["id"], label)

    def submit(item):
        task_id, label = item
        result = [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]
        response = session.post(f"{base}/api/tasks/{task_id}/annotations", json={"result": result}, timeout=120)
        response.raise_for_status()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(submit, given.values()))
    return given


def run(work: Path, images: int) -> dict:
    prepare(work, images)
    from processes import make_server

    from mnist_assets.annotate import send
    from mnist_assets.annotation import server
    from mnist_assets.ml.core.field_names import GROUND_TRUTH, SOURCE_INDEX
    from mnist_assets.ml.store.fiftyone_store import split_view
    from mnist_assets.resources import Settings

    with make_server("label-studio", "LABEL_STUDIO_PORT", dict(os.environ), "/health", work / "label-studio.log") as port:
        os.environ["LABEL_STUDIO_URL"] = f"http://127.0.0.1:{port}"
        started = time.perf_counter()
        sent = send("mnist", VIEW)
        out_seconds = time.perf_counter() - started
        print(f"out: {sent['sent']} tasks in {out_seconds:.1f} s", flush=True)

        started = time.perf_counter()
        given = answer_all(port, sent["project"], server.credentials().token)
        annotate_seconds = time.perf_counter() - started
        print(f"annotator: {len(given)} answers in {annotate_seconds:.1f} s (not counted)", flush=True)

        started = time.perf_counter()
        pulled = subprocess.run(
            [sys.executable, "-m", "mnist_assets.annotate", "pull", "--dataset", "mnist", "--here", "--json"],
            cwd=REPO,
            env=dict(os.environ),
            capture_output=True,
            text=True,
            check=True,
        )
        back_seconds = time.perf_counter() - started
        done = json.loads(pulled.stdout.strip().splitlines()[-1])
        print(f"back: {done['recorded']} in {back_seconds:.1f} s", flush=True)

    store = Settings.from_env().store("mnist")
    log = store.decision_log().read()
    dataset = store.dataset()
    dataset.reload()
    in_use = dict(zip(*split_view(dataset, "train").values([SOURCE_INDEX, f"{GROUND_TRUTH}.label"])))
    logged = {d.source_index: d for d in log if d.split == "train"}
    lost = sum(index not in logged for index in given)
    misplaced = sum(
        index in logged and (logged[index].via != f"label-studio:{sent['project']}:{task_id}" or in_use[index] != label)
        for index, (task_id, label) in given.items()
    )
    return {
        "images": images,
        "out_seconds": round(out_seconds, 1),
        "back_seconds": round(back_seconds, 1),
        "annotator_seconds": round(annotate_seconds, 1),
        "recorded": done["recorded"],
        "lost": lost,
        "misplaced": misplaced,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--work", type=Path, help="folder for the bench's data, database and server (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "annotation.json")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_annotation_"))
    work.mkdir(parents=True, exist_ok=True)
    result = run(work, args.images)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(args.out)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
