"""State after recovery: a fresh clone sharing a TORCH_HOME that holds the files verifies; after `rm -rf .dvc/cache`,
`invoke verify --repair` puts every output back in the cache (cards and export folders too), so `dvc status` is clean
and `invoke push` works; with TORCH_HOME on another file system, a repair makes one copy (workspace and DVC cache
linked) and a pull says that the torch.hub cache could not be linked. Real `invoke`/`dvc` CLIs, a local remote, the
small files of ``faulty_server``; the other file system is a tmpfs (root only, skipped elsewhere).
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.support.clones import Clone, Machine, snapshot_worktree

VITS = "dinov2_vits14"
VITS_FILE = "dinov2_vits14_pretrain.pth"


@pytest.fixture
def machine(tmp_path, faulty_server) -> Machine:
    return Machine(tmp_path / "machine", faulty_server.env, snapshot_worktree(tmp_path / "source"),
                   DINOVAULT_BACKOFF="0.05", DINOVAULT_TIMEOUT="5", DINOVAULT_RETRIES="1")


def fetched(machine: Machine, name: str, **kw) -> Clone:
    c = machine.clone(name, **kw)
    c.select()
    c.skip_smoke_test()
    c.invoke("fetch", "--model", VITS)
    c.commit("fetched")
    return c


@pytest.fixture
def other_fs(tmpfs):
    """Another file system (a 64 MiB tmpfs)."""
    return tmpfs("otherfs", "64m")


def test_shared_torch_home_and_a_lost_dvc_cache(machine):
    a = fetched(machine, "a")
    # a fresh clone on the same machine, sharing TORCH_HOME: the same model selected, nothing fetched here
    b = machine.clone("b", torch_home=a.torch_cache.parents[1])
    b.select(VITS)
    res = b.invoke("verify")
    assert "not recorded in dvc.lock" not in res.text and f"ok   {a.torch_cache / VITS_FILE}" in res.stdout, res.text

    shutil.rmtree(a.path / ".dvc" / "cache")
    res = a.invoke("verify", "--repair")
    assert f"repaired fetch@{VITS} from the workspace" in res.stdout, res.text
    assert "up to date" in a.dvc("status").stdout
    res = a.invoke("push")
    assert "sent 3 object(s)" in res.stdout, res.text  # weights, card, the empty export folders (one listing)


def test_torch_home_on_another_file_system(machine, other_fs):
    a = fetched(machine, "a", torch_home=other_fs / "torch")
    weights, torch_copy = a.weights(VITS), a.torch_cache / VITS_FILE
    obj = a.cache_object(a.lock_md5(VITS))
    assert torch_copy.is_file() and os.stat(weights).st_dev != os.stat(torch_copy).st_dev
    # the workspace inode (also the DVC cache object) damaged; the torch.hub copy on the other disk is intact
    weights.unlink()
    obj.chmod(0o644)
    obj.write_bytes(b"damaged")
    a.invoke("verify", "--repair")
    assert os.stat(weights).st_ino == os.stat(obj).st_ino and os.stat(weights).st_nlink == 2  # one copy, linked
    a.invoke("verify")
    a.invoke("push")

    b = machine.clone("b", source=a.path, torch_home=other_fs / "torch-b")
    res = b.invoke("pull")
    assert f"WARNING: {VITS_FILE} not linked into the torch.hub cache" in res.stdout, res.text
    assert "Invalid cross-device link" in res.stdout
