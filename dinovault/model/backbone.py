"""The DINOv2 vision transformer: the official state_dict keys and the official forward, in plain torch.

Module and parameter names mirror facebookresearch/dinov2 (flat blocks, i.e. ``block_chunks=0``), so the
published checkpoints load with ``strict=True``. The arithmetic is the official one, operation for operation
(attention through ``scaled_dot_product_attention`` as the official code does since June 2025, residuals added
as ``x + branch * gamma``), so on CPU float32 ``forward``, ``forward_features`` and ``get_intermediate_layers``
are bit-identical to it, and an image's features do not depend on the batch it is in. ``forward(x,
cls_shortcut=True)`` is the one opt-in exception (see there). There is no xFormers path and nothing is logged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..catalog import ModelSpec
from ..catalog.dinov2 import IMG_SIZE, PATCH_SIZE
from .layers import LayerScale, Mlp, PatchEmbed, ViTIntermediateLayers, check_image_batch, take_outputs

LN_EPS = 1e-6


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, cls_only: bool = False) -> Tensor:
        """Self-attention over all tokens; with ``cls_only`` the output for the first (CLS) token alone, which
        needs that token's query but every token's key and value."""
        B, N, C = x.shape
        h = self.num_heads
        if not cls_only:
            q, k, v = self.qkv(x).reshape(B, N, 3, h, C // h).permute(2, 0, 3, 1, 4).unbind(0)
            x = F.scaled_dot_product_attention(q, k, v)
            return self.proj(x.transpose(1, 2).reshape(B, N, C))
        w, b = self.qkv.weight, self.qkv.bias
        q = F.linear(x[:, :1], w[:C], b[:C]).reshape(B, h, 1, C // h)
        k, v = F.linear(x, w[C:], b[C:]).reshape(B, N, 2, h, C // h).permute(2, 0, 3, 1, 4).unbind(0)
        # One query: products and sums instead of SDPA or matmul, whose one-row kernels give different bits to
        # the images of one batch (identical images would get different features). In float32, as SDPA
        # accumulates, also under autocast.
        scores = (q.float() * (C // h) ** -0.5 * k.float()).sum(-1)
        x = (scores.softmax(dim=-1).unsqueeze(-1) * v.float()).sum(-2).to(v.dtype)
        return self.proj(x.reshape(B, 1, C))


class SwiGLUFFN(nn.Module):
    """The giant's feed-forward: one packed input projection (w12) split into gate and value."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(x1) * x2)


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, ffn: str, ffn_hidden: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = SwiGLUFFN(dim, ffn_hidden) if ffn == "swiglu" else Mlp(dim, ffn_hidden)
        self.ls2 = LayerScale(dim)

    def forward(self, x: Tensor) -> Tensor:
        # The official order, x + (branch * gamma) rounded twice: a fused addcmul rounds once and is not
        # bit-identical to the official outputs.
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))

    def forward_cls(self, x: Tensor) -> Tensor:
        """The block's output for the CLS token only, (B, 1, D): ``forward(x, cls_shortcut=True)``'s last block."""
        cls = x[:, :1] + self.ls1(self.attn(self.norm1(x), cls_only=True))
        return cls + self.ls2(self.mlp(self.norm2(cls)))


class DinoVisionTransformer(ViTIntermediateLayers, nn.Module):
    """DINOv2 backbone with the official attributes, state_dict keys and forward methods."""

    def __init__(
        self,
        embed_dim: int,
        depth: int,
        num_heads: int,
        ffn: str = "mlp",
        ffn_hidden: int | None = None,
        num_register_tokens: int = 0,
        interpolate_offset: float = 0.1,
        interpolate_antialias: bool = False,
        img_size: int = IMG_SIZE,
        patch_size: int = PATCH_SIZE,
    ):
        super().__init__()
        self.num_features = self.embed_dim = embed_dim
        self.num_tokens = 1
        self.n_blocks = depth
        self.num_heads = num_heads
        self.patch_size = patch_size
        self.num_register_tokens = num_register_tokens
        self.n_extra_tokens = num_register_tokens  # what get_intermediate_layers splits off after the class token
        self.interpolate_offset = interpolate_offset
        self.interpolate_antialias = interpolate_antialias
        self.chunked_blocks = False
        num_patches = (img_size // patch_size) ** 2

        self.patch_embed = PatchEmbed(embed_dim, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        self.register_tokens = (
            nn.Parameter(torch.zeros(1, num_register_tokens, embed_dim)) if num_register_tokens else None
        )
        hidden = ffn_hidden or 4 * embed_dim
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, ffn, hidden) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=LN_EPS)
        self.head = nn.Identity()
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))

    def init_weights(self) -> None:
        """The official initialisation, as the hub entries give it with ``pretrained=False``: position
        embedding truncated-normal (std 0.02), CLS and register tokens normal (std 1e-6), every linear layer
        truncated-normal (std 0.02) with zero bias; layer scales 1, mask token 0, norms and patch embedding
        as torch initialises them."""
        with torch.no_grad():
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
            nn.init.normal_(self.cls_token, std=1e-6)
            if self.register_tokens is not None:
                nn.init.normal_(self.register_tokens, std=1e-6)
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    nn.init.trunc_normal_(module.weight, std=0.02)
                    nn.init.zeros_(module.bias)

    # -- tokens ---------------------------------------------------------------------------------------

    def interpolate_pos_encoding(self, x: Tensor, w: int, h: int) -> Tensor:
        """Position embeddings for a (w, h) = (height, width) input, resized as the official code does."""
        previous_dtype = x.dtype
        npatch = x.shape[1] - 1
        N = self.pos_embed.shape[1] - 1
        if npatch == N and w == h:
            return self.pos_embed
        pos_embed = self.pos_embed.float()
        class_pos_embed = pos_embed[:, 0]
        patch_pos_embed = pos_embed[:, 1:]
        dim = x.shape[-1]
        w0, h0 = w // self.patch_size, h // self.patch_size
        M = int(math.sqrt(N))
        if self.interpolate_offset:
            # The official "+0.1" kludge: the output size comes out as (w0, h0), but the kernel samples with
            # the scale factor, so the factor itself (not the size) must be passed to reproduce the weights.
            offset = self.interpolate_offset
            kwargs: dict[str, Any] = {"scale_factor": ((w0 + offset) / M, (h0 + offset) / M)}
        else:
            kwargs = {"size": (w0, h0)}
        patch_pos_embed = F.interpolate(
            patch_pos_embed.reshape(1, M, M, dim).permute(0, 3, 1, 2),
            mode="bicubic",
            antialias=self.interpolate_antialias,
            **kwargs,
        )
        patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).reshape(1, -1, dim)
        return torch.cat((class_pos_embed.unsqueeze(0), patch_pos_embed), dim=1).to(previous_dtype)

    def _check_input(self, x: Tensor) -> None:
        check_image_batch(x, self.patch_size, " (the extractor's .transform gives 224×224)")

    def prepare_tokens_with_masks(self, x: Tensor, masks: Tensor | None = None) -> Tensor:
        self._check_input(x)
        B, _, w, h = x.shape
        x = self.patch_embed(x)
        if masks is not None:
            x = torch.where(masks.unsqueeze(-1), self.mask_token.to(x.dtype).unsqueeze(0), x)
        x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)
        x = x + self.interpolate_pos_encoding(x, w, h)
        if self.register_tokens is not None:
            x = torch.cat((x[:, :1], self.register_tokens.expand(B, -1, -1), x[:, 1:]), dim=1)
        return x

    # -- forward --------------------------------------------------------------------------------------

    def forward_features(self, x: Tensor | list[Tensor], masks: Tensor | list | None = None):
        if isinstance(x, list):  # the official list form; each image size on its own
            masks_list = masks if masks is not None else [None] * len(x)
            return [self.forward_features(xi, mi) for xi, mi in zip(x, masks_list, strict=True)]
        x = self.prepare_tokens_with_masks(x, masks)
        for blk in self.blocks:
            x = blk(x)
        x_norm = self.norm(x)
        r = self.num_register_tokens
        return {
            "x_norm_clstoken": x_norm[:, 0],
            "x_norm_regtokens": x_norm[:, 1 : r + 1],
            "x_norm_patchtokens": x_norm[:, r + 1 :],
            "x_prenorm": x,
            "masks": masks,
        }

    def _get_intermediate_layers_not_chunked(self, x: Tensor, n: int | Sequence[int] = 1) -> list[Tensor]:
        return take_outputs(self.prepare_tokens_with_masks(x), len(self.blocks), n, lambda i, x: self.blocks[i](x))

    def forward(
        self,
        x: Tensor | list[Tensor],
        masks: Tensor | list | None = None,
        is_training: bool = False,
        *,
        cls_shortcut: bool = False,
    ):
        """The normed CLS token (B, D), as the official ``forward``: ``forward_features(x)["x_norm_clstoken"]``
        bit for bit, whatever the batch. ``is_training=True`` gives the forward_features dict instead.

        ``cls_shortcut=True`` (opt-in) computes only the CLS token in the last block: ~1/12 less work at 224 px
        for a 12-block model, but other kernels round differently, so the values are ~1e-6 off the official
        ones and one image's bits change with the batch it is in. Not for features that are cached or compared.
        """
        if not cls_shortcut or is_training or isinstance(x, list) or not len(self.blocks):
            ret = self.forward_features(x, masks)
            return ret if is_training else self.head(ret["x_norm_clstoken"])
        x = self.prepare_tokens_with_masks(x, masks)
        for blk in self.blocks[:-1]:
            x = blk(x)
        return self.head(self.norm(self.blocks[-1].forward_cls(x)[:, 0]))


def build_backbone(spec: ModelSpec, device: str | torch.device | None = None) -> DinoVisionTransformer:
    """The architecture of ``spec``. ``device="meta"`` allocates and initialises nothing (to be loaded with
    ``assign=True``); otherwise parameters get torch's default initialisation."""
    with torch.device(device or "cpu"):
        return DinoVisionTransformer(
            embed_dim=spec.embed_dim,
            depth=spec.depth,
            num_heads=spec.num_heads,
            ffn=spec.ffn,
            ffn_hidden=spec.ffn_hidden,
            num_register_tokens=spec.num_register_tokens,
            interpolate_offset=spec.interpolate_offset,
            interpolate_antialias=spec.interpolate_antialias,
        )
