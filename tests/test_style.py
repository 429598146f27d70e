"""The code stays within the linter's rules and format (pyproject.toml, [tool.ruff])."""

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
