"""Which network builds a catalog row (its family's ``networks``: the row's ``builder`` → "module:function") and
which module converts its family's Hugging Face layout (transformers' on-disk names) to and from the official
state_dict (its family's ``conversion``). Modules are imported on first use (torch)."""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

from ..catalog import ModelSpec, family_of


def build(spec: ModelSpec, device=None):
    """The network of ``spec`` (``device="meta"``: nothing allocated, to be loaded with ``assign=True``)."""
    module, _, function = family_of(spec).networks[spec.builder].partition(":")
    return getattr(import_module(module), function)(spec, device=device)


def conversion(spec: ModelSpec) -> ModuleType | None:
    """The module with ``hf_shapes``, ``hf_to_official``, ``official_to_hf`` and ``hf_config`` for ``spec``'s
    family (pure key maps: importing it imports no torch); None for a family that has none (a converter is
    optional: such a family is fetched and imported as official files only)."""
    module = family_of(spec).conversion
    return import_module(module) if module else None


__all__ = ["build", "conversion"]
