"""The segmented transfer: a large pinned file in ranges over several connections and every mirror at once.

- Up to ``connections`` workers per source start at once and take ranges from one shared queue: at first one
  range per worker (each request costs a round trip of idle connection), never under ``segment_size``. When the
  queue is empty an idle worker takes the second half of the range in flight that will take longest, judged on
  its recent speed, so faster sources take more and no straggler is left at the end; a range that is only
  waiting for this machine's CPU is not split (the bytes on their way beyond the split would be lost). Each
  response is checked: 206, the pinned size, and the same ETag/Last-Modified as before (If-Range).
- Bytes are written in place into ``<file>.part`` (a new file of our own, never a hard link), each worker through
  its own handle (no pwrite on Windows). Nothing is preallocated: the file grows as ranges arrive, so a failure
  before the first byte leaves nothing behind, and the sidecar says how much of the disk the partial holds.
  A sidecar ``<file>.part.json``, rewritten atomically four times a second and after every 1/1024 of the file,
  records which bytes each source delivered: after kill -9 a rerun fetches only the gaps. SHA-256 runs in order
  on a thread that re-reads (from the page cache) the contiguous prefix as it grows; size and hash are checked
  before the rename.
- A source that fails is dropped for the rest of the file; if all fail, the error names each and why. A source
  that ignores Range makes the caller fall back to one stream (``NoRanges``). On a hash mismatch with two or more
  sources, every range is fetched again from another source and compared, which finds and names the bad source.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from pathlib import Path

import requests

from ..cache import read_json, write_json_atomic, write_stamp
from ..errors import LocalWriteError, NoRanges, Restart, Retryable, SourceFailed
from ..files import replace
from ..registry import Pin
from .crosscheck import cross_check
from .rangeget import Mirror, open_range
from .ranges import RATE_WINDOW, Piece, PrefixHasher, Ranges, open_part, ranges_on_disk, write_at
from .retry import RetryPolicy, all_failed, log_retry, looks_like_markup, request_failed
from .stream import DownloadResult, part_paths

log = logging.getLogger("dinovault")

READ = 64 * 1024  # bytes per socket read (what a cut connection loses: the short read is dropped)
MIN_STEAL = 1 << 20  # never split a range in flight into halves smaller than this
STEAL_AFTER = 1.0  # ... nor one done sooner than this (or 3 request latencies): the bytes in flight are lost
MIN_JUDGE = 0.5  # seconds (or 2 request latencies) a range's bytes flow before its speed is judged: on a busy
# machine thread scheduling makes a shorter measure noise
FLUSH_EVERY = 0.25  # at most this many seconds between sidecar rewrites...
FLUSH_SHARE = 1024  # ... and at most 1/1024 of the file (64 KiB to 4 MiB) unrecorded: what kill -9 can cost...
FLUSH_GAP = 0.02  # ... but at least this long between two (a rewrite costs up to a millisecond of CPU)


class Segmented:
    def __init__(self, urls: list[str], dest: Path, pin: Pin, policy: RetryPolicy, progress, *, connections: int,
                 segment_size: int, new_session):
        self.dest, self.pin, self.policy, self.progress = dest, pin, policy, progress
        self.connections, self.segment_size, self.new_session = connections, segment_size, new_session
        self.part, self.meta_path = part_paths(dest)
        self.sources = [Mirror(u) for u in urls]
        self.cv = threading.Condition()
        self.transferred = 0
        self.unflushed, self.flush_due = 0, threading.Event()
        self.flush_bytes = min(4 << 20, max(64 << 10, pin.size // FLUSH_SHARE))
        self.fatal: BaseException | None = None

    # ---------------------------------------------------------------- the partial and its sidecar

    def load(self) -> dict[str, Ranges]:
        """Ranges already on disk per source, from the sidecar; an untrusted partial is discarded."""
        meta = read_json(self.meta_path)
        try:
            size = self.part.stat().st_size
        except FileNotFoundError:
            size = None
        if size is None or meta is None or meta.get("sha256") != self.pin.sha256 or meta.get("total") != self.pin.size:
            if size is not None:
                log.warning("discarding partial download %s: it was downloaded for another pin or has no record / "
                            "丢弃来源不明的部分下载", self.part)
            self.discard()
            return {}
        done, validators = ranges_on_disk(meta, size)
        for s in self.sources:
            s.validator = {k: v for k, v in (validators.get(s.url) or {}).items() if v}
        return done

    def discard(self) -> None:
        self.part.unlink(missing_ok=True)
        self.meta_path.unlink(missing_ok=True)

    def flush(self) -> None:
        """Record what is on disk. It never claims more: bytes are added only after their write returned."""
        with self.cv:
            self.unflushed = 0
            data = {"total": self.pin.size, "sha256": self.pin.sha256,
                    "done": {u: r.pairs() for u, r in self.done.items() if r.starts},
                    "sources": {s.url: dict(s.validator) for s in self.sources if s.validator}}
        try:
            write_json_atomic(self.meta_path, data)
        except OSError as err:  # e.g. a full disk: the older record stays true, only less complete
            log.debug("could not update %s: %s", self.meta_path, err)

    # ---------------------------------------------------------------- the queue of ranges

    def take(self, source: Mirror, own_rate: float = 0.0) -> Piece | None:
        """The next range for a worker of ``source``; waits while the source is in backoff, and while others may
        still give work back. A worker left without work takes half of a range in flight that is far slower than
        its own last one was (``own_rate``), or that stays slow for RATE_WINDOW while it waits (the bytes the other
        connection has on its way beyond the split are lost: splitting a range that only waited for this
        machine's CPU costs bytes and saves nothing)."""
        idle_since = None
        with self.cv:
            while not self.stop:
                if source.dead:
                    return None
                now = time.monotonic()
                if now < source.retry_at:
                    self.cv.wait(source.retry_at - now)
                    continue
                if self.pending:
                    a, b = self.pending.popleft()
                    if b - a > self.piece_size:
                        self.pending.appendleft((a + self.piece_size, b))
                        b = a + self.piece_size
                    piece = Piece(a, b)
                    self.active.append(piece)
                    return piece
                idle_since = idle_since or now
                big = self.slowest(source, now, hurry=now - idle_since < RATE_WINDOW, own_rate=own_rate)
                if big is not None:
                    mid = big.pos + (big.end - big.pos) // 2
                    piece = Piece(mid, big.end)
                    big.end = mid
                    self.active.append(piece)
                    return piece
                if not self.active:
                    return None
                self.cv.wait(0.5)
            return None

    def slowest(self, source: Mirror, now: float, hurry: bool, own_rate: float) -> Piece | None:
        """The range in flight worth splitting for an idle worker of ``source``, if any: the one that will take
        longest, judged once its bytes have flowed for MIN_JUDGE (a range just begun looks slow; one still waiting
        for its answer has no speed yet, and the read timeout watches it), with at least
        2 * MIN_STEAL bytes and more than steal_after seconds left. In a ``hurry`` (the worker has waited less
        than RATE_WINDOW), only one under a quarter of the worker's own last rate: a real straggler, not the
        scheduling noise of a busy machine."""
        judged = [p for p in self.active if p.first is not None and now - p.first >= max(MIN_JUDGE, 2 * source.latency)]
        big = max(judged, key=lambda p: p.seconds_left(now), default=None)
        if big is None or big.end - big.pos < 2 * MIN_STEAL or big.seconds_left(now) <= self.steal_after(source):
            return None
        return big if not hurry or big.rate(now) < own_rate / 4 else None

    @staticmethod
    def steal_after(source: Mirror) -> float:
        return max(STEAL_AFTER, 3 * source.latency)

    def give_back(self, piece: Piece) -> None:
        with self.cv:
            self.active.remove(piece)
            if piece.pos < piece.end:
                self.pending.appendleft((piece.pos, piece.end))
            self.cv.notify_all()

    def wrote(self, source: Mirror, piece: Piece, n: int) -> None:
        with self.cv:
            self.done.setdefault(source.url, Ranges()).add(piece.pos, piece.pos + n)
            self.all_done.add(piece.pos, piece.pos + n)
            source.failures = 0
            piece.pos += n
            piece.advance(n, time.monotonic())
            source.bytes += n
            self.transferred += n
            self.unflushed += n
            if self.unflushed >= self.flush_bytes:
                self.flush_due.set()
            self.hash_target = self.all_done.prefix()
            self.progress.update(n)
            self.cv.notify_all()

    # ---------------------------------------------------------------- one request

    def request(self, session, source: Mirror, a: int, b: int):
        """A response streaming bytes a..b-1 of the file, checked; an exception says why not."""
        return open_range(session, source, a, b, self.pin.size, self.policy, self.cv)

    def fetch(self, session, source: Mirror, piece: Piece, fh) -> None:
        t0, start = time.monotonic(), piece.pos
        with self.request(session, source, piece.pos, piece.end) as resp:
            source.latency = min(source.latency, time.monotonic() - t0)
            first = True
            try:
                for chunk in resp.iter_content(READ):
                    if first and piece.pos == 0 and looks_like_markup(chunk):
                        raise SourceFailed("answered an HTML/XML page, not the checkpoint")
                    first = False
                    n = min(len(chunk), piece.end - piece.pos)  # end may have moved down meanwhile
                    if n > 0:
                        try:
                            write_at(fh, memoryview(chunk)[:n], piece.pos)
                        except OSError as err:
                            raise LocalWriteError(err, self.all_done.size()) from None
                        self.wrote(source, piece, n)
                    if piece.pos >= piece.end:
                        return
            except requests.RequestException as err:
                raise request_failed(err, self.policy, progressed=piece.pos > start,
                                     at=(piece.pos, piece.end)) from None
        if piece.pos < piece.end:
            raise Retryable(f"the response ended {piece.end - piece.pos} bytes early", progressed=piece.pos > start,
                            at=(piece.pos, piece.end))

    # ---------------------------------------------------------------- workers

    def worker(self, source: Mirror) -> None:
        session = self.new_session()
        try:
            with open_part(self.part) as fh:
                self.work(session, source, fh)
        except BaseException as err:  # noqa: B036 - a bug must not leave the others waiting forever
            self.abort(err)
        finally:
            session.close()
            with self.cv:
                self.cv.notify_all()
            self.flush_due.set()  # the main loop looks again whether any worker is left

    def work(self, session, source: Mirror, fh) -> None:
        """Take ranges and fetch them until none is left for ``source``."""
        rate = 0.0
        while (piece := self.take(source, rate)) is not None:
            started = piece.t0  # taken under the lock: before or after a failure was counted, never both
            try:
                self.fetch(session, source, piece, fh)
                outcome = None
                rate = piece.got / max(time.monotonic() - started, 1e-3)
            except (Retryable, SourceFailed, NoRanges, Restart, LocalWriteError) as err:
                outcome = err
            finally:
                self.give_back(piece)  # what is left of it goes back to the queue for any worker
            if isinstance(outcome, Retryable) and not self.retry_later(source, outcome, started):
                return
            if isinstance(outcome, SourceFailed):
                self.drop(source, outcome.reason)
            elif isinstance(outcome, NoRanges):
                self.drop(source, "does not honour Range requests", no_ranges=True)
            elif isinstance(outcome, (Restart, LocalWriteError)):
                self.abort(outcome)

    def retry_later(self, source: Mirror, err: Retryable, started: float) -> bool:
        """Count a failed request of ``source`` and set when its workers may ask again; False once the source is
        given up. An attempt is a round: requests that were already in flight when a failure was counted fail
        with it (every connection meets the same outage) and do not count again. A request that delivered bytes
        is no failure: only its own worker pauses. Bytes from any worker reset the count (see wrote)."""
        with self.cv:
            now = time.monotonic()
            if err.progressed:
                wait = self.policy.wait(1, err.retry_after)
                if wait is None:
                    self.drop(source, f"{err.reason}; asked to retry after {err.retry_after:.0f}s")
                    return False
            else:
                if started < source.counted_at:
                    return not source.dead
                source.failures += 1
                source.counted_at = now
                wait = self.policy.wait_after(err, source.failures)
                if source.failures >= self.policy.limit(err) or wait is None:
                    why = (self.policy.gave_up(err, source.failures) if wait is not None
                           else f"{err.reason}; asked to retry after {err.retry_after:.0f}s")
                    self.drop(source, why)  # (the condition's lock is re-entrant)
                    return False
                source.retry_at = now + wait
            log_retry(log, source.url, err.reason, wait)
        if err.progressed:
            time.sleep(wait)
        return not source.dead

    def drop(self, source: Mirror, reason: str, no_ranges: bool = False) -> None:
        with self.cv:
            if source.dead is None:
                if any(s.dead is None for s in self.sources if s is not source):  # else the final error says it
                    log.warning("%s failed: %s; going on with the other sources / 该来源失败，改用其他来源",
                                source.url, reason)
                source.dead = reason
                source.no_ranges = no_ranges
            self.cv.notify_all()

    def abort(self, err: BaseException) -> None:
        with self.cv:
            self.fatal = self.fatal or err
            self.stop = True
            self.cv.notify_all()

    # ---------------------------------------------------------------- the whole file

    def run(self) -> DownloadResult:
        try:
            return self.run_once()
        except Restart as err:
            log.warning("%s; starting over from byte 0 / 从头重新下载", err)
            self.discard()
            for s in self.sources:
                s.validator, s.dead, s.failures = {}, None, 0
            try:
                return self.run_once()
            except Restart as again:
                raise all_failed(self.dest, [(s.url, str(again)) for s in self.sources[:1]]) from None

    def run_once(self) -> DownloadResult:
        self.done = self.load()
        self.all_done = Ranges(p for r in self.done.values() for p in r.pairs())
        resumed = self.all_done.size()
        self.pending = deque(self.all_done.gaps(self.pin.size))
        # one request per connection as long as possible (each request costs a round trip of idle link), split
        # later by idle workers; never less than segment_size
        workers = self.connections * len(self.sources)
        self.piece_size = max(self.segment_size, -(-(self.pin.size - resumed) // workers))
        self.active: list[Piece] = []
        self.stop, self.fatal = False, None
        open_part(self.part, "a").close()  # create it if new; each worker then opens its own handle
        try:
            self.flush()
            self.progress.start(self.dest.name, self.pin.size, resumed)
            hasher = PrefixHasher(self.part, self)
            try:
                self.download()
            finally:
                self.progress.close()
                self.flush()
                sha = hasher.finish(wait=self.fatal is None and not self.pending and not self.active)
            if self.fatal is not None:
                raise self.fatal
            if self.pending or self.active:
                if any(getattr(s, "no_ranges", False) for s in self.sources):
                    raise NoRanges()
                raise all_failed(self.dest, [(s.url, s.dead or "stopped") for s in self.sources])
            if sha != self.pin.sha256:
                sha = cross_check(self, resumed)
            return self.finish(sha)
        except LocalWriteError as err:
            from .retry import local_write_error

            raise local_write_error(err, self.dest, self.part) from None
        finally:
            if not self.all_done.size():  # nothing arrived: nothing to resume, nothing left behind
                with contextlib.suppress(OSError):  # Windows: a worker still stopping may hold it open
                    self.discard()

    def download(self) -> None:
        threads = []
        for s in self.sources:
            for i in range(self.connections):
                t = threading.Thread(target=self.worker, args=(s,), daemon=True, name=f"dinovault-range-{i}")
                t.start()
                threads.append(t)
        try:
            while any(t.is_alive() for t in threads):
                self.flush_due.wait(FLUSH_EVERY)
                self.flush_due.clear()
                self.flush()
                time.sleep(FLUSH_GAP)
        except BaseException as err:  # Ctrl-C: stop the workers, keep what arrived
            self.abort(err)
            deadline = time.monotonic() + 2
            for t in threads:  # a worker still stopping after that closes its own handle
                t.join(max(0.0, deadline - time.monotonic()))
            raise

    def finish(self, sha: str) -> DownloadResult:
        if sha != self.pin.sha256:  # no source to tell the wrong ranges: none of these bytes is kept
            self.discard()
            raise all_failed(self.dest, [(s.url, f"bytes do not match the pin (sha256 {sha}, pinned {self.pin.sha256})")
                                         for s in self.sources if s.dead is None])
        replace(self.part, self.dest)
        self.meta_path.unlink(missing_ok=True)
        write_stamp(self.dest, sha)
        best = max(self.sources, key=lambda s: s.bytes)
        return DownloadResult(self.dest, self.pin.size, sha, best.url, self.transferred, True, True)


__all__ = ["Segmented"]
