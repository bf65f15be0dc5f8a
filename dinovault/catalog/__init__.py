"""The catalog: every model dinovault manages, one row each (spec.py), made by the family modules (dinov2.py).

A new family is one module that makes rows, added to ``FAMILIES`` below.
"""

from __future__ import annotations

import difflib

from ..errors import UnknownModelError
from . import dinov2, dinov3
from .spec import ModelSpec

FAMILIES = (dinov2, dinov3)
CATALOG: dict[str, ModelSpec] = {spec.name: spec for family in FAMILIES for spec in family.ROWS}
MODEL_NAMES: tuple[str, ...] = tuple(CATALOG)
_BY_NAME = {family.FAMILY: family for family in FAMILIES}


def family_of(model: str | ModelSpec):
    """The family module of a model (its rows, and where it lives in a repository: ``SELECT_KEY``,
    ``SAVE_DIR_KEY``, ``DEFAULT_SAVE_DIR``, ``STAGE``)."""
    spec = model if isinstance(model, ModelSpec) else CATALOG[model]
    return _BY_NAME[spec.family]


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


__all__ = ["CATALOG", "FAMILIES", "MODEL_NAMES", "ModelSpec", "family_of", "get_spec"]
