"""The servers a user opens and what runs under them: `make ui` (webserver and daemon) and `make app`
(the FiftyOne App), started for real on 200 samples per split, driven through the UI's GraphQL API
and, in headless Chromium (Playwright), as a person would.

In order, on one instance that `make run` filled with mnist's graph before the servers started: the
servers listen on 127.0.0.1 only; the UI shows the graph; a person launches mnist/raw_dataset for one
partition and sees it succeed; "Materialize all" opens a backfill of every asset and partition
(cancelled at once: tests/test_celery.py runs one to the end through the daemon); a label corrected
on test as the App writes it is picked up by the review sensor and re-evaluates exactly test's
downstream through the daemon, once, without training; the App opens the review queue; a changed
code version shows as stale. Screenshots go to test-artifacts/.
"""

import concurrent.futures
import json
import sys
import time
from pathlib import Path

import dagster as dg
import psutil
import pytest
from graph_runs import NINE
from processes import (
    REPO,
    graphql,
    installed_with_apt,
    make_server,
    quick_run_env,
    run_ok,
    runs_in_flight,
    set_sensor,
    stop_mongod,
    wait_until_quiet,
)

ARTIFACTS = REPO / "test-artifacts"
SPLITS = ["train", "validation", "test"]

EDGES = [
    ("raw_dataset", "label_review"),
    ("label_review", "dataset_metadata"),
    ("raw_dataset", "clip_embeddings"),
    ("clip_embeddings", "umap_projection"),
    ("clip_embeddings", "zero_shot_predictions"),
    ("label_review", "lenet_checkpoint"),
    ("lenet_checkpoint", "lenet_predictions"),
    ("lenet_embeddings", "hardness_scores"),
    ("hardness_scores", "augmented_set"),
    ("augmented_set", "finetuned_model"),
    ("lenet_checkpoint", "finetuned_model"),
    ("finetuned_model", "finetuned_predictions"),
    ("finetuned_predictions", "model_comparison"),
    ("finetuned_model", "model_release"),
]


def listening_ips(port: int) -> set[str]:
    return {c.laddr.ip for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.laddr.port == port}


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    root = tmp_path_factory.mktemp("servers")
    env = quick_run_env(root, "servers")
    run_ok(["make", "run"], env={**env, "DATASETS": "mnist"}, timeout=1200)
    yield env
    stop_mongod(root / "db")


@pytest.fixture(scope="module")
def dagster_ui(environment):
    with make_server("ui", "PORT", environment, "/server_info", Path(environment["DAGSTER_HOME"]) / "ui.log") as port:
        # A fresh instance greets a browser with "Join the Dagster community", opened once its query
        # answers (seconds later on a busy server) over whatever the test clicks next. Mark it seen,
        # as the dialog's own Skip does, so no page shows it.
        assert graphql(port, "mutation { setNuxSeen }")["setNuxSeen"]
        # Lineage automation evaluates every condition every 5 s, about a third of a core on an idle
        # instance: it runs only in the test that relies on it (a correction re-runs its lineage).
        set_sensor(port, "lineage_automation", running=False)
        yield port


def test_ui_listens_on_localhost_only(dagster_ui):
    assert listening_ips(dagster_ui) == {"127.0.0.1"}


def test_ui_graphql_shows_assets_lineage_partitions_checks_and_schedule(dagster_ui):
    data = graphql(
        dagster_ui,
        """
      { assetNodes { assetKey { path } dependencyKeys { path } partitionKeys
                     assetChecksOrError { ... on AssetChecks { checks { name } } } }
        repositoriesOrError { ... on RepositoryConnection { nodes { schedules { name } sensors { name } } } } }
    """,
    )
    nodes = {"/".join(node["assetKey"]["path"]): node for node in data["assetNodes"]}
    for dataset in ("mnist", "fashion_mnist"):  # the two shipped datasets, side by side
        assert {f"{dataset}/{name}" for name in NINE} <= set(nodes)
        for parent, child in EDGES:
            assert [dataset, parent] in [key["path"] for key in nodes[f"{dataset}/{child}"]["dependencyKeys"]], f"{parent} -> {child}"
        assert nodes[f"{dataset}/raw_dataset"]["partitionKeys"] == ["train", "validation", "test"]
        for name in NINE:
            assert nodes[f"{dataset}/{name}"]["assetChecksOrError"]["checks"], f"{dataset}/{name} has no check"
    repository = data["repositoriesOrError"]["nodes"][0]
    assert not repository["schedules"]  # the weekly refresh is raw_dataset's cron automation condition
    assert {
        "lineage_automation",
        "mnist_source_sensor",
        "fashion_mnist_source_sensor",
        "mnist_review_sensor",
        "fashion_mnist_review_sensor",
        "mnist_label_studio_sensor",
        "fashion_mnist_label_studio_sensor",
    } == {s["name"] for s in repository["sensors"]}


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str:
    """Debian's Chromium, installed with apt when missing (the tests run as root in CI)."""
    path = installed_with_apt("chromium", "chromium")
    if path is None:
        pytest.skip("no Chromium: `apt-get install chromium` failed or is not allowed here")
    return path


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser):
    """Opens pages for one test and closes them after it: an open Dagster page polls the webserver
    every few seconds (about a third of a core here), which slowed every test after it."""
    pages = []

    def open_page(height: int = 1000):
        pages.append(browser.new_page(viewport={"width": 1600, "height": height}))
        return pages[-1]

    yield open_page
    for page in pages:
        page.close()


def test_browser_asset_graph_and_launch_raw_dataset_for_one_partition(new_page, dagster_ui):
    # Tall enough that the catalog's list (virtualized: only rows in view exist) shows all 20 assets of a dataset.
    page = new_page(height=1600)
    page.goto(f"http://127.0.0.1:{dagster_ui}/asset-groups")
    page.get_by_text("mnist_augmentation", exact=True).first.wait_for(timeout=60000)
    page.screenshot(path=ARTIFACTS / "dagster-lineage-groups.png")
    page.goto(f"http://127.0.0.1:{dagster_ui}/assets/mnist")  # the catalog folder of one dataset
    for name in NINE:
        page.get_by_text(name, exact=True).first.wait_for(timeout=60000)
    page.screenshot(path=ARTIFACTS / "dagster-asset-catalog.png")
    page.goto(f"http://127.0.0.1:{dagster_ui}/assets/mnist/raw_dataset?view=lineage")
    for name in ("raw_dataset", "label_review", "clip_embeddings"):  # itself and its children
        page.get_by_text(name, exact=True).first.wait_for(timeout=60000)
    page.screenshot(path=ARTIFACTS / "dagster-raw_dataset-lineage.png")

    # Launch mnist/raw_dataset for the "test" partition from the asset page.
    page.goto(f"http://127.0.0.1:{dagster_ui}/assets/mnist/raw_dataset")
    page.get_by_role("button", name="Materialize").first.click(timeout=60000)
    dialog = page.get_by_role("dialog")
    dialog.wait_for(timeout=30000)
    dialog.get_by_text("Select a partition or create one").click()
    # The picker opens a menu with a filter box. The page behind the dialog shows "test" too (the
    # latest materialization's partition, under the dialog's backdrop): click the menu's own item.
    search = page.get_by_placeholder("Filter partitions", exact=True)
    search.fill("test", timeout=30000)
    menu = page.get_by_role("menu").filter(has=search)
    menu.get_by_text("test", exact=True).filter(visible=True).first.click(timeout=30000)
    page.keyboard.press("Escape")
    page.screenshot(path=ARTIFACTS / "dagster-materialize-dialog.png")
    dialog.get_by_role("button", name="Launch 1 run").click(timeout=30000)

    deadline = time.time() + 240
    while time.time() < deadline:
        data = graphql(
            dagster_ui,
            '{ assetNodes(assetKeys: [{path: ["mnist", "raw_dataset"]}]) '
            '{ assetMaterializations(partitions: ["test"]) { partition metadataEntries { label } } } }',
        )
        materializations = data["assetNodes"][0]["assetMaterializations"]
        if materializations:
            break
        time.sleep(3)
    assert materializations and materializations[0]["partition"] == "test"
    assert "count" in [entry["label"] for entry in materializations[0]["metadataEntries"]]
    page.goto(f"http://127.0.0.1:{dagster_ui}/assets/mnist/raw_dataset?partition=test")
    page.get_by_text("count", exact=True).first.wait_for(timeout=60000)
    page.screenshot(path=ARTIFACTS / "dagster-raw_dataset-materialized.png")


def open_materialize_all_dialog(page, port: int, attempts: int = 3):
    """Open "Materialize all" on the lineage page, choose every partition and return the enabled
    "Launch backfill" button. The dialog enables it once it has loaded every asset's partitions;
    if that query is lost on a busy machine the button stays disabled, so reopen the page."""
    from playwright.sync_api import expect

    for attempt in range(1, attempts + 1):
        page.goto(f"http://127.0.0.1:{port}/asset-groups")
        page.get_by_text("mnist_augmentation", exact=True).first.wait_for(timeout=60000)
        page.get_by_role("button", name="Materialize all").first.click(timeout=60000)
        dialog = page.get_by_role("dialog")
        dialog.wait_for(timeout=30000)
        dialog.get_by_role("button", name="All", exact=True).click(timeout=30000)  # every partition of every split
        launch = dialog.get_by_role("button", name="Launch backfill")
        try:  # the locator, asked again each time: React may replace the button's element when it enables it
            expect(launch).to_be_enabled(timeout=120000)
            return launch
        except AssertionError:
            page.screenshot(path=ARTIFACTS / f"dagster-materialize-all-disabled-{attempt}.png")
    raise AssertionError(f'"Launch backfill" stayed disabled in {attempts} tries (screenshots in {ARTIFACTS})')


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


BACKFILL_QUERY = (
    '{ partitionBackfillOrError(backfillId: "%s") { ... on PartitionBackfill { status numPartitions assetSelection { path } } } }'
)


def test_browser_materialize_all_opens_a_backfill_of_every_asset(new_page, dagster_ui):
    """A person clicks "Materialize all" on the lineage page and launches it: one backfill of every
    asset of both datasets and every partition. It is cancelled at once (test_celery.py runs one through)."""
    wait_until_quiet(dagster_ui, seconds=20, timeout=600)  # the busy webserver answers the dialog's queries slowly
    page = new_page()
    launch = open_materialize_all_dialog(page, dagster_ui)
    page.screenshot(path=ARTIFACTS / "dagster-materialize-all-dialog.png")
    launch.click(timeout=30000)
    deadline, backfills = time.time() + 120, []
    while time.time() < deadline and not backfills:
        data = graphql(dagster_ui, "{ partitionBackfillsOrError { ... on PartitionBackfills { results { id } } } }")
        backfills = data["partitionBackfillsOrError"]["results"]
        time.sleep(1)
    assert len(backfills) == 1
    cancelled = graphql(dagster_ui, 'mutation { cancelPartitionBackfill(backfillId: "%s") { __typename } }' % backfills[0]["id"])
    assert cancelled["cancelPartitionBackfill"]["__typename"] == "CancelBackfillSuccess"
    page.screenshot(path=ARTIFACTS / "dagster-materialize-all-launched.png")
    backfill = graphql(dagster_ui, BACKFILL_QUERY % backfills[0]["id"])["partitionBackfillOrError"]
    nodes = asset_nodes(dagster_ui)
    assert {"/".join(key["path"]) for key in backfill["assetSelection"]} == set(nodes)
    assert backfill["numPartitions"] == len(SPLITS)  # every split (unpartitioned assets come with them)
    wait_until_quiet(dagster_ui, seconds=20, timeout=600)


# What a decision on test re-runs (tests/test_automation.py proves the same tick by tick).
TEST_DECISION = (
    {("mnist/label_review", "test")}
    | {
        (f"mnist/{name}", "test")
        for name in (
            "dataset_metadata",
            "zero_shot_predictions",
            "umap_projection",  # it colours its plot by the labels in use
            "lenet_predictions",
            "lenet_embeddings",  # its UMAP colours each point by the label in use
            "fold_ensemble_predictions",
            "hardness_scores",
            "finetuned_predictions",
            "data_issues",  # class imbalance and outliers by the labels in use
        )
    }
    | {("mnist/model_comparison", None), ("mnist/duplicates_and_leaks", None), ("mnist/model_release", None)}
    | {("mnist/data_issues", split) for split in ("train", "validation")}  # leaks are judged against test's labels in use too
)


# What the App's label editor does to the first test sample, in the servers' own database; and a
# decision file (argv[1]) that relabels the second, for `review import`. Prints both new labels.
CORRECT_TWO_LABELS = """
import sys
from mnist_assets.ml.store.fiftyone_store import split_view
from mnist_assets.resources import Settings
first, second = split_view(Settings.from_env().store("mnist").dataset(), "test").limit(2)
first.ground_truth.label = str((int(first.ground_truth.label) + 1) % 10)
first.save()
relabel = str((int(second.ground_truth.label) + 1) % 10)
open(sys.argv[1], "w").write(f"source_index,decision,label\\n{second.source_index},relabel,{relabel}\\n")
print(first.ground_truth.label, relabel)
"""

LABELS_IN_USE = """
from mnist_assets.ml.store.fiftyone_store import split_view
from mnist_assets.resources import Settings
print(*(sample.ground_truth.label for sample in split_view(Settings.from_env().store("mnist").dataset(), "test").limit(2)))
"""


AUTOMATION_QUIET_SECONDS = 30  # six automation intervals without a new request


def test_a_label_corrected_on_test_is_picked_up_and_re_evaluates_test_once(dagster_ui, environment, tmp_path):
    """A correction as the App writes it, and one from a decision file through `review import`, which
    leaves it to the running daemon: the review sensor materializes label_review[test] once, for both,
    and automation re-runs exactly what reads test's labels, once each, and never trains. The sensor
    is paused while both are written, so that one of its looks cannot fall between them."""
    set_sensor(dagster_ui, "lineage_automation", running=True)
    try:
        check_a_correction_re_evaluates_test_once(dagster_ui, environment, tmp_path)
    finally:
        set_sensor(dagster_ui, "lineage_automation", running=False)


def check_a_correction_re_evaluates_test_once(dagster_ui, environment, tmp_path):
    wait_until_quiet(dagster_ui, seconds=AUTOMATION_QUIET_SECONDS)
    started, decisions = time.time(), tmp_path / "decisions.csv"
    set_sensor(dagster_ui, "mnist_review_sensor", running=False)
    try:
        expected = run_ok([sys.executable, "-c", CORRECT_TWO_LABELS, str(decisions)], env=environment, timeout=300).stdout.split()
        command = [sys.executable, "-m", "mnist_assets.review", "import", "--dataset", "mnist", "--split", "test", str(decisions)]
        imported = run_ok(command, env=environment, timeout=300)
    finally:
        set_sensor(dagster_ui, "mnist_review_sensor", running=True)
    assert "a Dagster daemon runs for this instance: mnist_review_sensor applies them" in imported.stdout, imported.stdout
    deadline, quiet_since, new = started + 900, None, []
    while time.time() < deadline:
        new = [m for m in materializations(dagster_ui) if m[2] >= started]
        settled = TEST_DECISION <= {(name, partition) for name, partition, _ in new} and runs_in_flight(dagster_ui) == 0
        quiet_since = (quiet_since or time.time()) if settled else None
        if quiet_since and time.time() - quiet_since > AUTOMATION_QUIET_SECONDS:
            break
        time.sleep(5)
    counts = {}
    for name, partition, _ in new:
        counts[(name, partition)] = counts.get((name, partition), 0) + 1
    assert set(counts) == TEST_DECISION, f"missing {sorted(TEST_DECISION - set(counts))}, unexpected {sorted(set(counts) - TEST_DECISION)}"
    assert all(count == 1 for count in counts.values()), counts
    review = graphql(
        dagster_ui,
        '{ runsOrError(filter: {tags: [{key: "mnist_assets/launched_by", value: "review sensor"}]}) { ... on Runs { count } } }',
    )
    assert review["runsOrError"]["count"] == 1
    assert run_ok([sys.executable, "-c", LABELS_IN_USE], env=environment, timeout=300).stdout.split() == expected


@pytest.fixture(scope="module")
def fiftyone_app(environment):
    """`make app VIEW=review-queue-test` on mnist's graph (materialized by `make run` above)."""
    with make_server(
        "app", "APP_PORT", {**environment, "VIEW": "review-queue-test"}, "/", Path(environment["DAGSTER_HOME"]) / "app.log"
    ) as port:
        yield port


def test_app_listens_on_localhost_only(fiftyone_app):
    assert listening_ips(fiftyone_app) == {"127.0.0.1"}


def test_browser_fiftyone_app_shows_the_review_queue(new_page, fiftyone_app):
    """The App opens on the saved view `review-queue-test`: the likely mislabeled test samples no one
    has decided on, with the review fields in the sidebar."""
    page = new_page()
    page.goto(f"http://127.0.0.1:{fiftyone_app}/")
    try:
        for field in ("ground_truth", "ground_truth_original", "review_decision", "label_quality"):  # sidebar fields
            page.get_by_text(field, exact=True).filter(visible=True).first.wait_for(timeout=120000)
        page.get_by_text("review-queue-test").filter(visible=True).first.wait_for(timeout=60000)  # the view selector
        page.wait_for_timeout(3000)  # let the sample grid paint
    finally:
        page.screenshot(path=ARTIFACTS / "fiftyone-review-queue-test.png")
    assert page.url.endswith("/datasets/servers-mnist?view=review-queue-test"), page.url  # the App's own route


CHANGED_DEFINITIONS = """
import dagster as dg
from mnist_assets import definitions as shipped

def bump(spec):
    return spec.replace_attributes(code_version=spec.code_version + "-changed")

assets = [a.map_asset_specs(bump) if dg.AssetKey(["mnist", "lenet_checkpoint"]) in a.keys else a for a in shipped.defs.assets]
defs = dg.Definitions(assets=assets, resources=shipped.defs.resources)
"""
# One aliased field per asset (`a<index>`), so one query asks for every asset's stale status.
STALE_FIELD = """a%d: assetNodeOrError(assetKey: {path: %s}) { ... on AssetNode {
  staleStatus(partition: %s) staleCauses(partition: %s) { key { path } reason category } } }"""


def stale_status(definitions_file: Path, dagster_home: str) -> dict[str, tuple[str, list]]:
    """Each asset's stale status (its `train` partition where partitioned), through the UI's GraphQL
    schema served in process for `definitions_file` on the instance in `dagster_home`. In a thread of
    its own: the module's Playwright browser keeps an event loop running in this one."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(_stale_status, definitions_file, dagster_home).result()


def _stale_status(definitions_file: Path, dagster_home: str) -> dict[str, tuple[str, list]]:
    from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

    instance = dg.DagsterInstance.from_config(dagster_home)
    status = {}
    try:
        with define_out_of_process_context(str(definitions_file), "defs", instance) as context:
            nodes = execute_dagster_graphql(context, "{ assetNodes { assetKey { path } partitionKeys } }").data["assetNodes"]
            fields = []
            for index, node in enumerate(nodes):
                partition = '"train"' if node["partitionKeys"] else "null"
                fields.append(STALE_FIELD % (index, json.dumps(node["assetKey"]["path"]), partition, partition))
            result = execute_dagster_graphql(context, "{ %s }" % "\n".join(fields))
            assert not result.errors, result.errors
            for index, node in enumerate(nodes):
                found = result.data[f"a{index}"]
                status["/".join(node["assetKey"]["path"])] = (found["staleStatus"], found["staleCauses"])
    finally:
        instance.dispose()
    return status


def test_changed_code_version_marks_the_asset_and_its_downstream_stale(environment, dagster_ui, tmp_path):
    """On the instance the tests above filled: nothing is stale with the shipped code. With
    mnist/lenet_checkpoint's code version changed, it is stale (code); once it is re-materialized
    with the new code, its new data version makes its children stale (data). raw_dataset stays fresh.
    Automation stays paused (dagster_ui): the daemon of `make ui` would otherwise re-run the children
    (as it should) before the look, on a slow day (it did, once, on a machine running two suites)."""
    check_code_version_staleness(environment, tmp_path)


def check_code_version_staleness(environment, tmp_path):
    changed = tmp_path / "changed_definitions.py"
    changed.write_text(CHANGED_DEFINITIONS)
    shipped = stale_status(REPO_DEFS, environment["DAGSTER_HOME"])
    assert {name for name, (state, _) in shipped.items() if state == "STALE"} == set(), shipped

    after = stale_status(changed, environment["DAGSTER_HOME"])
    assert {name for name, (state, _) in after.items() if state == "STALE"} == {"mnist/lenet_checkpoint"}, after
    assert [cause["category"] for cause in after["mnist/lenet_checkpoint"][1]] == ["CODE"]

    run_ok(
        [str(Path(sys.executable).with_name("dagster")), "asset", "materialize", "-f", str(changed), "--select", "mnist/lenet_checkpoint"],
        env=environment,
        timeout=600,
    )
    retrained = stale_status(changed, environment["DAGSTER_HOME"])
    stale = {name for name, (state, _) in retrained.items() if state == "STALE"}
    assert {"mnist/lenet_predictions", "mnist/lenet_embeddings", "mnist/finetuned_model"} <= stale, retrained
    assert "mnist/lenet_checkpoint" not in stale and retrained["mnist/raw_dataset"][0] == "FRESH"
    assert "DATA" in {cause["category"] for cause in retrained["mnist/lenet_predictions"][1]}


REPO_DEFS = Path(__file__).resolve().parents[1] / "mnist_assets" / "definitions.py"
