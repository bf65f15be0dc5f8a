"""Image folders for the features tests and bench: every kind of file a real dataset holds, made with PIL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

GOOD = ("rgb.jpg", "alpha.png", "palette.png", "gray.png", "cmyk.jpg", "deep16.png", "sub/中文 照片.jpg",
        "rotated.jpg", "tiny.bmp")
BAD = ("truncated.jpg", "text.jpg", "notes.txt")


def pixels(seed: int, size: tuple[int, int] = (48, 40)) -> np.ndarray:
    """A smooth random RGB picture (uint8, H x W x 3): gradients and blobs rather than noise."""
    rng = np.random.default_rng(seed)
    h, w = size[1], size[0]
    ys, xs = np.mgrid[0:h, 0:w]
    out = np.zeros((h, w, 3))
    for c in range(3):
        fx, fy, phase = rng.uniform(0.5, 3, 2).tolist() + [rng.uniform(0, 6.3)]
        out[..., c] = 127 + 120 * np.sin(2 * np.pi * (fx * xs / w + fy * ys / h) + phase)
    return out.clip(0, 255).astype(np.uint8)


def save_jpeg(path: Path, seed: int, size: tuple[int, int] = (48, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels(seed, size)).save(path, quality=90)
    return path


def make_mixed(folder: Path) -> Path:
    """GOOD: one image of each mode (RGB, RGBA, P, L, CMYK, 16-bit, EXIF-rotated, a Chinese name with a space, BMP);
    BAD: a truncated JPEG, a text file named .jpg, a .txt."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = Image.fromarray(pixels(1))
    rgb.save(folder / "rgb.jpg", quality=90)
    alpha = Image.fromarray(pixels(2)).convert("RGBA")
    alpha.putalpha(Image.fromarray((pixels(3)[..., 0] // 2).astype(np.uint8)))
    alpha.save(folder / "alpha.png")
    Image.fromarray(pixels(4)).convert("P", palette=Image.Palette.ADAPTIVE, colors=32).save(folder / "palette.png")
    Image.fromarray(pixels(5)).convert("L").save(folder / "gray.png")
    Image.fromarray(pixels(6)).convert("CMYK").save(folder / "cmyk.jpg", quality=90)
    deep = (pixels(7)[..., 0].astype(np.uint16) * 257)
    Image.fromarray(deep).save(folder / "deep16.png")  # mode I;16
    save_jpeg(folder / "sub" / "中文 照片.jpg", 8)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° CW to display
    Image.fromarray(pixels(9)).save(folder / "rotated.jpg", quality=90, exif=exif)
    Image.fromarray(pixels(10, (20, 30))).save(folder / "tiny.bmp")
    whole = save_jpeg(folder / "whole.tmp.jpg", 11).read_bytes()
    (folder / "whole.tmp.jpg").unlink()
    (folder / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (folder / "text.jpg").write_text("not a picture\n", encoding="utf-8")
    (folder / "notes.txt").write_text("a note beside the images\n", encoding="utf-8")
    return folder


def make_many(folder: Path, count: int, start: int = 0, size: tuple[int, int] = (48, 40)) -> list[Path]:
    """``count`` distinct JPEGs named img_<n>.jpg."""
    return [save_jpeg(folder / f"img_{n:06d}.jpg", 1000 + n, size) for n in range(start, start + count)]
