"""A loopback imitation of ModelScope's public file API, enough for dinovault's ModelScope source (and what the
``modelscope`` client downloads from): ``GET|HEAD /api/v1/models/<owner>/<repo>/repo?Revision=<rev>&FilePath=<file>``
answers the file, honouring ``Range`` (206 with Content-Range, ETag); an unknown repo, revision or file answers
404 with a JSON body as ModelScope does. ``status`` makes it answer that status to everything (e.g. 401/403, as a
gated Hugging Face repository answers: huggingface_hub's HEAD sees it), and every request is logged.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.support.httpserver import LoopbackServer

_API = re.compile(r"^/api/v1/models/(?P<repo>[^/]+/[^/]+)/repo$")


@dataclass
class MsServer(LoopbackServer):
    httpd: ThreadingHTTPServer
    files: dict[tuple[str, str, str], Path] = field(default_factory=dict)  # (repo, revision, file) -> served file
    log: list[tuple[str, str, str | None, int]] = field(default_factory=list)  # (method, path+query, Range, status)
    status: int | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def add(self, repo: str, path: Path, revision: str = "master", file: str = "model.safetensors") -> None:
        self.files[(repo, revision, file)] = Path(path)

    def pin_line(self, repo: str, revision: str = "master", file: str = "model.safetensors") -> str:
        path = self.files[(repo, revision, file)]
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        return f"ms:{repo}@{revision}/{file} {path.stat().st_size} sha256:{sha}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _answer(self, status: int, body: bytes, headers: dict | None = None) -> None:
        ms: MsServer = self.server.ms
        ms.log.append((self.command, self.path, self.headers.get("Range"), status))
        self.send_response(status)
        for k, v in {"Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _serve(self):
        ms: MsServer = self.server.ms
        if ms.status is not None:  # as the Hub answers for a gated repository
            return self._answer(ms.status, b'{"error": "Access to this model is restricted"}',
                                {"Content-Type": "application/json", "X-Error-Code": "GatedRepo"})
        parts = urlsplit(self.path)
        m, q = _API.match(parts.path), parse_qs(parts.query)
        key = (m["repo"] if m else "", q.get("Revision", ["master"])[0], q.get("FilePath", [""])[0])
        path = ms.files.get(key)
        if path is None:
            return self._answer(404, b'{"Code": 10010205001, "Message": "file not found"}',
                                {"Content-Type": "application/json"})
        st = path.stat()
        size = st.st_size
        start, end, status = 0, size, 200
        rng = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if rng:
            start, end, status = int(rng[1]), min(int(rng[2]) + 1 if rng[2] else size, size), 206
        headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes",
                   "ETag": f'"{st.st_mtime_ns:x}-{size:x}"'}
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        with open(path, "rb") as fh:
            fh.seek(start)
            body = fh.read(end - start)
        self._answer(status, body, headers)

    do_GET = _serve
    do_HEAD = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def start_ms() -> MsServer:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    ms = MsServer(httpd)
    httpd.ms = ms
    threading.Thread(target=httpd.serve_forever, args=(0.05,), name="dinovault-ms", daemon=True).start()
    return ms


__all__ = ["MsServer", "start_ms"]
