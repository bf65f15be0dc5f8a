"""Official DINOv2 state_dict ↔ the Hugging Face on-disk layout (``model.safetensors`` of facebook/dinov2-*), exact.

Both directions only rename keys, except the attention projection: the official ``qkv`` (3D × D) is the
concatenation, in rows, of Hugging Face's ``query``, ``key`` and ``value``. Tensors are never cast or
recomputed, so a round trip is bit-identical and the official key order is kept.

The name map and shapes come from the catalog; nothing here needs transformers. torch is imported only by the
functions that build tensors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from ..catalog import CATALOG, ModelSpec

_QKV = ("query", "key", "value")
_TOP = {
    "cls_token": "embeddings.cls_token",
    "pos_embed": "embeddings.position_embeddings",
    "register_tokens": "embeddings.register_tokens",
    "mask_token": "embeddings.mask_token",
    "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
    "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
    "norm.weight": "layernorm.weight",
    "norm.bias": "layernorm.bias",
}
_BLOCK = {
    "norm1": "norm1",
    "norm2": "norm2",
    "attn.proj": "attention.output.dense",
    "ls1.gamma": "layer_scale1.lambda1",
    "ls2.gamma": "layer_scale2.lambda1",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
    "mlp.w12": "mlp.weights_in",
    "mlp.w3": "mlp.weights_out",
}


def hf_name(key: str) -> str | tuple[str, ...]:
    """The Hugging Face name of an official key; for ``attn.qkv.*`` the three names its rows split into."""
    if key in _TOP:
        return _TOP[key]
    _, index, rest = key.split(".", 2)
    prefix = f"encoder.layer.{index}."
    if rest.startswith("attn.qkv."):
        leaf = rest.rsplit(".", 1)[1]
        return tuple(f"{prefix}attention.attention.{part}.{leaf}" for part in _QKV)
    for official, hf in _BLOCK.items():
        if rest == official or rest.startswith(official + "."):
            return prefix + hf + rest[len(official):]
    raise KeyError(f"no Hugging Face name for {key!r}")


def hf_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Every tensor of ``spec``'s Hugging Face ``model.safetensors`` with its shape."""
    shapes: dict[str, tuple[int, ...]] = {}
    for key, shape in spec.state_dict_shapes().items():
        name = hf_name(key)
        if isinstance(name, tuple):
            part = (shape[0] // 3, *shape[1:])
            shapes.update({n: part for n in name})
        else:
            shapes[name] = shape
    return shapes


def hf_to_official(hf: Mapping, spec: ModelSpec) -> dict:
    """The official state_dict (official key order) from a Hugging Face one; KeyError names a missing tensor."""
    import torch

    out = {}
    for key in spec.state_dict_shapes():
        name = hf_name(key)
        if isinstance(name, tuple):
            out[key] = torch.cat([hf[n] for n in name], dim=0)
        else:
            out[key] = hf[name]
    return out


def official_to_hf(state_dict: Mapping, spec: ModelSpec) -> dict:
    """The Hugging Face tensors from an official state_dict (contiguous, ready for safetensors)."""
    out = {}
    for key in spec.state_dict_shapes():
        name = hf_name(key)
        tensor = state_dict[key]
        if isinstance(name, tuple):
            for n, part in zip(name, tensor.chunk(3, dim=0), strict=True):
                out[n] = part.contiguous()
        else:
            out[name] = tensor.contiguous()
    return out


def hf_config(spec: ModelSpec) -> dict:
    """``config.json`` for transformers' ``Dinov2Model`` / ``Dinov2WithRegistersModel`` of ``spec``."""
    registers = spec.num_register_tokens > 0
    config = {
        "architectures": ["Dinov2WithRegistersModel" if registers else "Dinov2Model"],
        "model_type": "dinov2_with_registers" if registers else "dinov2",
        "hidden_size": spec.embed_dim,
        "num_hidden_layers": spec.depth,
        "num_attention_heads": spec.num_heads,
        "mlp_ratio": 4,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "drop_path_rate": 0.0,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-6,
        "image_size": 518,
        "patch_size": 14,
        "num_channels": 3,
        "qkv_bias": True,
        "layerscale_value": 1.0,
        "use_swiglu_ffn": spec.ffn == "swiglu",
        "torch_dtype": "float32",
    }
    if registers:
        config["num_register_tokens"] = spec.num_register_tokens
    return config


def identify(shapes: Mapping[str, tuple[int, ...]]) -> tuple[ModelSpec, str] | None:
    """Which catalog model and which layout (``"official"`` or ``"hf"``) a set of tensor shapes is, if exactly one
    is (the same network trained on other data, e.g. DINOv3's LVD and SAT weights, has the same shapes: None)."""
    shapes = {k: tuple(v) for k, v in shapes.items()}
    found = [(spec, layout) for spec in CATALOG.values()
             for layout, theirs in (("official", spec.state_dict_shapes()), ("hf", _hf_shapes(spec)))
             if shapes == theirs]
    return found[0] if len(found) == 1 else None


def _hf_shapes(spec: ModelSpec) -> dict | None:
    """The tensors of ``spec`` in the Hugging Face layout; None when its family has no converter."""
    from .families import conversion

    convert = conversion(spec)
    return convert.hf_shapes(spec) if convert is not None else None


def tensor_digest(state_dict: Mapping, spec: ModelSpec) -> str:
    """SHA-256 over the official key order of each key, dtype, shape and raw bytes: equal for equal weights,
    whichever file (official .pth, Hugging Face safetensors, an export) they were read from."""
    import torch

    h = hashlib.sha256()
    for key in spec.state_dict_shapes():
        t = state_dict[key].detach().cpu().contiguous()
        h.update(f"{key}|{str(t.dtype).removeprefix('torch.')}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())  # the raw bytes, without a copy
    return "sha256:" + h.hexdigest()


__all__ = ["hf_config", "hf_name", "hf_shapes", "hf_to_official", "identify", "official_to_hf", "tensor_digest"]
