"""Which network builds a catalog row (its ``builder``) and which module converts its family's Hugging Face layout
(transformers' on-disk names) to and from the official state_dict. Modules are imported on first use (torch)."""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

from ..catalog import ModelSpec

# a plug-in family adds its builder here, and its conversion module if it has a Hugging Face layout
NETWORKS = {"dinov2_vit": ("dinovault.model.backbone", "build_backbone"),
            "dinov3_vit": ("dinovault.model.dinov3_vit", "build"),
            "dinov3_convnext": ("dinovault.model.convnext", "build")}
CONVERSIONS = {"dinov2": "dinovault.model.hf_dinov2", "dinov3": "dinovault.model.hf_dinov3"}


def build(spec: ModelSpec, device=None):
    """The network of ``spec`` (``device="meta"``: nothing allocated, to be loaded with ``assign=True``)."""
    module, function = NETWORKS[spec.builder]
    return getattr(import_module(module), function)(spec, device=device)


def conversion(spec: ModelSpec) -> ModuleType | None:
    """The module with ``hf_shapes``, ``hf_to_official``, ``official_to_hf`` and ``hf_config`` for ``spec``'s
    family (pure key maps: importing it imports no torch); None for a family that has none (a converter is
    optional: such a family is fetched and imported as official files only)."""
    module = CONVERSIONS.get(spec.family)
    return import_module(module) if module else None


__all__ = ["build", "conversion"]
