"""The official source: Meta's files, from the family's official base URL or from mirrors in the official layout.

``DINOV2_BASE_URL`` (``DINOV3_BASE_URL`` for DINOv3) may hold several base URLs separated by commas or whitespace;
a large file comes from all of them at once in ranges (transport/), a small one from the first that works.
Verified bytes already in the torch.hub cache, or an export restored by ``dvc pull``, are used without a request.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

from .. import settings
from ..cache import cache_path, check_file, place_file
from ..catalog import ModelSpec
from ..catalog.dinov2 import BASE_URL as OFFICIAL_BASE_URL
from ..errors import ConfigError
from ..registry import Pin, Pins
from .base import Expected, Obtained, Request, Source, register

log = logging.getLogger("dinovault")
BASE_URL_ENV = settings.BASE_URL


def base_urls(value: str | None = None, family: str = "dinov2", official: str = OFFICIAL_BASE_URL) -> list[str]:
    """The base URLs to try, in order: ``value`` or the family's ``$<FAMILY>_BASE_URL`` when set, else the official
    one. A URL that is not http(s) with a host is refused at once: no retry can make it work."""
    env = settings.base_url_env(family)
    if value is None:
        value = settings.base_urls_text(family)
    bases = [b.rstrip("/") for b in re.split(r"[,\s]+", value) if b.strip()]
    for base in bases:
        _check_base(base, env, official)
    return list(dict.fromkeys(bases)) or [official]


def _check_base(base: str, env: str, official: str) -> None:
    try:
        parts = urlsplit(base)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        parts, host = None, None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise ConfigError(
            f"{env} has {base!r}, which is not an http:// or https:// URL with a host / {env} 中的地址无效",
            f"set {env} to mirrors such as https://mirror.example.org/{official.rsplit('/', 1)[-1]} (comma-separated), "
            f"or unset it to use {official} / 请改为 http(s) 镜像地址，或取消设置",
        )


def url_for(base: str, spec: ModelSpec) -> str:
    return f"{base.rstrip('/')}/{spec.upstream_path}"


def official_url(spec: ModelSpec) -> str:
    """The upstream URL recorded in model cards: independent of mirrors, so cards do not change with them."""
    return spec.url


def source_urls(spec: ModelSpec, bases: str | None = None) -> list[str]:
    return [url_for(base, spec) for base in base_urls(bases, spec.family, spec.base_url)]


class OfficialSource(Source):
    name = "official"

    def pin(self, spec: ModelSpec, pins: Pins) -> Pin | None:
        return pins.files.get(spec.upstream_file)

    def describe_pin(self, spec: ModelSpec) -> str:
        return spec.upstream_file

    def local(self, req: Request) -> Obtained | None:
        pin = self.pin(req.spec, req.pins)
        if pin is None:
            return None
        places = [cache_path(req.spec.upstream_file), req.export_path]
        if any(p is not None and p.is_file() and check_file(p, pin).ok for p in places):
            return self.obtain(req)  # links the verified file into place; no request
        return None

    def obtain(self, req: Request) -> Obtained:
        from ..transport.download import ensure_file

        spec, pin = req.spec, self.pin(req.spec, req.pins)
        if pin is None:
            log.warning("%s is not pinned: accepting what the first source serves / 无固定哈希：接受首个来源提供的文件",
                        spec.upstream_file)
        local = [req.export_path] if req.export_path is not None else []
        got = ensure_file(source_urls(spec), cache_path(spec.upstream_file), pin, progress=req.progress,
                          rehash=req.rehash, local=local)
        return Obtained(got.path, got.size, got.sha256, got.verified, got.hashed, got.transferred, got.url,
                        {"source": self.name})

    def take_file(self, path, spec: ModelSpec, size: int, sha256: str, pin) -> str:
        dest = cache_path(spec.upstream_file)
        dest.parent.mkdir(parents=True, exist_ok=True)
        place_file(path, dest, size, sha256)  # hard link or verified copy, through a temporary name
        return str(dest)

    def cache_copy(self, spec: ModelSpec):
        return cache_path(spec.upstream_file)

    def expected(self, spec: ModelSpec, card: dict, pins: Pins):
        pin = self.pin(spec, pins)
        if pin is None:
            return Expected(None, None, (f"no pin for {spec.upstream_file} in the registry / 注册表中无此文件的哈希",))
        return Expected(pin.size, pin.sha256)


register(OfficialSource())

__all__ = ["BASE_URL_ENV", "OFFICIAL_BASE_URL", "OfficialSource", "base_urls", "official_url", "source_urls", "url_for"]
