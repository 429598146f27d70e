"""The code location: every dataset declared under `defs/` (one ImageClassificationPipeline each),
the automation sensor, the shared settings resource and the executor they choose.

Each declaration loads on its own (components/declarations.py): a broken one is listed in
`broken_declarations` and shown as the asset `<name>/declaration_error`, and the other datasets
load. Under `dg check defs` (and `dagster definitions validate`) a broken declaration is an error:
the location refuses to load, naming each one."""

import os
from types import ModuleType

import dagster as dg

from mnist_assets.automation import build_automation_sensor
from mnist_assets.components.declarations import BrokenDeclaration, BrokenDeclarationsError, load_declarations
from mnist_assets.executors import build_executor
from mnist_assets.ml.core.environment import REPO_ROOT
from mnist_assets.resources import Settings

VALIDATING = "DAGSTER_IS_DEFS_VALIDATION_CLI"  # set by `dg check defs` and `dagster definitions validate`


def code_location(defs_module: ModuleType | None = None) -> tuple[dg.Definitions, list[BrokenDeclaration]]:
    """The Definitions of the datasets declared in `defs_module` (default `mnist_assets.defs`) and
    the declarations that do not load; raises BrokenDeclarationsError for those under validation."""
    declarations = load_declarations(defs_module, project_root=REPO_ROOT)
    if declarations.broken and os.environ.get(VALIDATING):
        raise BrokenDeclarationsError(declarations.broken)
    settings = Settings.from_env()
    executor = build_executor(settings.executor)
    shared = dg.Definitions(sensors=[build_automation_sensor()], resources={"settings": settings}, executor=executor)
    return dg.Definitions.merge(declarations.defs, shared), declarations.broken


defs, broken_declarations = code_location()
