"""The review log of one dataset: every decision ever recorded, in files no writer can overwrite.

It lives outside the database (a re-ingest, a dataset rebuilt from scratch or a fresh database gets
every decision back), in the dataset's review folder:

- `log/<sequence>.jsonl`: one segment per append, numbered one past the highest there (ten digits,
  more past 9999999999: names are read as numbers) and created with a hard link, which fails when
  the name exists. A writer that was stopped (Ctrl-Z, a VM pause, an NFS stall) and resumes can only
  add its segment after the others, never replace one, so no lock is needed and none can be lost.
  Each segment is fsynced, and its folder, before it counts. Anything else in `log/` but a writer's
  temporary file is an error naming it: no decision is ever skipped.
- `decisions.jsonl`: the log as versions before segments wrote it; read first, never written again.
- `folded.json`: a cache of the decisions still in force in the first segments (superseded ones
  folded away: `model.superseded_removed`), rewritten by any reader once many decisions are new
  since, so reading stays fast however long the history grows. Deleting it loses nothing.

`history()` reads everything, in order; `by_key()` the decisions that still count.
"""

from __future__ import annotations

import errno
import json
import os
import re
from collections import defaultdict
from pathlib import Path

from mnist_assets.ml.core.files import atomic_write_bytes, is_temporary, remove_abandoned_temporaries, write_new_file
from mnist_assets.ml.decisions.model import DECISION_FIELDS, Decision, DecisionError, superseded_removed

SEGMENTS = "log"
LEGACY = "decisions.jsonl"
FOLDED = "folded.json"
FOLDED_FORMAT = 1
REFOLD_AFTER = 2000  # decisions read past the cache before a reader rewrites it
# Any number of digits: names grow past ten digits and still read back, in numeric order.
SEGMENT_NAME = re.compile(r"^([0-9]+)\.jsonl$")
APPEND_TRIES = 100  # segment numbers taken by other writers before an append gives up


class DecisionLog:
    """The decisions of one dataset, in `folder` (the dataset's review folder)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    @property
    def path(self) -> Path:
        """Where the log is, for people to read."""
        return self.folder

    def append(self, new: list[Decision]) -> None:
        """Add decisions after every one recorded so far, as one new segment."""
        if not new:
            return
        data = "".join(decision.to_json() + "\n" for decision in new).encode()
        folder, sequence = self.folder / SEGMENTS, 0
        try:
            remove_abandoned_temporaries(folder)
            for _ in range(APPEND_TRIES):
                # Past the number tried last: another writer took it, even where a listing lags (NFS).
                sequence = max(sequence, self._last_sequence()) + 1
                if write_new_file(self._segment_path(sequence), data):
                    return
        except OSError as error:
            if isinstance(error, PermissionError) or error.errno == errno.EROFS:
                raise DecisionError(
                    f"the review log {folder} is not writable ({error.strerror}), nothing recorded; "
                    "give this user write access to it (or run as its owner)."
                ) from error
            raise DecisionError(f"cannot write the review log {folder} ({error}), nothing recorded; fix that and run it again.") from error
        raise DecisionError(
            f"no free segment number in the review log {folder} after {APPEND_TRIES} tries, nothing recorded; run it again."
        )

    def history(self) -> list[Decision]:
        """Every decision ever recorded, in the order recorded."""
        decisions = self._legacy()
        for _, path in self._segments():
            decisions += _read_lines(path)
        return decisions

    def by_key(self) -> dict[tuple[str, int], list[Decision]]:
        """Per sample (source part, source index), its decisions that still count, in order."""
        segments = self._segments()
        found, through, read = self._folded(segments)
        touched = set()
        for sequence, path in segments:
            if sequence > through:
                for decision in _read_lines(path):
                    found[decision.key].append(decision)
                    touched.add(decision.key)
                    read += 1
        for key in touched:
            found[key] = superseded_removed(found[key])
        if read > REFOLD_AFTER:
            self._write_folded(found, segments)
        return dict(found)

    def read(self) -> list[Decision]:
        """The decisions that still count, sample by sample."""
        return [decision for decisions in self.by_key().values() for decision in decisions]

    def signature(self) -> str:
        """Changes whenever a decision is added: the review sensor compares it between looks."""
        segments = self._segments()
        legacy = self.folder / LEGACY
        stat = legacy.stat() if legacy.is_file() else None
        return repr((len(segments), segments[-1][0] if segments else 0, stat and (stat.st_size, stat.st_mtime_ns)))

    # --- the files ---

    def _segment_path(self, sequence: int) -> Path:
        return self.folder / SEGMENTS / f"{sequence:010d}.jsonl"

    def _segments(self) -> list[tuple[int, Path]]:
        """(number, path) of every segment, in order. Anything else in the folder but a writer's
        temporary file is refused by name: skipping it could skip decisions, or make `append` retry
        a name it never sees."""
        folder = self.folder / SEGMENTS
        try:
            entries = os.scandir(folder)
        except FileNotFoundError:
            return []
        except NotADirectoryError:
            raise DecisionError(f"{folder} is not a folder, but the review log keeps its segments there; move that file out.") from None
        found = []
        with entries:
            for entry in entries:
                if is_temporary(entry.name):
                    continue  # a writer's file before it counts, or one files.remove_abandoned_temporaries removes
                match = SEGMENT_NAME.match(entry.name)
                if not match or not entry.is_file():
                    what = "a folder" if entry.is_dir() else "not a regular file" if match else "its name is not <number>.jsonl"
                    raise DecisionError(
                        f"{entry.path} is not a segment of the review log ({what}); {folder} holds only segments: move it out of there."
                    )
                found.append((int(match.group(1)), Path(entry.path)))
        return sorted(found)

    def _last_sequence(self) -> int:
        segments = self._segments()
        return segments[-1][0] if segments else 0

    def _legacy(self) -> list[Decision]:
        path = self.folder / LEGACY
        return _read_lines(path) if path.is_file() else []

    def _legacy_stamp(self) -> list | None:
        path = self.folder / LEGACY
        if not path.is_file():
            return None
        stat = path.stat()
        return [stat.st_size, stat.st_mtime_ns]

    def _folded(self, segments: list[tuple[int, Path]]) -> tuple[defaultdict, int, int]:
        """The cached decisions in force and the last segment they cover; or, without a cache that
        matches the files, the legacy log's (no segment covered). And how many lines were read past a cache."""
        found = defaultdict(list)
        path = self.folder / FOLDED
        try:
            cache = json.loads(path.read_text()) if path.is_file() else None
        except (OSError, ValueError):
            cache = None  # a damaged cache is rebuilt from the segments
        if (
            isinstance(cache, dict)
            and cache.get("format") == FOLDED_FORMAT
            and tuple(cache.get("fields", ())) == DECISION_FIELDS
            and cache.get("legacy") == self._legacy_stamp()
            and cache.get("segments") == sum(1 for sequence, _ in segments if sequence <= cache.get("through", -1))
        ):
            for row in cache["decisions"]:
                decision = Decision(*row)
                found[decision.key].append(decision)
            return found, cache["through"], 0
        legacy = self._legacy()
        for decision in legacy:
            found[decision.key].append(decision)
        for key in list(found):
            found[key] = superseded_removed(found[key])
        return found, 0, len(legacy)

    def _write_folded(self, found: dict, segments: list[tuple[int, Path]]) -> None:
        through = segments[-1][0] if segments else 0
        cache = {
            "format": FOLDED_FORMAT,
            "legacy": self._legacy_stamp(),
            "through": through,
            "segments": len(segments),
            "fields": DECISION_FIELDS,
            "decisions": [[getattr(d, name) for name in DECISION_FIELDS] for key in sorted(found) for d in found[key]],
        }
        try:
            atomic_write_bytes(self.folder / FOLDED, json.dumps(cache).encode(), durable=True)
        except OSError:
            pass  # only a cache: a reader without write access reads the segments


def _read_lines(path: Path) -> list[Decision]:
    decisions = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DecisionError(
            f"{path} is not UTF-8 text (byte {error.start}), so not a segment of the review log; restore it from a backup or move it out."
        ) from error
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            decisions.append(Decision(**json.loads(line)))
        except (ValueError, TypeError) as error:
            raise DecisionError(
                f"{path} line {number} is not a decision ({error}); restore it from a backup or delete that line."
            ) from error
    return decisions
