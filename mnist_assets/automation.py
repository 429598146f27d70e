"""When assets re-run on their own: a weekly refresh of the raw data, and lineage for the rest.

Only each dataset's `raw_dataset` has a clock (its cron condition). Every other asset follows
its parents with `follows_lineage()`: Dagster's `eager()` condition, counting only parents whose
data changed (a new data version: re-ingesting an unchanged split changes nothing downstream)
or its own new code version, and held back while anything upstream of it, at any depth, is still
going to change. That extra wait is what makes one refresh run each asset once, in lineage order:
without it a per-split asset would run as soon as its split was re-ingested,
with the old checkpoint, and again when the retrained checkpoint arrived.

One exception keeps a refresh to few runs: a parent requested on the same tick with the same
partitioning goes into the same run (Dagster makes one run per partition key of a tick, its steps
in lineage order), so a child need not wait for it. `with_same_run_parents` gives each asset its
list of such parents, taken from the graph.

The conditions are evaluated by `lineage_automation`, an automation condition
sensor that is on by default and runs under the Dagster daemon (`make ui`).
"""

from collections.abc import Sequence

import dagster as dg

AC = dg.AutomationCondition

# Mondays 03:00 (UTC): re-ingest every split; the rest follows by lineage.
WEEKLY_REFRESH_CRON = "0 3 * * 1"
# At least the longest chain of assets in the graph (raw -> label_review -> ... -> model_comparison:
# 9 assets, tests/test_automation.py measures it); deeper is harmless.
GRAPH_DEPTH = 9


def weekly_refresh() -> dg.AutomationCondition:
    """The raw asset's clock: every partition once per cron tick."""
    return AC.on_cron(WEEKLY_REFRESH_CRON)


def _only_candidates(condition: dg.AutomationCondition) -> dg.AutomationCondition:
    # Operands such as newly_updated() answer for every partition, not just the ones asked about;
    # through a partition mapping (lenet_checkpoint reads only train and validation) an update of
    # `test` would then count. An AND with an always-true status keeps the answer to the candidates.
    return AC.in_latest_time_window() & condition


def _any_parent_changed() -> dg.AutomationCondition:
    """A parent materialized with a new data version since the last tick (not by a run that also
    materialized this asset), or will be requested on this tick. A re-run that reproduces its data
    (the same split re-ingested, the same labels reviewed) keeps its data version and counts not."""
    changed = (AC.data_version_changed() & ~AC.executed_with_root_target()) | AC.will_be_requested()
    return AC.any_deps_match(_only_candidates(changed)).with_label("any_deps_changed")


def _will_change(depth: int) -> dg.AutomationCondition:
    """True for an asset that is running, or that is due to run because its own parents changed
    after its last request, or that has such an asset upstream (`depth` levels up)."""
    due = _any_parent_changed().since(AC.newly_requested() | AC.newly_updated())
    condition = AC.in_progress() | due
    if depth > 1:
        condition = condition | AC.any_deps_match(_will_change(depth - 1))
    return _only_candidates(condition)


def upstream_settling(same_run_parents: Sequence[dg.AssetKey] = (), depth: int = GRAPH_DEPTH) -> dg.AutomationCondition:
    """True while any parent, or any asset further upstream, is running or due to run; a parent in
    `same_run_parents` that is requested on this tick does not count (it runs first in the same run,
    and it was requested only because everything above it had settled or shares that run too)."""
    changing = _will_change(depth)
    if not same_run_parents:
        return AC.any_deps_match(changing).with_label("upstream_still_changing")
    same_run = dg.AssetSelection.assets(*same_run_parents)
    elsewhere = AC.any_deps_match(changing).ignore(same_run)
    waiting = AC.any_deps_match(changing & ~AC.will_be_requested()).allow(same_run)
    return (elsewhere | waiting).with_label("upstream_still_changing")


def follows_lineage(same_run_parents: Sequence[dg.AssetKey] = ()) -> dg.AutomationCondition:
    """`eager()` on parents whose data changed or on a new code version of the asset itself, but
    only once everything upstream has settled: each refresh runs the asset once.

    A parent that changes while a backfill still has this partition to run counts not: the backfill
    runs it after its parents ("Materialize all"). Counted, it stayed latched until the backfill's
    own materialization, and a tick that read the run's end half-way requested the partition again
    (seen on Celery: hardness_scores[train] twice)."""
    triggers = (_any_parent_changed() & ~AC.backfill_in_progress()) | AC.code_version_changed()
    settling = upstream_settling(same_run_parents)
    return (AC.eager().replace("any_deps_updated", triggers) & ~settling).with_label("follows_lineage")


def with_same_run_parents(assets: list[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """The assets, each `follows_lineage` condition told which parents share its partitioning (the
    same split, or both unpartitioned), that is, can run in the same run."""
    partitioning = {key: asset.partitions_def for asset in assets for key in asset.keys}

    def assign(spec: dg.AssetSpec) -> dg.AssetSpec:
        condition = spec.automation_condition
        if condition is None or condition.get_label() != "follows_lineage":
            return spec
        same = [
            dep.asset_key
            for dep in spec.deps
            if dep.asset_key in partitioning and dep.partition_mapping is None and partitioning[dep.asset_key] == partitioning[spec.key]
        ]
        return spec.replace_attributes(automation_condition=follows_lineage(same))

    return [asset.map_asset_specs(assign) for asset in assets]


def build_automation_sensor() -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        "lineage_automation",
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=5,  # a refresh waits one interval per level of the graph
        # Runs, not a backfill, for the partitions one tick requests: the backfill daemon looks at its
        # backfills every 30 s, which made each level of a refresh wait that long.
        emit_backfills=False,
        description=(
            "Evaluates every asset's automation condition: the weekly refresh of each raw_dataset, "
            "and lineage for everything downstream of it."
        ),
    )
