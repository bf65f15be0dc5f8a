"""Official DINOv3 state_dict ↔ the Hugging Face on-disk layout (``model.safetensors`` of facebook/dinov3-*).

The Hugging Face files (written by transformers' convert_dinov3_vit_to_hf.py) rename keys, split the packed
``qkv`` into ``q_proj``/``k_proj``/``v_proj``, give ``mask_token`` a middle axis (1, 1, D), and leave out the
tensors no inference needs:

- ``rope_embed.periods``: rebuilt with the official float32 formula ``base ** (2·arange(D_head/4) / (D_head/2))``;
- ``attn.qkv.bias_mask`` and the key third of ``attn.qkv.bias`` (masked, so never used): rebuilt as the released
  files hold them, zeros (dinov3 #195: every qkv.bias and qkv.bias_mask of the released ViTs sums to 0). A
  Hugging Face copy with non-zero query or value biases gets the official mask (1, 0, 1 by thirds), which keeps
  them, and a zero key bias;
- ``local_cls_norm.*`` (vitl16 SAT-493M, vit7b16): a norm used only for training crops, not in the Hugging Face
  copies. Rebuilt as a fresh LayerNorm (weight 1, bias 0): the outputs are the same, but these two tensors differ
  from the official file's (``RECONSTRUCTED_INEXACT``);
- ConvNeXt ``norms.3.*``: the official files store the final norm twice; rebuilt as a copy of ``norm.*``.

Otherwise tensors are moved, never cast or recomputed: official → Hugging Face → official is bit-identical in the
official key order whenever ``round_trip_losses`` is empty, as it is for the released files (except the
``local_cls_norm`` pair). The Hugging Face ViT files name blocks ``layer.N`` and ConvNeXt stages ``stages.N``;
transformers 5 adds ``model.`` when loading. No transformers needed here; torch only in the tensor functions.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..catalog import ModelSpec
from ..catalog.dinov3 import CONVNEXT_NORM_EPS, IMG_SIZE, PATCH_SIZE, ROPE_BASE, ROPE_RESCALE_COORDS

_VIT_TOP = {
    "cls_token": "embeddings.cls_token",
    "storage_tokens": "embeddings.register_tokens",
    "mask_token": "embeddings.mask_token",
    "patch_embed.proj.weight": "embeddings.patch_embeddings.weight",
    "patch_embed.proj.bias": "embeddings.patch_embeddings.bias",
    "norm.weight": "norm.weight",
    "norm.bias": "norm.bias",
}
_VIT_BLOCK = {
    "norm1": "norm1", "norm2": "norm2", "attn.proj": "attention.o_proj",
    "ls1.gamma": "layer_scale1.lambda1", "ls2.gamma": "layer_scale2.lambda1",
    "mlp.fc1": "mlp.up_proj", "mlp.fc2": "mlp.down_proj",
    "mlp.w1": "mlp.gate_proj", "mlp.w2": "mlp.up_proj", "mlp.w3": "mlp.down_proj",
}
_CONVNEXT_BLOCK = {
    "gamma": "gamma", "dwconv": "depthwise_conv", "norm": "layer_norm",
    "pwconv1": "pointwise_conv1", "pwconv2": "pointwise_conv2",
}
_QKV = ("q_proj", "k_proj", "v_proj")
RECONSTRUCTED_INEXACT = ("local_cls_norm.weight", "local_cls_norm.bias")


def hf_name(key: str, spec: ModelSpec) -> str | tuple[str, ...] | None:
    """The Hugging Face name of an official key; for ``attn.qkv.*`` the names its thirds go to (the key bias
    has none); None for a tensor the Hugging Face files leave out."""
    if spec.builder == "dinov3_convnext":
        return _convnext_name(key)
    if key in _VIT_TOP:
        return _VIT_TOP[key]
    if key == "rope_embed.periods" or key.startswith("local_cls_norm."):
        return None
    _, index, rest = key.split(".", 2)
    prefix = f"layer.{index}."
    if rest == "attn.qkv.weight":
        return tuple(f"{prefix}attention.{p}.weight" for p in _QKV)
    if rest == "attn.qkv.bias":
        return (f"{prefix}attention.q_proj.bias", f"{prefix}attention.v_proj.bias")
    if rest == "attn.qkv.bias_mask":
        return None
    for official, hf in _VIT_BLOCK.items():
        if rest == official or rest.startswith(official + "."):
            return prefix + hf + rest[len(official):]
    raise KeyError(f"no Hugging Face name for {key!r}")


def _convnext_name(key: str) -> str | None:
    parts = key.split(".")
    if parts[0] == "downsample_layers":  # downsample_layers.i.k.leaf -> stages.i.downsample_layers.k.leaf
        return f"stages.{parts[1]}.downsample_layers.{parts[2]}.{parts[3]}"
    if parts[0] == "stages":  # stages.i.j.module[.leaf] -> stages.i.layers.j.hf_module[.leaf]
        parts[3] = _CONVNEXT_BLOCK[parts[3]]
        return ".".join(["stages", parts[1], "layers", *parts[2:]])
    if parts[0] == "norm":
        return f"layer_norm.{parts[1]}"
    if parts[0] == "norms":
        return None
    raise KeyError(f"no Hugging Face name for {key!r}")


def hf_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Every tensor of ``spec``'s Hugging Face ``model.safetensors`` with its shape."""
    shapes: dict[str, tuple[int, ...]] = {}
    for key, shape in spec.state_dict_shapes().items():
        name = hf_name(key, spec)
        if isinstance(name, tuple):
            shapes.update({n: (shape[0] // 3, *shape[1:]) for n in name})
        elif name == "embeddings.mask_token":
            shapes[name] = (1, 1, shape[-1])
        elif name is not None:
            shapes[name] = shape
    return shapes


def official_to_hf(state_dict: Mapping, spec: ModelSpec) -> dict:
    """The Hugging Face tensors from an official state_dict (contiguous, ready for safetensors)."""
    d = spec.embed_dim
    out = {}
    for key in spec.state_dict_shapes():
        name, tensor = hf_name(key, spec), state_dict[key]
        if isinstance(name, tuple):
            thirds = tensor.split(d, dim=0)
            if len(name) == 2:  # the bias: query and value thirds
                thirds = (thirds[0], thirds[2])
            out.update({n: t.contiguous() for n, t in zip(name, thirds, strict=True)})
        elif name == "embeddings.mask_token":
            out[name] = tensor.reshape(1, 1, d).contiguous()
        elif name is not None:
            out[name] = tensor.contiguous()
    return out


def rope_periods(spec: ModelSpec):
    """The official ``rope_embed.periods`` (float32), as the official code computes them."""
    import torch

    head_dim = spec.embed_dim // spec.num_heads
    assert spec.rope_base is not None, f"{spec.name} has no RoPE"
    return spec.rope_base ** (2 * torch.arange(head_dim // 4, dtype=torch.float32) / (head_dim // 2))


def hf_to_official(hf: Mapping, spec: ModelSpec) -> dict:
    """The official state_dict (official key order) from a Hugging Face one; KeyError names a missing tensor."""
    import torch

    out = {}
    for key, shape in spec.state_dict_shapes().items():
        name = hf_name(key, spec)
        if key.endswith("attn.qkv.weight"):
            assert isinstance(name, tuple)  # the query, key and value names
            out[key] = torch.cat([hf[n] for n in name], dim=0)
        elif key.endswith("attn.qkv.bias"):
            assert isinstance(name, tuple)
            q, v = hf[name[0]], hf[name[1]]
            out[key] = torch.cat([q, torch.zeros_like(q), v], dim=0)
        elif key.endswith("attn.qkv.bias_mask"):
            bias = out[key.removesuffix("_mask")]
            out[key] = _bias_mask(bias) if bias.any() else torch.zeros_like(bias)
        elif key == "rope_embed.periods":
            out[key] = rope_periods(spec)
        elif key.startswith("local_cls_norm."):
            fill = torch.ones if key.endswith("weight") else torch.zeros
            out[key] = fill(shape, dtype=hf["norm.weight"].dtype)
        elif key.startswith("norms."):
            out[key] = out[key.replace("norms.3", "norm", 1)]
        elif name == "embeddings.mask_token":
            out[key] = hf[name].reshape(shape)
        else:
            out[key] = hf[name]
    return out


def _bias_mask(bias):
    """The official initial mask: 1 for the query and value thirds, 0 for the key's."""
    import torch

    mask = torch.ones_like(bias)
    n = mask.shape[0] // 3
    mask[n : 2 * n] = 0
    return mask


def round_trip_losses(state_dict: Mapping, spec: ModelSpec) -> list[str]:
    """The official keys that official → Hugging Face → official would not give back bit for bit (empty for
    the released files but ``local_cls_norm.*``). Looks only at the tensors the Hugging Face layout leaves out."""
    import torch

    lost = []
    for key in spec.state_dict_shapes():
        t = state_dict[key]
        if key.endswith("attn.qkv.bias"):
            n = t.shape[0] // 3
            mask = state_dict.get(key + "_mask")
            want = _bias_mask(t) if t[:n].any() or t[2 * n :].any() else torch.zeros_like(t)
            if t[n : 2 * n].any() or (mask is not None and not torch.equal(mask, want)):
                lost.append(key)
        elif key == "rope_embed.periods" and not torch.equal(t, rope_periods(spec).to(t.dtype)):
            lost.append(key)
        elif key.startswith("local_cls_norm."):
            fill = torch.ones_like if key.endswith("weight") else torch.zeros_like
            if not torch.equal(t, fill(t)):
                lost.append(key)
        elif key.startswith("norms.") and not torch.equal(t, state_dict[key.replace("norms.3", "norm", 1)]):
            lost.append(key)
    return lost


def hf_config(spec: ModelSpec) -> dict:
    """``config.json`` for transformers' ``DINOv3ViTModel`` / ``DINOv3ConvNextModel`` of ``spec``."""
    if spec.builder == "dinov3_convnext":
        return {
            "architectures": ["DINOv3ConvNextModel"], "model_type": "dinov3_convnext",
            "num_channels": 3, "hidden_sizes": list(spec.dims), "depths": list(spec.depths), "hidden_act": "gelu",
            "initializer_range": 0.02, "layer_norm_eps": CONVNEXT_NORM_EPS, "layer_scale_init_value": 1e-6,
            "drop_path_rate": 0.0, "image_size": IMG_SIZE, "torch_dtype": "float32",
        }
    swiglu = spec.ffn == "swiglu"
    return {
        "architectures": ["DINOv3ViTModel"], "model_type": "dinov3_vit",
        "patch_size": PATCH_SIZE, "hidden_size": spec.embed_dim, "intermediate_size": spec.ffn_hidden,
        "num_hidden_layers": spec.depth, "num_attention_heads": spec.num_heads,
        "hidden_act": "silu" if swiglu else "gelu", "use_gated_mlp": swiglu, "attention_dropout": 0.0,
        "initializer_range": 0.02, "layer_norm_eps": spec.norm_eps, "rope_theta": ROPE_BASE,
        "image_size": IMG_SIZE, "num_channels": 3, "query_bias": spec.qkv_bias, "key_bias": False,
        "value_bias": spec.qkv_bias, "proj_bias": True, "mlp_bias": True, "layerscale_value": 1.0,
        "drop_path_rate": 0.0, "num_register_tokens": spec.num_register_tokens,
        "pos_embed_shift": None, "pos_embed_jitter": None, "pos_embed_rescale": ROPE_RESCALE_COORDS,
        "torch_dtype": "float32",
    }


__all__ = [
    "RECONSTRUCTED_INEXACT", "hf_config", "hf_name", "hf_shapes", "hf_to_official", "official_to_hf",
    "rope_periods", "round_trip_losses",
]
