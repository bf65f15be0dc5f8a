"""Official-format DINOv3 state_dicts (ViT and ConvNeXt) with the real key order and realistic random weights.

As for DINOv2 (checkpoints.py): norm weights near 1, small biases, layer scale in [0.1, 1], fan-in scaled
weights, so attention and the norms behave as with trained weights. What the official files hold by
construction is reproduced: the official RoPE periods, a zero mask token, the final ConvNeXt norm twice
(``norm.*`` = ``norms.3.*``). ``bias_mask="released"`` gives what the released ViT files hold (qkv.bias and
qkv.bias_mask all zero, dinov3 #195); ``"official"`` the official initial mask (1, 0, 1 by thirds) with random
query and value biases and a zero key bias.
"""

from __future__ import annotations

import dataclasses
import math

from dinovault.catalog import ModelSpec
from dinovault.catalog.dinov3 import ROWS
from dinovault.model.hf_dinov3 import rope_periods

DINOV3 = {spec.name: spec for spec in ROWS}


def small(name: str, **changes) -> ModelSpec:
    """The catalog row ``name`` with some facts changed (e.g. fewer blocks, a narrower width)."""
    return dataclasses.replace(DINOV3[name], **changes)


def make_state_dict(spec: ModelSpec, seed: int = 0, bias_mask: str = "official") -> dict:
    import torch

    g = torch.Generator().manual_seed(seed)

    def randn(shape, std):
        return std * torch.randn(shape, generator=g)

    out = {}
    for key, shape in spec.state_dict_shapes().items():
        leaf = key.rsplit(".", 1)[-1]
        if key in ("cls_token", "storage_tokens"):
            t = randn(shape, 0.5)
        elif key == "mask_token":
            t = torch.zeros(shape)
        elif key == "rope_embed.periods":
            t = rope_periods(spec)
        elif key.startswith("norms."):
            t = out[key.replace("norms.3", "norm", 1)].clone()
        elif leaf == "bias_mask" or (leaf == "bias" and key.endswith("attn.qkv.bias")):
            t = torch.zeros(shape)
            if bias_mask == "official":
                n = shape[0] // 3
                t[:n], t[2 * n :] = (1.0, 1.0) if leaf == "bias_mask" else (randn(n, 0.02), randn(n, 0.02))
        elif leaf == "gamma":
            t = 0.1 + 0.9 * torch.rand(shape, generator=g)
        elif "norm" in key and leaf == "weight":
            t = 1.0 + randn(shape, 0.1)
        elif leaf == "bias":
            t = randn(shape, 0.02)
        else:  # convolutions and linear layers
            t = randn(shape, 1.0 / math.sqrt(math.prod(shape[1:])))
        out[key] = t.float().contiguous()
    return out
