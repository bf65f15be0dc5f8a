"""Which network builds a catalog row (its ``builder``) and which module converts its family's Hugging Face layout
(transformers' on-disk names) to and from the official state_dict. Modules are imported on first use (torch)."""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

from ..catalog import ModelSpec

_NETWORKS = {"dinov2_vit": ("backbone", "build_backbone"), "dinov3_vit": ("dinov3_vit", "build"),
             "dinov3_convnext": ("convnext", "build")}
_CONVERSIONS = {"dinov2": "convert", "dinov3": "convert_dinov3"}


def build(spec: ModelSpec, device=None):
    """The network of ``spec`` (``device="meta"``: nothing allocated, to be loaded with ``assign=True``)."""
    module, function = _NETWORKS[spec.builder]
    return getattr(import_module(f"{__package__}.{module}"), function)(spec, device=device)


def conversion(spec: ModelSpec) -> ModuleType:
    """The module with ``hf_shapes``, ``hf_to_official``, ``official_to_hf`` and ``hf_config`` for ``spec``'s
    family (pure key maps: importing it imports no torch)."""
    return import_module(f"{__package__}.{_CONVERSIONS[spec.family]}")


__all__ = ["build", "conversion"]
