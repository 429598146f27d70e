"""Atomic file writes: a temporary sibling, then a rename, so no reader sees half a file.

Durable writes (the review log, releases, checkpoints) also reach the disk before they count: the
file is fsynced before the rename and its folder after it, so a crash or power cut on a machine
(or an NFS client) cannot leave a renamed but empty file. Temporary names say which host and
process wrote them, so one left by a killed writer is removed by the next durable write there.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import uuid
from pathlib import Path

TEMPORARY_SUFFIX = ".tmp"
ABANDONED_AFTER_SECONDS = 24 * 3600  # another machine's temporary file: its writer is surely gone by then


def atomic_write_bytes(path: Path, data: bytes, durable: bool = False) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if durable:
        remove_abandoned_temporaries(path.parent)
    tmp = path.with_name(temporary_name(path.name))
    try:
        write_synced(tmp, data, durable)
        os.replace(tmp, path)
        if durable:
            fsync_folder(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_arrays(path: Path, **arrays) -> None:
    """NumPy arrays as one `.npz` file, written atomically; read back with `read_arrays`."""
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def read_arrays(path: Path) -> dict | None:
    """The arrays of an `.npz` file (never unpickling anything), None when there is no file."""
    import numpy as np

    if not Path(path).is_file():
        return None
    with np.load(path, allow_pickle=False) as saved:
        return {name: saved[name] for name in saved.files}


def write_new_file(path: Path, data: bytes) -> bool:
    """Create `path` holding `data`, durably and whole, unless it exists: then nothing is written and
    the answer is False. A hard link of a complete temporary file never replaces an existing name,
    also on NFS, so two writers can never overwrite each other's file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(temporary_name(path.name))
    try:
        write_synced(tmp, data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        fsync_folder(path.parent)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def write_synced(path: Path, data: bytes, durable: bool = True) -> None:
    """Write `data` to `path`; `durable`: on the disk (fsynced) before this returns."""
    with open(path, "wb") as handle:
        handle.write(data)
        if durable:
            handle.flush()
            os.fsync(handle.fileno())


def temporary_name(name: str) -> str:
    """`.<name>~<host>~<pid>~<random>.tmp`: hidden, unique, and says whose it is."""
    return f".{name}~{socket.gethostname()}~{os.getpid()}~{uuid.uuid4().hex[:8]}{TEMPORARY_SUFFIX}"


def fsync_folder(folder: Path) -> None:
    """Make a rename or link in `folder` durable (where the platform can open a folder)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def is_temporary(name: str) -> bool:
    """Whether a file name is one `temporary_name` makes: a writer's file before it counts."""
    return name.startswith(".") and name.endswith(TEMPORARY_SUFFIX)


def remove_abandoned_temporaries(folder: Path) -> int:
    """Remove the temporary files (and folders) in `folder` whose writer is gone: a process of this host that no
    longer runs, or any writer's after a day. Returns how many were removed."""
    removed = 0
    host = socket.gethostname()
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if not is_temporary(entry.name):
            continue
        parts = entry.name[: -len(TEMPORARY_SUFFIX)].rsplit("~", 3)
        mine_and_dead = len(parts) == 4 and parts[1] == host and parts[2].isdigit() and not _running(int(parts[2]))
        try:
            if mine_and_dead or time.time() - entry.stat().st_mtime > ABANDONED_AFTER_SECONDS:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)  # a folder being filled (a release's files) when its writer died
                else:
                    os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:
            pass  # its writer finished, or another cleaner was first
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
