"""A loopback server imitating the Hugging Face Hub's file endpoints, enough for ``huggingface_hub.hf_hub_download``.

``HEAD`` and ``GET /<owner>/<repo>/resolve/<revision>/<file>``, where revision is the commit or ``main``, answered
with what huggingface_hub reads (file_download.get_hf_file_metadata): ``X-Repo-Commit``, ``X-Linked-Etag`` (the
file's SHA-256, as the Hub does for LFS files), ``X-Linked-Size`` and ``Content-Length``; GET honours ``Range``.
An unknown repo or file answers 404 with ``X-Error-Code: EntryNotFound``/``RepoNotFound`` like the Hub.

The files are official-format random checkpoints converted by dinovault.model.hf_dinov2 (checked against transformers'
own layout in tests/test_convert.py), written with safetensors like the Hub's ``model.safetensors``.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.support.httpserver import LoopbackServer

_PATH = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")


@dataclass
class HubFile:
    path: Path
    sha256: str
    commit: str


@dataclass
class HubServer(LoopbackServer):
    httpd: ThreadingHTTPServer
    files: dict[tuple[str, str], HubFile] = field(default_factory=dict)  # (repo, file) -> served file
    hits: Counter = field(default_factory=Counter)  # (method, repo) -> requests
    down: bool = False  # answer 503 to everything

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def add(self, repo: str, path: Path, commit: str, file: str = "model.safetensors") -> HubFile:
        sha = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        self.files[(repo, file)] = entry = HubFile(Path(path), sha, commit)
        return entry

    def registry_line(self, repo: str, file: str = "model.safetensors", size: bool = True) -> str:
        entry = self.files[(repo, file)]
        return f"hf:{repo}@{entry.commit}/{file} {entry.path.stat().st_size if size else '-'} sha256:{entry.sha256}"

    def get_count(self, repo: str) -> int:
        return self.hits[("GET", repo)]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _error(self, status: int, code: str, commit: str | None = None):
        body = f'{{"error": "{code}"}}'.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Error-Code", code)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _serve(self):
        hub: HubServer = self.server.hub
        m = _PATH.match(self.path.split("?", 1)[0])
        if hub.down:
            return self._error(503, "ServiceUnavailable")
        if not m:
            return self._error(404, "RepoNotFound")
        hub.hits[(self.command, m["repo"])] += 1
        entry = hub.files.get((m["repo"], m["file"]))
        if entry is None:
            known = any(repo == m["repo"] for repo, _ in hub.files)
            return self._error(404, "EntryNotFound" if known else "RepoNotFound")
        if m["rev"] not in (entry.commit, "main"):
            return self._error(404, "RevisionNotFound")
        data = entry.path.read_bytes()
        start, end, status = 0, len(data), 200
        rng = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if rng and self.command == "GET":
            start = int(rng[1])
            end = int(rng[2]) + 1 if rng[2] else len(data)
            status = 206
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start))
        self.send_header("X-Repo-Commit", entry.commit)
        self.send_header("ETag", f'"{entry.sha256}"')
        self.send_header("X-Linked-Etag", f'"{entry.sha256}"')
        self.send_header("X-Linked-Size", str(len(data)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(data[start:end])

    do_HEAD = _serve
    do_GET = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def start_hub() -> HubServer:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    hub = HubServer(httpd)
    httpd.hub = hub
    threading.Thread(target=httpd.serve_forever, args=(0.05,), name="dinovault-hub", daemon=True).start()
    return hub


def save_hf_checkpoint(spec, path: Path, seed: int = 0) -> dict:
    """An official-format random checkpoint of ``spec`` written as a Hugging Face ``model.safetensors`` at
    ``path``; returns the official state_dict it was made from."""
    from safetensors.torch import save_file

    from dinovault.model.hf_dinov2 import official_to_hf

    from .checkpoints import make_state_dict

    official = make_state_dict(spec, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(official_to_hf(official, spec), str(path), metadata={"format": "pt"})
    return official


__all__ = ["HubServer", "save_hf_checkpoint", "start_hub"]
