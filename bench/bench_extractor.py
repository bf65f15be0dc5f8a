#!/usr/bin/env python3
"""Benchmark the backbone and the extractor; prints figures and ratios, never asserts on times.

1. throughput: dinov2_vits14 forward, 224 px, batch 32, fp32 CPU, dinovault (the default, exact forward, and the
   opt-in ``cls_shortcut=True``) vs the official implementation (PyPI dinov2==0.0.1.dev2) with the same weights and
   threads, alternating, under inference_mode.
2. startup: DINOv2FeatureExtractor('dinov2_vitb14') constructor → first feature of one image, vs a bare
   ``torch.load`` of the same file, with the file evicted from the page cache (cold) and in it (warm).
3. memory: peak RSS of a child process that loads dinov2_vitg14-sized weights (a generated 4.5 GB file) with
   dinovault, vs a bare ``torch.load``; as a ratio to the file size.

    python bench/bench_extractor.py [--parts throughput,startup,memory] [--threads N] [--rounds 6]
                                    [--workdir DIR] [--forward-after-load]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def fmt_ratio(baseline: float, ours: float) -> str:
    return f"{baseline / ours:.2f}×"


def evict(path: Path) -> None:
    """Drop the file's pages from the page cache (works unprivileged for clean pages)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def write_checkpoint(name: str, path: Path) -> Path:
    """An official-format checkpoint of ``name`` (random weights), written once and reused."""
    import torch

    from dinovault.catalog import get_spec

    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".partial")
        shapes = get_spec(name).state_dict_shapes()
        torch.save({k: torch.randn(shape) * 0.02 for k, shape in shapes.items()}, tmp)
        os.replace(tmp, path)
    return path


# -- 1. throughput -------------------------------------------------------------------------------------------


def throughput(threads: int, rounds: int, batch: int = 32) -> None:
    import torch

    logging.getLogger("dinov2").setLevel(logging.ERROR)
    from dinov2.models.vision_transformer import vit_small

    from dinovault.catalog import get_spec
    from dinovault.model.backbone import build_backbone

    torch.set_num_threads(threads)
    ours = build_backbone(get_spec("dinov2_vits14")).eval()
    ref = vit_small(patch_size=14, img_size=518, init_values=1.0, block_chunks=0).eval()
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(batch, 3, 224, 224)

    def timed(model) -> tuple[float, float]:
        with torch.inference_mode():
            wall, cpu = time.perf_counter(), time.process_time()
            model(x)
            return time.perf_counter() - wall, time.process_time() - cpu

    def shortcut(x):
        return ours(x, cls_shortcut=True)

    contenders = {"official dinov2 0.0.1.dev2": ref, "dinovault": ours, "dinovault cls_shortcut": shortcut}
    for model in contenders.values():
        timed(model)  # warm-up: allocator, oneDNN primitives
    runs: dict[str, list] = {label: [] for label in contenders}
    order = list(contenders)
    for i in range(rounds):  # alternate, and rotate who goes first, so background load hits all alike
        for label in order[i % 3 :] + order[: i % 3]:
            runs[label].append(timed(contenders[label]))
    print(f"[throughput] dinov2_vits14, 224 px, batch {batch}, fp32, {threads} threads, {rounds} rounds")
    stats = {}
    for label, got in runs.items():
        wall = [w for w, _ in got]
        best, med, cpu = min(wall), statistics.median(wall), statistics.median(c for _, c in got)
        stats[label] = best, med, cpu
        print(f"  {label:26s}: best {best:.3f} s/batch ({batch / best:5.1f} img/s), median {med:.3f} s, cpu {cpu:.2f}")
    rb, rm, rc = stats["official dinov2 0.0.1.dev2"]
    for label in ("dinovault", "dinovault cls_shortcut"):
        ob, om, oc = stats[label]
        print(f"  speed-up of {label}: {fmt_ratio(rb, ob)} best wall, {fmt_ratio(rm, om)} median wall, "
              f"{fmt_ratio(rc, oc)} cpu time")


# -- 2. startup ----------------------------------------------------------------------------------------------


def startup(workdir: Path, threads: int, rounds: int) -> None:
    import torch
    from PIL import Image

    from dinovault import DINOv2FeatureExtractor

    torch.set_num_threads(threads)
    name = "dinov2_vitb14"
    path = write_checkpoint(name, workdir / f"{name}.pth")
    size = path.stat().st_size
    image = Image.new("RGB", (640, 480), (120, 80, 40))
    DINOv2FeatureExtractor(name, weights=path, device="cpu").extract([image])  # warm torch's one-time set-up

    def bare() -> float:
        start = time.perf_counter()
        torch.load(path, map_location="cpu", weights_only=True)
        return time.perf_counter() - start

    def ours() -> tuple[float, float]:
        start = time.perf_counter()
        extractor = DINOv2FeatureExtractor(name, weights=path, device="cpu")
        built = time.perf_counter() - start
        extractor.extract([image])
        return built, time.perf_counter() - start

    print(f"[startup] {name}, {size / 1e6:.0f} MB file, {threads} threads, {rounds} rounds")
    for cache in ("cold", "warm"):
        t_bare, t_built, t_first = [], [], []
        for _ in range(rounds):
            if cache == "cold":
                evict(path)
            t_bare.append(bare())
            if cache == "cold":
                evict(path)
            built, first = ours()
            t_built.append(built)
            t_first.append(first)
        for label, pick in (("median", statistics.median), ("best", min)):
            b, c, f = pick(t_bare), pick(t_built), pick(t_first)
            print(
                f"  {cache} {label:6s}: bare torch.load {b:.3f} s | constructor {c:.3f} s ({c / b:.2f}×) | "
                f"constructor → first feature {f:.3f} s ({f / b:.2f}× torch.load)"
            )


# -- 3. memory -----------------------------------------------------------------------------------------------

_CHILD = r"""
import json, sys, time
def hwm():  # VmHWM: this process's peak RSS (ru_maxrss would carry the parent's peak across fork+exec)
    line = next(ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024
mode, path, forward = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
import torch
base = hwm()
start = time.perf_counter()
if mode == "dinovault":
    from dinovault.catalog import get_spec
    from dinovault.checkpoint import load_backbone
    model = load_backbone(path, get_spec("dinov2_vitg14"))
    if forward:
        with torch.inference_mode():
            model(torch.zeros(1, 3, 224, 224))
else:
    torch.load(path, map_location="cpu", weights_only=True)
seconds = time.perf_counter() - start
peak = hwm()
print(json.dumps({"peak": peak, "base": base, "seconds": seconds}))
"""


def memory(workdir: Path, forward: bool) -> None:
    path = workdir / "dinov2_vitg14.pth"
    if not path.exists():
        print(f"[memory] writing a dinov2_vitg14-sized checkpoint to {path} (once) …", flush=True)
        subprocess.run(
            [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); import bench.bench_extractor as b; "
             f"b.write_checkpoint('dinov2_vitg14', b.Path({str(path)!r}))"],
            check=True,
        )  # fmt: skip
    size = path.stat().st_size
    print(f"[memory] dinov2_vitg14, {size / 1e9:.2f} GB file; peak RSS (VmHWM) of a fresh child process")
    for mode in ("dinovault", "torch.load"):
        if mode == "dinovault" and forward:
            label = "dinovault load_backbone + forward"
        else:
            label = "dinovault load_backbone" if mode == "dinovault" else "bare torch.load"
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, mode, str(path), "1" if forward else "0"],
            check=True, capture_output=True, text=True, cwd=ROOT,
        )  # fmt: skip
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"  {label:34s}: peak {r['peak'] / 1e9:5.2f} GB = {r['peak'] / size:.2f}× file "
            f"(torch imported: {r['base'] / 1e9:.2f} GB; {r['seconds']:.1f} s)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="throughput,startup,memory")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "dinovault-bench")
    ap.add_argument("--forward-after-load", action="store_true", help="memory: also run one forward (touches all)")
    args = ap.parse_args()
    import torch

    threads = args.threads or torch.get_num_threads()
    parts = args.parts.split(",")
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs visible, {threads} threads")
    if "throughput" in parts:
        throughput(threads, args.rounds)
    if "startup" in parts:
        startup(args.workdir, threads, max(3, args.rounds // 2))
    if "memory" in parts:
        memory(args.workdir, args.forward_after_load)


if __name__ == "__main__":
    main()
