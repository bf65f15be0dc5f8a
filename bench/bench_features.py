"""Feature sets (issue 23), measured in one run on this machine: ViT-S/14 with random weights (the arithmetic of the
real one), 250x250 JPEGs, CPU.

    python bench/bench_features.py            # 2,000 images for the incremental and kill figures (minutes)
    python bench/bench_features.py --quick    # 400

Prints: end-to-end img/s vs the model alone (same threads, same batch); the data path alone (decode + preprocess,
model replaced by nothing) with 1 and N workers; a rerun with 1 % new images vs a full run (startup included); the
images recomputed after a kill at 50 %; peak RSS at 1x and 10x the images. Figures on a shared machine are noisy:
compare ratios from the same run, never gate anything on them.
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

VITS = "dinov2_vits14"
SIDE = (250, 250)


def project(base: Path, sets: dict) -> Path:
    from dinovault.catalog import get_spec
    from tests.support.checkpoints import save_checkpoint

    (base / ".dvc").mkdir(parents=True, exist_ok=True)
    (base / "dvc.yaml").write_text("stages: {}\n", encoding="utf-8")
    lines = ["models: []", "features:"] + [f"  {name}: {json.dumps(opts)}" for name, opts in sets.items()]
    (base / "params.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    weights = base / "models" / "dinov2" / f"{VITS}.pth"
    if not weights.is_file():
        save_checkpoint(get_spec(VITS), weights, seed=1)
    return base


def images(folder: Path, count: int, start: int = 0) -> None:
    from tests.support.images import make_many

    make_many(folder, count, start, SIDE)


def model_alone(root: Path, count: int, batch: int) -> float:
    """img/s of extractor.forward on ready batches (no decoding), this process's threads."""
    from dinovault import DINOv2FeatureExtractor
    from dinovault.features.images import Decoded, collate, scan

    extractor = DINOv2FeatureExtractor(VITS, weights=root / "models" / "dinov2" / f"{VITS}.pth", device="cpu")
    listed, _ = scan(root / "data" / "e2e", "data/e2e")
    ds = Decoded([("", p) for _, p in listed[:count]], extractor.transform)
    batches = [collate([ds[i] for i in range(s, min(s + batch, count))])[1] for s in range(0, count, batch)]
    extractor.forward(batches[0][:2])  # warm-up
    start = time.perf_counter()
    for x in batches:
        extractor.forward(x)
    return count / (time.perf_counter() - start)


def data_path(root: Path, workers: int, batch: int) -> float:
    """img/s of decode + preprocess through the engine's DataLoader, the model replaced by nothing."""
    from torch.utils.data import DataLoader

    from dinovault.catalog import get_spec
    from dinovault.features.images import Decoded, collate, scan
    from dinovault.inference.extractor import build_transform

    listed, _ = scan(root / "data" / "big", "data/big")
    loader = DataLoader(Decoded([("", p) for _, p in listed], build_transform(get_spec(VITS))), batch_size=batch,
                        num_workers=workers, collate_fn=collate, prefetch_factor=4 if workers else None)
    start, n = None, 0
    for hashes, _, _ in loader:
        if start is None:  # the workers' start-up is not the data path's rate
            start, n = time.perf_counter(), 0
            continue
        n += len(hashes)
    return n / (time.perf_counter() - start)


def run(root: Path, name: str, **kw):
    from dinovault.features.engine import run_set

    return run_set(root, name, **kw)


def stage_process(root: Path, name: str, workers: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "dinovault", "features", "--stage", "--set", name, "--workers",
                             str(workers)], cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# Linux keeps ru_maxrss across fork + exec (a child starts at its parent's peak): VmHWM of /proc/self/status is the
# high-water mark of this process's own memory (a forked decoding worker's would start at this process's RSS)
PEAK = """
import sys
from pathlib import Path
from dinovault.features.engine import run_set
run_set(Path(sys.argv[1]), sys.argv[2], workers=1)
print(next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


def peak_rss_mib(root: Path, name: str) -> float:
    """The run's process's peak RSS in MiB, from a fresh process (Linux)."""
    out = subprocess.run([sys.executable, "-c", PEAK, str(root), name], cwd=root, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True).stdout.split()
    return int(out[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="400 images instead of 2,000 for the set figures")
    parser.add_argument("--workers", type=int, default=2, help="N for the data path (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary project")
    args = parser.parse_args()
    import torch

    big = 400 if args.quick else 2000
    e2e, batch = (64 if args.quick else 128), 32
    base = Path(tempfile.mkdtemp(prefix="bench_features_"))
    shard = big // 20
    root = project(base, {
        "e2e": {"images": "data/e2e", "model": VITS, "batch_size": batch},
        "big": {"images": "data/big", "model": VITS, "batch_size": batch, "shard_size": shard},
        # the kill's figure is a count: at 56 px it costs minutes less
        "kill": {"images": "data/big", "model": VITS, "size": 56, "batch_size": batch, "shard_size": shard},
        "rss1": {"images": "data/rss1", "model": VITS, "size": 56, "batch_size": batch},
        "rss10": {"images": "data/rss10", "model": VITS, "size": 56, "batch_size": batch},
    })
    print(f"ViT-S/14 random weights, {SIDE[0]}x{SIDE[1]} JPEGs, 224 px, batch {batch}, torch threads "
          f"{torch.get_num_threads()}, {os.cpu_count()} CPUs (shared: noisy) · {root}", flush=True)
    images(root / "data" / "e2e", e2e)
    images(root / "data" / "big", big)
    images(root / "data" / "rss1", big // 10)
    images(root / "data" / "rss10", big)

    alone = model_alone(root, e2e, batch)
    done = run(root, "e2e", workers=1)
    rate = done.computed / done.seconds
    print(f"end-to-end {rate:6.1f} img/s vs model alone {alone:6.1f} img/s: {rate / alone:.2f}x "
          f"({e2e} images, 1 decoding worker, startup and hashing included)", flush=True)

    one, many = data_path(root, 1, batch), data_path(root, args.workers, batch)
    print(f"data path alone: {one:6.0f} img/s with 1 worker, {many:6.0f} img/s with {args.workers}: "
          f"{many / one:.2f}x; {one / alone:.0f}x the model's rate with 1", flush=True)

    full = run(root, "big", workers=1)
    images(root / "data" / "big", big // 100, start=10**6)
    rerun = run(root, "big", workers=1)
    print(f"end-to-end over the full run: {full.computed / full.seconds:6.1f} img/s = "
          f"{full.computed / full.seconds / alone:.2f}x the model alone (startup amortised)", flush=True)
    print(f"full run of {big}: {full.seconds:6.1f} s; rerun with {rerun.computed} new (1 %): {rerun.seconds:5.1f} s "
          f"= {rerun.seconds / full.seconds:.1%} of the full run (startup included)", flush=True)

    count = big + big // 100
    proc = stage_process(root, "kill", workers=1)
    shards = root / "features" / "kill" / "shards"
    while proc.poll() is None and sum(1 for _ in shards.glob("*.json")) * shard < count // 2:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    kept = sum(1 for _ in shards.glob("*.json")) * shard
    again = run(root, "kill", workers=1)
    print(f"kill at {kept / count:.0%} (56 px set): {kept} images in complete shards kept, the rerun computed "
          f"{again.computed} (= the {count - kept} not in a complete shard: at most one shard of {shard} had been "
          "computed and lost)", flush=True)

    one, ten = peak_rss_mib(root, "rss1"), peak_rss_mib(root, "rss10")
    print(f"peak RSS at {big // 10} images: {one:.0f} MiB; at {big}: {ten:.0f} MiB: {ten / one:.2f}x (56 px sets)",
          flush=True)
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
