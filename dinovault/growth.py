"""When a segmented download should open more connections: while the last ones added still raised the throughput.

On a long link a TCP connection gets a fixed share (window / RTT), so more connections help until the link is
full; on a fast local link they only cost CPU. After the first bytes, the throughput is measured over a window;
then a quarter more connections are opened per live source, the next window starts once they had time to start
(two request latencies), and so on while the gain is at least GAIN, up to ``limit`` connections per source.
"""

from __future__ import annotations

import time

STEP = 1.0  # seconds of transfer per measurement window
GAIN = 1.05  # an added connection must raise the throughput by this factor to keep growing


class Growth:
    def __init__(self, limit: int):
        self.limit = limit
        self.on = True
        self.mark: tuple[float, int] | None = None  # (time, bytes) where the current window began
        self.rate: float | None = None  # bytes/s of the previous window
        self.settle_until = 0.0

    def step(self, transferred: int, latency: float, now: float | None = None) -> bool:
        """Called a few times a second with the bytes received so far; True: add connections now."""
        now = time.monotonic() if now is None else now
        if not self.on or now < self.settle_until or not transferred:
            return False
        if self.mark is None:
            self.mark = (now, transferred)
            return False
        t0, b0 = self.mark
        if now - t0 < STEP:
            return False
        rate = (transferred - b0) / (now - t0)
        if self.rate is not None and rate < self.rate * GAIN:
            self.on = False  # the last connection did not pay: the link (or the CPU) is full
            return False
        self.rate, self.mark = rate, None
        self.settle_until = now + 2 * latency
        return True


__all__ = ["Growth"]
