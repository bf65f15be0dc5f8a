"""Where checkpoints live and whether they are verified, without downloading anything.

- ``$TORCH_HOME/hub/checkpoints/<upstream file>`` is torch.hub's cache, TORCH_HOME defaulting as torch does.
- A "verified stamp" (under ``$TORCH_HOME/hub/dinovault/stamps``, keyed by device and inode so hard links share
  it) lets later runs skip re-hashing while the file's size, mtime and ctime are unchanged.

No torch here: importing torch costs seconds and hundreds of MB.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ExportError
from .files import CHUNK, file_sha256, json_text, link_or_copy_atomic, write_json_atomic
from .registry import Pin
from .settings import torch_home

log = logging.getLogger("dinovault")
# the file helpers live in files.py; these names stay importable from here for the download half
__all__ = ["CHUNK", "FileCheck", "cache_path", "check_file", "file_sha256", "json_text", "read_stamp", "torch_home",
           "place_file", "verify_file", "write_json_atomic", "write_stamp"]


# ---------------------------------------------------------------- paths


def checkpoints_dir() -> Path:
    return torch_home() / "hub" / "checkpoints"


def cache_path(upstream_file: str) -> Path:
    """Where torch.hub's ``load_state_dict_from_url`` looks for ``upstream_file``."""
    return checkpoints_dir() / upstream_file


def stamp_dir() -> Path:
    return torch_home() / "hub" / "dinovault" / "stamps"


# ---------------------------------------------------------------- small file helpers


def read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# ---------------------------------------------------------------- verified stamps


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _stamp_file(st: os.stat_result) -> Path:
    return stamp_dir() / f"{st.st_dev}-{st.st_ino}.json"


def read_stamp(path: Path, st: os.stat_result | None = None) -> str | None:
    """The SHA-256 recorded for ``path``'s inode, if its size, mtime and ctime are unchanged since it was hashed.
    The ctime cannot be set back by a user (writing or touching the file moves it), so a tampered file whose mtime
    was restored does not pass as verified."""
    try:
        st = st or os.stat(path)
    except OSError:
        return None
    data = read_json(_stamp_file(st))
    if data and (data.get("size"), data.get("mtime_ns"), data.get("ctime_ns")) == _identity(st):
        sha = data.get("sha256")
        return sha if isinstance(sha, str) else None
    return None


def write_stamp(path: Path, sha256: str, st: os.stat_result | None = None) -> None:
    """Record that ``path`` (its inode, as of ``st``) hashes to ``sha256``. Best effort: a read-only cache only
    costs a re-hash next time."""
    try:
        st = st or os.stat(path)
        stamp_dir().mkdir(parents=True, exist_ok=True)
        write_json_atomic(
            _stamp_file(st), {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                              "ctime_ns": st.st_ctime_ns, "path": str(path)}
        )
    except OSError as err:
        log.debug("could not write the verified stamp for %s: %s", path, err)


def carry_stamp(path: Path, before: os.stat_result) -> None:
    """Renew ``path``'s stamp after a change of ours that left its bytes alone (a new hard link moves the inode's
    ctime), if the stamp was valid as of ``before``; else there is nothing to carry and the next check hashes it."""
    sha = read_stamp(path, before)
    if sha is not None:
        write_stamp(path, sha)


def clear_stamp(path: Path) -> None:
    try:
        _stamp_file(os.stat(path)).unlink(missing_ok=True)
    except OSError:
        pass


# ---------------------------------------------------------------- verification


@dataclass(frozen=True)
class FileCheck:
    ok: bool
    size: int
    sha256: str | None  # None when the size alone already disagreed with the pin
    hashed: bool  # True when the whole file was read this time (no valid stamp)
    reason: str


def check_file(path: Path, pin: Pin | None, *, rehash: bool = False) -> FileCheck:
    """Check ``path`` against ``pin`` (size first, then SHA-256), trusting a valid stamp unless ``rehash``.

    With ``pin=None`` the file is only hashed (once: the stamp remembers it) and reported ok.
    """
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return FileCheck(False, 0, None, False, "missing")
    if pin is not None and st.st_size != pin.size:
        return FileCheck(False, st.st_size, None, False, f"size {st.st_size} bytes, pinned {pin.size}")
    sha = None if rehash else read_stamp(path, st)
    hashed = sha is None
    if hashed:
        sha = file_sha256(path)
        if pin is None or sha == pin.sha256:
            write_stamp(path, sha, st)  # the stat taken before hashing: a file changed meanwhile gets no valid stamp
    if pin is not None and sha != pin.sha256:
        clear_stamp(path)
        return FileCheck(False, st.st_size, sha, hashed, f"sha256 {sha} differs from the pinned {pin.sha256}")
    return FileCheck(True, st.st_size, sha, hashed, "ok")


def verify_file(path: Path, pin: Pin, *, rehash: bool = False) -> bool:
    """True when ``path`` has the pinned size and SHA-256 (stamp-aware; ``rehash=True`` forces a full read)."""
    return check_file(path, pin, rehash=rehash).ok


# ---------------------------------------------------------------- placing verified bytes

def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def place_file(src: Path, target: Path, size: int, sha256: str) -> bool:
    """Make ``target`` hold the bytes of ``src`` (verified: ``size``/``sha256``). Returns True when it changed."""
    src, target = Path(src), Path(target)
    if _same_file(src, target) or check_file(target, Pin(target.name, size, sha256)).ok:
        return False
    try:
        link_or_copy_atomic(src, target, sha256)
    except OSError as err:
        raise ExportError(
            f"cannot write {target}: {err.strerror or err} / 无法写入导出文件",
            "free space or pick another --save_dir, then rerun / 请释放空间或更换目录后重试",
        ) from None
    write_stamp(target, sha256)  # a new link moved the inode's ctime: stamp it again (its bytes were verified)
    return True
