"""A Hugging Face endpoint that cannot be reached fails at once with one bilingual line and what to do (an
HF_ENDPOINT mirror, the proxy), not after huggingface_hub's five retries, and without its log lines (each retry was
printed twice, and every HTTP request once)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "download_dinov2.py"


def fetch_from(endpoint: str, tmp_path: Path, **extra):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TORCH_HOME": str(tmp_path / "th"),
           "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": endpoint, "DINOVAULT_SOURCES": "huggingface",
           "DINOVAULT_TIMEOUT": "3", "HF_HUB_DISABLE_TELEMETRY": "1", **extra}
    start = time.monotonic()
    r = subprocess.run([sys.executable, str(SCRIPT), "--model", "dinov2_vits14", "--skip-test"], env=env,
                       capture_output=True, text=True, timeout=120)
    return r, time.monotonic() - start


@pytest.fixture
def silent_server():
    """Accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held, stop = [], threading.Event()

    def accept():
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    sock.close()


def _one_clear_line(r):
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "HTTP Request:" not in r.stderr and "Retrying in" not in r.stderr, r.stderr
    assert "HF_ENDPOINT" in r.stderr and "镜像" in r.stderr, r.stderr


def test_an_endpoint_that_does_not_resolve_fails_at_once(tmp_path):
    r, seconds = fetch_from("http://no-such-host.invalid", tmp_path)
    _one_clear_line(r)
    assert "does not resolve / 主机名无法解析" in r.stderr and seconds < 20, (seconds, r.stderr)


def test_a_refused_endpoint_fails_at_once_and_names_the_proxy(tmp_path):
    r, seconds = fetch_from("http://127.0.0.1:9", tmp_path, HTTPS_PROXY="http://127.0.0.1:9",
                            NO_PROXY="127.0.0.1")
    _one_clear_line(r)
    assert "connection failed" in r.stderr and "proxy" in r.stderr and seconds < 20, (seconds, r.stderr)


def test_an_endpoint_that_never_answers_gives_up_within_the_read_timeout(silent_server, tmp_path):
    r, seconds = fetch_from(silent_server, tmp_path)
    _one_clear_line(r)
    assert "no answer within 3 s" in r.stderr and seconds < 25, (seconds, r.stderr)
