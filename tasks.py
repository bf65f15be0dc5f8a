"""Short commands for dinovault (`invoke --list`): the same operations as the `dinovault` command, one implementation
(dinovault/cli/ops.py): each task only passes its arguments on. `invoke test` is the one task of its own.

Everything heavy (DVC, torch) is imported inside the operation that needs it, so `invoke --list` is instant.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

from invoke import task

# invoke turns off bytecode caching for what a tasks file imports (its --write-pyc flag): the package would then be
# compiled from source on every `invoke` command (a third of a no-op `invoke fetch`); it is cached as Python would
sys.dont_write_bytecode = bool(sys.flags.dont_write_bytecode)

from dinovault.cli import ops  # noqa: E402
from dinovault.cli.ops import DOC, HELP  # noqa: E402
from dinovault.cli.output import stdout_gone  # noqa: E402

ops.use_prog("invoke")


def _closed_pipe(kind, value, tb, default=sys.excepthook):
    """`invoke --list | head -1`: invoke's own printing ends quietly too (the tasks print through cli/output.py)."""
    frames = traceback.extract_tb(tb)
    if issubclass(kind, BrokenPipeError) and frames and "invoke" in Path(frames[-1].filename).parts:
        sys.stderr.flush()
        os._exit(stdout_gone())  # uncaught, at the very end: the interpreter would exit 1 after this hook
    default(kind, value, tb)


sys.excepthook = _closed_pipe
# The official reference implementation used by the parity tests. It pins torch 2.0, xformers and cuml,
# which we do not want, so it is installed with --no-deps instead of being listed in pyproject.toml.
REFERENCE = ("dinov2", "0.0.1.dev2")


def _doc(name: str):
    def give(fn):
        fn.__doc__ = DOC[name]
        return fn

    return give


@task(iterable=["model"], help=HELP["fetch"])
@_doc("fetch")
def fetch(c, model=None, allow_unverified=False, url=None):
    ops.fetch(model or None, allow_unverified=allow_unverified, url=url)


@task(name="import", positional=["path"], iterable=["also"], help=HELP["import"])
@_doc("import")
def import_(c, path, also=None, allow_unverified=False):
    ops.import_([path, *(also or [])], allow_unverified=allow_unverified)


@task(name="list")
@_doc("list")
def list_(c):
    ops.list_()


@task(help=HELP["status"])
@_doc("status")
def status(c, cloud=False, remote=None):
    ops.status(cloud=cloud, remote=remote)


@task(help=HELP["verify"])
@_doc("verify")
def verify(c, remote=None, repair=False):
    ops.verify(repair=repair, remote=remote)


@task(help=HELP["remote"])
@_doc("remote")
def remote(c, url, name="team", endpoint_url=None, access_key_id=None, secret_access_key=None, profile=None,
           region=None, keyfile=None, user=None, password=None, jobs=None, default=True, check=True):
    ops.remote(url, name, endpoint_url, access_key_id, secret_access_key, profile, region, keyfile, user, password,
               jobs, default, check)


@task(help=HELP["push"])
@_doc("push")
def push(c, remote=None, jobs=None, retries=2):
    ops.push(remote, jobs, retries)


@task(iterable=["model"], help=HELP["pull"])
@_doc("pull")
def pull(c, model=None, remote=None, jobs=None, retries=2):
    ops.pull(model or None, remote, jobs, retries)


@task(help=HELP["clean"])
@_doc("clean")
def clean(c, yes=False):
    ops.clean(yes=yes)


@task(help=HELP["extract"])
@_doc("extract")
def extract(c, model="dinov2_vitb14", images="", out="", batch_size=32, weights=None, device=None, dtype=None,
            normalize=False):
    ops.extract(model, images, out, batch_size, weights, device, dtype, normalize)


@task(name="features", help={k: v for k, v in HELP["features"].items() if k != "stage"})
@_doc("features")
def features(c, set=None, engine=None, address=None, workers=None):
    ops.features(set, engine, address, workers)


@task(help={"args": "extra pytest arguments, e.g. '-k pipeline -x' / 额外的 pytest 参数"})
def test(c, args=""):
    """Run the whole test suite. / 运行全部测试。"""
    from importlib.metadata import PackageNotFoundError, version

    with ops.errors_exit():
        root = ops.root()
    try:
        have = version(REFERENCE[0])
    except PackageNotFoundError:
        have = None
    if have != REFERENCE[1]:
        print(f"installing the reference {REFERENCE[0]}=={REFERENCE[1]} (--no-deps) / 安装参考实现", flush=True)
        c.run(f"{sys.executable} -m pip install -q --no-deps {REFERENCE[0]}=={REFERENCE[1]}")
    # Two workers a core, whole modules each (their clones and servers are module- or session-scoped), the slowest
    # tests listed at the end; `--args "-n 0"` runs in one process (later options win).
    workers = 2 * (os.cpu_count() or 1)
    with c.cd(str(root)):
        result = c.run(f"{sys.executable} -m pytest -n {workers} --dist loadfile --durations=25 {args}", warn=True)
    if result.exited:
        raise SystemExit(result.exited)  # pytest's own report is above; its exit code is ours
