"""The reference implementations the backbone is checked against, built with our random official-format weights.

- ``official_model``: the official code as published on PyPI (``dinov2==0.0.1.dev2``, April 2023), built as the
  hub entries build it (flat blocks, layerscale 1.0, img_size 518). ``attention="sdpa"`` swaps in the official
  attention of today: since commit 12592a9 (June 2025) facebookresearch/dinov2 computes attention with
  ``scaled_dot_product_attention`` (q, k, v split from the packed qkv, no explicit scale) instead of the 2023
  ``softmax(q * scale @ kᵀ) @ v``. Everything else in the ViT is unchanged between the two, so the 2023 package
  with that one change is the official code of today; the 2023 arithmetic itself differs by ~4e-6.
- ``hf_model``: transformers' ``Dinov2WithRegistersModel`` / ``Dinov2Model`` loaded from an on-disk Hugging Face
  folder written from the official state_dict by ``model/hf_dinov2.py`` (checked against transformers' own layout in
  tests/test_convert.py), the way the facebook/dinov2-* repositories are laid out.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from dinovault.catalog import ModelSpec
from dinovault.catalog.dinov2 import IMG_SIZE, PATCH_SIZE
from dinovault.model.hf_dinov2 import hf_config, official_to_hf

logging.getLogger("dinov2").setLevel(logging.ERROR)  # the 2023 package warns that xFormers is absent
try:  # the reference is required, not optional: parity must not vanish silently from CI
    import dinov2.models.vision_transformer as official
    from dinov2.layers import MemEffAttention
    from dinov2.layers import NestedTensorBlock as OfficialBlock
except ImportError as err:
    raise ImportError(
        "the parity tests need the official reference: pip install --no-deps dinov2==0.0.1.dev2 (invoke test does)"
    ) from err


def reduced(spec: ModelSpec, depth: int | None) -> ModelSpec:
    """``spec`` with fewer blocks (the real width, heads and FFN); ``None`` keeps it whole."""
    return spec if depth is None else dataclasses.replace(spec, depth=depth)


class SdpaAttention(MemEffAttention):
    """The official attention since June 2025: packed qkv unbound per head, then PyTorch's fused attention."""

    def forward(self, x: torch.Tensor, attn_bias=None) -> torch.Tensor:
        assert attn_bias is None
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads)
        q, k, v = (t.transpose(1, 2) for t in torch.unbind(qkv, 2))
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj_drop(self.proj(x.transpose(1, 2).contiguous().view(B, N, C)))


def official_model(spec: ModelSpec, state_dict: dict, attention: str = "sdpa") -> torch.nn.Module:
    """The official ViT of ``spec`` (plain models only: the 2023 package has no registers) in eval mode."""
    if spec.num_register_tokens:
        raise ValueError("dinov2==0.0.1.dev2 predates register tokens")
    attn_class = {"sdpa": SdpaAttention, "2023": MemEffAttention}[attention]
    model = official.DinoVisionTransformer(
        img_size=IMG_SIZE,
        patch_size=PATCH_SIZE,
        embed_dim=spec.embed_dim,
        depth=spec.depth,
        num_heads=spec.num_heads,
        mlp_ratio=4,
        init_values=1.0,
        block_chunks=0,
        block_fn=partial(OfficialBlock, attn_class=attn_class),
        ffn_layer="swiglufused" if spec.ffn == "swiglu" else "mlp",
    )
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


# -- transformers -------------------------------------------------------------------------------------------


def hf_model(spec: ModelSpec, state_dict: dict, folder: Path) -> torch.nn.Module:
    """transformers' model of ``spec`` loaded offline from an on-disk folder holding ``state_dict``."""
    from safetensors.torch import save_file
    from transformers import AutoModel

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(hf_config(spec), indent=2), encoding="utf-8")
    save_file(official_to_hf(state_dict, spec), str(folder / "model.safetensors"))
    model, info = AutoModel.from_pretrained(
        folder, local_files_only=True, attn_implementation="sdpa", output_loading_info=True
    )
    problems = {k: v for k, v in info.items() if v}
    if problems:  # transformers only warns; a partly random reference would make every comparison moot
        raise AssertionError(f"transformers did not load every tensor: {problems}")
    return model.eval()
