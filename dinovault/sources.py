"""Where the bytes of a model come from: an ordered list of URLs in the official layout.

``DINOV2_BASE_URL`` may hold several base URLs separated by commas or whitespace; they are tried in order.
"""

from __future__ import annotations

import re

from . import settings
from .catalog import ModelSpec

OFFICIAL_BASE_URL = "https://dl.fbaipublicfiles.com/dinov2"
BASE_URL_ENV = settings.BASE_URL


def base_urls(value: str | None = None) -> list[str]:
    """The base URLs to try, in order: ``value`` or ``$DINOV2_BASE_URL`` when set, else the official one."""
    if value is None:
        value = settings.base_urls_text()
    bases = [b.rstrip("/") for b in re.split(r"[,\s]+", value) if b.strip()]
    return list(dict.fromkeys(bases)) or [OFFICIAL_BASE_URL]


def url_for(base: str, spec: ModelSpec) -> str:
    return f"{base.rstrip('/')}/{spec.upstream_path}"


def official_url(spec: ModelSpec) -> str:
    """The upstream URL recorded in model cards: independent of mirrors, so cards do not change with them."""
    return url_for(OFFICIAL_BASE_URL, spec)


def source_urls(spec: ModelSpec, bases: str | None = None) -> list[str]:
    return [url_for(base, spec) for base in base_urls(bases)]


__all__ = ["BASE_URL_ENV", "OFFICIAL_BASE_URL", "base_urls", "official_url", "source_urls", "url_for"]
