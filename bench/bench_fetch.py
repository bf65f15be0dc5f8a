#!/usr/bin/env python3
"""Benchmark the fetch core against `curl -s -o` on the same loopback server (nginx when installed).

Alternates curl and our fetch (download + verify + export, smoke test skipped) N times on a 346 MB file, prints
median times and the ratio, the fetch's peak RSS (also on a 4.5 GB file with --big), and shows that a repeated
fetch makes no request (nginx access log) and no re-hash. Prints figures; never asserts on times.

    python bench/bench_fetch.py [--runs 5] [--size 346378731] [--big] [--server auto|nginx|python]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = "dinov2_vitb14"
NGINX = Path(shutil.which("nginx") or "/usr/sbin/nginx")  # Debian's, outside a plain user's PATH


def target(value: float, limit: float, at_most: bool = True, unit: str = "x") -> str:
    """``target <= 1.3x: met`` or ``target <= 1.3x: MISSED``: a bench says when it misses, never asserts."""
    met = value <= limit if at_most else value >= limit
    return f"target {'<=' if at_most else '>='} {limit:g}{unit}: {'met' if met else 'MISSED'}"


def missing_tools(tools: dict[str, str]) -> None:
    """Exit 2 with one line when a tool this bench needs is not installed (``{command: Debian package}``)."""
    absent = [cmd for cmd in tools if not (NGINX.exists() if cmd == "nginx" else shutil.which(cmd))]
    if absent:
        packages = " ".join(dict.fromkeys(tools[cmd] for cmd in absent))
        print(f"{Path(sys.argv[0]).name} needs {', '.join(absent)}, not installed here: apt-get install {packages} / "
              f"缺少 {', '.join(absent)}，请先安装: apt-get install {packages}", file=sys.stderr)
        sys.exit(2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_file(path: Path, size: int) -> str:
    """Incompressible-looking data without paying for a CSPRNG: a random MiB with a changing counter per MiB."""
    path.parent.mkdir(parents=True, exist_ok=True)
    block = bytearray(os.urandom(1 << 20))
    h = hashlib.sha256()
    with open(path, "wb") as fh:
        left, i = size, 0
        while left:
            block[:8] = i.to_bytes(8, "little")
            chunk = memoryview(block)[: min(left, len(block))]
            fh.write(chunk)
            h.update(chunk)
            left -= len(chunk)
            i += 1
    return h.hexdigest()


class Nginx:
    def __init__(self, www: Path, work: Path):
        self.port = free_port()
        self.work = work
        self.access_log = work / "access.log"
        conf = work / "nginx.conf"
        conf.write_text(f"""
user root;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {self.access_log};
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path {work}/tmp; proxy_temp_path {work}/tmp; fastcgi_temp_path {work}/tmp;
    uwsgi_temp_path {work}/tmp; scgi_temp_path {work}/tmp;
    server {{ listen 127.0.0.1:{self.port}; root {www}; }}
}}
""")
        (work / "tmp").mkdir(exist_ok=True)
        self.proc = subprocess.Popen([str(NGINX), "-p", str(work), "-c", str(conf), "-g", "daemon off;"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        self.base_url = f"http://127.0.0.1:{self.port}/dinov2"

    def requests(self) -> int:
        return len(self.access_log.read_text().splitlines()) if self.access_log.exists() else 0

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


class PyServer:
    def __init__(self, www: Path, work: Path):
        sys.path.insert(0, str(ROOT))
        from tests.support.httpserver import start_server

        self.server = start_server(www)
        self.base_url = self.server.base_url

    def requests(self) -> int:
        return sum(self.server.requests.values())

    def close(self):
        self.server.close()


WORKER = """
import json, resource, sys, time
from dinovault.pipeline import fetch_model
t0 = time.perf_counter()
r = fetch_model(sys.argv[1], sys.argv[2], smoke_test=False, progress=False)
seconds = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": seconds, "maxrss_mb": ru.ru_maxrss / 1024, "cpu": ru.ru_utime + ru.ru_stime,
                  "downloaded": r.downloaded, "hashed": r.hashed, "sha256": r.sha256}))
"""


def run_fetch(env: dict, save_dir: Path) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", WORKER, MODEL, str(save_dir)], env=env, check=True,
                         capture_output=True, text=True).stdout
    res = json.loads(out)
    res["wall"] = time.perf_counter() - t0
    return res


CURL_CPU: list[float] = []


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_curl(url: str, out: Path, sha: bool = False) -> float:
    c0, t0 = _children_cpu(), time.perf_counter()
    subprocess.run(["curl", "-s", "-f", "-o", str(out), url], check=True)
    if not sha:
        CURL_CPU.append(_children_cpu() - c0)
    else:  # the sequential baseline: download, then a second full read to hash
        subprocess.run(["sha256sum", str(out)], check=True, capture_output=True)
    return time.perf_counter() - t0


def fresh(work: Path) -> tuple[dict, Path]:
    for name in ("torch_home", "save"):
        shutil.rmtree(work / name, ignore_errors=True)
    env = dict(os.environ, TORCH_HOME=str(work / "torch_home"))
    return env, work / "save"


def bench(size: int, runs: int, server_kind: str, work: Path) -> None:
    from dinovault.catalog import get_spec

    spec = get_spec(MODEL)
    www = work / "www"
    file = www / "dinov2" / spec.upstream_path
    t0 = time.perf_counter()
    digest = make_file(file, size)
    print(f"generated {size / 1e6:.0f} MB test file in {time.perf_counter() - t0:.1f}s")
    registry = work / "registry.txt"
    registry.write_text(f"{spec.upstream_file} {size} sha256:{digest}\n")
    use_nginx = server_kind == "nginx" or (server_kind == "auto" and NGINX.exists())
    server = Nginx(www, work) if use_nginx else PyServer(www, work)
    print(f"server: {'nginx' if use_nginx else 'tests.support.httpserver (python; nginx not installed)'} "
          f"at {server.base_url}")
    url = f"{server.base_url}/{spec.upstream_path}"
    os.environ.update(DINOV2_BASE_URL=server.base_url, DINOVAULT_REGISTRY=str(registry))
    curl_t, curl_sha_t, fetch_wall, fetch_in, rss = [], [], [], [], []
    try:
        for i in range(runs):
            out = work / "curl.out"
            env, save = fresh(work)
            # alternate who goes first, and start each from a clean page cache state (no dirty pages of the
            # previous run being written back while this one writes)
            for who in ("curl", "fetch", "curl+sha") if i % 2 == 0 else ("curl+sha", "fetch", "curl"):
                os.sync()
                if who.startswith("curl"):
                    (curl_sha_t if who == "curl+sha" else curl_t).append(run_curl(url, out, sha=who == "curl+sha"))
                    out.unlink()
                else:
                    res = run_fetch(env, save)
            assert res["sha256"] == digest and res["downloaded"]
            fetch_wall.append(res["wall"])
            fetch_in.append(res["seconds"])
            rss.append(res["maxrss_mb"])
            print(f"  run {i + 1}: curl {curl_t[-1]:.3f}s (CPU {CURL_CPU[-1]:.2f}s), "
                  f"curl+sha256sum {curl_sha_t[-1]:.3f}s | "
                  f"fetch {res['wall']:.3f}s "
                  f"(in-process {res['seconds']:.3f}s, CPU {res['cpu']:.2f}s), peak RSS {res['maxrss_mb']:.0f} MB")
        mc, ms, mw, mi = (statistics.median(x) for x in (curl_t, curl_sha_t, fetch_wall, fetch_in))
        print(f"median over {runs}: curl {mc:.3f}s, curl+sha256sum {ms:.3f}s, "
              f"fetch {mw:.3f}s (process wall, incl. Python start-up), {mi:.3f}s in-process")
        print(f"ratio fetch/curl: {mw / mc:.2f}x wall ({target(mw / mc, 1.3)}), {mi / mc:.2f}x in-process "
              f"({target(mi / mc, 1.3)}); peak RSS max {max(rss):.0f} MB ({target(max(rss), 150, unit=' MB')})")

        before = server.requests()
        res = run_fetch(env, save)  # same TORCH_HOME and save_dir as the last run
        print(f"repeated fetch: {res['wall']:.3f}s wall, {res['seconds'] * 1000:.1f} ms in-process, "
              f"requests to the server: {server.requests() - before}, downloaded: {res['downloaded']}, "
              f"re-hashed: {res['hashed']}")
    finally:
        server.close()
        file.unlink(missing_ok=True)
        shutil.rmtree(work / "torch_home", ignore_errors=True)
        shutil.rmtree(work / "save", ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size", type=int, default=346_378_731, help="bytes (default: dinov2_vitb14's size)")
    ap.add_argument("--big", action="store_true", help="also one run on a 4.5 GB file for peak RSS")
    ap.add_argument("--server", choices=["auto", "nginx", "python"], default="auto")
    args = ap.parse_args()
    missing_tools({"curl": "curl", **({"nginx": "nginx"} if args.server == "nginx" else {})})
    for var in ("DINOV2_BASE_URL", "DINOVAULT_REGISTRY"):
        os.environ.pop(var, None)
    with tempfile.TemporaryDirectory(prefix="dinovault-bench-") as tmp:
        work = Path(tmp)
        bench(args.size, args.runs, args.server, work)
        if args.big:
            big = 4_546_108_579
            free = shutil.disk_usage(work).free
            if free < 2.5 * big:
                print(f"skipping the 4.5 GB run: {free / 1e9:.1f} GB free")
            else:
                print("4.5 GB file:")
                bench(big, 1, args.server, work)


if __name__ == "__main__":
    main()
