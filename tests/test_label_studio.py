"""A round trip through a real Label Studio server (`make label-studio`, its own environment, one start
for the module): 300 MNIST test samples sent from a saved view with CLIP's zero-shot class as a
pre-annotation, answered by a simulated annotator through Label Studio's own API, and pulled back
into the dataset's review log, each decision on the sample it was made for; then the failure cases:
a repeated pull, a changed answer, a class renamed in the tool, a skipped task, a task made for
pixels the sample no longer has, a project deleted in the tool."""

import json
import os
import subprocess
import sys

import dagster as dg
import psutil
import pytest
import requests
from processes import make_server, run_ok

from mnist_assets.annotate import project_title, send
from mnist_assets.annotation import server
from mnist_assets.ml.core.field_names import GROUND_TRUTH, IMAGE_HASH, SOURCE_INDEX
from mnist_assets.ml.store.fiftyone_store import split_view
from mnist_assets.pipeline import build_pipeline_defs, declared_spec
from mnist_assets.resources import Settings
from mnist_assets.run_all import materialize_stage

LIMIT = 300
VIEW = "to-annotate"


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    """Label Studio on a free port, its data and credentials under this module's MNIST_ASSETS_HOME;
    yields the port. The same environment reaches the code under test in this process."""
    home = tmp_path_factory.mktemp("label_studio_home")
    names = ("MNIST_ASSETS_HOME", "MNIST_ASSETS_LIMIT", "MNIST_ASSETS_NAMESPACE", "LABEL_STUDIO_URL")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(MNIST_ASSETS_HOME=str(home), MNIST_ASSETS_LIMIT=str(LIMIT), MNIST_ASSETS_NAMESPACE="annotate")
    try:
        with make_server("label-studio", "LABEL_STUDIO_PORT", dict(os.environ), "/health", home / "label-studio.log") as port:
            os.environ["LABEL_STUDIO_URL"] = f"http://127.0.0.1:{port}"
            yield port
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)


@pytest.fixture(scope="module")
def test_split(label_studio):
    """mnist's test split (300 samples) ingested, reviewed and zero-shot-predicted, saved as a view."""
    settings = Settings.from_env()
    defs = build_pipeline_defs(declared_spec("mnist"))
    keys = [dg.AssetKey(["mnist", name]) for name in ("raw_dataset", "label_review", "clip_embeddings", "zero_shot_predictions")]
    result = materialize_stage(dg.DagsterInstance.ephemeral(), keys, "test", {"settings": settings}, defs.assets)
    assert result.success
    dataset = settings.store("mnist").dataset()
    dataset.save_view(VIEW, split_view(dataset, "test"))
    return dataset


def pull(**_) -> dict:
    """`python -m mnist_assets.annotate pull --here`, as a person runs it (`make annotate-pull`): its own
    process, so the code location it applies the decisions with reads this module's settings."""
    done = run_ok(
        [sys.executable, "-m", "mnist_assets.annotate", "pull", "--dataset", "mnist", "--here", "--json"], env=dict(os.environ), timeout=600
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def api(port: int):
    session = requests.Session()
    session.headers["Authorization"] = f"Token {server.credentials().token}"
    return lambda method, path, **options: session.request(method, f"http://127.0.0.1:{port}{path}", timeout=120, **options)


def annotate(call, task_id: int, label: str | None = None, flags=(), cancelled: bool = False) -> None:
    """What an annotator's submit (or skip) stores: one annotation of the task."""
    result = [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}] if label else []
    if flags:
        result.append({"from_name": "flags", "to_name": "image", "type": "choices", "value": {"choices": list(flags)}})
    response = call("POST", f"/api/tasks/{task_id}/annotations", json={"result": result, "was_cancelled": cancelled})
    assert response.status_code == 201, response.text


def test_the_server_listens_on_localhost_only_and_refuses_requests_without_the_token(label_studio):
    listening = {c.laddr.ip for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.laddr.port == label_studio}
    assert listening == {"127.0.0.1"}
    assert requests.get(f"http://127.0.0.1:{label_studio}/api/projects", timeout=60).status_code == 401
    assert (server.data_dir() / "credentials.json").stat().st_mode & 0o077 == 0  # the owner's alone


def test_a_round_trip_puts_every_answer_on_its_own_sample(label_studio, test_split):
    call = api(label_studio)
    sent = send("mnist", VIEW)
    assert sent["sent"] == LIMIT and sent["already_waiting"] == 0
    assert send("mnist", VIEW)["sent"] == 0  # nothing sent twice while it waits

    exported = call("GET", f"/api/projects/{sent['project']}/export", params={"exportType": "JSON", "download_all_tasks": "true"}).json()
    assert len(exported) == LIMIT
    by_index = dict(zip(*split_view(test_split, "test").values([SOURCE_INDEX, f"{GROUND_TRUTH}.label"])))
    hashes = dict(zip(*test_split.values([SOURCE_INDEX, IMAGE_HASH])))
    for task in exported:
        data = task["data"]
        assert data["label_in_use"] == by_index[data["source_index"]] and data["image_hash"] == hashes[data["source_index"]]
        assert data["image"].startswith("/data/local-files/?d=") and task["predictions"]  # the zero-shot class, pre-annotated
    image = call("GET", exported[0]["data"]["image"])
    assert image.status_code == 200 and image.content[:4] == b"\x89PNG"  # served from disk

    # The annotator: wrong labels fixed on the first 20 tasks, one excluded, one skipped, the rest confirmed.
    tasks = sorted(exported, key=lambda task: task["id"])
    relabelled = {}
    for position, task in enumerate(tasks):
        data = task["data"]
        if position < 20:
            relabelled[data["source_index"]] = str((int(data["label_in_use"]) + 1) % 10)
            annotate(call, task["id"], relabelled[data["source_index"]])
        elif position == 20:
            annotate(call, task["id"], data["label_in_use"], flags=["exclude"])
        elif position == 21:
            annotate(call, task["id"], cancelled=True)
        else:
            annotate(call, task["id"], data["label_in_use"])

    done = pull()
    assert done["recorded"] == {"relabel": 20, "exclude": 1, "confirm": LIMIT - 22} and done["not_recorded"] == {"skipped": 1}
    log = Settings.from_env().store("mnist").decision_log().read()
    assert len(log) == LIMIT - 1
    assert {d.via for d in log} == {f"label-studio:{sent['project']}:{task['id']}" for task in tasks[:21] + tasks[22:]}
    test_split.reload()
    in_use = dict(zip(*split_view(test_split, "test").values([SOURCE_INDEX, f"{GROUND_TRUTH}.label"])))
    assert all(in_use[index] == label for index, label in relabelled.items())  # applied: the labels in use
    assert sum(in_use[i] != by_index[i] for i in in_use) == 20

    # Pulled again: nothing recorded twice.
    again = pull()
    assert again["recorded"] == {} and again["not_recorded"] == {"skipped": 1, "recorded by an earlier pull": LIMIT - 1}

    # A changed answer is recorded anew (the latest wins); a class the dataset does not declare is named, not recorded.
    first, second = tasks[0], tasks[25]
    annotate(call, first["id"], first["data"]["label_in_use"])  # back to the source's label: a confirm
    annotate(call, second["id"], "seven")
    changed = pull()
    assert changed["recorded"] == {"confirm": 1}
    assert any("not one the dataset declares" in why for why in changed["not_recorded"])
    log = Settings.from_env().store("mnist").decision_log()
    assert len(log.history()) == LIMIT - 1 + 1

    # A task made for pixels the sample no longer has (re-ingested with other pixels since): named, not recorded.
    stale = {**tasks[30]["data"], "image_hash": "0" * len(tasks[30]["data"]["image_hash"])}
    assert call("POST", f"/api/projects/{sent['project']}/import", json=[{"data": stale}]).status_code == 201
    (stale_task,) = [
        t
        for t in call("GET", f"/api/projects/{sent['project']}/export", params={"exportType": "JSON", "download_all_tasks": "true"}).json()
        if t["data"] == stale
    ]
    annotate(call, stale_task["id"], "3")
    assert pull()["not_recorded"]["the sample is gone, or its pixels changed since it was sent"] == 1
    assert len(log.history()) == LIMIT

    # A project deleted in the tool: the pull says so and the log keeps everything.
    assert call("DELETE", f"/api/projects/{sent['project']}").status_code == 204
    deleted = subprocess.run(
        [sys.executable, "-m", "mnist_assets.annotate", "pull", "--dataset", "mnist"], env=dict(os.environ), capture_output=True, text=True
    )
    assert deleted.returncode == 2 and "has no project 'mnist_assets mnist' (deleted in the tool?)" in deleted.stderr
    assert len(log.history()) == LIMIT


def test_project_title_names_the_dataset():
    assert project_title("my_clothes") == "mnist_assets my_clothes"
