"""The code stays within the linter's rules and format (pyproject.toml, [tool.ruff]), and the code
location loads without the ML stack (mnist_assets/executors.py says why)."""

import sys
from pathlib import Path

from processes import run_ok

RUFF = str(Path(sys.executable).with_name("ruff"))


def test_ruff_finds_nothing():
    run_ok([RUFF, "check", "."], timeout=300)


def test_code_is_formatted():
    run_ok([RUFF, "format", "--check", "."], timeout=300)


PRELOADED = ("torch", "fiftyone", "sklearn", "matplotlib")  # what the ML modules import at their top
HEAVY = (*PRELOADED, "umap", "open_clip")
LOADS_LIGHT = f"""
import sys
import mnist_assets.definitions
print(sorted(m for m in {HEAVY!r} if m in sys.modules))
from mnist_assets.executors import forkserver_preload
for module in forkserver_preload():  # the forkserver skips a module it cannot import, silently
    __import__(module)
print(sorted(m for m in {PRELOADED!r} if m in sys.modules))
"""


def test_the_code_location_loads_without_the_ml_stack_and_the_forkserver_preloads_it():
    loaded = run_ok([sys.executable, "-c", LOADS_LIGHT], timeout=300)
    by_definitions, by_preload = loaded.stdout.splitlines()[-2:]
    assert by_definitions == "[]"
    assert by_preload == str(sorted(PRELOADED))
