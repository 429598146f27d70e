"""A scale-out that is safe to expose, and make commands that pass values as values.

`make worker` refuses a broker, result backend or MongoDB on another host reached without a password,
or a URL it cannot read (a Celery task names code the worker runs), and Dagster storage on SQLite (the
launcher's Celery executor too); the Makefile hands DATASET, DECISIONS, SPLIT, IMAGES and the rest to
the commands as typed, through the environment, so no value is ever parsed as shell text or by make,
and a value a command cannot use (an unclosed quote in IMAGES, APP_PORT=99999, DATASETS=',') is one line. The make commands run for real,
with the set-up stamp taken as done (`-o`): nothing here reinstalls anything or starts a worker.
"""

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import dagster as dg
import pytest
from processes import REPO

from mnist_assets.celery_executor import watched_celery_executor
from mnist_assets.worker import ALLOW_VARIABLE, check, unauthenticated_hosts

POSTGRES_INSTANCE = (REPO / "deploy" / "dagster-celery.yaml").read_text()
OWN_VARIABLES = ("MNIST_ASSETS_", "FIFTYONE_", "DAGSTER_", "DATASET", "DECISIONS", "SPLIT", "IMAGES", "VIEW", "WORKER")


def make(*arguments: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    """`make -o <stamp> ARGUMENTS` in the repository (set-up taken as done), its process group
    killed if it outlives `timeout` (a worker that started after all)."""
    process = subprocess.Popen(
        ["make", "--no-print-directory", "-o", ".venv/.setup-done", *arguments],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"make {' '.join(arguments)} still ran after {timeout} s:\n{stdout[-2000:]}\n{stderr[-2000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.fixture
def clean_env(tmp_path):
    """The environment without the project's variables, with a data folder and Dagster home of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_VARIABLES)}
    for name in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS"):  # under `make test` (CI) a sub-make would say `make[1]: ***`
        env.pop(name, None)
    env.update(MNIST_ASSETS_HOME=str(tmp_path / "data"), FIFTYONE_DATABASE_DIR=str(tmp_path / "db"))
    return env


def dagster_home(tmp_path: Path, instance: str | None) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    if instance is not None:
        (home / "dagster.yaml").write_text(instance)
    return home


@pytest.mark.parametrize(
    ("url", "exposed"),
    [
        ("redis://127.0.0.1:6379/0", []),
        ("redis://localhost:6379/0", []),
        ("redis://127.8.0.1:6379/0", []),
        ("redis://[::1]:6379/0", []),
        ("redis+socket:///run/redis/redis.sock", []),
        ("rpc://", []),
        ("redis://10.0.0.5:6379/0", ["10.0.0.5"]),
        ("redis://broker:6379/0", ["broker"]),
        ("redis://worker@broker:6379/0", ["broker"]),  # a user without a password
        ("redis://:@broker:6379/0", ["broker"]),
        ("redis://:s3cret@10.0.0.5:6379/0", []),
        ("rediss://worker:s3cret@broker:6379/0?ssl_cert_reqs=required", []),
        ("amqp://guest:guest@rabbit:5672//", []),
        ("sentinel://:s3cret@s1:26379;sentinel://s2:26379", ["s2"]),
        ("mongodb://db1:27017,127.0.0.1:27018/?replicaSet=rs0", ["db1"]),
        ("mongodb://mnist:s3cret@db:27017/?authSource=admin", []),
        ("mongodb://db:27017/?authMechanism=MONGODB-X509&tls=true", []),
        ("mongodb+srv://cluster0.example.com/", ["cluster0.example.com"]),
        ("mongodb://%2Ftmp%2Fmongodb-27017.sock/", []),  # a Unix socket
        ("redis://broker.localhost:6379/0", ["broker.localhost"]),  # only some resolvers keep *.localhost local
    ],
)
def test_hosts_reached_without_a_password(url, exposed):
    assert unauthenticated_hosts(url) == exposed


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("10.0.0.5:6379", "has no scheme://"),  # kombu reads it as amqp://guest@10.0.0.5:6379
        ("redis:10.0.0.5:6379", "has no scheme://"),
        ("::::", "has no scheme://"),
        ("@@@", "has no scheme://"),
        ("redis://@@@", "names no host"),
        ("redis://:6379/0", "names no host"),
        ("redis://::::", "has a host that is not one: '::::'"),
        ("redis://[::1:6379/0", "has a host that is not one: '[::1:6379'"),
        ("redis://broker:port/0", "has a host that is not one: 'broker:port'"),
        ("redis://:s3cret@10.0.0.5:6379/0;10.0.0.6:6379", "has no scheme://"),
    ],
)
def test_a_broker_url_the_check_cannot_read_is_refused_unless_allowed(tmp_path, url, reason):
    """These passed: the host parsed as empty, and empty counted as loopback."""
    with pytest.raises(ValueError, match=re.escape(reason)):
        unauthenticated_hosts(url)
    home = dagster_home(tmp_path, POSTGRES_INSTANCE)
    environ = {"DAGSTER_HOME": str(home), "DAGSTER_CELERY_BROKER_URL": url, "DAGSTER_CELERY_BACKEND_URL": "rpc://"}
    (problem,) = check(environ)
    assert problem.startswith(f"DAGSTER_CELERY_BROKER_URL {reason}") and "\n" not in problem
    assert "cannot tell whether it reaches another host without a password" in problem and f"{ALLOW_VARIABLE}=1" in problem
    assert check({**environ, ALLOW_VARIABLE: "1"}) == []
    (mongo,) = check({**environ, "DAGSTER_CELERY_BROKER_URL": "rpc://", "FIFTYONE_DATABASE_URI": url})
    assert mongo.startswith(f"FIFTYONE_DATABASE_URI {reason}")


def test_make_worker_refuses_a_broker_url_without_a_scheme(tmp_path, clean_env):
    env = {
        **clean_env,
        "DAGSTER_HOME": str(dagster_home(tmp_path, POSTGRES_INSTANCE)),
        "DAGSTER_CELERY_BROKER_URL": "10.255.255.1:6379",
        "DAGSTER_CELERY_BACKEND_URL": "redis://127.0.0.1:9/1",
    }
    refused = make("worker", "WORKER=w1", env=env, timeout=60)
    assert refused.returncode != 0 and "dagster-celery" not in refused.stdout  # never started
    messages = [line for line in refused.stderr.splitlines() if line.startswith("make worker: ")]
    assert len(messages) == 1 and messages[0].startswith("make worker: DAGSTER_CELERY_BROKER_URL has no scheme://"), refused.stderr
    assert "kombu reads host:port as amqp://guest@host:port" in messages[0] and f"{ALLOW_VARIABLE}=1" in messages[0]


def test_the_worker_check_passes_loopback_passwords_and_the_explicit_opt_out(tmp_path):
    home = dagster_home(tmp_path, POSTGRES_INSTANCE)
    base = {
        "DAGSTER_HOME": str(home),
        "DAGSTER_CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
        "DAGSTER_CELERY_BACKEND_URL": "redis://127.0.0.1:6379/1",
    }
    assert check(base) == []
    remote = {
        **base,
        "DAGSTER_CELERY_BROKER_URL": "rediss://:s3cret@10.0.0.5:6379/0?ssl_cert_reqs=required",
        "DAGSTER_CELERY_BACKEND_URL": "rediss://:s3cret@10.0.0.5:6379/1?ssl_cert_reqs=required",
        "FIFTYONE_DATABASE_URI": "mongodb://mnist:s3cret@10.0.0.6:27017/?authSource=admin",
    }
    assert check(remote) == []
    open_ = {**base, "DAGSTER_CELERY_BROKER_URL": "redis://10.0.0.5:6379/0", "FIFTYONE_DATABASE_URI": "mongodb://10.0.0.6:27017"}
    assert len(check(open_)) == 2
    assert check({**open_, ALLOW_VARIABLE: "1"}) == []


def test_make_worker_refuses_a_remote_broker_and_mongodb_without_a_password(tmp_path, clean_env):
    home = dagster_home(tmp_path, POSTGRES_INSTANCE)
    env = {
        **clean_env,
        "DAGSTER_HOME": str(home),
        "DAGSTER_CELERY_BROKER_URL": "redis://10.255.255.1:6379/0",
        "DAGSTER_CELERY_BACKEND_URL": "redis://:s3cret@10.255.255.1:6379/1",
        "FIFTYONE_DATABASE_URI": "mongodb://10.255.255.2:27017",
    }
    refused = make("worker", "WORKER=w1", env=env, timeout=60)
    assert refused.returncode != 0
    messages = [line for line in refused.stderr.splitlines() if line.startswith("make worker: ")]
    assert len(messages) == 2, refused.stderr
    assert "DAGSTER_CELERY_BROKER_URL reaches 10.255.255.1, not a loopback address, without a password" in messages[0]
    assert "names code that every worker imports and runs" in messages[0] and f"{ALLOW_VARIABLE}=1" in messages[0]
    assert "FIFTYONE_DATABASE_URI reaches 10.255.255.2" in messages[1] and "--auth" in messages[1]
    assert "dagster-celery" not in refused.stdout  # never started


@pytest.mark.parametrize("instance", [None, "telemetry:\n  enabled: false\n", "storage:\n  sqlite:\n    base_dir: /tmp/x\n"])
def test_make_worker_refuses_sqlite_storage_and_points_to_postgres(tmp_path, clean_env, instance):
    home = dagster_home(tmp_path, instance)
    env = {
        **clean_env,
        "DAGSTER_HOME": str(home),
        "DAGSTER_CELERY_BROKER_URL": "redis://127.0.0.1:9/0",
        "DAGSTER_CELERY_BACKEND_URL": "redis://127.0.0.1:9/1",
    }
    refused = make("worker", "WORKER=w1", env=env, timeout=60)
    assert refused.returncode != 0
    assert "make worker: Celery needs Dagster's storage on PostgreSQL" in refused.stderr
    assert "is SQLite" in refused.stderr and "deploy/dagster-celery.yaml" in refused.stderr
    assert not (home / "storage").exists() and not (home / "history").exists()  # nothing created the instance


@dg.op
def _a_step():
    return 1


@dg.job(
    executor_def=watched_celery_executor.configured(
        {"broker": "redis://127.0.0.1:9/0", "backend": "redis://127.0.0.1:9/1", "worker_wait_seconds": 5}
    )
)
def celery_job():
    _a_step()


def test_the_celery_executor_refuses_a_run_on_sqlite_storage():
    with dg.instance_for_test() as instance:
        result = dg.execute_job(dg.reconstructable(celery_job), instance, raise_on_error=False)
        assert not result.success
        (failure,) = [event for event in result.all_events if event.event_type_value == "PIPELINE_FAILURE"]
        message = failure.event_specific_data.error.message
        assert "Celery needs Dagster's storage on PostgreSQL" in message and "deploy/dagster-celery.yaml" in message


USER_VALUES = ("DATASET", "DECISIONS", "SPLIT", "IMAGES", "VIEW", "WORKER", "PORT", "APP_PORT")


def test_no_recipe_puts_a_command_line_value_into_shell_text():
    recipes = [line for line in (REPO / "Makefile").read_text().splitlines() if line.startswith("\t")]
    substituted = [line for line in recipes if re.search(r"\$[({](" + "|".join(USER_VALUES) + r")[)}]", line)]
    assert substituted == []


@pytest.mark.parametrize(
    ("target", "values", "error"),
    [
        ("review", {"DECISIONS": "x.csv", "DATASET": "nosuch; touch {pwned}"}, "no dataset 'nosuch; touch {pwned}' is declared"),
        ("review", {"DECISIONS": 'x.csv"; touch {pwned}; echo "', "DATASET": "nosuch"}, "no dataset 'nosuch' is declared"),
        ("review", {"DECISIONS": "x.csv", "DATASET": "nosuch", "SPLIT": "test; touch {pwned}"}, "invalid choice: 'test; touch {pwned}'"),
        ("predict", {"IMAGES": "a.png", "DATASET": "nosuch`touch {pwned}`"}, "--dataset 'nosuch`touch {pwned}`' is not a dataset name"),
    ],
)
def test_make_passes_values_as_values_not_shell_text(tmp_path, clean_env, target, values, error):
    pwned = tmp_path / "PWNED"
    values = {name: value.format(pwned=pwned) for name, value in values.items()}
    ran = make(target, *(f"{name}={value}" for name, value in values.items()), env={**clean_env, "DAGSTER_HOME": str(tmp_path / "home")})
    assert not pwned.exists()
    assert ran.returncode != 0
    assert error.format(pwned=pwned) in ran.stderr, ran.stderr[-3000:]


def test_make_passes_dollar_signs_as_typed(tmp_path, clean_env):
    """make expanded `$` in a command-line value: DECISIONS='batch$1.csv' imported batch.csv."""
    (tmp_path / "batch.csv").write_text("source_index,decision,label\n947,relabel,9\n")  # another file's decisions
    ran = make("review", f"DECISIONS={tmp_path}/batch$1.csv", "DATASET=mnist", env=clean_env)
    assert ran.returncode == 2
    assert f"error: decision file {tmp_path}/batch$1.csv does not exist" in ran.stderr, ran.stderr[-3000:]


@pytest.mark.parametrize(
    ("target", "values", "error"),
    [
        ("review", {}, "usage: make review DECISIONS="),  # DECISIONS unset: stops in the shell, before any Python
        ("predict", {"DATASET": "nosuch"}, "nosuch"),
    ],
)
def test_make_never_runs_a_value_as_a_make_function(tmp_path, clean_env, target, values, error):
    """`make predict IMAGES='$(shell touch x)'` ran the command: make expands a command-line value it exports."""
    names = ("DATASET", "DECISIONS", "SPLIT", "IMAGES", "VIEW", "WORKER", "PORT", "APP_PORT", "DATASETS")
    touched = {name: tmp_path / f"PWNED-{name}" for name in names}
    shells = {name: f"$(shell touch {path})" for name, path in touched.items() if name != "DECISIONS" or values}
    ran = make(target, *(f"{name}={value}" for name, value in {**shells, **values}.items()), env=clean_env)
    assert [path.name for path in touched.values() if path.exists()] == []
    assert ran.returncode == 2 and error in ran.stderr, ran.stderr[-3000:]


def test_make_predict_names_images_that_do_not_split(clean_env):
    """An unclosed quote raised a traceback from shlex in the recipe's Python."""
    for images, problem in (('"my digit.png', "no closing quotation"), ("a.png \\", "no escaped character")):
        ran = make("predict", f"IMAGES={images}", env=clean_env)
        assert ran.returncode == 2 and "Traceback" not in ran.stderr, ran.stderr[-3000:]
        (line,) = [line for line in ran.stderr.splitlines() if not line.startswith("make: ***")]
        assert line.startswith(f"make predict: IMAGES cannot be split into file names ({problem}): close every quote")


@pytest.mark.parametrize("port", ["99999", "0", "65536", "abc", "-1"])
def test_make_app_refuses_a_port_that_is_not_one_at_once(clean_env, port):
    """APP_PORT=99999 retried forever; the check comes before FiftyOne is imported."""
    ran = make("app", f"APP_PORT={port}", env=clean_env, timeout=60)
    assert ran.returncode == 2, ran.stderr[-3000:]
    (line,) = [line for line in ran.stderr.splitlines() if not line.startswith("make: ***")]
    assert line == f"APP_PORT (--port) '{port}' is not a TCP port: give a number from 1 to 65535, e.g. APP_PORT=5151."


def test_datasets_of_separators_only_is_refused_not_every_dataset(tmp_path, monkeypatch, capsys):
    """DATASETS=',' ran every dataset."""
    import sys

    import mnist_assets.run_all as run_all

    assert run_all.datasets_variable(" mnist , ", ["mnist"]) == ["mnist"]
    assert run_all.datasets_variable("", ["mnist"]) == run_all.datasets_variable("  ", ["mnist"]) == []  # unset: every dataset
    asked = []
    monkeypatch.setattr(run_all, "run_graph", lambda instance, resources, splits, datasets: asked.append(datasets) or ([], []))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(sys, "argv", ["run_all"])
    for value in (",", " , ,"):
        monkeypatch.setenv("DATASETS", value)
        with pytest.raises(SystemExit) as stopped:
            run_all.main()
        assert stopped.value.code == 2 and asked == []
        declared = ", ".join(run_all.dataset_names())
        assert f"DATASETS={value!r} names no dataset: give comma-separated names of {declared}, or unset" in capsys.readouterr().err


def test_make_review_passes_split(clean_env):
    """The documented minimal header (`source_index,decision,label`) names no split: SPLIT= gives it."""
    ran = make("review", "DECISIONS=x.csv", "SPLIT=nosplit", "DATASET=nosuch", env=clean_env)
    assert ran.returncode != 0
    assert "argument --split: invalid choice: 'nosplit'" in ran.stderr, ran.stderr[-3000:]


def write_release(folder: Path) -> None:
    """A model.onnx as model_release writes one (uint8 [N, 1, 28, 28] in, probabilities out), that
    says 7 for every image."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    bias = np.full(10, -10.0, dtype=np.float32)
    bias[7] = 10.0
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["images"], ["floats"], to=TensorProto.FLOAT),
            helper.make_node("Flatten", ["floats"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "weights"], ["logits_raw"]),
            helper.make_node("Add", ["logits_raw", "bias"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "release",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(np.zeros((784, 10), np.float32), "weights"), numpy_helper.from_array(bias, "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in {"classes": json.dumps([str(d) for d in range(10)]), "image_size": "28", "channels": "1"}.items():
        model.metadata_props.add(key=key, value=value)
    folder.mkdir(parents=True)
    onnx.save(model, folder / "model.onnx")


def test_make_predict_splits_images_like_a_shell_but_never_runs_them(tmp_path, clean_env):
    from PIL import Image

    write_release(tmp_path / "data" / "datasets" / "mnist" / "release")
    spaced, other = tmp_path / "my digit.png", tmp_path / "other.png"
    for path in (spaced, other):
        Image.new("L", (28, 28)).save(path)
    predicted = make("predict", f'IMAGES="{spaced}" {other}', env=clean_env)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert [line.split(": ")[0] for line in predicted.stdout.splitlines() if ": 7 (" in line] == [str(spaced), str(other)]

    pwned = tmp_path / "PWNED"
    injected = make("predict", f"IMAGES={other};touch {pwned}", env=clean_env)
    assert not pwned.exists()
    assert injected.returncode != 0, injected.stderr[-3000:]  # files that do not exist
    assert f"{other};touch: error:" in injected.stdout and f"{pwned}: error:" in injected.stdout
