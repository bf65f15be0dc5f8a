"""One verified, resumable, locked transfer of an upstream file into the torch.hub cache.

- The partial download lives beside the target as ``<file>.part`` with a sidecar ``<file>.part.json`` saying
  what it came from (URL, ETag/Last-Modified, total size, pinned SHA-256); a partial of another origin is discarded.
- SHA-256 is computed while the bytes arrive, by a hasher thread fed through a bounded queue (hashlib releases
  the GIL), so hashing overlaps the socket reads and memory stays bounded whatever the file size.
- Size and hash are checked before the atomic rename into place; nothing unverified ever carries the final name.
- A cached file that is already verified (see cache.py) is kept and not downloaded again.

No torch here: importing torch costs seconds and hundreds of MB.
"""

from __future__ import annotations

import email.utils
import errno
import hashlib
import logging
import os
import queue
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from filelock import FileLock, Timeout

from . import settings
from .cache import CHUNK, _read_json, check_file, read_stamp, write_json_atomic, write_stamp
from .errors import DownloadError
from .progress import human_size, make_progress
from .registry import Pin

log = logging.getLogger("dinovault")

QUEUE_CHUNKS = 16  # hasher queue bound: at most ~16 MB in flight whatever the file size


def part_paths(dest: Path) -> tuple[Path, Path]:
    """The partial download beside ``dest`` and its sidecar."""
    return dest.with_name(dest.name + ".part"), dest.with_name(dest.name + ".part.json")


# ---------------------------------------------------------------- retry policy


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


def _retry_after(value: str | None) -> float | None:
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


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None, progressed: bool = False):
        super().__init__(reason)
        self.reason, self.retry_after, self.progressed = reason, retry_after, progressed


class _SourceFailed(Exception):
    def __init__(self, reason: str, discard: bool = False):
        super().__init__(reason)
        self.reason, self.discard = reason, discard  # discard: the partial holds this source's bad bytes


class _Restart(Exception):
    """The partial cannot be trusted: drop it and try this source once more from byte zero."""


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


def _write_all(fd: int, chunk: bytes) -> None:
    view = memoryview(chunk)
    while view:
        view = view[os.write(fd, view):]


def _describe(err: BaseException) -> str:
    text = str(err)
    if isinstance(err, requests.Timeout) or "timed out" in text.lower():
        return "timed out (no data within the read timeout)"
    if isinstance(err, requests.exceptions.ChunkedEncodingError) or "IncompleteRead" in text:
        return "connection closed before the end of the file"
    if isinstance(err, requests.exceptions.SSLError):
        return "TLS error (certificate not trusted?)"
    if isinstance(err, requests.ConnectionError):
        known = ("Connection refused", "Name or service not known", "Temporary failure in name resolution",
                 "No route to host", "Network is unreachable", "Connection reset by peer", "Connection aborted")
        why = next((k for k in known if k in text), text[:160])
        return f"connection failed ({why})"
    return f"{type(err).__name__}: {text[:160]}"


class _Transfer:
    def __init__(self, dest: Path, pin: Pin | None, session, policy: RetryPolicy, progress):
        self.dest, self.pin, self.session, self.policy, self.progress = dest, pin, session, policy, progress
        self.part, self.meta_path = part_paths(dest)
        self.hstate = None  # (hash object, bytes covered): the hash of the partial, kept across in-process retries
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
        meta = _read_json(self.meta_path)
        pin = self.pin
        if meta is None:
            why = "it has no record of its origin"
        elif pin is not None and (meta.get("sha256") != pin.sha256 or meta.get("total") != pin.size):
            why = "it was downloaded for another pin"
        elif pin is None and (meta.get("sha256") is not None or meta.get("url") != url):
            why = "it came from another source and nothing pins its hash"
        elif isinstance(meta.get("total"), int) and size > meta["total"]:
            why = "it is longer than the file"
        else:
            return size, meta
        log.warning("discarding partial download %s: %s", self.part, why)
        self.discard()
        return 0, None

    # -- one source

    def from_source(self, url: str) -> DownloadResult:
        attempt, restarted = 0, False
        while True:
            attempt += 1
            try:
                return self.attempt(url)
            except _SourceFailed as err:
                if err.discard:
                    self.discard()
                raise
            except _Retryable as err:
                if err.progressed:
                    attempt = 0  # bytes arrived: a flaky connection that keeps progressing is worth continuing
                if attempt >= self.policy.attempts:
                    raise _SourceFailed(f"{err.reason} (after {attempt} attempts)") from None
                wait = self.policy.wait(max(attempt, 1), err.retry_after)
                if wait is None:
                    raise _SourceFailed(f"{err.reason}; asked to retry after {err.retry_after:.0f}s") from None
                log.warning("%s: %s; retrying in %.2gs", url, err.reason, wait)
                time.sleep(wait)
            except _Restart as err:
                self.discard()
                if restarted:
                    raise _SourceFailed(str(err)) from None
                restarted = True
                log.warning("%s: %s; starting over from byte 0", url, err)

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
            raise _Retryable(_describe(err)) from None
        with resp:
            total = self.check_response(url, resp, offset, meta)
            if resp.status_code == 200 and offset:
                log.warning("%s ignored the Range request (200, not 206); downloading from byte 0", url)
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
            raise _Restart(f"the server refused to resume at byte {offset} (HTTP 416)")
        if status == 429 or status >= 500:
            raise _Retryable(f"HTTP {status} {resp.reason}", _retry_after(resp.headers.get("Retry-After")))
        if status not in (200, 206):
            raise _SourceFailed(f"HTTP {status} {resp.reason}")
        ctype = resp.headers.get("Content-Type", "")
        if "html" in ctype.lower():
            raise _SourceFailed(f"answered an HTML page (HTTP {status}, {ctype}), not the checkpoint")
        if status == 206:
            m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", resp.headers.get("Content-Range", "").strip())
            if not offset or not m or int(m[1]) != offset:
                raise _Restart(f"unexpected Content-Range {resp.headers.get('Content-Range')!r} for byte {offset}")
            total = int(m[3])
            if meta and meta.get("url") == url:
                for header, key in (("ETag", "etag"), ("Last-Modified", "last_modified")):
                    now, then = resp.headers.get(header), meta.get(key)
                    if now and then and now != then:
                        raise _Restart(f"the file changed on the server since the partial download ({header})")
            if meta and meta.get("total") != total:
                raise _Restart(f"the file size changed on the server ({meta.get('total')} → {total} bytes)")
        else:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        if pin is not None and total is not None and total != pin.size:
            raise _SourceFailed(f"serves {total} bytes, the pin says {pin.size}")
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
        fd = os.open(self.part, os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if offset == 0 else 0), 0o644)
        try:
            os.lseek(fd, offset, os.SEEK_SET)
            for chunk in resp.iter_content(CHUNK):
                if written == 0 and chunk.lstrip()[:1] == b"<":
                    raise _SourceFailed(
                        f"answered an HTML/XML page (HTTP {resp.status_code}), not the checkpoint", discard=True)
                if expected is not None and written + len(chunk) > expected:
                    raise _SourceFailed(f"sent more than the {expected} bytes expected", discard=True)
                try:
                    _write_all(fd, chunk)
                except OSError as err:
                    os.ftruncate(fd, written)  # drop a half-written chunk so the partial stays resumable
                    raise _LocalWriteError(err, written) from None
                written += len(chunk)
                self.transferred += len(chunk)
                hasher.feed(chunk)
                self.progress.update(len(chunk))
        except requests.RequestException as err:
            raise _Retryable(_describe(err), progressed=written > offset) from None
        finally:
            os.close(fd)
            self.progress.close()
            try:
                self.hstate = (hasher.finish(), written)
            except OSError:
                self.hstate = None
        if self.hstate is None:
            raise _Restart(f"could not re-read the partial download {self.part} to hash it")
        if expected is not None and written < expected:
            raise _Retryable(f"the response ended after {written} of {expected} bytes", progressed=written > offset)
        return self.finish(url, written, self.hstate[0], resumed=offset > 0)

    def finish(self, url: str, size: int, h, resumed: bool) -> DownloadResult:
        sha = h.hexdigest()
        pin = self.pin
        if pin is not None and (size != pin.size or sha != pin.sha256):
            what = f"size {size}, pinned {pin.size}" if size != pin.size else f"sha256 {sha}, pinned {pin.sha256}"
            if resumed:
                raise _Restart(f"the resumed file does not match its pin ({what})")
            self.discard()
            raise _SourceFailed(f"bytes do not match the pin ({what})")
        os.replace(self.part, self.dest)
        self.meta_path.unlink(missing_ok=True)
        self.hstate = None
        write_stamp(self.dest, sha)
        return DownloadResult(self.dest, size, sha, url, self.transferred, True, pin is not None)


class _LocalWriteError(Exception):
    def __init__(self, err: OSError, kept: int):
        super().__init__(str(err))
        self.err, self.kept = err, kept


def _download(urls: list[str], dest: Path, pin: Pin | None, session, policy: RetryPolicy, progress) -> DownloadResult:
    transfer = _Transfer(dest, pin, session, policy, progress)
    failures: list[tuple[str, str]] = []
    for url in urls:
        try:
            return transfer.from_source(url)
        except _SourceFailed as err:
            log.warning("%s failed: %s", url, err.reason)
            failures.append((url, err.reason))
        except _LocalWriteError as err:
            code = errno.errorcode.get(err.err.errno, "")
            full = code in ("ENOSPC", "EDQUOT", "EFBIG")
            what = "disk full" if full else "cannot write"
            raise DownloadError(
                f"{what} while downloading {dest.name} into {dest.parent}: {err.err.strerror or err.err} "
                f"({err.kept} bytes kept in {transfer.part.name}) / 磁盘写入失败",
                ("free some space (or set TORCH_HOME to a bigger disk) and rerun: the download resumes / "
                 "请释放磁盘空间后重新运行，下载将继续") if full else "check the folder's permissions and rerun",
            ) from None
    listing = "; ".join(f"{url}: {reason}" for url, reason in failures)
    n = len(failures)
    hint = "check the network, or set DINOV2_BASE_URL to a mirror, then rerun / 请检查网络或设置 DINOV2_BASE_URL 后重试"
    if any("pin" in reason for _, reason in failures):
        hint = ("the served bytes differ from the pinned SHA-256: check the mirror or DINOV2_REGISTRY / "
                "文件与固定哈希不符")
    raise DownloadError(
        f"could not download {dest.name} from {'any of the ' + str(n) + ' sources' if n > 1 else 'its source'}: "
        f"{listing} / 下载失败",
        hint,
    )


def _lock(dest: Path) -> FileLock:
    lock = FileLock(str(dest) + ".lock")
    try:
        lock.acquire(timeout=0.2)
    except Timeout:
        log.info("another process is downloading %s; waiting for it", dest.name)
        lock.acquire()
    return lock


def ensure_file(
    urls: list[str],
    dest: Path,
    pin: Pin | None,
    *,
    progress=None,
    policy: RetryPolicy | None = None,
    session: requests.Session | None = None,
    rehash: bool = False,
    local: list[Path] = (),
) -> DownloadResult:
    """Make ``dest`` hold the pinned file: keep a verified copy already there, else take it from a verified
    ``local`` file (hard link or copy, e.g. an export restored by ``dvc pull``), else download it from the first
    source that works. One process at a time per file (a file lock); the others wait and then reuse the result.
    ``pin=None`` accepts whatever the first working source serves (the caller must have allowed that)."""
    dest = Path(dest)
    policy = policy or RetryPolicy.from_env()
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        lock = _lock(dest)
    except OSError as err:
        raise DownloadError(
            f"cannot use the torch cache folder {dest.parent}: {err.strerror or err} / 无法写入缓存目录",
            "set TORCH_HOME to a writable folder / 请将 TORCH_HOME 设为可写目录",
        ) from None
    try:
        if dest.exists():
            if rehash or read_stamp(dest) is None:
                log.info("verifying %s (%s)", dest, human_size(dest.stat().st_size))
            check = check_file(dest, pin, rehash=rehash)
            if check.ok:
                return DownloadResult(dest, check.size, check.sha256, None, 0, check.hashed, pin is not None)
            log.warning("cached %s fails verification (%s); fetching it again", dest, check.reason)
            dest.unlink()
        for other in local if pin is not None else ():
            found = check_file(other, pin, rehash=rehash) if other.exists() else None
            if found and found.ok:
                from .export import export_file

                export_file(other, dest, pin.size, pin.sha256)
                log.info("took %s from %s (verified, no download)", dest.name, other)
                return DownloadResult(dest, pin.size, pin.sha256, None, 0, found.hashed, True)
        own_session = session is None
        session = session or new_session()
        try:
            return _download(urls, dest, pin, session, policy, make_progress(progress))
        finally:
            if own_session:
                session.close()
    finally:
        lock.release()


def new_session() -> requests.Session:
    from . import __version__

    session = requests.Session()
    session.headers["User-Agent"] = f"dinovault/{__version__} python-requests/{requests.__version__}"
    return session


__all__ = ["DownloadResult", "RetryPolicy", "ensure_file", "new_session", "part_paths"]
