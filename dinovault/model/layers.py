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


def vit_intermediate_layers(outputs: list[Tensor], x: Tensor, norm: nn.Module | None, n_prefix: int, patch: int, *,
                            reshape: bool, return_class_token: bool, return_extra_tokens: bool = False) -> tuple:
    """The official ViT ``get_intermediate_layers`` after the blocks ran, for DINOv2 and DINOv3 alike: ``outputs``
    (each (B, 1 + n_prefix + patches, D)) normed by ``norm`` when given, split into patch tokens (maps (B, D, h, w)
    with ``reshape``), the class token and the ``n_prefix`` register/storage tokens after it."""
    if norm is not None:
        outputs = [norm(out) for out in outputs]
    class_tokens = [out[:, 0] for out in outputs]
    extra_tokens = [out[:, 1 : n_prefix + 1] for out in outputs]
    outputs = [out[:, n_prefix + 1 :] for out in outputs]
    if reshape:
        B, _, h, w = x.shape
        outputs = [out.reshape(B, h // patch, w // patch, -1).permute(0, 3, 1, 2).contiguous() for out in outputs]
    parts = [outputs]
    if return_class_token:
        parts.append(class_tokens)
    if return_extra_tokens:
        parts.append(extra_tokens)
    return tuple(outputs) if len(parts) == 1 else tuple(zip(*parts, strict=True))
