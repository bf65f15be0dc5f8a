"""The DINOv3 vision transformer: the official state_dict keys and the official forward, in plain torch.

Names mirror facebookresearch/dinov3 (``dinov3/models/vision_transformer.py`` and ``dinov3/layers``), so the
published checkpoints load with ``strict=True``; the arithmetic follows the official code operation for operation
(the tensor layouts handed to ``scaled_dot_product_attention`` included), so on CPU float32 ``forward_features``
and ``get_intermediate_layers`` are bit-identical to it. Inference only: no stochastic depth, no list-of-crops
training path, no FP8.

RoPE: for an h×w patch grid each patch centre gets coordinates in [-1, 1], normalised by each side on its own
(``"separate"``); a head's dimensions rotate by angles 2π·coord/period with D_head/4 periods per axis,
``period_i = base^(4i / D_head)``, computed in float32 and kept as the (persistent) buffer ``rope_embed.periods``.
Only the patch tokens rotate; CLS and storage tokens do not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..catalog import ModelSpec
from ..catalog.dinov3 import LAYERSCALE_INIT, ROPE_RESCALE_COORDS
from .layers import (
    LayerScale,
    Mlp,
    PatchEmbed,
    ViTIntermediateLayers,
    check_image_batch,
    head_of,
    take_outputs,
)


class RopePositionEmbedding(nn.Module):
    """(sin, cos), each (h·w, D_head), for an h×w patch grid."""

    def __init__(self, embed_dim: int, num_heads: int, base: float, rescale_coords: float | None = None):
        super().__init__()
        self.base = base
        self.head_dim = embed_dim // num_heads
        self.rescale_coords = rescale_coords  # training only
        self.register_buffer("periods", torch.empty(self.head_dim // 4, dtype=torch.float32), persistent=True)
        self.reset_periods()

    def reset_periods(self) -> None:
        n = self.head_dim // 4
        self.periods.data = self.base ** (2 * torch.arange(n, dtype=torch.float32) / (self.head_dim // 2))

    def forward(self, h: int, w: int) -> tuple[Tensor, Tensor]:
        dd = {"device": self.periods.device, "dtype": torch.float32}
        ys = torch.arange(0.5, h, **dd) / h
        xs = torch.arange(0.5, w, **dd) / w
        coords = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).flatten(0, 1)  # (h·w, 2)
        coords = 2.0 * coords - 1.0
        if self.training and self.rescale_coords is not None:
            top = np.log(self.rescale_coords)
            coords *= torch.empty(1, **dd).uniform_(-top, top).exp()
        angles = 2 * math.pi * coords[:, :, None] / self.periods[None, None, :]  # (h·w, 2, D_head/4)
        angles = angles.flatten(1, 2).tile(2)  # (h·w, D_head)
        return torch.sin(angles), torch.cos(angles)


def rope_rotate(x: Tensor, sin: Tensor, cos: Tensor) -> Tensor:
    """x·cos + rotate_half(x)·sin, rotate_half([a, b]) = [-b, a] over the last dimension's halves."""
    a, b = x.chunk(2, dim=-1)
    return (x * cos) + (torch.cat([-b, a], dim=-1) * sin)


class MaskedBiasLinear(nn.Linear):
    """The qkv projection whose bias is multiplied by the stored ``bias_mask`` (the official ``mask_k_bias``;
    the released checkpoints store a mask of zeros, dinov3 #195)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__(in_features, out_features, bias=bias)
        if bias:
            self.register_buffer("bias_mask", torch.full_like(self.bias, math.nan))

    def reset_mask(self) -> None:
        """The official initialisation: 1 for the query and value thirds, 0 for the key's."""
        o = self.out_features
        self.bias_mask.fill_(1)
        self.bias_mask[o // 3 : 2 * o // 3].fill_(0)

    def forward(self, x: Tensor) -> Tensor:
        bias = self.bias * self.bias_mask.to(self.bias.dtype) if self.bias is not None else None
        return F.linear(x, self.weight, bias)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, mask_k_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = MaskedBiasLinear(dim, 3 * dim, bias=qkv_bias) if mask_k_bias else nn.Linear(dim, 3 * dim, qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None) -> Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads)
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))  # each (B, heads, N, D_head), as strided views
        if rope is not None:
            q, k = self._rotate(q, k, *rope)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape([B, N, C]))

    @staticmethod
    def _rotate(q: Tensor, k: Tensor, sin: Tensor, cos: Tensor) -> tuple[Tensor, Tensor]:
        """RoPE on the patch tokens only (the last h·w), in the RoPE dtype (float32), cast back."""
        dtype = q.dtype
        prefix = q.shape[-2] - sin.shape[-2]
        out = []
        for t in (q.to(sin.dtype), k.to(sin.dtype)):
            t = torch.cat((t[:, :, :prefix, :], rope_rotate(t[:, :, prefix:, :], sin, cos)), dim=-2)
            out.append(t.to(dtype))
        return out[0], out[1]


class SwiGLUFFN(nn.Module):
    """w3(silu(w1 x) · w2 x), gate and value as two separate projections (unlike DINOv2's packed w12)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden)
        self.w2 = nn.Linear(dim, hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.w3(F.silu(self.w1(x)) * self.w2(x))


class Block(nn.Module):
    def __init__(self, spec: ModelSpec, norm_eps: float):
        super().__init__()
        d = spec.embed_dim
        self.norm1 = nn.LayerNorm(d, eps=norm_eps)
        self.attn = Attention(d, spec.num_heads, qkv_bias=spec.qkv_bias, mask_k_bias=spec.mask_k_bias)
        self.ls1 = LayerScale(d, LAYERSCALE_INIT)
        self.norm2 = nn.LayerNorm(d, eps=norm_eps)
        self.mlp = SwiGLUFFN(d, spec.ffn_hidden) if spec.ffn == "swiglu" else Mlp(d, spec.ffn_hidden)
        self.ls2 = LayerScale(d, LAYERSCALE_INIT)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), rope=rope))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoV3VisionTransformer(ViTIntermediateLayers, nn.Module):
    """DINOv3 ViT backbone with the official attributes, state_dict keys and forward methods."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        d = spec.embed_dim
        self.num_features = self.embed_dim = d
        self.n_blocks = spec.depth
        self.num_heads = spec.num_heads
        self.patch_size = spec.patch_size
        self.n_storage_tokens = self.n_extra_tokens = spec.num_register_tokens
        self.chunked_blocks = False
        self.untie_cls_and_patch_norms = False  # no released weights unties them
        self.untie_global_and_local_cls_norm = spec.local_cls_norm

        self.patch_embed = PatchEmbed(d, spec.patch_size)
        self.cls_token = nn.Parameter(torch.empty(1, 1, d))
        self.storage_tokens = nn.Parameter(torch.empty(1, self.n_storage_tokens, d))
        assert spec.rope_base is not None, f"{spec.name} has no RoPE"
        self.rope_embed = RopePositionEmbedding(d, spec.num_heads, spec.rope_base, ROPE_RESCALE_COORDS)
        self.blocks = nn.ModuleList(Block(spec, spec.norm_eps) for _ in range(spec.depth))
        self.norm = nn.LayerNorm(d, eps=spec.norm_eps)
        # used only in training, for the local crops; kept so that the official files load strictly
        self.local_cls_norm = nn.LayerNorm(d, eps=spec.norm_eps) if spec.local_cls_norm else None
        self.head = nn.Identity()
        self.mask_token = nn.Parameter(torch.empty(1, d))

    def init_weights(self) -> None:
        """The official initialisation (the hub entries' ``pretrained=False``): tokens normal (std 0.02), mask
        token 0, linear layers truncated-normal (std 0.02) with zero bias, layer scale 1e-5, norms and patch
        embedding reset, RoPE periods and bias masks as in the official code."""
        with torch.no_grad():
            self.rope_embed.reset_periods()
            nn.init.normal_(self.cls_token, std=0.02)
            nn.init.normal_(self.storage_tokens, std=0.02)
            nn.init.zeros_(self.mask_token)
            proj, k = self.patch_embed.proj, math.sqrt(1 / (3 * self.patch_size**2))
            nn.init.uniform_(proj.weight, -k, k)  # first, as the official order of random draws
            nn.init.uniform_(proj.bias, -k, k)
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    nn.init.trunc_normal_(module.weight, std=0.02)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
                    if isinstance(module, MaskedBiasLinear) and module.bias is not None:
                        module.reset_mask()
                elif isinstance(module, nn.LayerNorm):
                    module.reset_parameters()
                elif isinstance(module, LayerScale):
                    nn.init.constant_(module.gamma, LAYERSCALE_INIT)

    # -- tokens ---------------------------------------------------------------------------------------

    def _check_input(self, x: Tensor) -> None:
        check_image_batch(x, self.patch_size)

    def prepare_tokens_with_masks(self, x: Tensor, masks: Tensor | None = None) -> tuple[Tensor, tuple[int, int]]:
        """[CLS, storage tokens, patch tokens] (B, 1 + 4 + h·w, D) and the patch grid (h, w)."""
        self._check_input(x)
        B, _, H, W = x.shape
        x = self.patch_embed(x)
        if masks is not None:
            x = torch.where(masks.unsqueeze(-1), self.mask_token.to(x.dtype).unsqueeze(0), x)
            cls_token = self.cls_token
        else:
            cls_token = self.cls_token + 0 * self.mask_token  # as the official code (keeps the mask token in the graph)
        x = torch.cat([cls_token.expand(B, -1, -1), self.storage_tokens.expand(B, -1, -1), x], dim=1)
        return x, (H // self.patch_size, W // self.patch_size)

    def _tokens(self, x: Tensor, masks: Tensor | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        x, (h, w) = self.prepare_tokens_with_masks(x, masks)
        return x, self.rope_embed(h, w)

    # -- forward --------------------------------------------------------------------------------------

    def forward_features(self, x: Tensor | list[Tensor], masks: Tensor | list | None = None):
        if isinstance(x, list):  # the official list form; in eval each image size on its own
            masks_list = masks if masks is not None else [None] * len(x)
            return [self.forward_features(xi, mi) for xi, mi in zip(x, masks_list, strict=True)]
        tokens, rope = self._tokens(x, masks)
        for blk in self.blocks:
            tokens = blk(tokens, rope)
        n = self.n_storage_tokens + 1
        if self.untie_global_and_local_cls_norm:  # the official code normalises the two parts separately then
            cls_reg, patch = self.norm(tokens[:, :n]), self.norm(tokens[:, n:])
        else:
            normed = self.norm(tokens)
            cls_reg, patch = normed[:, :n], normed[:, n:]
        return {
            "x_norm_clstoken": cls_reg[:, 0],
            "x_storage_tokens": cls_reg[:, 1:],
            "x_norm_patchtokens": patch,
            "x_prenorm": tokens,
            "masks": masks,
        }

    def _get_intermediate_layers_not_chunked(self, x: Tensor, n: int | Sequence[int] = 1) -> list[Tensor]:
        tokens, rope = self._tokens(x)
        return take_outputs(tokens, len(self.blocks), n, lambda i, t: self.blocks[i](t, rope))

    def forward(self, x: Tensor | list[Tensor], masks: Tensor | list | None = None, is_training: bool = False):
        """The normed CLS token (B, D); ``is_training=True`` gives the forward_features dict instead."""
        ret = self.forward_features(x, masks)
        return ret if is_training else head_of(self.head, ret)


def build(spec: ModelSpec, device: str | torch.device | None = None) -> DinoV3VisionTransformer:
    """The architecture of ``spec``. ``device="meta"`` allocates and initialises nothing (to be loaded with
    ``assign=True``); otherwise tokens and masks are uninitialised until ``init_weights()`` or a load."""
    if spec.builder != "dinov3_vit":
        raise ValueError(f"{spec.name} is not a DINOv3 ViT (builder {spec.builder!r})")
    with torch.device(device or "cpu"):
        return DinoV3VisionTransformer(spec)


__all__ = ["DinoV3VisionTransformer", "build"]
