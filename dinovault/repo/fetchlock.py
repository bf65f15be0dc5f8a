"""One `invoke fetch` at a time per repository. DDP ranks all run it at once: without a lock, DVC's own lock made
all but one fail with LockError, and each failure wrote back its own snapshot of params.yaml."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

FETCH_LOCK = ".dvc/tmp/dinovault-fetch.lock"  # .dvc/tmp is DVC's own scratch folder, ignored by git

log = logging.getLogger("dinovault")


@contextlib.contextmanager
def fetch_lock(root: Path) -> Iterator[None]:
    """One fetch at a time per repository: the params.yaml edit and the stage runs (DVC's own lock would make a
    concurrent one fail with LockError). A later fetch waits, saying so once."""
    from filelock import FileLock, Timeout

    path = root / FETCH_LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0.5)
    except Timeout:
        log.warning("another `invoke fetch` is running in this repository; waiting for it / "
                    "本仓库中另一个 invoke fetch 正在运行，等待其完成")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
