"""Converting a large image costs a small multiple of its decoded 8-bit size, whatever its mode, and a folder
ingest decodes at most `DECODING.limit` pixels at once (issue 44, item 5).

Peaks are measured in a fresh process as the kernel's high-water mark of resident memory (reset before each
measurement, glibc made to give freed blocks back at once), as ratios to the peak of decoding the 8-bit image
of the same size there: never an absolute number."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from processes import run_ok

pytestmark = pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux's resettable peak RSS")

SIDE = 3000  # 9 megapixels: the old conversion took 30 times the decoded size, this one about 1
MEASURE = r"""
import json, sys
from pathlib import Path
from PIL import Image
from mnist_assets.ml.data import image_conversion
from mnist_assets.ml.data.folder_source import load_folder
from mnist_assets.ml.data.image_conversion import Conversion, convert_image

def resident(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field)) * 1024

def peak(work):
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # the high-water mark back to what is resident now
    start = resident("VmRSS:")
    work()
    return resident("VmHWM:") - start

def decode(path):
    with Image.open(path) as image:
        image.load()

task = json.loads(sys.argv[1])
conversions = [Conversion(**c) for c in task["conversions"]]
convert_image(task["warm"], conversions[0])  # codecs and NumPy's first allocations
results = []
for path, eight_bit in task["images"]:
    row = {"path": path, "eight_bit": peak(lambda: decode(eight_bit)), "decoded": peak(lambda: decode(path))}
    row["converted"] = [peak(lambda: convert_image(path, c)) for c in conversions]
    results.append(row)
if task.get("folder"):
    image_conversion.DECODING.limit = task["limit"]
    results.append({"folder": peak(lambda: load_folder(Path(task["folder"]), ["a", "b"], conversions[0]))})
print(json.dumps(results))
"""


def measure(task: dict) -> list[dict]:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}  # freed memory leaves RSS at once
    done = run_ok([sys.executable, "-c", MEASURE, json.dumps(task)], env=env, timeout=300)
    return json.loads(done.stdout)


def smooth(channels: int, dtype=np.uint8, top: float = 255) -> np.ndarray:
    """Gradients (they compress, so files are written fast), every value from 0 to `top`."""
    ramp = np.linspace(0, top, SIDE, dtype=np.float32)
    planes = [(ramp[:, None] + ramp) / 2, ramp, ramp[:, None], top - ramp[:, None]]
    out = np.empty((SIDE, SIDE, channels), dtype)
    for channel in range(channels):
        out[..., channel] = planes[channel]
    return out[..., 0] if channels == 1 else out


def test_converting_a_large_image_costs_about_its_decoded_size_in_every_mode(tmp_path):
    gray8 = tmp_path / "gray8.png"
    Image.fromarray(smooth(1)).save(gray8, compress_level=1)
    rgba = tmp_path / "rgba.png"  # colours at every opacity: composited on the background
    Image.fromarray(smooth(4), "RGBA").save(rgba, compress_level=1)
    sixteen = tmp_path / "sixteen.png"
    Image.fromarray(smooth(1, np.uint16, 65535)).save(sixteen, compress_level=1)
    palette = tmp_path / "palette.png"
    indices = Image.fromarray(smooth(1) // 4, "P")  # 64 colours, the first one transparent
    indices.putpalette(np.repeat(np.arange(0, 256, 4, dtype=np.uint8), 3).tolist())
    indices.save(palette, transparency=0, compress_level=1)
    wide = tmp_path / "wide.tiff"  # 32-bit integers
    Image.fromarray(smooth(1, np.int32, 65535), "I").save(wide)
    unit = tmp_path / "unit.tiff"  # floats in [0, 1]
    Image.fromarray(smooth(1, np.float32, 1.0), "F").save(unit)
    warm = tmp_path / "warm.png"
    Image.fromarray(smooth(4)[:64, :64], "RGBA").save(warm)
    modes = {Path(p).name: Image.open(p).mode for p in (rgba, sixteen, palette, wide, unit)}
    assert modes == {"rgba.png": "RGBA", "sixteen.png": "I;16", "palette.png": "P", "wide.tiff": "I", "unit.tiff": "F"}

    folder_like = {"size": 32, "channels": 3, "background": 255}
    mnist_like = {"size": 32, "channels": 1, "resize": "pad", "source_size": 28, "background": 0}
    task = {"conversions": [folder_like, mnist_like], "warm": str(warm)}
    task["images"] = [[str(rgba), str(rgba)], [str(palette), str(palette)], *([str(p), str(gray8)] for p in (sixteen, wide, unit))]
    for row in measure(task):
        name, eight_bit, decoded = Path(row["path"]).name, row["eight_bit"], row["decoded"]
        # The measurement sees the decoded pixels (else the bound below could not fail).
        assert eight_bit > 0.9 * SIDE * SIDE * (4 if name == "rgba.png" else 1), (name, eight_bit)
        for converted in row["converted"]:
            # The decoded file itself (2 or 4 bytes a pixel for 16- and 32-bit) and half its 8-bit size besides.
            assert converted <= decoded + 0.5 * eight_bit, (
                f"{name}: {converted / eight_bit:.2f} x its 8-bit size, decoded {decoded / eight_bit:.2f}"
            )


def test_a_folder_ingest_decodes_no_more_pixels_at_once_than_its_budget(tmp_path):
    for label in ("a", "b"):
        (tmp_path / "folder" / label).mkdir(parents=True)
        for number in range(2):
            Image.fromarray(smooth(1)).save(tmp_path / "folder" / label / f"{number}.png", compress_level=1)
    warm = tmp_path / "warm.png"
    Image.fromarray(smooth(1)[:64, :64]).save(warm)
    one = str(tmp_path / "folder" / "a" / "0.png")
    conversion = {"size": 32, "channels": 1, "background": 255}
    task = {"conversions": [conversion], "warm": str(warm), "images": [[one, one]], "folder": str(tmp_path / "folder")}
    rows = measure({**task, "limit": SIDE * SIDE})  # one image's pixels: the four decode one after another
    decoded, folder = rows[0]["decoded"], rows[1]["folder"]
    assert decoded > 0.9 * SIDE * SIDE
    assert folder <= 1.5 * decoded, f"four images at once: {folder / decoded:.2f} x one decoded image"
