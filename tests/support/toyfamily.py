"""A model family defined outside the package (tests/test_family.py): one catalog row and its network, nothing else.

It is what a plug-in family is: a ``Family`` (dinovault/catalog/family.py) with its rows and the network that builds
them; no converter (it has no hub layout). Processes started by a test register it through
``DINOVAULT_FAMILIES=tests.support.toyfamily:FAMILY``; an installed plug-in would name ``FAMILY`` under the
entry-point group ``dinovault.families`` instead.
"""

from __future__ import annotations

import io

from dinovault.catalog.family import Family
from dinovault.catalog.spec import ModelSpec

NAME = "toyfam"
MODEL = "toyfam_tiny"
FILE = f"{MODEL}_pretrain.pth"
DIM, PATCH = 8, 16


def shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    d, p = spec.embed_dim, spec.patch_size
    return {"proj.weight": (d, 3, p, p), "proj.bias": (d,), "norm.weight": (d,), "norm.bias": (d,)}


ROW = ModelSpec(
    name=MODEL, family=NAME, arch=MODEL, upstream_file=FILE, upstream_path=f"{MODEL}/{FILE}",
    base_url="https://toyfam.invalid/weights", license="MIT", builder="toy_net", patch_size=PATCH, img_size=224,
    embed_dim=DIM, depth=1, num_heads=1, ffn="mlp", ffn_hidden=DIM, shapes=shapes,
)
FAMILY = Family(
    name=NAME, title="ToyFam", rows=(ROW,), networks={"toy_net": f"{__name__}:build"},
    select_key="toyfam_models", save_dir_key="toyfam_save_dir", default_save_dir="models/toyfam",
    stage="fetch_toyfam", features_key="toyfam_features", features_stage="features_toyfam",
    select_hint="the ToyFam models (a test's plug-in family) / 测试用模型族",
)


def build(spec: ModelSpec, device=None):
    """A patch embedding and a norm: ``model(x)`` the normed mean token (B, D), ``forward_features`` the dict the
    extractor reads."""
    import torch
    from torch import nn

    class ToyNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Conv2d(3, spec.embed_dim, spec.patch_size, spec.patch_size, device=device)
            self.norm = nn.LayerNorm(spec.embed_dim, device=device)

        def forward_features(self, x: torch.Tensor) -> dict:
            tokens = self.norm(self.proj(x).flatten(2).transpose(1, 2))
            return {"x_norm_clstoken": tokens.mean(1), "x_norm_patchtokens": tokens}

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.forward_features(x)["x_norm_clstoken"]

    return ToyNet()


def checkpoint_bytes(seed: int = 0) -> bytes:
    """The family's "official" file: a state_dict of random weights, as torch.save writes it."""
    import torch

    torch.manual_seed(seed)
    buf = io.BytesIO()
    torch.save(build(ROW).state_dict(), buf)
    return buf.getvalue()
