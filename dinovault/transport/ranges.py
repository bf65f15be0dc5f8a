"""Byte ranges of a partial download: which are on disk, writing at an offset, and hashing the contiguous prefix
in file order while the ranges after it are still arriving."""

from __future__ import annotations

import bisect
import hashlib
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from io import FileIO
from pathlib import Path

from ..cache import CHUNK


class Ranges:
    """Disjoint half-open byte intervals, merged as they are added."""

    def __init__(self, pairs=()):
        self.starts: list[int] = []
        self.ends: list[int] = []
        for a, b in pairs:
            self.add(a, b)

    def add(self, a: int, b: int) -> None:
        if a >= b:
            return
        i = bisect.bisect_left(self.ends, a)  # first interval that ends at or after a
        j = bisect.bisect_right(self.starts, b)  # intervals before j start at or before b
        if i < j:
            a, b = min(a, self.starts[i]), max(b, self.ends[j - 1])
        self.starts[i:j], self.ends[i:j] = [a], [b]

    def prefix(self) -> int:
        return self.ends[0] if self.starts and self.starts[0] == 0 else 0

    def size(self) -> int:
        return sum(b - a for a, b in self.pairs())

    def pairs(self) -> list[list[int]]:
        return [[a, b] for a, b in zip(self.starts, self.ends, strict=True)]

    def gaps(self, total: int) -> list[tuple[int, int]]:
        out, pos = [], 0
        for a, b in zip(self.starts, self.ends, strict=True):
            if a > pos:
                out.append((pos, a))
            pos = max(pos, b)
        return out + ([(pos, total)] if pos < total else [])


RATE_WINDOW = 0.4  # seconds: a range's speed is judged on its recent bytes, not since its start


@dataclass(eq=False)  # compared by identity: two ranges may hold equal numbers
class Piece:
    pos: int  # next byte to write
    end: int  # exclusive; lowered when an idle worker takes the second half
    t0: float = field(default_factory=time.monotonic)
    got: int = 0
    first: float | None = None  # when its first bytes arrived
    marks: deque = field(default_factory=lambda: deque(maxlen=6))  # (time, got), one per RATE_WINDOW / 4

    def advance(self, n: int, now: float) -> None:
        if self.first is None:
            self.first = now
            self.marks.append((now, 0))
        self.got += n
        if now - self.marks[-1][0] >= RATE_WINDOW / 4:
            self.marks.append((now, self.got))

    def rate(self, now: float) -> float:
        """Bytes/s over the last RATE_WINDOW or so (since the first byte until then): when the connections around
        it finish, a range held back by this machine's CPU speeds up, one held back by its own link does not."""
        t, got = next(((t, g) for t, g in reversed(self.marks) if now - t >= RATE_WINDOW),
                      self.marks[0] if self.marks else (self.t0, 0))
        return (self.got - got) / max(now - t, 1e-3)

    def seconds_left(self, now: float) -> float:
        rate = self.rate(now)
        return (self.end - self.pos) / rate if rate > 0 else float("inf")


def ranges_on_disk(meta: dict, size: int) -> tuple[dict[str, Ranges], dict[str, dict]]:
    """From a partial's sidecar: the byte ranges on disk per source URL, and each source's ETag/Last-Modified.
    A range beyond the partial's actual size cannot be trusted and is left out (fetched again)."""
    if "done" not in meta:  # a single-stream partial: its bytes are one range from its source
        url = meta.get("url") or ""
        done = {url: [[0, size]]}
        validators = {url: {"etag": meta.get("etag"), "last_modified": meta.get("last_modified")}}
    else:
        done, validators = meta.get("done") or {}, meta.get("sources") or {}
    out = {}
    for url, pairs in done.items():
        ok = [(a, b) for a, b in pairs if isinstance(a, int) and isinstance(b, int) and 0 <= a < b <= size]
        out[url] = Ranges(ok)
    return out, validators


def open_part(path: Path, mode: str = "r+") -> FileIO:
    """A handle on the partial for one thread. Each thread writes and reads at offsets through its own handle:
    there is no pwrite/pread on Windows, and the position of a shared handle would race."""
    return FileIO(path, mode)


def write_at(fh: FileIO, data, pos: int) -> None:
    fh.seek(pos)
    view = memoryview(data)
    while view:
        view = view[fh.write(view):]


def read_at(fh: FileIO, n: int, pos: int) -> bytes:
    fh.seek(pos)
    return fh.read(n)


class PrefixHasher:
    """SHA-256 of the partial in file order, re-reading (from the page cache) each byte once it and everything
    before it have been written."""

    def __init__(self, path: Path, owner):
        self.path, self.owner, self.h, self.pos = path, owner, hashlib.sha256(), 0
        self.closing = False
        owner.hash_target = owner.all_done.prefix()
        self.thread = threading.Thread(target=self.run, name="dinovault-sha256", daemon=True)
        self.thread.start()

    def run(self) -> None:
        with open_part(self.path, "r") as fh:
            self.read(fh)

    def read(self, fh: FileIO) -> None:
        cv, total = self.owner.cv, self.owner.pin.size
        while self.pos < total:
            with cv:
                while self.owner.hash_target <= self.pos and not self.closing:
                    cv.wait(0.5)
                target = self.owner.hash_target
                if target <= self.pos:
                    return
            while self.pos < target:
                data = fh.read(min(CHUNK, target - self.pos))  # in file order: no seek
                if not data:
                    return
                self.h.update(data)
                self.pos += len(data)

    def finish(self, wait: bool) -> str | None:
        if not wait:
            with self.owner.cv:
                self.closing = True
                self.owner.cv.notify_all()
        self.thread.join()
        return self.h.hexdigest() if self.pos == self.owner.pin.size else None


__all__ = ["Piece", "PrefixHasher", "Ranges", "open_part", "ranges_on_disk", "read_at", "write_at"]
