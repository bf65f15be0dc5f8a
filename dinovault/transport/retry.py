"""How a failed request is classified and retried, and the error a user sees when every source failed.

Shared by the single-stream transfer (download.py) and the segmented one (segments.py).
"""

from __future__ import annotations

import email.utils
import errno
import re
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from .. import settings
from ..errors import DiskSpaceError, DownloadError


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # per source; an attempt that made progress does not count
    backoff: float = 1.0  # first wait, doubled each time
    max_wait: float = 60.0  # longest single wait; a longer Retry-After skips the source
    connect_timeout: float = 15.0
    read_timeout: float = 60.0  # longest silence inside a response

    @classmethod
    def from_env(cls) -> RetryPolicy:
        """Defaults, overridden by DINOV2_RETRIES / DINOV2_BACKOFF / DINOV2_MAX_WAIT / DINOV2_TIMEOUT."""
        read = settings.number("DINOV2_TIMEOUT", cls.read_timeout)
        return cls(
            attempts=max(1, settings.number("DINOV2_RETRIES", cls.attempts, int)),
            backoff=settings.number("DINOV2_BACKOFF", cls.backoff),
            max_wait=settings.number("DINOV2_MAX_WAIT", cls.max_wait),
            connect_timeout=min(cls.connect_timeout, read),
            read_timeout=read,
        )

    def wait(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``; None when the server asks for longer than max_wait."""
        if retry_after is not None:
            return retry_after if retry_after <= self.max_wait else None
        return min(self.backoff * 2 ** (attempt - 1), self.max_wait)


def retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Retryable(Exception):
    """Worth another try at the same source. ``limit``: at most this many attempts for this kind of failure."""

    def __init__(self, reason: str, retry_after: float | None = None, progressed: bool = False,
                 limit: int | None = None):
        super().__init__(reason)
        self.reason, self.retry_after, self.progressed, self.limit = reason, retry_after, progressed, limit


class SourceFailed(Exception):
    def __init__(self, reason: str, discard: bool = False):
        super().__init__(reason)
        self.reason, self.discard = reason, discard  # discard: the partial holds this source's bad bytes


class Restart(Exception):
    """The partial cannot be trusted: drop it and try once more from byte zero."""


class NoRanges(Exception):
    """No source honours Range requests: download with one stream instead."""


class LocalWriteError(Exception):
    def __init__(self, err: OSError, kept: int):
        super().__init__(str(err))
        self.err, self.kept = err, kept


DNS_FAILURES = ("Name or service not known", "Temporary failure in name resolution", "No address associated",
                "nodename nor servname")


def describe(err: BaseException) -> str:
    text = re.sub(r"\?[^\s'\")]*", "", str(err))  # urllib3 quotes the URL: its query may be a credential
    if isinstance(err, requests.Timeout) or "timed out" in text.lower():
        return "timed out (no data within the read timeout)"
    if isinstance(err, requests.exceptions.ChunkedEncodingError) or "IncompleteRead" in text:
        return "connection closed before the end of the file"
    if isinstance(err, requests.exceptions.SSLError):
        return "TLS error (certificate not trusted?)"
    if isinstance(err, requests.ConnectionError):
        if any(k in text for k in DNS_FAILURES):
            return "connection failed (unknown host: the name does not resolve)"
        known = ("Connection refused", "No route to host", "Network is unreachable", "Connection reset by peer",
                 "Connection aborted")
        why = next((k for k in known if k in text), text[:160])
        return f"connection failed ({why})"
    return f"{type(err).__name__}: {text[:160]}"


def request_failed(err: requests.RequestException, progressed: bool = False) -> Retryable:
    """A request that raised: retryable, but a name that does not resolve gets one more try only."""
    why = describe(err)
    return Retryable(why, progressed=progressed, limit=2 if "unknown host" in why else None)


def status_error(resp) -> Exception | None:
    """The exception an HTTP status calls for, None for 200/206."""
    status = resp.status_code
    if status == 429 or status >= 500:
        return Retryable(f"HTTP {status} {resp.reason}", retry_after(resp.headers.get("Retry-After")))
    if status not in (200, 206):
        return SourceFailed(f"HTTP {status} {resp.reason}")
    ctype = resp.headers.get("Content-Type", "")
    if "html" in ctype.lower():
        return SourceFailed(f"answered an HTML page (HTTP {status}, {ctype}), not the checkpoint")
    return None


def local_write_error(err: LocalWriteError, dest: Path, part: Path) -> DownloadError:
    code = errno.errorcode.get(err.err.errno, "")
    full = code in ("ENOSPC", "EDQUOT", "EFBIG")
    what = "disk full" if full else "cannot write"
    return (DiskSpaceError if full else DownloadError)(
        f"{what} while downloading {dest.name} into {dest.parent}: {err.err.strerror or err.err} "
        f"({err.kept} bytes kept in {part.name}) / 磁盘写入失败",
        ("free some space (or set TORCH_HOME to a bigger disk) and rerun: the download resumes / "
         "请释放磁盘空间后重新运行，下载将继续") if full else "check the folder's permissions and rerun",
    )


def all_failed(dest: Path, failures: list[tuple[str, str]]) -> DownloadError:
    """Every source failed: one line naming each source and why, and a hint that fits the reasons."""
    listing = "; ".join(f"{url}: {reason}" for url, reason in failures)
    n = len(failures)
    hint = "check the network, or set DINOV2_BASE_URL to a mirror, then rerun / 请检查网络或设置 DINOV2_BASE_URL 后重试"
    missing = [url for url, reason in failures if reason.startswith(("HTTP 404", "HTTP 410"))
               and settings.base_urls_text()]  # a 404 is a mirror's only where mirrors are set
    if any("pin" in reason for _, reason in failures):
        hint = ("the served bytes differ from the pinned SHA-256: check the mirror or DINOV2_REGISTRY / "
                "文件与固定哈希不符")
    elif all("unknown host" in reason for _, reason in failures):
        hint = ("the host name does not resolve: check its spelling in DINOV2_BASE_URL, or the DNS / "
                "主机名无法解析，请检查 DINOV2_BASE_URL 或 DNS")
    elif missing:
        hint = (f"the mirror does not have this file ({', '.join(missing)}): check DINOV2_BASE_URL, whose folders "
                f"must be laid out like the official ones / 镜像上没有该文件，请检查 DINOV2_BASE_URL")
    return DownloadError(
        f"could not download {dest.name} from {'any of the ' + str(n) + ' sources' if n > 1 else 'its source'}: "
        f"{listing} / 下载失败",
        hint,
    )
