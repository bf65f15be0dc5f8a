"""Hash prefixes in file names: a DINOv3 official file is named ``…-<hash8>.pth``, ``hash8`` being the first 8 hex
digits of its SHA-256 (torch.hub's ``check_hash`` convention).

The prefix is always checked. A full ``size sha256`` pin from the registry, where there is one, takes precedence and
is checked in full; with only the prefix, the result says so (``verified: "prefix"`` on the card and in ``invoke
verify``). Without a size the transfer cannot be segmented nor checked before its last byte, so such a file is
downloaded under a staging name and gets its official name only after its hash passed (``fetch_checked``).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..cache import check_file, clear_stamp, write_stamp
from ..errors import VerificationError
from ..files import remove
from ..registry import Pin, Pins

log = logging.getLogger("dinovault")
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")  # torch.hub: r'-([a-f0-9]*)\.'
PREFIX = "prefix"  # the value of ``verified`` when only the name's hash prefix matched


def name_prefix(file: str) -> str | None:
    """The SHA-256 prefix a file name carries (``dinov3_vits16_pretrain_lvd1689m-08c60483.pth`` → ``08c60483``)."""
    m = _HASH_IN_NAME.search(file)
    return m[1] if m else None


@dataclass(frozen=True)
class PrefixPin:
    """Only the first hex digits of the SHA-256 are known (from the file's name); no size."""

    file: str
    prefix: str
    size = None
    sha256 = None

    def problem(self, sha256: str) -> str | None:
        if sha256.startswith(self.prefix):
            return None
        return f"sha256 {sha256} does not start with {self.prefix}, the hash in its name {self.file}"


def official_pin(file: str, pins: Pins) -> Pin | PrefixPin | None:
    """What an official file is checked against: its registry pin, else the hash prefix in its name, else nothing."""
    return pins.files.get(file) or (PrefixPin(file, p) if (p := name_prefix(file)) else None)


def official_size(file: str, pins: Pins, card: dict | None) -> int | None:
    """The size the official file ``file`` must have: its full pin's; with only its name's hash prefix, the size its
    model ``card`` records for a SHA-256 that fits the prefix; None when neither says."""
    pin = official_pin(file, pins)
    if not isinstance(pin, PrefixPin):
        return pin.size if pin is not None else None
    size, sha = (card or {}).get("size"), (card or {}).get("sha256")
    return size if isinstance(size, int) and isinstance(sha, str) and pin.problem(sha) is None else None


def prefix_problem(file: str, sha256: str | None) -> str | None:
    """Why ``sha256`` cannot be the file named ``file`` (None: it can, or the name carries no prefix)."""
    p = name_prefix(file)
    if p is None or sha256 is None:
        return None
    return PrefixPin(file, p).problem(sha256)


def verified_level(pin) -> bool | str:
    """What ``Obtained.verified`` and the card say: True (a full pin), "prefix" (the name's hash only), False."""
    return PREFIX if isinstance(pin, PrefixPin) else pin is not None


def refused(what: str, why: str) -> VerificationError:
    return VerificationError(
        f"{what}: {why}: not the file of that name; removed, nothing exported / 文件哈希与文件名不符，已删除",
        "check the link or mirror (another file under this name?) and fetch again / 请检查链接或镜像后重新获取",
    )


def fetch_checked(urls: list[str], dest: Path, problem: Callable[[str], str | None], *, progress=None,
                  rehash: bool = False, auth=None):
    """``dest`` holding bytes whose SHA-256 passes ``problem`` (None: fine), for a file with no full pin: downloaded
    (one resumable stream) as ``<dest>.unchecked``, hashed, and renamed to ``dest`` only if it passes. Returns the
    transport's DownloadResult; VerificationError when the bytes fail."""
    from filelock import FileLock

    from ..transport.download import ensure_file
    from ..transport.stream import DownloadResult

    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest) + ".lock"):
        if dest.is_file():
            check = check_file(dest, None, rehash=rehash)
            if check.sha256 is not None and (why := problem(check.sha256)) is None:
                return DownloadResult(dest, check.size, check.sha256, None, 0, check.hashed, True)
            log.warning("cached %s fails verification (%s); fetching it again", dest, why)
            clear_stamp(dest)
            remove(dest)
        staging = dest.with_name(dest.name + ".unchecked")
        got = ensure_file(urls, staging, None, progress=progress, rehash=True, auth=auth)
        if (why := problem(got.sha256)) is not None:
            clear_stamp(staging)
            staging.unlink(missing_ok=True)
            raise refused(dest.name, why)
        os.replace(staging, dest)
        write_stamp(dest, got.sha256)
        return DownloadResult(dest, got.size, got.sha256, got.url, got.transferred, True, True)


__all__ = ["PREFIX", "PrefixPin", "fetch_checked", "name_prefix", "official_pin", "official_size", "prefix_problem",
           "verified_level"]
