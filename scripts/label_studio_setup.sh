#!/usr/bin/env bash
# Label Studio, pinned, in an environment of its own (.venv-label-studio): its SDK needs numpy < 2.3,
# the project's environment has 2.4. About 1 GB and a minute and a half; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=1.23.2
ENV=.venv-label-studio
if [ -x "$ENV/bin/label-studio" ] && [ "$("$ENV/bin/python" -c 'import importlib.metadata as m; print(m.version("label-studio"))' 2>/dev/null)" = "$VERSION" ]; then
  exit 0
fi
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
echo "==> Label Studio $VERSION in $ENV (its own environment)"
[ -x "$ENV/bin/python" ] || "$PYTHON" -m venv "$ENV"
"$ENV/bin/python" -m pip install -q --disable-pip-version-check "label-studio==$VERSION"
