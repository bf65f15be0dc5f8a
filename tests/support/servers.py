"""Real servers on 127.0.0.1 for the remote tests: Ceph RADOS Gateway (S3), OpenSSH (SFTP) and wsgidav (WebDAV).

Each fixture starts its server once per test session on free ports under a temp folder and stops it by pid at the
end. When a server cannot start (packages missing), its tests skip with the reason, or fail under
``DINOVAULT_REQUIRE_SERVERS=1`` (CI). Recipes: ../shared/notes/servers.md.

Every server has ``stop()``/``start()`` to take the service down and bring it back on the same port with the same data
(for the interrupted-push tests) and ``close()`` to tear everything down.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REQUIRE_SERVERS = os.environ.get("DINOVAULT_REQUIRE_SERVERS") == "1"
S3_ACCESS_KEY = "DINOVAULTADMINKEY000"
S3_SECRET_KEY = "dinovault-test-secret-0123456789abcdef0123"
# A second, valid user that owns nothing: its writes to the admin's buckets are denied (AccessDenied).
S3_OTHER_KEYS = ("DINOVAULTOTHERKEY000", "dinovault-other-secret-0123456789abcdef")


class ServerUnavailable(RuntimeError):
    """The server could not start on this machine; the message says why."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if proc is not None and proc.poll() is not None:
            raise ServerUnavailable(f"server exited with {proc.returncode} before listening on {port}")
        time.sleep(0.05)
    raise ServerUnavailable(f"nothing listened on 127.0.0.1:{port} after {timeout:.0f} s")


def _run(args: list[str], *, timeout: float = 60, input: str | None = None, **kwargs) -> str:
    try:
        res = subprocess.run(args, capture_output=True, text=True, timeout=timeout, input=input, **kwargs)
    except FileNotFoundError as err:
        raise ServerUnavailable(f"{args[0]} is not installed") from err
    except subprocess.TimeoutExpired as err:
        raise ServerUnavailable(f"{' '.join(args[:3])} timed out after {timeout:.0f} s") from err
    if res.returncode:
        raise ServerUnavailable(f"{' '.join(args[:4])} failed ({res.returncode}): {(res.stderr or res.stdout)[-800:]}")
    return res.stdout


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (our own exited child) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def kill_pid(pid: int, timeout: float = 10, first: signal.Signals = signal.SIGTERM) -> None:
    """``first`` (SIGTERM), then SIGKILL after ``timeout``; returns when the process is gone."""
    for sig, wait in ((first, timeout), (signal.SIGKILL, 5)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:  # reap it when it is our child
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return
            except ChildProcessError:
                pass
            if not _pid_alive(pid):
                return
            time.sleep(0.05)


def kill_pidfile(path: Path, timeout: float = 10, first: signal.Signals = signal.SIGTERM) -> None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return
    kill_pid(pid, timeout, first)


def _children(pid: int) -> list[int]:
    """Direct and indirect children of ``pid`` (from /proc, so no psutil needed)."""
    kids: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(") ", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in kids.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


# --------------------------------------------------------------------------------------------------------------- S3


@dataclass
class S3Server:
    """One Ceph cluster (mon + osd) with a RADOS Gateway; ``stop()``/``start()`` act on the gateway only."""

    root: Path
    port: int = 0
    mon_port: int = 0
    access_key: str = S3_ACCESS_KEY
    secret_key: str = S3_SECRET_KEY
    start_seconds: float = 0.0
    conf: Path = field(init=False)

    def __post_init__(self):
        self.conf = self.root / "ceph.conf"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ceph(self, *args: str, timeout: float = 60, input: str | None = None) -> str:
        return _run(["ceph", "-c", str(self.conf), *args], timeout=timeout, input=input)

    def boot(self) -> S3Server:
        t0 = time.monotonic()
        self.port, self.mon_port = free_port(), free_port()
        r = self.root
        for sub in ("run", "log", "mon", "osd/ceph-0", "rgw"):
            (r / sub).mkdir(parents=True, exist_ok=True)
        fsid = str(uuid.uuid4())
        self.conf.write_text(textwrap.dedent(f"""\
            [global]
            fsid = {fsid}
            mon_host = v2:127.0.0.1:{self.mon_port}
            public_network = 127.0.0.0/8
            ms_bind_ipv6 = false
            ms_bind_msgr1 = false
            auth_cluster_required = cephx
            auth_service_required = cephx
            auth_client_required = cephx
            osd_pool_default_size = 1
            osd_pool_default_min_size = 1
            mon_allow_pool_size_one = true
            osd_pool_default_pg_num = 8
            osd_pool_default_pgp_num = 8
            osd_pool_default_pg_autoscale_mode = off
            mon_max_pg_per_osd = 1000
            osd_crush_chooseleaf_type = 0
            run_dir = {r}/run
            admin_socket = {r}/run/$cluster-$name.asok
            log_file = {r}/log/$cluster-$name.log
            pid_file = {r}/run/$cluster-$name.pid
            keyring = {r}/keyring
            mon_data = {r}/mon/$cluster-$id
            osd_data = {r}/osd/$cluster-$id
            osd_objectstore = bluestore
            bluestore_block_create = true
            bluestore_block_size = 21474836480
            osd_memory_target = 1073741824
            mon_osd_full_ratio = 0.97
            mon_osd_nearfull_ratio = 0.95

            [osd]
            keyring = {r}/osd/$cluster-$id/keyring

            [client.rgw.dinovault]
            keyring = {r}/rgw.keyring
            rgw_data = {r}/rgw
            rgw_frontends = beast endpoint=127.0.0.1:{self.port}
            """))
        mon_keyring, admin_keyring = str(r / "mon.keyring"), str(r / "keyring")
        _run(["ceph-authtool", "--create-keyring", mon_keyring, "--gen-key", "-n", "mon.", "--cap", "mon", "allow *"])
        _run(["ceph-authtool", "--create-keyring", admin_keyring, "--gen-key", "-n", "client.admin",
              "--cap", "mon", "allow *", "--cap", "osd", "allow *", "--cap", "mgr", "allow *"])
        _run(["ceph-authtool", mon_keyring, "--import-keyring", admin_keyring])
        _run(["monmaptool", "--create", "--addv", "a", f"[v2:127.0.0.1:{self.mon_port}]", "--fsid", fsid,
              str(r / "monmap")])
        _run(["ceph-mon", "-c", str(self.conf), "--mkfs", "-i", "a", "--monmap", str(r / "monmap"),
              "--keyring", mon_keyring])
        _run(["ceph-mon", "-c", str(self.conf), "-i", "a"])
        osd_uuid = str(uuid.uuid4())
        osd_id = self.ceph("osd", "new", osd_uuid).strip()
        self.ceph("auth", "get-or-create", f"osd.{osd_id}", "mon", "allow profile osd", "osd", "allow *",
                  "mgr", "allow profile osd", "-o", str(r / f"osd/ceph-{osd_id}/keyring"))
        _run(["ceph-osd", "-c", str(self.conf), "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid], timeout=120)
        _run(["ceph-osd", "-c", str(self.conf), "-i", osd_id])
        self.ceph("auth", "get-or-create", "client.rgw.dinovault", "mon", "allow rw", "osd", "allow rwx",
                  "-o", str(r / "rgw.keyring"))
        self.start()
        for uid, (key, secret) in (("dinovault", (self.access_key, self.secret_key)), ("other", S3_OTHER_KEYS)):
            _run(["radosgw-admin", "-c", str(self.conf), "user", "create", "--uid", uid, "--display-name", uid,
                  "--access-key", key, "--secret-key", secret])
        self.start_seconds = time.monotonic() - t0
        return self

    def start(self) -> None:
        """Start the gateway (the S3 service) and wait until it answers."""
        _run(["radosgw", "-c", str(self.conf), "-n", "client.rgw.dinovault"])
        wait_for_port(self.port, timeout=90)

    def stop(self) -> None:
        kill_pidfile(self.root / "run/ceph-client.rgw.dinovault.pid")

    def close(self) -> None:
        for name in ("client.rgw.dinovault", "osd.0", "mon.a"):
            kill_pidfile(self.root / f"run/ceph-{name}.pid")
        shutil.rmtree(self.root, ignore_errors=True)

    def client(self, access_key: str | None = None, secret_key: str | None = None, endpoint: str | None = None):
        """A botocore S3 client (botocore comes with dvc-s3; boto3 is not installed by default)."""
        import botocore.session
        from botocore.config import Config

        return botocore.session.get_session().create_client(
            "s3", endpoint_url=endpoint or self.endpoint, region_name="us-east-1",
            aws_access_key_id=access_key or self.access_key, aws_secret_access_key=secret_key or self.secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}))

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def objects(self, bucket: str, prefix: str = "") -> dict[str, tuple[int, str]]:
        """key -> (size, "etag@last-modified") of every object under ``prefix``; the stamp changes on rewrite."""
        out = {}
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                out[obj["Key"]] = (obj["Size"], f"{obj['ETag']}@{obj['LastModified'].timestamp()}")
        return out


# -------------------------------------------------------------------------------------------------------------- SSH


@dataclass
class SSHServer:
    """OpenSSH sshd as the current user, key authentication only, SFTP built in."""

    root: Path
    port: int = 0
    start_seconds: float = 0.0
    sshd: str = field(default_factory=lambda: shutil.which("sshd") or "/usr/sbin/sshd")

    @property
    def user(self) -> str:
        import getpass

        return getpass.getuser()

    @property
    def keyfile(self) -> Path:
        return self.root / "client_key"

    @property
    def wrong_keyfile(self) -> Path:
        return self.root / "stranger_key"

    @property
    def data(self) -> Path:
        """A folder remotes can point into (``ssh://user@127.0.0.1:port/<data>/...``)."""
        return self.root / "data"

    def url(self, path: str) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{self.data}/{path.strip('/')}"

    def boot(self) -> SSHServer:
        t0 = time.monotonic()
        if not os.path.exists(self.sshd):
            raise ServerUnavailable("sshd is not installed (Debian: apt-get install openssh-server)")
        self.port = free_port()
        self.data.mkdir(parents=True, exist_ok=True)
        for key in ("host_key", "client_key", "stranger_key"):
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"dinovault-{key}", "-f", str(self.root / key)])
        shutil.copy(self.root / "client_key.pub", self.root / "authorized_keys")
        with contextlib.suppress(OSError):  # the privilege separation folder sshd insists on (as root)
            Path("/run/sshd").mkdir(exist_ok=True)
        (self.root / "sshd_config").write_text(textwrap.dedent(f"""\
            Port {self.port}
            ListenAddress 127.0.0.1
            HostKey {self.root}/host_key
            PidFile {self.root}/sshd.pid
            AuthorizedKeysFile {self.root}/authorized_keys
            StrictModes no
            UsePAM no
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            PermitRootLogin prohibit-password
            MaxStartups 100
            MaxSessions 100
            Subsystem sftp internal-sftp
            """))
        self.start()
        self.start_seconds = time.monotonic() - t0
        return self

    def start(self) -> None:
        _run([self.sshd, "-f", str(self.root / "sshd_config"), "-E", str(self.root / "sshd.log")])
        wait_for_port(self.port, timeout=20)

    def stop(self) -> None:
        """Stop sshd and the sessions it serves, as a machine going down would."""
        try:
            pid = int((self.root / "sshd.pid").read_text())
        except (OSError, ValueError):
            return
        for child in _children(pid):
            kill_pid(child, timeout=2)
        kill_pid(pid)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------------- WebDAV


@dataclass
class WebDAVServer:
    """wsgidav on cheroot with HTTP basic authentication."""

    root: Path
    port: int = 0
    user: str = "dinovault"
    password: str = "dinovault-webdav-pw"
    start_seconds: float = 0.0
    proc: subprocess.Popen | None = None

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, path: str) -> str:
        return f"webdav://127.0.0.1:{self.port}/{path.strip('/')}"

    def boot(self) -> WebDAVServer:
        t0 = time.monotonic()
        try:
            import cheroot  # noqa: F401
            import wsgidav  # noqa: F401
        except ImportError as err:
            raise ServerUnavailable(f"wsgidav/cheroot are not installed ({err}); pip install -e '.[dev]'") from err
        self.port = free_port()
        self.data.mkdir(parents=True, exist_ok=True)
        (self.root / "wsgidav.yaml").write_text(textwrap.dedent(f"""\
            host: 127.0.0.1
            port: {self.port}
            server: cheroot
            server_args:
              numthreads: 16
            provider_mapping:
              "/": "{self.data}"
            http_authenticator:
              domain_controller: null
              accept_basic: true
              accept_digest: false
              default_to_digest: false
            simple_dc:
              user_mapping:
                "*":
                  "{self.user}":
                    password: "{self.password}"
            verbose: 1
            logging:
              enable_loggers: []
            property_manager: true
            lock_storage: true
            """))
        self.start()
        self.start_seconds = time.monotonic() - t0
        return self

    def start(self) -> None:
        log = open(self.root / "wsgidav.log", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wsgidav.server.server_cli", "--config", str(self.root / "wsgidav.yaml")],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        (self.root / "wsgidav.pid").write_text(str(self.proc.pid))
        wait_for_port(self.port, timeout=30, proc=self.proc)

    def stop(self) -> None:
        # SIGKILL: on SIGTERM cheroot first finishes the requests in flight, which is not the crash tests want
        kill_pidfile(self.root / "wsgidav.pid", first=signal.SIGKILL)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


# --------------------------------------------------------------------------------------------------------- fixtures


def _boot(kind: type, name: str, require: bool | None = None):
    """Start one server, or skip the tests that need it (fail them under DINOVAULT_REQUIRE_SERVERS=1)."""
    root = Path(tempfile.mkdtemp(prefix=f"dinovault-{name}-"))
    server = kind(root=root)
    try:
        server.boot()
    except ServerUnavailable as err:
        server.close()
        reason = f"{name} server unavailable: {err}"
        if REQUIRE_SERVERS if require is None else require:
            pytest.fail(f"{reason} (DINOVAULT_REQUIRE_SERVERS=1)", pytrace=False)
        pytest.skip(reason)
    except BaseException:
        server.close()
        raise
    print(f"\n[servers] {name} ready on 127.0.0.1:{server.port} in {server.start_seconds:.1f} s", file=sys.stderr)
    return server


@pytest.fixture(scope="session")
def s3_server():
    """Ceph mon + osd + RADOS Gateway; a user with ``access_key``/``secret_key`` (and ``S3_OTHER_KEYS``, one who owns
    nothing); ``create_bucket(name)``, ``objects(bucket)``; ``stop()``/``start()`` the gateway."""
    server = _boot(S3Server, "s3")
    yield server
    server.close()


@pytest.fixture(scope="session")
def ssh_server():
    """sshd with throwaway ed25519 keys: ``keyfile`` is authorized, ``wrong_keyfile`` is not."""
    server = _boot(SSHServer, "ssh")
    yield server
    server.close()


@pytest.fixture(scope="session")
def webdav_server():
    """wsgidav with basic auth (``user``/``password``) serving ``data``."""
    server = _boot(WebDAVServer, "webdav")
    yield server
    server.close()
