"""Push and pull of a model-sized file (346 MB) through dinovault's remotes against each protocol's standard client,
on loopback, in the same run: S3 (Ceph RGW) vs boto3, SSH vs sftp, WebDAV (wsgidav) vs curl. Prints MB/s and the
ratio ours / theirs (the issue's target is >= 0.7), each row marked met or MISSED; never asserts. "no-op s" is
the same command with nothing to move (start-up, DVC's index and remote status); "net" subtracts it, leaving the
transfer itself.

    python bench/bench_remotes.py [--size-mb 346] [--kinds s3,ssh,webdav] [--repeat 3] [--jobs N]
    python bench/bench_remotes.py --kinds s3 --wan 0.1,10,80 --no-in-process   # through the WAN emulator

``--wan RTT,CONN,LINK`` puts every client (ours and theirs) behind tests/support/wan.py in front of the server: RTT
seconds, CONN MB/s per connection, LINK MB/s for the link; boto3's transfer manager uses 10 concurrent requests.
"time x" is ours / theirs in seconds (the issue's target through the emulator: <= 1.15 against boto3).

"ours" is `invoke push` / `invoke pull` as a user runs them (a fresh process: interpreter, DVC import, status check,
transfer, hash check on pull); "ours (in-process)" is `remotes.transfer.push/pull` timed inside this process, without
the start-up. Pulls start from an empty DVC cache and workspace. The best of ``--repeat`` runs is shown.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.clones import BIN, Machine, copy_worktree, select_models  # noqa: E402
from tests.support.servers import S3Server, ServerUnavailable, SSHServer, WebDAVServer  # noqa: E402
from tests.support.wan import WanProcess  # noqa: E402

FILE = "data/model.bin"


def sh(*args, cwd=None, env=None, quiet=True) -> subprocess.CompletedProcess:
    res = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=quiet, text=True)
    if res.returncode:
        raise SystemExit(f"failed: {' '.join(map(str, args))}\n{res.stdout}\n{res.stderr}")
    return res


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def make_repo(base: Path, size: int, env: dict) -> Path:
    """A snapshot of this checkout, no model selected, with one random ``size``-byte file tracked by `dvc add`."""
    repo = copy_worktree(base / "repo")
    select_models(repo / "params.yaml")
    (repo / "data").mkdir()
    with open(repo / FILE, "wb") as fh:
        for _ in range(size // 2**20):
            fh.write(os.urandom(2**20))
        fh.write(os.urandom(size % 2**20))
    for cmd in (["git", "init", "-q", "-b", "main"], [BIN / "dvc", "add", "-q", FILE], ["git", "add", "-A"],
                ["git", "commit", "-q", "-m", "bench"]):
        sh(*cmd, cwd=repo, env=env)
    return repo


def empty_cache(repo: Path) -> None:
    shutil.rmtree(repo / ".dvc" / "cache", ignore_errors=True)
    (repo / FILE).unlink(missing_ok=True)


class Bench:
    def __init__(self, kind: str, server, repo: Path, env: dict, jobs: int | None, port: int):
        self.kind, self.server, self.repo, self.env, self.jobs = kind, server, repo, env, jobs
        self.port = port  # the server's, or the WAN emulator's in front of it

    def url(self, place: str) -> str:
        return self.server.url(place).replace(f":{self.server.port}/", f":{self.port}/", 1)

    def remote_args(self, place: str) -> list[str]:
        s = self.server
        if self.kind == "s3":
            return ["--url", f"s3://{place}/dvc", "--endpoint-url", f"http://127.0.0.1:{self.port}",
                    "--access-key-id", s.access_key, "--secret-access-key", s.secret_key]
        if self.kind == "ssh":
            return ["--url", self.url(place), "--keyfile", str(s.keyfile)]
        return ["--url", self.url(place), "--user", s.user, "--password", s.password]

    def ours(self, i: int, in_process: bool) -> tuple[float, float, float, float]:
        """(push, pull, no-op push, no-op pull) seconds; a no-op is the same command with nothing to move."""
        from dinovault.remotes import transfer

        name = f"b{i}{'p' if in_process else 'c'}"
        place = f"bench-{name}-{os.getpid()}"
        sh(BIN / "invoke", "remote", "--name", name, *self.remote_args(place), cwd=self.repo, env=self.env)
        jobs = ["--jobs", str(self.jobs)] if self.jobs else []
        if in_process:
            os.chdir(self.repo)
            with contextlib.redirect_stdout(io.StringIO()):
                push = timed(lambda: transfer.push(self.repo, name, jobs=self.jobs, retries=0))
                data = (self.repo / FILE).read_bytes() if i == 0 else None
                empty_cache(self.repo)
                pull = timed(lambda: transfer.pull(self.repo, None, name, jobs=self.jobs, retries=0))
            os.chdir(ROOT)
            noop_push = noop_pull = 0.0
        else:
            def run(task):
                return timed(lambda: sh(BIN / "invoke", task, "--remote", name, *jobs, cwd=self.repo, env=self.env))

            push, noop_push = run("push"), run("push")
            data = None
            empty_cache(self.repo)
            pull, noop_pull = run("pull"), run("pull")
        if data is not None:
            assert (self.repo / FILE).read_bytes() == data, "pulled bytes differ"
        return push, pull, noop_push, noop_pull

    def theirs(self, i: int, tmp: Path) -> tuple[float, float]:
        local = self.repo / FILE
        back = tmp / f"back-{i}"
        back.unlink(missing_ok=True)
        s = self.server
        if self.kind == "s3":
            # boto3's transfer manager (boto3.upload_file/download_file wrap s3transfer's TransferManager; boto3 itself
            # is not installed: its pin next to aiobotocore's makes pip backtrack), 10 concurrent requests
            from s3transfer.manager import TransferConfig, TransferManager

            client = s.client(endpoint=f"http://127.0.0.1:{self.port}")
            manager = TransferManager(client, TransferConfig(max_request_concurrency=10))
            bucket = s.create_bucket(f"bench-boto3-{i}-{os.getpid()}")
            push = timed(lambda: manager.upload(str(local), bucket, "model.bin").result())
            pull = timed(lambda: manager.download(bucket, "model.bin", str(back)).result())
        elif self.kind == "ssh":
            dest = s.data / f"sftp-{i}"
            dest.mkdir(exist_ok=True)
            sftp = [str(a) for a in ("sftp", "-q", "-b", "-", "-i", s.keyfile, "-P", self.port, "-o",
                                     "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                                     f"{s.user}@127.0.0.1")]

            def batch(command: str):
                return subprocess.run(sftp, input=command + "\n", text=True, capture_output=True, check=True)

            push = timed(lambda: batch(f"put {local} {dest}/model.bin"))
            pull = timed(lambda: batch(f"get {dest}/model.bin {back}"))
        else:
            url = f"http://127.0.0.1:{self.port}/curl-{i}.bin"
            auth = f"{s.user}:{s.password}"
            push = timed(lambda: sh("curl", "-sSf", "-u", auth, "-T", local, url))
            pull = timed(lambda: sh("curl", "-sSf", "-u", auth, "-o", back, url))
        assert back.stat().st_size == local.stat().st_size
        return push, pull


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=float, default=346)
    ap.add_argument("--kinds", default="s3,ssh,webdav")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=None, help="passed to invoke push/pull (default: dinovault's)")
    ap.add_argument("--wan", metavar="RTT,CONN,LINK", help="through the WAN emulator: seconds, MB/s, MB/s")
    ap.add_argument("--no-in-process", dest="in_process", action="store_false", help="skip the in-process runs")
    args = ap.parse_args()
    size = int(args.size_mb * 1e6)
    wan = [float(x) for x in args.wan.split(",")] if args.wan else None
    tmp = Path(tempfile.mkdtemp(prefix="dinovault-bench-"))
    env = Machine(tmp).env
    os.environ.update({k: env[k] for k in ("HOME", "DVC_GLOBAL_CONFIG_DIR", "DVC_SYSTEM_CONFIG_DIR")})
    servers, fronts = [], []
    try:
        repo = make_repo(tmp, size, env)
        mb = size / 1e6
        link = f"RTT {wan[0] * 1e3:.0f} ms, {wan[1]:g} MB/s per connection, {wan[2]:g} MB/s link" if wan else "loopback"
        print(f"file: {mb:.0f} MB, best of {args.repeat}; jobs: {args.jobs or 'default'}; cpus: {os.cpu_count()}; "
              f"{link}")
        print(f"{'remote':7} {'dir':5} {'ours MB/s':>9} {'no-op s':>8} {'net MB/s':>8} {'in-proc':>8} "
              f"{'client':>7} {'MB/s':>6} {'ratio':>6} {'net ratio':>9} {'time x':>6}  target")
        missed = []
        kinds = {"s3": (S3Server, "boto3"), "ssh": (SSHServer, "sftp"), "webdav": (WebDAVServer, "curl")}
        for kind in args.kinds.split(","):
            cls, client = kinds[kind]
            server = cls(root=Path(tempfile.mkdtemp(prefix=f"dinovault-bench-{kind}-")))
            servers.append(server)
            try:
                server.boot()
            except ServerUnavailable as err:
                print(f"{kind:8} skipped: {err}")
                continue
            if kind == "s3":  # the first writes create the gateway's data pools: keep that out of the figures
                warm = server.create_bucket(f"bench-warm-{os.getpid()}")
                server.client().put_object(Bucket=warm, Key="warm", Body=os.urandom(8 * 2**20))
            port = server.port
            if wan:
                fronts.append(WanProcess(("127.0.0.1", server.port), rtt=wan[0], conn_rate=wan[1] * 1e6,
                                         link_rate=wan[2] * 1e6))
                port = fronts[-1].port
            b = Bench(kind, server, repo, env, args.jobs, port)
            ours, inproc, theirs = [], [], []
            for i in range(args.repeat):
                ours.append(b.ours(i, in_process=False))
                if args.in_process:
                    inproc.append(b.ours(i, in_process=True))
                theirs.append(b.theirs(i, tmp))
            for d, direction in enumerate(("push", "pull")):
                best = min(t[d] for t in ours)
                noop = min(t[d + 2] for t in ours)
                o, net = mb / best, mb / max(best - noop, 1e-3)
                p = f"{mb / min(t[d] for t in inproc):8.0f}" if inproc else f"{'-':>8}"
                c = mb / min(t[d] for t in theirs)
                # the targets: ratio >= 0.7 on loopback, time x <= 1.15 through the WAN emulator
                met = c / o <= 1.15 if wan else o / c >= 0.7
                target = "time x <= 1.15" if wan else "ratio >= 0.7"
                if not met:
                    missed.append(f"{kind} {direction}")
                verdict = "met / 达标" if met else "MISSED / 未达标"
                print(f"{kind:7} {direction:5} {o:9.0f} {noop:8.2f} {net:8.0f} {p} {client:>7} {c:6.0f} "
                      f"{o / c:6.2f} {net / c:9.2f} {c / o:6.2f}  {target}: {verdict}")
        which = f" ({', '.join(missed)})" if missed else ""
        print(f"targets missed: {len(missed)} / 未达标 {len(missed)} 项{which}")
    finally:
        for front in fronts:
            front.close()
        for server in servers:
            server.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
