"""Canaries: the private Dagster and FiftyOne APIs the project still uses (docs/decisions.md, "Private
APIs", says why each stays), checked for the shape it relies on. A new Dagster, dagster-celery or
FiftyOne version that changes one fails here, by name, instead of somewhere downstream."""

import inspect

import dagster as dg


def test_dagster_records_data_versions_and_input_pointers_under_the_tags_read_back():
    """assets/common.py and sensors.py read a materialization's data version and the parent event it
    read from its tags (no public accessor takes a stored record)."""
    from dagster._core.definitions.data_version import DATA_VERSION_TAG, get_input_event_pointer_tag

    @dg.asset
    def parent() -> dg.Output:
        return dg.Output(1, data_version=dg.DataVersion("v1"))

    @dg.asset(deps=[parent])
    def child() -> None:
        pass

    with dg.DagsterInstance.ephemeral() as instance:
        assert dg.materialize([parent, child], instance=instance).success
        parent_record = instance.fetch_materializations(parent.key, limit=1).records[0]
        child_record = instance.fetch_materializations(child.key, limit=1).records[0]
    assert parent_record.asset_materialization.tags[DATA_VERSION_TAG] == "v1"
    assert int(child_record.asset_materialization.tags[get_input_event_pointer_tag(parent.key)]) == parent_record.storage_id


def test_dagster_dev_starts_its_daemon_through_open_ipc_subprocess_and_reads_the_backfill_interval():
    """mnist_assets/ui.py swaps the daemon module `dagster dev` starts; mnist_assets/daemon.py sets the
    interval the backfill loop sleeps by (Dagster 1.13 has no setting for either)."""
    import dagster._cli.dev as dev
    import dagster._daemon.backfill as backfill
    import dagster._daemon.controller as controller

    assert callable(dev.open_ipc_subprocess) and '"dagster._daemon"' in inspect.getsource(dev)
    assert isinstance(controller.DEFAULT_DAEMON_INTERVAL_SECONDS, (int, float))
    assert "DEFAULT_DAEMON_INTERVAL_SECONDS" in inspect.getsource(backfill)  # read on each pass, not copied at import


def test_dagster_celery_submits_a_step_with_the_arguments_the_watchdog_passes():
    """celery_executor.py wraps `_submit_task` to learn which worker took each step."""
    from dagster_celery.executor import _submit_task

    assert list(inspect.signature(_submit_task).parameters) == ["app", "plan_context", "step", "queue", "priority", "known_state"]


def test_fiftyone_exposes_the_collection_the_bulk_writes_write_and_the_hooks_the_store_uses():
    """ml/store/bulk_writes.py writes the sample collection with pymongo and reloads the samples held
    in memory; ml/store/fiftyone_store.py replaces the database service's start."""
    import fiftyone as fo
    import fiftyone.core.sample as fosample
    import fiftyone.core.service as fos

    assert isinstance(fo.Dataset.__dict__.get("_sample_collection"), property)
    assert isinstance(fo.Dataset.__dict__.get("_sample_collection_name"), property)
    assert {"collection_name", "sample_ids"} <= set(inspect.signature(fosample.Sample._reload_docs).parameters)
    assert callable(fos.DatabaseService.start) and hasattr(fos.DatabaseService, "_service_args")
