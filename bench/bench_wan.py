#!/usr/bin/env python3
"""Fetch speed on emulated long-haul links (tests/support/wan.py), against aria2c, curl and torch.hub.

One nginx origin serves every tool; each setting puts a WAN proxy (its own process) in front of it:

- fast: RTT 100 ms, 10 MB/s per connection, 80 MB/s link, a dinov2_vitb14-sized file (346 MB);
- slow: RTT 250 ms, 2 MB/s per connection, 20 MB/s link, a dinov2_vits14-sized file (88 MB, to keep curl's and
  torch.hub's single streams to ~45 s each);
- two mirrors, each behind its own 40 MB/s link (RTT 100 ms, 10 MB/s per connection): share of the links' sum;
- the proxy's own accuracy first (curl's rate through one connection, first byte in RTTs).

Prints times and ratios (dinovault / aria2c -x8 -s8, curl / dinovault, torch.hub / dinovault); never asserts.

    python bench/bench_wan.py [--only check,fast,slow,mirrors] [--no-single] [--runs 3]

Needs nginx, aria2c and curl (``apt-get install nginx aria2 curl``); without them it says so and exits 2. A target
missed is printed as ``MISSED``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_fetch import Nginx, make_file, missing_tools, target  # noqa: E402

from dinovault.catalog import get_spec  # noqa: E402
from tests.support.wan import WanProcess  # noqa: E402

SETTINGS = {
    "fast": dict(rtt=0.100, conn_rate=10e6, link_rate=80e6, model="dinov2_vitb14"),
    "slow": dict(rtt=0.250, conn_rate=2e6, link_rate=20e6, model="dinov2_vits14"),
}

WORKER = """
import json, resource, sys, time
from dinovault.pipeline import fetch_model
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
    env = dict(os.environ, TORCH_HOME=str(home), DINOVAULT_REGISTRY=str(origin.registry),
               DINOV2_BASE_URL=",".join(bases), **env_extra)
    wall, out = timed([sys.executable, "-c", WORKER, model], env)
    res = json.loads(out)
    res["wall"] = wall
    shutil.rmtree(home, ignore_errors=True)
    return res


def run_tool(kind: str, url: str, out: Path) -> float:
    out.unlink(missing_ok=True)
    if kind.startswith("aria2c"):  # "aria2c2": url holds two mirrors' URLs, the file is split over both
        split = ["-x8", "-s8"] if kind == "aria2c" else ["-x8", "-s16"]
        cmd = ["aria2c", *split, "-q", "--allow-overwrite=true", "-d", str(out.parent), "-o", out.name, *url.split()]
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


def bench_setting(origin: Origin, name: str, single: bool, runs: int) -> None:
    s = SETTINGS[name]
    model = s["model"]
    with WanProcess(("127.0.0.1", origin.nginx.port), rtt=s["rtt"], conn_rate=s["conn_rate"],
                    link_rate=s["link_rate"]) as wan:
        base = f"http://127.0.0.1:{wan.port}/dinov2"
        url = f"http://127.0.0.1:{wan.port}{origin.path(model)}"
        walls, inside, arias, rss = [], [], [], 0.0
        for _ in range(runs):  # alternating, medians: the machine may be busy with other work
            ours = run_dinovault(origin, model, [base])
            walls.append(ours["wall"])
            inside.append(ours["seconds"])
            rss = max(rss, ours["maxrss_mb"])
            arias.append(run_tool("aria2c", url, origin.work / "out.bin"))
        size = ours["transferred"]
        wall, aria = statistics.median(walls), statistics.median(arias)
        print(f"{name}: RTT {s['rtt'] * 1000:.0f} ms, {s['conn_rate'] / 1e6:.0f} MB/s per connection, "
              f"{s['link_rate'] / 1e6:.0f} MB/s link, {model}-sized file ({size / 1e6:.0f} MB), median of {runs}")
        inner = statistics.median(inside)
        print(f"  dinovault {wall:.2f}s wall ({size / wall / 1e6:.1f} MB/s; {inner:.2f}s "
              f"in-process, without Python start-up), peak RSS {rss:.0f} MB | aria2c -x8 -s8 {aria:.2f}s "
              f"| ratio dinovault/aria2c {wall / aria:.2f}x wall ({target(wall / aria, 1.1)}), {inner / aria:.2f}x "
              f"in-process ({target(inner / aria, 1.1)}); runs: {' '.join(f'{w:.2f}' for w in walls)} vs "
              f"{' '.join(f'{a:.2f}' for a in arias)}")
        if single:
            curl = run_tool("curl", url, origin.work / "out.bin")
            hub = run_tool("torch", url, origin.work / "out.bin")
            print(f"  curl {curl:.2f}s, torch.hub download_url_to_file {hub:.2f}s | dinovault is "
                  f"{curl / wall:.1f}x faster than curl ({target(curl / wall, 5, at_most=False)}), "
                  f"{hub / wall:.1f}x than torch.hub ({target(hub / wall, 5, at_most=False)})")


def bench_mirrors(origin: Origin, runs: int) -> None:
    s, model = SETTINGS["fast"], "dinov2_vitb14"
    links = 40e6
    with WanProcess(("127.0.0.1", origin.nginx.port), rtt=s["rtt"], conn_rate=s["conn_rate"], link_rate=links) as a, \
            WanProcess(("127.0.0.1", origin.nginx.port), rtt=s["rtt"], conn_rate=s["conn_rate"], link_rate=links) as b:
        bases = [f"http://127.0.0.1:{w.port}/dinov2" for w in (a, b)]
        both = [run_dinovault(origin, model, bases)["seconds"] for _ in range(runs)]
        one = run_dinovault(origin, model, bases[:1])
        aria = run_tool("aria2c2", " ".join(f"{base}/{get_spec(model).upstream_path}" for base in bases),
                        origin.work / "out.bin")
    size = one["transferred"]
    seconds = statistics.median(both)
    rate = size / seconds
    print(f"two mirrors, each behind its own 40 MB/s link (RTT 100 ms, 10 MB/s per connection), {size / 1e6:.0f} MB:")
    share = rate / (2 * links)
    print(f"  both mirrors {seconds:.2f}s in-process, median of {runs} ({rate / 1e6:.1f} MB/s = "
          f"{share:.2f} of the links' sum, {target(share, 0.85, at_most=False, unit='')}; runs "
          f"{' '.join(f'{x:.2f}' for x in both)}); "
          f"one mirror {one['seconds']:.2f}s ({size / one['seconds'] / 1e6:.1f} MB/s); aria2c -x8 -s16 with both "
          f"URLs {aria:.2f}s wall ({size / aria / (2 * links):.2f} of the sum)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="check,fast,slow,mirrors")
    ap.add_argument("--no-single", action="store_true", help="skip curl and torch.hub (single streams, slow)")
    ap.add_argument("--runs", type=int, default=3, help="runs of dinovault and aria2c (alternating) per setting")
    args = ap.parse_args()
    parts = args.only.split(",")
    missing_tools({"nginx": "nginx", "aria2c": "aria2", "curl": "curl"})
    with tempfile.TemporaryDirectory(prefix="dinovault-wan-") as tmp:
        origin = Origin(Path(tmp), ["dinov2_vits14", "dinov2_vitb14"])
        try:
            if "check" in parts:
                check_proxy(origin)
            for name in ("fast", "slow"):
                if name in parts:
                    bench_setting(origin, name, not args.no_single, args.runs)
            if "mirrors" in parts:
                bench_mirrors(origin, args.runs)
        finally:
            origin.nginx.close()


if __name__ == "__main__":
    main()
