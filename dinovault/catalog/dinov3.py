"""The DINOv3 backbones (facebookresearch/dinov3): one row per torch.hub entry and weights, and their official
state_dict shapes.

Facts from the official ``dinov3/hub/backbones.py``: patch 16, pretrained at 224 px, the DINOv3 License. Files are
``dinov3_<arch>/dinov3_<arch>_pretrain_<lvd1689m|sat493m>-<hash8>.pth``, ``hash8`` being the first 8 hex digits
of the file's SHA-256. The ViTs use RoPE (base 100, coordinates normalised per side, float32), 4 storage tokens
(in ``num_register_tokens``), layer scale, LayerNorm eps 1e-5, a masked key bias, an MLP (S, B, L) or SwiGLU
(S+, L+, H+, 7B) feed-forward; ``vitl16``'s SAT-493M weights and both 7B weights add ``local_cls_norm`` (a
training-only norm). ConvNeXt T/S/B/L: 4 stages, LayerNorm eps 1e-6, layer scale.

Names: the official hub entry names; the official hub chooses the SAT-493M weights with ``weights=SAT493M`` on
the same entry, so here those rows take the suffix ``_sat``: ``dinov3_vitl16_sat`` and ``dinov3_vit7b16_sat``.
SAT-493M models preprocess with their own mean and std (official README).

The key order is the official model's ``state_dict()`` order (module registration order), which is what
``torch.save(model.state_dict())`` writes.
"""

from __future__ import annotations

from .family import Family
from .spec import ModelSpec, vit_block_shapes

FAMILY = "dinov3"
BASE_URL = "https://dl.fbaipublicfiles.com/dinov3"
LICENSE = "DINOv3 License"
PATCH_SIZE = 16
IMG_SIZE = 224
ROPE_BASE = 100.0
ROPE_RESCALE_COORDS = 2.0  # training-time augmentation only: coordinates scaled by a log-uniform factor in [1/2, 2]
STORAGE_TOKENS = 4
LAYERSCALE_INIT = 1e-5  # ViT; ConvNeXt 1e-6
VIT_NORM_EPS = 1e-5  # the official "layernormbf16"
CONVNEXT_NORM_EPS = 1e-6
SAT_SUFFIX = "_sat"
SAT_MEAN = (0.430, 0.411, 0.296)
SAT_STD = (0.213, 0.156, 0.143)
_WEIGHTS = {"LVD1689M": "lvd1689m", "SAT493M": "sat493m"}


def vit_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Every key of an official DINOv3 ViT checkpoint with its shape, in file order."""
    d, h, p = spec.embed_dim, spec.ffn_hidden, spec.patch_size
    shapes: dict[str, tuple[int, ...]] = {
        "cls_token": (1, 1, d),
        "storage_tokens": (1, spec.num_register_tokens, d),
        "mask_token": (1, d),
        "patch_embed.proj.weight": (d, 3, p, p),
        "patch_embed.proj.bias": (d,),
        "rope_embed.periods": (d // spec.num_heads // 4,),
    }
    qkv: dict[str, tuple[int, ...]] = {"attn.qkv.weight": (3 * d, d)}
    if spec.qkv_bias:
        qkv["attn.qkv.bias"] = (3 * d,)
        if spec.mask_k_bias:
            qkv["attn.qkv.bias_mask"] = (3 * d,)
    if spec.ffn == "swiglu":
        ffn = {"mlp.w1.weight": (h, d), "mlp.w1.bias": (h,), "mlp.w2.weight": (h, d), "mlp.w2.bias": (h,),
               "mlp.w3.weight": (d, h), "mlp.w3.bias": (d,)}
    else:
        ffn = {"mlp.fc1.weight": (h, d), "mlp.fc1.bias": (h,), "mlp.fc2.weight": (d, h), "mlp.fc2.bias": (d,)}
    shapes.update(vit_block_shapes(spec.depth, d, qkv, ffn))
    if spec.local_cls_norm:
        shapes["local_cls_norm.weight"] = (d,)
        shapes["local_cls_norm.bias"] = (d,)
    return shapes


def convnext_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Every key of an official DINOv3 ConvNeXt checkpoint with its shape, in file order. The final norm is
    stored twice, as ``norm.*`` and ``norms.3.*`` (the official model registers the one module under both)."""
    dims = spec.dims
    shapes: dict[str, tuple[int, ...]] = {
        "downsample_layers.0.0.weight": (dims[0], 3, 4, 4), "downsample_layers.0.0.bias": (dims[0],),
        "downsample_layers.0.1.weight": (dims[0],), "downsample_layers.0.1.bias": (dims[0],),
    }
    for i in range(1, 4):
        shapes[f"downsample_layers.{i}.0.weight"] = (dims[i - 1],)
        shapes[f"downsample_layers.{i}.0.bias"] = (dims[i - 1],)
        shapes[f"downsample_layers.{i}.1.weight"] = (dims[i], dims[i - 1], 2, 2)
        shapes[f"downsample_layers.{i}.1.bias"] = (dims[i],)
    for i, (c, n) in enumerate(zip(dims, spec.depths, strict=True)):
        block = {
            "gamma": (c,), "dwconv.weight": (c, 1, 7, 7), "dwconv.bias": (c,),
            "norm.weight": (c,), "norm.bias": (c,),
            "pwconv1.weight": (4 * c, c), "pwconv1.bias": (4 * c,),
            "pwconv2.weight": (c, 4 * c), "pwconv2.bias": (c,),
        }
        for j in range(n):
            shapes.update({f"stages.{i}.{j}.{k}": v for k, v in block.items()})
    for prefix in ("norm", "norms.3"):
        shapes[f"{prefix}.weight"] = (dims[-1],)
        shapes[f"{prefix}.bias"] = (dims[-1],)
    return shapes


def _swiglu_hidden(dim: int, ratio: float, align: int) -> int:
    """The official SwiGLUFFN width: 2/3 of ratio·D, rounded up to a multiple of ``align``."""
    d = int(int(dim * ratio) * 2 / 3)
    return d + (-d % align)


def _common(arch: str, weights: str, hash8: str) -> dict:
    file = f"{arch}_pretrain_{_WEIGHTS[weights]}-{hash8}.pth"
    sat = weights == "SAT493M"
    return dict(
        name=arch + (SAT_SUFFIX if sat else ""), family=FAMILY, arch=arch, upstream_file=file,
        upstream_path=f"{arch}/{file}", base_url=BASE_URL, license=LICENSE, patch_size=PATCH_SIZE,
        img_size=IMG_SIZE, weights=weights, hash_prefix=hash8,
        mean=SAT_MEAN if sat else ModelSpec.mean, std=SAT_STD if sat else ModelSpec.std,
    )


def _hubs(repo: str | None) -> tuple[tuple[str, str], ...]:
    return (("hf", repo), ("ms", repo)) if repo else ()  # ModelScope mirrors the Hugging Face repository names


def _vit(arch, weights, hash8, dim, depth, heads, ffn, ratio, *, qkv_bias=True, align=8, local_cls_norm=False,
         hf=True) -> ModelSpec:
    hidden = _swiglu_hidden(dim, ratio, align) if ffn == "swiglu" else int(dim * ratio)
    size = arch.removeprefix("dinov3_")
    return ModelSpec(
        **_common(arch, weights, hash8), builder="dinov3_vit", embed_dim=dim, depth=depth, num_heads=heads,
        ffn=ffn, ffn_hidden=hidden, num_register_tokens=STORAGE_TOKENS, rope_base=ROPE_BASE, qkv_bias=qkv_bias,
        mask_k_bias=True, norm_eps=VIT_NORM_EPS, local_cls_norm=local_cls_norm,
        hub_repos=_hubs(f"facebook/dinov3-{size}-pretrain-{_WEIGHTS[weights]}" if hf else None), shapes=vit_shapes,
    )


def _convnext(size: str, hash8: str, dims: tuple[int, ...], depths: tuple[int, ...]) -> ModelSpec:
    return ModelSpec(
        **_common(f"dinov3_convnext_{size}", "LVD1689M", hash8), builder="dinov3_convnext", embed_dim=dims[-1],
        depth=len(depths), num_heads=0, ffn="mlp", ffn_hidden=4 * dims[-1], norm_eps=CONVNEXT_NORM_EPS,
        dims=dims, depths=depths, hub_repos=_hubs(f"facebook/dinov3-convnext-{size}-pretrain-lvd1689m"),
        shapes=convnext_shapes,
    )


ROWS: tuple[ModelSpec, ...] = (
    _vit("dinov3_vits16", "LVD1689M", "08c60483", 384, 12, 6, "mlp", 4),
    _vit("dinov3_vits16plus", "LVD1689M", "4057cbaa", 384, 12, 6, "swiglu", 6),
    _vit("dinov3_vitb16", "LVD1689M", "73cec8be", 768, 12, 12, "mlp", 4),
    _vit("dinov3_vitl16", "LVD1689M", "8aa4cbdd", 1024, 24, 16, "mlp", 4),
    # in backbones.py and hubconf.py, but in neither the README's tables nor the Hugging Face collection
    _vit("dinov3_vitl16plus", "LVD1689M", "46503df0", 1024, 24, 16, "swiglu", 6, hf=False),
    _vit("dinov3_vith16plus", "LVD1689M", "7c1da9a5", 1280, 32, 20, "swiglu", 6),
    _vit("dinov3_vit7b16", "LVD1689M", "a955f4ea", 4096, 40, 32, "swiglu", 3, qkv_bias=False, align=64,
         local_cls_norm=True),
    _vit("dinov3_vitl16", "SAT493M", "eadcf0ff", 1024, 24, 16, "mlp", 4, local_cls_norm=True),
    _vit("dinov3_vit7b16", "SAT493M", "a6675841", 4096, 40, 32, "swiglu", 3, qkv_bias=False, align=64,
         local_cls_norm=True),
    _convnext("tiny", "21b726bb", (96, 192, 384, 768), (3, 3, 9, 3)),
    _convnext("small", "296db49d", (96, 192, 384, 768), (3, 3, 27, 3)),
    _convnext("base", "801f2ba9", (128, 256, 512, 1024), (3, 3, 27, 3)),
    _convnext("large", "61fa432d", (192, 384, 768, 1536), (3, 3, 27, 3)),
)

FAMILY_SPEC = Family(
    name=FAMILY, title="DINOv3", rows=ROWS,
    networks={"dinov3_vit": "dinovault.model.dinov3_vit:build", "dinov3_convnext": "dinovault.model.convnext:build"},
    select_key="dinov3_models", save_dir_key="dinov3_save_dir", default_save_dir="models/dinov3",
    stage="fetch_dinov3", features_key="dinov3_features", features_stage="features_dinov3",
    conversion="dinovault.model.hf_dinov3",
    select_hint="the DINOv3 models (their own stage and folder; README: DINOv3) / DINOv3 模型",
    stage_note="Its signed download link is a credential: it reaches the command through the environment "
               "(DINOV3_URL, set by `invoke fetch --url`), never this file.",
    token_word="storage tokens",
    # the official README's transform: to a uint8 tensor, a square resize to 256x256 (bilinear, antialiased), no
    # crop, to float, the row's mean/std
    eval_resize=(256, 256), eval_interpolation="bilinear", eval_crop=None, eval_on_tensor=True,
)
