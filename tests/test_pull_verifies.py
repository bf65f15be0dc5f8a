"""Issue 21 items 2-4, as users meet them: every pull verifies, however the remote was made; damage on the remote is
called damage, whoever deleted it; and bytes that contradict their pin or card are refused by the pull and by the
extractor.

One source clone (``origin``) fetches a DINOv2 and a DINOv3 model (small random files from a loopback server, the
smoke test off; the DINOv3 catalog row carries the served file's hash prefix, as in test_dinov3_pipeline.py) and
pushes them to a folder remote made by `invoke remote --url` (a path with a space). Each test damages or replaces
what it needs on that remote, pulls in a fresh clone with the real `invoke`/`dvc` CLIs, and puts the remote back.
Damage keeps size, mode and modification time (bit rot), unless the test is about a writable object.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from pathlib import Path

import pytest

from dinovault.catalog import get_spec
from dinovault.errors import RemoteError, VerificationError
from tests.support.clones import Machine, snapshot_worktree
from tests.support.httpserver import SMALL_SIZE, random_bytes, start_server, write_registry
from tests.test_hardening_remote_integrity import flip_byte_in_place

VITS, V3 = "dinov2_vits14", "dinov3_vits16"
REAL_PREFIX = get_spec(V3).hash_prefix
RELPATH = {VITS: f"models/dinov2/{VITS}.pth", V3: f"models/dinov3/{V3}.pth"}


def md5(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The two files, served in the official layouts; the registry pins the DINOv2 one (DINOv3: its name's prefix)."""
    base = tmp_path_factory.mktemp("pull_site")
    with start_server(base / "www") as server:
        v2 = server.add(f"dinov2/{get_spec(VITS).upstream_path}", random_bytes(SMALL_SIZE, seed=21))
        data3 = random_bytes(SMALL_SIZE + 77, seed=22)
        server.prefix = hashlib.sha256(data3).hexdigest()[:8]
        server.add(f"dinov3/{get_spec(V3).upstream_path.replace(REAL_PREFIX, server.prefix)}", data3)
        server.registry = write_registry(base / "registry.txt", [v2])
        yield server


@pytest.fixture(scope="module")
def machine(tmp_path_factory, site) -> Machine:
    source = snapshot_worktree(tmp_path_factory.mktemp("source"), prefixes={V3: site.prefix})
    return Machine(tmp_path_factory.mktemp("machine"), {**site.env, "DINOV3_BASE_URL": f"{site.origin}/dinov3",
                                                       "HF_ENDPOINT": "http://127.0.0.1:9"}, source,
                   DINOVAULT_SOURCES="official", DINOVAULT_BACKOFF="0.05", DINOVAULT_TIMEOUT="5", DINOVAULT_RETRIES="1")


@pytest.fixture(scope="module")
def origin(machine):
    """Both models fetched, pushed to `invoke remote --url '<folder with a space>'`, all committed."""
    a = machine.clone("origin")
    a.select()
    a.skip_smoke_test()
    a.invoke("fetch", "--model", VITS, "--model", V3)
    a.folder = machine.base / "team remote"
    a.invoke("remote", "--url", str(a.folder))
    a.invoke("push")
    a.commit("models and the team remote")
    return a


def remote_object(clone, model: str) -> Path:
    good = lock_md5(clone, model)
    return clone.folder / "files" / "md5" / good[:2] / good[2:]


def lock_md5(clone, model: str) -> str:
    stage = f"{'fetch_dinov3' if model == V3 else 'fetch'}@{model}"
    return next(o["md5"] for o in clone.lock()["stages"][stage]["outs"] if o["path"] == RELPATH[model])


@contextlib.contextmanager
def damaged(objects: list[Path], writable: bool = False):
    """One byte flipped in each remote object, size and mtime kept (and its read-only mode, unless ``writable``: a
    NAS or a copy that kept no modes); the good bytes put back afterwards, also where DVC deleted the object."""
    saved = {p: (p.read_bytes(), p.stat()) for p in objects}
    for path in objects:
        flip_byte_in_place(path)
        if writable:
            os.chmod(path, 0o644)
    try:
        yield
    finally:
        for path, (data, st) in saved.items():
            path.unlink(missing_ok=True)
            path.write_bytes(data)
            os.chmod(path, st.st_mode)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def absent_everywhere(clone, model: str, md5sum: str) -> None:
    """Not in the workspace, the DVC cache or the torch.hub cache."""
    assert not (clone.path / RELPATH[model]).exists(), RELPATH[model]
    assert not clone.cache_object(md5sum).exists()
    assert not list(clone.torch_cache.glob(f"{model}_*"))


@pytest.fixture
def in_clone(monkeypatch):
    """In-process calls see a clone's machine: its HOME, DVC folders, TORCH_HOME and registry; cwd in the clone."""

    def enter(clone):
        for key in ("HOME", "DVC_GLOBAL_CONFIG_DIR", "DVC_SYSTEM_CONFIG_DIR", "DVC_SITE_CACHE_DIR", "TORCH_HOME",
                    "DINOVAULT_REGISTRY"):
            monkeypatch.setenv(key, clone.env[key])
        monkeypatch.delenv("DINOVAULT_MODELS_DIR", raising=False)
        monkeypatch.chdir(clone.path)

    return enter


# ------------------------------------------------------------------------------------------------------ item 2


def test_invoke_remote_writes_verify_so_a_plain_dvc_pull_re_hashes_too(origin, machine):
    config = (origin.path / ".dvc" / "config").read_text(encoding="utf-8")
    assert "['remote \"team\"']" in config and origin.dvc("config", "remote.team.verify").stdout.strip() == "true"
    objects = [remote_object(origin, m) for m in (VITS, V3)]
    with damaged(objects):
        b = machine.clone("plain-dvc-pull", source=origin.path)
        res = b.dvc("pull", ok=False)  # DVC's own pull, with the verify = true `invoke remote` wrote
        assert "Checkout failed" in res.text or "failed" in res.text.lower(), res.text
        for model in (VITS, V3):
            absent_everywhere(b, model, lock_md5(origin, model))


def test_invoke_remote_writes_verify_for_an_ssh_remote(origin, ssh_server):
    files = [origin.path / ".dvc" / n for n in ("config", "config.local")]
    saved = {f: f.read_bytes() if f.exists() else None for f in files}
    try:
        origin.invoke("remote", "--url", ssh_server.url("verify-written"), "--keyfile", str(ssh_server.keyfile),
                      "--name", "sshteam", "--no-default")  # probed on the real server
        assert origin.dvc("config", "remote.sshteam.verify").stdout.strip() == "true"
    finally:
        for f, data in saved.items():
            f.unlink(missing_ok=True)
            if data is not None:
                f.write_bytes(data)


def test_a_corrupt_object_is_never_placed_by_invoke_pull(origin, machine):
    """Both families: the pull exits non-zero naming both files as damaged on the remote, and nothing of them is in
    the workspace, the DVC cache or the torch.hub cache."""
    objects = [remote_object(origin, m) for m in (VITS, V3)]
    with damaged(objects):
        b = machine.clone("fresh", source=origin.path)
        res = b.invoke("pull", ok=False)
        line = res.stderr
        assert f"{RELPATH[VITS]}, {RELPATH[V3]} corrupted on the remote" in line, res.text
        assert "invoke verify --remote team, then invoke push" in line and "已损坏" in line, res.text
        for model in (VITS, V3):
            absent_everywhere(b, model, lock_md5(origin, model))


def test_a_remote_made_by_plain_dvc_remote_add_still_verifies(origin, machine, in_clone):
    """`dvc remote add` writes no verify: `invoke pull` re-hashes anyway. A raw `dvc pull` from it does place the
    corrupt bytes (DVC's choice), but the next `invoke pull` and the extractor refuse them."""
    from dinovault.inference.weights import find_weights

    with damaged([remote_object(origin, VITS)]):
        b = machine.clone("plain-remote", source=origin.path)
        b.dvc("remote", "add", "-f", "-d", "plain", str(origin.folder))
        assert b.dvc("config", "remote.plain.verify", ok=None).stdout.strip() in ("", "false")
        res = b.invoke("pull", ok=False)
        assert f"remote 'plain' ({origin.folder}): {RELPATH[VITS]} corrupted on the remote" in res.stderr, res.text
        absent_everywhere(b, VITS, lock_md5(origin, VITS))

        b.dvc("pull")  # DVC without verify: the corrupt bytes are placed, exit 0
        assert md5(b.path / RELPATH[VITS]) != lock_md5(origin, VITS)
        res = b.invoke("pull", ok=False)
        assert f"{RELPATH[VITS]}: does not match dvc.lock" in res.stderr and "verify --repair" in res.stderr, res.text
        in_clone(b)
        with pytest.raises(VerificationError, match=f"{RELPATH[VITS]} is not the official {VITS} .*damaged"):
            find_weights(VITS)


def test_a_pull_from_a_remote_without_verify_says_so(origin, machine):
    c = machine.clone("plain-ok", source=origin.path)
    c.dvc("remote", "add", "-f", "-d", "plain", str(origin.folder))
    res = c.invoke("pull")
    assert "WARNING: remote 'plain' has no `verify = true`" in res.stdout, res.text
    assert "dvc remote modify plain verify true" in res.stdout
    c.dvc("remote", "modify", "plain", "verify", "true")
    assert "verify" not in c.invoke("pull").stdout


def test_damage_found_after_the_pull_is_removed_everywhere(origin, machine, in_clone):
    """Past DVC's check (a pull that did not re-hash): the workspace file, its DVC cache object and the torch.hub
    cache link are unlinked, and the pull is refused as damage on the remote."""
    from dinovault.repo.dvc import open_repo
    from dinovault.repo.integrity import refuse_contradicted
    from dinovault.repo.layout import Layout

    good = lock_md5(origin, VITS)
    with damaged([remote_object(origin, VITS)]):
        b = machine.clone("past-dvc", source=origin.path)
        b.dvc("remote", "add", "-f", "-d", "plain", str(origin.folder))
        b.dvc("pull")  # DVC without verify places the corrupt bytes
    in_clone(b)
    layout = Layout.load(b.path)
    hub = layout.torch_copy(VITS)
    hub.parent.mkdir(parents=True, exist_ok=True)
    os.link(layout.weights(VITS), hub)  # as `invoke pull` links it
    with open_repo(b.path) as repo, pytest.raises(RemoteError, match=f"{RELPATH[VITS]} corrupted on the remote"):
        refuse_contradicted(layout, repo, None, [VITS], {good})
    absent_everywhere(b, VITS, good)


# ------------------------------------------------------------------------------------------------------ item 3


def test_a_corrupt_object_dvc_deletes_from_the_remote_is_called_damage(origin, machine, in_clone):
    """A writable object on a folder remote: DVC re-hashes it while listing, finds it corrupt and deletes it there.
    The pull says damage (not "the remote lacks some files"), and the push it recommends puts good bytes back."""
    obj = remote_object(origin, VITS)
    with damaged([obj], writable=True):
        assert "dinov2_vits14" in origin.invoke("list").stdout
        assert obj.exists()  # `invoke list` asks the remote what it holds without DVC's re-hash that deletes
        b = machine.clone("deleted", source=origin.path)
        res = b.invoke("pull", ok=False)
        assert f"{RELPATH[VITS]} corrupted on the remote" in res.stderr, res.text
        assert "deleted it from the remote" in res.stderr and "lacks" not in res.stderr, res.text
        assert not obj.exists()  # DVC's doing
        absent_everywhere(b, VITS, lock_md5(origin, VITS))
        res = origin.invoke("push")  # what the message says to do, on the machine with intact files
        assert "sent 1 object(s)" in res.stdout, res.text
        assert md5(obj) == lock_md5(origin, VITS)
        b.invoke("pull")
        path = b.path / RELPATH[VITS]
        assert md5(path) == lock_md5(origin, VITS)
    # the pull's check is remembered past its torch.hub link: the extractor does not hash the file again
    from dinovault.cache import read_stamp

    in_clone(b)
    assert path.stat().st_nlink == 3 and read_stamp(path) == hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------------------ item 4


def test_other_bytes_under_an_official_name_are_refused(origin, machine):
    """A teammate replaces both models with fine-tuned files and runs `dvc commit` + `dvc push`: their extractor
    refuses them by name, and everyone else's `invoke pull` refuses them too, placing nothing."""
    f = machine.clone("finetuner", source=origin.path)
    f.invoke("pull")
    for i, model in enumerate((VITS, V3)):
        path = f.path / RELPATH[model]
        path.unlink()  # a new file, as `cp fine-tuned.pth` over DVC's read-only output needs anyway
        path.write_bytes(random_bytes(SMALL_SIZE + i, seed=99))
    f.dvc("commit", "-f")
    f.dvc("push", "-r", "team")
    f.commit("fine-tuned weights under the official names")
    for model in (VITS, V3):
        code = f"from dinovault import DINOv2FeatureExtractor as E; E({model!r}, device='cpu')"
        res = f.run(sys.executable, "-c", code, ok=False)
        assert f"{RELPATH[model]} is not the official {model} (sha256 " in res.stderr, res.text

    g = machine.clone("teammate", source=f.path)
    res = g.invoke("pull", ok=False)
    for model in (VITS, V3):
        assert f"{RELPATH[model]} is not the official {model} (sha256" in res.stderr, res.text
        assert not (g.path / RELPATH[model]).exists()
        assert not list(g.torch_cache.glob(f"{model}_*"))
    assert "removed from the workspace" in res.stderr and "git checkout <commit> dvc.lock" in res.stderr, res.text
    assert "不是官方的" in res.stderr
