"""The code location: every dataset declared under `defs/` (one ImageClassificationPipeline each),
the automation sensor, the shared settings resource and the executor they choose."""

import dagster as dg

import mnist_assets.defs
from mnist_assets.automation import build_automation_sensor
from mnist_assets.environment import REPO_ROOT
from mnist_assets.executors import build_executor
from mnist_assets.pipeline import check_unique_names
from mnist_assets.resources import Settings

check_unique_names()
settings = Settings.from_env()

defs = dg.Definitions.merge(
    dg.load_defs(mnist_assets.defs, project_root=REPO_ROOT),
    dg.Definitions(sensors=[build_automation_sensor()], resources={"settings": settings}, executor=build_executor(settings.executor)),
)
