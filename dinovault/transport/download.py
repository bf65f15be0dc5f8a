"""One verified, resumable, locked transfer of an upstream file into the torch.hub cache.

- A large pinned file is fetched in ranges over several connections from every mirror at once (segments.py);
  a small or unpinned file, or a server without Range support, with one stream (stream.py).
- Either way the partial lives beside the target as ``<file>.part`` with a sidecar ``<file>.part.json``, survives
  kill -9 and is resumed; size and SHA-256 are checked before the atomic rename into place.
- A cached file that is already verified (see cache.py) is kept and not downloaded again.

No torch here: importing torch costs seconds and hundreds of MB.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import requests
from filelock import FileLock, Timeout

from .. import settings
from ..cache import check_file, read_json, read_stamp
from ..errors import DinovaultError, DiskSpaceError, DownloadError, LocalWriteError, NoRanges, SourceFailed
from ..files import remove
from ..progress import human_size, make_progress
from ..registry import Pin
from .ranges import Ranges, ranges_on_disk
from .retry import RetryPolicy, all_failed, local_write_error
from .stream import DownloadResult, _Transfer, part_paths

log = logging.getLogger("dinovault")


def _segmented(urls, dest, pin, policy, progress, auth=None) -> DownloadResult | None:
    """The segmented transfer when it applies; None when the file should come in one stream."""
    connections, segment = settings.connections(), settings.segment_size()
    if pin is None or connections < 2 or pin.size < 2 * segment:
        return None
    from .segments import Segmented

    try:
        return Segmented(urls, dest, pin, policy, progress, connections=connections, segment_size=segment,
                         new_session=lambda: new_session(auth)).run()
    except NoRanges:
        log.warning("%s: no source honours Range requests; downloading with one stream / "
                    "来源不支持分段下载，改用单连接", dest.name)
        return None


def _download(urls: list[str], dest: Path, pin: Pin | None, session, policy: RetryPolicy, progress,
              auth=None) -> DownloadResult:
    done = _segmented(urls, dest, pin, policy, progress, auth)
    if done is not None:
        return done
    transfer = _Transfer(dest, pin, session, policy, progress)
    failures: list[tuple[str, str]] = []
    for i, url in enumerate(urls):
        try:
            return transfer.from_source(url)
        except SourceFailed as err:
            if i + 1 < len(urls):  # the last one's reason is in the final error: not printed twice
                log.warning("%s failed: %s; trying the next source / 该来源失败，尝试下一个", url, err.reason)
            failures.append((url, err.reason))
        except LocalWriteError as err:
            raise local_write_error(err, dest, transfer.part) from None
    raise all_failed(dest, failures)


def _bytes_kept(dest: Path) -> int:
    """Bytes a partial download of ``dest`` holds on disk: the ranges its sidecar records (nothing is preallocated,
    so a partial holds what was written; a single-stream partial is one range from byte 0)."""
    part, meta_path = part_paths(dest)
    if not part.exists():
        return 0
    done, _ = ranges_on_disk(read_json(meta_path) or {}, part.stat().st_size)
    return Ranges(p for r in done.values() for p in r.pairs()).size()


def _check_free_space(dest: Path, pin: Pin | None) -> None:
    """Refuse at once when the disk cannot hold the file (counting a partial download already there)."""
    if pin is None:
        return
    try:
        have = _bytes_kept(dest)
        free = shutil.disk_usage(dest.parent).free
    except OSError:
        return
    need = pin.size - min(have, pin.size)
    if free < need:
        raise DiskSpaceError(
            f"not enough free space for {dest.name} in {dest.parent}: {human_size(need)} needed, "
            f"{human_size(free)} free / 磁盘空间不足",
            "free some space, or set TORCH_HOME to a bigger disk, then rerun / "
            "请释放空间或将 TORCH_HOME 设到更大的磁盘后重试",
        )


def _lock(dest: Path) -> FileLock:
    lock = FileLock(str(dest) + ".lock")
    try:
        lock.acquire(timeout=0.2)
    except Timeout:
        log.info("another process is downloading %s; waiting for it / 另一个进程正在下载，等待其完成", dest.name)
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
    local: Sequence[Path] = (),
    auth=None,
) -> DownloadResult:
    """Make ``dest`` hold the pinned file: keep a verified copy already there, else take it from a verified
    ``local`` file (hard link or copy, e.g. an export restored by ``dvc pull``), else download it from the first
    source that works. One process at a time per file (a file lock); the others wait and then reuse the result.
    ``pin=None`` accepts whatever the first working source serves (the caller must have allowed that). ``auth``
    (a requests auth, e.g. a signed link's query) goes with every request and nowhere else: URLs, the sidecar and
    messages never hold it."""
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
                log.info("verifying %s (%s) / 正在校验", dest, human_size(dest.stat().st_size))
            check = check_file(dest, pin, rehash=rehash)
            if check.ok and check.sha256 is not None:  # (ok: hashed or stamped)
                return DownloadResult(dest, check.size, check.sha256, None, 0, check.hashed, pin is not None)
            log.warning("cached %s fails verification (%s); fetching it again / 缓存文件校验失败，重新下载", dest,
                        check.reason)
            remove(dest)  # may be a read-only hard link of a DVC object
        for other in local if pin is not None else ():
            found = check_file(other, pin, rehash=rehash) if other.exists() else None
            if found and found.ok and pin is not None:
                from ..cache import place_file

                place_file(other, dest, pin.size, pin.sha256)
                log.info("took %s from %s (verified, no download) / 已从本地文件取得（已校验，无需下载）",
                         dest.name, other)
                return DownloadResult(dest, pin.size, pin.sha256, None, 0, found.hashed, True)
        _check_free_space(dest, pin)
        own_session = session is None
        session = session or new_session(auth)
        try:
            return _download(urls, dest, pin, session, policy, make_progress(progress), auth)
        finally:
            if own_session:
                session.close()
    finally:
        lock.release()


def new_session(auth=None) -> requests.Session:
    from .. import __version__

    session = requests.Session()
    session.auth = auth
    session.headers["User-Agent"] = f"dinovault/{__version__} python-requests/{requests.__version__}"
    return session


__all__ = ["DinovaultError", "DownloadResult", "RetryPolicy", "ensure_file", "new_session", "part_paths"]
