"""What re-runs on its own: automation conditions, evaluated in process tick by tick.

Each tick's requests are "run" at once by recording materializations of exactly
what was requested (each with a new data version: new data), so the tests see the
order and the count of every request a refresh leads to, without executing the assets.
"""

import datetime
import itertools

import dagster as dg
import pytest

from mnist_assets.automation import WEEKLY_REFRESH_CRON
from mnist_assets.definitions import defs

SPLITS = ("train", "validation", "test")
PER_SPLIT_DOWNSTREAM = [
    "label_review",
    "dataset_metadata",
    "clip_embeddings",
    "umap_projection",
    "zero_shot_predictions",
    "lenet_predictions",
    "fold_ensemble_predictions",
    "lenet_embeddings",
    "hardness_scores",
    "data_issues",
    "finetuned_predictions",
]
# What a new checkpoint re-runs on every split.
RESCORED = ("lenet_predictions", "fold_ensemble_predictions", "lenet_embeddings", "hardness_scores", "data_issues", "finetuned_predictions")
TRAINING = ["lenet_checkpoint", "lenet_oof_predictions", "augmented_set", "finetuned_model", "cnn_checkpoint"]


def graph():
    return defs.resolve_asset_graph()


VERSIONS = itertools.count()


def report(instance, key: dg.AssetKey, partition: str | None, data_version: str | None = None) -> None:
    """A materialization of `key[partition]` with `data_version` (default: a new one)."""
    version = data_version or f"v{next(VERSIONS)}"
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=partition, tags={"dagster/data_version": version}))


def mnist(name: str) -> dg.AssetKey:
    return dg.AssetKey(["mnist", name])


def requested(result) -> list[tuple[str, str | None]]:
    """("<dataset>/<asset>", partition) of every request of a tick."""
    found = [(key, partition) for key in graph().get_all_asset_keys() for partition in result.get_requested_partitions(key)]
    return sorted(((key.to_user_string(), partition) for key, partition in found), key=str)


def materialize_everything(instance) -> None:
    asset_graph = graph()
    for key in asset_graph.toposorted_asset_keys:
        node = asset_graph.get(key)
        for partition in node.partitions_def.get_partition_keys() if node.partitions_def else [None]:
            report(instance, key, partition, data_version=f"first-{partition}")


def run_ticks(instance, cursor, first_time: datetime.datetime, limit: int = 30, definitions=defs):
    """Evaluate tick after tick, materializing each tick's requests, until a tick requests nothing."""
    order, time = [], first_time
    for _ in range(limit):
        time += datetime.timedelta(minutes=1)
        result = dg.evaluate_automation_conditions(defs=definitions, instance=instance, cursor=cursor, evaluation_time=time)
        cursor = result.cursor
        tick = requested(result)
        if not tick:
            return order, cursor
        order.append(tick)
        for name, partition in tick:
            report(instance, dg.AssetKey(name.split("/")), partition)
    raise AssertionError(f"automation still requesting after {limit} ticks: {order[-3:]}")


@pytest.fixture
def settled():
    """An instance where every asset and partition is materialized and automation has seen it."""
    instance = dg.DagsterInstance.ephemeral()
    materialize_everything(instance)
    start = datetime.datetime(2026, 11, 25, 12, 0)  # a Wednesday: no weekly refresh due
    order, cursor = run_ticks(instance, None, start)
    assert order == [], f"nothing changed, yet automation requested {order}"
    return instance, cursor, start + datetime.timedelta(hours=1)


def flatten(order):
    return [item for tick in order for item in tick]


def assert_lineage_order(order):
    """Every request comes in a later tick than each of its parents' requests, or in the same run
    (the same tick and partition key: Dagster makes one run per partition key of a tick and orders
    its steps by lineage)."""
    tick_of = {item: i for i, tick in enumerate(order) for item in tick}
    asset_graph = graph()
    for (name, partition), tick in tick_of.items():
        for parent in asset_graph.get(dg.AssetKey(name.split("/"))).parent_keys:
            for (other, other_partition), other_tick in tick_of.items():
                if other != parent.to_user_string():
                    continue
                if None not in (partition, other_partition) and partition != other_partition:
                    continue  # per split, a child reads its own split of its parent
                assert other_tick < tick or (other_tick == tick and other_partition == partition), (
                    f"{name}[{partition}] ran before its parent {other}[{other_partition}], or beside it in another run"
                )


def runs_of(order) -> int:
    """How many runs the ticks' requests make: one per partition key per tick."""
    return sum(len({partition for _, partition in tick}) for tick in order)


def test_refreshing_train_reruns_every_downstream_asset_once_in_lineage_order(settled):
    instance, cursor, time = settled
    report(instance, mnist("raw_dataset"), "train")
    order, _ = run_ticks(instance, cursor, time)
    requests = flatten(order)
    assert len(requests) == len(set(requests)), f"something ran twice: {order}"
    expected = {(f"mnist/{name}", "train") for name in PER_SPLIT_DOWNSTREAM}
    # The retrained checkpoint re-scores every split; the CLIP branch of the other splits is untouched,
    # and so is every other dataset.
    expected |= {(f"mnist/{name}", split) for split in ("validation", "test") for name in RESCORED}
    expected |= {(f"mnist/{name}", None) for name in TRAINING + ["model_comparison", "duplicates_and_leaks", "model_release"]}
    assert set(requests) == expected
    assert_lineage_order(order)


def test_graph_depth_covers_the_longest_chain():
    """follows_lineage looks GRAPH_DEPTH levels up: at least as deep as the graph."""
    from mnist_assets.automation import GRAPH_DEPTH

    asset_graph, depth = graph(), {}
    for key in asset_graph.toposorted_asset_keys:
        depth[key] = 1 + max((depth[parent] for parent in asset_graph.get(key).parent_keys), default=0)
    assert max(depth.values()) <= GRAPH_DEPTH


# What a label decision re-runs: label_review[split] is what the review sensor materializes.
TEST_DECISION = {
    (f"mnist/{name}", "test")
    for name in (
        "dataset_metadata",
        "umap_projection",  # its plots colour each point by the label in use
        "zero_shot_predictions",
        "lenet_predictions",
        "lenet_embeddings",  # its UMAP colours each point by the label in use
        "fold_ensemble_predictions",
        "hardness_scores",
        "data_issues",  # class imbalance, outliers and groups by the labels in use
        "finetuned_predictions",
    )
} | {("mnist/model_comparison", None), ("mnist/duplicates_and_leaks", None), ("mnist/model_release", None)}
# data_issues judges leaks against every split's labels in use: an exclusion in test changes train's leaks
CROSS_SPLIT = {("mnist/data_issues", split) for split in ("train", "validation")}
TEST_DECISION |= CROSS_SPLIT


def test_a_decision_on_test_re_evaluates_test_and_never_retrains(settled):
    instance, cursor, time = settled
    report(instance, mnist("label_review"), "test")
    order, _ = run_ticks(instance, cursor, time)
    requests = flatten(order)
    assert len(requests) == len(set(requests)), f"something ran twice: {order}"
    # Pixels did not change: no embeddings or training; the projections are plotted by label again.
    assert set(requests) == TEST_DECISION
    assert_lineage_order(order)


def test_a_decision_on_train_retrains_once_then_everything_below_once(settled):
    instance, cursor, time = settled
    report(instance, mnist("label_review"), "train")
    order, _ = run_ticks(instance, cursor, time)
    requests = flatten(order)
    assert len(requests) == len(set(requests)), f"something ran twice: {order}"
    expected = {(f"mnist/{name}", split) for name in RESCORED for split in SPLITS}
    expected |= {(f"mnist/{name}", "train") for name in ("dataset_metadata", "umap_projection", "zero_shot_predictions")}
    expected |= {(f"mnist/{name}", None) for name in TRAINING + ["model_comparison", "duplicates_and_leaks", "model_release"]}
    assert set(requests) == expected
    assert ("mnist/lenet_checkpoint", None) in order[0] and ("mnist/lenet_oof_predictions", None) in order[0]
    assert_lineage_order(order)


def test_what_reads_the_labels_in_use_declares_label_review():
    """The CLIP projections colour their plots by the labels in use, of their own split; the
    augmented copies take the labels in use of train: a review makes each stale."""
    asset_graph, review = graph(), mnist("label_review")
    for name, mapping in (
        ("umap_projection", dg.IdentityPartitionMapping()),
        ("augmented_set", dg.SpecificPartitionsPartitionMapping(["train"])),
    ):
        assert review in asset_graph.get(mnist(name)).parent_keys, name
        assert asset_graph.get_partition_mapping(mnist(name), review) == mapping, name


def test_a_re_ingest_that_changes_nothing_re_runs_nothing(settled):
    """The weekly refresh re-ingests every split; unchanged, each keeps its data version."""
    instance, cursor, time = settled
    for split in SPLITS:
        report(instance, mnist("raw_dataset"), split, data_version=f"first-{split}")
    order, _ = run_ticks(instance, cursor, time)
    assert order == []


def test_a_new_code_version_re_runs_the_asset_and_what_its_new_data_changes(settled):
    instance, cursor, time = settled

    def bump(spec):
        return spec.replace_attributes(code_version=spec.code_version + "-changed")

    checkpoint = mnist("lenet_checkpoint")
    assets = [a.map_asset_specs(bump) if checkpoint in a.keys else a for a in defs.assets]
    changed = dg.Definitions(assets=assets, sensors=defs.sensors, resources=defs.resources)
    order, _ = run_ticks(instance, cursor, time, definitions=changed)
    requests = flatten(order)
    assert order[0] == [("mnist/lenet_checkpoint", None)] and len(requests) == len(set(requests))
    below = {
        (f"mnist/{name}", split)
        for name in ("lenet_predictions", "lenet_embeddings", "hardness_scores", "data_issues", "finetuned_predictions")
        for split in SPLITS
    }
    below |= {(f"mnist/{name}", None) for name in ("augmented_set", "finetuned_model", "model_comparison", "model_release")}
    assert below == set(requests[1:])


def test_refreshing_test_alone_never_retrains(settled):
    instance, cursor, time = settled
    report(instance, mnist("raw_dataset"), "test")
    order, _ = run_ticks(instance, cursor, time)
    requests = flatten(order)
    assert len(requests) == len(set(requests)), f"something ran twice: {order}"
    assert set(requests) == {(f"mnist/{name}", "test") for name in PER_SPLIT_DOWNSTREAM} | CROSS_SPLIT | {
        ("mnist/model_comparison", None),
        ("mnist/duplicates_and_leaks", None),
        ("mnist/model_release", None),
    }
    assert_lineage_order(order)


def test_weekly_cron_refreshes_everything_once(settled):
    """The cron ticks for raw_dataset only; every other asset partition follows once, in lineage order."""
    instance, cursor, _ = settled
    assert WEEKLY_REFRESH_CRON == "0 3 * * 1"
    monday = datetime.datetime(2026, 11, 30, 2, 59)
    order, _ = run_ticks(instance, cursor, monday)
    assert (
        sorted(name for name, _ in order[0] if name.endswith("/raw_dataset"))
        == ["fashion_mnist/raw_dataset"] * 3 + ["mnist/raw_dataset"] * 3
    )
    requests = flatten(order)
    assert len(requests) == len(set(requests)), f"something ran twice: {order}"
    asset_graph = graph()
    everything = {
        (key.to_user_string(), partition)
        for key in asset_graph.get_all_asset_keys()
        for partition in (asset_graph.get(key).partitions_def.get_partition_keys() if asset_graph.get(key).partitions_def else [None])
    }
    assert set(requests) == everything
    assert_lineage_order(order)


def test_a_new_raw_partition_alone_triggers_nothing_that_needs_missing_parents():
    """On a fresh instance, ingesting `test` refreshes its own branch but waits for training data."""
    instance = dg.DagsterInstance.ephemeral()
    start = datetime.datetime(2026, 11, 25, 12, 0)
    order, cursor = run_ticks(instance, None, start)
    assert order == [], "a new, empty instance must not start work by itself"
    report(instance, mnist("raw_dataset"), "test")
    order, _ = run_ticks(instance, cursor, start + datetime.timedelta(hours=1))
    requests = set(flatten(order))
    assert {("mnist/dataset_metadata", "test"), ("mnist/clip_embeddings", "test"), ("mnist/umap_projection", "test")} <= requests
    assert not {name for name, _ in requests} & {
        f"mnist/{name}" for name in TRAINING + ["lenet_predictions", "model_comparison", "model_release"]
    }
    assert all(name.startswith("mnist/") for name, _ in requests)
