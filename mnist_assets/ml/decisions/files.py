"""Decision files (CSV or JSON) and rows from Python: read strictly, checked against the source, recorded.

A CSV file has the header `source_index,decision,label`, optionally `split` and `note` (a person's
words, kept in the log), any order; lines starting with `#` between rows are comments; UTF-8, with
or without the byte-order mark Excel writes. A JSON file is a list of objects with the same keys; a
label may be a number there when that number is a class name (`"label": 0` is MNIST's class "0").
Anything that could put a decision on the wrong sample is refused, naming the file and line: an
unknown column or key (a `Split` the reader ignored once sent train decisions to test), a row with
more fields than the header, two rows that decide one sample differently. All rows are recorded, or
none.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

from mnist_assets.ml.data.dataset_spec import SPLITS
from mnist_assets.ml.data.sources import decision_sources, load_source
from mnist_assets.ml.decisions.log import DecisionLog
from mnist_assets.ml.decisions.model import KINDS, LABELING, SOURCE_PART, Decision, DecisionError, fold, now

FILE_COLUMNS = ("split", "source_index", "decision", "label", "note")
REQUIRED_COLUMNS = ("source_index", "decision")
SUFFIXES = (".csv", ".json")


def read_decision_file(path: Path, default_split: str | None = None) -> list[tuple[int, dict]]:
    """The rows of a CSV or JSON decision file with their line numbers (JSON: positions from 1);
    `default_split` fills a row without a split. Raises DecisionError naming the file, the line and the fix."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise DecisionError(f"{path}: decision files are .csv or .json, not {path.suffix or 'without a suffix'}.")
    if not path.exists():
        raise DecisionError(f"decision file {path} does not exist; give the path of a .csv or .json file.")
    if not path.is_file():
        raise DecisionError(f"{path} is not a regular file; give the path of a .csv or .json file.")
    try:
        text = path.read_bytes().decode("utf-8-sig")  # -sig: the byte-order mark Excel writes
    except OSError as error:
        raise DecisionError(f"cannot read the decision file {path} ({error.strerror}); give this user read access to it.") from error
    except UnicodeDecodeError as error:
        raise DecisionError(
            f"{path} is not UTF-8 text (byte {error.object[error.start]:#04x} at offset {error.start}); "
            "save it as UTF-8 (in Excel: CSV UTF-8)."
        ) from error
    numbered = _json_rows(path, text) if path.suffix.lower() == ".json" else _csv_rows(path, text)
    for _, row in numbered:
        if default_split and not row.get("split"):
            row["split"] = default_split
    return numbered


def _json_rows(path: Path, text: str) -> list[tuple[int, dict]]:
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as error:
        raise DecisionError(f"{path} is not valid JSON (line {error.lineno}: {error.msg}); fix the file.") from error
    except RecursionError:
        raise DecisionError(f"{path} nests too deeply to be a decision file; it must be a flat JSON list of objects.") from None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise DecisionError(f"{path}: expected a JSON list of objects with source_index, decision and label.")
    errors = [message for number, row in enumerate(rows, start=1) if (message := _unknown_keys(f"{path} object {number}", row))]
    if errors:
        raise DecisionError("\n  ".join([f"{path}: keys the reader does not know, nothing recorded:", *errors]))
    return list(enumerate(rows, start=1))


def _csv_rows(path: Path, text: str) -> list[tuple[int, dict]]:
    records = list(_csv_records(path, text))
    if not records:
        raise DecisionError(f"{path} holds no decisions; write a header source_index,decision,label and one row per sample.")
    (header_line, header), rows = records[0], records[1:]
    columns = [name.strip() for name in header]
    unknown = [name for name in columns if name not in FILE_COLUMNS]
    if unknown:
        raise DecisionError(
            f"{path} line {header_line}: unknown column(s) {unknown}; the columns are {', '.join(FILE_COLUMNS)} "
            "(lower case; split and note optional). Rename or remove them."
        )
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if repeated:
        raise DecisionError(f"{path} line {header_line}: column(s) {repeated} appear more than once; keep one of each.")
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise DecisionError(f"{path} line {header_line}: the header lacks {missing}; start the file with source_index,decision,label.")
    numbered, errors = [], []
    for number, fields in rows:
        if len(fields) > len(columns):
            errors.append(f"{path} line {number}: {len(fields)} fields for {len(columns)} columns ({fields[len(columns) :]} extra)")
            continue
        numbered.append((number, dict(zip(columns, fields + [None] * (len(columns) - len(fields))))))
    if errors:
        raise DecisionError(
            "\n  ".join(["rows with more fields than the header, nothing recorded (quote a note that holds a comma):", *errors])
        )
    return numbered


def _csv_records(path: Path, text: str):
    """(first line number, fields) of each CSV record; a record spans lines while a quoted field is
    open, so line numbers stay right after a note of several lines. Blank lines and lines starting
    with `#` between records are skipped."""
    pending, start = [], 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not pending:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            start = number
        pending.append(line)
        joined = "\n".join(pending)
        if joined.count('"') % 2 == 0:  # every quote closed ("" inside a quoted field keeps the count even)
            try:
                fields = next(csv.reader([joined]))
            except csv.Error as error:
                problem = (
                    f"a field is longer than the {csv.field_size_limit():,} characters csv reads; shorten it"
                    if "field limit" in str(error)
                    else 'a field with a quote inside spans lines; quote the whole field, with "" for each quote inside it'
                )
                raise DecisionError(f"{path} line {start}: {problem}.") from error
            yield start, fields
            pending = []
    if pending:
        raise DecisionError(f"{path} line {start}: a quoted field is never closed; add the closing quote.")


def _unknown_keys(where: str, row: dict) -> str | None:
    unknown = sorted(str(key) for key in row if key not in FILE_COLUMNS)
    return f"{where}: unknown key(s) {unknown}; the keys are {', '.join(FILE_COLUMNS)}" if unknown else None


def decisions_from_rows(
    rows: list[tuple[int, dict]], origin: str, sources: dict[str, dict[int, tuple[str, str]]], classes: list[str], states=None
) -> list[Decision]:
    """Check every row and turn them into decisions, or raise naming every bad row and its fix (then
    nothing is recorded). `sources[split]` maps each source index of the split to (pixel hash, source
    label); `states` optionally gives the label in use now, for the decisions' `old_label`."""
    errors, conflicts, decisions, at = [], [], [], now()
    lines_of = defaultdict(list)  # sample -> (line, what it decides): conflicting rows are refused
    for number, row in rows:
        where = f"{origin} line {number}"
        unknown = _unknown_keys(where, row)
        if unknown:
            errors.append(unknown)
            continue
        raw_label = row.get("label")
        split, kind = _text(row.get("split")), _text(row.get("decision")).strip()
        label, note = _text(raw_label).strip() or None, _text(row.get("note")).strip() or None
        if isinstance(raw_label, int) and not isinstance(raw_label, bool) and label not in classes:  # JSON's 0 is MNIST's "0"
            errors.append(f"{where}: label {label} is a number and no class is named {label!r}; write one of {', '.join(classes)}.")
            continue
        if split not in SPLITS:
            errors.append(f"{where}: split {split!r} is not one of {', '.join(SPLITS)}; add a split column or pass --split.")
            continue
        source_index = _as_int(row.get("source_index"))
        if source_index is None:
            errors.append(f"{where}: source_index {row.get('source_index')!r} is not a whole number.")
            continue
        if source_index not in sources[split]:
            errors.append(
                f"{where}: no {split} sample has source_index {source_index}; check the index (the `source_index` field in the App)."
            )
            continue
        if kind not in KINDS:
            errors.append(f"{where}: decision {kind!r} is not one of {', '.join(KINDS)}.")
            continue
        if kind in LABELING and label not in classes:
            errors.append(f"{where}: {kind} needs a declared class in `label`, got {label!r}; use one of {', '.join(classes)}.")
            continue
        if kind not in LABELING and label is not None:
            errors.append(f"{where}: {kind} takes no label (got {label!r}); leave `label` empty or use relabel.")
            continue
        unlabeled = sources[split][source_index][1] is None
        if (kind == "label" and not unlabeled) or (kind in ("relabel", "confirm") and unlabeled):
            fix = "has no label in the source: use `label`" if unlabeled else "has a label: use `relabel`"
            errors.append(f"{where}: {split} sample {source_index} {fix}.")
            continue
        lines_of[(SOURCE_PART[split], source_index)].append((number, (split, kind, label)))
        image_hash, original = sources[split][source_index]
        old = (states or {}).get((split, source_index), original)
        via = origin if origin == "python" else f"{origin}:{number}"
        decisions.append(Decision(split, source_index, image_hash, kind, label, old, original, at, via, note))
    for (part, source_index), seen in lines_of.items():
        if len({what for _, what in seen}) > 1:
            lines = ", ".join(str(number) for number, _ in seen)
            conflicts.append(f"{origin} lines {lines}: they decide the {part} sample {source_index} differently; keep one of them.")
    if errors or conflicts:
        head = f"{len(errors)} of {len(rows)} decisions refused" if errors else f"{len(conflicts)} sample(s) decided twice"
        raise DecisionError(f"{head}, none recorded:\n  " + "\n  ".join(errors + conflicts))
    return decisions


def import_decision_file(log: DecisionLog, path, spec, source_dir, downloads_dir, default_split: str | None = None) -> list[Decision]:
    """Check a decision file against the dataset's source and add its decisions to the log (see
    `record_rows`); each decision's `via` names the file and line."""
    return record_rows(log, read_decision_file(path, default_split), f"file:{Path(path).name}", spec, source_dir, downloads_dir)


def record_rows(log: DecisionLog, rows: list[tuple[int, dict]], origin: str, spec, source_dir, downloads_dir) -> list[Decision]:
    """Check decision rows against the dataset's source (each names a sample the source holds, a
    declared class) and add them to the log: all of them, or none with every bad row named. The
    images' pixel hashes come from the source, so a decision about a sample not ingested yet (a
    limited run) applies when it is."""
    sources = decision_sources(load_source(spec, source_dir, downloads_dir), spec)
    earlier = log.by_key()
    in_use = {}  # the label each named sample has now, for the decisions' old_label
    for _, row in rows:
        split, index = str(row.get("split") or ""), _as_int(row.get("source_index"))
        if split in sources and index in sources[split]:
            image_hash, original = sources[split][index]
            in_use[(split, index)] = fold(earlier.get((SOURCE_PART[split], index), []), original, image_hash)[0].label
    decisions = decisions_from_rows(rows, origin, sources, spec.classes(), in_use)
    log.append(decisions)
    return decisions


def _text(value) -> str:
    """A field as text: JSON's 0 is "0", not missing."""
    return "" if value is None else str(value)


def _as_int(value) -> int | None:
    try:
        return int(str(value).strip())
    except ValueError:
        return None
