"""A user's own image-classification folder, generated from real Fashion-MNIST photos: RGB, not
28x28, in the formats and modes people's folders hold (PNG and JPEG; RGB, gray and palette)."""

from pathlib import Path

import numpy as np
from PIL import Image

# Three Fashion-MNIST classes as a user would name their folders.
FOLDER_CLASSES = {"bag": 8, "sneaker": 7, "trouser": 1}
SOURCE_SIZE = 36  # what the files hold; the declaration asks for 32x32 (LeNet-5 as in the 1998 paper)


def write_image_folder(root: Path, fashion, per_class: int = 200, split_layout: bool = False, seed: int = 0) -> Path:
    """`root/<class>/*.png|jpg` (or `root/train|test/<class>/...`), each a tinted, resized real photo."""
    rng = np.random.default_rng(seed)
    for name, label in FOLDER_CLASSES.items():
        positions = np.flatnonzero(fashion.train_labels == label)[:per_class]
        for number, position in enumerate(positions):
            gray = Image.fromarray(fashion.train_images[position]).resize((SOURCE_SIZE, SOURCE_SIZE), Image.Resampling.BILINEAR)
            tint = rng.uniform(0.4, 1.0, size=3)
            rgb = Image.fromarray((np.asarray(gray)[..., None] * tint).astype(np.uint8), mode="RGB")
            part = ("test" if number % 5 == 0 else "train") if split_layout else ""
            folder = root / part / name
            folder.mkdir(parents=True, exist_ok=True)
            if number % 7 == 3:
                rgb.save(folder / f"{name}_{number:04d}.jpg", quality=95)
            elif number % 7 == 5:
                rgb.convert("P", palette=Image.Palette.ADAPTIVE).save(folder / f"{name}_{number:04d}.png")
            elif number % 7 == 6:
                gray.save(folder / f"{name}_{number:04d}.png")
            else:
                rgb.save(folder / f"{name}_{number:04d}.png")
    return root


def folder_declaration(root: Path, name: str = "my_clothes", **extra) -> dict:
    """The attributes of the defs.yaml a user writes for the folder."""
    return {"name": name, "source": "folder", "path": str(root), "image_size": 32, "channels": 3, **extra}


SHAPES = ("circle", "square", "triangle")


def write_shapes_folder(root: Path, per_class: int = 200, test_per_class: int = 60, size: int = 48, seed: int = 0) -> Path:
    """`root/train|test/<shape>/*.png`: a filled circle, square or triangle of a random colour, size and
    place on a random background, RGB, `size` x `size`: a small dataset where a model that trained
    enough is right nearly always."""
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    for part, count in (("train", per_class), ("test", test_per_class)):
        for shape in SHAPES:
            folder = root / part / shape
            folder.mkdir(parents=True, exist_ok=True)
            for number in range(count):
                background, ink = rng.integers(0, 256, size=3), rng.integers(0, 256, size=3)
                while np.abs(background.astype(int) - ink.astype(int)).sum() < 150:  # keep the shape visible
                    ink = rng.integers(0, 256, size=3)
                image = Image.new("RGB", (size, size), tuple(int(v) for v in background))
                draw = ImageDraw.Draw(image)
                half = rng.uniform(0.18, 0.4) * size
                cx, cy = rng.uniform(half, size - half, size=2)
                fill = tuple(int(v) for v in ink)
                if shape == "circle":
                    draw.ellipse([cx - half, cy - half, cx + half, cy + half], fill=fill)
                elif shape == "square":
                    draw.rectangle([cx - half, cy - half, cx + half, cy + half], fill=fill)
                else:
                    draw.polygon([(cx, cy - half), (cx - half, cy + half), (cx + half, cy + half)], fill=fill)
                image.save(folder / f"{shape}_{number:04d}.png")
    return root
