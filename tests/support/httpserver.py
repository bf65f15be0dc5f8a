"""A real threaded HTTP/1.1 server on 127.0.0.1 that honours Range and injects faults.

It serves a folder laid out like the official site (``<root>/dinov2/<arch>/<file>``). Faults are set per path
(``server.fault("/dinov2/x/y.pth", cut_after=1000)``) or for every path (``server.fault(None, ...)``), optionally
for the next ``times`` requests only (see ``Fault``: statuses, HTML, cuts, stalls, short bodies, pacing...);
``server.cut_all()`` drops every connection answering at that moment, as a network failure would. The server
counts requests and body bytes sent per path.

Fixtures: ``dinov2_server`` (session: a full-size dinov2_vits14 checkpoint built with the real architecture and
random weights, plus a registry pinning it) and ``faulty_server`` (function: small random files, faults allowed).
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

PREFIX = "/dinov2"
SEND_CHUNK = 64 * 1024


@dataclass
class Fault:
    status: int | None = None  # answer this status (404, 500, 503, 429...) with a short text body
    retry_after: str | None = None  # Retry-After header sent with `status`
    html: bool = False  # 200 with an HTML page instead of the file
    html_sniff_only: bool = False  # with html: send Content-Type application/octet-stream (only the body says HTML)
    cut_after: int | None = None  # close the connection after this many body bytes of this response
    headers_only: bool = False  # the usual headers (206 and Content-Range to a Range request), then close: no body
    short_by: int | None = None  # each body stops this many bytes before the end its headers announce, then closes
    missing_tail: int | None = None  # the server's copy lacks its last N bytes, its headers still announce the whole
    # file: a Content-Length larger than the body for every range that reaches the tail
    wrong_byte_at: int | None = None  # flip one byte at this file offset
    stall: float | None = None  # sleep this long after `stall_after` body bytes (longer than the client timeout)
    release: threading.Event | None = None  # with stall: end the stall as soon as the test sets this event
    stall_after: int = 0
    ignore_range: bool = False  # answer 200 with the whole file to a Range request
    throttle: float | None = None  # bytes per second
    delay: float | None = None  # wait this long before answering (a busy server answering `status` slowly)
    times: int | None = None  # apply to this many matching requests, then stop (None: forever)


@dataclass
class RequestRecord:
    path: str
    range: str | None
    status: int
    sent: int = 0
    at: float = field(default_factory=time.monotonic)  # when the server answered it (began its response)


class LoopbackServer:
    """What every test server here shares: its HTTP server on 127.0.0.1 stops on ``close()``, also at the end of a
    ``with`` block."""

    httpd: ThreadingHTTPServer

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class TestServer(LoopbackServer):
    root: Path
    httpd: ThreadingHTTPServer
    registry: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)  # upstream file name -> served path
    faults: dict[str | None, Fault] = field(default_factory=dict)
    requests: Counter = field(default_factory=Counter)
    bytes_sent: Counter = field(default_factory=Counter)
    log: list[RequestRecord] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop_event: threading.Event = field(default_factory=threading.Event)
    open_sockets: set = field(default_factory=set)  # connections answering a GET now (see cut_all)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.origin + PREFIX

    @property
    def env(self) -> dict[str, str]:
        env = {"DINOV2_BASE_URL": self.base_url}
        if self.registry:
            env["DINOVAULT_REGISTRY"] = str(self.registry)
        return env

    def url_path(self, upstream_file: str) -> str:
        """The request path of an upstream file, e.g. /dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth."""
        return "/" + self.files[upstream_file].relative_to(self.root).as_posix()

    def fault(self, path: str | None = None, **kwargs) -> Fault:
        """Inject a fault for a request path (or an upstream file name), or for every path when None."""
        if path is not None and not path.startswith("/"):
            path = self.url_path(path)
        f = Fault(**kwargs)
        with self.lock:
            self.faults[path] = f
        return f

    def cut_all(self) -> int:
        """The network fails: every connection answering now is dropped (the client sees a short body).
        How many were cut."""
        with self.lock:
            socks = list(self.open_sockets)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return len(socks)

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def reset_counters(self) -> None:
        with self.lock:
            self.requests.clear()
            self.bytes_sent.clear()
            self.log.clear()

    def sent(self, upstream_file: str) -> int:
        return self.bytes_sent[self.url_path(upstream_file)]

    def hits(self, upstream_file: str) -> int:
        return self.requests[self.url_path(upstream_file)]

    def take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for key in (path, None):
                f = self.faults.get(key)
                if f is None:
                    continue
                if f.times is not None:
                    if f.times <= 0:
                        continue
                    f.times -= 1
                return replace(f)
            return None

    def add(self, rel: str, data: bytes) -> Path:
        """Serve ``data`` at ``<root>/<rel>`` (e.g. dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth)."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.files[path.name] = path
        return path

    def close(self) -> None:
        self.stop_event.set()
        super().close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "dinovault-testserver/1"

    def log_message(self, fmt, *args):  # quiet
        pass

    @property
    def ts(self) -> TestServer:
        return self.server.test_server

    def _record(self, status: int, rng: str | None) -> RequestRecord:
        rec = RequestRecord(self.path, rng, status)
        with self.ts.lock:
            self.ts.requests[self.path] += 1
            self.ts.log.append(rec)
        return rec

    def _simple(self, status: int, body: bytes, ctype: str = "text/plain", extra: dict | None = None):
        self._record(status, self.headers.get("Range"))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        ts = self.ts
        path = self.path.split("?", 1)[0]
        fault = ts.take_fault(path)
        if fault and fault.delay:
            ts.stop_event.wait(fault.delay)
        if fault and fault.status:
            extra = {"Retry-After": fault.retry_after} if fault.retry_after else None
            return self._simple(fault.status, f"error {fault.status}\n".encode(), extra=extra)
        if fault and fault.html:
            page = b"<!DOCTYPE html><html><body>Please log in</body></html>\n"
            if fault.html_sniff_only:  # a page as long as the file, labelled as binary: only its first byte tells
                real = ts.root / path.lstrip("/")
                page = page.ljust(real.stat().st_size if real.is_file() else len(page), b" ")
                return self._simple(200, page, "application/octet-stream")
            return self._simple(200, page, "text/html; charset=utf-8")
        file = (ts.root / path.lstrip("/")).resolve()
        if ts.root.resolve() not in file.parents or not file.is_file():
            return self._simple(404, b"not found\n")
        size = file.stat().st_size
        st = file.stat()
        etag = f'"{st.st_mtime_ns:x}-{size:x}"'
        start, end, status = 0, size - 1, 200
        rng = self.headers.get("Range")
        if rng and not (fault and fault.ignore_range):
            try:
                unit, _, spec = rng.partition("=")
                first, _, last = spec.partition("-")
                assert unit.strip() == "bytes" and "," not in spec
                start = int(first)
                end = min(int(last), size - 1) if last else size - 1
            except (AssertionError, ValueError):
                return self._simple(416, b"bad range\n", extra={"Content-Range": f"bytes */{size}"})
            if start >= size or start > end:
                return self._simple(416, b"range not satisfiable\n", extra={"Content-Range": f"bytes */{size}"})
            if_range = self.headers.get("If-Range")
            status = 206 if not if_range or if_range == etag else 200
            if status == 200:
                start, end = 0, size - 1
        rec = self._record(status, rng)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if self.command == "HEAD":
            return
        with ts.lock:
            ts.open_sockets.add(self.connection)
        try:
            self._send_body(file, start, end + 1, fault, rec)
        finally:
            with ts.lock:
                ts.open_sockets.discard(self.connection)

    def _send_body(self, file: Path, start: int, stop: int, fault: Fault | None, rec: RequestRecord):
        ts = self.ts
        sent = 0
        t0 = time.monotonic()
        stalled = False
        limit = stop  # where the body really ends; short of ``stop`` the connection is dropped
        if fault and fault.headers_only:
            limit = start
        if fault and fault.short_by is not None:
            limit = max(start, stop - fault.short_by)
        if fault and fault.missing_tail is not None:
            limit = max(start, min(limit, file.stat().st_size - fault.missing_tail))
        with open(file, "rb") as fh:
            fh.seek(start)
            pos = start
            while pos < limit:
                n = min(SEND_CHUNK if not (fault and fault.throttle) else SEND_CHUNK // 4, limit - pos)
                if fault and fault.cut_after is not None:
                    n = min(n, fault.cut_after - sent)
                if fault and fault.stall and not stalled and sent >= fault.stall_after:
                    stalled = True
                    (fault.release or ts.stop_event).wait(fault.stall)
                if fault and fault.stall and not stalled:
                    n = min(n, fault.stall_after - sent)
                if n <= 0:
                    break
                data = fh.read(n)
                if fault and fault.wrong_byte_at is not None and pos <= fault.wrong_byte_at < pos + len(data):
                    i = fault.wrong_byte_at - pos
                    data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
                try:
                    self.wfile.write(data)
                except OSError:  # the client went away
                    break
                sent += len(data)
                pos += len(data)
                with ts.lock:
                    ts.bytes_sent[self.path] += len(data)
                    rec.sent += len(data)
                if fault and fault.throttle:
                    ahead = sent / fault.throttle - (time.monotonic() - t0)
                    if ahead > 0 and ts.stop_event.wait(ahead):
                        break
        if pos < stop:  # cut: drop the connection so the client sees a short body
            self.close_connection = True
            try:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):  # clients that hang up are part of the tests
            super().handle_error(request, client_address)


def start_server(root: Path) -> TestServer:
    root.mkdir(parents=True, exist_ok=True)
    httpd = _Server(("127.0.0.1", 0), _Handler)
    ts = TestServer(root=root, httpd=httpd)
    httpd.test_server = ts
    threading.Thread(target=httpd.serve_forever, args=(0.05,), name="dinovault-testserver", daemon=True).start()
    for f in root.rglob("*.pth"):
        ts.files[f.name] = f
    return ts


def registry_line(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return f"{path.name} {path.stat().st_size} sha256:{h.hexdigest()}"


def write_registry(path: Path, files) -> Path:
    path.write_text("# test registry\n" + "".join(registry_line(Path(f)) + "\n" for f in files), encoding="utf-8")
    return path


def random_bytes(n: int, seed: int = 0) -> bytes:
    """Deterministic incompressible bytes (fast: SHAKE-256 output), starting like a zip (.pth) file."""
    return (b"PK\x03\x04" + hashlib.shake_256(f"dinovault-{seed}".encode()).digest(max(n - 4, 0)))[:n]


SMALL_SIZE = 3 * 1024 * 1024 + 12345


@pytest.fixture(scope="session")
def dinov2_server(tmp_path_factory):
    """Serves an official-format dinov2_vits14 checkpoint (real architecture, random weights) from 127.0.0.1.

    Yields the server: ``.base_url``, ``.registry`` (pins the served files), ``.root``, ``.env`` (for
    subprocesses), ``.files``, counters ``.requests`` / ``.bytes_sent`` and ``.fault(...)`` (reset after use).
    """
    from dinovault.catalog import get_spec

    from .checkpoints import save_checkpoint

    base = tmp_path_factory.mktemp("dinov2_server")
    spec = get_spec("dinov2_vits14")
    root = base / "www"
    file = root / "dinov2" / spec.upstream_path
    file.parent.mkdir(parents=True)
    save_checkpoint(spec, file, seed=0)
    server = start_server(root)
    server.registry = write_registry(base / "registry.txt", [file])
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def faulty_server(tmp_path):
    """A fresh server with fault injection, serving a small random "dinov2_vits14_pretrain.pth" (and a second
    file for the vitb14 name), pinned in ``.registry``; fetch these with the smoke test off."""
    server = start_server(tmp_path / "www")
    a = server.add("dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth", random_bytes(SMALL_SIZE, seed=1))
    b = server.add("dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth", random_bytes(SMALL_SIZE + 1000, seed=2))
    server.registry = write_registry(tmp_path / "registry.txt", [a, b])
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def torch_home_dir(tmp_path, monkeypatch):
    """A private TORCH_HOME (never ~/.cache/torch) and no inherited mirror/registry settings."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    for var in ("DINOV2_BASE_URL", "DINOVAULT_REGISTRY", "DINOV2_REGISTRY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DINOVAULT_BACKOFF", "0.05")
    monkeypatch.setenv("DINOVAULT_TIMEOUT", "5")
    return home


def serve_env(server: TestServer, torch_home: Path, **extra) -> dict[str, str]:
    """Environment for a subprocess fetching from ``server`` into ``torch_home``."""
    env = dict(os.environ)
    env.update(server.env)
    env["TORCH_HOME"] = str(torch_home)
    env.update({k: str(v) for k, v in extra.items()})
    return env
