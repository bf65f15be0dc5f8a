"""The catalog: every model dinovault manages, one row each (spec.py), grouped in families (family.py), each made by
one module (dinov2.py, dinov3.py).

A family registers like a source does: the built-in ones here, a plug-in through ``register_family(...)`` (before the
catalog is used), an installed package under the entry-point group ``dinovault.families`` (its value: a ``Family``),
or ``DINOVAULT_FAMILIES=module:attribute[,…]`` (read by every process, so a DVC stage or a subprocess sees the same
catalog as the process that started it).
"""

from __future__ import annotations

import difflib
from importlib import import_module

from .. import settings
from ..errors import ConfigError, UnknownModelError
from . import dinov2, dinov3
from .family import Family
from .spec import ModelSpec

ENTRY_POINTS = "dinovault.families"
# filled by register_family, in place: the names imported elsewhere always see every registered family
FAMILIES: list[Family] = []
CATALOG: dict[str, ModelSpec] = {}
MODEL_NAMES: list[str] = []
_BY_NAME: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Add ``family`` to the catalog (again: replaced). Its name, params.yaml keys, stages and model names must be
    its own: a clash with another family is an error naming both."""
    others = [f for f in FAMILIES if f.name != family.name]
    taken = {
        **{k: f for f in others for k in (f.select_key, f.save_dir_key, f.features_key, f.stage, f.features_stage)},
        **{m: f for f in others for m in f.model_names},
    }
    mine = (family.select_key, family.save_dir_key, family.features_key, family.stage, family.features_stage,
            *family.model_names)
    clash = next((name for name in mine if name in taken), None)
    if clash or any(spec.family != family.name for spec in family.rows):
        what = f"{clash!r} is already {taken[clash].name}'s" if clash else "its rows name another family"
        raise ConfigError(f"family {family.name!r}: {what} / 模型族 {family.name!r} 与已有的冲突",
                           "give the family its own names / 请为该模型族使用不同的名称")
    FAMILIES[:] = [*others, family] if family.name not in _BY_NAME else [
        family if f.name == family.name else f for f in FAMILIES]
    _BY_NAME[family.name] = family
    CATALOG.clear()
    CATALOG.update({spec.name: spec for f in FAMILIES for spec in f.rows})
    MODEL_NAMES[:] = list(CATALOG)
    return family


def _load_plugins() -> None:
    from ..installed import entry_points_of

    for ep in entry_points_of(ENTRY_POINTS):
        register_family(ep.load())
    for ref in settings.families_refs():
        module, _, attr = ref.partition(":")
        try:
            family = getattr(import_module(module), attr)
        except (ImportError, AttributeError) as err:
            raise ConfigError(f"{settings.FAMILIES_ENV}: cannot load {ref!r} ({err}) / 无法加载模型族 {ref!r}",
                               "write module:attribute of a Family, importable here / 请写 模块:属性") from None
        register_family(family)


def family_of(model: str | ModelSpec) -> Family:
    """The family of a model: its rows, and where it lives in a repository (family.py)."""
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


for _built_in in (dinov2.FAMILY_SPEC, dinov3.FAMILY_SPEC):
    register_family(_built_in)
_load_plugins()

__all__ = ["CATALOG", "ENTRY_POINTS", "FAMILIES", "MODEL_NAMES", "Family", "ModelSpec", "family_of", "get_spec",
           "register_family"]
