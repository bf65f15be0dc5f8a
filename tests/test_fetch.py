"""The fetch core end to end: the CLI, real checkpoints, export and cards, safe loading, and what only separate
processes show (kill -9 and resume, two processes on one file, a file size limit)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dinovault.cache import cache_path, read_stamp
from dinovault.catalog import get_spec
from dinovault.catalog.dinov2 import LICENSE
from dinovault.errors import CheckpointError, DownloadError
from dinovault.model.checkpoint import load_state_dict
from dinovault.model.hf_dinov2 import tensor_digest
from dinovault.pipeline import fetch_model
from dinovault.sources.official import official_url
from dinovault.transport.download import part_paths
from tests.support.checkpoints import save_checkpoint, save_malicious, save_object
from tests.support.httpserver import SMALL_SIZE, serve_env, start_server, write_registry

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "download_dinov2.py"
S14 = get_spec("dinov2_vits14")
B14 = get_spec("dinov2_vitb14")
FILE = S14.upstream_file


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def cli(*args, env, timeout=120, **kw):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=kw.pop("cwd", None), **kw)


def cli_env(server, torch_home: Path, **extra):
    return serve_env(server, torch_home, DINOVAULT_BACKOFF="0.05", DINOVAULT_TIMEOUT="5", **extra)


@pytest.fixture
def served(faulty_server, torch_home_dir, monkeypatch):
    for k, v in faulty_server.env.items():
        monkeypatch.setenv(k, v)
    return faulty_server


# ------------------------------------------------------------------ the CLI, end to end


def test_cli_end_to_end_then_nothing_to_do(dinov2_server, tmp_path):
    served = dinov2_server.files[FILE]
    home = tmp_path / "th"
    env = cli_env(dinov2_server, home)  # the default segmented fetch: ranges over several connections
    hits0, sent0 = dinov2_server.hits(FILE), dinov2_server.sent(FILE)
    out_dir = tmp_path / "models" / "dinov2"
    r = cli("--model", "dinov2_vits14", "--save_dir", out_dir, "--metrics", tmp_path / "m.json", env=env)
    assert r.returncode == 0, r.stderr
    export, cached = out_dir / "dinov2_vits14.pth", home / "hub" / "checkpoints" / FILE
    digest = sha256(served)
    lines = r.stdout.splitlines()
    assert lines == [
        f"✓ 模型下载成功！ / Model downloaded: {FILE} (84.2 MiB, sha256 {digest})",
        "✓ 模型测试成功！ / Smoke test passed: output (1, 384)",
        f"✓ 模型已保存到: {export} / Saved to: {export}",
    ]
    assert sha256(export) == digest and export.stat().st_ino == cached.stat().st_ino
    hits1 = dinov2_server.hits(FILE)
    # several range requests, and no byte served twice beyond 2% (a range split in flight loses what was on its way)
    assert hits1 > hits0 + 1 and dinov2_server.sent(FILE) - sent0 <= 1.02 * served.stat().st_size
    card = json.loads((out_dir / "dinov2_vits14.json").read_text())
    assert card == {
        "model": "dinov2_vits14", "upstream_file": FILE, "url": official_url(S14), "size": served.stat().st_size,
        "sha256": digest, "embed_dim": 384, "num_params": 22_056_576, "license": LICENSE, "verified": True,
        "source": "official", "tensor_digest": tensor_digest(load_state_dict(served, S14), S14),
    }
    metrics = json.loads((tmp_path / "m.json").read_text())
    # deterministic (issue 17): no timings in the metrics, the smoke test's time is logged instead
    assert metrics == {"embed_dim": 384, "num_params": 22_056_576, "smoke_test": True}
    assert re.search(r"smoke test: one forward pass in \d+\.\d\d s / 前向测试耗时", r.stderr), r.stderr
    assert sorted(p.name for p in out_dir.iterdir()) == ["dinov2_vits14.json", "dinov2_vits14.pth"]

    before = {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()}
    r = cli("--model", "dinov2_vits14", "--save_dir", out_dir, "--skip-test", env=env)
    assert r.returncode == 0, r.stderr
    assert dinov2_server.hits(FILE) == hits1  # no request
    assert {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()} == before  # DVC stays clean

    # torch.hub finds the file in its cache and loads it without going to the network
    import torch.hub

    old = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(home)
    try:
        sd = torch.hub.load_state_dict_from_url(official_url(S14), map_location="cpu")
    finally:
        os.environ.pop("TORCH_HOME") if old is None else os.environ.__setitem__("TORCH_HOME", old)
    assert len(sd) == 175


def test_cli_without_save_dir_fills_only_the_cache(served, tmp_path):
    env = cli_env(served, tmp_path / "th")
    r = cli("--model", "dinov2_vits14", "--skip-test", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    cached = tmp_path / "th" / "hub" / "checkpoints" / FILE
    assert f"Saved to: {cached}" in r.stdout and cached.read_bytes() == served.files[FILE].read_bytes()
    # not a terminal: plain progress lines (size, percentage, speed, ETA), no carriage returns
    assert f"downloading {FILE}: 3.0 MiB" in r.stderr and "(100%)" in r.stderr and "ETA" in r.stderr
    assert "\r" not in r.stderr and "✗" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["registry.txt", "th", "www"]  # nothing written in cwd


def test_cli_all_reads_params_and_fails_if_any_model_fails(served, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("models:\n  - dinov2_vits14\n  - dinov2_vitb14\n")
    served.fault(B14.upstream_file, status=404)
    r = cli("--params", params, "--save_dir", tmp_path / "out", "--skip-test", env=cli_env(served, tmp_path / "th"))
    assert r.returncode == 1
    assert r.stdout.count("✓ 模型下载成功！") == 1 and "dinov2_vitb14: could not download" in r.stderr
    served.clear_faults()
    r = cli("--all", "--params", params, "--save_dir", tmp_path / "out", "--skip-test",
            env=cli_env(served, tmp_path / "th"))
    assert r.returncode == 0 and r.stdout.count("✓ 模型下载成功！") == 2


def test_params_smoke_test_false_skips_the_test(served, tmp_path):
    """...and, exporting only the .pth, the stage never imports torch (it would cost every stage run ~2 s)."""
    params = tmp_path / "params.yaml"
    params.write_text("models:\n  - dinov2_vits14\nsmoke_test: false\n")
    metrics = tmp_path / "metrics" / "m.json"
    argv = [str(SCRIPT), "--model", "dinov2_vits14", "--params", str(params), "--metrics", str(metrics),
            "--save_dir", str(tmp_path / "models")]
    code = ("import atexit, runpy, sys\n"
            "atexit.register(lambda: print('torch imported:', 'torch' in sys.modules, file=sys.stderr))\n"
            f"sys.argv = {argv!r}\nrunpy.run_path(sys.argv[0], run_name='__main__')")
    r = subprocess.run([sys.executable, "-c", code], env=cli_env(served, tmp_path / "th"), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Smoke test skipped (smoke_test: false in params.yaml)" in r.stdout
    assert r.stderr.rstrip().endswith("torch imported: False"), r.stderr
    assert json.loads(metrics.read_text()) == {"embed_dim": 384, "num_params": 22_056_576, "smoke_test": False}


def test_import_and_help_do_not_import_torch(tmp_path):
    code = ("import dinovault.pipeline, dinovault.exports.place, dinovault.exports.card, dinovault.sources.imported, "
            "sys; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
    code = (
        "import runpy, sys; sys.argv = ['x', '--help']\n"
        f"try: runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n"
        "except SystemExit: pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and "--save_dir" in r.stdout, r.stderr


def test_unknown_model_is_a_usage_error_with_suggestions(tmp_path):
    r = cli("--model", "dinov2_vits41", env=dict(os.environ, TORCH_HOME=str(tmp_path)))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "did you mean dinov2_vits14" in r.stderr
    assert cli("--model", "x", "--all", env=os.environ).returncode == 2  # argparse usage error


def test_malformed_registry_is_one_line_with_file_and_line(served, tmp_path):
    reg = tmp_path / "reg.txt"
    reg.write_text("# ok\ndinov2_vits14_pretrain.pth 12\n")
    r = cli("--model", "dinov2_vits14", env=cli_env(served, tmp_path / "th", DINOVAULT_REGISTRY=reg))
    assert r.returncode == 1 and f"{reg}:2: expected" in r.stderr
    assert [ln for ln in r.stderr.splitlines() if ln.startswith("✗")] == r.stderr.splitlines()


# ------------------------------------------------------------------ save_dir problems


@pytest.mark.parametrize("kind", ["file", "under-a-file", "read-only-mount"])
def test_bad_save_dir_fails_before_downloading(served, tmp_path, tmpfs, kind):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    if kind == "file":
        save_dir = blocker
    elif kind == "under-a-file":
        save_dir = blocker / "models"
    else:  # chmod does not stop root; a read-only file system does
        save_dir = tmpfs("ro", ro=True) / "models"
    r = cli("--model", "dinov2_vits14", "--save_dir", save_dir, "--skip-test", env=cli_env(served, tmp_path / "th"))
    assert r.returncode == 1
    assert "save_dir" in r.stderr and "--save_dir" in r.stderr and r.stderr.count("\n") == 1
    assert served.hits(FILE) == 0 and not (tmp_path / "th").exists()


# ------------------------------------------------------------------ export and card


def test_export_is_a_hard_link_and_left_alone_when_unchanged(served, tmp_path, monkeypatch):
    out = tmp_path / "out"
    res = fetch_model("dinov2_vits14", out, smoke_test=False, progress=False)
    assert res.export_path == out / "dinov2_vits14.pth"
    assert res.export_path.stat().st_ino == res.cache_path.stat().st_ino
    card_text = res.card_path.read_text()
    assert card_text == json.dumps(json.loads(card_text), indent=2, sort_keys=True) + "\n"
    before = [(p.name, p.stat().st_mtime_ns, p.stat().st_ino) for p in sorted(out.iterdir())]

    other = start_server(tmp_path / "mirror")  # a different mirror does not change the card
    try:
        other.add(f"dinov2/{S14.upstream_path}", served.files[FILE].read_bytes())
        monkeypatch.setenv("DINOV2_BASE_URL", other.base_url)
        cache_path(FILE).unlink()
        again = fetch_model("dinov2_vits14", out, smoke_test=False, progress=False)
    finally:
        other.close()
    # the cache was restored from the export (verified by its stamp), not downloaded from the mirror
    assert not again.downloaded and other.hits(FILE) == 0 and served.hits(FILE) == 1
    assert again.cache_path.stat().st_ino == again.export_path.stat().st_ino
    assert [(p.name, p.stat().st_mtime_ns, p.stat().st_ino) for p in sorted(out.iterdir())] == before


def test_export_keeps_a_good_copy_and_replaces_a_bad_one(served, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    good = out / "dinov2_vits14.pth"
    good.write_bytes(served.files[FILE].read_bytes())  # a verified copy, other inode: keep it
    ino = good.stat().st_ino
    res = fetch_model("dinov2_vits14", out, smoke_test=False, progress=False)
    assert good.stat().st_ino == ino and res.export_path == good

    good.write_bytes(b"garbage")
    fetch_model("dinov2_vits14", out, smoke_test=False, progress=False)
    assert good.read_bytes() == served.files[FILE].read_bytes()
    assert good.stat().st_ino == res.cache_path.stat().st_ino
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_export_across_file_systems_is_a_verified_copy(served, tmpfs):
    out = tmpfs("other_fs", size="16m")
    res = fetch_model("dinov2_vits14", out, smoke_test=False, progress=False)
    assert res.export_path.stat().st_dev != res.cache_path.stat().st_dev
    assert res.export_path.read_bytes() == res.cache_path.read_bytes()
    assert read_stamp(res.export_path) == res.sha256  # hashed while copying: no second read later


# ------------------------------------------------------------------ checkpoints that must be refused


def _serve(server, spec, tmp_path, make):
    """Replace the file served for ``spec`` by ``make(path)`` and pin it."""
    path = server.root / "dinov2" / spec.upstream_path
    make(path)
    server.files[path.name] = path
    write_registry(server.registry, list(server.files.values()))
    return path


def test_pickle_payload_is_refused_without_running(served, tmp_path):
    marker = tmp_path / "payload-ran"
    _serve(served, S14, tmp_path, lambda p: save_malicious(S14, p, marker))
    with pytest.raises(CheckpointError, match="refused") as exc:
        fetch_model("dinov2_vits14", tmp_path / "out", progress=False)
    assert not marker.exists()
    assert exc.value.hint
    assert not (tmp_path / "out" / "dinov2_vits14.pth").exists()  # never exported


def test_not_a_state_dict_is_refused(served, tmp_path):
    _serve(served, S14, tmp_path, lambda p: save_object([1, 2, 3], p))
    with pytest.raises(CheckpointError, match="not a state_dict"):
        fetch_model("dinov2_vits14", tmp_path / "out", progress=False)
    assert list((tmp_path / "out").iterdir()) == []


def test_wrong_model_is_named(served, tmp_path):
    _serve(served, B14, tmp_path, lambda p: save_checkpoint(S14, p, seed=5))  # vits14 weights behind the vitb14 URL
    with pytest.raises(CheckpointError, match="looks like dinov2_vits14"):
        fetch_model("dinov2_vitb14", tmp_path / "out", progress=False)


def test_unverified_bad_checkpoint_is_removed_from_the_cache(served, tmp_path, monkeypatch):
    _serve(served, B14, tmp_path, lambda p: save_object({"weights": 1}, p))
    monkeypatch.setenv("DINOVAULT_REGISTRY", str(tmp_path / "empty.txt"))
    (tmp_path / "empty.txt").write_text("# nothing pinned\n")
    with pytest.raises(CheckpointError):
        fetch_model("dinov2_vitb14", allow_unverified=True, progress=False)
    assert not cache_path(B14.upstream_file).exists()


# ------------------------------------------------------------------ separate processes


def _wait_for(predicate, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_kill_9_at_half_then_rerun_transfers_only_the_rest(served, tmp_path):
    home = tmp_path / "th"
    part, sidecar = part_paths(home / "hub" / "checkpoints" / FILE)
    served.fault(FILE, throttle=1_000_000)  # ~3 s for the file: catchable at half
    env = cli_env(served, home)
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--model", "dinov2_vits14", "--skip-test"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait_for(lambda: part.exists() and part.stat().st_size >= SMALL_SIZE // 2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    kept = part.stat().st_size
    assert SMALL_SIZE // 2 <= kept < SMALL_SIZE and sidecar.exists()
    assert not (home / "hub" / "checkpoints" / FILE).exists()

    served.clear_faults()
    served.reset_counters()
    r = cli("--model", "dinov2_vits14", "--skip-test", env=env)
    assert r.returncode == 0, r.stderr
    assert [(rec.range, rec.status) for rec in served.log] == [(f"bytes={kept}-", 206)]
    assert served.log[0].sent == SMALL_SIZE - kept  # (the killed connection may still be counting bytes)
    assert (home / "hub" / "checkpoints" / FILE).read_bytes() == served.files[FILE].read_bytes()
    assert not part.exists() and not sidecar.exists()


def test_two_processes_one_transfer_both_succeed(served, tmp_path):
    """The second process starts while the first is mid-download, for sure: the server holds the first response
    half-way until the second says it is waiting for the first (no race against a throttle)."""
    release = threading.Event()
    served.fault(FILE, stall=120, stall_after=SMALL_SIZE // 2, release=release, times=1)
    env = {**cli_env(served, tmp_path / "th"), "DINOVAULT_TIMEOUT": "120"}  # the held response is not a stall

    def start(i: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(SCRIPT), "--model", "dinov2_vits14", "--skip-test",
                                 "--save_dir", tmp_path / f"out{i}"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    first = start(0)
    try:
        assert _wait_for(lambda: served.log and served.log[0].sent >= SMALL_SIZE // 2)  # held half-way
        second = start(1)
        heard = []
        for line in second.stderr:  # until it waits for the first one's lock (or ends: then the check below fails)
            heard.append(line)
            if "another process is downloading" in line:
                break
    finally:
        release.set()
    results = [first.communicate(timeout=120), second.communicate(timeout=120)]
    assert [first.returncode, second.returncode] == [0, 0], results
    assert "another process is downloading" in "".join(heard) and "another process" not in results[0][1]
    assert served.hits(FILE) == 1 and served.sent(FILE) == SMALL_SIZE
    a, b = (tmp_path / f"out{i}" / "dinov2_vits14.pth" for i in range(2))
    assert a.read_bytes() == b.read_bytes() == served.files[FILE].read_bytes()


def _fill(folder: Path) -> None:
    """Write a file into ``folder`` until its file system is full."""
    with open(folder / "filler", "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * (64 << 10))
        except OSError:
            pass


def test_disk_full_keeps_the_partial_and_never_renames(served, tmpfs, monkeypatch):
    small = tmpfs("small", size="8m")  # a real ENOSPC: another program fills the disk during the download
    monkeypatch.setenv("TORCH_HOME", str(small / "th"))
    served.fault(FILE, throttle=2_000_000)
    part, _ = part_paths(cache_path(FILE))

    def fill_when_started():
        if _wait_for(lambda: part.exists() and part.stat().st_size >= 1 << 20):
            _fill(small)

    filler = threading.Thread(target=fill_when_started)
    filler.start()
    try:
        with pytest.raises(DownloadError, match="disk full") as exc:
            fetch_model("dinov2_vits14", smoke_test=False, progress=False)
    finally:
        filler.join()
    assert "rerun" in exc.value.hint
    dest = cache_path(FILE)
    part, _ = part_paths(dest)
    assert not dest.exists()
    assert part.exists() and part.stat().st_size % (1 << 20) == 0  # whole chunks only, resumable


def test_disk_already_full_is_one_line_before_any_request(served, tmpfs, tmp_path):
    small = tmpfs("full", size="1m")  # the 3 MB file cannot fit: said before downloading anything
    r = cli("--model", "dinov2_vits14", "--skip-test", env=cli_env(served, small / "th"))
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr  # one line, no traceback
    assert "not enough free space" in r.stderr and "TORCH_HOME" in r.stderr and "Traceback" not in r.stderr
    assert served.hits(FILE) == 0 and not list((small / "th" / "hub" / "checkpoints").glob("*.part*"))


def test_file_size_limit_then_resume(served, tmp_path):
    """Where tmpfs cannot be mounted, RLIMIT_FSIZE makes write() fail (EFBIG) at the same place ENOSPC would."""
    home = tmp_path / "th"
    env = cli_env(served, home)
    limit = 2 * (1 << 20) + 100

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    r = subprocess.run([sys.executable, str(SCRIPT), "--model", "dinov2_vits14", "--skip-test"], env=env,
                       capture_output=True, text=True, timeout=60, preexec_fn=limit_file_size)
    assert r.returncode == 1 and "disk full" in r.stderr and "File too large" in r.stderr, r.stderr
    dest = home / "hub" / "checkpoints" / FILE
    part, _ = part_paths(dest)
    assert not dest.exists() and part.stat().st_size == 2 * (1 << 20)
    served.reset_counters()
    r = cli("--model", "dinov2_vits14", "--skip-test", env=env)
    assert r.returncode == 0, r.stderr
    assert served.log[0].range == f"bytes={2 * (1 << 20)}-" and served.sent(FILE) == SMALL_SIZE - 2 * (1 << 20)
    assert dest.read_bytes() == served.files[FILE].read_bytes()


def test_ctrl_c_keeps_the_partial_for_resume(served, tmp_path):
    home = tmp_path / "th"
    part, sidecar = part_paths(home / "hub" / "checkpoints" / FILE)
    served.fault(FILE, throttle=1_000_000)
    # Ctrl-C as typed in a terminal: the test may itself run where SIGINT is ignored (nohup, some CI runners), which
    # a child would inherit
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--model", "dinov2_vits14", "--skip-test"],
                            env=cli_env(served, home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert _wait_for(lambda: part.exists() and part.stat().st_size >= 1 << 20)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "interrupted" in err and "resumes" in err
    assert part.stat().st_size >= 1 << 20 and sidecar.exists()
    assert not (home / "hub" / "checkpoints" / FILE).exists()
