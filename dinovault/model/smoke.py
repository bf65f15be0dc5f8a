"""The smoke test: load a checkpoint safely, build the official network, run one forward pass.

The only module of the fetch path that imports torch, and only when the test runs.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..catalog import ModelSpec
from ..errors import CheckpointError

log = logging.getLogger("dinovault")
INPUT_SIZE = 224
# Above this many parameters (DINOv3 7B: 6.7 B, ~27 GB in float32) a forward pass would need more memory than the
# machines this runs on have: the file is then read memory-mapped and checked by keys, shapes and dtypes only.
FORWARD_MAX_PARAMS = 2_000_000_000


def smoke_test(path: Path, spec: ModelSpec, device: str = "cpu") -> float | None:
    """Load ``path`` (weights_only, mmap, keys/shapes checked, strict), forward one 1×3×224×224 input and check
    the output is (1, embed_dim) and finite. Returns the forward pass's seconds; CheckpointError otherwise. For a
    model above FORWARD_MAX_PARAMS, only the memory-mapped state_dict is checked (keys, shapes): returns None."""
    import torch

    from .checkpoint import check_file_structure, load_backbone

    if spec.num_params > FORWARD_MAX_PARAMS:
        check_file_structure(Path(path), spec)
        log.info("%s: keys and shapes checked; no forward pass (%.1f B parameters need ~%d GB) / 已检查键与形状，"
                 "模型过大未做前向测试", spec.name, spec.num_params / 1e9, spec.num_params * 4 >> 30)
        return None

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
