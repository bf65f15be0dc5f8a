"""The DINOv3 ConvNeXt backbones (T/S/B/L): the official state_dict keys and the official forward, in plain torch.

Names mirror facebookresearch/dinov3 (``dinov3/models/convnext.py``), so the published checkpoints load with
``strict=True``, and the arithmetic follows it operation for operation, so on CPU float32 ``forward_features``
and ``get_intermediate_layers`` are bit-identical to it. Built as the official hub entries build it: no pseudo
patch size, so intermediate feature maps keep their own resolution (stride 4, 8, 16, 32).

The token view the DINO heads expect: the "CLS token" is the global average of the last feature map, prepended to
its h·w positions and normalised with them; there are no storage tokens. The final norm is registered twice, as
``norm`` and as ``norms[3]`` (``norms[0..2]`` are identities): the official files hold both copies.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..catalog import ModelSpec
from ..catalog.dinov3 import CONVNEXT_NORM_EPS
from .layers import IntermediateLayers, LayerTokens, check_image_batch, head_of, take_outputs

LAYERSCALE_INIT = 1e-6


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over the channels of (B, C, H, W), written out as the official code does (mean, biased
    variance, division by the square root), which is not F.layer_norm's arithmetic."""

    def __init__(self, dim: int, eps: float = CONVNEXT_NORM_EPS):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class Block(nn.Module):
    """Depthwise 7×7 conv, then channels-last LayerNorm, 4× MLP and layer scale, added to the input."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=CONVNEXT_NORM_EPS)  # F.layer_norm, as the official channels_last norm
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), LAYERSCALE_INIT))

    def forward(self, x: Tensor) -> Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)  # (B, C, H, W) -> (B, H, W, C)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).permute(0, 3, 1, 2)


class ConvNeXt(IntermediateLayers, nn.Module):
    """DINOv3 ConvNeXt backbone with the official attributes, state_dict keys and forward methods."""

    def __init__(self, dims: Sequence[int], depths: Sequence[int], in_chans: int = 3):
        super().__init__()
        self.downsample_layers = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(in_chans, dims[0], kernel_size=4, stride=4), ChannelsFirstLayerNorm(dims[0]))]
        )
        for i in range(3):
            self.downsample_layers.append(
                nn.Sequential(ChannelsFirstLayerNorm(dims[i]), nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2))
            )
        stages = (nn.Sequential(*(Block(d) for _ in range(n))) for d, n in zip(dims, depths, strict=True))
        self.stages = nn.ModuleList(stages)
        self.norm = nn.LayerNorm(dims[-1], eps=CONVNEXT_NORM_EPS)
        self.head = nn.Identity()
        self.embed_dim = dims[-1]
        self.embed_dims = list(dims)
        self.n_blocks = len(self.downsample_layers)  # 4: get_intermediate_layers counts stages
        self.chunked_blocks = False
        self.n_storage_tokens = 0
        self.norms = nn.ModuleList([nn.Identity() for _ in range(3)] + [self.norm])
        self.patch_size = None  # the hub entries' setting: no resizing of intermediate maps
        self.input_pad_size = 4

    def init_weights(self) -> None:
        """The official initialisation: convolutions and linear layers truncated-normal (std 0.02) with zero
        bias, norms 1 and 0, layer scale 1e-6."""
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, (nn.LayerNorm, ChannelsFirstLayerNorm)):
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)
                elif isinstance(module, (nn.Conv2d, nn.Linear)):
                    nn.init.trunc_normal_(module.weight, std=0.02)
                    nn.init.zeros_(module.bias)
                elif isinstance(module, Block):
                    nn.init.constant_(module.gamma, LAYERSCALE_INIT)

    def _check_input(self, x: Tensor) -> None:
        check_image_batch(x)

    def _stage(self, x: Tensor, i: int) -> Tensor:
        return self.stages[i](self.downsample_layers[i](x))

    def forward_features(self, x: Tensor | list[Tensor], masks: Tensor | list | None = None):
        if isinstance(x, list):
            masks_list = masks if masks is not None else [None] * len(x)
            return [self.forward_features(xi, mi) for xi, mi in zip(x, masks_list, strict=True)]
        self._check_input(x)
        for i in range(4):
            x = self._stage(x, i)
        x_pool = x.mean([-2, -1])  # (B, C): the "CLS token"
        x = torch.flatten(x, 2).transpose(1, 2)  # (B, h·w, C)
        x_norm = self.norm(torch.cat([x_pool.unsqueeze(1), x], dim=1))
        s = self.n_storage_tokens
        return {
            "x_norm_clstoken": x_norm[:, 0],
            "x_storage_tokens": x_norm[:, 1 : s + 1],
            "x_norm_patchtokens": x_norm[:, s + 1 :],
            "x_prenorm": x,  # the patch tokens only, as the official code returns them
            "masks": masks,
        }

    def forward(self, x: Tensor | list[Tensor], masks: Tensor | list | None = None, is_training: bool = False):
        """The normed pooled token (B, C); ``is_training=True`` gives the forward_features dict instead."""
        ret = self.forward_features(x, masks)
        return ret if is_training else head_of(self.head, ret)

    def _layer_tokens(self, x: Tensor, n: int | Sequence[int], norm: bool) -> list[LayerTokens]:
        """Each selected stage's map as the official method gives it: pooled (B, C) and flattened (B, h·w, C), both
        through the stage's norm when asked (only the last stage has one; the others' are identities)."""
        self._check_input(x)
        maps = take_outputs(x, len(self.downsample_layers), n, lambda i, x: self._stage(x, i), what="stages")
        norms = self.norms[-n:] if isinstance(n, int) else [self.norms[i] for i in n]
        if not norm:
            norms = [nn.Identity()] * len(maps)
        return [(nm(m.mean([-2, -1])), m.new_zeros(len(m), 0, m.shape[1]), nm(m.flatten(-2, -1).permute(0, 2, 1)),
                 tuple(m.shape[-2:])) for m, nm in zip(maps, norms, strict=True)]


def build(spec: ModelSpec, device: str | torch.device | None = None) -> ConvNeXt:
    """The architecture of ``spec``; ``device="meta"`` allocates nothing (to be loaded with ``assign=True``)."""
    if spec.builder != "dinov3_convnext":
        raise ValueError(f"{spec.name} is not a DINOv3 ConvNeXt (builder {spec.builder!r})")
    with torch.device(device or "cpu"):
        return ConvNeXt(spec.dims, spec.depths)


__all__ = ["ConvNeXt", "build"]
