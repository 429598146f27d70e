"""`make label-studio`: a pinned Label Studio in its own environment, bound to 127.0.0.1, offline.

Label Studio 1.23.2 lives in `.venv-label-studio` (scripts/label_studio_setup.sh): its SDK pins
numpy below what the project uses. Its data (a SQLite database) is under
`<MNIST_ASSETS_HOME>/label-studio/`. The admin account and API token come from
`LABEL_STUDIO_USERNAME`, `LABEL_STUDIO_PASSWORD` and `LABEL_STUDIO_API_KEY`, or are generated once
and kept in `<MNIST_ASSETS_HOME>/label-studio/credentials.json`, readable by its owner only. Images
are served from disk (local-files mode, nothing uploaded), rooted at `MNIST_ASSETS_HOME` unless
`LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT` says otherwise.

    python -m mnist_assets.annotation.server [--port 8080]

It listens on 127.0.0.1 only; docs/scale-out.md shows how to let annotators elsewhere in safely
(a TLS reverse proxy with a password), never by binding 0.0.0.0.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from mnist_assets.ml.core.environment import assets_home

REPO = Path(__file__).resolve().parents[2]
LABEL_STUDIO = REPO / ".venv-label-studio" / "bin" / "label-studio"
DEFAULT_PORT = 8080
DEFAULT_USERNAME = "annotator@mnist-assets.local"
# No outside traffic: no version check, no analytics, no error reports.
OFFLINE = {"LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false", "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": ""}


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    token: str  # the legacy API token (`Authorization: Token ...`), 40 hex characters


def data_dir(home: Path | None = None) -> Path:
    return (home or assets_home()) / "label-studio"


def document_root(home: Path | None = None) -> Path:
    """The folder whose files the server may serve (local-files mode)."""
    return Path(os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT") or (home or assets_home())).resolve()


def credentials(home: Path | None = None) -> Credentials:
    """The admin account and token: from the environment, else the ones generated on the first start."""
    stored = data_dir(home) / "credentials.json"
    if not stored.is_file():
        generated = {"username": DEFAULT_USERNAME, "password": secrets.token_urlsafe(18), "token": secrets.token_hex(20)}
        _create_private(stored, json.dumps(generated, indent=1))
    found = json.loads(stored.read_text())
    return Credentials(
        os.environ.get("LABEL_STUDIO_USERNAME") or found["username"],
        os.environ.get("LABEL_STUDIO_PASSWORD") or found["password"],
        os.environ.get("LABEL_STUDIO_API_KEY") or found["token"],
    )


def _create_private(path: Path, text: str) -> None:
    """Write `path`, owner-only from its first byte, whole, unless it exists (then the first writer's
    stays: two first starts at once agree on one token)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        out.write(text)
    try:
        os.link(tmp, path)  # fails if it exists: never replaces the token a running server uses
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


def url(port: int | None = None) -> str:
    return os.environ.get("LABEL_STUDIO_URL") or f"http://127.0.0.1:{port or DEFAULT_PORT}"


def server_environment(home: Path | None = None) -> dict[str, str]:
    return {
        **os.environ,
        **OFFLINE,
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir(home)),
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(document_root(home)),
    }


def server_command(port: int, login: Credentials) -> list[str]:
    return [
        str(LABEL_STUDIO),
        "start",
        "--no-browser",
        "--internal-host",
        "127.0.0.1",  # the bind address (`--host` only sets the links it writes)
        "--port",
        str(port),
        "--username",
        login.username,
        "--password",
        login.password,
        "--user-token",
        login.token,
        "--enable-legacy-api-token",  # the token above is a legacy one
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", default=str(DEFAULT_PORT), help="1-65535 (LABEL_STUDIO_PORT), default 8080")
    args = parser.parse_args(argv)
    if not (args.port.isascii() and args.port.isdigit() and 1 <= int(args.port) <= 65535):
        parser.exit(2, f"LABEL_STUDIO_PORT (--port) {args.port!r} is not a TCP port: give a number from 1 to 65535.\n")
    if not LABEL_STUDIO.exists():
        parser.exit(2, f"no Label Studio at {LABEL_STUDIO}: run `make label-studio` (it installs it first).\n")
    login = credentials()
    data_dir().mkdir(parents=True, exist_ok=True)
    print(f"Label Studio: http://127.0.0.1:{args.port}  user {login.username}, password and API token in {data_dir() / 'credentials.json'}")
    print(f"serving images under {document_root()}; its data in {data_dir()}", flush=True)
    os.execve(LABEL_STUDIO, server_command(int(args.port), login), server_environment())


if __name__ == "__main__":
    sys.exit(main())
