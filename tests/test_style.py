"""The code stays within the linter's rules and format (pyproject.toml, [tool.ruff]), and the code
location loads without the ML stack (mnist_assets/executors.py says why)."""

import subprocess
import sys
from pathlib import Path

from processes import REPO

RUFF = str(Path(sys.executable).with_name("ruff"))


def test_ruff_finds_nothing():
    checked = subprocess.run([RUFF, "check", "."], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stdout[-5000:]


def test_code_is_formatted():
    formatted = subprocess.run([RUFF, "format", "--check", "."], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert formatted.returncode == 0, formatted.stdout[-5000:]


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
    loaded = subprocess.run([sys.executable, "-c", LOADS_LIGHT], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    by_definitions, by_preload = loaded.stdout.splitlines()[-2:]
    assert by_definitions == "[]"
    assert by_preload == str(sorted(PRELOADED))
