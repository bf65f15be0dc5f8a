"""The layers and helpers the networks share (DINOv2 ViT, DINOv3 ViT, DINOv3 ConvNeXt), with the official
parameter names: patch embedding, MLP, LayerScale, the input check, the head, the ``get_intermediate_layers``
selection and split. Each network's own attention and blocks stay in its module."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class PatchEmbed(nn.Module):
    """(B, 3, H, W) → (B, H/p · W/p, D) by one strided convolution."""

    def __init__(self, embed_dim: int, patch_size: int, in_chans: int = 3):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_values: float = 1.0):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init_values))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


def check_image_batch(x: Tensor, patch: int | None = None, hint: str = "") -> None:
    """A ValueError saying what to do unless ``x`` is an image batch (B, 3, H, W) with sides multiples of ``patch``."""
    if x.ndim != 4:
        raise ValueError(f"expected an image batch (B, 3, H, W), got a tensor of shape {tuple(x.shape)} / "
                         "输入应为图片批次 (B, 3, H, W)")
    H, W = x.shape[-2:]
    if patch and (H % patch or W % patch):
        fit = f"{max(patch, H // patch * patch)}×{max(patch, W // patch * patch)}"
        raise ValueError(f"input height and width must be multiples of the patch size {patch}, got {H}×{W}: resize "
                         f"or crop to e.g. {fit}{hint} / 输入的高和宽须为 {patch} 的倍数，请缩放或裁剪，例如 {fit}")


def head_of(head, features):
    """The official ``forward`` after ``forward_features``: ``head`` of the normed CLS token, per image list too."""
    if isinstance(features, list):
        return [head(f["x_norm_clstoken"]) for f in features]
    return head(features["x_norm_clstoken"])


def take_outputs(x, total: int, n: int | Sequence[int], step, what: str = "blocks") -> list:
    """Run ``step(i, x)`` for i in 0..total-1 and keep the outputs of the last ``n`` layers, or of those listed in
    ``n`` (the official ``get_intermediate_layers`` selection, for every network here)."""
    wanted = range(total - n, total) if isinstance(n, int) else n
    output = []
    for i in range(total):
        x = step(i, x)
        if i in wanted:
            output.append(x)
    if len(output) != len(wanted):
        raise ValueError(f"only {len(output)} of the {len(wanted)} requested {what} exist (depth {total}) / "
                         f"请求的层超出网络深度 {total}")
    return output


# per selected layer: class token (B, D), extra tokens (B, k, D), patch tokens (B, h·w, D), grid (h, w)
LayerTokens = tuple[Tensor, Tensor, Tensor, tuple]


class IntermediateLayers:
    """The official ``get_intermediate_layers``, one front for the three networks: DINOv2's argument order and
    DINOv3's keyword ``return_extra_tokens`` (register/storage tokens; a ConvNeXt has none). A network gives
    ``_layer_tokens``: per selected layer its class token, extra tokens, patch tokens and grid."""

    def _layer_tokens(self, x: Tensor, n: int | Sequence[int], norm: bool) -> list[LayerTokens]:
        raise NotImplementedError

    def get_intermediate_layers(
        self,
        x: Tensor,
        n: int | Sequence[int] = 1,
        reshape: bool = False,
        return_class_token: bool = False,
        norm: bool = True,
        *,
        return_extra_tokens: bool = False,
    ) -> tuple:
        """Outputs of the last ``n`` blocks/stages (or of those listed in ``n``), as the official method: patch
        tokens (B, h·w, D), or maps (B, D, h, w) with ``reshape``; with the class token and/or the extra tokens
        when asked."""
        layers = self._layer_tokens(x, n, norm)
        patches = [p.reshape(len(p), *grid, -1).permute(0, 3, 1, 2).contiguous() if reshape else p
                   for _, _, p, grid in layers]
        parts = [patches]
        if return_class_token:
            parts.append([cls for cls, _, _, _ in layers])
        if return_extra_tokens:
            parts.append([extra for _, extra, _, _ in layers])
        return tuple(patches) if len(parts) == 1 else tuple(zip(*parts, strict=True))


class ViTIntermediateLayers(IntermediateLayers):
    """A ViT's layer tokens: each block's output (B, 1 + k + h·w, D), normed by ``self.norm`` when asked, split
    after the class token and the ``self.n_extra_tokens`` register/storage tokens."""

    n_extra_tokens: int
    patch_size: int

    def _layer_tokens(self, x: Tensor, n: int | Sequence[int], norm: bool) -> list[LayerTokens]:
        outputs = self._get_intermediate_layers_not_chunked(x, n)  # type: ignore[attr-defined]
        if norm:
            outputs = [self.norm(out) for out in outputs]  # type: ignore[attr-defined]
        k, grid = self.n_extra_tokens, (x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size)
        return [(out[:, 0], out[:, 1 : k + 1], out[:, k + 1 :], grid) for out in outputs]
