"""Push and pull of a model-sized file (346 MB) through dinovault's remotes against each protocol's standard client,
on loopback, in the same run: S3 (Ceph RGW) vs boto3, SSH vs sftp, WebDAV (wsgidav) vs curl. Prints MB/s and the
ratio ours / theirs (the issue's target is >= 0.7); never asserts. "no-op s" is the same command with nothing to
move (start-up, DVC's index and remote status); "net" subtracts it, leaving the transfer itself.

    python bench/bench_remotes.py [--size-mb 346] [--kinds s3,ssh,webdav] [--repeat 3] [--jobs N]

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
    def __init__(self, kind: str, server, repo: Path, env: dict, jobs: int | None):
        self.kind, self.server, self.repo, self.env, self.jobs = kind, server, repo, env, jobs
        self.src = repo / ".dvc" / "cache" / "files" / "md5"

    def remote_args(self, place: str) -> list[str]:
        s = self.server
        if self.kind == "s3":
            return ["--url", f"s3://{place}/dvc", "--endpoint-url", s.endpoint, "--access-key-id", s.access_key,
                    "--secret-access-key", s.secret_key]
        if self.kind == "ssh":
            return ["--url", s.url(place), "--keyfile", str(s.keyfile)]
        return ["--url", s.url(place), "--user", s.user, "--password", s.password]

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
            import boto3  # the baseline only (pip install boto3): not a dependency of dinovault

            client = boto3.client("s3", endpoint_url=s.endpoint, region_name="us-east-1",
                                  aws_access_key_id=s.access_key, aws_secret_access_key=s.secret_key)
            bucket = s.create_bucket(f"bench-boto3-{i}-{os.getpid()}")
            push = timed(lambda: client.upload_file(str(local), bucket, "model.bin"))
            pull = timed(lambda: client.download_file(bucket, "model.bin", str(back)))
        elif self.kind == "ssh":
            dest = s.data / f"sftp-{i}"
            dest.mkdir(exist_ok=True)
            sftp = [str(a) for a in ("sftp", "-q", "-b", "-", "-i", s.keyfile, "-P", s.port, "-o",
                                     "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                                     f"{s.user}@127.0.0.1")]

            def batch(command: str):
                return subprocess.run(sftp, input=command + "\n", text=True, capture_output=True, check=True)

            push = timed(lambda: batch(f"put {local} {dest}/model.bin"))
            pull = timed(lambda: batch(f"get {dest}/model.bin {back}"))
        else:
            url = f"http://127.0.0.1:{s.port}/curl-{i}.bin"
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
    ap.add_argument("--jobs", type=int, default=None, help="passed to invoke push/pull (default: DVC's)")
    args = ap.parse_args()
    size = int(args.size_mb * 1e6)
    tmp = Path(tempfile.mkdtemp(prefix="dinovault-bench-"))
    env = Machine(tmp).env
    os.environ.update({k: env[k] for k in ("HOME", "DVC_GLOBAL_CONFIG_DIR", "DVC_SYSTEM_CONFIG_DIR")})
    servers = []
    try:
        repo = make_repo(tmp, size, env)
        mb = size / 1e6
        print(f"file: {mb:.0f} MB, best of {args.repeat}; jobs: {args.jobs or 'DVC default'}; cpus: {os.cpu_count()}")
        print(f"{'remote':7} {'dir':5} {'ours MB/s':>9} {'no-op s':>8} {'net MB/s':>8} {'in-proc':>8} "
              f"{'client':>7} {'MB/s':>6} {'ratio':>6} {'net ratio':>9}")
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
            b = Bench(kind, server, repo, env, args.jobs)
            ours, inproc, theirs = [], [], []
            for i in range(args.repeat):
                ours.append(b.ours(i, in_process=False))
                inproc.append(b.ours(i, in_process=True))
                theirs.append(b.theirs(i, tmp))
            for d, direction in enumerate(("push", "pull")):
                best = min(t[d] for t in ours)
                noop = min(t[d + 2] for t in ours)
                o, net = mb / best, mb / max(best - noop, 1e-3)
                p = mb / min(t[d] for t in inproc)
                c = mb / min(t[d] for t in theirs)
                print(f"{kind:7} {direction:5} {o:9.0f} {noop:8.2f} {net:8.0f} {p:8.0f} {client:>7} {c:6.0f} "
                      f"{o / c:6.2f} {net / c:9.2f}")
    finally:
        for server in servers:
            server.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
