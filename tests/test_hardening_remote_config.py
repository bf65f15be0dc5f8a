"""`invoke remote` and `invoke pull` against a server that accepts connections and never answers: bounded in time,
the config left as it was (also when killed with SIGTERM), a pull's timeout retried; a local folder (a NAS mount) is
an accepted remote; `invoke status` from a subfolder prints paths from the repository root. Real `invoke`/`dvc` CLIs
in fresh clones; the silent server is a plain socket on 127.0.0.1.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time

import pytest

from tests.support.clones import BIN, Clone, Machine, snapshot_worktree

S3_KEYS = ("--access-key-id", "AKIAEXAMPLE", "--secret-access-key", "secretexample")


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self):
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent():
    server = SilentServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def machine(tmp_path_factory) -> Machine:
    base = tmp_path_factory.mktemp("remote-config")
    return Machine(base / "machine", {"DINOV2_BASE_URL": "http://127.0.0.1:9/dinov2"},
                   snapshot_worktree(base / "source"))


def config_files(c: Clone) -> tuple[bytes, bool]:
    return (c.path / ".dvc" / "config").read_bytes(), (c.path / ".dvc" / "config.local").exists()


def test_a_silent_s3_endpoint_is_given_up_on_in_time(machine, silent):
    c = machine.clone("silent")
    c.env["DINOVAULT_TIMEOUT"] = "2"
    before = config_files(c)
    t0 = time.monotonic()
    res = c.invoke("remote", "--url", "s3://team-bucket/dvc", "--endpoint-url", f"http://127.0.0.1:{silent.port}",
                   *S3_KEYS, ok=False)
    assert time.monotonic() - t0 < 60, res.text
    assert "did not answer within 6 s" in res.stderr and "无响应" in res.stderr and "DINOVAULT_TIMEOUT" in res.stderr
    assert "Traceback" not in res.text
    assert config_files(c) == before


def test_sigterm_during_the_probe_leaves_the_config_as_it_was(machine, silent):
    c = machine.clone("sigterm")
    c.env["DINOVAULT_TIMEOUT"] = "20"
    before = config_files(c)
    proc = subprocess.Popen([str(BIN / "invoke"), "remote", "--url", "s3://team-bucket/dvc", "--endpoint-url",
                             f"http://127.0.0.1:{silent.port}", *S3_KEYS], cwd=c.path, env=c.env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while not silent.accepted and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert silent.accepted, "the probe never connected"
    time.sleep(1)  # the S3 request is under way
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert config_files(c) == before


def test_pull_retries_a_timeout(machine, silent):
    c = machine.clone("pull")
    c.dvc("remote", "add", "-d", "slow", f"ssh://127.0.0.1:{silent.port}/srv/dvc")
    c.env["DINOVAULT_TIMEOUT"] = "2"
    t0 = time.monotonic()
    res = c.invoke("pull", ok=False)
    assert time.monotonic() - t0 < 90, res.text
    assert "timed out" in res.text and "retrying in 1 s (1/2)" in res.stdout and "(2/2)" in res.stdout, res.text


def test_pull_waits_the_retry_delays_it_is_given(machine, silent):
    """DINOVAULT_RETRY_DELAYS sets the waits between a push's or pull's tries (tests set them short); a value that is
    not seconds is refused, naming the variable."""
    c = machine.clone("delays")
    c.dvc("remote", "add", "-d", "slow", f"ssh://127.0.0.1:{silent.port}/srv/dvc")
    c.env.update(DINOVAULT_TIMEOUT="1", DINOVAULT_RETRY_DELAYS="0.25")
    res = c.invoke("pull", ok=False)
    assert "timed out" in res.text and "retrying in 0.25 s (1/1)" in res.stdout and "(2/" not in res.stdout, res.text
    c.env["DINOVAULT_RETRY_DELAYS"] = "soon"
    res = c.invoke("pull", ok=False)
    assert "DINOVAULT_RETRY_DELAYS='soon' is not a list of seconds" in res.text, res.text


def test_a_local_folder_is_an_accepted_remote(machine, tmp_path):
    c = machine.clone("local")
    nas = tmp_path / "nas" / "dvc"
    res = c.invoke("remote", "--url", nas, "--name", "nas")
    assert "write/read/delete probe OK" in res.stdout, res.text
    assert nas.is_dir()
    assert c.dvc("config", "remote.nas.url").stdout.strip() == str(nas)  # `remote list` folds long paths
    res = c.invoke("remote", "--url", "nas/dvc", "--name", "rel", ok=False)
    assert "needs an absolute path" in res.stderr and "绝对路径" in res.stderr


def test_status_from_a_subfolder_prints_paths_from_the_root(machine):
    c = machine.clone("status")
    c.select("dinov2_vits14")  # the model whose stage the dvc.lock below records
    (c.path / "models").mkdir(exist_ok=True)
    res = c.invoke("status", cwd=c.path / "models")
    assert "../" not in res.text, res.text
    lock = c.path / "dvc.lock"
    md5 = "0123456789abcdef0123456789abcdef"
    lock.write_text("schema: '2.0'\nstages:\n  fetch@dinov2_vits14:\n    cmd: python scripts/download_dinov2.py "
                    f"--model dinov2_vits14\n    deps:\n    - path: scripts/download_dinov2.py\n      md5: {md5}\n"
                    f"      size: 1\n    outs:\n    - path: models/dinov2/dinov2_vits14.pth\n      md5: {md5}\n"
                    "      size: 1\n", encoding="utf-8")
    res = c.invoke("status", cwd=c.path / "models")
    assert "scripts/download_dinov2.py" in res.stdout and "../" not in res.text, res.text


def test_an_endpoint_that_is_not_s3(machine, tmp_path):
    """Python's http.server answers PUT with 501: one line saying the server does not speak S3, no raw chain."""
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        c = machine.clone("not-s3")
        c.env["DINOVAULT_TIMEOUT"] = "5"
        before = config_files(c)
        res = c.invoke("remote", "--url", "s3://team-bucket/dvc", "--endpoint-url",
                       f"http://127.0.0.1:{server.server_address[1]}", *S3_KEYS, ok=False)
        assert "does not speak this protocol" in res.stderr and "Errno 38" not in res.text, res.text
        assert sum(line.startswith("error: ") for line in res.stderr.splitlines()) == 1, res.text
        assert config_files(c) == before
    finally:
        server.shutdown()
        server.server_close()
