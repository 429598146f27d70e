#!/usr/bin/env bash
# The system programs the test suite starts for real: Chromium (the browser tests), PostgreSQL and
# Redis (the Celery cluster). `make test` runs this before pytest, so the suite's own time is spent on
# tests; installing them from inside a test (one apt-get at a time, under a lock) cost CI about a
# minute of pytest. As root with apt-get, one `apt-get install` of what is missing; otherwise the
# tests that need a missing program skip, saying which (tests/processes.py::installed_with_apt).
set -uo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null 2>&1 || missing+=(postgresql)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "==> the test suite's system programs: apt-get install ${missing[*]}"
  apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
    || echo "WARNING: apt-get install ${missing[*]} failed; the tests that need them skip." >&2
else
  echo "NOTE: not root: install ${missing[*]} (Debian packages) or the tests that need them skip." >&2
fi
exit 0
