"""The DINOv2 backbones: architecture facts and the exact shapes of their official state_dicts.

Pure data, no torch: the downloader, the CLI and `invoke list` use it without paying for torch.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from .errors import UnknownModelError

PATCH_SIZE = 14
IMG_SIZE = 518  # the pretraining resolution: pos_embed holds (518/14)^2 = 37^2 patches + CLS
NUM_POS = (IMG_SIZE // PATCH_SIZE) ** 2 + 1
LICENSE = "Apache-2.0"


@dataclass(frozen=True)
class ModelSpec:
    name: str  # the torch.hub entry name, e.g. dinov2_vitb14_reg
    arch: str  # the official folder name, e.g. dinov2_vitb14
    embed_dim: int
    depth: int
    num_heads: int
    ffn: str  # "mlp" or "swiglu"
    num_register_tokens: int

    @property
    def upstream_file(self) -> str:
        reg = "_reg4" if self.num_register_tokens else ""
        return f"{self.arch}{reg}_pretrain.pth"

    @property
    def upstream_path(self) -> str:
        """Path below the base URL in the official layout."""
        return f"{self.arch}/{self.upstream_file}"

    @property
    def hf_repo(self) -> str:
        """The Hugging Face repo holding this model in the transformers layout (``model.safetensors``)."""
        size = {"s": "small", "b": "base", "l": "large", "g": "giant"}[self.arch[len("dinov2_vit")]]
        return f"facebook/dinov2-{'with-registers-' if self.num_register_tokens else ''}{size}"

    @property
    def ffn_hidden(self) -> int:
        hidden = 4 * self.embed_dim
        if self.ffn == "swiglu":  # the official SwiGLUFFNFused rounding: 2/3 of 4·D, to a multiple of 8
            hidden = (int(hidden * 2 / 3) + 7) // 8 * 8
        return hidden

    @property
    def interpolate_offset(self) -> float:
        return 0.0 if self.num_register_tokens else 0.1

    @property
    def interpolate_antialias(self) -> bool:
        return bool(self.num_register_tokens)

    def state_dict_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every key of the official checkpoint (flat, block_chunks=0) with its shape, in file order."""
        d, h = self.embed_dim, self.ffn_hidden
        shapes: dict[str, tuple[int, ...]] = {
            "cls_token": (1, 1, d),
            "pos_embed": (1, NUM_POS, d),
        }
        if self.num_register_tokens:
            shapes["register_tokens"] = (1, self.num_register_tokens, d)
        shapes["mask_token"] = (1, d)
        shapes["patch_embed.proj.weight"] = (d, 3, PATCH_SIZE, PATCH_SIZE)
        shapes["patch_embed.proj.bias"] = (d,)
        if self.ffn == "swiglu":
            ffn = {"mlp.w12.weight": (2 * h, d), "mlp.w12.bias": (2 * h,), "mlp.w3.weight": (d, h), "mlp.w3.bias": (d,)}
        else:
            ffn = {"mlp.fc1.weight": (h, d), "mlp.fc1.bias": (h,), "mlp.fc2.weight": (d, h), "mlp.fc2.bias": (d,)}
        for i in range(self.depth):
            block = {
                "norm1.weight": (d,),
                "norm1.bias": (d,),
                "attn.qkv.weight": (3 * d, d),
                "attn.qkv.bias": (3 * d,),
                "attn.proj.weight": (d, d),
                "attn.proj.bias": (d,),
                "ls1.gamma": (d,),
                "norm2.weight": (d,),
                "norm2.bias": (d,),
                **ffn,
                "ls2.gamma": (d,),
            }
            shapes.update({f"blocks.{i}.{k}": v for k, v in block.items()})
        shapes["norm.weight"] = (d,)
        shapes["norm.bias"] = (d,)
        return shapes

    @property
    def num_params(self) -> int:
        total = 0
        for shape in self.state_dict_shapes().values():
            n = 1
            for s in shape:
                n *= s
            total += n
        return total


def _spec(arch: str, dim: int, depth: int, heads: int, ffn: str, registers: int) -> ModelSpec:
    name = f"{arch}_reg" if registers else arch
    return ModelSpec(name, arch, dim, depth, heads, ffn, registers)


_ARCHS = [
    ("dinov2_vits14", 384, 12, 6, "mlp"),
    ("dinov2_vitb14", 768, 12, 12, "mlp"),
    ("dinov2_vitl14", 1024, 24, 16, "mlp"),
    ("dinov2_vitg14", 1536, 40, 24, "swiglu"),
]
CATALOG: dict[str, ModelSpec] = {
    spec.name: spec for registers in (0, 4) for spec in (_spec(*arch, registers) for arch in _ARCHS)
}
MODEL_NAMES: tuple[str, ...] = tuple(CATALOG)


def get_spec(name: str) -> ModelSpec:
    """The spec of a torch.hub model name; an unknown name suggests the closest valid ones."""
    try:
        return CATALOG[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), MODEL_NAMES, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(close)}? / 您是否想用 {' 或 '.join(close)}？ " if close else ""
        raise UnknownModelError(
            f"unknown model {name!r} / 未知模型 {name!r}",
            f"{hint}valid names / 可用名称: {', '.join(MODEL_NAMES)}",
        ) from None
