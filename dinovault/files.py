"""Writing a file atomically, hashing a file, linking one into place, decoding a text file a user edits: the one
way dinovault does each.

Nothing writes into an existing file (the workspace, the DVC cache and the torch.hub cache may share its inode):
new bytes or links go to a temporary name beside the target, unique per process and thread, then are renamed over it.

Windows rules, here and nowhere else: a rename over a read-only file (DVC keeps its outputs read-only) is refused
there, so the target's read-only attribute is cleared first, as DVC itself does when it replaces an output; a hard
link fails across volumes (the torch.hub cache on C:, the repository on D:), on FAT/exFAT and without permission, so
every link falls back to a copy that is hashed while it is written; a file held open elsewhere is retried briefly.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .errors import DinovaultError

CHUNK = 1 << 20  # bytes per read, from disk or from the socket
WINDOWS = os.name == "nt"
_HASH_CHUNK = 8 << 20


def temp_beside(path: Path, suffix: str = "tmp") -> Path:
    """A temporary name beside ``path``, unique per process and thread (kept short: Windows limits paths to 260
    characters unless long paths are enabled)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_native_id()}.{suffix}")


def replace(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` over ``target`` (atomic on every platform), also where ``target`` is read-only (a DVC cache
    object, or a file hard-linked to one) or held open for a moment on Windows; a bare ``os.replace`` fails there."""
    for attempt in range(5):
        try:
            os.replace(tmp, target)
            return
        except PermissionError:
            if _read_only(target):  # Windows: clear the attribute (of this inode), then the rename goes through
                os.chmod(target, stat.S_IREAD | stat.S_IWRITE)
            elif attempt == 4 or not WINDOWS:  # elsewhere, or for good: not a passing sharing violation
                raise
            else:
                time.sleep(0.1 * (attempt + 1))  # Windows: open in another process (a scanner, an indexer)
    os.replace(tmp, target)


def remove(path: Path) -> None:
    """Unlink ``path`` if it is there (never written into: other names of its inode keep their bytes), also where it
    is read-only (DVC keeps its files so): Windows refuses to unlink such a file, so the attribute is cleared first."""
    try:
        path.unlink(missing_ok=True)
    except PermissionError:
        if not _read_only(path):
            raise
        os.chmod(path, stat.S_IREAD | stat.S_IWRITE)
        path.unlink(missing_ok=True)


def _read_only(path: Path) -> bool:
    try:
        return not os.stat(path).st_mode & stat.S_IWRITE
    except OSError:
        return False


def write_atomic(path: Path, data: bytes | str) -> None:
    """Replace ``path`` by a new file holding ``data`` (text is UTF-8); readers see the old or the new file."""
    path = Path(path)
    tmp = temp_beside(path)
    tmp.unlink(missing_ok=True)
    try:
        with open(tmp, "xb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def working_directory(folder: Path) -> Iterator[None]:
    """``folder`` as the working directory for the block (``contextlib.chdir`` of Python 3.11, for 3.10 too)."""
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def json_text(data: dict) -> str:
    """The one JSON layout of every file dinovault writes: sorted keys, stable from run to run."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_json_atomic(path: Path, data: dict) -> None:
    write_atomic(path, json_text(data))


def link_atomic(src: Path, dest: Path) -> None:
    """Make ``dest`` a hard link of ``src`` (replacing what was there) through a temporary name; OSError when the
    file system refuses (another device, no permission)."""
    tmp = temp_beside(dest, "link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
        replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def link_or_copy_atomic(src: Path, dest: Path, sha256: str) -> bool:
    """Make ``dest`` hold the bytes of ``src``, whose SHA-256 is ``sha256``: a hard link where the file system allows
    it, else a copy verified as it is written; through a temporary name either way. True when it linked."""
    tmp = temp_beside(dest)
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(src, tmp)
            linked = True
        except OSError as err:  # another volume, FAT/exFAT, no permission, too many links: copy
            if err.errno == errno.ENOENT:
                raise
            _copy_verified(src, tmp, sha256)
            linked = False
        replace(tmp, dest)
        return linked
    finally:
        tmp.unlink(missing_ok=True)


def _copy_verified(src: Path, tmp: Path, sha256: str) -> None:
    h = hashlib.sha256()
    with open(src, "rb", buffering=0) as fin, open(tmp, "xb", buffering=0) as fout:
        while chunk := fin.read(CHUNK):
            h.update(chunk)
            view = memoryview(chunk)
            while view:
                view = view[fout.write(view):]
    if h.hexdigest() != sha256:
        raise DinovaultError(f"{src} changed while it was being copied / 复制过程中文件被修改",
                             "rerun the command / 请重新运行")


@dataclass(frozen=True)
class Digests:
    size: int
    sha256: str | None
    md5: str | None = None


def hash_file(path: Path, md5: bool = False, sha256: bool = True) -> Digests:
    """SHA-256 and/or MD5 of ``path`` in one read; two digests run in parallel (hashlib frees the GIL)."""
    wanted = {name: hashlib.new(name) for name, on in (("sha256", sha256), ("md5", md5)) if on}
    size = 0
    with open(path, "rb", buffering=0) as fh, ThreadPoolExecutor(len(wanted)) as pool:
        while chunk := fh.read(_HASH_CHUNK):
            size += len(chunk)
            list(pool.map(lambda h, c=chunk: h.update(c), wanted.values()))
    hexes = {name: h.hexdigest() for name, h in wanted.items()}
    return Digests(size, hexes.get("sha256"), hexes.get("md5"))


def file_sha256(path: Path) -> str:
    sha = hash_file(path).sha256
    assert sha is not None  # asked for (sha256=True)
    return sha


def decode_utf8(data: bytes, source: str, error: type[DinovaultError]) -> str:
    """``data`` as text (a UTF-8 byte-order mark is dropped); ``error`` at ``source:LINE`` if it is not UTF-8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - data.rfind(b"\n", 0, err.start)
        raise error(
            f"{source}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x} at column {column}) / "
            f"第 {line} 行不是 UTF-8 编码",
            "save the file as UTF-8, e.g. iconv -f GBK -t UTF-8 / 请以 UTF-8 编码保存，例如 iconv -f GBK -t UTF-8",
        ) from None
