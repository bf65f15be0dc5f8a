"""The single-stream transfer: one connection at a time, resumed with a Range request after a cut.

- The partial download lives beside the target as ``<file>.part`` with a sidecar ``<file>.part.json`` saying
  what it came from (URL, ETag/Last-Modified, total size, pinned SHA-256); a partial of another origin is discarded.
  A partial left by the segmented transfer (segments.py) is resumed from its first gap.
- SHA-256 is computed while the bytes arrive, by a hasher thread fed through a bounded queue (hashlib releases
  the GIL), so hashing overlaps the socket reads and memory stays bounded whatever the file size.
- Size and hash are checked before the atomic rename into place; nothing unverified ever carries the final name.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from ..cache import CHUNK, read_json, write_json_atomic, write_stamp
from ..errors import LocalWriteError, Restart, Retryable, SourceFailed
from ..files import replace
from ..registry import Pin
from .ranges import open_part, write_at
from .retry import RetryPolicy, log_retry, looks_like_markup, request_failed, status_error

log = logging.getLogger("dinovault")

QUEUE_CHUNKS = 16  # hasher queue bound: at most ~16 MB in flight whatever the file size


def part_paths(dest: Path) -> tuple[Path, Path]:
    """The partial download beside ``dest`` and its sidecar."""
    return dest.with_name(dest.name + ".part"), dest.with_name(dest.name + ".part.json")


# ---------------------------------------------------------------- the transfer


@dataclass(frozen=True)
class DownloadResult:
    path: Path
    size: int
    sha256: str
    url: str | None  # where the bytes came from this time; None when the cached file was used
    transferred: int  # bytes received over the network by this call
    hashed: bool  # a full SHA-256 pass happened (download or re-verification); False when the stamp was trusted
    verified: bool  # matched a pin


class _Hasher:
    """SHA-256 on a thread: first the bytes already on disk (a resumed partial), then every queued chunk."""

    def __init__(self, h, prefix: Path | None = None, prefix_len: int = 0):
        self.h, self.prefix, self.prefix_len = h, prefix, prefix_len
        self.q: queue.Queue = queue.Queue(maxsize=QUEUE_CHUNKS)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="dinovault-sha256", daemon=True)
        self.thread.start()

    def _run(self):
        try:
            if self.prefix_len:
                left = self.prefix_len
                with open(self.prefix, "rb", buffering=0) as fh:
                    while left > 0:
                        data = fh.read(min(CHUNK, left))
                        if not data:
                            raise OSError(f"{self.prefix} is shorter than {self.prefix_len} bytes")
                        self.h.update(data)
                        left -= len(data)
        except BaseException as err:  # keep draining below so the producer never blocks on a full queue
            self.error = err
        while (item := self.q.get()) is not None:
            if self.error is None:
                self.h.update(item)

    def feed(self, chunk: bytes) -> None:
        self.q.put(chunk)

    def finish(self):
        """Stop the thread; the hash object covering everything fed so far (raises if hashing failed)."""
        self.q.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.h


class _Transfer:
    def __init__(self, dest: Path, pin: Pin | None, session, policy: RetryPolicy, progress):
        self.dest, self.pin, self.session, self.policy, self.progress = dest, pin, session, policy, progress
        self.part, self.meta_path = part_paths(dest)
        # (hash object, bytes covered): the hash of the partial, kept across in-process retries
        self.hstate: tuple[Any, int] | None = None
        self.transferred = 0

    # -- the partial and its sidecar

    def discard(self) -> None:
        self.part.unlink(missing_ok=True)
        self.meta_path.unlink(missing_ok=True)
        self.hstate = None

    def trusted_offset(self, url: str) -> tuple[int, dict | None]:
        """Bytes of the partial that may be resumed from ``url``; an untrusted partial is discarded."""
        try:
            size = self.part.stat().st_size
        except FileNotFoundError:
            self.meta_path.unlink(missing_ok=True)
            return 0, None
        meta = read_json(self.meta_path)
        pin = self.pin
        if meta is None:
            why = "it has no record of its origin"
        elif pin is not None and (meta.get("sha256") != pin.sha256 or meta.get("total") != pin.size):
            why = "it was downloaded for another pin"
        elif pin is None and (meta.get("sha256") is not None or meta.get("url") != url):
            why = "it came from another source and nothing pins its hash"
        elif isinstance(meta.get("total"), int) and size > meta["total"]:
            why = "it is longer than the file"
        elif "done" in meta:  # left by the segmented transfer: resume from its first gap
            done = sorted(tuple(p) for ranges in (meta.get("done") or {}).values() for p in ranges)
            prefix = 0
            for a, b in done:
                if a > prefix:
                    break
                prefix = max(prefix, min(b, size))
            os.truncate(self.part, prefix)
            return prefix, None
        else:
            return size, meta
        log.warning("discarding partial download %s: %s / 丢弃不可信的部分下载", self.part, why)
        self.discard()
        return 0, None

    # -- one source

    def from_source(self, url: str) -> DownloadResult:
        attempt, restarted = 0, False
        while True:
            attempt += 1
            try:
                return self.attempt(url)
            except SourceFailed as err:
                if err.discard:
                    self.discard()
                raise
            except Retryable as err:
                if err.progressed:
                    attempt = 0  # bytes arrived: a flaky connection that keeps progressing is worth continuing
                if attempt >= self.policy.limit(err):
                    raise SourceFailed(self.policy.gave_up(err, attempt)) from None
                wait = self.policy.wait_after(err, attempt)
                if wait is None:
                    raise SourceFailed(f"{err.reason}; asked to retry after {err.retry_after:.0f}s") from None
                log_retry(log, url, err.reason, wait)
                time.sleep(wait)
            except Restart as err:
                self.discard()
                if restarted:
                    raise SourceFailed(str(err)) from None
                restarted = True
                log.warning("%s: %s; starting over from byte 0 / 从头重新下载", url, err)

    def attempt(self, url: str) -> DownloadResult:
        pin = self.pin
        offset, meta = self.trusted_offset(url)
        if pin is not None and offset == pin.size:  # complete but never renamed (killed at the very end)
            return self.finish(url, offset, self.hash_partial(offset), resumed=True)
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if meta and meta.get("url") == url:
                validator = meta.get("etag") if not str(meta.get("etag") or "W/").startswith("W/") else None
                validator = validator or meta.get("last_modified")
                if validator:
                    headers["If-Range"] = validator
        timeout = (self.policy.connect_timeout, self.policy.read_timeout)
        try:
            resp = self.session.get(url, headers=headers, stream=True, timeout=timeout)
        except requests.RequestException as err:
            raise request_failed(err, self.policy) from None
        with resp:
            total = self.check_response(url, resp, offset, meta)
            if resp.status_code == 200 and offset:
                log.warning("%s ignored the Range request (200, not 206); downloading from byte 0 / "
                            "服务器不支持续传，从头下载", url)
                offset = 0
                self.hstate = None
            write_json_atomic(self.meta_path, {
                "url": url, "etag": resp.headers.get("ETag"), "last_modified": resp.headers.get("Last-Modified"),
                "total": total, "sha256": pin.sha256 if pin else None,
            })
            return self.stream(url, resp, offset, total)

    def check_response(self, url: str, resp, offset: int, meta: dict | None) -> int | None:
        """The file's total size from the response, or an exception saying why this response is no good."""
        status, pin = resp.status_code, self.pin
        if status == 416 and offset:
            raise Restart(f"the server refused to resume at byte {offset} (HTTP 416)")
        if (error := status_error(resp)) is not None:
            raise error
        if status == 206:
            m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", resp.headers.get("Content-Range", "").strip())
            if not offset or not m or int(m[1]) != offset:
                raise Restart(f"unexpected Content-Range {resp.headers.get('Content-Range')!r} for byte {offset}")
            total: int | None = int(m[3])
            if meta and meta.get("url") == url:
                for header, key in (("ETag", "etag"), ("Last-Modified", "last_modified")):
                    now, then = resp.headers.get(header), meta.get(key)
                    if now and then and now != then:
                        raise Restart(f"the file changed on the server since the partial download ({header})")
            if meta and meta.get("total") != total:
                raise Restart(f"the file size changed on the server ({meta.get('total')} → {total} bytes)")
        else:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        if pin is not None and total is not None and total != pin.size:
            raise SourceFailed(f"serves {total} bytes, the pin says {pin.size}")
        return total

    def hash_partial(self, offset: int):
        if self.hstate is not None and self.hstate[1] == offset:
            return self.hstate[0].copy()
        return _Hasher(hashlib.sha256(), self.part, offset).finish()

    def stream(self, url: str, resp, offset: int, total: int | None) -> DownloadResult:
        expected = self.pin.size if self.pin else total
        if self.hstate is not None and self.hstate[1] == offset:
            hasher = _Hasher(self.hstate[0].copy())
        else:
            hasher = _Hasher(hashlib.sha256(), self.part, offset)
        written = offset
        self.progress.start(self.dest.name, expected, offset)
        fh = open_part(self.part, "r+" if offset else "w")  # a binary handle (os.open is text mode on Windows)
        try:
            for chunk in resp.iter_content(CHUNK):
                if written == 0 and looks_like_markup(chunk):
                    raise SourceFailed(
                        f"answered an HTML/XML page (HTTP {resp.status_code}), not the checkpoint", discard=True)
                if expected is not None and written + len(chunk) > expected:
                    raise SourceFailed(f"sent more than the {expected} bytes expected", discard=True)
                try:
                    write_at(fh, chunk, written)
                except OSError as err:
                    fh.truncate(written)  # drop a half-written chunk so the partial stays resumable
                    raise LocalWriteError(err, written) from None
                written += len(chunk)
                self.transferred += len(chunk)
                hasher.feed(chunk)
                self.progress.update(len(chunk))
        except requests.RequestException as err:
            at = (written, expected) if expected else None
            raise request_failed(err, self.policy, progressed=written > offset, at=at) from None
        finally:
            fh.close()
            self.progress.close()
            try:
                self.hstate = (hasher.finish(), written)
            except OSError:
                self.hstate = None
        if self.hstate is None:
            raise Restart(f"could not re-read the partial download {self.part} to hash it")
        if expected is not None and written < expected:
            raise Retryable(f"the response ended after {written} of {expected} bytes", progressed=written > offset,
                            at=(written, expected))
        return self.finish(url, written, self.hstate[0], resumed=offset > 0)

    def finish(self, url: str, size: int, h, resumed: bool) -> DownloadResult:
        sha = h.hexdigest()
        pin = self.pin
        if pin is not None and (size != pin.size or sha != pin.sha256):
            what = f"size {size}, pinned {pin.size}" if size != pin.size else f"sha256 {sha}, pinned {pin.sha256}"
            if resumed:
                raise Restart(f"the resumed file does not match its pin ({what})")
            self.discard()
            raise SourceFailed(f"bytes do not match the pin ({what})")
        replace(self.part, self.dest)
        self.meta_path.unlink(missing_ok=True)
        self.hstate = None
        write_stamp(self.dest, sha)
        return DownloadResult(self.dest, size, sha, url, self.transferred, True, pin is not None)
