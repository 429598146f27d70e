"""Every asset of one declared dataset materialized in process, stage by stage, as `make run` does."""

import dagster as dg

from mnist_assets.pipeline import build_pipeline_defs
from mnist_assets.run_all import materialize_stage, stages

# The series' nine assets, each a node of every dataset's graph (test_graph.py, test_servers.py).
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


def materialize_every_asset(spec, settings):
    """The whole graph of `spec` on a fresh instance: the instance, every check evaluation, the
    definitions. Fails naming the first stage that fails, or an asset that never materialized."""
    resources = {"settings": settings}
    defs = dg.Definitions.merge(build_pipeline_defs(spec), dg.Definitions(resources=resources))
    graph = defs.resolve_asset_graph()
    instance = dg.DagsterInstance.ephemeral()
    checks = []
    for keys, partitioned in stages(graph, [spec.name]):
        for partition in ("train", "validation", "test") if partitioned else [None]:
            result = materialize_stage(instance, keys, partition, resources, defs.assets)
            assert result.success, f"{keys} [{partition}] failed"
            checks += [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    for key in graph.get_all_asset_keys():
        assert instance.get_latest_materialization_event(key) is not None, f"{key.to_user_string()} never materialized"
    return instance, checks, defs


def failed_checks(checks) -> set[str]:
    """`<asset>:<check>` of each check that did not pass."""
    return {f"{c.asset_key.to_user_string()}:{c.check_name}" for c in checks if not c.passed}
