"""Scripts that make what docs/ shows, on what they read."""

import importlib.util

import dagster as dg
import numpy as np
import pytest
from processes import REPO

from mnist_assets.metadata import png
from mnist_assets.ml.figures import plots


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_data_issue_figures_are_the_grids_data_issues_recorded():
    figures = script("data_issue_figures")
    instance = dg.DagsterInstance.ephemeral()
    grid = plots.image_grid(np.random.default_rng(0).integers(0, 255, (4, 28, 28), dtype=np.uint8), ["dark", "light", "odd", "gray"], 4)
    instance.report_runless_asset_event(
        dg.AssetMaterialization(dg.AssetKey(["mnist", "data_issues"]), partition="train", metadata={"worst_examples": png(grid)})
    )
    assert figures.worst_examples_png(instance, "mnist") == grid
    with pytest.raises(SystemExit, match=r"fashion_mnist/data_issues\[train\] was never materialized"):
        figures.worst_examples_png(instance, "fashion_mnist")
