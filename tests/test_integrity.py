"""Integrity under tampering, and the traps a newcomer falls into (issue 9), with the real `dvc` CLI and `invoke`
tasks in temporary git clones fetching from the loopback test server.

The workspace file, the DVC cache object and the torch.hub copy are one inode, so one byte written through any of
them damages all three. Tampering here writes through the link, as an editor or a script running as root would.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.clones import Clone, Machine, copy_worktree, snapshot_worktree

VITS = "dinov2_vits14"
VITS_FILE = "dinov2_vits14_pretrain.pth"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def places(c: Clone) -> list[Path]:
    """The workspace file, the DVC cache object and the torch.hub copy of dinov2_vits14."""
    return [c.weights(VITS), c.cache_object(c.lock_md5(VITS)), c.torch_cache / VITS_FILE]


def flip_byte(path: Path, offset: int, keep_mtime: bool = False) -> None:
    """Change one byte in place (through every hard link), keeping the size and, if asked, setting the mtime back."""
    st = path.stat()
    os.chmod(path, 0o644)
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))
    os.chmod(path, st.st_mode)
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def requests_to(server) -> int:
    return sum(server.requests.values())


@pytest.fixture(scope="module")
def machine(tmp_path_factory, dinov2_server) -> Machine:
    base = tmp_path_factory.mktemp("integrity")
    source = snapshot_worktree(base / "source", smoke_test=False)  # the subject is the bytes
    return Machine(base, dinov2_server.env, source, DINOVAULT_BACKOFF="0.05", DINOVAULT_TIMEOUT="5")


@pytest.fixture(scope="module")
def pushed(machine) -> Clone:
    """dinov2_vits14 fetched, committed and pushed to the default remote (a second physical copy)."""
    a = machine.clone("a")
    a.select(VITS)
    a.invoke("fetch", "--model", VITS)
    a.commit("fetched")
    a.invoke("push")
    a.pin = sha256(a.weights(VITS))
    return a


def assert_one_good_copy(c: Clone, pin: str) -> None:
    paths = places(c)
    assert [sha256(p) for p in paths] == [pin] * 3
    assert md5(paths[0]) == c.lock_md5(VITS)
    assert len({p.stat().st_ino for p in paths}) == 1 and paths[0].stat().st_nlink == 3


def test_damaged_file_is_named_never_pushed_and_repaired_from_the_remote(pushed, tmp_path):
    a = pushed
    flip_byte(a.weights(VITS), 5000)
    assert all(sha256(p) != a.pin for p in places(a))  # one inode: all three are damaged

    res = a.invoke("verify", ok=False)
    assert "FAIL models/dinov2/dinov2_vits14.pth" in res.text
    assert f"{a.torch_cache / VITS_FILE} (torch.hub cache)" in res.text and "(DVC cache)" in res.text
    assert res.stderr.strip().splitlines()[-1].endswith("invoke verify --repair"), res.stderr

    empty = tmp_path / "empty-remote"
    a.dvc("remote", "add", "--local", "empty", empty)
    res = a.invoke("push", "--remote", "empty", ok=False)
    assert "push refused: models/dinov2/dinov2_vits14.pth" in res.stderr and "invoke verify --repair" in res.stderr
    assert "Traceback" not in res.text
    assert not empty.exists() or not [p for p in empty.rglob("*") if p.is_file()]  # nothing wrong landed there

    res = a.invoke("verify", "--repair")
    assert f"repaired {VITS} from remote 'home'" in res.text and "all models verified" in res.text, res.text
    assert_one_good_copy(a, a.pin)
    assert "up to date" in a.dvc("status").stdout
    a.invoke("push", "--remote", "empty")  # now the good bytes go
    sent = [p for p in (empty / "files" / "md5").rglob("*") if p.is_file()]
    assert sent and all(md5(p) == p.parent.name + p.name.removesuffix(".dir") for p in sent)


def test_torch_copy_tampered_with_its_mtime_set_back_is_caught_and_repaired_from_the_sources(
    machine, pushed, dinov2_server, tmp_path
):
    b = machine.clone("b", source=pushed.path)
    b.invoke("pull")
    torch_copy = b.torch_cache / VITS_FILE
    flip_byte(torch_copy, 7000, keep_mtime=True)  # size, mtime and inode unchanged: DVC's own state sees nothing

    res = b.invoke("fetch", ok=False)  # the report re-checks the file (its stamp includes the ctime)
    assert "invoke verify --repair" in res.stderr and "sha256:" not in res.stdout, res.text
    res = b.invoke("verify", ok=False)
    assert f"FAIL {torch_copy} (torch.hub cache)" in res.text

    b.dvc("remote", "modify", "--local", "home", "url", tmp_path / "no-such-remote")  # no good copy there
    before = requests_to(dinov2_server)
    res = b.invoke("verify", "--repair")
    assert f"repaired {VITS} from http://127.0.0.1" in res.text and requests_to(dinov2_server) > before, res.text
    assert_one_good_copy(b, pushed.pin)
    assert "up to date / 已是最新" in b.invoke("fetch").stdout


# ---------------------------------------------------------------------------------------------- newcomer traps


def test_save_dir_outside_the_repository_fails_before_anything_is_written(machine, dinov2_server):
    c = machine.clone("outside")
    params = c.path / "params.yaml"
    params.write_text(params.read_text().replace("save_dir: models/dinov2", "save_dir: ../elsewhere"))
    line = next(i for i, text in enumerate(params.read_text().splitlines(), 1) if text.startswith("save_dir"))
    before = requests_to(dinov2_server)
    for run in ((c.invoke, "fetch", "--model", VITS), (c.dvc, "repro")):
        res = run[0](*run[1:], ok=False)
        assert f"params.yaml:{line}: save_dir '../elsewhere' must be a relative path inside the repository" in res.text
        assert "Traceback" not in res.text
    assert requests_to(dinov2_server) == before
    assert not (c.path.parent / "elsewhere").exists() and not c.torch_cache.exists()


def test_weights_never_reach_git_after_the_folder_is_deleted(pushed):
    a = pushed
    for restore in (("dvc", "checkout"), ("dvc", "repro"), ("invoke", "fetch")):
        shutil.rmtree(a.path / "models" / "dinov2")
        res = (a.dvc if restore[0] == "dvc" else a.invoke)(*restore[1:])
        assert a.weights(VITS).is_file()
        if restore[0] == "invoke":  # a stage skipped as cached says so
            assert "restored from DVC's run cache, not run again" in res.stdout, res.text
        status = a.git("status", "--porcelain", "--untracked-files=all").stdout
        assert not [ln for ln in status.splitlines() if ln.endswith((".pth", ".json"))], (restore, status)
        assert not [ln for ln in a.git("add", "-A", "--dry-run").stdout.splitlines() if ln.endswith((".pth", "json"))]
        a.git("checkout", "--", "models")  # DVC may rewrite the folder's .gitignore: keep the tracked one


def test_the_test_harness_ignores_a_committed_dvc_lock(machine, tmp_path):
    """The README's 'record and share' commit puts dvc.lock and metrics in git; the suite's clones still start
    fresh."""
    user = snapshot_worktree(tmp_path / "user")
    (user / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    (user / "metrics").mkdir()
    (user / "metrics" / f"{VITS}.json").write_text("{}\n")
    subprocess.run(["git", "add", "-A"], cwd=user, check=True, env=machine.env)
    subprocess.run(["git", "commit", "-qm", "models"], cwd=user, check=True, env=machine.env)
    copy = copy_worktree(tmp_path / "copy", root=user)
    assert (copy / "dvc.yaml").is_file() and (copy / "models" / "dinov2" / ".gitignore").is_file()
    assert not (copy / "dvc.lock").exists() and not (copy / "metrics").exists()


def test_allow_unverified_fetches_a_model_without_a_pin(machine, dinov2_server, tmp_path):
    registry = tmp_path / "empty-registry.txt"
    registry.write_text("# nothing pinned\n")
    d = machine.clone("unpinned", extra_env={"DINOVAULT_REGISTRY": str(registry)})
    res = d.invoke("fetch", "--model", VITS, ok=False)
    assert "has no pinned SHA-256" in res.stderr and "--allow-unverified" in res.stderr
    res = d.invoke("fetch", "--model", VITS, "--allow-unverified")
    assert f"UNVERIFIED (no pin) sha256:{hashlib.sha256(d.weights(VITS).read_bytes()).hexdigest()}" in res.stdout
    assert '"verified": false' in (d.path / "models" / "dinov2" / f"{VITS}.json").read_text()


def test_a_model_selected_but_never_fetched_is_named_once(pushed):
    a = pushed
    params = a.path / "params.yaml"
    before = params.read_bytes()
    a.select(VITS, "dinov2_vitb14")
    try:
        for task in ("push", "status"):
            res = a.invoke(task)
            assert "missing version info" not in res.text and "dvc repro" not in res.text, res.text
            assert res.text.count("dinov2_vitb14: not fetched yet") == 1, res.text
    finally:
        params.write_bytes(before)
