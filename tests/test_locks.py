"""Locks every worker shares: leases in the database, taken over when a holder vanishes."""

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from processes import REPO, mongod_server, run_ok

from mnist_assets.ml.store.locks import LeaseLock, LockTimeout, _held


@pytest.fixture(scope="module")
def shared_mongodb(tmp_path_factory):
    with mongod_server(tmp_path_factory.mktemp("locks")) as uri:
        yield uri


@pytest.fixture
def collection(shared_mongodb, request):
    import pymongo

    return pymongo.MongoClient(shared_mongodb)["locks_test"][request.node.name[:60]]


def test_one_holder_at_a_time_and_the_timeout_names_it(collection):
    first, second = LeaseLock("dataset-x", collection), LeaseLock("dataset-x", collection, timeout=0.5)
    with first:
        with first:  # re-entrant in its own process
            pass
        with pytest.raises(LockTimeout, match=r"lock 'dataset-x' is held by process \d+ on .*waited 0 s"):
            second.acquire()
    with second:  # released: the other one takes it at once
        assert collection.find_one({"_id": "dataset-x"})["holder"] == second.holder
    assert collection.find_one({"_id": "dataset-x"}) is None


def test_a_waiting_holder_gets_the_lock_when_it_is_released(collection):
    first, second, order = LeaseLock("ingest", collection), LeaseLock("ingest", collection, timeout=30), []
    first.acquire()
    waiter = threading.Thread(target=lambda: (second.acquire(), order.append("second"), second.release()))
    waiter.start()
    time.sleep(1.0)
    order.append("first done")
    first.release()
    waiter.join(30)
    assert order == ["first done", "second"]


def test_a_crashed_holder_blocks_only_until_its_lease_ends(collection):
    crashed = LeaseLock("views", collection, lease=1.5)
    crashed.acquire()
    crashed._stop.set()  # the process died: nobody renews or releases
    started = time.monotonic()
    with LeaseLock("views", collection, timeout=30):
        waited = time.monotonic() - started
    assert 0.5 < waited < 10
    _held.discard(crashed)  # the "dead" holder lives on in this process: keep the next tests' fences off it


WRITER = textwrap.dedent("""
    import sys
    from mnist_assets.ml.store.fiftyone_store import declare_field, get_dataset, save_view
    import fiftyone as fo
    name, worker = sys.argv[1], sys.argv[2]
    dataset = get_dataset(name)
    for i in range(12):
        declare_field(dataset, f"field_{worker}_{i}", fo.FloatField)
        save_view(dataset, f"view-{worker}-{i}", dataset.limit(i + 1))
""")


def test_two_machines_without_a_shared_lock_folder_lose_no_write(shared_mongodb, tmp_path):
    """Two processes with different temporary folders (where a file lock would live) declare fields
    and save views on one dataset at once: every field and every view is there afterwards."""
    import pymongo

    processes = []
    for worker in ("a", "b"):
        folder = tmp_path / f"machine-{worker}"
        folder.mkdir()
        env = {**os.environ, "FIFTYONE_DATABASE_URI": shared_mongodb, "TMPDIR": str(folder), "MNIST_ASSETS_HOME": str(folder / "home")}
        processes.append(
            subprocess.Popen(
                [sys.executable, "-c", WRITER, "shared-locks", worker],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    for process in processes:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output[-3000:]
    database = pymongo.MongoClient(shared_mongodb)["fiftyone"]
    document = database["datasets"].find_one({"name": "shared-locks"})
    fields = {field["name"] for field in document["sample_fields"]}
    assert {f"field_{w}_{i}" for w in "ab" for i in range(12)} <= fields
    views = {view["name"] for view in database["views"].find({"_dataset_id": document["_id"]})}
    assert views == {f"view-{w}-{i}" for w in "ab" for i in range(12)}
    assert set(document.get("saved_views", [])) and len(document["saved_views"]) == 24


def test_a_warm_process_sees_the_fields_another_process_declared(tmp_path):
    """A Celery worker keeps its process from task to task: a dataset it loaded before must show the
    fields another worker declared since (zero_shot_predictions once found no `clip_embeddings`)."""
    from mnist_assets.ml.store.fiftyone_store import get_dataset

    name = f"warm-{tmp_path.name[-20:].replace('_', '-')}"
    assert not get_dataset(name).has_sample_field("declared_elsewhere")
    other = WRITER.replace('f"field_{worker}_{i}"', '"declared_elsewhere"').replace("range(12)", "range(1)")
    run_ok([sys.executable, "-c", other, name, "x"], timeout=300)
    assert get_dataset(name).has_sample_field("declared_elsewhere")


HOLDER = textwrap.dedent("""
    import sys
    import pymongo
    from mnist_assets.ml.store.locks import LeaseLock, LockLost
    lock = LeaseLock("review-x", pymongo.MongoClient(sys.argv[1])["locks_test"]["stopped"], lease=2)
    try:
        with lock:
            print("held", flush=True)
            sys.stdin.readline()  # stopped here (SIGSTOP, as Ctrl-Z does) past its lease, then resumed
            lock.fence()  # what every guarded write does first
            print("wrote after losing the lock", flush=True)
    except LockLost as error:
        print(f"refused: {error}", flush=True)
        sys.exit(3)
""")


def test_a_holder_stopped_past_its_lease_writes_nothing_after_it(shared_mongodb):
    """Issue 33, item 3: a holder stopped longer than its lease resumes after another process took
    the lock: its next guarded write is refused (LockLost), the other's lock stays the other's."""
    import signal

    import pymongo

    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, shared_mongodb], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGSTOP)
    collection = pymongo.MongoClient(shared_mongodb)["locks_test"]["stopped"]
    other = LeaseLock("review-x", collection, timeout=30)
    with other:  # the stopped holder's lease ends and this one takes over
        holder.send_signal(signal.SIGCONT)
        holder.stdin.write("go on\n")
        holder.stdin.flush()
        output, _ = holder.communicate(timeout=60)
        assert holder.returncode == 3, output
        assert "refused: lock 'review-x' was lost while this process held it" in output and "wrote after" not in output
        assert collection.find_one({"_id": "review-x"})["holder"] == other.holder


def test_a_lost_lock_stops_a_saved_view_and_a_field_declaration(tmp_path):
    """Every write the dataset's lock guards is fenced: after the lock went to another holder (here
    written into its document, as a takeover does), neither a view nor a field lands."""
    import fiftyone as fo

    from mnist_assets.ml.store.fiftyone_store import declare_field, exclusive, get_dataset, save_view
    from mnist_assets.ml.store.locks import LockLost

    dataset = get_dataset(f"fenced-{tmp_path.name[-20:].replace('_', '-')}")
    lock = exclusive(f"dataset-{dataset.name}")
    with pytest.raises(LockLost, match="was lost while this process held it"):
        with lock:
            lock.collection.update_one({"_id": lock.name}, {"$set": {"holder": "another-machine:1:x", "pid": 1}})
            with pytest.raises(LockLost):
                save_view(dataset, "stale-view", dataset.limit(1))
            declare_field(dataset, "stale_field", fo.FloatField)
    dataset.reload()
    assert "stale-view" not in dataset.list_saved_views() and not dataset.has_sample_field("stale_field")
    lock.collection.delete_one({"_id": lock.name})
    save_view(dataset, "fresh-view", dataset.limit(1))  # the lock, free again, works as before
    assert "fresh-view" in dataset.list_saved_views()


class FailingRenewals:
    """A lock collection whose renewals fail (the database unreachable), takes and fences work."""

    def __init__(self, collection):
        self.collection = collection

    def __getattr__(self, name):
        return getattr(self.collection, name)

    def update_one(self, *args, **kwargs):
        raise ConnectionError("database unreachable")


def test_a_renewal_that_keeps_failing_reaches_the_holder(collection):
    from mnist_assets.ml.store.locks import LockLost

    lock = LeaseLock("renewed", FailingRenewals(collection), lease=1)
    with pytest.raises(LockLost, match=r"could not be renewed for 1 s \(database unreachable\)"):
        with lock:
            time.sleep(2.5)
            lock.fence()


EVALUATOR = textwrap.dedent("""
    import sys
    import fiftyone as fo
    import numpy as np
    from mnist_assets.ml.figures.visualization import compute_projection
    from mnist_assets.ml.store.fiftyone_store import evaluate, get_dataset
    dataset = get_dataset(sys.argv[1])
    for i in range(int(sys.argv[2])):
        evaluate(dataset, dataset.view(), "predicted", "eval_predicted", ["0", "1"])
        compute_projection(dataset, dataset.view(), "vector", f"projection_{i % 2}", method="pca")
""")


def test_evaluations_and_projections_beside_other_writers_keep_the_schema_whole(shared_mongodb, tmp_path):
    """An evaluation and a projection rewrite the dataset's document (its schema, evaluations and brain
    runs) while other splits' runs declare fields and save views on it: afterwards every sample still
    loads (a stale copy once left samples with an `eval_*` field the schema had lost), and every field,
    view, evaluation and brain run is there."""

    name = f"evaluating-{tmp_path.name[-20:].replace('_', '-')}"
    env = {**os.environ, "FIFTYONE_DATABASE_URI": shared_mongodb, "MNIST_ASSETS_HOME": str(tmp_path / "home")}
    setup = textwrap.dedent("""
        import sys
        import fiftyone as fo
        import numpy as np
        from mnist_assets.ml.store.fiftyone_store import get_dataset
        dataset = get_dataset(sys.argv[1])
        rng = np.random.default_rng(0)
        dataset.add_samples([
            fo.Sample(filepath=f"/nowhere/{i}.png", ground_truth=fo.Classification(label=str(i % 2)),
                      predicted=fo.Classification(label=str(rng.integers(2))), vector=rng.normal(size=4).tolist())
            for i in range(200)
        ])
    """)
    run_ok([sys.executable, "-c", setup, name], env=env, timeout=300)
    options = dict(cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    writer = WRITER.replace("range(12)", "range(40)")
    processes = [
        subprocess.Popen([sys.executable, "-c", EVALUATOR, name, "20"], **options),
        subprocess.Popen([sys.executable, "-c", writer, name, "w"], **options),
    ]
    for process in processes:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output[-3000:]
    check = textwrap.dedent("""
        import sys
        from mnist_assets.ml.store.fiftyone_store import get_dataset
        dataset = get_dataset(sys.argv[1])
        assert len(list(dataset.iter_samples())) == 200  # every sample document matches the schema
        assert dataset.has_sample_field("eval_predicted") and "eval_predicted" in dataset.list_evaluations()
        assert {"projection_0", "projection_1"} <= set(dataset.list_brain_runs()), dataset.list_brain_runs()
        assert {f"field_w_{i}" for i in range(40)} <= set(dataset.get_field_schema())
        assert {f"view-w-{i}" for i in range(40)} == set(dataset.list_saved_views())
    """)
    run_ok([sys.executable, "-c", check, name], env=env, timeout=300)
