"""Re-runs for real: `make ui` (webserver and daemon) on a small limit, driven through its GraphQL API.

1. "Materialize all": one backfill of every asset and partition, as the UI launches it, completes.
2. Re-ingesting mnist/raw_dataset[train] alone leads, through the automation sensor and nothing else, to one
   fresh materialization of every downstream asset partition, in lineage order.
3. After an asset's code version changes, the UI's GraphQL API reports it and its downstream stale.
"""

import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from processes import REPO, graphql, make_server, quick_run_env, runs_in_flight, stop_mongod, wait_until_quiet

SPLITS = ["train", "validation", "test"]


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    root = tmp_path_factory.mktemp("automation")
    env = quick_run_env(root, "automation")
    yield env
    stop_mongod(root / "db")


@pytest.fixture(scope="module")
def ui(environment):
    with make_server("ui", "PORT", environment, "/server_info", Path(environment["DAGSTER_HOME"]) / "ui.log") as port:
        yield port


def asset_nodes(port: int) -> dict:
    data = graphql(port, "{ assetNodes { assetKey { path } partitionKeys } }")
    return {"/".join(node["assetKey"]["path"]): node["partitionKeys"] or [None] for node in data["assetNodes"]}


def materializations(port: int) -> list[tuple[str, str | None, float]]:
    """(asset, partition, timestamp in seconds) of every materialization, oldest first."""
    data = graphql(port, "{ assetNodes { assetKey { path } assetMaterializations(limit: 500) { partition timestamp } } }")
    found = [
        ("/".join(node["assetKey"]["path"]), event["partition"], int(event["timestamp"]) / 1000)
        for node in data["assetNodes"]
        for event in node["assetMaterializations"]
    ]
    return sorted(found, key=lambda item: item[2])


def test_materialize_all_backfill_completes(ui):
    nodes = asset_nodes(ui)
    launched = graphql(
        ui,
        """
      mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
        __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }""",
        {
            "params": {
                "assetSelection": [{"path": name.split("/")} for name in nodes],
                "allPartitions": True,
                "title": "Materialize all (test)",
            }
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    deadline, status = time.time() + 1500, None
    while time.time() < deadline:
        status = graphql(
            ui, '{ partitionBackfillOrError(backfillId: "%s") { ... on PartitionBackfill { status } } }' % launched["backfillId"]
        )["partitionBackfillOrError"]["status"]
        if status not in ("REQUESTED", "IN_PROGRESS"):
            break
        time.sleep(10)
    assert status in ("COMPLETED", "COMPLETED_SUCCESS"), f"backfill ended {status}"
    done = {(name, partition) for name, partition, _ in materializations(ui)}
    expected = {(name, partition) for name, partitions in nodes.items() for partition in partitions}
    assert expected <= done, f"not materialized: {sorted(expected - done)}"


def test_refreshing_train_flows_through_the_lineage_once(ui, environment):
    before = materializations(ui)
    if not before:
        pytest.skip("needs the graph materialized by the backfill test")
    wait_until_quiet(ui)
    nodes = asset_nodes(ui)
    repository = graphql(ui, "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }")
    repository = repository["repositoriesOrError"]["nodes"][0]
    launched = graphql(
        ui,
        """
      mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
        __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }""",
        {
            "params": {
                "selector": {
                    "repositoryLocationName": repository["location"]["name"],
                    "repositoryName": repository["name"],
                    "jobName": "mnist_raw_job",
                },
                "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "train"}]},
            }
        },
    )["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched

    retrained = ["lenet_predictions", "fold_ensemble_predictions", "lenet_embeddings", "hardness_scores", "finetuned_predictions"]
    mnist = {name: partitions for name, partitions in nodes.items() if name.startswith("mnist/")}  # fashion_mnist stays as it is
    expected = {(name, "train") for name, partitions in mnist.items() if partitions != [None]}
    expected |= {(f"mnist/{name}", split) for name in retrained for split in ("validation", "test")}
    expected |= {(name, None) for name, partitions in mnist.items() if partitions == [None]}
    started = time.time()
    deadline, quiet_since = started + 1500, None
    while time.time() < deadline:
        new = [m for m in materializations(ui) if m[2] >= started - 5]
        settled = expected <= {(name, partition) for name, partition, _ in new} and runs_in_flight(ui) == 0
        quiet_since = (quiet_since or time.time()) if settled else None
        if quiet_since and time.time() - quiet_since > 60:  # four sensor intervals without a new request
            break
        time.sleep(10)
    new = [m for m in materializations(ui) if m[2] >= started - 5]
    counts = {}
    for name, partition, _ in new:
        counts[(name, partition)] = counts.get((name, partition), 0) + 1
    assert set(counts) == expected, f"missing {sorted(expected - set(counts))}, unexpected {sorted(set(counts) - expected)}"
    assert all(count == 1 for count in counts.values()), f"ran more than once: {[k for k, c in counts.items() if c > 1]}"
    # Lineage order: every asset after each of its (new) parents.
    when = {(name, partition): stamp for name, partition, stamp in new}
    parents = {
        "/".join(node["assetKey"]["path"]): ["/".join(d["path"]) for d in node["dependencyKeys"]]
        for node in graphql(ui, "{ assetNodes { assetKey { path } dependencyKeys { path } } }")["assetNodes"]
    }
    for (name, partition), stamp in when.items():
        for parent in parents[name]:
            for (other, other_partition), other_stamp in when.items():
                if other == parent and (partition is None or other_partition in (partition, None)):
                    assert other_stamp <= stamp, f"{name}[{partition}] before its parent {other}[{other_partition}]"


CHANGED_DEFINITIONS = """
import dagster as dg
from mnist_assets import definitions as shipped

def bump(spec):
    return spec.replace_attributes(code_version=spec.code_version + "-changed")

assets = [a.map_asset_specs(bump) if dg.AssetKey(["mnist", "lenet_checkpoint"]) in a.keys else a for a in shipped.defs.assets]
defs = dg.Definitions(assets=assets, resources=shipped.defs.resources)
"""
STALE_QUERY = """query($key: AssetKeyInput!, $partition: String) { assetNodeOrError(assetKey: $key) { ... on AssetNode {
  staleStatus(partition: $partition) staleCauses(partition: $partition) { key { path } reason category } } } }"""


def stale_status(definitions_file: Path, dagster_home: str) -> dict[str, tuple[str, list]]:
    """Each asset's stale status (its `train` partition where partitioned), through the UI's GraphQL
    schema served in process for `definitions_file` on the instance in `dagster_home`."""
    from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

    instance = dg.DagsterInstance.from_config(dagster_home)
    status = {}
    try:
        with define_out_of_process_context(str(definitions_file), "defs", instance) as context:
            nodes = execute_dagster_graphql(context, "{ assetNodes { assetKey { path } partitionKeys } }").data["assetNodes"]
            for node in nodes:
                variables = {"key": {"path": node["assetKey"]["path"]}, "partition": "train" if node["partitionKeys"] else None}
                result = execute_dagster_graphql(context, STALE_QUERY, variables)
                assert not result.errors, result.errors
                found = result.data["assetNodeOrError"]
                status["/".join(node["assetKey"]["path"])] = (found["staleStatus"], found["staleCauses"])
    finally:
        instance.dispose()
    return status


def test_changed_code_version_marks_the_asset_and_its_downstream_stale(environment, tmp_path):
    """On the instance the tests above filled: nothing is stale with the shipped code. With
    mnist/lenet_checkpoint's code version changed, it is stale (code); once it is re-materialized
    with the new code, its new data version makes its children stale (data). raw_dataset stays fresh."""
    if not materializations_exist(environment):
        pytest.skip("needs the graph materialized by the backfill test")
    changed = tmp_path / "changed_definitions.py"
    changed.write_text(CHANGED_DEFINITIONS)
    shipped = stale_status(REPO_DEFS, environment["DAGSTER_HOME"])
    assert {name for name, (state, _) in shipped.items() if state == "STALE"} == set(), shipped

    after = stale_status(changed, environment["DAGSTER_HOME"])
    assert {name for name, (state, _) in after.items() if state == "STALE"} == {"mnist/lenet_checkpoint"}, after
    assert [cause["category"] for cause in after["mnist/lenet_checkpoint"][1]] == ["CODE"]

    rerun = subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), "asset", "materialize", "-f", str(changed), "--select", "mnist/lenet_checkpoint"],
        env=environment,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    retrained = stale_status(changed, environment["DAGSTER_HOME"])
    stale = {name for name, (state, _) in retrained.items() if state == "STALE"}
    assert {"mnist/lenet_predictions", "mnist/lenet_embeddings", "mnist/finetuned_model"} <= stale, retrained
    assert "mnist/lenet_checkpoint" not in stale and retrained["mnist/raw_dataset"][0] == "FRESH"
    assert "DATA" in {cause["category"] for cause in retrained["mnist/lenet_predictions"][1]}


def materializations_exist(environment) -> bool:
    instance = dg.DagsterInstance.from_config(environment["DAGSTER_HOME"])
    try:
        return instance.get_latest_materialization_event(dg.AssetKey(["mnist", "model_comparison"])) is not None
    finally:
        instance.dispose()


REPO_DEFS = Path(__file__).resolve().parents[1] / "mnist_assets" / "definitions.py"
