"""Download progress: a tqdm bar on a terminal, plain periodic lines in logs and CI."""

from __future__ import annotations

import sys
import time


class NullProgress:
    def start(self, desc: str, total: int | None, initial: int = 0) -> None:
        pass

    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


class LineProgress(NullProgress):
    """Plain periodic lines for logs and CI (no carriage returns)."""

    def __init__(self, stream=None, interval: float = 5.0):
        self.stream = stream or sys.stderr
        self.interval = interval

    def start(self, desc, total, initial=0):
        self.desc, self.total, self.done, self.initial = desc, total, initial, initial
        self.t0 = self.last = time.monotonic()
        resumed = f" (resuming at {_human(initial)})" if initial else ""
        self._line(f"downloading {desc}: {_human(total) if total else 'unknown size'}{resumed}")

    def update(self, n):
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self._status(now)

    def close(self):
        if hasattr(self, "t0"):
            self._status(time.monotonic())
            del self.t0

    def _status(self, now):
        rate = (self.done - self.initial) / max(now - self.t0, 1e-9)
        if self.total:
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            pct = 100 * self.done / self.total
            eta_text = f"{eta:.0f}s" if eta != float("inf") else "?"
            self._line(f"  {self.desc}: {_human(self.done)} / {_human(self.total)} ({pct:.0f}%), "
                       f"{_human(rate)}/s, ETA {eta_text}")
        else:
            self._line(f"  {self.desc}: {_human(self.done)}, {_human(rate)}/s")

    def _line(self, text):
        print(text, file=self.stream, flush=True)


class TqdmProgress(NullProgress):
    def start(self, desc, total, initial=0):
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                        dynamic_ncols=True, leave=False)

    def update(self, n):
        self.bar.update(n)

    def close(self):
        if getattr(self, "bar", None) is not None:
            self.bar.close()
            self.bar = None


def make_progress(progress=None):
    """``None``/``True``: a tqdm bar on a terminal, periodic lines otherwise; ``False``: silent; or an object with
    ``start(desc, total, initial)``, ``update(n)``, ``close()``."""
    if progress is False:
        return NullProgress()
    if progress is None or progress is True:
        return TqdmProgress() if sys.stderr.isatty() else LineProgress()
    return progress


def _human(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


human_size = _human
