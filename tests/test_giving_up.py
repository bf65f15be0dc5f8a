"""A transfer that makes no progress ends (issue 15 item 4, issue 17 item 4), whatever the path: the segmented one
(several connections) and the single stream. Real loopback servers: the fault-injecting test server, and a socket
that accepts and never answers. Each case is bounded in time: a loop that never gives up fails the test instead of
hanging it."""

from __future__ import annotations

import ast
import logging
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from dinovault.cache import cache_path
from dinovault.catalog import get_spec
from dinovault.errors import DownloadError
from dinovault.pipeline import fetch_model
from dinovault.transport.retry import RetryPolicy
from tests.support.httpserver import random_bytes, start_server, write_registry

S14 = get_spec("dinov2_vits14")
FILE = S14.upstream_file
SIZE = 3 * 1024 * 1024 + 777
MiB = 1 << 20
PATHS = {"segmented": {"DINOVAULT_CONNECTIONS": "3", "DINOVAULT_SEGMENT_SIZE": str(256 << 10)},
         "one-stream": {"DINOVAULT_CONNECTIONS": "1"}}
CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(params=list(PATHS))
def path(request, monkeypatch):
    for k, v in PATHS[request.param].items():
        monkeypatch.setenv(k, v)
    return request.param


@pytest.fixture
def origin(tmp_path, torch_home_dir, monkeypatch):
    server = start_server(tmp_path / "www")
    server.add(f"dinov2/{S14.upstream_path}", random_bytes(SIZE, seed=11))
    monkeypatch.setenv("DINOVAULT_REGISTRY", str(write_registry(tmp_path / "registry.txt", [server.files[FILE]])))
    monkeypatch.setenv("DINOV2_BASE_URL", server.base_url)
    monkeypatch.setenv("DINOVAULT_SOURCES", "official")
    monkeypatch.setenv("DINOVAULT_RETRIES", "3")
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY",
                "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    try:
        yield server
    finally:
        server.close()


def fetch_within(seconds: float) -> tuple[BaseException | None, float]:
    """Fetch on a thread; the exception it ended with and how long it took. Fails the test past ``seconds``."""
    out: dict = {}

    def run():
        try:
            fetch_model("dinov2_vits14", smoke_test=False, progress=False)
        except BaseException as err:  # noqa: BLE001 - handed to the test
            out["err"] = err

    t0 = time.monotonic()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still retrying after {seconds}s: it never gives up"
    return out.get("err"), time.monotonic() - t0


def bilingual(caplog) -> None:
    lines = [r.getMessage() for r in caplog.records if r.name == "dinovault" and r.levelno >= logging.INFO]
    assert all(" / " in line and CJK.search(line) for line in lines), lines


@pytest.mark.parametrize("fault", [{"headers_only": True}, {"short_by": MiB}, {"missing_tail": MiB}],
                         ids=["206-headers-then-close", "body-1MiB-short", "content-length-beyond-the-body"])
def test_no_progress_ends_after_the_configured_retries(origin, path, fault, caplog):
    caplog.set_level(logging.INFO, "dinovault")
    origin.fault(FILE, **fault)
    err, seconds = fetch_within(20)
    assert isinstance(err, DownloadError), err
    msg = err.message
    assert f"{origin.base_url}/{S14.upstream_path}" in msg and "after 3 attempts without progress" in msg
    assert "DINOVAULT_RETRIES" in msg and "下载失败" in msg and "\n" not in msg
    a, b = map(int, re.search(r"at bytes (\d+)-(\d+)", msg).groups())  # the bytes that never came
    assert 0 <= a <= b < SIZE
    if "missing_tail" in fault:
        assert a >= SIZE - MiB - (256 << 10) and b == SIZE - 1  # (a read cut short is dropped whole)
    assert "another mirror" in err.hint and CJK.search(err.hint)
    # empty answers: at most one round per attempt on every connection (the old loop made hundreds)
    empty = [rec for rec in origin.log if rec.sent == 0]
    assert len(empty) <= 3 * int(PATHS[path].get("DINOVAULT_CONNECTIONS")), len(empty)
    assert not cache_path(FILE).exists()
    bilingual(caplog)
    print(f"{path} {next(iter(fault))}: {len(origin.log)} requests, {seconds:.2f}s to give up")


@pytest.fixture
def silent_port():
    """A port that accepts connections (the kernel's backlog) and never answers a byte."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def test_a_link_that_never_answers_gives_up_after_retries_times_the_timeout(origin, path, silent_port,
                                                                            monkeypatch, caplog):
    caplog.set_level(logging.INFO, "dinovault")
    base = f"http://127.0.0.1:{silent_port}/dinov2"
    monkeypatch.setenv("DINOV2_BASE_URL", base)
    monkeypatch.setenv("DINOVAULT_TIMEOUT", "0.4")
    monkeypatch.setenv("DINOVAULT_BACKOFF", "5")  # no backoff after a timeout: the silence was the wait
    err, seconds = fetch_within(20)
    assert isinstance(err, DownloadError), err
    assert 3 * 0.4 <= seconds < 3 * 0.4 + 1.5, seconds
    assert "timed out (no data within 0.4 s, DINOVAULT_TIMEOUT)" in err.message and "DINOVAULT_RETRIES" in err.message
    assert base in err.message and "DINOVAULT_TIMEOUT / DINOVAULT_RETRIES" in err.hint and "proxy" not in err.hint
    bilingual(caplog)
    # the defaults: a dead link is given up within 60 s (5 attempts of 10 s, no backoff between them)
    p = RetryPolicy()
    assert p.attempts * max(p.read_timeout, p.connect_timeout) <= 60


def test_a_dead_proxy_is_named_without_its_credentials(origin, silent_port, monkeypatch):
    monkeypatch.setenv("DINOVAULT_CONNECTIONS", "1")
    monkeypatch.setenv("DINOVAULT_TIMEOUT", "0.3")
    monkeypatch.setenv("HTTP_PROXY", f"http://alice:s3cret@127.0.0.1:{silent_port}")
    err, _ = fetch_within(20)
    assert isinstance(err, DownloadError) and "timed out" in err.message
    assert f"HTTP_PROXY=http://127.0.0.1:{silent_port}" in err.hint and "may be at fault" in err.hint
    assert f"(via HTTP_PROXY=http://127.0.0.1:{silent_port}): timed out" in err.message  # kept when sources add up
    assert "s3cret" not in str(err) and "alice" not in str(err)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # exempt: the server is reached directly, and the fetch works
    err, _ = fetch_within(20)
    assert err is None


def test_the_last_failure_is_printed_once(origin, path, monkeypatch, caplog):
    """A source's reason goes into the final error; a warning names it only where another source is left."""
    dead = "http://127.0.0.1:9/dinov2"  # the discard port: connection refused
    monkeypatch.setenv("DINOV2_BASE_URL", dead)
    err, _ = fetch_within(20)
    assert isinstance(err, DownloadError) and f"{dead}/{S14.upstream_path}: connection failed" in err.message
    assert not [r for r in caplog.records if " failed: " in r.getMessage()]
    origin.fault(FILE, status=404)
    monkeypatch.setenv("DINOV2_BASE_URL", f"{dead},{origin.base_url}")
    err, _ = fetch_within(20)
    said = [r.getMessage() for r in caplog.records if " failed: " in r.getMessage()]
    assert len(said) == 1 and "HTTP 404" in err.message and "connection failed" in err.message


def test_every_transport_log_line_is_bilingual():
    """Every warning/info line in dinovault/transport has its Chinese half (English / 中文)."""
    calls = []
    for file in (Path(__file__).resolve().parents[1] / "dinovault" / "transport").glob("*.py"):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("warning", "info", "error") and node.args):
                text = " ".join(n.value for n in ast.walk(node.args[0]) if isinstance(n, ast.Constant)
                                and isinstance(n.value, str))
                calls.append((file.name, node.lineno, text))
    assert len(calls) >= 15
    assert [c for c in calls if not (" / " in c[2] and CJK.search(c[2]))] == []
