"""The review log and its meeting with a real FiftyOne split: collect, apply, files, concurrency."""

import errno
import json
import multiprocessing
import os
import re

import numpy as np
import pytest

from mnist_assets.ml.data.sources import pixel_hashes
from mnist_assets.ml.decisions import (
    Decision,
    DecisionError,
    DecisionLog,
    SplitSamples,
    collect,
    decisions_from_rows,
    fold,
    read_decision_file,
    review_split,
    undecided,
)
from mnist_assets.ml.store.fiftyone_store import get_dataset, split_view, sync_split, usable_view

DIGITS = [str(d) for d in range(10)]


def decision(kind, label=None, image_hash="h", via="python", index=5, split="test"):
    return Decision(split, index, image_hash, kind, label, None, "3", "2026-12-01T00:00:00+00:00", via)


def test_the_latest_decision_wins_and_stale_ones_are_not_applied():
    state, stale = fold([decision("relabel", "8"), decision("exclude")], "3", "h")
    assert (state.label, state.decision, state.excluded) == ("8", "exclude", True)  # exclusion keeps the label in use
    state, _ = fold([decision("relabel", "8"), decision("confirm")], "3", "h")
    assert (state.label, state.decision) == ("3", "confirm")
    state, _ = fold([decision("relabel", "3")], "3", "h")  # relabelled to the source's label: a confirmation
    assert (state.label, state.decision) == ("3", "confirm")
    state, stale = fold([decision("relabel", "8", image_hash="old")], "3", "new")
    assert (state.label, state.decision) == ("3", None) and len(stale) == 1


@pytest.fixture
def test_split(make_settings, mnist):
    """The first 40 real MNIST test images as a split of a fresh dataset, and its review log."""
    settings = make_settings()
    store = settings.store("mnist")
    dataset = store.dataset()
    images, labels, indices = mnist.test_images[:40], mnist.test_labels[:40], np.arange(40)
    paths = [f"/data/t10k/{i:05d}.png" for i in indices]

    def ingest(into=dataset):
        return sync_split(into, "test", paths, labels, indices, pixel_hashes(images), DIGITS)

    ingest()
    return dataset, store.decision_log(), ingest


def by_index(view, index):
    return view.match({"source_index": index}).first()


def test_app_edits_and_tags_are_recorded_once_and_applied(test_split, mnist):
    dataset, log, _ = test_split
    view = split_view(dataset, "test")
    edited, tagged, excluded, confirmed = by_index(view, 1), by_index(view, 2), by_index(view, 3), by_index(view, 4)
    new_label = str((int(edited.ground_truth.label) + 1) % 10)
    edited.ground_truth.label = new_label  # exactly what the App's label editor writes
    edited.save()
    view.select([tagged.id]).tag_samples("relabel:7")
    view.select([excluded.id]).tag_samples("review:exclude")
    view.select([confirmed.id]).tag_samples("review:ok")

    result = review_split(split_view(dataset, "test"), "test", log, DIGITS)
    assert sorted((d.source_index, d.decision, d.label, d.via) for d in result.new) == [
        (1, "relabel", new_label, "app"),
        (2, "relabel", "7", "tag:relabel:7"),
        (3, "exclude", None, "tag:review:exclude"),
        (4, "confirm", None, "tag:review:ok"),
    ]
    assert all(d.image_hash == by_index(view, d.source_index).image_hash for d in result.new)
    assert not result.rejected and result.plan.counts() == {"relabel": 2, "exclude": 1, "confirm": 1, "label": 0}
    view = split_view(dataset, "test")
    assert by_index(view, 2).ground_truth.label == "7" and by_index(view, 2).ground_truth_original.label == str(mnist.test_labels[2])
    assert by_index(view, 3).review_decision == "exclude" and "review:exclude" in by_index(view, 3).tags  # tags stay
    assert len(usable_view(dataset, "test")) == 39
    # Nothing new the second time: tags already recorded, labels as the log says.
    again = review_split(split_view(dataset, "test"), "test", log, DIGITS)
    assert again.new == [] and again.written == 0 and len(log.read()) == 4


def test_a_label_outside_the_classes_is_reported_and_left_as_set(test_split):
    dataset, log, _ = test_split
    sample = by_index(split_view(dataset, "test"), 6)
    sample.ground_truth.label = "seven"
    sample.save()
    split_view(dataset, "test").select([by_index(split_view(dataset, "test"), 7).id]).tag_samples(["relabel:1", "relabel:2"])
    result = review_split(split_view(dataset, "test"), "test", log, DIGITS)
    assert result.new == [] and log.read() == []
    assert (
        len(result.rejected) == 2
        and "'seven' is not a declared class" in result.rejected[0]
        and "more than one class" in result.rejected[1]
    )
    assert by_index(split_view(dataset, "test"), 6).ground_truth.label == "seven"  # the person fixes it


def test_decisions_survive_a_reingest_and_a_rebuilt_dataset(test_split):
    dataset, log, ingest = test_split
    sample = by_index(split_view(dataset, "test"), 9)
    sample_id, label = sample.id, str((int(sample.ground_truth.label) + 3) % 10)
    sample.ground_truth.label = label
    sample.save()
    dataset.select([sample_id]).tag_samples("my-own-tag")
    changes = ingest()  # the weekly refresh's re-ingest, before any review ran
    assert changes["kept"] == 40 and changes["replaced"] == 0
    kept = by_index(split_view(dataset, "test"), 9)
    assert (kept.id, kept.ground_truth.label, "my-own-tag" in kept.tags) == (sample_id, label, True)
    review_split(split_view(dataset, "test"), "test", log, DIGITS)
    assert [(d.source_index, d.label) for d in log.read()] == [(9, label)]
    name = dataset.name
    dataset.delete()  # as good as a fresh database: the log lives outside it
    rebuilt = get_dataset(name)
    ingest(rebuilt)
    assert by_index(split_view(rebuilt, "test"), 9).ground_truth.label != label  # the source's label, until reviewed
    review_split(split_view(rebuilt, "test"), "test", log, DIGITS)
    assert by_index(split_view(rebuilt, "test"), 9).ground_truth.label == label


def test_review_queue_drops_a_sample_the_moment_someone_acts(test_split):
    dataset, log, _ = test_split
    view = split_view(dataset, "test")
    queue = undecided(view)
    assert len(queue) == 40
    view.select([by_index(view, 1).id]).tag_samples("review:ok")
    sample = by_index(view, 2)
    sample.ground_truth.label = str((int(sample.ground_truth.label) + 1) % 10)
    sample.save()
    assert len(undecided(split_view(dataset, "test"))) == 38  # before any review ran
    review_split(split_view(dataset, "test"), "test", log, DIGITS)
    assert len(undecided(split_view(dataset, "test"))) == 38


def test_an_image_flagged_by_data_issues_enters_the_review_queue_and_exclude_takes_it_out(test_split):
    """The queue holds the label candidates and every sample data_issues flags, highest review priority
    first; `review:exclude` on a flagged image takes it out of the queue and out of the labels in use."""
    import fiftyone as fo

    from mnist_assets.ml.decisions import review_queue
    from mnist_assets.ml.store.fiftyone_store import declare_field, write_floats

    dataset, log, _ = test_split
    view = split_view(dataset, "test")
    ids = view.values("id")
    write_floats(view, {"review_priority": np.linspace(1, 0, len(ids))}, ids)
    assert len(review_queue(view, ids[:3])) == 3  # before data_issues ever ran: the label candidates
    declare_field(dataset, "data_issues", fo.ListField, subfield=fo.StringField)
    flagged = {ids[30]: ["dark"], ids[35]: ["outlier", "blurry"]}
    for sample in view.select(list(flagged)):
        sample["data_issues"] = flagged[sample.id]
        sample.save()
    queue = review_queue(split_view(dataset, "test"), ids[:3])
    assert queue.values("id") == [*ids[:3], ids[30], ids[35]]  # by review priority
    split_view(dataset, "test").select([ids[30]]).tag_samples("review:exclude")
    assert ids[30] not in review_queue(split_view(dataset, "test"), ids[:3]).values("id")
    review_split(split_view(dataset, "test"), "test", log, DIGITS)
    assert ids[30] not in usable_view(dataset, "test").values("id") and len(usable_view(dataset, "test")) == 39


def test_the_review_order_puts_validation_first_and_drops_a_decided_sample(test_split, mnist):
    """`review-queue`: every split's queue one after another, validation's first (its labels choose
    every model's state and release), then train's, then test's; a query, like each queue."""
    from mnist_assets.ml.decisions import review_order, review_queue
    from mnist_assets.ml.store.fiftyone_store import save_view, write_floats

    dataset, _, _ = test_split
    train_images, train_labels = mnist.train_images[:20], mnist.train_labels[:20]
    for split, indices in (("train", np.arange(10)), ("validation", np.arange(10, 20))):
        paths = [f"/data/train/{i:05d}.png" for i in indices]
        sync_split(dataset, split, paths, train_labels[indices], indices, pixel_hashes(train_images[indices]), DIGITS)
    queued = {}
    for split in ("test", "train", "validation"):  # saved in any order: the order is the splits'
        view = split_view(dataset, split)
        ids = view.values("id")
        write_floats(view, {"review_priority": np.linspace(0.1, 0.9, len(ids))}, ids)
        queued[split] = ids[-3:][::-1]  # the three highest priorities, highest first
        save_view(dataset, f"review-queue-{split}", review_queue(view, ids[-3:]))
        save_view(dataset, "review-queue", review_order)
        assert dataset.load_saved_view("review-queue").values("id")[:3] == queued["validation" if "validation" in queued else split]
    assert dataset.load_saved_view("review-queue").values("id") == queued["validation"] + queued["train"] + queued["test"]
    split_view(dataset, "validation").select(queued["validation"][:1]).tag_samples("review:ok")
    assert dataset.load_saved_view("review-queue").values("id") == queued["validation"][1:] + queued["train"] + queued["test"]


def test_a_changed_image_makes_its_decision_stale(test_split, mnist):
    dataset, log, _ = test_split
    sample = by_index(split_view(dataset, "test"), 11)
    log.append([Decision("test", 11, "not-these-pixels", "relabel", "0", None, sample.ground_truth.label, "t", "python")])
    result = review_split(split_view(dataset, "test"), "test", log, DIGITS)
    assert len(result.plan.stale) == 1 and by_index(split_view(dataset, "test"), 11).ground_truth.label == str(mnist.test_labels[11])


SOURCES = {"test": {947: ("h947", "8"), 3: ("h3", "0")}, "train": {}, "validation": {}}


def test_a_decision_file_is_checked_row_by_row(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("# a comment\nsource_index,decision,label\n947,relabel,9\n3,exclude,\n")
    rows = read_decision_file(good, default_split="test")
    decisions = decisions_from_rows(rows, "file:good.csv", SOURCES, DIGITS)
    assert [(d.source_index, d.decision, d.label, d.image_hash, d.original_label, d.via) for d in decisions] == [
        (947, "relabel", "9", "h947", "8", "file:good.csv:3"),
        (3, "exclude", None, "h3", "0", "file:good.csv:4"),
    ]

    bad = tmp_path / "bad.csv"
    bad.write_text(
        "split,source_index,decision,label\ntest,947,relabel,nine\ntest,99999,confirm,\ntest,3,erase,\n"
        "test,3,exclude,4\nsplit9,3,confirm,\ntest,x,confirm,\ntest,947,confirm,\n"
    )
    with pytest.raises(DecisionError) as refused:
        decisions_from_rows(read_decision_file(bad), "file:bad.csv", SOURCES, DIGITS)
    message = str(refused.value)
    assert message.startswith("6 of 7 decisions refused, none recorded")
    for expected in (
        "line 2: relabel needs a declared class",
        "line 3: no test sample has source_index 99999",
        "line 4: decision 'erase'",
        "line 5: exclude takes no label",
        "line 6: split 'split9'",
        "line 7: source_index 'x'",
    ):
        assert expected in message


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("d.json", '[{"source_index": 3,', "is not valid JSON"),
        ("d.json", '{"source_index": 3}', "expected a JSON list"),
        ("d.csv", "label,decision\n3,exclude\n", "the header lacks ['source_index']"),
        ("d.csv", "# only a comment\n", "holds no decisions"),
        ("d.txt", "source_index,decision\n", "decision files are .csv or .json"),
    ],
)
def test_malformed_decision_files_are_refused_with_the_fix(tmp_path, name, text, expected):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DecisionError) as refused:
        read_decision_file(path)
    assert expected in str(refused.value)


def test_json_decision_files_read_like_csv(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([{"split": "test", "source_index": 947, "decision": "relabel", "label": "9"}]))
    assert [d.label for d in decisions_from_rows(read_decision_file(path), "file:d.json", SOURCES, DIGITS)] == ["9"]


def _append_many(folder: str, worker: int, count: int) -> None:
    log = DecisionLog(folder)
    for i in range(count):
        log.append([Decision("test", worker * 1000 + i, "h", "exclude", None, "1", "1", "t", f"python:{worker}")])


def test_concurrent_appends_lose_no_decision(tmp_path):
    """Separate processes appending at once (the asset, the CLI, an ingest): every decision stays."""
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(str(tmp_path), w, 25)) for w in range(3)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(120)
        assert process.exitcode == 0
    decisions = DecisionLog(tmp_path).history()
    assert sorted(d.source_index for d in decisions) == sorted(w * 1000 + i for w in range(3) for i in range(25))


def test_a_damaged_log_line_is_named(tmp_path):
    (tmp_path / "decisions.jsonl").write_text('{"split": "test"}\n')  # the log as earlier versions wrote it
    with pytest.raises(DecisionError, match="decisions.jsonl line 1 is not a decision"):
        DecisionLog(tmp_path).read()


def test_split_samples_read_one_query(test_split):
    dataset, _, _ = test_split
    samples = SplitSamples.read(split_view(dataset, "test"))
    assert len(samples.ids) == 40 and samples.source_index == list(range(40)) and samples.label == samples.original
    assert collect(samples, "test", {}, DIGITS).new == []


# --- A log no pause can lose ---------------------------------------------------------------------


def _append_after_a_stop(folder: str, ready, index: int) -> None:
    """Append one decision, stopping this process (SIGSTOP, as Ctrl-Z does) just before the write
    becomes visible: after it prepared its data, while others go on writing."""
    import os
    import signal

    def stop_then(real):
        def call(*args, **kwargs):
            if not ready.is_set():  # once: the retry after another writer took its number goes on
                ready.set()
                os.kill(os.getpid(), signal.SIGSTOP)
            return real(*args, **kwargs)

        return call

    os.link, os.replace = stop_then(os.link), stop_then(os.replace)
    DecisionLog(folder).append([Decision("test", index, "h", "exclude", None, "1", "1", "t", "python:stopped")])


def test_a_writer_stopped_mid_append_loses_no_one_elses_decision(tmp_path):
    """Issue 33, item 3: import A stopped for longer than any lease while B records a decision; A
    resumes: both decisions are in the log (the old log renamed A's stale copy over B's)."""
    import os
    import signal
    import time

    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    stopped = context.Process(target=_append_after_a_stop, args=(str(tmp_path), ready, 1))
    stopped.start()
    assert ready.wait(120)
    DecisionLog(tmp_path).append([Decision("test", 2, "h", "relabel", "7", "1", "1", "t", "python:meanwhile")])
    time.sleep(3.0)  # stopped a while longer: what it holds in memory is stale now
    os.kill(stopped.pid, signal.SIGCONT)
    stopped.join(60)
    assert stopped.exitcode == 0
    history = DecisionLog(tmp_path).history()
    assert sorted((d.source_index, d.via) for d in history) == [(1, "python:stopped"), (2, "python:meanwhile")]
    assert [d.source_index for d in history] == [2, 1]  # in the order they landed
    assert not [p for p in (tmp_path / "log").iterdir() if p.name.startswith(".")]  # no temporary file left


def test_a_long_log_reads_folded_with_the_whole_history_kept(tmp_path, monkeypatch):
    """Superseded decisions are folded into a cache, so reading stays fast as the history grows;
    the state is the same as folding every decision, and nothing of the history is lost."""
    from mnist_assets.ml.decisions import log as log_module
    from mnist_assets.ml.decisions.model import superseded_removed

    monkeypatch.setattr(log_module, "REFOLD_AFTER", 50)
    (tmp_path / "decisions.jsonl").write_text(
        "".join(decision("relabel", str(i % 10), index=i).to_json() + "\n" for i in range(20))  # the old single file, read first
    )
    log = DecisionLog(tmp_path)
    rng = np.random.default_rng(0)
    for round_ in range(12):
        batch = []
        for _ in range(30):
            index, kind = int(rng.integers(0, 25)), str(rng.choice(["relabel", "exclude", "confirm"]))
            image_hash = str(rng.choice(["h", "h2"]))
            via = str(rng.choice(["app", "tag:review:exclude", "tag:relabel:4", f"file:f.csv:{round_}"]))
            batch.append(decision(kind, str(rng.integers(0, 10)) if kind == "relabel" else None, image_hash, via, index))
        log.append(batch)
    history = log.history()
    assert len(history) == 20 + 12 * 30 and (tmp_path / "folded.json").exists() is False
    folded = log.by_key()
    assert (tmp_path / "folded.json").exists()  # more than REFOLD_AFTER new decisions: the reader folded them
    assert sum(map(len, folded.values())) < len(history)
    by_key = {}
    for d in history:
        by_key.setdefault(d.key, []).append(d)
    for key, decisions in by_key.items():
        assert folded[key] == superseded_removed(decisions)
        for image_hash in ("h", "h2", "other"):
            assert fold(folded[key], "3", image_hash)[0] == fold(decisions, "3", image_hash)[0]
    # From the cache plus a new segment, and after losing the cache: the same state.
    log.append([decision("exclude", index=3, via="python:late")])
    again = DecisionLog(tmp_path).by_key()
    assert again[("test", 3)][-1].via == "python:late"
    (tmp_path / "folded.json").unlink()
    assert DecisionLog(tmp_path).by_key() == again
    assert len(DecisionLog(tmp_path).history()) == len(history) + 1


def test_temporary_files_of_a_killed_writer_are_removed(tmp_path):
    import socket
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    (tmp_path / "log").mkdir()
    leftover = tmp_path / "log" / f".0000000001.jsonl~{socket.gethostname()}~{dead}~abcd1234.tmp"
    leftover.write_text("half a decision")
    DecisionLog(tmp_path).append([decision("confirm")])
    assert not leftover.exists() and len(DecisionLog(tmp_path).history()) == 1


# --- Decision files that cannot hit the wrong sample ------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        # A column the reader does not know once sent a train decision to test sample 947.
        ("source_index,decision,label,Split\n947,relabel,9,train\n", "unknown column(s) ['Split']"),
        ("source_index,decision,label\n947,relabel,9,train\n", "line 2: 4 fields for 3 columns"),
        ("source_index,decision,label,label\n947,relabel,9,9\n", "appear more than once"),
        (
            "source_index,decision,label\n947,relabel,9\n3,exclude,\n947,confirm,\n",
            "lines 2, 4: they decide the test sample 947 differently",
        ),
        ('source_index,decision,label,note\n947,relabel,9,"never closed\n', "line 2: a quoted field is never closed"),
    ],
)
def test_a_decision_file_that_could_hit_the_wrong_sample_is_refused(tmp_path, text, expected):
    path = tmp_path / "d.csv"
    path.write_text(text)
    with pytest.raises(DecisionError) as refused:
        decisions_from_rows(read_decision_file(path, default_split="test"), "file:d.csv", SOURCES, DIGITS)
    assert expected in str(refused.value)


def test_excel_files_notes_and_line_numbers(tmp_path):
    path = tmp_path / "excel.csv"
    text = 'source_index,decision,label,note\n947,relabel,9,"looks like a 9,\nsee the loop"\n# a comment\n3,exclude,,\n'
    path.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())  # Excel: a BOM and CRLF
    decisions = decisions_from_rows(read_decision_file(path, default_split="test"), "file:excel.csv", SOURCES, DIGITS)
    assert [(d.source_index, d.via, d.note) for d in decisions] == [
        (947, "file:excel.csv:2", "looks like a 9,\nsee the loop"),
        (3, "file:excel.csv:5", None),  # line 5: the note took two lines
    ]
    log = DecisionLog(tmp_path / "reviews")
    log.append(decisions)
    assert [d.note for d in DecisionLog(tmp_path / "reviews").history()] == ["looks like a 9,\nsee the loop", None]
    assert '"note"' not in (tmp_path / "reviews" / "log" / "0000000001.jsonl").read_text().splitlines()[1]  # no note: as before


def test_unreadable_decision_files_are_one_line_errors(tmp_path):
    import os

    latin = tmp_path / "latin.csv"
    latin.write_bytes("source_index,decision,label,note\n947,relabel,9,café\n".encode("latin-1"))
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    unknown_key = tmp_path / "keys.json"
    unknown_key.write_text(json.dumps([{"source_index": 947, "decision": "relabel", "label": "9", "Split": "train"}]))
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)  # never read: the suffix is checked first (reading a FIFO would hang)
    fifo_csv = tmp_path / "pipe.csv"
    os.mkfifo(fifo_csv)
    for path, expected in [
        (latin, "latin.csv is not UTF-8 text (byte 0xe9"),
        (deep, "deep.json nests too deeply"),
        (unknown_key, "object 1: unknown key(s) ['Split']"),
        (fifo, "decision files are .csv or .json"),
        (fifo_csv, "pipe.csv is not a regular file"),
    ]:
        with pytest.raises(DecisionError) as refused:
            read_decision_file(path)
        assert expected in str(refused.value)
    with pytest.raises(DecisionError, match=r"python line 1: unknown key\(s\) \['Split'\]"):
        decisions_from_rows(
            [(1, {"split": "test", "source_index": 947, "decision": "confirm", "Split": "train"})], "python", SOURCES, DIGITS
        )


def test_the_yield_of_recent_decisions_counts_each_sample_once_latest_first():
    from mnist_assets.ml.decisions import recent_yield

    def made(index, kind, at, label=None, split="train"):
        return Decision(split, index, "h", kind, label, "1", "1", f"2026-12-0{at}T00:00:00+00:00", "app")

    log = {
        ("train", 1): [made(1, "relabel", 1, "7"), made(1, "confirm", 5)],  # relabelled, then confirmed: counts as the confirm
        ("train", 2): [made(2, "relabel", 2, "3")],
        ("train", 3): [made(3, "exclude", 3)],
        ("train", 4): [made(4, "relabel", 4, "9", split="validation")],  # another split
    }
    assert recent_yield(log, "train") == {"reviewed": 3, "relabelled": 1, "yield": 1 / 3}
    assert recent_yield(log, "train", count=1) == {"reviewed": 1, "relabelled": 0, "yield": 0.0}  # the latest: the confirm
    assert recent_yield({}, "test")["yield"] is None


# --- Bad inputs, refused in one line (issue 44) ---------------------------------------------------


def test_segment_numbers_outgrow_ten_digits_and_still_read_back(tmp_path):
    """A stray 9999999999.jsonl once made the next append write 10000000000.jsonl, which the reader
    (ten digits) never saw, and the append after it loop on that name forever."""
    log = DecisionLog(tmp_path)
    log.append([decision("exclude", index=5)])
    (tmp_path / "log" / "9999999999.jsonl").write_text("")
    log.append([decision("exclude", index=6)])
    assert [d.source_index for d in log.history()] == [5, 6]
    log.append([decision("exclude", index=7)])
    assert [d.source_index for d in DecisionLog(tmp_path).history()] == [5, 6, 7]
    assert sorted(p.name for p in (tmp_path / "log").iterdir()) == [
        "0000000001.jsonl",  # as earlier versions named them: read the same
        "10000000000.jsonl",
        "10000000001.jsonl",
        "9999999999.jsonl",
    ]
    assert [(d.key, d.source_index) for d in DecisionLog(tmp_path).read()] == [(("test", 5), 5), (("test", 6), 6), (("test", 7), 7)]


def test_an_append_that_finds_no_free_number_gives_up_naming_the_log(tmp_path, monkeypatch):
    from mnist_assets.ml.decisions import log as log_module

    tried = []

    def always_taken(path, data):
        tried.append(path.name)
        if len(tried) > 1000:
            raise AssertionError("append loops on taken names")
        return False

    monkeypatch.setattr(log_module, "write_new_file", always_taken)
    with pytest.raises(DecisionError, match=r"no free segment number in the review log .*log after 100 tries, nothing recorded"):
        DecisionLog(tmp_path).append([decision("exclude")])
    assert tried == [f"{n:010d}.jsonl" for n in range(1, 101)]  # never the same name twice, though the listing shows none


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda log: (log / "notes.txt").write_text("x"), "notes.txt is not a segment of the review log (its name is not <number>.jsonl)"),
        (lambda log: (log / "0000000002.jsonl.bak").write_text(""), "0000000002.jsonl.bak is not a segment"),
        (lambda log: (log / "0000000003.jsonl").mkdir(), "0000000003.jsonl is not a segment of the review log (a folder)"),
        (
            lambda log: (log / "0000000004.jsonl").symlink_to(log / "gone"),
            "0000000004.jsonl is not a segment of the review log (not a regular",
        ),
    ],
    ids=["a file", "a backup", "a folder named like a segment", "a link to nothing"],
)
def test_anything_in_the_log_folder_but_segments_is_named(tmp_path, make, expected):
    log = DecisionLog(tmp_path)
    log.append([decision("exclude", index=5)])
    (tmp_path / "log" / ".0000000009.jsonl~otherhost~1~abcd1234.tmp").write_text("")  # a writer's, mid-append: fine
    assert len(log.history()) == 1
    make(tmp_path / "log")
    for read in (log.history, log.read, log.signature, lambda: log.append([decision("exclude", index=6)])):
        with pytest.raises(DecisionError) as refused:
            read()
        message = str(refused.value)
        assert expected in message and message.endswith("holds only segments: move it out of there.") and "\n" not in message
    assert sorted(p.name for p in (tmp_path / "log").glob("0*.jsonl") if p.is_file()) == ["0000000001.jsonl"]  # nothing added


def test_a_log_folder_that_is_a_file_is_named(tmp_path):
    (tmp_path / "log").write_text("")
    with pytest.raises(DecisionError, match=r"log is not a folder, but the review log keeps its segments there; move that file out"):
        DecisionLog(tmp_path).read()


@pytest.mark.parametrize(
    "line, expected",
    [
        (
            decision("exclude").to_json().replace('"split": "test"', '"split": "tset"'),
            "line 2 is not a decision (split 'tset' is not one of",
        ),
        (decision("exclude").to_json().replace('"exclude"', '"exclud"'), "line 2 is not a decision (decision 'exclud' is not one of"),
    ],
)
def test_a_log_line_with_an_unknown_split_or_decision_is_named(tmp_path, line, expected):
    """An unknown split was a KeyError in by_key; an unknown decision was folded as an exclusion."""
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "0000000001.jsonl").write_text(decision("confirm").to_json() + "\n" + line + "\n")
    for read in (DecisionLog(tmp_path).read, DecisionLog(tmp_path).history):
        with pytest.raises(DecisionError, match="0000000001.jsonl " + re.escape(expected)):
            read()


def test_a_log_segment_that_is_not_utf8_is_named(tmp_path):
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "0000000001.jsonl").write_bytes(b'{"note": "caf\xe9"}\n')
    with pytest.raises(DecisionError, match=r"0000000001.jsonl is not UTF-8 text \(byte 13\), so not a segment of the review log"):
        DecisionLog(tmp_path).history()


@pytest.mark.parametrize(
    "error, expected",
    [
        (
            PermissionError(errno.EACCES, "Permission denied"),
            "is not writable (Permission denied), nothing recorded; give this user write access",
        ),
        (OSError(errno.EROFS, "Read-only file system"), "is not writable (Read-only file system), nothing recorded"),
        (OSError(errno.ENOSPC, "No space left on device"), "No space left on device), nothing recorded; fix that and run it again."),
    ],
)
def test_a_log_that_cannot_be_written_is_a_one_line_error(tmp_path, monkeypatch, error, expected):
    from mnist_assets.ml.core import files

    def fails(*args, **kwargs):
        raise error

    monkeypatch.setattr(files, "write_synced", fails)
    with pytest.raises(DecisionError) as refused:
        DecisionLog(tmp_path).append([decision("exclude")])
    assert expected in str(refused.value) and str(tmp_path / "log") in str(refused.value)
    assert DecisionLog(tmp_path).history() == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes a read-only folder anyway (the test above covers the path)")
def test_a_read_only_log_folder_is_a_one_line_error(tmp_path):
    (tmp_path / "log").mkdir()
    (tmp_path / "log").chmod(0o500)
    try:
        with pytest.raises(DecisionError, match="is not writable"):
            DecisionLog(tmp_path).append([decision("exclude")])
    finally:
        (tmp_path / "log").chmod(0o700)


def test_a_json_number_label_is_the_class_of_that_name(tmp_path):
    """`"label": 0` was read as no label at all (0 is falsy): a relabel to "0" was refused, an exclude taken."""
    path = tmp_path / "d.json"
    path.write_text(json.dumps([{"split": "test", "source_index": 947, "decision": "relabel", "label": 0}]))
    assert [d.label for d in decisions_from_rows(read_decision_file(path), "file:d.json", SOURCES, DIGITS)] == ["0"]
    with pytest.raises(DecisionError, match=r"line 1: label 0 is a number and no class is named '0'; write one of T-shirt, Trouser\."):
        decisions_from_rows(read_decision_file(path), "file:d.json", SOURCES, ["T-shirt", "Trouser"])
    path.write_text(json.dumps([{"split": "test", "source_index": 3, "decision": "exclude", "label": 0}]))
    with pytest.raises(DecisionError, match=r"line 1: exclude takes no label \(got '0'\)"):
        decisions_from_rows(read_decision_file(path), "file:d.json", SOURCES, DIGITS)
    csv_path = tmp_path / "d.csv"  # CSV is text: "0" always was the class "0"
    csv_path.write_text("split,source_index,decision,label\ntest,947,relabel,0\n")
    assert [d.label for d in decisions_from_rows(read_decision_file(csv_path), "file:d.csv", SOURCES, DIGITS)] == ["0"]


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "source_index,decision,label,note\n947,relabel,9," + "x" * 140_000 + "\n",
            "line 2: a field is longer than the 131,072 characters",
        ),
        (
            'source_index,decision,label,note\n947,relabel,9,a"b\nc"\n',
            "line 2: a field with a quote inside spans lines; quote the whole field",
        ),
    ],
)
def test_a_csv_record_the_csv_module_refuses_is_named(tmp_path, text, expected):
    path = tmp_path / "d.csv"
    path.write_text(text)
    with pytest.raises(DecisionError) as refused:
        read_decision_file(path, default_split="test")
    assert f"{path} {expected}" in str(refused.value) and "\n" not in str(refused.value)


def test_a_decision_file_that_cannot_be_read_is_named(tmp_path, monkeypatch):
    import pathlib

    path = tmp_path / "d.csv"
    path.write_text("source_index,decision,label\n947,relabel,9\n")

    def denied(self):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(pathlib.Path, "read_bytes", denied)
    with pytest.raises(
        DecisionError, match=r"cannot read the decision file .*d.csv \(Permission denied\); give this user read access to it"
    ):
        read_decision_file(path)


@pytest.mark.parametrize("case", ["read-only log", "folder segment", "unknown split", "long field", "not UTF-8"])
def test_review_import_refuses_bad_inputs_in_one_line(tmp_path, monkeypatch, capsys, case):
    """`python -m mnist_assets.review import` printed a traceback for each of these."""
    from mnist_assets import review
    from mnist_assets.ml.core import files
    from mnist_assets.resources import Settings

    monkeypatch.setenv("MNIST_ASSETS_HOME", str(tmp_path / "home"))
    log = Settings.from_env().store("mnist").decision_log()
    log.append([decision("exclude", index=3)])
    segments, path = log.path / "log", tmp_path / "d.csv"
    path.write_text("source_index,decision,label\n947,relabel,9\n")
    if case == "read-only log":

        def refused(*args, **kwargs):
            raise PermissionError(errno.EACCES, "Permission denied")

        monkeypatch.setattr(files, "write_synced", refused)
        expected = f"the review log {segments} is not writable (Permission denied), nothing recorded; give this user write access"
    elif case == "folder segment":
        (segments / "0000000002.jsonl").mkdir()
        expected = "0000000002.jsonl is not a segment of the review log (a folder)"
    elif case == "unknown split":
        (segments / "0000000002.jsonl").write_text(decision("exclude", index=4).to_json().replace('"test"', '"tset"') + "\n")
        expected = "0000000002.jsonl line 1 is not a decision (split 'tset' is not one of train, validation, test)"
    elif case == "long field":
        path.write_text("source_index,decision,label,note\n947,relabel,9," + "x" * 140_000 + "\n")
        expected = f"{path} line 2: a field is longer than the 131,072 characters csv reads; shorten it."
    else:
        path.write_bytes("source_index,decision,label,note\n947,relabel,9,café\n".encode("latin-1"))
        expected = f"{path} is not UTF-8 text (byte 0xe9"
    before = sorted(p.name for p in segments.iterdir())
    assert review.main(["import", str(path), "--dataset", "mnist", "--split", "test", "--no-apply"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and expected in err and err.count("\n") == 1
    assert sorted(p.name for p in segments.iterdir()) == before  # nothing recorded
