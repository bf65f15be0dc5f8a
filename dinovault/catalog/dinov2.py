"""The DINOv2 backbones (facebookresearch/dinov2): one row per torch.hub entry, and their official state_dict shapes.

Facts from the official hub code: patch 14, pretrained at 518 px, Apache-2.0; ``_reg`` entries add 4 register
tokens, their files say ``reg4``, and they resize position embeddings with antialiasing and no offset.
"""

from __future__ import annotations

from .family import Family
from .spec import ModelSpec, vit_block_shapes

FAMILY = "dinov2"
BASE_URL = "https://dl.fbaipublicfiles.com/dinov2"
LICENSE = "Apache-2.0"
PATCH_SIZE = 14
IMG_SIZE = 518  # pos_embed holds (518/14)^2 = 37^2 patches + CLS
_HF_SIZES = {"s": "small", "b": "base", "l": "large", "g": "giant"}


def state_dict_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Every key of the official checkpoint (flat, block_chunks=0) with its shape, in file order."""
    d, h, p = spec.embed_dim, spec.ffn_hidden, spec.patch_size
    shapes: dict[str, tuple[int, ...]] = {
        "cls_token": (1, 1, d),
        "pos_embed": (1, (spec.img_size // p) ** 2 + 1, d),
    }
    if spec.num_register_tokens:
        shapes["register_tokens"] = (1, spec.num_register_tokens, d)
    shapes["mask_token"] = (1, d)
    shapes["patch_embed.proj.weight"] = (d, 3, p, p)
    shapes["patch_embed.proj.bias"] = (d,)
    if spec.ffn == "swiglu":
        ffn = {"mlp.w12.weight": (2 * h, d), "mlp.w12.bias": (2 * h,), "mlp.w3.weight": (d, h), "mlp.w3.bias": (d,)}
    else:
        ffn = {"mlp.fc1.weight": (h, d), "mlp.fc1.bias": (h,), "mlp.fc2.weight": (d, h), "mlp.fc2.bias": (d,)}
    qkv = {"attn.qkv.weight": (3 * d, d), "attn.qkv.bias": (3 * d,)}
    shapes.update(vit_block_shapes(spec.depth, d, qkv, ffn))
    return shapes


def _ffn_hidden(dim: int, ffn: str) -> int:
    hidden = 4 * dim
    if ffn == "swiglu":  # the official SwiGLUFFNFused rounding: 2/3 of 4·D, to a multiple of 8
        hidden = (int(hidden * 2 / 3) + 7) // 8 * 8
    return hidden


def _row(arch: str, dim: int, depth: int, heads: int, ffn: str, registers: int) -> ModelSpec:
    file = f"{arch}{'_reg4' if registers else ''}_pretrain.pth"
    size = _HF_SIZES[arch[len("dinov2_vit")]]
    hf = f"facebook/dinov2-{'with-registers-' if registers else ''}{size}"
    return ModelSpec(
        name=f"{arch}_reg" if registers else arch, family=FAMILY, arch=arch, upstream_file=file,
        upstream_path=f"{arch}/{file}", base_url=BASE_URL, license=LICENSE, builder="dinov2_vit",
        patch_size=PATCH_SIZE, img_size=IMG_SIZE, embed_dim=dim, depth=depth, num_heads=heads, ffn=ffn,
        ffn_hidden=_ffn_hidden(dim, ffn), num_register_tokens=registers,
        interpolate_offset=0.0 if registers else 0.1, interpolate_antialias=bool(registers),
        hub_repos=(("hf", hf),), shapes=state_dict_shapes,
    )


_ARCHS = [
    ("dinov2_vits14", 384, 12, 6, "mlp"),
    ("dinov2_vitb14", 768, 12, 12, "mlp"),
    ("dinov2_vitl14", 1024, 24, 16, "mlp"),
    ("dinov2_vitg14", 1536, 40, 24, "swiglu"),
]
ROWS: tuple[ModelSpec, ...] = tuple(_row(*arch, registers) for registers in (0, 4) for arch in _ARCHS)

FAMILY_SPEC = Family(
    name=FAMILY, title="DINOv2", rows=ROWS, networks={"dinov2_vit": "dinovault.model.backbone:build_backbone"},
    select_key="models", save_dir_key="save_dir", default_save_dir="models/dinov2", stage="fetch",
    features_key="features", features_stage="features", conversion="dinovault.model.hf_dinov2",
    default_models=("dinov2_vits14", "dinov2_vitb14"),
    select_hint="the DINOv2 models `dvc repro` keeps in save_dir (torch.hub names); `dinovault fetch --model NAME` "
                "adds one / 选择的模型",
    # the official evaluation preprocessing: shorter side to 256 (bicubic, on the PIL image), centre crop 224, then
    # the row's mean/std
    eval_resize=256, eval_interpolation="bicubic", eval_crop=224, eval_on_tensor=False,
)
