"""The smoke test: load a checkpoint safely, build the official network, run one forward pass.

The only module of the fetch path that imports torch, and only when the test runs.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..catalog import ModelSpec
from ..errors import CheckpointError

INPUT_SIZE = 224


def smoke_test(path: Path, spec: ModelSpec, device: str = "cpu") -> float:
    """Load ``path`` (weights_only, mmap, keys/shapes checked, strict), forward one 1×3×224×224 input and check
    the output is (1, embed_dim) and finite. Returns the forward pass's seconds; CheckpointError otherwise."""
    import torch

    from .checkpoint import load_backbone

    model = load_backbone(Path(path), spec, device=device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, INPUT_SIZE, INPUT_SIZE, generator=g).to(device)
    with torch.inference_mode():
        t0 = time.perf_counter()
        out = model(x)
        if out.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    expected = (1, spec.embed_dim)
    if tuple(out.shape) != expected:
        raise CheckpointError(
            f"{path}: forward pass gave shape {tuple(out.shape)}, expected {expected} / 前向输出形状不符",
            "report this: the backbone and the catalog disagree / 请报告此问题：网络与模型表不一致",
        )
    if not torch.isfinite(out).all():
        raise CheckpointError(
            f"{path}: forward pass gave non-finite values (NaN/inf): the weights are damaged / "
            "前向输出含 NaN 或 inf：权重已损坏",
            f"fetch it again: invoke fetch --model {spec.name} / 请重新获取：invoke fetch --model {spec.name}",
        )
    return seconds


__all__ = ["smoke_test"]
