"""One run of a feature set: list and hash the images, reuse every vector already made for that content with this
model and preprocessing, compute the rest (locally, or on Ray: ray_engine.py) shard by shard, then index.

The local engine decodes and preprocesses in a torch DataLoader's worker processes while the model runs on the
batch before (pinned memory and non-blocking copies on a GPU); ``workers=0`` decodes in this process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..catalog import get_spec
from ..errors import ImageError, MissingWeightsError
from ..repo.layout import PARAMS_FILE
from .images import Decoded, collate, hash_all, scan
from .sets import FeatureSet, find_set
from .store import Store, make_key
from .vectors import embed, recipe

# (content hashes, their vectors, [(hash, reason)] of images that did not decode), batch after batch
Batches = Iterator[tuple[list[str], "np.ndarray | None", list[tuple[str, str]]]]


@dataclass
class Outcome:
    name: str
    out: Path
    count: int  # paths indexed
    computed: int  # images run through the model by this run
    reused: int  # distinct contents whose vectors were already there
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (path, sha256, reason)
    seconds: float = 0.0

    def lines(self, root: Path) -> list[str]:
        """What the run did, for the command line."""
        return [f"✓ {self.name}: {self.count} images → {self.out.relative_to(root).as_posix()}/ ({self.computed} "
                f"computed, {self.reused} reused, {len(self.skipped)} skipped, {self.seconds:.1f}s) / "
                f"已计算 {self.computed}，复用 {self.reused}，跳过 {len(self.skipped)}",
                *(f"  skipped / 跳过 {path}: {why}" for path, _, why in self.skipped)]


def default_workers() -> int:
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def local_batches(fs: FeatureSet, weights: Path, transform, todo: list[tuple[str, Path]], workers: int,
                  device=None) -> Batches:
    from torch.utils.data import DataLoader

    from ..inference.extractor import DINOv2FeatureExtractor

    extractor = DINOv2FeatureExtractor(fs.model, weights=weights, device=device)
    loader = DataLoader(Decoded(todo, transform), batch_size=fs.batch_size, num_workers=workers, collate_fn=collate,
                        pin_memory=extractor.device.type == "cuda", prefetch_factor=4 if workers else None)
    for hashes, batch, failed in loader:
        yield hashes, embed(extractor, batch, fs.tokens) if batch is not None else None, failed


def run_set(root: Path, name: str, engine: str = "local", address: str | None = None, workers: int | None = None,
            device=None, progress: bool = False) -> Outcome:
    """Bring features/<name>/ up to date with the set's images (see the module docstring)."""
    from ..inference.extractor import build_transform

    start = time.perf_counter()
    params, fs = find_set(root / PARAMS_FILE, name)
    listed, skipped = scan(root / fs.images, fs.images)
    weights = fs.weights(root, params)
    if not weights.is_file():
        raise MissingWeightsError(f"no weights for {fs.model} at {weights.relative_to(root).as_posix()} / "
                                  f"找不到 {fs.model} 的权重", f"fetch it first: invoke fetch --model {fs.model} "
                                  "(`dvc repro` does it for you) / 请先获取该模型")
    hashes = hash_all([path for _, path in listed])
    transform = build_transform(get_spec(fs.model), fs.size)
    weights_sha256 = hash_all([weights], 1)[0]
    store = Store(fs.out_dir(root), make_key(recipe(fs, weights_sha256, transform)))
    store.clean_temps()
    known, failed = store.known(), store.previous_skips()
    todo = {digest: path for (_, path), digest in zip(listed, hashes, strict=True)
            if digest not in known and digest not in failed}
    reused, computed = len(set(hashes) & known.keys()), 0
    if todo:
        if engine == "ray":
            from .ray_engine import ray_batches

            batches = ray_batches(fs, weights, list(todo.items()), workers or default_workers(), address, device)
        else:
            batches = local_batches(fs, weights, transform, list(todo.items()),
                                    default_workers() if workers is None else workers, device)
        from tqdm import tqdm

        with tqdm(total=len(todo), unit="img", desc=name, disable=not progress) as bar:
            computed = _write_shards(store, fs, batches, failed, bar.update)
    known = store.known()
    rows = [(rel, digest) for (rel, _), digest in zip(listed, hashes, strict=True) if digest in known]
    skipped += [(rel, digest, failed[digest]) for (rel, _), digest in zip(listed, hashes, strict=True)
                if digest in failed]
    if not rows:
        raise ImageError(f"no readable image in {fs.images}: {len(skipped)} file(s) skipped / {fs.images} 中没有"
                         "可读取的图片", "; ".join(f"{p}: {why}" for p, _, why in skipped[:3]))
    meta = {"set": fs.name, "images": fs.images, "model": fs.model, "weights_sha256": weights_sha256,
            "preprocessing": repr(transform), "tokens": fs.tokens, "size": fs.size, "dinovault": __version__}
    count = store.finish(sorted(rows), sorted(skipped), meta)
    return Outcome(name, store.folder, count, computed, reused, sorted(skipped), time.perf_counter() - start)


def _write_shards(store: Store, fs: FeatureSet, batches: Batches, failed: dict[str, str], on_batch) -> int:
    """Shards of ``fs.shard_size`` rows as the batches come; the failures go to ``failed``. Images computed."""
    held: list[tuple[list[str], np.ndarray]] = []
    count, computed = 0, 0
    for hashes, vectors, failures in batches:
        failed.update(failures)
        if vectors is not None:
            held.append((hashes, vectors.astype(fs.dtype, copy=False)))
            count += len(hashes)
            computed += len(hashes)
        while count >= fs.shard_size:
            count = _flush(store, held, fs.shard_size)
        on_batch(len(hashes) + len(failures))
    if count:
        _flush(store, held, count)
    return computed


def _flush(store: Store, held: list, rows: int) -> int:
    """Write the first ``rows`` held rows as one shard; keep the rest. Rows still held."""
    hashes = [d for h, _ in held for d in h]
    vectors = np.concatenate([v for _, v in held])
    store.write_shard(hashes[:rows], vectors[:rows])
    held[:] = [(hashes[rows:], vectors[rows:])] if len(hashes) > rows else []
    return len(hashes) - rows
