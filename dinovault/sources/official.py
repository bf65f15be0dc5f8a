"""Where the bytes of a model come from: an ordered list of URLs in the official layout.

``DINOV2_BASE_URL`` may hold several base URLs separated by commas or whitespace; they are tried in order.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from .. import settings
from ..catalog import ModelSpec
from ..errors import ConfigError

OFFICIAL_BASE_URL = "https://dl.fbaipublicfiles.com/dinov2"
BASE_URL_ENV = settings.BASE_URL


def base_urls(value: str | None = None) -> list[str]:
    """The base URLs to try, in order: ``value`` or ``$DINOV2_BASE_URL`` when set, else the official one.
    A URL that is not http(s) with a host is refused at once: no retry can make it work."""
    if value is None:
        value = settings.base_urls_text()
    bases = [b.rstrip("/") for b in re.split(r"[,\s]+", value) if b.strip()]
    for base in bases:
        _check_base(base)
    return list(dict.fromkeys(bases)) or [OFFICIAL_BASE_URL]


def _check_base(base: str) -> None:
    try:
        parts = urlsplit(base)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        parts, host = None, None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise ConfigError(
            f"{BASE_URL_ENV} has {base!r}, which is not an http:// or https:// URL with a host / "
            f"{BASE_URL_ENV} 中的地址无效",
            f"set {BASE_URL_ENV} to mirrors such as https://mirror.example.org/dinov2 (comma-separated), or unset "
            f"it to use {OFFICIAL_BASE_URL} / 请改为 http(s) 镜像地址，或取消设置",
        )


def url_for(base: str, spec: ModelSpec) -> str:
    return f"{base.rstrip('/')}/{spec.upstream_path}"


def official_url(spec: ModelSpec) -> str:
    """The upstream URL recorded in model cards: independent of mirrors, so cards do not change with them."""
    return url_for(OFFICIAL_BASE_URL, spec)


def source_urls(spec: ModelSpec, bases: str | None = None) -> list[str]:
    return [url_for(base, spec) for base in base_urls(bases)]


__all__ = ["BASE_URL_ENV", "OFFICIAL_BASE_URL", "base_urls", "official_url", "source_urls", "url_for"]
