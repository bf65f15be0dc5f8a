"""One `invoke fetch` at a time per repository. DDP ranks all run it at once: without a lock, DVC's own lock made
all but one fail with LockError, and each failure wrote back its own snapshot of params.yaml."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path

FETCH_LOCK = ".dvc/tmp/dinovault-fetch.lock"  # .dvc/tmp is DVC's own scratch folder, ignored by git
POLL = 0.2  # seconds between tries while another fetch holds the lock

log = logging.getLogger("dinovault")


@contextlib.contextmanager
def fetch_lock(root: Path) -> Iterator[None]:
    """One fetch at a time per repository: the params.yaml edit and the stage runs (DVC's own lock would make a
    concurrent one fail with LockError). A later fetch waits, saying so once.

    zc.lockfile (an OS lock on the file, released when the process ends, killed or not) is the library DVC's repository
    lock uses: every fetch has imported it by now, where filelock would add ~10 ms to a no-op fetch."""
    import zc.lockfile

    path = root / FETCH_LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        try:
            lock = zc.lockfile.SimpleLockFile(str(path))
            break
        except zc.lockfile.LockError:
            if not waited:
                log.warning("another `invoke fetch` is running in this repository; waiting for it / "
                            "本仓库中另一个 invoke fetch 正在运行，等待其完成")
                waited = True
            time.sleep(POLL)
    try:
        yield
    finally:
        lock.close()
