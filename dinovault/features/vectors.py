"""What a set stores for one image, the same for every engine: the vectors of a model-ready batch, and the recipe
whose hash keys the shards (what decides the vectors)."""

from __future__ import annotations

import numpy as np

from .sets import FeatureSet


def embed(extractor, x, tokens: str) -> np.ndarray:
    """The stored vectors of one model-ready batch: what ``extract`` returns for it (CLS; CLS and the mean patch
    token side by side; or every patch token)."""
    import torch

    cls, patches = extractor.forward(x, patch_tokens=tokens != "cls")
    if tokens == "patch":
        out = patches
    elif tokens == "cls+mean_patch":
        out = torch.cat([cls.float(), patches.float().mean(dim=1)], dim=-1)
    else:
        out = cls
    return out.float().cpu().numpy()


def recipe(fs: FeatureSet, weights_sha256: str, transform) -> dict:
    """What decides the vectors: the key of the shards is its hash."""
    return {"model": fs.model, "weights_sha256": weights_sha256, "preprocessing": repr(transform),
            "tokens": fs.tokens, "dtype": fs.dtype, "layout": 1}
