"""Where verified bytes of a model come from: one module per source behind one small interface.

A source has a ``name`` (as in ``DINOVAULT_SOURCES`` and in the model card's ``source``), knows which pin it checks
bytes against (``pin``), finds verified bytes already on this machine without a request (``local``), and brings
them (``obtain``); both give one result type, ``Obtained``. It also answers for files it produced: what a model
card of its own records (``card_fields``), where its cache copy lives (``cache_copy``) and what the workspace file
of such a card must be (``expected``).

Built in: ``official`` (Meta's files, official.py), ``signed`` (Meta's files through a signed link, signed.py),
``huggingface`` (huggingface.py) and ``modelscope`` (modelscope.py), the last two one ``HubSource`` (hub.py: pins,
conversion, reuse, cards) that differ only in how they download. A source that cannot serve a request at all
(``offers``: no link given, no repository on that hub) is left out of the order. Adding one is a module with
a ``Source`` subclass and one ``register(...)`` call: here for a built-in one, or from any code (a plug-in, a test)
before the fetch; installed packages can also name one under the entry-point group ``dinovault.sources``.
"""

from __future__ import annotations

import re
from importlib import import_module

from .. import settings
from ..errors import SourceError
from .base import _SOURCES, Expected, Obtained, Request, Source, register

ENTRY_POINTS = "dinovault.sources"
DEFAULT_ORDER = ("official", "huggingface")


# each module of that name registers its source on first import; their order is the order of ``known()``
BUILT_IN = ("huggingface", "modelscope", "official", "signed")
_plugins: list[Source] | None = None  # the installed ones (entry points), loaded once


def _load(names=BUILT_IN) -> dict[str, Source]:
    """The registered sources once the built-in ones ``names`` are imported and the plug-ins registered after them,
    so that a plug-in of a built-in's name replaces it, whichever built-in is imported first."""
    global _plugins
    for name in names:
        import_module(f"{__name__}.{name}")
    if _plugins is None:
        from ..installed import entry_points_of

        _plugins = [ep.load()() for ep in entry_points_of(ENTRY_POINTS)]
    for plugin in _plugins:
        register(plugin)
    return _SOURCES


def _known() -> dict[str, Source]:
    return _load()


def known() -> tuple[Source, ...]:
    """Every registered source: the built-in ones first, in ``BUILT_IN`` order whichever was imported first."""
    rank = {name: i for i, name in enumerate(BUILT_IN)}
    return tuple(sorted(_known().values(), key=lambda source: rank.get(source.name, len(rank))))


def get(name: str) -> Source:
    return _known()[name]


def configured(value: str | None = None, link: bool = False) -> tuple[Source, ...]:
    """The sources to try, in order: ``value``, else ``$DINOVAULT_SOURCES`` (comma or space separated), else
    official then huggingface; with ``link`` (a signed link was given) ``signed`` comes first. ``modelscope`` is
    chosen by name, e.g. ``DINOVAULT_SOURCES=modelscope`` where Hugging Face cannot be reached."""
    if value is None:
        value = settings.sources_text()
    names = [s.strip().lower() for s in re.split(r"[,\s]+", value) if s.strip()]
    known = _known()
    bad = [n for n in names if n not in known]
    if bad:
        raise SourceError(
            f"{settings.SOURCES_ENV}={value!r}: unknown source {bad[0]!r} / 未知来源",
            f"use a comma list of {', '.join(known)}, e.g. {settings.SOURCES_ENV}=huggingface,official / "
            f"请使用 {', '.join(known)} 的逗号列表",
        )
    names = list(dict.fromkeys(names or DEFAULT_ORDER))
    if link and "signed" not in names:  # a link given is a link to use
        names.insert(0, "signed")
    return tuple(known[n] for n in names)


def for_card(card: dict) -> Source:
    """The source that produced a model card (cards without one are the official files'). A built-in name imports
    only its own module: every fetch asks this of each model, and the others import HTTP and hub clients."""
    name = str(card.get("source") or "official")
    known = _load((name,) if name in BUILT_IN else BUILT_IN)
    return known.get(name) or _known()["official"]


__all__ = [
    "DEFAULT_ORDER", "Expected", "Obtained", "Request", "Source", "configured", "for_card", "get", "known", "register",
]
