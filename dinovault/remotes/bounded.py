"""A remote command that cannot hang or half-finish: each request to the remote times out, the whole probe has a
deadline, and SIGTERM/SIGHUP (a closed terminal, `kill`, a CI job cancelled) unwind like Ctrl-C, so the code that
puts the DVC config back runs. An endpoint that accepts connections and never answers used to keep `invoke remote`
silent for 35 minutes, and killing it left .dvc/config switched to the new remote."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

from ..errors import RemoteError
from ..transport.retry import RetryPolicy

T = TypeVar("T")
MAX_DEADLINE = 60.0  # seconds for a whole probe by default; DINOVAULT_TIMEOUT lowers it (3 x the read timeout)


def deadline() -> float:
    return min(MAX_DEADLINE, 3 * RetryPolicy.from_env().read_timeout)


def request_timeouts(remote: dict) -> dict:
    """``remote`` (a DVC remote's settings) with per-request timeouts from DINOVAULT_TIMEOUT where it sets none: for
    this command only, in memory (never written to .dvc/config)."""
    policy = RetryPolicy.from_env()
    read, connect = max(1, int(policy.read_timeout)), max(1, int(policy.connect_timeout))
    scheme = str(remote.get("url", "")).split("://", 1)[0]
    # dvc-ssh waits up to 1800 s to log in and botocore 60 s per read; WebDAV's own default is 30 s
    keys = {"s3": {"connect_timeout": connect, "read_timeout": read}, "ssh": {"timeout": connect}}.get(scheme, {})
    return {**keys, **remote}


def bound_requests(repo, name: str | None) -> None:
    """The same, for remote ``name`` of an open ``dvc.repo.Repo`` (this command only)."""
    if name in repo.config["remote"]:
        repo.config["remote"][name] = request_timeouts(repo.config["remote"][name])


def within(seconds: float, work: Callable[[], T], where: str) -> T:
    """``work()``, or a RemoteError once ``seconds`` pass without it returning. It runs on a daemon thread, which
    the process leaves behind when it exits (a socket that never answers cannot be interrupted portably)."""
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = work()
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = err

    thread = threading.Thread(target=run, name="dinovault-remote", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise RemoteError(
            f"{where} did not answer within {seconds:.0f} s / 远端在 {seconds:.0f} 秒内无响应",
            "check the URL, the port and that the server speaks this protocol (S3, SSH, WebDAV); "
            "DINOVAULT_TIMEOUT sets the wait, --no-check skips the probe; the DVC config was left as it was / "
            "请检查地址、端口与协议；"
            "DVC 配置未改动",
            cause="timeout",
        )
    if "error" in box:
        raise box["error"]
    return box["value"]


@contextlib.contextmanager
def signals_unwind() -> Iterator[None]:
    """SIGTERM and SIGHUP raise SystemExit(128 + signal) in the main thread while the block runs, so its cleanup
    (``finally``/``except BaseException``) runs; outside the main thread nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def unwind(signum, _frame):
        raise SystemExit(128 + signum)

    wanted = [getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    saved = {s: signal.signal(s, unwind) for s in wanted}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
