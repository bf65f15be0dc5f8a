#!/usr/bin/env python3
"""Fetch speed on emulated long-haul links (tests/support/wan.py), against aria2c, curl and torch.hub.

One nginx origin serves every tool; each setting puts a WAN proxy (its own process) in front of it:

- fast: RTT 100 ms, 10 MB/s per connection, 80 MB/s link, a dinov2_vitb14-sized file (346 MB);
- slow: RTT 250 ms, 2 MB/s per connection, 20 MB/s link, a dinov2_vits14-sized file (88 MB, to keep curl's and
  torch.hub's single streams to ~45 s each);
- two mirrors, each behind its own 40 MB/s link (RTT 100 ms, 10 MB/s per connection): share of the links' sum;
- the proxy's own accuracy first (curl's rate through one connection, first byte in RTTs).

Prints times and ratios (dinovault / aria2c -x8 -s8, curl / dinovault, torch.hub / dinovault); never asserts.

    python bench/bench_wan.py [--only fast,slow,mirrors,check] [--no-single]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_fetch import Nginx, make_file  # noqa: E402

from tests.support.wan import WanProcess  # noqa: E402

SETTINGS = {
    "fast": dict(rtt=0.100, conn_rate=10e6, link_rate=80e6, model="dinov2_vitb14"),
    "slow": dict(rtt=0.250, conn_rate=2e6, link_rate=20e6, model="dinov2_vits14"),
}

WORKER = """
import json, resource, sys, time
from dinovault.fetch import fetch_model
t0 = time.perf_counter()
r = fetch_model(sys.argv[1], smoke_test=False, progress=False)
print(json.dumps({"seconds": time.perf_counter() - t0, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                  / 1024, "sha256": r.sha256, "transferred": r.transferred}))
"""

TORCH_WORKER = """
import sys, time
from torch.hub import download_url_to_file
t0 = time.perf_counter()
download_url_to_file(sys.argv[1], sys.argv[2], progress=False)
print(time.perf_counter() - t0)
"""


def timed(cmd: list[str], env=None) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return time.perf_counter() - t0, out


class Origin:
    """nginx serving one file per model, pinned in a registry."""

    def __init__(self, work: Path, models: list[str]):
        from dinovault.catalog import get_spec
        from dinovault.registry import load_registry

        pins = load_registry()
        self.work, self.www = work, work / "www"
        lines = []
        for m in models:
            spec = get_spec(m)
            size = pins[spec.upstream_file].size
            digest = make_file(self.www / "dinov2" / spec.upstream_path, size)
            lines.append(f"{spec.upstream_file} {size} sha256:{digest}")
        self.registry = work / "registry.txt"
        self.registry.write_text("\n".join(lines) + "\n")
        (work / "nginx").mkdir()
        self.nginx = Nginx(self.www, work / "nginx")

    def path(self, model: str) -> str:
        from dinovault.catalog import get_spec

        return f"/dinov2/{get_spec(model).upstream_path}"


def run_dinovault(origin: Origin, model: str, bases: list[str], **env_extra) -> dict:
    home = origin.work / "th"
    shutil.rmtree(home, ignore_errors=True)
    env = dict(os.environ, TORCH_HOME=str(home), DINOV2_REGISTRY=str(origin.registry),
               DINOV2_BASE_URL=",".join(bases), **env_extra)
    wall, out = timed([sys.executable, "-c", WORKER, model], env)
    res = json.loads(out)
    res["wall"] = wall
    shutil.rmtree(home, ignore_errors=True)
    return res


def run_tool(kind: str, url: str, out: Path) -> float:
    out.unlink(missing_ok=True)
    if kind == "aria2c":
        cmd = ["aria2c", "-x8", "-s8", "-q", "--allow-overwrite=true", "-d", str(out.parent), "-o", out.name, url]
    elif kind == "curl":
        cmd = ["curl", "-s", "-f", "-o", str(out), url]
    else:
        cmd = [sys.executable, "-c", TORCH_WORKER, url, str(out)]
    wall, _ = timed(cmd)
    out.unlink(missing_ok=True)
    return wall


def check_proxy(origin: Origin) -> None:
    model = "dinov2_vits14"
    for name, s in SETTINGS.items():
        with WanProcess(("127.0.0.1", origin.nginx.port), rtt=s["rtt"], conn_rate=s["conn_rate"],
                        link_rate=s["link_rate"]) as wan:
            n = int(s["conn_rate"] * 2)
            out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-r", f"0-{n - 1}", "-w",
                                  "%{time_starttransfer} %{time_total}",
                                  f"http://127.0.0.1:{wan.port}{origin.path(model)}"],
                                 capture_output=True, text=True, check=True).stdout
            first, total = map(float, out.split())
            print(f"proxy check ({name}): one connection {n / (total - first) / 1e6:.2f} MB/s "
                  f"(set {s['conn_rate'] / 1e6:.0f}), first byte after {first / s['rtt']:.2f} RTT (expected ~2)")


def bench_setting(origin: Origin, name: str, single: bool) -> None:
    s = SETTINGS[name]
    model = s["model"]
    with WanProcess(("127.0.0.1", origin.nginx.port), rtt=s["rtt"], conn_rate=s["conn_rate"],
                    link_rate=s["link_rate"]) as wan:
        base = f"http://127.0.0.1:{wan.port}/dinov2"
        url = f"http://127.0.0.1:{wan.port}{origin.path(model)}"
        ours = run_dinovault(origin, model, [base])
        aria = run_tool("aria2c", url, origin.work / "out.bin")
        size = ours["transferred"]
        print(f"{name}: RTT {s['rtt'] * 1000:.0f} ms, {s['conn_rate'] / 1e6:.0f} MB/s per connection, "
              f"{s['link_rate'] / 1e6:.0f} MB/s link, {model}-sized file ({size / 1e6:.0f} MB)")
        print(f"  dinovault {ours['wall']:.2f}s ({size / ours['wall'] / 1e6:.1f} MB/s, peak RSS "
              f"{ours['maxrss_mb']:.0f} MB) | aria2c -x8 -s8 {aria:.2f}s | ratio dinovault/aria2c "
              f"{ours['wall'] / aria:.2f}x (target <= 1.1x)")
        if single:
            curl = run_tool("curl", url, origin.work / "out.bin")
            hub = run_tool("torch", url, origin.work / "out.bin")
            print(f"  curl {curl:.2f}s, torch.hub download_url_to_file {hub:.2f}s | dinovault is "
                  f"{curl / ours['wall']:.1f}x faster than curl, {hub / ours['wall']:.1f}x than torch.hub "
                  f"(target >= 5x)")


def bench_mirrors(origin: Origin) -> None:
    s, model = SETTINGS["fast"], "dinov2_vitb14"
    links = 40e6
    with WanProcess(("127.0.0.1", origin.nginx.port), rtt=s["rtt"], conn_rate=s["conn_rate"], link_rate=links) as a, \
            WanProcess(("127.0.0.1", origin.nginx.port), rtt=s["rtt"], conn_rate=s["conn_rate"], link_rate=links) as b:
        bases = [f"http://127.0.0.1:{w.port}/dinov2" for w in (a, b)]
        ours = run_dinovault(origin, model, bases)
        one = run_dinovault(origin, model, bases[:1])
    size = ours["transferred"]
    rate = size / ours["seconds"]
    print(f"two mirrors, each behind its own 40 MB/s link (RTT 100 ms, 10 MB/s per connection), {size / 1e6:.0f} MB:")
    print(f"  both mirrors {ours['seconds']:.2f}s in-process ({rate / 1e6:.1f} MB/s = {rate / (2 * links):.2f} of the "
          f"links' sum, target >= 0.85); one mirror {one['seconds']:.2f}s ({size / one['seconds'] / 1e6:.1f} MB/s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="check,fast,slow,mirrors")
    ap.add_argument("--no-single", action="store_true", help="skip curl and torch.hub (single streams, slow)")
    args = ap.parse_args()
    parts = args.only.split(",")
    for tool in ("aria2c", "curl"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install aria2 curl")
    with tempfile.TemporaryDirectory(prefix="dinovault-wan-") as tmp:
        origin = Origin(Path(tmp), ["dinov2_vits14", "dinov2_vitb14"])
        try:
            if "check" in parts:
                check_proxy(origin)
            for name in ("fast", "slow"):
                if name in parts:
                    bench_setting(origin, name, not args.no_single)
            if "mirrors" in parts:
                bench_mirrors(origin)
        finally:
            origin.nginx.close()


if __name__ == "__main__":
    main()
