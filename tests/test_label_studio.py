"""A round trip through a real Label Studio server (`make label-studio`, its own environment, one start
for the module): 300 MNIST test samples sent from a saved view with CLIP's zero-shot class as a
pre-annotation, answered by a simulated annotator through Label Studio's own API, and pulled back
into the dataset's review log, each decision on the sample it was made for; then the failure cases:
a repeated pull, a changed answer, a class renamed in the tool, a skipped task, a task made for
pixels the sample no longer has, a project deleted in the tool. Then the next batch to label of a
dataset with hidden labels (its `to-label` view) goes out and comes back as label decisions through
the Label Studio sensor, and trains from there."""

import json
import os
import subprocess
import sys

import dagster as dg
import psutil
import pytest
import requests
from processes import make_server, run_ok

from mnist_assets.annotate import send
from mnist_assets.annotation import server
from mnist_assets.annotation.tasks import project_title
from mnist_assets.ml.core.field_names import GROUND_TRUTH, GROUND_TRUTH_CLEAN, IMAGE_HASH, SOURCE_INDEX, TO_LABEL_VIEW
from mnist_assets.ml.data.dataset_spec import DatasetSpec
from mnist_assets.ml.store.fiftyone_store import split_view, usable_view
from mnist_assets.pipeline import build_pipeline_defs, declared_spec
from mnist_assets.resources import Settings
from mnist_assets.run_all import materialize_stage, materialize_upstream

LIMIT = 300
VIEW = "to-annotate"
LABELED, BATCH = 60, 25  # the pool dataset's labels kept, and the batch it asks for


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    """Label Studio on a free port, its data and credentials under this module's MNIST_ASSETS_HOME;
    yields the port. The same environment reaches the code under test in this process."""
    home = tmp_path_factory.mktemp("label_studio_home")
    names = ("MNIST_ASSETS_HOME", "MNIST_ASSETS_LIMIT", "MNIST_ASSETS_NAMESPACE", "MNIST_ASSETS_EPOCHS", "LABEL_STUDIO_URL")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(
        MNIST_ASSETS_HOME=str(home), MNIST_ASSETS_LIMIT=str(LIMIT), MNIST_ASSETS_NAMESPACE="annotate", MNIST_ASSETS_EPOCHS="1"
    )
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


@pytest.fixture(scope="module")
def pool(label_studio):
    """mnist with all but 60 of train's labels hidden (`mnist_pool`, declared here), materialized up to
    label_requests: its `to-label` view holds the next 25 to label."""
    spec = DatasetSpec(
        **{
            **declared_spec("mnist").model_dump(),
            "name": "mnist_pool",
            "label_budget": {"labeled": LABELED, "seed": 0},
            "label_batch": BATCH,
        }
    )
    settings, instance = Settings.from_env(), dg.DagsterInstance.ephemeral()
    defs = dg.Definitions.merge(build_pipeline_defs(spec), dg.Definitions(resources={"settings": settings}))
    requests_key = dg.AssetKey(["mnist_pool", "label_requests"])
    materialize_upstream(defs, [requests_key], instance, {"settings": settings}, partitions=("train", "validation"), log=lambda *_: None)
    return spec, settings, defs, instance


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


def test_the_next_batch_to_label_goes_out_and_comes_back_through_the_sensor_as_labels_that_train(label_studio, pool):
    spec, settings, defs, instance = pool
    call = api(label_studio)
    dataset = settings.store("mnist_pool").dataset()
    sent = send("mnist_pool", TO_LABEL_VIEW, spec=spec)
    assert sent["sent"] == BATCH
    exported = call("GET", f"/api/projects/{sent['project']}/export", params={"exportType": "JSON", "download_all_tasks": "true"}).json()
    asked = dict(zip(*dataset.load_saved_view(TO_LABEL_VIEW).values([SOURCE_INDEX, "lenet_predictions.label"])))
    truth = dict(zip(*split_view(dataset, "train").values([SOURCE_INDEX, f"{GROUND_TRUTH_CLEAN}.label"])))  # hidden, kept to measure
    assert sorted(task["data"]["source_index"] for task in exported) == sorted(asked)
    for task in exported:
        data = task["data"]
        assert data["label_in_use"] == data["source_label"] == "(none)" and data["split"] == "train"
        (prediction,) = call("GET", "/api/predictions", params={"task": task["id"]}).json()
        assert prediction["result"][0]["value"]["choices"] == [asked[data["source_index"]]]  # LeNet's guess, pre-annotated
        annotate(call, task["id"], truth[data["source_index"]])

    def tick(name: str):
        context = dg.build_sensor_context(instance=instance, resources={"settings": settings}, definitions=defs)
        return defs.resolve_sensor_def(name).evaluate_tick(context)

    sensor = defs.resolve_sensor_def("mnist_pool_label_studio_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED  # a person turns it on
    first = tick("mnist_pool_label_studio_sensor")
    assert first.run_requests == [] and f"recorded {BATCH} decisions" in first.skip_message
    log = settings.store("mnist_pool").decision_log().read()
    assert len(log) == BATCH and {d.decision for d in log} == {"label"}
    assert {(d.source_index, d.label) for d in log} == {(index, truth[index]) for index in asked}
    assert all(d.via.startswith(f"label-studio:{sent['project']}:") for d in log)
    assert "recorded 0 decisions" in tick("mnist_pool_label_studio_sensor").skip_message  # nothing twice

    # The review sensor takes it from there, as for any decision: the 25 become labeled train samples.
    assert "train" in [request.partition_key for request in tick("mnist_pool_review_sensor").run_requests]
    assert materialize_stage(instance, [dg.AssetKey(["mnist_pool", "label_review"])], "train", {"settings": settings}, defs.assets).success
    dataset.reload()
    usable = dict(zip(*usable_view(dataset, "train").values([SOURCE_INDEX, f"{GROUND_TRUTH}.label"])))
    assert len(usable) == LABELED + BATCH and all(usable[index] == truth[index] for index in asked)


def test_the_sensor_skips_and_says_why_when_no_label_studio_answers(make_settings, monkeypatch):
    from mnist_assets.sensors import build_label_studio_sensor

    settings, spec, instance = make_settings(), declared_spec("mnist"), dg.DagsterInstance.ephemeral()
    settings.store("mnist").dataset()  # made, empty: the sensor goes as far as the server
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:9")
    context = dg.build_sensor_context(instance=instance, resources={"settings": settings})
    skipped = build_label_studio_sensor(spec).evaluate_tick(context)
    assert skipped.run_requests == [] and "no Label Studio answers at http://127.0.0.1:9" in skipped.skip_message


def test_project_title_names_the_dataset():
    assert project_title("my_clothes") == "mnist_assets my_clothes"
