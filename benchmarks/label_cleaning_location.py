"""The code location of bench_label_cleaning.py's daemon: one noisy dataset's loop (ingest, labels
in use, the out-of-fold models, the fold ensemble's predictions, and where asked the scores that
order the review queue), its review sensor and the lineage automation, as the shipped location
builds them. The bench passes the declaration and the targets in LABEL_CLEANING_LOCATION (JSON)."""

import json
import os

import dagster as dg

from mnist_assets.automation import build_automation_sensor
from mnist_assets.executors import build_executor
from mnist_assets.ml.data.dataset_spec import DatasetSpec
from mnist_assets.pipeline import build_pipeline_defs
from mnist_assets.resources import Settings

LOCATION = "LABEL_CLEANING_LOCATION"


def loop_definitions(spec: DatasetSpec, targets: list[str], settings: Settings) -> dg.Definitions:
    """`targets` (asset names) of the dataset's graph and what they read, its review sensor and automation."""
    full = build_pipeline_defs(spec)
    graph = dg.Definitions.merge(full, dg.Definitions(resources={"settings": settings})).resolve_asset_graph()
    wanted = dg.AssetSelection.assets(*(dg.AssetKey([spec.name, name]) for name in targets)).upstream().resolve(graph)
    return dg.Definitions(
        assets=[asset for asset in full.assets if set(asset.keys) <= wanted],
        sensors=[*(sensor for sensor in full.sensors if sensor.name == f"{spec.name}_review_sensor"), build_automation_sensor()],
        resources={"settings": settings},
        executor=build_executor(settings.executor),
    )


if os.environ.get(LOCATION):
    _declared = json.loads(os.environ[LOCATION])
    defs = loop_definitions(DatasetSpec(**_declared["spec"]), _declared["targets"], Settings.from_env())
