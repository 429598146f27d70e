"""Images read right or refused by name, one conversion for ingest and predict, releases that cannot
be used refused in one line, and a release folder that switches as one unit (issue 33, items 1, 2, 5)."""

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from processes import REPO

from mnist_assets.ml.data.image_conversion import Conversion, ImageConversionError, convert_image, pad, read_image

MNIST_LIKE = Conversion(32, 1, "pad", source_size=28, background=0)
FOLDER_LIKE = Conversion(32, 3, "bilinear", background=255)


def digit(size=28) -> np.ndarray:
    """A white bar on black, off centre: orientation and position show."""
    image = np.zeros((size, size), np.uint8)
    image[4 : size // 2, 6:9] = 255
    return image


# --- One conversion for ingest and predict ---------------------------------------------------------


def test_the_idx_conversion_centres_as_ingest_and_resizes_other_sizes_first(tmp_path):
    from mnist_assets.ml.data.dataset_spec import DatasetSpec
    from mnist_assets.ml.data.sources import centred

    spec = DatasetSpec(name="fashion_mnist", source="fashion-mnist", image_size=32)
    assert spec.conversion() == MNIST_LIKE
    images = np.stack([digit(), 255 - digit()])
    ingested = centred(images, spec)  # what raw_dataset stores
    path = tmp_path / "d.png"
    Image.fromarray(images[0]).save(path)
    assert np.array_equal(convert_image(path, spec.conversion()), ingested[0])  # a 28x28 file: exactly the ingested pixels
    big = tmp_path / "big.png"
    Image.fromarray(images[0]).resize((56, 56), Image.Resampling.NEAREST).save(big)
    converted = convert_image(big, spec.conversion())  # resized to 28 first, then centred: the digit keeps its frame
    assert converted.shape == (32, 32) and not converted[:2].any() and not converted[:, -2:].any()
    assert np.abs(converted.astype(int) - ingested[0]).mean() < 8
    # The old conversion stretched the 28 pixels over 32: far from what the model saw.
    stretched = np.asarray(Image.fromarray(images[0]).resize((32, 32), Image.Resampling.BILINEAR))
    assert (np.abs(stretched.astype(int) - ingested[0]) > 64).mean() > 4 * (np.abs(converted.astype(int) - ingested[0]) > 64).mean()
    assert pad(np.zeros((2, 4, 4, 3), np.uint8), 8, 9).shape == (2, 8, 8, 3)


# --- Files read right, or refused by name ----------------------------------------------------------


def test_sixteen_bit_and_float_images_are_scaled_not_saturated_or_zeroed(tmp_path):
    sixteen = tmp_path / "sixteen.png"
    Image.fromarray(digit().astype(np.uint16) * 257).save(sixteen)  # 0..65535
    assert Image.open(sixteen).mode.startswith("I")
    assert np.array_equal(read_image(sixteen, 1), digit())
    for name, scale in (("unit.tiff", 1 / 255), ("bytes.tiff", 1.0)):
        path = tmp_path / name
        Image.fromarray(digit().astype(np.float32) * scale, mode="F").save(path)
        assert np.array_equal(read_image(path, 1), digit()), name
    odd = tmp_path / "odd.tiff"
    Image.fromarray(np.full((8, 8), 1000.0, np.float32), mode="F").save(odd)
    with pytest.raises(ImageConversionError, match=r"odd.tiff is a float image with values in \[1000, 1000\]"):
        read_image(odd, 1)


def test_a_drawing_in_the_alpha_channel_and_transparency_are_composited(tmp_path):
    strokes = np.zeros((28, 28, 4), np.uint8)  # black ink, shape only in alpha: what drawing apps save
    strokes[..., 3] = digit()
    drawn = tmp_path / "drawn.png"
    Image.fromarray(strokes, "RGBA").save(drawn)
    assert np.array_equal(read_image(drawn, 1, background=0), digit())  # MNIST: white strokes on black, not blank
    assert np.array_equal(read_image(drawn, 1, background=255), 255 - digit())  # a folder: black on white
    half = np.zeros((4, 4, 4), np.uint8)
    half[..., 0], half[..., 3] = 200, 128  # red at half opacity over white
    path = tmp_path / "half.png"
    Image.fromarray(half, "RGBA").save(path)
    assert read_image(path, 3, background=255)[0, 0].tolist() == [227, 127, 127]


def test_exif_rotated_jpeg_stands_upright(tmp_path):
    upright = np.zeros((40, 20, 3), np.uint8)  # portrait: 40 high
    upright[:10] = 255  # white at the top
    stored = Image.fromarray(np.rot90(upright, k=1).copy())  # as a camera stores it: landscape plus an EXIF turn
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: turn 90 degrees clockwise to view
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif, quality=95)
    read = read_image(path, 3)
    assert read.shape == (40, 20, 3) and read[:10].mean() > 200 and read[20:].mean() < 50


def png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that claims width x height (a decompression bomb's header), no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_bombs_pipes_and_folders_are_refused_by_name(tmp_path):
    bomb, large = tmp_path / "bomb.png", tmp_path / "large.png"
    png_header_only(bomb, 20000, 20000)
    with pytest.raises(ImageConversionError, match=r"bomb.png is too large to decode safely \(Image size \(400000000 pixels\)"):
        read_image(bomb, 1)
    png_header_only(large, 8000, 8000)  # below Pillow's own limit, far above what a model needs
    with pytest.raises(ImageConversionError, match=r"large.png is 8000 x 8000 pixels, more than 50,000,000: refused"):
        read_image(large, 1)
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # opening it would wait for a writer forever
    with pytest.raises(ImageConversionError, match="pipe.png is not a regular file"):
        read_image(fifo, 1)
    with pytest.raises(ImageConversionError, match="is not a regular file"):
        read_image(tmp_path, 1)
    with pytest.raises(ImageConversionError, match="missing.png cannot be read"):
        read_image(tmp_path / "missing.png", 1)


def test_a_folder_ingest_names_the_bomb(tmp_path):
    """A bomb is left out and reported like any unreadable file; `strict: true` refuses the ingest."""
    from mnist_assets.ml.data.folder_source import FolderSourceError, load_folder

    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        Image.fromarray(digit()).save(tmp_path / name / "a.png")
    png_header_only(tmp_path / "dog" / "bomb.png", 20000, 20000)
    images, _ = load_folder(tmp_path, ["cat", "dog"], FOLDER_LIKE)
    assert len(images.labels) == 2
    assert [name for name, _ in images.unreadable] == ["dog/bomb.png"]
    assert "too large to decode safely" in images.unreadable[0][1]
    with pytest.raises(FolderSourceError, match=r"dog/bomb.png is too large to decode safely"):
        load_folder(tmp_path, ["cat", "dog"], FOLDER_LIKE, strict=True)


# --- predict: a release that cannot be used is one line, each file answered ---------------------------


def export_release(folder: Path, conversion: Conversion = MNIST_LIKE, **overrides) -> Path:
    """A LeNet-5 (random weights) exported as model_release exports, with its metadata."""
    import torch

    from mnist_assets.ml.models.architectures import build_model
    from mnist_assets.ml.release import export as release

    torch.manual_seed(0)
    model = release.Probabilities(
        [build_model("lenet5", 0, num_classes=10, in_channels=conversion.channels, image_size=conversion.size)], 0.2, 0.3
    )
    properties = {"dataset": "fashion_mnist", "model": "lenet_checkpoint", "classes": json.dumps([str(d) for d in range(10)])}
    properties.update(conversion.metadata())
    properties.update(overrides)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    path.write_bytes(
        release.export_onnx(model, conversion.channels, conversion.size, {k: v for k, v in properties.items() if v is not None})
    )
    return path


def predict(*arguments, home: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **({"MNIST_ASSETS_HOME": str(home)} if home else {})}
    return subprocess.run(
        [sys.executable, "-m", "mnist_assets.predict", *map(str, arguments)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def one_line_error(done: subprocess.CompletedProcess, expected: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert expected in done.stderr, done.stderr


def test_unusable_releases_and_arguments_are_one_line_each(tmp_path):
    good = export_release(tmp_path / "good")
    image = tmp_path / "d.png"
    Image.fromarray(digit()).save(image)
    truncated, empty, text = tmp_path / "truncated.onnx", tmp_path / "empty.onnx", tmp_path / "text.onnx"
    truncated.write_bytes(good.read_bytes()[:2000])
    empty.write_bytes(b"")
    text.write_text("not a model")
    for path in (truncated, empty, text):
        one_line_error(predict("--model", path, image), f"{path} is not a readable ONNX model")
    one_line_error(predict("--model", export_release(tmp_path / "bare", classes=None), image), "lacks the release metadata ['classes']")
    one_line_error(predict("--model", export_release(tmp_path / "badjson", classes="[0, 1"), image), "malformed release metadata")
    one_line_error(
        predict("--model", export_release(tmp_path / "huge", image_size="100000"), image), "image_size 100000 and channels 1 are outside"
    )
    one_line_error(predict("--model", export_release(tmp_path / "shape", image_size="64", resize="bilinear"), image), "takes tensor(uint8)")
    one_line_error(predict("--dataset", "../defs/mnist", image), "is not a dataset name")
    # A release copied under another dataset's name answers for that dataset's classes: refused.
    home = tmp_path / "home"
    export_release(home / "datasets" / "mnist" / "release")
    one_line_error(predict("--dataset", "mnist", image, home=home), "is the release of 'fashion_mnist', not of 'mnist'")
    for top in ("0", "-1", "x"):
        done = predict("--model", good, "--top", top, image)
        assert done.returncode == 2 and "argument --top" in done.stderr and "Traceback" not in done.stderr


def test_a_bomb_a_pipe_and_a_good_file_in_one_call_are_each_answered(tmp_path):
    model = export_release(tmp_path / "release")
    good, bomb, fifo = tmp_path / "d.png", tmp_path / "bomb.png", tmp_path / "pipe.png"
    Image.fromarray(digit()).save(good)
    png_header_only(bomb, 20000, 20000)
    os.mkfifo(fifo)
    done = predict("--model", model, "--json", "--top", "20", bomb, good, fifo)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    first, second, third = json.loads(done.stdout)
    assert "bomb.png is too large to decode safely" in first["error"] and "pipe.png is not a regular file" in third["error"]
    assert second["label"] in [str(d) for d in range(10)] and len(second["top"]) == 10  # --top beyond the classes: all of them


# --- The release folder: one unit, every release kept ------------------------------------------------


def test_a_release_switches_as_one_unit_and_every_release_is_kept(tmp_path, monkeypatch):
    from mnist_assets.ml.release import folder as release_folder

    folder = tmp_path / "release"
    folder.mkdir()
    for name, data in (("model.onnx", b"old model"), ("model_card.json", b'{"model": "old"}'), ("model_card.md", b"old card")):
        (folder / name).write_bytes(data)  # the layout before versions: plain files
    (folder / "model-0123.onnx").write_bytes(b"old model")
    assert release_folder.current(folder) == folder

    def card(model):
        return {"model": model, "candidates": [{"model": model, "validation_accuracy": 0.9}], "released_at": "now"}

    release_folder.promote(folder, "v1", b"model one", card("one"), "card one")
    assert (folder / "model.onnx").read_bytes() == b"model one" and json.loads((folder / "model_card.json").read_text())["model"] == "one"
    assert (folder / "versions" / "legacy" / "model.onnx").read_bytes() == b"old model" and not list(folder.glob("model-*.onnx"))
    # A crash at the switch: the previous release stays whole (model and card of one release).
    real_replace = os.replace

    def crash_at_the_switch(source, target):
        if Path(target).name == "current":
            raise OSError("power cut")
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", crash_at_the_switch)
    with pytest.raises(OSError, match="power cut"):
        release_folder.promote(folder, "v2", b"model two", card("two"), "card two")
    monkeypatch.setattr(os, "replace", real_replace)
    assert [(folder / n).read_bytes() for n in ("model.onnx", "model_card.md")] == [b"model one", b"card one"]
    release_folder.promote(folder, "v3", b"model three", card("three"), "card three")
    assert [(folder / n).read_bytes() for n in ("model.onnx", "model_card.md")] == [b"model three", b"card three"]
    rows = release_folder.list_releases(folder)
    assert [(r["version"], r["model"], r["current"]) for r in rows] == [
        ("legacy", "old", False),
        ("v1", "one", False),
        ("v2", "two", False),
        ("v3", "three", True),
    ]
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary link or folder left
    with pytest.raises(FileExistsError):
        release_folder.promote(folder, "v3", b"again", card("again"), "again")  # a version is never rewritten
    assert (folder / "model.onnx").read_bytes() == b"model three"


def test_the_champion_is_rescored_and_a_worse_challenger_loses(tmp_path):
    import torch

    from mnist_assets.ml.release import export as release

    model_file = export_release(tmp_path / "versions" / "v1")
    (tmp_path / "versions" / "v1" / "model_card.json").write_text(json.dumps({"model": "fold_ensemble", "version": "v1"}))
    images = np.stack([pad(digit(), 32, 0)] * 6)[:, None]
    predicted = release.onnx_probabilities(model_file, images).argmax(axis=1)
    labels = predicted.copy()
    labels[:3] = (labels[:3] + 1) % 10  # under these labels the champion is right on half
    weaker = release.Candidate("lenet_checkpoint", torch.nn.Identity(), "x", validation_accuracy=0.4)
    contest = release.duel(weaker, tmp_path / "versions" / "v1", images, labels)
    assert contest.champion_accuracy == pytest.approx(0.5) and not contest.challenger_wins
    assert "release v1 (fold_ensemble, 50.0000% on validation, re-scored on the labels in use) stays" in contest.summary()
    assert "worse by 10.00 points" in contest.summary()
    stronger = release.Candidate("lenet_checkpoint", torch.nn.Identity(), "x", validation_accuracy=0.5)
    assert release.duel(stronger, tmp_path / "versions" / "v1", images, labels).challenger_wins  # not worse: a tie replaces
    assert release.duel(stronger, None, images, labels).summary().startswith("lenet_checkpoint is the first release")
    unusable = release.duel(stronger, tmp_path / "versions" / "v1", np.zeros((2, 1, 28, 28), np.uint8), labels[:2])
    assert unusable.challenger_wins and "cannot be scored now" in unusable.summary()


def test_predict_imports_no_platform(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, mnist_assets.predict, mnist_assets.ml.release.folder; print(sorted({m.split('.')[0] for m in sys.modules}))",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and not {"dagster", "fiftyone", "torch", "pydantic"} & set(eval(done.stdout))


# --- Large images converted band by band, names that are not UTF-8 (issue 44, items 4 and 5) ------------------


def test_compositing_and_resizing_band_by_band_give_the_pixels_of_the_whole_image(tmp_path):
    """What the memory-bounded conversion must keep (tests/test_image_memory.py measures the memory): every colour at
    every opacity composited as `rint(colour * alpha + background * (1 - alpha))`, and a large photo turned by its
    EXIF tag and shrunk band by band equal to Pillow shrinking the whole upright image."""
    from mnist_assets.ml.data.image_conversion import BAND_PIXELS, EXACT_PIXELS

    colour, alpha = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    rgba = np.concatenate([np.stack([colour, 255 - colour, colour // 2, alpha], -1)] * 2).astype(np.uint8)  # 2 bands
    assert rgba.shape[0] * rgba.shape[1] > BAND_PIXELS
    path = tmp_path / "every.png"
    Image.fromarray(rgba, "RGBA").save(path)
    for background in (0, 255):
        opacity = rgba[..., 3:] / 255.0
        expected = np.clip(np.rint(rgba[..., :3] * opacity + background * (1.0 - opacity)), 0, 255).astype(np.uint8)
        assert np.array_equal(read_image(path, 3, background), expected)

    width, height = int(EXACT_PIXELS**0.5) + 200, int(EXACT_PIXELS**0.5) - 100  # landscape as stored, portrait upright
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (height // 64, width // 64, 3), dtype=np.uint8)
    photo = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
    exif = Image.Exif()
    exif[0x0112] = 6  # turn 90 degrees clockwise to view
    turned = tmp_path / "turned.png"
    photo.save(turned, exif=exif, compress_level=1)
    upright = photo.transpose(Image.Transpose.ROTATE_270)
    for conversion, side in ((FOLDER_LIKE, 32), (MNIST_LIKE, 28)):
        whole = upright.convert("RGB" if conversion.channels == 3 else "L").resize((side, side), Image.Resampling.BILINEAR)
        assert np.array_equal(convert_image(turned, conversion), pad(np.asarray(whole), conversion.size, conversion.background))


def test_a_file_name_that_is_not_utf8_is_left_out_and_named(tmp_path):
    """FiftyOne and the logs store names as text: a name with bytes that are not UTF-8 (Python keeps them as lone
    surrogates, which stopped the whole ingest with UnicodeEncodeError) is left out and reported like an unreadable
    file, its bad bytes written as `\\xff`; `strict: true` refuses the ingest."""
    from mnist_assets.ml.data.folder_source import FolderSourceError, file_keys, load_folder

    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        Image.fromarray(digit()).save(tmp_path / name / "a.png")
    Image.fromarray(digit()).save(os.fsdecode(os.fsencode(tmp_path / "dog") + b"/bad\xff.png"))
    images, _ = load_folder(tmp_path, ["cat", "dog"], FOLDER_LIKE)
    assert images.files == ["cat/a.png", "dog/a.png"] and len(images.labels) == 2
    assert len(set(file_keys(images.files))) == 2  # the samples' keys, where the name failed first
    why = f"{tmp_path}/dog/bad\\xff.png: its name is not UTF-8 text, which FiftyOne cannot store; rename the file."
    assert images.unreadable == [("dog/bad\\xff.png", why)]
    with pytest.raises(FolderSourceError, match=r"dog/bad\\xff.png: its name is not UTF-8 text.*strict: true refuses"):
        load_folder(tmp_path, ["cat", "dog"], FOLDER_LIKE, strict=True)
    # raw_dataset's fingerprint of the folder (what the source sensor compares) reads such a name too.
    from mnist_assets.ml.data.sources import source_fingerprint

    assert len(source_fingerprint(tmp_path, recursive=True)) == 64
