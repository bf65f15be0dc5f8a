"""Download DINOv2 backbones, verified against pinned SHA-256, into the torch.hub cache and --save_dir.

下载 DINOv2 模型（按固定的 SHA-256 校验），放入 torch.hub 缓存和 --save_dir。

Examples / 示例:
  dinovault fetch --model dinov2_vits14 --save_dir models/dinov2       (or: python scripts/download_dinov2.py ...)
  dinovault fetch --stage --all          # every model selected in params.yaml, what a DVC stage runs / 所有选中的模型

  dinovault fetch --model dinov2_vits14 --from ~/Downloads/model.safetensors --save_dir models/dinov2

Environment / 环境变量: DINOVAULT_SOURCES (official,huggingface: tried in order / 按顺序尝试), DINOV2_BASE_URL and
DINOV3_BASE_URL (official mirrors / 官方镜像), HF_ENDPOINT / HF_HOME / HF_TOKEN / HF_HUB_OFFLINE (as in
huggingface_hub), DINOVAULT_REGISTRY (another pin file / 另一个校验文件), TORCH_HOME, DINOVAULT_ALLOW_UNVERIFIED=1
(as --allow-unverified); see dinovault/settings.py.

A --save_dir in a git repository, other than a DVC one of params.yaml, gets a .gitignore ("*") when it has none,
so that git never stages the weights. / 仓库中除 params.yaml 的 DVC 目录以外的 --save_dir 会写入 .gitignore，
git 不会提交权重。
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path


def build_parser(prog: str = "download_dinov2.py", default_params: Path | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__.split("\n\n")[0] + "\n" + __doc__.split("\n\n")[1],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(parser, default_params)
    return parser


def add_options(parser: argparse.ArgumentParser, default_params: Path | None = None, cli: bool = False) -> None:
    """The script's options, on its own parser or on the CLI's ``fetch`` (``cli``: ``--model`` repeats)."""
    default_params = default_params or Path("params.yaml")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model", metavar="NAME", action="append" if cli else "store",
                       help="a torch.hub name, e.g. dinov2_vitb14" + ("; repeat for several" if cli else "")
                       + " / 模型名称")
    which.add_argument("--all", action="store_true", help="every model selected in params.yaml (the default) / "
                       "params.yaml 中选中的全部模型（默认）")
    parser.add_argument(*(("--save_dir", "--save-dir") if cli else ("--save_dir",)), dest="save_dir", metavar="DIR",
                        help="export <model>.pth and <model>.json here (without it only the torch.hub cache is "
                        "filled" + ("; no DVC" if cli else "") + ") / 保存目录（不给则只写入 torch.hub 缓存）")
    parser.add_argument("--allow-unverified", action="store_true",
                        help="accept a model that has no pinned SHA-256 (its card says verified: false) / "
                        "接受没有固定 SHA-256 的模型（模型卡标记 verified: false）")
    parser.add_argument("--skip-test", action="store_true", help="skip the forward-pass smoke test / 跳过模型测试")
    parser.add_argument("--metrics", metavar="FILE", help="write {embed_dim, num_params, smoke_test} as JSON, the "
                        "same bytes on every rerun (one model only) / 写入指标 JSON（每次相同，仅限单个模型）")
    parser.add_argument("--url", metavar="LINK", help="the signed download link from Meta's e-mail (DINOv3), in "
                        "quotes; never written anywhere (also $DINOV3_URL) / 邮件中的签名下载链接")
    parser.add_argument("--from", dest="from_paths", metavar="PATH", action="append", default=[],
                        help="a file or folder downloaded by hand (official .pth under any name, or a Hugging Face "
                        "model.safetensors): verified and placed in the cache first, no download / 导入手动下载的文件")
    parser.add_argument("--formats", metavar="LIST",
                        help="extra exports beside the .pth, comma list of safetensors,hf (default: params.yaml "
                        "formats when --params is given) / 额外导出格式（safetensors、hf）")
    parser.add_argument("--params", metavar="FILE",
                        help="params.yaml: the models of --all, and smoke_test: false skips the test "
                        f"(default: {default_params}, read only by --all unless given) / "
                        "参数文件：--all 的模型列表；smoke_test: false 跳过测试")
    parser.set_defaults(default_params=default_params)


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    if isinstance(args.model, str):
        args.model = [args.model]
    if args.metrics and len(args.model or []) != 1:
        parser.error("--metrics needs --model NAME (one model) / --metrics 只能用于单个模型")
    from dinovault.params import FORMATS

    bad = [f for f in (args.formats or "").split(",") if f.strip() and f.strip() not in FORMATS]
    if bad:
        parser.error(f"--formats: unknown format {bad[0]!r}; use pth, safetensors, hf / 未知格式")
    return args


def _say(line: str) -> None:
    from dinovault.cli.output import say

    say(line)


def _fail(message: str) -> None:
    print(f"✗ {message}", file=sys.stderr, flush=True)


def _error_line(err) -> str:
    return f"{err.message} → {err.hint}" if getattr(err, "hint", None) else str(err)


def _same_dir(a: Path, b: Path) -> bool:
    return os.path.normcase(str(a.resolve())) == os.path.normcase(str(b.resolve()))


def _in_git_worktree(folder: Path) -> bool:
    return any(os.path.lexists(d / ".git") for d in (folder, *folder.parents))


def _ignore_weights(save_dir: Path, params_file: Path, params) -> None:
    """Give a save_dir outside DVC, in a git work tree, a ``.gitignore`` ignoring everything but itself (weights
    never reach git). The save_dirs of params.yaml are left to DVC and the root .gitignore; an existing .gitignore
    is never touched."""
    from dinovault.files import write_atomic
    from dinovault.params import Params

    dvc_dirs = (params or Params((), "models/dinov2", True)).save_dirs.values() or ["models/dinov2"]
    if any(_same_dir(save_dir, params_file.parent / d) for d in dvc_dirs) or not _in_git_worktree(save_dir.resolve()):
        return
    save_dir.mkdir(parents=True, exist_ok=True)
    ignore = save_dir / ".gitignore"
    if not os.path.lexists(ignore):
        write_atomic(ignore, "*\n!.gitignore\n")


def parse_args(argv=None, prog: str = "download_dinov2.py", default_params: Path | None = None):
    parser = build_parser(prog, default_params)
    return check_args(parser, parser.parse_args(argv))


def main(argv=None, prog: str = "download_dinov2.py", default_params: Path | None = None) -> int:
    return run(parse_args(argv, prog, default_params))


def run(args: argparse.Namespace) -> int:
    """Fetch what ``args`` asks for, printing one line per step; the exit code."""
    logging.basicConfig(level=logging.INFO, format="  %(message)s", stream=sys.stderr)

    from dinovault import settings
    from dinovault.cache import write_json_atomic
    from dinovault.catalog import get_spec
    from dinovault.errors import DinovaultError, ParamsError, UnknownModelError
    from dinovault.pipeline import fetch_model
    from dinovault.progress import human_size

    smoke = not args.skip_test
    allow_unverified = args.allow_unverified or settings.allow_unverified()
    try:
        params = None
        params_file = Path(args.params or args.default_params)
        if args.params or not args.model:  # ruamel.yaml is only imported when params.yaml is read
            from dinovault.params import load_params

            params = load_params(params_file)
        names = list(dict.fromkeys(args.model)) if args.model or params is None else list(params.models)
        skip_reason = "--skip-test"
        if params is not None and not params.smoke_test and smoke:
            smoke, skip_reason = False, "smoke_test: false in params.yaml"
        for name in names:
            get_spec(name)
        dvc_root = settings.dvc_root()
        if args.save_dir and dvc_root is not None:  # a stage: DVC records what it writes
            from dinovault.exports.place import refuse_linked

            for name in names:
                refuse_linked(dvc_root, Path(args.save_dir), get_spec(name),
                              Path(args.metrics).parent if args.metrics else None)
        formats = None
        if args.formats is not None:
            formats = ("pth", *[f.strip() for f in args.formats.split(",") if f.strip()])
        elif params is not None:
            formats = params.formats
        if args.from_paths:
            from dinovault.sources.imported import import_paths

            for line in import_paths(args.from_paths, allow_unverified=allow_unverified):
                _say(line)
    except UnknownModelError as err:
        _fail(_error_line(err))
        return 2
    except DinovaultError as err:
        _fail(_error_line(err))
        return 1
    if args.save_dir:
        dvc_params = params
        if dvc_params is None:
            from dinovault.params import load_params

            try:
                dvc_params = load_params(params_file)
            except ParamsError:  # not this run's business: it only says where DVC's save_dir is
                dvc_params = None
        try:
            _ignore_weights(Path(args.save_dir), params_file, dvc_params)
        except OSError as err:
            _fail(f"cannot write to {args.save_dir}: {err.strerror or err} → check the path and its permissions / "
                  f"无法写入 {args.save_dir}，请检查路径和权限")
            return 1

    failed = 0
    for name in names:
        try:
            res = fetch_model(name, args.save_dir, allow_unverified=allow_unverified, smoke_test=smoke, url=args.url,
                              formats=formats if args.save_dir else None)
        except DinovaultError as err:
            _fail(f"{name}: {_error_line(err)}")
            failed += 1
            continue
        except KeyboardInterrupt:
            _fail("interrupted / 已中断 → rerun the same command: the download resumes / 重新运行即可继续下载")
            return 130
        if not res.downloaded:
            logging.info("%s: already in the cache, %s; nothing downloaded / 已缓存", res.spec.upstream_file,
                         "verified" if res.verified else "unverified")
        if not res.verified:
            logging.warning("%s: UNVERIFIED (no pinned SHA-256) / 未验证", res.spec.upstream_file)
        elif res.verified == "prefix":
            logging.info("%s: its name's SHA-256 prefix matched (no full pin is published); the card now records the "
                         "full SHA-256 / 文件名中的哈希前缀一致，模型卡已记录完整哈希", res.spec.upstream_file)
        _say(f"✓ 模型下载成功！ / Model downloaded: {res.description} ({human_size(res.size)}, sha256 {res.sha256})")
        if res.forward_seconds is not None:
            _say(f"✓ 模型测试成功！ / Smoke test passed: output (1, {res.spec.embed_dim})")
            # the time goes to the log, not the metrics: a metrics file that changes on every rerun is a git diff
            logging.info("smoke test: one forward pass in %.2f s / 前向测试耗时 %.2f 秒", res.forward_seconds,
                         res.forward_seconds)
        elif smoke:
            _say("✓ 模型测试成功！ / Smoke test passed: keys and shapes, memory-mapped (too large for a forward pass "
                 "here / 模型过大，未做前向测试)")
        else:
            _say(f"- 已跳过模型测试 / Smoke test skipped ({skip_reason})")
        _say(f"✓ 模型已保存到: {res.path} / Saved to: {res.path}")
        if args.metrics:
            metrics = {"embed_dim": res.spec.embed_dim, "num_params": res.spec.num_params,
                       "smoke_test": smoke}  # passed (a failure ends the fetch) or skipped
            path = Path(args.metrics)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_json_atomic(path, metrics)
            except OSError as err:
                _fail(f"cannot write metrics {path}: {err.strerror or err} → check the path / "
                      f"无法写入指标文件 {path}，请检查路径")
                failed += 1
    if failed and len(names) > 1:
        _fail(f"{failed} of {len(names)} models failed / {failed} 个模型失败")
    return 1 if failed else 0


