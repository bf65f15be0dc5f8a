"""The Windows branches of the one rename and link (dinovault/files.py), under simulated Windows semantics
(tests/support/windows.py): DVC's read-only outputs are replaced, never written into; the torch.hub cache on C: and
the repository on D: get a verified copy; user paths in Windows form. The segmented download, its resume and the
invoke tasks run with Windows' ``os`` (no pwrite, pread, posix_fallocate, st_blocks...)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from pathlib import Path, PureWindowsPath

import pytest

from dinovault.cache import check_file, place_file
from dinovault.files import link_or_copy_atomic, temp_beside, write_atomic
from dinovault.registry import Pin
from tests.support.clones import Machine, snapshot_worktree
from tests.support.httpserver import SMALL_SIZE
from tests.support.windows import POSIX_ONLY, windows_env, windows_rules

SEGMENTED = {"DINOVAULT_SEGMENT_SIZE": str(256 << 10), "DINOVAULT_CONNECTIONS": "3"}
VITS_FILE = "dinov2_vits14_pretrain.pth"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def volumes(tmp_path):
    c, d = tmp_path / "C", tmp_path / "D 盘"
    c.mkdir()
    d.mkdir()
    return c, d


def test_a_read_only_target_is_replaced_not_written_into(volumes, monkeypatch):
    c, _ = volumes
    target, other_link = c / "dinov2_vits14.pth", c / "dvc-cache-object"
    target.write_bytes(b"old")
    os.link(target, other_link)  # the DVC cache object shares the inode
    os.chmod(target, 0o444)
    with windows_rules(monkeypatch, [c]) as seen:
        write_atomic(target, b"new bytes")
    assert seen["replace_refused"] == 1  # Windows refused the first rename; the attribute was cleared, then it went
    assert target.read_bytes() == b"new bytes" and other_link.read_bytes() == b"old"  # the old inode untouched
    assert not list(c.glob(".*.tmp"))


def test_a_link_across_volumes_is_a_verified_copy(volumes, monkeypatch):
    c, d = volumes
    src = c / "hub" / "checkpoints" / "dinov2_vits14_pretrain.pth"
    src.parent.mkdir(parents=True)
    data = os.urandom(3 << 20)
    src.write_bytes(data)
    dest = d / "models" / "dinov2" / "dinov2_vits14.pth"
    dest.parent.mkdir(parents=True)
    with windows_rules(monkeypatch, [c, d]) as seen:
        assert link_or_copy_atomic(src, dest, _sha(data)) is False
        assert place_file(src, dest, len(data), _sha(data)) is False  # already right: left alone
    assert seen["link_refused"] == 1
    assert dest.read_bytes() == data and dest.stat().st_ino != src.stat().st_ino
    with windows_rules(monkeypatch, [c]):  # one volume: a hard link
        same = c / "other.pth"
        assert link_or_copy_atomic(src, same, _sha(data)) is True and same.stat().st_ino == src.stat().st_ino


def test_a_copy_that_does_not_hash_right_is_never_placed(volumes, monkeypatch):
    c, d = volumes
    src, dest = c / "a.pth", d / "a.pth"
    src.write_bytes(b"abc")
    dest.write_bytes(b"good old bytes")
    with windows_rules(monkeypatch, [c, d]), pytest.raises(Exception, match="changed while it was being copied / "):
        link_or_copy_atomic(src, dest, "0" * 64)
    assert dest.read_bytes() == b"good old bytes" and not list(d.glob(".*"))


def test_placing_over_a_read_only_export_on_another_volume(volumes, monkeypatch):
    """A refetch whose export (a read-only DVC output on D:) holds other bytes: a verified copy replaces it."""
    c, d = volumes
    src, dest = c / "new.pth", d / "dinov2_vits14.pth"
    data = os.urandom(1 << 20)
    src.write_bytes(data)
    dest.write_bytes(b"damaged")
    os.chmod(dest, stat.S_IREAD)
    with windows_rules(monkeypatch, [c, d]) as seen:
        assert place_file(src, dest, len(data), _sha(data)) is True
    assert seen["replace_refused"] == 1 and seen["link_refused"] == 1
    assert check_file(dest, Pin(dest.name, len(data), _sha(data))).ok


@pytest.mark.parametrize("typed", [r"D:\models\dinov2", r"C:\Users\张三\.cache\torch", r"\\nas\share\models",
                                   r"D:\very long folder name with spaces" + r"\x" * 100])
def test_temporary_names_stay_short_beside_windows_paths(typed):
    """A temporary name adds a fixed, small amount to the target's path (Windows limits paths to 260 characters
    unless long paths are enabled): the pid, a native thread id and a suffix."""
    target = PureWindowsPath(typed) / "dinov2_vitg14_reg.pth"
    tmp = temp_beside(Path(target.name))
    assert tmp.name.startswith(".dinov2_vitg14_reg.pth.") and len(tmp.name) - len(target.name) <= 30
    assert PureWindowsPath(target.parent, tmp.name).parent == target.parent


def test_fetch_with_the_torch_cache_on_c_and_the_models_on_d(dinov2_server, volumes, monkeypatch):
    """The first users' layout: TORCH_HOME on C:, the repository on D:. The export is a verified copy (no hard link
    across volumes), and a read-only export (as DVC leaves its outputs) holding other bytes is replaced by a refetch."""
    from dinovault.pipeline import fetch_model

    c, d = volumes
    monkeypatch.setenv("TORCH_HOME", str(c / "Users" / "张三" / ".cache" / "torch"))
    for k, v in dinov2_server.env.items():
        monkeypatch.setenv(k, v)
    save_dir = d / "models" / "dinov2"
    with windows_rules(monkeypatch, [c, d]) as seen:
        first = fetch_model("dinov2_vits14", save_dir, smoke_test=False)
        served = first.cache_path.read_bytes()
        assert first.export_path.read_bytes() == served and seen["link_refused"] >= 1
        export = first.export_path
        os.chmod(export, 0o644)
        export.write_bytes(b"not the model")
        os.chmod(export, stat.S_IREAD)
        again = fetch_model("dinov2_vits14", save_dir, smoke_test=False)
    assert not again.downloaded and export.read_bytes() == served and seen["replace_refused"] >= 1


# ------------------------------------------------------------------ Windows' os module


def test_the_simulation_takes_the_posix_only_calls_away(volumes, monkeypatch, tmp_path):
    import dinovault.cache
    import dinovault.files

    assert {"pwrite", "pread", "posix_fallocate", "getuid", "fchmod", "O_NOFOLLOW"} <= POSIX_ONLY
    assert not POSIX_ONLY & {"replace", "link", "stat", "open", "ftruncate", "truncate", "fsync", "O_BINARY"}
    (tmp_path / "f").write_bytes(b"x")
    with windows_rules(monkeypatch, list(volumes)):
        for module in (dinovault.files, dinovault.cache):
            assert not hasattr(module.os, "pwrite") and module.os.replace is os.replace
        from dinovault.transport import stream  # noqa: F401 - imported anew: still Windows' os

        assert not hasattr(stream.os, "posix_fallocate") and dinovault.files.WINDOWS is True
        with pytest.raises(AssertionError, match="text mode"):
            stream.os.open(tmp_path / "f", os.O_RDONLY)
        os.close(stream.os.open(tmp_path / "f", os.O_RDONLY | stream.os.O_BINARY))
        st = (tmp_path / "f").stat()
        assert st.st_size == 1 and not hasattr(st, "st_blocks") and not hasattr(os.fstat(0), "st_blksize")
    assert hasattr(dinovault.files.os, "pwrite") and hasattr((tmp_path / "f").stat(), "st_blocks")  # undone


def _fetch():
    from dinovault.pipeline import fetch_model

    return fetch_model("dinov2_vits14", smoke_test=False, progress=False)


@pytest.fixture
def segmented(faulty_server, torch_home_dir, volumes, monkeypatch):
    """faulty_server as the source, small segments over 3 connections, TORCH_HOME on C:."""
    for k, v in {**faulty_server.env, **SEGMENTED, "TORCH_HOME": str(volumes[0] / "torch")}.items():
        monkeypatch.setenv(k, v)
    return faulty_server


def test_a_segmented_fetch_under_windows(segmented, volumes, monkeypatch):
    with windows_rules(monkeypatch, list(volumes)):
        res = _fetch()
    assert res.verified and res.cache_path.read_bytes() == segmented.files[VITS_FILE].read_bytes()
    assert sum(rec.status == 206 for rec in segmented.log) >= 3  # in ranges, over several connections
    assert sorted(p.name for p in res.cache_path.parent.iterdir()) == [VITS_FILE, VITS_FILE + ".lock"]


def test_a_cut_download_resumes_under_windows(segmented, volumes, monkeypatch):
    """Every range stops 100 kB short of its end until the source is given up: the partial keeps the bytes that
    arrived; the rerun asks only for the gaps."""
    from dinovault.errors import DownloadError
    from dinovault.transport.stream import part_paths

    monkeypatch.setenv("DINOVAULT_RETRIES", "1")
    segmented.fault(VITS_FILE, short_by=100_000)
    with windows_rules(monkeypatch, list(volumes)):
        with pytest.raises(DownloadError):
            _fetch()
        part, sidecar = part_paths(volumes[0] / "torch" / "hub" / "checkpoints" / VITS_FILE)
        kept = sum(b - a for pairs in json.loads(sidecar.read_text())["done"].values() for a, b in pairs)
        segmented.clear_faults()
        res = _fetch()
    assert res.verified and res.cache_path.read_bytes() == segmented.files[VITS_FILE].read_bytes()
    # how far each range got before the source was given up depends on the scheduling; only the gaps are fetched again
    assert 0 < kept < SMALL_SIZE and res.transferred == SMALL_SIZE - kept
    assert not part.exists() and not sidecar.exists()


_PROBE = ("import os, dinovault.files as f; print(hasattr(f.os, 'pwrite'), hasattr(f.os, 'posix_fallocate'), "
          "f.WINDOWS, hasattr(os.stat('.'), 'st_blocks'))")


def test_fetch_pull_import_verify_under_windows(tmp_path, faulty_server, volumes):
    """The invoke tasks as subprocesses (invoke, then dvc), every Python process under the simulation
    (windows_env: a sitecustomize on PYTHONPATH): a segmented fetch and a push, a pull in another clone, then
    verify, and an import of a file downloaded by hand. The repositories are on D:, the torch.hub caches on C:."""
    c, d = volumes
    machine = Machine(d / "machine", {**faulty_server.env, **SEGMENTED}, snapshot_worktree(tmp_path / "source"),
                      DINOVAULT_BACKOFF="0.05", DINOVAULT_TIMEOUT="5", DINOVAULT_RETRIES="1")
    machine.env = windows_env(machine.env, [c, d])
    a = machine.clone("a", torch_home=c / "torch-a")
    assert a.run(sys.executable, "-c", _PROBE).stdout.split() == ["False", "False", "True", "False"]
    a.select()
    a.skip_smoke_test()
    a.invoke("fetch", "--model", "dinov2_vits14")
    assert sum(rec.status == 206 for rec in faulty_server.log) >= 3  # the segmented transfer
    a.commit("fetched")
    a.invoke("push")

    b = machine.clone("b", source=a.path, torch_home=c / "torch-b")
    res = b.invoke("pull")
    weights = b.weights("dinov2_vits14")
    assert weights.read_bytes() == faulty_server.files[VITS_FILE].read_bytes()
    # the torch.hub cache is on C:: no hard link from D: (the simulated Windows error), the pull says so
    assert "not linked into the torch.hub cache" in res.stdout and "to a different disk drive" in res.stdout, res.text
    res = b.invoke("verify")
    assert "ok   models/dinov2/dinov2_vits14.pth" in res.stdout and "all models verified" in res.stdout, res.text

    by_hand = d / "Downloads" / "vitb14 下载.pth"
    by_hand.parent.mkdir()
    by_hand.write_bytes(faulty_server.files["dinov2_vitb14_pretrain.pth"].read_bytes())
    res = b.invoke("import", by_hand)
    assert "pinned sha256 matches" in res.stdout, res.text
    assert (b.torch_cache / "dinov2_vitb14_pretrain.pth").read_bytes() == by_hand.read_bytes()
    assert b.weights("dinov2_vitb14").read_bytes() == by_hand.read_bytes()
    res = b.invoke("verify")
    assert f"ok   {b.torch_cache / 'dinov2_vitb14_pretrain.pth'} (torch.hub cache)" in res.stdout, res.text
    assert "ok   models/dinov2/dinov2_vitb14.pth" in res.stdout and "all models verified" in res.stdout


def test_a_resume_on_a_nearly_full_disk_counts_the_bytes_kept(faulty_server, torch_home_dir, tmpfs, monkeypatch):
    """The free-space check before a download counts what a partial already holds (from its sidecar: Windows has no
    st_blocks): 2.5 MB kept on a 4 MB disk, 0.6 MB still to come, so the download goes on where it stopped."""
    from dinovault.registry import load_registry
    from dinovault.transport.stream import part_paths

    disk = tmpfs("C-small", size="4m")
    for k, v in {**faulty_server.env, "TORCH_HOME": str(disk / "torch")}.items():
        monkeypatch.setenv(k, v)
    data, pin = faulty_server.files[VITS_FILE].read_bytes(), load_registry()[VITS_FILE]
    part, sidecar = part_paths(disk / "torch" / "hub" / "checkpoints" / VITS_FILE)
    part.parent.mkdir(parents=True)
    kept = 2_500_000
    part.write_bytes(data[:kept])
    sidecar.write_text(json.dumps({"url": "http://elsewhere/x", "total": pin.size, "sha256": pin.sha256}))
    with windows_rules(monkeypatch, [disk]):
        res = _fetch()
    assert res.verified and res.cache_path.read_bytes() == data and res.transferred == SMALL_SIZE - kept


def test_a_read_only_damaged_cache_file_is_downloaded_again_under_windows(segmented, volumes, monkeypatch):
    """The torch.hub cache file may be a hard link of a read-only DVC object: a damaged one (same size, one byte
    flipped) is replaced by the new download, which NTFS allows only once the read-only attribute is cleared."""
    good = segmented.files[VITS_FILE].read_bytes()
    cached = volumes[0] / "torch" / "hub" / "checkpoints" / VITS_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(good[:100] + bytes([good[100] ^ 1]) + good[101:])
    os.chmod(cached, stat.S_IREAD)
    with windows_rules(monkeypatch, list(volumes)):
        res = _fetch()
    assert res.verified and res.cache_path == cached and cached.read_bytes() == good
