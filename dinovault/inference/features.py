"""Features for every image of a folder, saved as one .npz (used by ``invoke extract``).

Images are decoded and run batch by batch; the features go to a memory-mapped scratch file beside the output,
so memory stays flat however large the folder. The .npz appears only when complete (written then renamed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import DinovaultError, ImageError
from ..files import replace, temp_beside

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})


@dataclass
class ExtractResult:
    out: Path
    model: str
    count: int
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)


def list_files(images_dir: Path) -> list[Path]:
    """Every regular file below ``images_dir`` (hidden ones excluded), in sorted relative-path order."""
    files = [
        p
        for p in images_dir.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(images_dir).parts)
    ]
    return sorted(files, key=lambda p: p.relative_to(images_dir).as_posix())


def extract_folder(
    model,
    images_dir: str | os.PathLike,
    out: str | os.PathLike,
    batch_size: int = 32,
    weights: str | os.PathLike | None = None,
    device: str | None = None,
    dtype: str | None = None,
    normalize: bool = False,
    progress: bool = True,
) -> ExtractResult:
    """CLS features of every image below ``images_dir`` into ``out`` (.npz with ``features`` (N, D) float32,
    ``paths`` (N,) relative POSIX paths, ``model``, and ``skipped``/``skipped_reasons``).

    ``model`` is a catalog name or a ready ``DINOv2FeatureExtractor``. Files that are not images or do not
    decode are skipped and reported, not fatal; a folder without a single readable image is an ImageError,
    and then nothing is written.
    """
    from .extractor import DINOv2FeatureExtractor, open_image

    images_dir, out = Path(images_dir), Path(out)
    if not images_dir.is_dir():
        raise DinovaultError(
            f"no image folder at {images_dir} / 图片文件夹不存在：{images_dir}",
            "pass an existing folder: --images DIR / 请用 --images 指定已存在的文件夹",
        )
    files = list_files(images_dir)
    if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in files):
        raise _no_images(images_dir, len(files), "none with an image extension", "均非图片扩展名")
    extractor = (
        model if isinstance(model, DINOv2FeatureExtractor) else DINOv2FeatureExtractor(model, weights, device, dtype)
    )
    skipped: list[tuple[str, str]] = []
    paths: list[str] = []
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = temp_beside(out, "npy")
    try:
        features = np.lib.format.open_memmap(
            str(scratch), mode="w+", dtype=np.float32, shape=(max(len(files), 1), extractor.embed_dim)
        )
        with tqdm(total=len(files), unit="img", desc=f"{extractor.model_name}", disable=not progress) as bar:
            for start in range(0, len(files), batch_size):
                batch, names = [], []
                for path in files[start : start + batch_size]:
                    rel = path.relative_to(images_dir).as_posix()
                    if path.suffix.lower() not in IMAGE_SUFFIXES:
                        skipped.append((rel, f"not an image file ({path.suffix or 'no extension'}) / 不是图片文件"))
                        continue
                    try:
                        batch.append(open_image(path))
                        names.append(rel)
                    except ImageError as err:  # a bad file is reported, it does not stop the run
                        skipped.append((rel, f"unreadable: {err.reason} / 无法读取"))
                if batch:
                    feats = extractor.extract(batch, batch_size=len(batch), normalize=normalize)
                    features[len(paths) : len(paths) + len(names)] = feats.numpy()
                    paths.extend(names)
                bar.update(min(batch_size, len(files) - start))
        if not paths:
            raise _no_images(images_dir, len(skipped), "none readable", "均无法读取")
        features.flush()
        _save_npz(
            out,
            features=features[: len(paths)],
            paths=np.array(paths, dtype=str),
            model=np.array(extractor.model_name),
            skipped=np.array([s for s, _ in skipped], dtype=str),
            skipped_reasons=np.array([r for _, r in skipped], dtype=str),
        )
        del features
    finally:
        scratch.unlink(missing_ok=True)
    return ExtractResult(out, extractor.model_name, len(paths), skipped)


def _no_images(images_dir: Path, count: int, why: str, why_zh: str) -> ImageError:
    return ImageError(
        f"no images in {images_dir}: {count} file(s), {why} / {images_dir} 中没有可用的图片：{count} 个文件，{why_zh}",
        f"put images ({', '.join(sorted(IMAGE_SUFFIXES))}) there or pass another folder: --images DIR / "
        "请放入图片或用 --images 指定其他文件夹",
    )


def summary(result: ExtractResult) -> str:
    """What a run wrote and what it skipped, for the command line."""
    lines = [f"✓ {result.count} images → {result.out} ({result.model}) / 已提取 {result.count} 张图片的特征"]
    if result.skipped:
        lines.append(f"skipped {len(result.skipped)} file(s) / 跳过 {len(result.skipped)} 个文件:")
        lines += [f"  {path}: {reason}" for path, reason in result.skipped]
    return "\n".join(lines)


def _save_npz(out: Path, **arrays) -> None:
    tmp = temp_beside(out, "partial")
    try:
        with open(tmp, "xb") as fh:
            np.savez(fh, **arrays)  # numpy streams the memory-mapped features in chunks
        replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
