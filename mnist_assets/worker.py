"""The checks `make worker` runs before it starts a Celery worker (docs/scale-out.md).

    python -m mnist_assets.worker     # exit 0, or 2 naming each problem and its fix

- A broker or result backend (`DAGSTER_CELERY_BROKER_URL`, `DAGSTER_CELERY_BACKEND_URL`) or a MongoDB
  (`FIFTYONE_DATABASE_URI`) on another host, reached without a password, is refused: a Celery task
  names code that the worker imports and runs, so whoever reaches the broker runs code on every
  worker, and whoever reaches MongoDB rewrites the labels and the locks. Loopback addresses and
  Unix sockets are this machine's own. `MNIST_ASSETS_ALLOW_UNAUTHENTICATED=1` allows it anyway (a
  network only trusted machines reach).
- Dagster's storage on SQLite (a `$DAGSTER_HOME/dagster.yaml` without PostgreSQL, the default) is
  refused: the launcher and every worker must share one instance, and two workers starting at once
  on a fresh SQLite folder race to create its tables (one dies on `alembic_version`).

Standard library and PyYAML only: it runs before every worker start, and the launcher's Celery
executor gives the same refusal for SQLite (mnist_assets/celery_executor.py).
"""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path
from urllib.parse import parse_qs, unquote

ALLOW_VARIABLE = "MNIST_ASSETS_ALLOW_UNAUTHENTICATED"
CELERY_VARIABLES = ("DAGSTER_CELERY_BROKER_URL", "DAGSTER_CELERY_BACKEND_URL")
MONGO_VARIABLE = "FIFTYONE_DATABASE_URI"
SQLITE_REFUSAL = (
    "Celery needs Dagster's storage on PostgreSQL, shared by the launcher and every worker; {where} is "
    "SQLite, which no other machine sees and whose tables two workers starting at once race to create. "
    "Copy deploy/dagster-celery.yaml to $DAGSTER_HOME/dagster.yaml on every machine and set the "
    "DAGSTER_PG_* variables (docs/scale-out.md)."
)


def main() -> int:
    problems = check(dict(os.environ))
    for problem in problems:
        print(f"make worker: {problem}", file=sys.stderr)
    return 2 if problems else 0


def check(environ: dict[str, str]) -> list[str]:
    """Every reason not to start a worker with this environment (empty: start it)."""
    problems = []
    allowed = environ.get(ALLOW_VARIABLE, "").strip().lower() in ("1", "true", "yes")
    for variable in CELERY_VARIABLES:
        url = environ.get(variable, "")
        if not url:
            problems.append(f"{variable} is not set: export the launcher's value (docs/scale-out.md).")
        elif not allowed:
            problems += [broker_refusal(variable, host) for host in unauthenticated_hosts(url)]
    if environ.get(MONGO_VARIABLE) and not allowed:
        problems += [mongo_refusal(host) for host in unauthenticated_hosts(environ[MONGO_VARIABLE])]
    home = environ.get("DAGSTER_HOME")
    problems.append(storage_refusal(Path(home)) if home else "DAGSTER_HOME is not set (`make worker` sets it).")
    return [problem for problem in problems if problem]


def broker_refusal(variable: str, host: str) -> str:
    return (
        f"{variable} reaches {host}, not a loopback address, without a password: whoever reaches it can queue a "
        "task, and a task names code that every worker imports and runs. Give the server a password "
        "(deploy/redis.conf) and put it in the URL (rediss://:PASSWORD@host:6379/0, or redis:// without "
        f"TLS), or set {ALLOW_VARIABLE}=1 if only machines you trust reach it (docs/scale-out.md)."
    )


def mongo_refusal(host: str) -> str:
    return (
        f"{MONGO_VARIABLE} reaches {host}, not a loopback address, without a password: whoever reaches it "
        "can rewrite the labels, the samples and the locks. Start mongod with --auth, create a user and put "
        f"it in the URI (mongodb://USER:PASSWORD@host:27017/?authSource=admin), or set {ALLOW_VARIABLE}=1 "
        "if only machines you trust reach it (docs/scale-out.md)."
    )


def unauthenticated_hosts(url: str) -> list[str]:
    """The hosts of another machine that `url` reaches without a password. Several URLs joined by
    `;` (Celery's failover list) are checked one by one; a MongoDB URI may list several hosts."""
    hosts = []
    for part in filter(None, (piece.strip() for piece in url.split(";"))):
        scheme, _, rest = part.partition("://")
        if "socket" in scheme or "unix" in scheme:  # redis+socket://, unix:// and the like: this machine
            continue
        authority, query = _authority_and_query(rest)
        credentials, _, host_list = authority.rpartition("@")
        if unquote(credentials.partition(":")[2]) or parse_qs(query).get("authMechanism"):
            continue  # a password, or MongoDB's certificate or cloud authentication
        hosts += [host for host in map(_host, host_list.split(",")) if host and not is_loopback(host)]
    return hosts


def _authority_and_query(rest: str) -> tuple[str, str]:
    end = min((rest.find(mark) for mark in "/?#" if mark in rest), default=len(rest))
    query = rest.partition("?")[2].partition("#")[0]
    return rest[:end], query


def _host(address: str) -> str:
    """The host of `host`, `host:port`, `[v6]` or `[v6]:port`."""
    if address.startswith("["):
        return address[1:].partition("]")[0]
    return address.rpartition(":")[0] if address.count(":") == 1 else address


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1 (an empty host is the client's default: localhost)."""
    host = host.strip().lower().rstrip(".")
    if host in ("", "localhost") or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def storage_refusal(dagster_home: Path) -> str | None:
    """SQLITE_REFUSAL when the instance in `dagster_home` keeps runs or events in SQLite, else None."""
    import yaml

    path = dagster_home / "dagster.yaml"
    try:
        config = yaml.safe_load(path.read_text()) if path.is_file() else {}
    except (OSError, yaml.YAMLError) as error:
        return f"cannot read {path}: {error}"
    if storage_kind(config or {}) != "sqlite":
        return None
    where = str(path) if path.is_file() else f"{dagster_home} (no dagster.yaml: the default)"
    return SQLITE_REFUSAL.format(where=where)


def storage_kind(config: dict) -> str:
    """`postgres`, `mysql`, `sqlite` or `custom`: where an instance file keeps runs and events."""
    storage = config.get("storage")
    if isinstance(storage, dict) and storage:
        kind = next(iter(storage))
        custom = storage.get("custom")
        if kind == "custom" and isinstance(custom, dict):
            return "sqlite" if "sqlite" in f"{custom.get('module')}.{custom.get('class')}".lower() else "custom"
        return kind
    # The older form: a section per storage; a missing one is SQLite.
    for section in (config.get("run_storage"), config.get("event_log_storage")):
        if not isinstance(section, dict) or "sqlite" in f"{section.get('module')}.{section.get('class')}".lower():
            return "sqlite"
    return "custom"


if __name__ == "__main__":
    sys.exit(main())
