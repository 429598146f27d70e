"""Named exclusive locks for state that processes on any machine share: a dataset's field
declarations and saved views, a split's ingest, a dataset's review log.

A lock is a lease in the MongoDB that FiftyOne already uses, so every worker that reaches the
dataset reaches its locks: one document per lock name, naming its holder (host, process) and
when the lease ends, by the database's clock (no two machines' clocks are compared). A thread
renews the lease while the lock is held; a holder that crashed blocks the others for at most
`LEASE_SECONDS`, after which the next one takes it over. Waiting longer than the timeout
(`MNIST_ASSETS_LOCK_TIMEOUT`, seconds) raises `LockTimeout` naming the holder.

A holder that was stopped past its lease (Ctrl-Z, a VM pause, a network cut) may have lost the lock
to another process without knowing it. So every write a lock guards is fenced: right before it,
`fence_held_locks()` checks, in one atomic update in the database, that each lock this process holds
is still its own (renewing it), and raises `LockLost` otherwise; a renewal that fails for a whole
lease, or finds the lock taken, is reported the same way at the next fence and when the lock is
released. The review log needs no lock at all (ml/decisions/log.py: appends cannot overwrite).

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

from mnist_assets.ml.core.environment import seconds_setting

LEASE_SECONDS = 60.0
DEFAULT_TIMEOUT = 1800.0  # an ingest of a large split holds its lock for minutes
POLL_SECONDS = 0.2
COLLECTION = "mnist_assets_locks"


class LockTimeout(TimeoutError):
    """A lock stayed held by another process for longer than the timeout."""


class LockLost(RuntimeError):
    """This process held a lock and lost it (its lease ran out): what it was writing must not land."""


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
        self._lost: str | None = None  # why the lease was lost while held (set by the renewer or a fence)

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
        self._lost = None
        _held.add(self)
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew, name=f"lease {self.name}", daemon=True)
        self._renewer.start()

    def release(self) -> None:
        """Give the lock up; raises LockLost (after letting go) when it was lost while held, so a
        holder that wrote nothing after its last fence still learns of it."""
        self._count -= 1
        lost = None
        if self._count == 0:
            self._stop.set()
            if self._renewer is not None:
                self._renewer.join()
            _held.discard(self)
            lost = self._lost
            try:
                self.collection.delete_one({"_id": self.name, "holder": self.holder})
            except Exception:  # noqa: BLE001 - the lease ends by itself
                pass
        self._local.release()
        if lost:
            raise LockLost(lost)

    def fence(self) -> None:
        """Raise LockLost unless this process still holds the lock: one atomic update that renews
        the lease only where the holder is still this one. Call it right before a guarded write."""
        if self._count == 0:
            return
        if self._lost is None:
            try:
                mine = self.collection.find_one_and_update(
                    {"_id": self.name, "holder": self.holder}, [{"$set": {"expires": self._lease_until()}}], projection={"_id": 1}
                )
            except Exception as error:  # noqa: BLE001 - without the database nobody can say it is still ours
                raise LockLost(
                    f"lock {self.name!r}: cannot confirm this process still holds it ({error}); nothing more was written."
                ) from error
            if mine is None:
                self._lost = self._taken_message()
        if self._lost:
            raise LockLost(self._lost)

    def _taken_message(self) -> str:
        try:
            held = self.collection.find_one({"_id": self.name}) or {}
        except Exception:  # noqa: BLE001 - the message says less, the loss stands
            held = {}
        return (
            f"lock {self.name!r} was lost while this process held it (its {self.lease:.0f} s lease ran out: stopped or cut off "
            f"for longer?); now held by process {held.get('pid')} on {held.get('host')}. Nothing more was written; run it again."
        )

    def _renew(self) -> None:
        renewed = time.monotonic()
        while not self._stop.wait(self.lease / 4):
            try:
                result = self.collection.update_one({"_id": self.name, "holder": self.holder}, [{"$set": {"expires": self._lease_until()}}])
            except Exception as error:  # noqa: BLE001 - retried while the lease lasts; then the holder is told
                if time.monotonic() - renewed > self.lease:
                    self._lost = (
                        f"lock {self.name!r}: its lease could not be renewed for {self.lease:.0f} s ({error}); nothing more was written."
                    )
                    return
                continue
            if result.matched_count == 0:
                self._lost = self._taken_message()
                return
            renewed = time.monotonic()

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

    def __exit__(self, error_type, *_):
        try:
            self.release()
        except LockLost:
            if error_type is None:
                raise  # else the error that is on its way out says more


_locks: dict[tuple[str, str], LeaseLock] = {}
_held: set[LeaseLock] = set()  # the locks this process holds now
_guard = threading.Lock()


def fence_held_locks() -> None:
    """Before a guarded write: raise LockLost if this process lost any lock it holds."""
    for lock in list(_held):
        lock.fence()


def lease_lock(name: str, database: str, collection) -> LeaseLock:
    """The lock `name` in `collection` of `database`, one object per process (`store.fiftyone_store.exclusive`
    gives it the database FiftyOne uses)."""
    with _guard:
        if (database, name) not in _locks:
            _locks[(database, name)] = LeaseLock(name, collection)
        return _locks[(database, name)]


def local_file_lock(name: str) -> FileLock:
    """A lock file on this machine, beside the embedded database (else in the temporary folder), for
    what comes before any database: starting the embedded one."""
    import fiftyone as fo

    folder = Path(fo.config.database_dir).parent if not fo.config.database_uri else Path(tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    return FileLock(folder / f".{name}.lock")
