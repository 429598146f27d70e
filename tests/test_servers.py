"""The servers a user opens: `make ui` (Dagster) and `make app` (FiftyOne), started for real.

Checks that each listens on 127.0.0.1 only, that the UI's GraphQL API shows the
graph (assets, lineage, partitions, checks, schedule), and, in headless
Chromium driven by Playwright, that a person can see the asset graph, launch
mnist/raw_dataset for one partition and see it succeed, and open the App on the dataset.
Screenshots go to test-artifacts/.
"""

import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from processes import REPO, graphql, installed_with_apt, make_server, quick_run_env, stop_mongod, wait_until_quiet

ARTIFACTS = REPO / "test-artifacts"
NINE = [
    "raw_dataset",
    "dataset_metadata",
    "clip_embeddings",
    "umap_projection",
    "zero_shot_predictions",
    "lenet_checkpoint",
    "hardness_scores",
    "augmented_set",
    "finetuned_model",
]
EDGES = [
    ("raw_dataset", "dataset_metadata"),
    ("raw_dataset", "clip_embeddings"),
    ("clip_embeddings", "umap_projection"),
    ("clip_embeddings", "zero_shot_predictions"),
    ("raw_dataset", "lenet_checkpoint"),
    ("lenet_checkpoint", "lenet_predictions"),
    ("lenet_predictions", "hardness_scores"),
    ("hardness_scores", "augmented_set"),
    ("augmented_set", "finetuned_model"),
    ("lenet_checkpoint", "finetuned_model"),
    ("finetuned_model", "finetuned_predictions"),
    ("finetuned_predictions", "model_comparison"),
]


def listening_ips(port: int) -> set[str]:
    return {c.laddr.ip for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.laddr.port == port}


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    root = tmp_path_factory.mktemp("servers")
    env = quick_run_env(root, "servers")
    yield env
    stop_mongod(root / "db")


@pytest.fixture(scope="module")
def dagster_ui(environment):
    with make_server("ui", "PORT", environment, "/server_info", Path(environment["DAGSTER_HOME"]) / "ui.log") as port:
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
    } == {s["name"] for s in repository["sensors"]}


@pytest.fixture(scope="module")
def fiftyone_app(environment):
    """`make app VIEW=review-queue-test` on mnist's graph, materialized by `make run`'s module."""
    graph = subprocess.run(
        [sys.executable, "-m", "mnist_assets.run_all", "--datasets", "mnist"],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert graph.returncode == 0, graph.stdout[-3000:] + graph.stderr[-2000:]
    with make_server(
        "app", "APP_PORT", {**environment, "VIEW": "review-queue-test"}, "/", Path(environment["DAGSTER_HOME"]) / "app.log"
    ) as port:
        yield port


def test_app_listens_on_localhost_only(fiftyone_app):
    assert listening_ips(fiftyone_app) == {"127.0.0.1"}


# --- In a real browser -------------------------------------------------------------------------

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


def dismiss_welcome(page) -> None:
    """A fresh DAGSTER_HOME shows a "Join the Dagster community" dialog first."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.click(timeout=5000)
    except Exception:  # noqa: BLE001 - no dialog this time
        pass


def test_browser_asset_graph_and_launch_raw_dataset_for_one_partition(browser, dagster_ui):
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.goto(f"http://127.0.0.1:{dagster_ui}/asset-groups")
    dismiss_welcome(page)
    page.get_by_text("mnist_augmentation", exact=True).first.wait_for(timeout=60000)
    page.screenshot(path=ARTIFACTS / "dagster-lineage-groups.png")
    page.goto(f"http://127.0.0.1:{dagster_ui}/assets/mnist")  # the catalog folder of one dataset
    for name in NINE:
        page.get_by_text(name, exact=True).first.wait_for(timeout=60000)
    page.screenshot(path=ARTIFACTS / "dagster-asset-catalog.png")
    page.goto(f"http://127.0.0.1:{dagster_ui}/assets/mnist/raw_dataset?view=lineage")
    for name in ("raw_dataset", "dataset_metadata", "clip_embeddings", "lenet_checkpoint"):
        page.get_by_text(name, exact=True).first.wait_for(timeout=60000)
    page.screenshot(path=ARTIFACTS / "dagster-raw_dataset-lineage.png")

    # Launch mnist/raw_dataset for the "test" partition from the asset page.
    page.goto(f"http://127.0.0.1:{dagster_ui}/assets/mnist/raw_dataset")
    page.get_by_role("button", name="Materialize").first.click(timeout=60000)
    dialog = page.get_by_role("dialog")
    dialog.wait_for(timeout=30000)
    dialog.get_by_text("Select a partition or create one").click()
    page.keyboard.type("test")
    page.get_by_text("test", exact=True).filter(visible=True).last.click()
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
    dismiss_welcome(page)
    page.get_by_text("count", exact=True).first.wait_for(timeout=60000)
    page.screenshot(path=ARTIFACTS / "dagster-raw_dataset-materialized.png")


def test_browser_fiftyone_app_shows_the_review_queue(browser, fiftyone_app):
    """The App opens on the saved view `review-queue-test`: the likely mislabeled test samples no one
    has decided on, with the review fields in the sidebar."""
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.goto(f"http://127.0.0.1:{fiftyone_app}/")
    try:
        for field in ("ground_truth", "ground_truth_original", "review_decision", "label_quality"):  # sidebar fields
            page.get_by_text(field, exact=True).filter(visible=True).first.wait_for(timeout=120000)
        page.get_by_text("review-queue-test").filter(visible=True).first.wait_for(timeout=60000)  # the view selector
        page.wait_for_timeout(3000)  # let the sample grid paint
    finally:
        page.screenshot(path=ARTIFACTS / "fiftyone-review-queue-test.png")
    assert "servers-mnist" in page.inner_text("body")  # the dataset's name in the header


def open_materialize_all_dialog(page, port: int, attempts: int = 3):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    """Open "Materialize all" on the lineage page, choose every partition and return the enabled
    "Launch backfill" button. The dialog enables it once it has loaded every asset's partitions;
    if that query is lost on a busy machine the button stays disabled, so reopen the page."""
    for attempt in range(1, attempts + 1):
        page.goto(f"http://127.0.0.1:{port}/asset-groups")
        dismiss_welcome(page)
        page.get_by_text("mnist_augmentation", exact=True).first.wait_for(timeout=60000)
        page.get_by_role("button", name="Materialize all").first.click(timeout=60000)
        dialog = page.get_by_role("dialog")
        dialog.wait_for(timeout=30000)
        dialog.get_by_role("button", name="All", exact=True).click(timeout=30000)  # every partition of every split
        launch = dialog.get_by_role("button", name="Launch backfill")
        try:
            page.wait_for_function("b => !b.disabled", arg=launch.element_handle(timeout=120000), timeout=120000)
            return launch
        except PlaywrightTimeout:
            page.screenshot(path=ARTIFACTS / f"dagster-materialize-all-disabled-{attempt}.png")
    raise AssertionError(f'"Launch backfill" stayed disabled in {attempts} tries (screenshots in {ARTIFACTS})')


def test_browser_materialize_all_starts_a_backfill(browser, dagster_ui):
    """A person clicks "Materialize all" on the lineage page and launches it: a backfill starts.
    (tests/test_automation_daemon.py follows such a backfill to the end.)"""
    # The runs the earlier tests started (and what automation adds after them) load the 2-core CI
    # machine; the dialog below waits on partition queries that the busy webserver answers slowly.
    wait_until_quiet(dagster_ui, seconds=20, timeout=600)
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    launch = open_materialize_all_dialog(page, dagster_ui)
    page.screenshot(path=ARTIFACTS / "dagster-materialize-all-dialog.png")
    launch.click(timeout=30000)
    deadline, backfills = time.time() + 120, []
    while time.time() < deadline and not backfills:
        data = graphql(dagster_ui, "{ partitionBackfillsOrError { ... on PartitionBackfills { results { id status numPartitions } } } }")
        backfills = data["partitionBackfillsOrError"]["results"]
        time.sleep(2)
    page.screenshot(path=ARTIFACTS / "dagster-materialize-all-launched.png")
    assert backfills and backfills[0]["status"] in ("REQUESTED", "IN_PROGRESS", "COMPLETED", "COMPLETED_SUCCESS")
