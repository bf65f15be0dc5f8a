"""Team remotes against real servers on 127.0.0.1 (issue 5): Ceph RGW (S3), OpenSSH (SFTP) and wsgidav (WebDAV).

Clone A fetches dinov2_vits14 from the test server and also tracks ``data/extra`` (8 random files), so that a push is
several objects and "part of it arrived" means something. For each remote: `invoke remote` + `invoke push` in A; a
second clone B with empty DVC and torch caches gets byte-identical files with `invoke pull` and `invoke verify`
passes. Wrong credentials are refused with one clear line. A push whose server is stopped half-way fails clearly, and
the rerun sends only what had not arrived: objects already on the server keep their server-side stamp (mtime and
inode for files, ETag and Last-Modified for S3), and the summary counts exactly the missing ones.

The push is frozen (SIGSTOP) as soon as two objects are complete on the server, the server is stopped, then the push
resumes (SIGCONT) into a dead server: "stopped in the middle" without depending on timing.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.clones import BIN, Clone, Machine, snapshot_worktree
from tests.support.servers import S3_OTHER_KEYS, S3Server, ServerUnavailable, SSHServer, _boot, free_port
from tests.support.wan import WanProxy

VITS = "dinov2_vits14"
EXTRA = [f"part-{i}.bin" for i in range(8)]
EXTRA_SIZE = 4 * 2**20
KINDS = ("s3", "ssh", "webdav")


# ----------------------------------------------------------------------------------------------------- clones


class RemoteClone(Clone):
    """A clone with a 300 s limit per command, the duration of each shown, and what a push concerns."""

    timeout = 300
    log_times = True

    def popen_invoke(self, *args, env: dict | None = None) -> subprocess.Popen:
        return subprocess.Popen([str(BIN / "invoke"), *map(str, args)], cwd=self.path, env={**self.env, **(env or {})},
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)  # its own process group, to freeze it as a whole

    def tracked_files(self) -> list[Path]:
        return [self.weights(VITS), *(self.path / "data" / "extra" / n for n in EXTRA)]

    def cache_objects(self) -> dict[str, int]:
        """md5 → size of every object the workspace uses (what `dvc push` sends; the .dir object included)."""
        from dvc.repo import Repo

        with Repo(str(self.path)) as repo:
            used = set().union(*repo.used_objs().values())
            return {hi.value: os.path.getsize(repo.cache.local.oid_to_path(hi.value)) for hi in used}


@pytest.fixture(scope="module")
def machine(tmp_path_factory, dinov2_server) -> Machine:
    """An isolated HOME and DVC config folders, and a git repository of this checkout to clone from."""
    base = tmp_path_factory.mktemp("remotes")
    source = snapshot_worktree(base / "source", smoke_test=False)  # the subject is the remotes
    return Machine(base, dinov2_server.env, source, clone_class=RemoteClone)


@pytest.fixture(scope="module")
def clone_a(machine) -> RemoteClone:
    """dinov2_vits14 fetched (the only selected model) plus data/extra tracked with `dvc add`, committed."""
    a = machine.clone("a")
    a.select(VITS)
    a.invoke("fetch", "--model", VITS)
    extra = a.path / "data" / "extra"
    extra.mkdir(parents=True)
    for i, name in enumerate(EXTRA):
        (extra / name).write_bytes(os.urandom(EXTRA_SIZE - i))
    a.dvc("add", "-q", "data/extra")
    a.commit("fetched dinov2_vits14 and extra data")
    return a


@pytest.fixture
def restore_config(clone_a):
    """Tests that add throwaway remotes to clone A leave its DVC config as they found it."""
    files = [clone_a.path / ".dvc" / n for n in ("config", "config.local")]
    saved = {f: f.read_bytes() if f.exists() else None for f in files}
    yield
    for f, data in saved.items():
        if data is None:
            f.unlink(missing_ok=True)
        else:
            f.write_bytes(data)


# ---------------------------------------------------------------------------------------------------- targets


class Target:
    """One server seen as a DVC remote: URLs and options for `invoke remote`, and what it holds server-side."""

    def __init__(self, kind: str, server):
        self.kind, self.server = kind, server

    def url(self, place: str) -> str:
        if self.kind == "s3":
            return f"s3://{place}/dvc"
        return self.server.url(place)

    def options(self, wrong: bool = False) -> list[str]:
        s = self.server
        if isinstance(s, S3Server):
            return ["--endpoint-url", s.endpoint, "--access-key-id", s.access_key,
                    "--secret-access-key", "not-the-secret" if wrong else s.secret_key]
        if isinstance(s, SSHServer):
            return ["--keyfile", str(s.wrong_keyfile if wrong else s.keyfile)]
        return ["--user", s.user, "--password", "not-the-password" if wrong else s.password]

    def secrets(self) -> list[str]:
        s = self.server
        if isinstance(s, S3Server):
            return [s.access_key, s.secret_key]
        if isinstance(s, SSHServer):
            return [str(s.keyfile)]
        return [s.password]

    def objects(self, place: str) -> dict[str, tuple[int, object]]:
        """md5 → (size, stamp) of the DVC objects the server holds under ``place``; the stamp changes on rewrite."""
        if isinstance(self.server, S3Server):
            found = self.server.objects(place, "dvc/files/md5/")
            return {k.split("/")[-2] + k.split("/")[-1]: v for k, v in found.items()}
        base = self.server.data / place / "files" / "md5"
        out = {}
        for p in base.glob("*/*"):
            if p.name.startswith("."):  # an SFTP upload still under its temporary name
                continue
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            out[p.parent.name + p.name] = (st.st_size, (st.st_mtime_ns, st.st_ino))
        return out

    def read(self, place: str, md5: str) -> bytes:
        if isinstance(self.server, S3Server):
            key = f"dvc/files/md5/{md5[:2]}/{md5[2:]}"
            return self.server.client().get_object(Bucket=place, Key=key)["Body"].read()
        return (self.server.data / place / "files" / "md5" / md5[:2] / md5[2:]).read_bytes()


@pytest.fixture(params=KINDS)
def target(request) -> Target:
    return Target(request.param, request.getfixturevalue(f"{request.param}_server"))


def _place(target: Target, name: str) -> str:
    """A fresh bucket (S3) or folder for one test."""
    return f"dv-{name}-{target.kind}-{time.monotonic_ns() % 10**10}"


def _content_md5(path_or_bytes) -> str:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    return hashlib.md5(data).hexdigest()


def _one_error_line(res) -> str:
    assert "Traceback" not in res.text, res.text
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, res.text
    return lines[0]


# ------------------------------------------------------------------------------------------------------ tests


def test_round_trip_through_the_remote(target, clone_a, machine):
    a = clone_a
    place = _place(target, "rt")
    res = a.invoke("remote", "--url", target.url(place), *target.options())
    assert "probe OK" in res.text
    config = (a.path / ".dvc" / "config").read_text()
    local = (a.path / ".dvc" / "config.local").read_text()
    assert target.url(place) in config and "remote = team" in config
    for secret in target.secrets():
        assert secret not in config, f"{secret} leaked into the tracked .dvc/config"
        assert secret in local
    a.git("check-ignore", "-q", ".dvc/config.local")

    res = a.invoke("push")
    wanted = a.cache_objects()
    assert f"sent {len(wanted)} object(s)" in res.text, res.text
    assert {k: v[0] for k, v in target.objects(place).items()} == wanted
    assert "sent 0 object(s)" in a.invoke("push").text
    a.git("commit", "-q", "-am", f"team remote on {target.kind}")

    b = machine.clone(f"b-{target.kind}", source=a.path)
    assert not (b.path / ".dvc" / "cache").exists() and not Path(b.env["TORCH_HOME"]).exists()
    b.invoke("remote", "--url", target.url(place), *target.options())  # a teammate adds their own credentials
    assert b.git("status", "--porcelain").stdout == "", "re-adding the same remote changed a tracked file"
    res = b.invoke("pull")
    assert f"received {len(wanted)} object(s)" in res.text, res.text
    for mine, theirs in zip(b.tracked_files(), a.tracked_files(), strict=True):
        assert mine.read_bytes() == theirs.read_bytes(), mine
    b.invoke("verify")


def test_a_tampered_s3_object_is_never_placed(s3_server, clone_a, machine, restore_config):
    """S3 objects come by boto3's transfer manager, not DVC: each must still be checked before it is placed."""
    a, target = clone_a, Target("s3", s3_server)
    place = _place(target, "tamper")
    a.invoke("remote", "--url", target.url(place), "--name", "t", "--no-default", *target.options())
    a.invoke("push", "--remote", "t")
    md5 = a.lock_md5(VITS)
    key = f"dvc/files/md5/{md5[:2]}/{md5[2:]}"
    data = bytearray(s3_server.client().get_object(Bucket=place, Key=key)["Body"].read())
    data[1000] ^= 0xFF
    s3_server.client().put_object(Bucket=place, Key=key, Body=bytes(data))

    c = machine.clone("tampered-s3", source=a.path)
    c.invoke("remote", "--url", target.url(place), "--name", "t", "--no-default", *target.options())
    res = c.invoke("pull", "--remote", "t", "--retries", "0", ok=False)
    line = _one_error_line(res)
    assert "corrupted on the remote" in line and "已损坏" in line, line
    assert not c.weights(VITS).exists()
    cache = c.path / ".dvc" / "cache"
    assert not (cache / "files" / "md5" / md5[:2] / md5[2:]).exists()
    assert not [p for p in cache.rglob(".*") if p.is_file()], "a temporary download was left in the cache"


def test_wrong_credentials_are_refused_clearly(target, clone_a, restore_config):
    a = clone_a
    place = _place(target, "cred")
    config = {n: (a.path / ".dvc" / n).read_bytes() for n in ("config", "config.local")}
    res = a.invoke("remote", "--url", target.url(place), "--name", "bad", "--no-default", *target.options(True),
                   ok=False)
    line = _one_error_line(res)
    assert "wrong or missing credentials" in line and "凭据" in line and "'bad'" in line, line
    assert {n: (a.path / ".dvc" / n).read_bytes() for n in config} == config, "a refused remote was left configured"

    # configured without the probe, the push itself is refused with the same clear line
    a.invoke("remote", "--url", target.url(place), "--name", "bad", "--no-default", "--no-check",
             *target.options(True))
    for task in ("push", "pull"):
        line = _one_error_line(a.invoke(task, "--remote", "bad", "--retries", "0", ok=False))
        assert "wrong or missing credentials" in line and "凭据" in line, line


def _complete(target: Target, place: str, wanted: dict[str, int]) -> dict[str, tuple[int, object]]:
    return {k: v for k, v in target.objects(place).items() if wanted.get(k) == v[0]}


def _frozen_push(a: RemoteClone, target: Target, tag: str, *push_args, env=None):
    """A push to a fresh remote 'flaky', frozen (SIGSTOP) once two objects are complete on the server.

    For WebDAV it also waits for an upload in flight (a file still short of its size), so that the stop cuts a
    transfer rather than falling between two. A push quick enough to finish before that is tried again on a fresh
    remote (up to 3 times). Returns (place, proc, complete objects, the short ones).
    """
    wanted = a.cache_objects()
    for _ in range(3):
        place = _place(target, tag)
        a.invoke("remote", "--url", target.url(place), "--name", "flaky", "--no-default", *target.options())
        proc = a.popen_invoke("push", "--remote", "flaky", "--jobs", "2", *push_args, env=env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            seen = target.objects(place)
            done = sum(wanted.get(k) == v[0] for k, v in seen.items())
            short = any(k in wanted and v[0] < wanted[k] for k, v in seen.items())
            if done >= 2 and (short or target.kind != "webdav"):
                os.killpg(proc.pid, signal.SIGSTOP)
                seen = target.objects(place)
                arrived = {k: v for k, v in seen.items() if wanted.get(k) == v[0]}
                if len(arrived) < len(wanted):
                    return place, proc, arrived, {k for k in seen if k in wanted and k not in arrived}
                os.killpg(proc.pid, signal.SIGCONT)
                break
            time.sleep(0.003)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
    pytest.fail("three pushes ended before they could be interrupted; use bigger data")


def test_push_interrupted_by_a_stopped_server_resumes(target, clone_a, restore_config):
    a = clone_a
    wanted = a.cache_objects()
    # botocore retries each request 4 times with backoff against a dead endpoint (~5 s per object); one retry
    # keeps this test short and changes nothing else
    env = {"AWS_MAX_ATTEMPTS": "2"} if target.kind == "s3" else None
    place, proc, arrived, truncated = _frozen_push(a, target, "cut", "--retries", "0", env=env)
    if target.kind != "webdav":  # S3 and dvc-ssh upload under a temporary name, so nothing is ever half there
        assert not truncated
    target.server.stop()
    try:
        os.killpg(proc.pid, signal.SIGCONT)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode != 0, out
        assert "Traceback" not in out, out
        errors = [ln for ln in out.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and re.search(r"connection (refused|lost)", errors[0]) and "连接" in errors[0], out
    finally:
        target.server.start()

    before = _complete(target, place, wanted)
    assert set(arrived) <= set(before)
    res = a.invoke("push", "--remote", "flaky", "--retries", "0")
    missing = len(wanted) - len(before)
    assert f"sent {missing} object(s)" in res.text and f"{len(before)} already there" in res.text, res.text
    if truncated - set(before):  # a WebDAV PUT cut short leaves a short file under the object's name
        assert "truncated object(s) sent again" in res.text, res.text
    after = target.objects(place)
    for md5, (size, stamp) in before.items():
        assert after[md5] == (size, stamp), f"{md5} was sent again although it had arrived"
    assert {k: v[0] for k, v in after.items()} == wanted
    for md5 in wanted:
        data = target.read(place, md5)
        assert md5.endswith(".dir") or _content_md5(data) == md5, f"{md5} on the server is not the object"


def test_a_damaged_file_is_never_pushed(target, machine):
    """One flipped byte in the workspace file (the same inode as the DVC cache object): the push is refused naming it
    and the repair command, and the remote holds nothing with that object's name (S3: re-hashed while it is read for
    the upload, so the multipart upload is aborted; SSH and WebDAV: re-hashed before anything is sent)."""
    c = machine.clone(f"damaged-{target.kind}")
    c.select(VITS)
    c.invoke("fetch", "--model", VITS)
    path = c.weights(VITS)
    mode = path.stat().st_mode
    os.chmod(path, 0o644)
    with open(path, "r+b") as fh:  # in place on purpose: the damage reaches every hard link, as on a failing disk
        fh.seek(4096)
        byte = fh.read(1)
        fh.seek(4096)
        fh.write(bytes([byte[0] ^ 0xFF]))
    os.chmod(path, mode)  # read-only as DVC left it: a failing disk changes bytes, not modes
    place = _place(target, "dmg")
    c.invoke("remote", "--url", target.url(place), *target.options())
    res = c.invoke("push", ok=False)
    line = _one_error_line(res)
    assert f"push refused: models/dinov2/{VITS}.pth" in line and "invoke verify --repair" in res.stderr, res.text
    assert c.lock_md5(VITS) not in target.objects(place)
    if target.kind == "s3":
        assert not target.server.client().list_multipart_uploads(Bucket=place).get("Uploads")


@pytest.mark.parametrize("kind", ["ssh", "webdav"])
def test_push_retries_over_a_server_restart(kind, request, clone_a, restore_config):
    """The server goes down and comes back during a push: the push retries by itself and completes."""
    target = Target(kind, request.getfixturevalue(f"{kind}_server"))
    a = clone_a
    wanted = a.cache_objects()
    place, proc, arrived, _ = _frozen_push(a, target, "retry")
    target.server.stop()
    target.server.start()
    os.killpg(proc.pid, signal.SIGCONT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "retrying in" in out and "2 attempts" in out, out
    after = target.objects(place)
    assert {k: v[0] for k, v in after.items()} == wanted
    for md5, (size, stamp) in arrived.items():
        assert after[md5] == (size, stamp)


def test_remote_url_and_options_are_checked(clone_a, restore_config):
    """Mistakes in `invoke remote` that need no server: one clear line, nothing written."""
    a = clone_a
    config = (a.path / ".dvc" / "config").read_bytes()
    cases = [
        (["--url", "ftp://host/x"], "unsupported scheme"),
        (["--url", "webdav://me:pw@host/x"], "contains a password"),
        (["--url", "s3://B/x"], "not a valid bucket name"),
        (["--url", "ssh://host/x", "--endpoint-url", "http://h:1"], "--endpoint-url do(es) not apply"),
        (["--url", "s3://bucket-ok/x", "--access-key-id", "k"], "give both --access-key-id and --secret-access-key"),
        (["--url", "ssh://127.0.0.1/x", "--keyfile", "/nonexistent/key"], "does not exist"),
    ]
    for args, expected in cases:
        line = _one_error_line(a.invoke("remote", *args, ok=False))
        assert expected in line, line
    assert (a.path / ".dvc" / "config").read_bytes() == config


def test_unknown_host_and_refused_connection_are_told_apart(clone_a, restore_config):
    a = clone_a
    line = _one_error_line(a.invoke("remote", "--url", "webdav://no-such-host.invalid/dvc", "--name", "x", ok=False))
    assert "unknown host" in line and "主机名" in line, line
    port = free_port()
    line = _one_error_line(a.invoke("remote", "--url", f"webdav://127.0.0.1:{port}/dvc", "--name", "x", ok=False))
    assert "connection refused" in line and f"127.0.0.1:{port}" in line, line


def test_missing_permission_is_told(s3_server, clone_a, restore_config):
    """Valid credentials of a user who may not write the bucket: 'permission denied', not a credentials error."""
    bucket = s3_server.create_bucket(f"dv-owned-{int(time.monotonic() * 1000) % 10**8}")
    key, secret = S3_OTHER_KEYS
    res = clone_a.invoke("remote", "--url", f"s3://{bucket}/dvc", "--name", "x", "--endpoint-url", s3_server.endpoint,
                         "--access-key-id", key, "--secret-access-key", secret, ok=False)
    line = _one_error_line(res)
    assert "permission denied" in line and "没有权限" in line, line


class _Unbootable:
    """A server whose software is missing."""

    def __init__(self, root: Path):
        self.root = root

    def boot(self):
        raise ServerUnavailable("frobd is not installed")

    def close(self):
        shutil.rmtree(self.root, ignore_errors=True)


def test_a_server_that_cannot_start_skips_or_fails_by_the_environment():
    """Without DINOVAULT_REQUIRE_SERVERS the tests skip with the reason; with it (CI) they fail."""
    with pytest.raises(pytest.skip.Exception, match="frob server unavailable: frobd is not installed"):
        _boot(_Unbootable, "frob", require=False)
    with pytest.raises(pytest.fail.Exception, match="frobd is not installed.*DINOVAULT_REQUIRE_SERVERS=1"):
        _boot(_Unbootable, "frob", require=True)


def test_a_killed_push_leaves_no_temporary_files_after_the_next_push(ssh_server, clone_a, restore_config):
    """SFTP uploads go to '.<random>.tmp' beside the object and are renamed when complete; a push killed mid-upload
    leaves that file behind, and the next push removes it (issue 9). The push goes through a WAN emulator at
    8 MB/s, so the model's upload (88 MB) lasts seconds: it is killed while that temporary file exists, not by
    luck."""
    target, a = Target("ssh", ssh_server), clone_a
    wanted = a.cache_objects()
    model = a.lock_md5(VITS)
    place = _place(target, "temp")
    base = ssh_server.data / place / "files" / "md5"
    with WanProxy(("127.0.0.1", ssh_server.port), conn_rate=8e6) as slow:
        url = target.url(place).replace(f":{ssh_server.port}/", f":{slow.port}/")
        a.invoke("remote", "--url", url, "--name", "flaky", "--no-default", *target.options())
        proc = a.popen_invoke("push", "--remote", "flaky", "--jobs", "2")
        temps: list[Path] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and not temps:
            temps = list((base / model[:2]).glob(".*.tmp"))  # the model's upload: ~11 s at that rate
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=120)
    assert temps and all(p.exists() for p in temps), "the push ended before its model upload was seen under way"
    a.dvc("remote", "modify", "flaky", "url", target.url(place))  # straight to the server: the proxy is gone
    res = a.invoke("push", "--remote", "flaky", "--retries", "0")
    assert "leftover temporary file(s) removed" in res.text, res.text
    assert not list(base.glob("*/*.tmp"))
    assert {k: v[0] for k, v in target.objects(place).items()} == wanted
