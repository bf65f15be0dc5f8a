"""The official source: Meta's files, from the family's official base URL or from mirrors in the official layout.

``DINOV2_BASE_URL`` (``DINOV3_BASE_URL`` for DINOv3) may hold several base URLs separated by commas or whitespace;
a large file comes from all of them at once in ranges (transport/), a small one from the first that works.
Verified bytes already in the torch.hub cache, or an export restored by ``dvc pull``, are used without a request.
A file whose name carries a SHA-256 prefix (DINOv3's ``…-<hash8>.pth``) is checked against it too; with no full pin
in the registry, only against it (prefix.py).
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

from .. import settings
from ..cache import cache_path, check_file, place_file, read_json
from ..catalog import ModelSpec
from ..catalog.dinov2 import BASE_URL as OFFICIAL_BASE_URL
from ..errors import ConfigError, VerificationError
from ..registry import Pin, Pins
from .base import Expected, Obtained, Request, Source, register
from .prefix import PrefixPin, fetch_checked, official_pin, prefix_problem, verified_level

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

    def pin(self, spec: ModelSpec, pins: Pins) -> Pin | PrefixPin | None:
        return official_pin(spec.upstream_file, pins)

    def describe_pin(self, spec: ModelSpec) -> str:
        return spec.upstream_file

    def local(self, req: Request) -> Obtained | None:
        pin = self.pin(req.spec, req.pins)
        if isinstance(pin, PrefixPin):
            return _local_by_prefix(req, pin)
        if pin is None:
            return None
        places = [cache_path(req.spec.upstream_file), req.export_path]
        if any(p is not None and p.is_file() and check_file(p, pin).ok for p in places):
            return self.obtain(req)  # links the verified file into place; no request
        return None

    def obtain(self, req: Request) -> Obtained:
        return obtain_official(req, self.pin(req.spec, req.pins), source_urls(req.spec))

    def take_file(self, path, spec: ModelSpec, size: int, sha256: str, pin) -> str:
        dest = cache_path(spec.upstream_file)
        dest.parent.mkdir(parents=True, exist_ok=True)
        place_file(path, dest, size, sha256)  # hard link or verified copy, through a temporary name
        return str(dest)

    def cache_copy(self, spec: ModelSpec):
        return cache_path(spec.upstream_file)

    def expected(self, spec: ModelSpec, card: dict, pins: Pins):
        pin = self.pin(spec, pins)
        if isinstance(pin, PrefixPin):  # the card's full SHA-256 (from the first download), if it fits the name
            size, sha = card.get("size"), card.get("sha256")
            if not isinstance(size, int) or not isinstance(sha, str):
                return Expected(None, None, (f"no pin for {spec.upstream_file} and no card / 无固定哈希，也无模型卡",))
            why = pin.problem(sha)
            return Expected(size, sha, (why,) if why else (), "its model card",
                            f"verified: prefix (sha256 starts with {pin.prefix} as its name says; no full pin)")
        if pin is None:
            return Expected(None, None, (f"no pin for {spec.upstream_file} in the registry / 注册表中无此文件的哈希",))
        return Expected(pin.size, pin.sha256)


def obtain_official(req: Request, pin, urls: list[str], auth=None, name: str = "official") -> Obtained:
    """Meta's file of ``req.spec`` from ``urls`` into the torch.hub cache, checked against ``pin`` (a full pin, in
    ranges where it is large; else the name's hash prefix, in one stream) and always against the name's prefix."""
    from ..transport.download import ensure_file

    spec, dest = req.spec, cache_path(req.spec.upstream_file)
    if isinstance(pin, PrefixPin):
        log.warning("%s: no full pin; checking the SHA-256 prefix %s in its name only / 仅校验文件名中的哈希前缀",
                    spec.upstream_file, pin.prefix)
        got = fetch_checked(urls, dest, pin.problem, progress=req.progress, rehash=req.rehash, auth=auth)
    else:
        if pin is None:
            log.warning("%s is not pinned: accepting what the first source serves / 无固定哈希：接受首个来源提供的文件",
                        spec.upstream_file)
        elif (why := prefix_problem(spec.upstream_file, pin.sha256)) is not None:  # before any request
            raise VerificationError(f"the registry pin of {spec.upstream_file} contradicts its name: {why} "
                                    "/ 注册表中的哈希与文件名不符", "fix that registry line / 请修正注册表")
        local = [req.export_path] if req.export_path is not None else []
        got = ensure_file(urls, dest, pin, progress=req.progress, rehash=req.rehash, local=local, auth=auth)
    return Obtained(got.path, got.size, got.sha256, verified_level(pin) if got.verified else False, got.hashed,
                    got.transferred, got.url, {"source": name})


def _local_by_prefix(req: Request, pin: PrefixPin) -> Obtained | None:
    """With only a prefix: the torch.hub copy when it fits the name, else an export restored by ``dvc pull`` whose
    card (written where it was first downloaded) gives the full size and SHA-256 and fits the name."""
    dest = cache_path(req.spec.upstream_file)
    if not dest.is_file():
        export = req.export_path
        card = read_json(export.with_suffix(".json")) if export is not None and export.is_file() else None
        size, sha = (card or {}).get("size"), (card or {}).get("sha256")
        if export is None or not isinstance(size, int) or not isinstance(sha, str) or pin.problem(sha):
            return None
        if not check_file(export, Pin(export.name, size, sha), rehash=req.rehash).ok:
            return None
        dest.parent.mkdir(parents=True, exist_ok=True)
        place_file(export, dest, size, sha)
        log.info("took %s from %s (its card's SHA-256, which fits the name; no download)", dest.name, export)
    check = check_file(dest, None, rehash=req.rehash)
    if check.sha256 is None or pin.problem(check.sha256):
        return None
    return Obtained(dest, check.size, check.sha256, verified_level(pin), check.hashed, 0, None, {"source": "official"})


register(OfficialSource())

__all__ = ["BASE_URL_ENV", "OFFICIAL_BASE_URL", "OfficialSource", "base_urls", "official_url", "source_urls", "url_for"]
