"""The few calls to Label Studio's REST API the round trip needs, with the server's legacy token.

Plain HTTP (`requests`), not label-studio-sdk: the SDK that matches the server pins numpy below the
project's, and these are five documented endpoints (docs/decisions.md).
"""

from __future__ import annotations

from pathlib import Path

import requests

IMPORT_BATCH = 1000  # tasks per import request: well under the server's request-size limit
TIMEOUT = 300


class LabelStudioError(RuntimeError):
    """Label Studio answered with an error, or not at all: the message says which and the fix."""


class LabelStudio:
    def __init__(self, url: str, token: str):
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"

    def _call(self, method: str, path: str, **options):
        try:
            response = self.session.request(method, self.url + path, timeout=TIMEOUT, **options)
        except requests.ConnectionError:
            raise LabelStudioError(f"no Label Studio answers at {self.url}: start it with `make label-studio`") from None
        if response.status_code in (401, 403):
            raise LabelStudioError(
                f"Label Studio at {self.url} refused the API token ({response.status_code}): use the token of "
                "`make label-studio` (LABEL_STUDIO_API_KEY, or the one in its credentials.json)"
            )
        if response.status_code == 404:
            raise LabelStudioError(f"Label Studio at {self.url} has no {path.split('?')[0]} (deleted in the tool?)")
        if not response.ok:
            raise LabelStudioError(f"Label Studio {method} {path.split('?')[0]}: {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None

    def project(self, title: str) -> dict | None:
        """The project of that exact title, or None."""
        found = self._call("GET", "/api/projects", params={"title": title, "page_size": 1000})
        projects = found["results"] if isinstance(found, dict) else found
        matching = [project for project in projects if project.get("title") == title]
        return min(matching, key=lambda project: project["id"]) if matching else None

    def create_project(self, title: str, label_config: str, description: str = "") -> dict:
        return self._call("POST", "/api/projects", json={"title": title, "label_config": label_config, "description": description})

    def connect_local_files(self, project_id: int, folder: str) -> None:
        """A local-files storage of the project over `folder`: the server serves a local file to a
        project only from under one of its storages. Not synced: the tasks are imported as JSON."""
        storages = self._call("GET", "/api/storages/localfiles", params={"project": project_id}) or []
        if not any(storage.get("path") == folder for storage in storages):
            body = {"project": project_id, "path": folder, "title": "mnist_assets images", "use_blob_urls": False}
            self._call("POST", "/api/storages/localfiles", json=body)

    def import_tasks(self, project_id: int, tasks: list[dict], progress=None) -> int:
        imported = 0
        for start in range(0, len(tasks), IMPORT_BATCH):
            batch = tasks[start : start + IMPORT_BATCH]
            self._call("POST", f"/api/projects/{project_id}/import", json=batch)
            imported += len(batch)
            if progress:
                progress(len(batch))
        return imported

    def export(self, project_id: int) -> list[dict]:
        """Every task of the project with its annotations (Label Studio's JSON export)."""
        return self._call("GET", f"/api/projects/{project_id}/export", params={"exportType": "JSON", "download_all_tasks": "true"})


def connect(home: Path | None = None) -> LabelStudio:
    """The server `make label-studio` runs for this home (LABEL_STUDIO_URL, else 127.0.0.1:8080), with its token."""
    from mnist_assets.annotation import server

    return LabelStudio(server.url(), server.credentials(home).token)
