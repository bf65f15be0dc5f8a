"""Issue 21 item 9, the smaller holes: a save_dir that is a symbolic link to a bigger disk, a wrong or empty pin
registry, and a closed pipe. The real `invoke`/`dinovault`/`dvc` CLIs in a clone whose path has a space and Chinese
characters, fetching small files from a loopback server (smoke test off).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import pytest

from tests.support.clones import BIN, Clone, Machine, snapshot_worktree
from tests.support.httpserver import SMALL_SIZE, random_bytes, start_server, write_registry

VITS = "dinov2_vits14"
VITS_FILE = "dinov2_vits14_pretrain.pth"
PIPE_CLOSED = 141  # dinovault/cli/output.py


def sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("holes-server")
    with start_server(base / "www") as srv:
        served = srv.add(f"dinov2/{VITS}/{VITS_FILE}", random_bytes(SMALL_SIZE, seed=21))
        srv.registry = write_registry(base / "registry.txt", [served])
        yield srv


@pytest.fixture(scope="module")
def machine(tmp_path_factory, server) -> Machine:
    base = tmp_path_factory.mktemp("holes")
    return Machine(base, server.env, snapshot_worktree(base / "source"), DINOVAULT_REGISTRY=str(server.registry),
                   DINOVAULT_BACKOFF="0.05", DINOVAULT_TIMEOUT="5", DINOVAULT_RETRIES="1")


def fresh(machine: Machine, name: str) -> Clone:
    c = machine.clone(name)
    c.select()
    c.skip_smoke_test()
    c.commit("nothing selected, no smoke test")
    return c


@pytest.fixture(scope="module")
def fetched(machine) -> Clone:
    """dinov2_vits14 fetched and committed, in a clone whose path has a space and Chinese characters."""
    c = fresh(machine, "模型 project")
    c.invoke("fetch", "--model", VITS)
    c.commit("fetched")
    c.pin = sha256(c.weights(VITS))
    return c


def places(c: Clone) -> list:
    return [c.weights(VITS), c.cache_object(c.lock_md5(VITS)), c.torch_cache / VITS_FILE]


def with_env(c: Clone, **env: str | None) -> Clone:
    changed = {**c.env, **{k: v for k, v in env.items() if v is not None}}
    for k in [k for k, v in env.items() if v is None]:
        changed.pop(k, None)
    return Clone(c.path, changed)


# ---------------------------------------------------------------------------------------------- symlinked save_dir


def test_a_symlinked_save_dir_is_refused_before_the_download_and_the_advice_works(machine, server, tmp_path):
    c = fresh(machine, "链接 link")
    big = tmp_path / "大 disk"
    (big / "dinov2").mkdir(parents=True)
    folder = c.path / "models" / "dinov2"
    shutil.move(folder / ".gitignore", big / "dinov2" / ".gitignore")
    folder.rmdir()
    folder.symlink_to(big / "dinov2", target_is_directory=True)
    params, hits = (c.path / "params.yaml").read_bytes(), server.hits(VITS_FILE)

    res = c.invoke("fetch", "--model", VITS, ok=False)
    assert "models/dinov2 is a link to" in res.stderr and "Cannot add files inside symlinked directories" in res.stderr
    assert "dvc cache dir <a folder on that disk whose path is ASCII only" in res.stderr  # DVC's config is ASCII
    assert "its own message is above" not in res.text
    assert "Traceback" not in res.text and "/ " in res.stderr  # English / 中文
    c.select(VITS)  # plain `dvc repro`: the stage's command refuses it before any download, DVC's error follows
    res = c.dvc("repro", ok=False)
    assert "models/dinov2 is a link to" in res.stderr and "is outside of git repository" not in res.text, res.text
    c.select()
    (big / "dinov3").mkdir()  # DINOv3's folder as a link too: refused before its signed link is asked for
    (c.path / "models" / "dinov3").symlink_to(big / "dinov3", target_is_directory=True)
    res = c.invoke("fetch", "--model", "dinov3_vits16", ok=False)
    assert "models/dinov3 is a link to" in res.stderr and "signed" not in res.stderr, res.text
    (c.path / "models" / "dinov3").unlink()
    assert server.hits(VITS_FILE) == hits and (c.path / "params.yaml").read_bytes() == params
    assert sorted(p.name for p in (big / "dinov2").iterdir()) == [".gitignore"]  # nothing left behind
    assert not (c.path / "metrics").exists() and not (c.path / "dvc.lock").exists()
    assert not c.torch_cache.exists() or not list(c.torch_cache.iterdir())

    # the advice: the link removed, DVC's cache (and the torch.hub cache) on the big disk, cache.type symlink
    folder.unlink()
    c.git("checkout", "--", "models")
    c.dvc("cache", "dir", tmp_path / "big disk" / "dvc-cache")
    c.dvc("config", "cache.type", "symlink")
    on_big = with_env(c, TORCH_HOME=str(big / "torch"))
    on_big.invoke("fetch", "--model", VITS)
    assert c.weights(VITS).is_symlink() and c.weights(VITS).resolve().is_relative_to(tmp_path / "big disk")
    assert sha256(c.weights(VITS)) == sha256(server.files[VITS_FILE])
    assert "up to date" in c.dvc("status").stdout
    # a link to the whole repository is fine: commands run through it
    (tmp_path / "repo link").symlink_to(c.path, target_is_directory=True)
    assert "up to date / 已是最新" in on_big.invoke("fetch", cwd=tmp_path / "repo link").stdout


def test_a_stage_failure_says_its_own_message_is_above_only_when_its_command_printed_one():
    from dvc.exceptions import ReproductionError
    from dvc.scm import SCMError
    from dvc.stage.exceptions import StageCmdFailedError

    from dinovault.repo.dvc import explain

    def raised(err, cause):
        try:
            raise err from cause
        except ReproductionError as got:
            return got

    refused = raised(ReproductionError("failed to reproduce 'fetch@x'"),
                     SCMError("'/r/models/x.pth' is outside of git repository '/r'"))
    said = explain(refused, "fetch x")
    assert "its own message is above" not in str(said) and "详见上方" not in str(said)
    assert "is outside of git repository '/r' (SCMError)" in said.message and " / " in said.message
    failed = raised(ReproductionError("failed to reproduce 'fetch@x'"), StageCmdFailedError("python x.py", 1))
    assert "its own message is above" in explain(failed, "fetch x").message


# ---------------------------------------------------------------------------------------------- registry problems


def test_a_wrong_registry_is_blamed_and_repair_removes_no_good_byte(fetched, server, tmp_path):
    c, hits = fetched, server.hits(VITS_FILE)
    wrong = tmp_path / "注册 表.txt"
    good_line = server.registry.read_text().splitlines()[1]
    wrong.write_text("# a copy edited by hand\n" + good_line[:-64] + "0" * 64 + "\n", encoding="utf-8")
    w = with_env(c, DINOVAULT_REGISTRY=str(wrong))
    inode = c.weights(VITS).stat().st_ino

    res = w.invoke("verify", ok=False)
    assert f"{wrong}:2 pins sha256:{'0' * 64}" in res.text and "the registry is the suspect" in res.text, res.text
    assert f"fix or remove the line of {VITS_FILE} in {wrong}" in res.stderr, res.text
    assert "unset DINOVAULT_REGISTRY" in res.stderr
    assert "--repair" not in res.stderr and "Traceback" not in res.text
    res = w.invoke("fetch", ok=False)  # up to date: the report's check blames the registry, not the file
    assert "the registry is the suspect" in res.stderr and "repair it" not in res.stderr, res.text

    # a separate torch.hub copy really damaged (one byte, size and mtime kept) beside the intact workspace file
    torch_copy = c.torch_cache / VITS_FILE
    data = bytearray(torch_copy.read_bytes())
    data[4000] ^= 0xFF
    st = torch_copy.stat()
    torch_copy.unlink()
    torch_copy.write_bytes(bytes(data))
    os.utime(torch_copy, ns=(st.st_atime_ns, st.st_mtime_ns))
    res = w.invoke("verify", ok=False)
    assert f"FAIL {torch_copy} (torch.hub cache): md5" in res.text and "verify --repair" in res.stderr, res.text

    res = w.invoke("verify", "--repair", ok=False)  # repaired towards what was verified when fetched, not the pin
    assert f"repaired {VITS} from the intact workspace copy" in res.text and "the registry is the suspect" in res.text
    assert [sha256(p) for p in places(c)] == [c.pin] * 3 and {p.stat().st_ino for p in places(c)} == {inode}
    assert server.hits(VITS_FILE) == hits and not list(c.torch_cache.glob("*.part*"))
    assert "all models verified" in c.invoke("verify").stdout  # under the right registry: nothing was harmed


def test_an_empty_registry_is_blamed_and_nothing_is_called_corrupt(fetched, server, tmp_path):
    c, hits = fetched, server.hits(VITS_FILE)
    empty = tmp_path / "空 registry.txt"
    empty.write_text("# no pins\n", encoding="utf-8")
    e = with_env(c, DINOVAULT_REGISTRY=None, DINOV2_REGISTRY=str(empty))  # the old variable name
    inodes = [p.stat().st_ino for p in places(c)]

    for args in (("verify",), ("verify", "--repair")):
        res = e.invoke(*args, ok=False)
        assert f"{empty} has no pin for {VITS_FILE}" in res.text and "nothing is damaged" in res.stderr, res.text
        assert "repaired" not in res.text and "--repair" not in res.stderr and "Traceback" not in res.text
    res = e.invoke("fetch", ok=False)
    assert f"{empty} has no pin for {VITS_FILE}" in res.stderr and "repair it" not in res.stderr, res.text
    assert [p.stat().st_ino for p in places(c)] == inodes and [sha256(p) for p in places(c)] == [c.pin] * 3
    assert server.hits(VITS_FILE) == hits and not list(c.torch_cache.glob("*.part*"))


# ---------------------------------------------------------------------------------------------- closed pipes


# (`dinovault --help` needs nothing: argparse itself ignores a failed write, and exits 0)
COMMANDS = [(BIN / "dinovault", "list"), (BIN / "invoke", "list"), (BIN / "invoke", "--list"),
            (BIN / "dinovault", "status")]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda cmd: " ".join(str(a).rsplit("/", 1)[-1] for a in cmd))
def test_a_closed_pipe_ends_quietly(fetched, cmd):
    """`… | head -0`: the reader is gone before the first line (what `| head -1` is for every line after its
    first), so the first write fails: no traceback, exit 141 as a shell reports a writer cut off by SIGPIPE."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([str(a) for a in cmd], cwd=fetched.path, env=fetched.env, stdout=write,
                              stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, timeout=120)
    finally:
        os.close(write)
    assert proc.returncode == PIPE_CLOSED, proc.stderr
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr and "Exception ignored" not in proc.stderr


@pytest.mark.parametrize("cmd", COMMANDS[:2], ids=["dinovault list", "invoke list"])
def test_head_1_reads_one_line_and_the_rest_ends_quietly(fetched, cmd):
    proc = subprocess.Popen([str(a) for a in cmd], cwd=fetched.path, env=fetched.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    first = proc.stdout.readline()
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert first.split()[:2] == ["model", "dim"]
    assert proc.returncode in (0, PIPE_CLOSED) and "Traceback" not in err and "BrokenPipe" not in err, err
