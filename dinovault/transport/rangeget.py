"""One Range request to one source, and what its answer must show: 206, the right start, the pinned size, and the
same ETag/Last-Modified as this source's earlier answers (sent as If-Range, so a changed file answers 200)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import requests

from ..errors import NoRanges, Restart, SourceFailed
from .retry import request_failed, status_error


@dataclass
class Mirror:
    """One mirror URL of a segmented download and what its answers have shown (not a ``sources.Source``)."""

    url: str
    validator: dict = field(default_factory=dict)  # ETag / Last-Modified first seen (or read from the sidecar)
    failures: int = 0  # attempts in a row without progress (failures of requests in flight together count once)
    counted_at: float = 0.0  # monotonic time of the last failure counted in ``failures``
    dead: str | None = None  # why it was dropped
    no_ranges: bool = False  # dropped because it ignores Range requests
    latency: float = 0.5  # shortest time seen from a request to its first byte, seconds
    retry_at: float = 0.0  # monotonic time before which no new request goes to it after a failure
    bytes: int = 0


def open_range(session, source: Mirror, a: int, b: int, total: int, policy, lock):
    """A streaming response for bytes a..b-1 of ``source``, checked; an exception says why not."""
    headers = {"Accept-Encoding": "identity", "Range": f"bytes={a}-{b - 1}"}
    validator = source.validator.get("etag") or source.validator.get("last_modified")
    if validator and not validator.startswith("W/"):
        headers["If-Range"] = validator
    try:
        resp = session.get(source.url, headers=headers, stream=True,
                           timeout=(policy.connect_timeout, policy.read_timeout))
    except requests.RequestException as err:
        raise request_failed(err, policy) from None
    try:
        _check(resp, source, a, total, validator, lock)
    except BaseException:
        resp.close()
        raise
    return resp


def _check(resp, source: Mirror, a: int, total: int, validator: str | None, lock) -> None:
    err = status_error(resp)
    if err is not None:
        raise err
    if resp.status_code == 200:  # Range ignored, or the file is no longer the one If-Range names
        if validator:
            raise Restart(f"{source.url} changed since part of it was downloaded (If-Range answered 200)")
        raise NoRanges()
    m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", resp.headers.get("Content-Range", "").strip())
    if not m or int(m[1]) != a:
        raise SourceFailed(f"answered Content-Range {resp.headers.get('Content-Range')!r} to bytes={a}-")
    if int(m[3]) != total:
        raise SourceFailed(f"serves {m[3]} bytes, the pin says {total}")
    seen = {"etag": resp.headers.get("ETag"), "last_modified": resp.headers.get("Last-Modified")}
    for key, value in seen.items():
        if value and source.validator.get(key) and source.validator[key] != value:
            raise Restart(f"{source.url} changed while it was being downloaded ({key})")
    with lock:
        source.validator.update({k: v for k, v in seen.items() if v})


__all__ = ["Mirror", "open_range"]
