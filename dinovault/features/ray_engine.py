"""The same work as engine.local_batches, as Ray Data tasks: ``map_batches`` with a pool of actors, each holding
the model, over a cluster (``ray.init(address=...)``: ``auto`` for the one `ray start` made here) or a local one.

The images are read by the actors from their paths: on a cluster every node must see the images folder at the same
path (a shared file system). The driver writes the shards and the index, as the local engine does. Ray is an
optional extra (``pip install dinovault[ray]``), imported only here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UsageError
from .sets import FeatureSet
from .vectors import embed


class Embedder:
    """One Ray actor: the model loaded once, then batches of {sha256, path} → {sha256, vector bytes, shape, reason}
    (a failed image has no bytes and a reason)."""

    def __init__(self, fs: FeatureSet, weights: str, device=None):
        from ..catalog import get_spec
        from ..inference.extractor import DINOv2FeatureExtractor, build_transform

        self.fs = fs
        self.extractor = DINOv2FeatureExtractor(fs.model, weights=weights, device=device)
        self.transform = build_transform(get_spec(fs.model), fs.size)

    def __call__(self, batch: dict) -> dict:
        from .images import Decoded, collate

        decoded = Decoded(list(zip(batch["sha256"], map(Path, batch["path"]), strict=True)), self.transform)
        hashes, x, failed = collate([decoded[i] for i in range(len(decoded))])
        vectors = list(embed(self.extractor, x, self.fs.tokens).astype(self.fs.dtype)) if x is not None else []
        return {"sha256": np.array(hashes + [d for d, _ in failed], dtype=object),
                "vector": np.array([v.tobytes() for v in vectors] + [b""] * len(failed), dtype=object),
                "shape": np.array([",".join(map(str, v.shape)) for v in vectors] + [""] * len(failed), dtype=object),
                "reason": np.array([""] * len(hashes) + [why for _, why in failed], dtype=object)}


def ray_batches(fs: FeatureSet, weights: Path, todo: list[tuple[str, Path]], workers: int, address: str | None,
                device=None):
    try:
        import ray
    except ImportError:
        raise UsageError("--engine ray needs Ray / 需要安装 Ray",
                         "pip install 'dinovault[ray]' (or pip install 'ray[data]') / 请安装 ray") from None
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    gpus = 1 if device is not None and str(device).startswith("cuda") else 0
    items = [{"sha256": digest, "path": str(path.resolve())} for digest, path in todo]
    data = ray.data.from_items(items).map_batches(
        Embedder, fn_constructor_kwargs={"fs": fs, "weights": str(weights.resolve()), "device": device},
        batch_size=fs.batch_size, concurrency=workers, num_gpus=gpus, batch_format="numpy")
    for out in data.iter_batches(batch_size=None, batch_format="numpy"):
        good = [i for i, reason in enumerate(out["reason"]) if not reason]
        vectors = np.stack([np.frombuffer(out["vector"][i], dtype=fs.dtype).reshape(
            tuple(int(n) for n in out["shape"][i].split(","))) for i in good]) if good else None
        failed = [(out["sha256"][i], out["reason"][i]) for i in range(len(out["reason"])) if out["reason"][i]]
        yield [out["sha256"][i] for i in good], vectors, failed
