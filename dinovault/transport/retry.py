"""How a failed request is classified and retried, and the error a user sees when every source failed.

Shared by the single-stream transfer (download.py) and the segmented one (segments.py). The HTTP download's one retry
policy (``RetryPolicy``) is its own rather than urllib3's ``Retry``: urllib3 retries a request inside its pool until
the response starts, while most failures here come later, mid-body, and are resumed with a Range from the bytes kept,
their count starting again after any progress. Failures are told apart by the classes requests, urllib3 and the
socket raise (``errors.causes`` finds them under requests' wrappers), never by their messages.
"""

from __future__ import annotations

import email.utils
import errno
import http.client
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import requests
import urllib3.exceptions

from .. import settings
from ..catalog import CATALOG
from ..errors import (  # the transport's signals live with every other error class; imported from here by transport/
    DiskSpaceError,
    DownloadError,
    LocalWriteError,
    Retryable,
    SourceFailed,
    causes,
)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # per source, in a row without a byte of progress
    backoff: float = 1.0  # first wait, doubled each time (none after a timeout: the silence was the wait)
    max_wait: float = 60.0  # longest single wait; a longer Retry-After skips the source
    connect_timeout: float = 10.0
    read_timeout: float = 10.0  # longest silence inside a response: a dead link gives up after attempts x this

    @classmethod
    def from_env(cls) -> RetryPolicy:
        """Defaults, overridden by DINOVAULT_RETRIES / DINOVAULT_BACKOFF / DINOVAULT_MAX_WAIT / DINOVAULT_TIMEOUT."""
        read = settings.number("DINOVAULT_TIMEOUT", cls.read_timeout)
        return cls(
            attempts=max(1, settings.number("DINOVAULT_RETRIES", cls.attempts, int)),
            backoff=settings.number("DINOVAULT_BACKOFF", cls.backoff),
            max_wait=settings.number("DINOVAULT_MAX_WAIT", cls.max_wait),
            connect_timeout=min(cls.connect_timeout, read),
            read_timeout=read,
        )

    def wait(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``; None when the server asks for longer than max_wait."""
        if retry_after is not None:
            return retry_after if retry_after <= self.max_wait else None
        return min(self.backoff * 2 ** (attempt - 1), self.max_wait)

    def wait_after(self, err: Retryable, attempt: int) -> float | None:
        """The wait before the next attempt after ``err``: none after a timeout, which already waited."""
        return 0.0 if err.timed_out else self.wait(max(attempt, 1), err.retry_after)

    def limit(self, err: Retryable) -> int:
        return min(self.attempts, err.limit or self.attempts)

    def gave_up(self, err: Retryable, attempts: int) -> str:
        """Why a source is given up after ``attempts`` failures of ``err``'s kind: the bytes asked for, and the
        setting that bounds it."""
        where = f" at bytes {err.at[0]}-{err.at[1] - 1}" if err.at else ""
        knob = ", DINOVAULT_RETRIES" if attempts >= self.attempts else ""
        return f"{err.reason}{where} (after {attempts} attempts without progress{knob})"


def log_retry(log, url: str, reason: str, wait: float) -> None:
    if wait > 0:
        log.warning("%s: %s; retrying in %.2gs / %.2g 秒后重试", url, reason, wait, wait)
    else:  # after a timeout
        log.warning("%s: %s; retrying now / 立即重试", url, reason)


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


def timed_out(err: BaseException) -> bool:
    """A request or a read that waited longer than its timeout: requests' Timeout, or urllib3's / the socket's under
    the ConnectionError requests raises for a read that timed out while streaming. urllib3's NewConnectionError is a
    ConnectTimeoutError by inheritance only (requests calls it a ConnectionError too)."""
    return any(isinstance(e, (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError))
               and not isinstance(e, urllib3.exceptions.NewConnectionError) for e in causes(err))


def unknown_host(err: BaseException) -> bool:
    """The host name does not resolve (urllib3's NameResolutionError, over the socket's gaierror)."""
    return any(isinstance(e, (urllib3.exceptions.NameResolutionError, socket.gaierror)) for e in causes(err))


# What a failed connection is called, by the OS error under it, first match wins (the errno for the two that have no
# OSError subclass of their own); urllib3's ProtocolError: the server closed the connection mid-exchange
_REFUSED = (
    (lambda e: isinstance(e, ConnectionRefusedError), "Connection refused"),
    (lambda e: isinstance(e, OSError) and e.errno == errno.EHOSTUNREACH, "No route to host"),
    (lambda e: isinstance(e, OSError) and e.errno == errno.ENETUNREACH, "Network is unreachable"),
    (lambda e: isinstance(e, ConnectionResetError) and not isinstance(e, http.client.RemoteDisconnected),
     "Connection reset by peer"),  # RemoteDisconnected: closed before any answer, a ConnectionResetError by inheritance
    (lambda e: isinstance(e, urllib3.exceptions.ProtocolError), "Connection aborted"),
)


def describe(err: BaseException, timeout: float | None = None) -> str:
    # the message is shown, never matched: urllib3 quotes the URL, whose query may be a credential
    text = re.sub(r"\?[^\s'\")]*", "", str(err))
    found = list(causes(err))
    if timed_out(err):
        within = f"{timeout:g} s, DINOVAULT_TIMEOUT" if timeout is not None else "the read timeout"
        return f"timed out (no data within {within})"
    if any(isinstance(e, (requests.exceptions.ChunkedEncodingError, http.client.IncompleteRead)) for e in found):
        return "connection closed before the end of the file"
    if isinstance(err, requests.exceptions.SSLError):
        return "TLS error (certificate not trusted?)"
    if isinstance(err, requests.ConnectionError):
        if unknown_host(err):
            return "connection failed (unknown host: the name does not resolve)"
        why = next((name for is_it, name in _REFUSED if any(map(is_it, found))), text[:160])
        return f"connection failed ({why})"
    return f"{type(err).__name__}: {text[:160]}"


def request_failed(err: requests.RequestException, policy: RetryPolicy, progressed: bool = False,
                   at: tuple[int, int] | None = None) -> Retryable:
    """A request that raised: retryable, but a name that does not resolve gets one more try only."""
    return Retryable(describe(err, policy.read_timeout), progressed=progressed,
                     limit=2 if unknown_host(err) else None, timed_out=timed_out(err), at=at)


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


_MARKUP = re.compile(rb"(?:\xef\xbb\xbf)?\s*<(?:!doctype\s+html|html|head|body|\?xml)[\s>]", re.IGNORECASE)


def looks_like_markup(head: bytes) -> bool:
    """An HTML page (a login wall, a proxy's error page) or an XML error document instead of a checkpoint, by its
    markup: optional BOM and whitespace, then a doctype, <html>, <head>, <body> or an XML declaration. Never by one
    byte: a safetensors file starts with its header's length, whose first byte is 0x3C ('<') in one file of 256."""
    return _MARKUP.match(bytes(head[:512])) is not None


def local_write_error(err: LocalWriteError, dest: Path, part: Path) -> DownloadError:
    code = errno.errorcode.get(err.err.errno or 0, "")  # by name: Windows' errno has no EDQUOT
    full = code in ("ENOSPC", "EDQUOT", "EFBIG")
    what = "disk full" if full else "cannot write"
    return (DiskSpaceError if full else DownloadError)(
        f"{what} while downloading {dest.name} into {dest.parent}: {err.err.strerror or err.err} "
        f"({err.kept} bytes kept in {part.name}) / 磁盘写入失败",
        ("free some space (or set TORCH_HOME to a bigger disk) and rerun: the download resumes / "
         "请释放磁盘空间后重新运行，下载将继续") if full else
        "check the folder's permissions and rerun / 请检查该目录的权限后重试",
    )


def all_failed(dest: Path, failures: list[tuple[str, str]]) -> DownloadError:
    """Every source failed: one line naming each source and why (and the proxy it went through), and a hint that
    fits the reasons."""
    n = len(failures)
    reasons = [reason for _, reason in failures]
    family = next((s.family for s in CATALOG.values() if dest.name.startswith(s.upstream_file)), "dinov2")
    mirrors = settings.base_url_env(family)  # the family's mirrors variable (DINOv3 files: DINOV3_…)
    hint = f"check the network, or set {mirrors} to a mirror, then rerun / 请检查网络或设置 {mirrors} 后重试"
    missing = [url for url, reason in failures if reason.startswith(("HTTP 404", "HTTP 410"))
               and settings.base_urls_text(family)]  # a 404 is a mirror's only where mirrors are set
    network = True
    if any("pin" in reason for reason in reasons):
        hint = ("the served bytes differ from the pinned SHA-256: check the mirror or DINOVAULT_REGISTRY / "
                "文件与固定哈希不符")
        network = False
    elif all("unknown host" in reason for reason in reasons):
        hint = (f"the host name does not resolve: check its spelling in {mirrors}, or the DNS / "
                f"主机名无法解析，请检查 {mirrors} 或 DNS")
    elif missing:
        hint = (f"the mirror does not have this file ({', '.join(missing)}): check {mirrors}, whose folders "
                f"must be laid out like the official ones / 镜像上没有该文件，请检查 {mirrors}")
        network = False
    elif any("timed out" in reason for reason in reasons):
        hint = ("no data came within DINOVAULT_TIMEOUT seconds, DINOVAULT_RETRIES times in a row: check the network, "
                f"or raise DINOVAULT_TIMEOUT / DINOVAULT_RETRIES for a slow link, or set {mirrors} to a mirror / "
                f"连接超时：请检查网络，或为慢速链路调大 DINOVAULT_TIMEOUT / DINOVAULT_RETRIES，或设置镜像 {mirrors}")
    elif any(" at bytes " in reason for reason in reasons):
        hint = (f"the server keeps ending its answers before those bytes: use another mirror ({mirrors}) or "
                "rerun later, the download resumes; DINOVAULT_RETRIES sets how long to insist / "
                f"服务器多次在传完这些字节前断开：请换用其他镜像 ({mirrors}) 或稍后重试（下载会续传）")
    via = {url: p for url, _ in failures if network and (p := settings.proxy_for(url))}
    listing = "; ".join(f"{url}{f' (via {via[url][0]}={via[url][1]})' if url in via else ''}: {reason}"
                        for url, reason in failures)
    proxies = set(via.values())
    if proxies:
        named = ", ".join(f"{var}={value}" for var, value in sorted(proxies))
        hint += f"; a proxy is set ({named}): it may be at fault / 已设置代理 ({named})，问题可能出在代理"
    return DownloadError(
        f"could not download {dest.name} from {'any of the ' + str(n) + ' sources' if n > 1 else 'its source'}: "
        f"{listing} / 下载失败",
        hint,
    )
