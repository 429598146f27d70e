"""Named exclusive locks for state that processes share: a dataset's field declarations and saved
views, a split's ingest, a dataset's review log.

One lock object per name per process, so a holder may take the same lock again (an ingest that
records review decisions takes the split's lock once, then calls code that takes it too).
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

from filelock import FileLock

_locks: dict[tuple[str, str], FileLock] = {}
_guard = threading.Lock()


def lock_folder() -> Path:
    """Where the lock files live: beside the embedded database, else the temporary folder."""
    import fiftyone as fo

    from mnist_assets.environment import configure_fiftyone

    configure_fiftyone(fo)  # the same folder whichever comes first, a connection or a lock
    folder = Path(fo.config.database_dir).parent if not fo.config.database_uri else Path(tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def exclusive(name: str) -> FileLock:
    """The lock `name`, for a `with` block (re-entrant within this process)."""
    folder = lock_folder()
    with _guard:
        key = (str(folder), name)
        if key not in _locks:
            _locks[key] = FileLock(folder / f".{name}.lock")
        return _locks[key]
