"""The images of a set: listed, hashed by content, decoded and preprocessed (in the loader's worker processes).

Decoding is the extractor's own (``open_image``: PIL, converted to RGB as the official preprocessing does, so CMYK,
grayscale, 16-bit, palette and alpha images all become RGB) and the transform is ``build_transform``: the vectors
equal ``extract`` of each image. EXIF orientation is not applied, as neither the official preprocessing nor
``extract`` applies it: the pixels are taken as stored.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import ImageError
from ..inference.features import IMAGE_SUFFIXES, list_files

_CHUNK = 1 << 20


def scan(folder: Path, shown: str) -> tuple[list[tuple[str, Path]], list[tuple[str, str, str]]]:
    """(relative POSIX path, file) of every image file below ``folder``, and the other files as skipped
    (path, "", reason). An error, before anything is written, when the folder is missing or holds no image file."""
    if not folder.is_dir():
        raise ImageError(f"no images folder at {shown} / 图片文件夹不存在：{shown}",
                         "create it and put the images there, or fix images: in params.yaml / "
                         "请创建该文件夹并放入图片，或修改 params.yaml 中的 images:")
    images, skipped = [], []
    for path in list_files(folder):
        rel = path.relative_to(folder).as_posix()
        if path.suffix.lower() in IMAGE_SUFFIXES:
            images.append((rel, path))
        else:
            skipped.append((rel, "", f"not an image file ({path.suffix or 'no extension'}) / 不是图片文件"))
    if not images:
        raise ImageError(f"no image in {shown} ({len(skipped)} other file(s)) / {shown} 中没有图片",
                         f"put images there ({', '.join(sorted(IMAGE_SUFFIXES))}) / 请放入图片")
    return images, skipped


def content_hash(path: Path) -> str:
    """SHA-256 of the file's bytes (files.hash_file's thread pool per file would cost more than a small image)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def hash_all(paths: list[Path], threads: int = 8) -> list[str]:
    with ThreadPoolExecutor(threads) as pool:  # hashlib and file reads release the GIL
        return list(pool.map(content_hash, paths))


class Decoded:
    """A map-style dataset (what torch's DataLoader takes) of (content hash, model input or None, reason)."""

    def __init__(self, items: list[tuple[str, Path]], transform):
        self.items, self.transform = items, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        from ..inference.extractor import open_image

        digest, path = self.items[i]
        try:
            return digest, self.transform(open_image(path)), ""
        except ImageError as err:
            return digest, None, f"unreadable: {err.reason} / 无法读取"
        except Exception as err:  # a transform that fails on odd pixels (a 1-pixel image): skipped, not fatal
            return digest, None, f"unreadable: {type(err).__name__}: {err} / 无法读取"


def collate(items: list) -> tuple[list[str], object, list[tuple[str, str]]]:
    """(hashes of the decoded images, their stacked batch or None, [(hash, reason)] of the others)."""
    import torch

    good = [(d, x) for d, x, _ in items if x is not None]
    failed = [(d, why) for d, x, why in items if x is None]
    batch = torch.stack([x for _, x in good]) if good else None
    return [d for d, _ in good], batch, failed
