"""`dinovault COMMAND`: the invoke tasks' operations (cli/ops.py) with the same options, plus `init` and `fetch` outside
any repository. Parsing only: nothing heavy is imported before a command runs, so `--help` is instant."""

from __future__ import annotations

import argparse
import sys

from . import ops
from .stage import add_options

EPILOG = """\
In a repository (`dinovault init` makes one of any git repository), fetch selects the model in params.yaml and runs
its DVC stage; outside any repository (or with --save_dir) it downloads into the torch.hub cache (and DIR), no DVC.
在仓库中（任何 git 仓库运行 dinovault init 即可）fetch 会选择模型并运行其 DVC 阶段；在仓库外（或用 --save_dir）只下载到
torch.hub 缓存（及 DIR），不用 DVC。

Examples / 例子:
  dinovault init && dinovault fetch --model dinov2_vitb14
  dinovault fetch --model dinov2_vits14 --save_dir weights     # no repository needed / 无需仓库
  python -m dinovault list
"""
# options of the stage (the download script) that mean nothing when params.yaml and DVC decide
_STAGE_ONLY = {"skip_test": "--skip-test", "metrics": "--metrics", "formats": "--formats", "params": "--params"}
# what the commands whose flags follow their help texts' table give a flag beyond its help
_TABLE_FLAGS: dict[str, dict[str, dict]] = {
    "extract": {"normalize": dict(action="store_true"), "batch_size": dict(type=int, default=32),
                "model": dict(default="dinov2_vitb14")},
    "features": {"stage": dict(action="store_true"), "workers": dict(type=int),
                 "engine": dict(choices=("local", "ray"))},
}


def _flag(parser, name: str, help_: str, **kw) -> None:
    parser.add_argument(f"--{name.replace('_', '-')}", dest=name, help=help_, **kw)


def _command(subs, name: str, **kw) -> argparse.ArgumentParser:
    return subs.add_parser(name, help=ops.DOC[name], description=ops.DOC[name], **kw)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="dinovault", description="Pinned, verified, reproducible DINOv2 weights with DVC / 可复现的 DINOv2 权重",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"dinovault {__version__}")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND")
    h = ops.HELP

    fetch = _command(subs, "fetch", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(fetch, cli=True)
    fetch.add_argument("--stage", action="store_true",
                       help="what a DVC stage runs: download, verify, export to --save_dir, no DVC of its own / "
                       "DVC 阶段所运行的命令")

    imp = _command(subs, "import")
    imp.add_argument("path", help=h["import"]["path"])
    _flag(imp, "also", h["import"]["also"], action="append", default=[], metavar="PATH")
    _flag(imp, "allow_unverified", h["import"]["allow_unverified"], action="store_true")

    _command(subs, "list")
    status = _command(subs, "status")
    _flag(status, "cloud", h["status"]["cloud"], action="store_true")
    _flag(status, "remote", h["status"]["remote"], metavar="NAME")
    verify = _command(subs, "verify")
    _flag(verify, "repair", h["verify"]["repair"], action="store_true")
    _flag(verify, "remote", h["verify"]["remote"], metavar="NAME")

    remote = _command(subs, "remote")
    for name, text in h["remote"].items():
        if name in ("default", "check"):
            remote.add_argument(f"--{name}", dest=name, action=argparse.BooleanOptionalAction, default=True, help=text)
        else:
            _flag(remote, name, text, required=name == "url", type=int if name == "jobs" else str)
    remote.set_defaults(name="team")

    push = _command(subs, "push")
    pull = _command(subs, "pull")
    _flag(pull, "model", h["pull"]["model"], action="append", metavar="NAME")
    for sub, texts in ((push, h["push"]), (pull, h["pull"])):
        _flag(sub, "remote", texts["remote"], metavar="NAME")
        _flag(sub, "jobs", texts["jobs"], type=int, metavar="N")
        _flag(sub, "retries", texts["retries"], type=int, default=2, metavar="N")

    clean = _command(subs, "clean")
    _flag(clean, "yes", h["clean"]["yes"], action="store_true")

    for name, kinds in _TABLE_FLAGS.items():  # one flag per help text; what is not in the table is a string
        sub = _command(subs, name)
        for flag, text in h[name].items():
            _flag(sub, flag, text, **kinds.get(flag, {}))

    _command(subs, "init")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        with ops.errors_exit():  # also what importing a command's modules raises (a plug-in family that fails to load)
            _run(parser, args)
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else 1
    return 0


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    name = args.command
    if name == "fetch":
        _fetch(parser, args)
    elif name == "import":
        ops.import_([args.path, *args.also], allow_unverified=args.allow_unverified)
    elif name == "list":
        ops.list_()
    elif name == "status":
        ops.status(cloud=args.cloud, remote=args.remote)
    elif name == "verify":
        ops.verify(repair=args.repair, remote=args.remote)
    elif name == "remote":
        ops.remote(**{k: getattr(args, k) for k in ops.HELP["remote"]})
    elif name == "push":
        ops.push(remote=args.remote, jobs=args.jobs, retries=args.retries)
    elif name == "pull":
        ops.pull(args.model, remote=args.remote, jobs=args.jobs, retries=args.retries)
    elif name == "clean":
        ops.clean(yes=args.yes)
    elif name == "extract":
        ops.extract(**{k: getattr(args, k) for k in ops.HELP["extract"]})
    elif name == "features":
        ops.features(args.set, args.engine, args.address, args.workers, args.stage)
    elif name == "init":
        ops.init()


def _fetch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """In a dinovault repository: `dvc repro` of the stages (ops.fetch); with --stage or --save_dir, or outside any
    repository: the download script's behaviour (the torch.hub cache, and --save_dir), no DVC."""
    from .stage import check_args, run

    if args.stage or args.save_dir:
        raise SystemExit(run(check_args(parser, args)))
    where = _repository()
    if where is None:
        if not args.model:
            print("error: no dinovault repository here: name the model / 不在 dinovault 仓库中，请指定模型\n"
                  "  → dinovault fetch --model dinov2_vitb14 [--save_dir DIR], or `dinovault init` in your git "
                  "repository / 或在 git 仓库中运行 dinovault init", file=sys.stderr, flush=True)
            raise SystemExit(2)
        raise SystemExit(run(check_args(parser, args)))
    given = [flag for key, flag in _STAGE_ONLY.items() if getattr(args, key)]
    if given:
        print(f"error: {given[0]} is for fetching without DVC (--save_dir DIR or --stage); in a repository "
              f"params.yaml decides it / 仓库中由 params.yaml 决定", file=sys.stderr, flush=True)
        raise SystemExit(2)
    if args.from_paths:
        ops.import_(args.from_paths, allow_unverified=args.allow_unverified)
    else:
        ops.fetch(args.model, allow_unverified=args.allow_unverified, url=args.url)


def _repository():
    """The dinovault repository around the current directory, or None (a note when it is a DVC project that
    `dinovault init` has not set up)."""
    from ..errors import RepoError
    from ..repo.init import has_stage
    from ..repo.layout import find_root

    try:
        found = find_root()
    except RepoError:
        return None
    if has_stage(found):
        return found
    print(f"note: {found} has no dinovault stage: fetching into the torch.hub cache only; `dinovault init` records "
          "models with DVC / 该项目尚未运行 dinovault init：仅下载到 torch.hub 缓存", file=sys.stderr, flush=True)
    return None
