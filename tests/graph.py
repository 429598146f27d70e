"""The shipped graph's assets by name, for tests that materialize a few of them in process."""

import functools

import dagster as dg

from mnist_assets.pipeline import build_pipeline_defs, declared_spec


@functools.cache
def pipeline_assets(dataset: str = "mnist") -> list:
    """Every asset of a shipped dataset, without resources bound (tests bring their settings)."""
    return list(build_pipeline_defs(declared_spec(dataset)).assets)


def asset(name: str, dataset: str = "mnist") -> dg.AssetsDefinition:
    """The AssetsDefinition of `<dataset>/<name>`."""
    return next(a for a in pipeline_assets(dataset) if a.key == dg.AssetKey([dataset, name]))


def op_config(name: str, config: dict, dataset: str = "mnist") -> dict:
    """Run config giving `config` to the asset `<dataset>/<name>` (its op is `<dataset>__<name>`)."""
    return {"ops": {f"{dataset}__{name}": {"config": config}}}


def saved_payload(path) -> dict:
    """What a single-model checkpoint file holds (weights, epoch, metrics, settings)."""
    from mnist_assets.ml.models.checkpoints import load_models

    (_, payload), *others = load_models(path)
    assert not others, f"{path} holds {len(others) + 1} models"
    return payload
