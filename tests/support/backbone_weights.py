"""Realistic random DINOv2 state_dicts for the backbone, checkpoint and extractor tests.

Near-zero weights hide differences (a resized position embedding of zeros is zeros), so: layer norms near 1,
layer scales in [0.1, 0.3], linear weights at 1/sqrt(fan_in), and a smooth, non-trivial position embedding
(a few sinusoids over the 37×37 grid per channel) whose resizing is visible in the output.
"""

from __future__ import annotations

import dataclasses

import torch

from dinovault.catalog import ModelSpec


def reduced(spec: ModelSpec, depth: int) -> ModelSpec:
    """``spec`` with fewer blocks: the real width, heads and FFN, for fast tests of L and g."""
    return dataclasses.replace(spec, depth=depth)


def smooth_grid(m: int, dim: int, gen: torch.Generator) -> torch.Tensor:
    """(m·m, dim): per channel, a sum of three random 2-D sinusoids of low frequency, amplitude about 1."""
    coords = torch.linspace(0, 1, m)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    out = torch.zeros(m, m, dim)
    for _ in range(3):
        fy, fx = (torch.rand(2, dim, generator=gen) * 6 - 3).unbind(0)
        phase = torch.rand(dim, generator=gen) * 6.283
        amp = 0.3 + 0.4 * torch.rand(dim, generator=gen)
        out += amp * torch.sin(6.283 * (fy * yy[..., None] + fx * xx[..., None]) + phase)
    return out.reshape(m * m, dim)


def make_state_dict(spec: ModelSpec, seed: int = 0, depth: int | None = None) -> dict[str, torch.Tensor]:
    """A float32 state_dict with exactly the keys and shapes of ``spec`` (or of ``spec`` cut to ``depth``)."""
    if depth is not None:
        spec = reduced(spec, depth)
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for key, shape in spec.state_dict_shapes().items():
        if key == "pos_embed":
            m = int((shape[1] - 1) ** 0.5)
            cls = torch.randn(1, shape[2], generator=gen) * 0.5
            value = torch.cat([cls, smooth_grid(m, shape[2], gen)]).unsqueeze(0)
        elif key.endswith(("norm1.weight", "norm2.weight")) or key == "norm.weight":
            value = 1 + 0.1 * torch.randn(shape, generator=gen)
        elif key.endswith("gamma"):
            value = 0.1 + 0.2 * torch.rand(shape, generator=gen)
        elif key.endswith("weight"):
            fan_in = 1
            for s in shape[1:]:
                fan_in *= s
            value = torch.randn(shape, generator=gen) / fan_in**0.5
        elif key.endswith("bias"):
            value = 0.02 * torch.randn(shape, generator=gen)
        else:  # cls_token, register_tokens, mask_token
            value = torch.randn(shape, generator=gen)
        out[key] = value.contiguous()
    return out
