"""The checks `make worker` runs before it starts a Celery worker (docs/scale-out.md).

    python -m mnist_assets.worker     # exit 0, or 2 naming each problem and its fix

- A broker or result backend (`DAGSTER_CELERY_BROKER_URL`, `DAGSTER_CELERY_BACKEND_URL`) or a MongoDB
  (`FIFTYONE_DATABASE_URI`) on another host, reached without a password, is refused: a Celery task
  names code that the worker imports and runs, so whoever reaches the broker runs code on every
  worker, and whoever reaches MongoDB rewrites the labels and the locks. Loopback addresses,
  `localhost` and Unix sockets are this machine's own; a URL without a scheme or a host this check
  can read is refused too. `MNIST_ASSETS_ALLOW_UNAUTHENTICATED=1` allows it anyway (a network only
  trusted machines reach).
- Dagster's storage on SQLite (a `$DAGSTER_HOME/dagster.yaml` without PostgreSQL, the default) is
  refused: the launcher and every worker must share one instance, and two workers starting at once
  on a fresh SQLite folder race to create its tables (one dies on `alembic_version`).

Standard library and PyYAML only: it runs before every worker start, and the launcher's Celery
executor gives the same refusal for SQLite (mnist_assets/celery_executor.py).
"""

from __future__ import annotations

import ipaddress
import os
import re
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
            problems += refusals(variable, url, broker_refusal)
    if environ.get(MONGO_VARIABLE) and not allowed:
        problems += refusals(MONGO_VARIABLE, environ[MONGO_VARIABLE], lambda _, host: mongo_refusal(host))
    home = environ.get("DAGSTER_HOME")
    problems.append(storage_refusal(Path(home)) if home else "DAGSTER_HOME is not set (`make worker` sets it).")
    return [problem for problem in problems if problem]


def refusals(variable: str, url: str, refusal) -> list[str]:
    """`refusal(variable, host)` for each host `url` reaches without a password, or one line naming
    what cannot be read in it (a URL the check cannot place counts as another machine's)."""
    try:
        return [refusal(variable, host) for host in unauthenticated_hosts(url)]
    except ValueError as error:
        return [unreadable_refusal(variable, str(error))]


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


def unreadable_refusal(variable: str, reason: str) -> str:
    return (
        f"{variable} {reason}, so this check cannot tell whether it reaches another host without a password: write it "
        f"as scheme://[user:password@]host[:port]/... (e.g. redis://127.0.0.1:6379/0), or set {ALLOW_VARIABLE}=1 if "
        "only machines you trust reach it (docs/scale-out.md)."
    )


# Schemes that reach no server of their own: rpc:// rides on the broker (checked itself), the others
# stay in the process or on this machine's disk.
SERVERLESS_SCHEMES = ("rpc", "memory", "cache+memory", "filesystem", "file", "db+sqlite")


def unauthenticated_hosts(url: str) -> list[str]:
    """The hosts of another machine that `url` reaches without a password. Several URLs joined by
    `;` (Celery's failover list) are checked one by one; a MongoDB URI may list several hosts.
    Raises ValueError, naming what it cannot read, for a URL without a scheme or a readable host:
    kombu reads `10.0.0.5:6379` as amqp://guest@10.0.0.5:6379, so only a host proven local passes."""
    parts = [piece.strip() for piece in url.split(";") if piece.strip()]
    if not parts:
        raise ValueError("is empty")
    hosts = []
    for part in parts:
        scheme, separator, rest = part.partition("://")
        if not separator or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
            raise ValueError("has no scheme:// (kombu reads host:port as amqp://guest@host:port)")
        scheme = scheme.lower()
        if "socket" in scheme or "unix" in scheme or scheme in SERVERLESS_SCHEMES:  # redis+socket://, unix://: this machine
            continue
        authority, query = _authority_and_query(rest)
        credentials, _, host_list = authority.rpartition("@")
        if unquote(credentials.partition(":")[2]) or parse_qs(query).get("authMechanism"):
            continue  # a password, or MongoDB's certificate or cloud authentication
        hosts += [host for host in map(_host, host_list.split(",")) if not is_local(host)]
    return hosts


def _authority_and_query(rest: str) -> tuple[str, str]:
    end = min((rest.find(mark) for mark in "/?#" if mark in rest), default=len(rest))
    query = rest.partition("?")[2].partition("#")[0]
    return rest[:end], query


def _host(address: str) -> str:
    """The host of `host`, `host:port`, `[v6]` or `[v6]:port`; ValueError when it is none of them
    (an empty host is not the client's default: kombu's default for amqp:// is a guest login)."""
    if address.startswith("["):
        host, closed, port = address[1:].partition("]")
        if not host or not closed or not re.fullmatch(r"(:\d*)?", port):
            raise ValueError(f"has a host that is not one: {address!r}")
        return host
    if address.count(":") > 1:  # a bare IPv6 address, without a port
        try:
            return str(ipaddress.ip_address(address))
        except ValueError:
            raise ValueError(f"has a host that is not one: {address!r}") from None
    host, _, port = address.partition(":")
    if not host:
        raise ValueError("names no host")
    if not re.fullmatch(r"[A-Za-z0-9._~%-]+", host) or not re.fullmatch(r"\d*", port):
        raise ValueError(f"has a host that is not one: {address!r}")
    return host


def is_local(host: str) -> bool:
    """Whether `host` is provably this machine: a loopback address, `localhost`, or a Unix socket's
    path (MongoDB's %2Ftmp%2Fmongodb-27017.sock)."""
    host = unquote(host)
    return is_loopback(host) or (host.startswith("/") and host.endswith(".sock"))


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1 (not `*.localhost`: only some resolvers keep those local)."""
    host = host.strip().lower().rstrip(".")
    if host == "localhost":
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
