"""The signed-link source: Meta's file through the link from Meta's e-mail
(``https://dinov3.llamameta.net/<arch>/<file>?Policy=…&Signature=…&Key-Pair-Id=…``, a CloudFront signed URL), given
as ``fetch_model(..., url=...)`` or ``$DINOV3_URL``.

The link is a credential. Its query travels only as a requests auth attached to each request (ranges and resumes
included): the transport, its ``.part.json`` sidecar, log lines, messages and the model card see the URL without it
(the card records the official URL, as for any official file). A new link resumes a partial left by an old one.

Before any request the policy is read (CloudFront's base64 with ``-_~`` for ``+=/``): an expired link is refused with
its date, a link for another file too; a wildcard resource (``https://dinov3.llamameta.net/*``) serves every model of
the family, whose file URLs are built from it in the official layout (``<root>/<arch>/<file>``), keeping the query.
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

from .. import settings
from ..catalog import ModelSpec
from ..errors import ConfigError, DownloadError, SignedLinkError
from .base import Request, register
from .official import OfficialSource, obtain_official

log = logging.getLogger("dinovault")
REQUEST_PAGE = "https://ai.meta.com/resources/models-and-libraries/dinov3-downloads/"
_NEW_LINK = (f"request a new link ({REQUEST_PAGE}), or get the file from a teammate's DVC remote (dvc pull) "
             "/ 请重新申请下载链接，或从团队的 DVC 远程仓库获取 (dvc pull)")


def _b64(text: str) -> bytes:
    text = text.replace("-", "+").replace("_", "=").replace("~", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class SignedLink:
    base: str  # the link without its query: safe to show
    query: str  # the credential
    resource: str | None  # what the policy allows (may hold * and ?); None: no readable policy
    expires: int | None  # epoch seconds; None: the link says nothing

    @classmethod
    def parse(cls, url: str) -> SignedLink:
        parts = urlsplit(url.strip())
        base = f"{parts.scheme}://{parts.netloc}{parts.path}"
        if parts.scheme not in ("http", "https") or not parts.hostname or not parts.query:
            raise ConfigError(f"the signed link {base} is not an http(s) URL with a query / 签名链接无效",
                              "pass the whole link from the e-mail, in quotes: --url '<link>' "
                              "/ 请完整复制邮件中的链接，并加引号")
        q = parse_qs(parts.query)
        resource, expires = base, None
        if "Policy" in q:
            try:
                statement = json.loads(_b64(q["Policy"][0]))["Statement"][0]
                resource = statement.get("Resource", base)
                expires = int(statement["Condition"]["DateLessThan"]["AWS:EpochTime"])
            except (ValueError, KeyError, IndexError, TypeError) as err:
                raise ConfigError(f"the signed link {base} has a Policy that cannot be read ({type(err).__name__}) "
                                  "/ 签名链接的 Policy 无法解析",
                                  "copy the link again, whole / 请重新完整复制链接") from None
        elif "Expires" in q and q["Expires"][0].isdigit():  # a canned policy: the link is for its own URL only
            expires = int(q["Expires"][0])
        return cls(base, parts.query, resource, expires)

    def expiry(self) -> str:
        assert self.expires is not None, "a link without an expiry"
        return datetime.fromtimestamp(self.expires, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    def url_for(self, spec: ModelSpec) -> str:
        """The URL of ``spec``'s file (without the query): the link itself when it names that file, else the file
        in the official layout beside the one it names, when the policy allows it."""
        if self.base.rsplit("/", 1)[-1] == spec.upstream_file:
            return self.base
        root = self.base.rsplit("/", 2)[0] if self.base.count("/") > 3 else self.base.rstrip("/")
        url = f"{root}/{spec.upstream_path}"
        if self.resource and "*" in self.resource and fnmatch.fnmatchcase(url, self.resource):
            return url
        raise SignedLinkError(
            f"the signed link is for {self.resource or self.base}, not for {spec.upstream_file} / 该链接不适用于此模型",
            f"use the link of {spec.name} from the e-mail, or request one for all models / 请使用该模型对应的链接")

    def check_expiry(self, now: float | None = None) -> None:
        if self.expires is not None and self.expires <= (time.time() if now is None else now):
            raise SignedLinkError(f"the signed link expired on {self.expiry()}: request a new link "
                                  f"/ 签名链接已于 {self.expiry()} 过期，请重新申请", _NEW_LINK)


class SignedQuery:
    """Adds the link's query to each request as it is sent; nothing else ever holds the whole URL. A requests auth:
    requests calls any callable given as ``auth`` (its ``AuthBase`` adds nothing), so importing this module, as
    every fetch does to know the sources, does not import requests."""

    def __init__(self, query: str):
        self.query = query

    def __call__(self, r):
        r.url = f"{r.url}{'&' if '?' in r.url else '?'}{self.query}"
        return r


class _NoQueries(logging.Filter):
    """urllib3 logs each request's URL at DEBUG: keep the signature out of any log."""

    def filter(self, record: logging.LogRecord) -> bool:
        import re

        message = record.getMessage()
        if "Signature=" in message or "Policy=" in message:
            record.msg, record.args = re.sub(r"\?\S*", "?…", message), ()
        return True


@contextlib.contextmanager
def _quiet_urls():
    logger, flt = logging.getLogger("urllib3.connectionpool"), _NoQueries()
    logger.addFilter(flt)
    try:
        yield
    finally:
        logger.removeFilter(flt)


def link_for(req: Request) -> str | None:
    return req.url or settings.signed_url(req.spec.family)


class SignedSource(OfficialSource):
    """Meta's own file under its official name, so its card is the official source's (the card does not tell by
    which route identical bytes came, so it is the same on every machine)."""

    name = "signed"

    def offers(self, req: Request) -> bool:
        return link_for(req) is not None

    def describe_pin(self, spec: ModelSpec) -> str:
        return f"{spec.upstream_file} (signed link)"

    def local(self, req: Request):
        return None  # the official source finds the same file in the torch.hub cache

    def obtain(self, req: Request):
        raw = link_for(req)
        if raw is None:
            raise DownloadError(f"signed: no link for {req.spec.name} (--url or "
                                f"{settings.signed_url_env(req.spec.family)}) / 未提供签名链接")
        link = SignedLink.parse(raw)
        link.check_expiry()
        url = link.url_for(req.spec)
        log.info("signed link for %s (valid until %s)", url, link.expiry() if link.expires else "?")
        try:
            with _quiet_urls():
                return obtain_official(req, self.pin(req.spec, req.pins), [url], SignedQuery(link.query),
                                       name="official")
        except SignedLinkError:
            raise
        except DownloadError as err:
            if "HTTP 403" in err.message:
                raise SignedLinkError(
                    f"{url}: the server refused the signed link (HTTP 403): it has expired or is not for this file "
                    f"/ 签名链接被拒绝（已过期或不适用于此文件）", _NEW_LINK) from None
            raise


register(SignedSource())

__all__ = ["SignedLink", "SignedQuery", "SignedSource", "link_for"]
