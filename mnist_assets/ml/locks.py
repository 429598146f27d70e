"""Named exclusive locks for state that processes on any machine share: a dataset's field
declarations and saved views, a split's ingest, a dataset's review log.

A lock is a lease in the MongoDB that FiftyOne already uses, so every worker that reaches the
dataset reaches its locks: one document per lock name, naming its holder (host, process) and
when the lease ends, by the database's clock (no two machines' clocks are compared). A thread
renews the lease while the lock is held; a holder that crashed blocks the others for at most
`LEASE_SECONDS`, after which the next one takes it over. Waiting longer than the timeout
(`MNIST_ASSETS_LOCK_TIMEOUT`, seconds) raises `LockTimeout` naming the holder.

Within a process a lock is re-entrant (an ingest that records review decisions takes the split's
lock once, then calls code that takes it too) and threads take it one at a time. The one lock that
cannot live in the database is the one that starts the embedded database: `local_file_lock`.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path

from filelock import FileLock

from mnist_assets.environment import seconds_setting

LEASE_SECONDS = 60.0
DEFAULT_TIMEOUT = 1800.0  # an ingest of a large split holds its lock for minutes
POLL_SECONDS = 0.2
COLLECTION = "mnist_assets_locks"


class LockTimeout(TimeoutError):
    """A lock stayed held by another process for longer than the timeout."""


def lock_timeout() -> float:
    return seconds_setting("MNIST_ASSETS_LOCK_TIMEOUT", DEFAULT_TIMEOUT)


class LeaseLock:
    """One named lease in `collection` (a pymongo collection); use it in a `with` block."""

    def __init__(self, name: str, collection, lease: float = LEASE_SECONDS, timeout: float | None = None):
        self.name = name
        self.collection = collection
        self.lease = lease
        self.timeout = timeout
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._local = threading.RLock()
        self._count = 0
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _lease_until(self) -> dict:
        return {"$add": ["$$NOW", int(self.lease * 1000)]}

    def _try_take(self) -> bool:
        """One atomic update of the lock's document (created if absent): it becomes ours when it is
        new, already ours, or its lease has ended by the database's clock; otherwise it stays."""
        from pymongo import ReturnDocument

        take = {"$or": [{"$eq": [{"$type": "$holder"}, "missing"]}, {"$eq": ["$holder", self.holder]}, {"$lt": ["$expires", "$$NOW"]}]}
        mine = lambda value, kept: {"$cond": [take, value, kept]}  # noqa: E731
        document = self.collection.find_one_and_update(
            {"_id": self.name},
            [
                {
                    "$set": {
                        "holder": mine(self.holder, "$holder"),
                        "host": mine(socket.gethostname(), "$host"),
                        "pid": mine(os.getpid(), "$pid"),
                        "since": mine("$$NOW", "$since"),
                        "expires": mine(self._lease_until(), "$expires"),
                    }
                }
            ],
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return document["holder"] == self.holder

    def acquire(self) -> None:
        self._local.acquire()
        if self._count:
            self._count += 1
            return
        timeout = self.timeout if self.timeout is not None else lock_timeout()
        deadline = time.monotonic() + timeout
        try:
            while not self._try_take():
                if time.monotonic() > deadline:
                    raise LockTimeout(self._held_message(timeout))
                time.sleep(POLL_SECONDS)
        except BaseException:
            self._local.release()
            raise
        self._count = 1
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew, name=f"lease {self.name}", daemon=True)
        self._renewer.start()

    def release(self) -> None:
        self._count -= 1
        if self._count == 0:
            self._stop.set()
            if self._renewer is not None:
                self._renewer.join()
            self.collection.delete_one({"_id": self.name, "holder": self.holder})
        self._local.release()

    def _renew(self) -> None:
        while not self._stop.wait(self.lease / 4):
            try:
                self.collection.update_one({"_id": self.name, "holder": self.holder}, [{"$set": {"expires": self._lease_until()}}])
            except Exception:  # noqa: BLE001 - a failed renewal is retried; the lease covers the gap
                pass

    def _held_message(self, waited: float) -> str:
        held = self.collection.find_one({"_id": self.name}) or {}
        return (
            f"lock {self.name!r} is held by process {held.get('pid')} on {held.get('host')} (since {held.get('since')}, "
            f"lease until {held.get('expires')} UTC); waited {waited:.0f} s. If that process still works, wait for it "
            f"or raise MNIST_ASSETS_LOCK_TIMEOUT; if it is gone, its lease ends by itself within {self.lease:.0f} s."
        )

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *_):
        self.release()


_locks: dict[tuple[str, str], LeaseLock] = {}
_guard = threading.Lock()


def exclusive(name: str) -> LeaseLock:
    """The lock `name` in the database FiftyOne uses (connected first), one object per process."""
    import fiftyone as fo
    import fiftyone.core.odm as foo

    from mnist_assets.ml.fiftyone_store import connect

    connect()
    with _guard:
        key = (fo.config.database_uri or fo.config.database_dir, name)
        if key not in _locks:
            _locks[key] = LeaseLock(name, foo.get_db_conn()[COLLECTION])
        return _locks[key]


def local_file_lock(name: str) -> FileLock:
    """A lock file on this machine, beside the embedded database (else in the temporary folder), for
    what comes before any database: starting the embedded one."""
    import fiftyone as fo

    folder = Path(fo.config.database_dir).parent if not fo.config.database_uri else Path(tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    return FileLock(folder / f".{name}.lock")
