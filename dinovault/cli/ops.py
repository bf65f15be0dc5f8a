"""The operations behind both fronts, `invoke TASK` (tasks.py) and `dinovault COMMAND` (cli/main.py): each calls
the package, prints what it returns, and turns its errors into one `error: ...` line and a non-zero exit. The fronts
only parse arguments; the help texts below are theirs too.

Everything heavy (DVC, torch) is imported inside the operation that needs it, so listing the commands is instant.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from .output import say

_PROG = {"name": "dinovault"}  # the front running: how hints spell a command ("invoke push", "dinovault push")

MODEL_HELP = "a torch.hub model name, e.g. dinov2_vitb14; repeat for several / 模型名，可重复"
RETRIES_HELP = "retries after a transient failure such as a lost connection (default 2) / 临时故障后的重试次数"
HELP = {
    "fetch": {
        "model": MODEL_HELP + " (default: every model selected in params.yaml)",
        "allow_unverified": "accept a model with no pinned SHA-256 (card: verified: false) / 接受无固定哈希的模型",
        "url": "the signed link from Meta's e-mail (DINOv3), in quotes; never written anywhere / 邮件中的签名下载链接",
    },
    "import": {
        "path": "a file or folder downloaded by hand: an official .pth (any name) or a Hugging Face "
        "model.safetensors / 手动下载的文件或文件夹",
        "also": "more files or folders; repeat / 更多文件，可重复",
        "allow_unverified": "accept a recognised file that has no pin (card: verified false) / 接受未固定哈希的文件",
    },
    "status": {
        "cloud": "compare the DVC cache with the remote instead of the pipeline with the workspace / 与远端比较",
        "remote": "the remote to compare with (default: the default remote) / 远端名",
    },
    "verify": {
        "repair": "put good bytes (the DVC remote first, then the pinned sources) in place of missing or damaged "
        "files / 修复缺失或损坏的文件",
        "remote": "the DVC remote to take good bytes from (default: the default remote) / 远端名",
    },
    "remote": {
        "url": "s3://bucket/prefix, ssh://user@host[:port]/path, webdav[s]://host[:port]/path / 远程地址",
        "name": "remote name (default: team) / 远程名称",
        "endpoint_url": "S3-compatible server, e.g. http://minio.lan:9000 (S3 only) / S3 兼容服务地址",
        "access_key_id": "S3 access key id (to .dvc/config.local only) / 访问密钥 ID（仅写入 config.local）",
        "secret_access_key": "S3 secret access key (to .dvc/config.local only) / 访问密钥（仅写入 config.local）",
        "profile": "AWS profile from ~/.aws instead of keys (S3) / 使用 ~/.aws 中的配置",
        "region": "S3 region, if the server needs one / S3 区域",
        "keyfile": "SSH private key (default: the SSH agent and ~/.ssh) / SSH 私钥文件",
        "user": "WebDAV (or SSH) user name / 用户名",
        "password": "WebDAV (or SSH) password (to .dvc/config.local only) / 密码（仅写入 config.local）",
        "jobs": "parallel transfers for this remote (saved in .dvc/config) / 此远程的并行传输数",
        "default": "make it the default remote; --no-default to only add it / 设为默认远程",
        "check": "create the bucket/folder and probe it; --no-check to skip / 创建并读写测试",
    },
    "push": {
        "remote": "the DVC remote to push to (default: the default remote) / 远端名",
        "jobs": "parallel transfers (default: DVC's) / 并行传输数",
        "retries": RETRIES_HELP,
    },
    "pull": {
        "model": MODEL_HELP + " (default: every selected model)",
        "remote": "the DVC remote to pull from (default: the default remote) / 远端名",
        "jobs": "parallel transfers (default: DVC's) / 并行传输数",
        "retries": RETRIES_HELP,
    },
    "clean": {"yes": "delete without asking, even files the remote does not hold / 不询问直接删除"},
    "extract": {
        "model": "a torch.hub model name, e.g. dinov2_vitb14 / 模型名",
        "images": "the folder of images, searched recursively / 图片文件夹（递归）",
        "out": "the .npz to write: features, relative paths, model name / 输出的 .npz 文件",
        "batch_size": "images per forward pass (default 32) / 每批图片数",
        "weights": "checkpoint file or folder (default: $DINOVAULT_MODELS_DIR, the repository's save_dir, the verified "
        "torch.hub cache) / 权重文件或文件夹",
        "device": "cpu, cuda, cuda:1… (default: cuda when available) / 设备",
        "dtype": "bfloat16 or float16 to run under autocast (default: float32) / 精度",
        "normalize": "scale every feature vector to unit L2 norm / L2 归一化",
    },
    "features": {
        "set": "the feature set (a name under features: in params.yaml; default: every set) / 特征集名（默认全部）",
        "engine": "local (decoding workers beside the model) or ray (Ray Data actors on a cluster) / 计算引擎",
        "address": "the Ray cluster: auto (the one `ray start` made), ray://host:10001 (default: a local one) / "
        "Ray 集群地址",
        "workers": "decoding processes (local) or model actors (ray) (default: CPUs − 1) / 解码进程或 Ray actor 数",
        "stage": "what the features@<set> stage runs: compute now, no DVC of its own / DVC 阶段所运行的命令",
    },
}
DOC = {
    "fetch": "Download, verify and record models (`dvc repro`). / 下载、校验并记录模型。",
    "import": "Import hand-downloaded weights (verified, no download), then record them like fetch. / "
              "导入手动下载的权重。",
    "list": "Show every model and where its weights are. / 列出模型及其位置。",
    "status": "Show what `dvc repro` (or `dvc push`) would change. / 显示将要变化的内容。",
    "verify": "Re-hash models (workspace, DVC cache, torch.hub cache) against dvc.lock and the pins; --repair fixes "
              "them. / 重新校验（--repair 修复）。",
    "remote": "Add or change the team DVC remote (S3, SSH, WebDAV, a folder); secrets go to .dvc/config.local. / "
              "配置团队远端。",
    "push": "Send what DVC tracks to the remote (`dvc push`): only what it lacks, verified, with a summary. / 推送。",
    "pull": "Get recorded models from the DVC remote (`dvc pull`), hash-checked and retried. / 拉取（逐个校验）。",
    "clean": "Remove unselected models from the workspace (asks first). / 清理未选中的模型。",
    "extract": "Extract features for every image in a folder into one .npz. / 提取文件夹中图片的特征。",
    "features": "Compute a feature set of params.yaml incrementally (`dvc repro features@<set>`). / "
                "增量计算特征集。",
    "init": "Make this git repository a dinovault project: fetch stages, params, DVC remote, .gitignore. / "
            "初始化项目。",
}
FETCH_STATES = {"ran": "fetched / 已获取", "cached": "restored from DVC's run cache, not run again / 从运行缓存恢复",
                "up to date": "up to date / 已是最新"}


def use_prog(name: str) -> None:
    _PROG["name"] = name


def cmd(rest: str) -> str:
    """``rest`` as the running front spells it: ``invoke push`` or ``dinovault push``."""
    return f"{_PROG['name']} {rest}"


@contextlib.contextmanager
def errors_exit():
    """A DinovaultError becomes ``error: ...`` on stderr and exit 1; Ctrl-C exits 130. No traceback."""
    from ..errors import DinovaultError

    try:
        yield
    except DinovaultError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print("interrupted / 已中断", file=sys.stderr, flush=True)
        raise SystemExit(130) from None


def root() -> Path:
    from ..repo.layout import find_root

    return find_root()


def git_hint() -> str:
    return ("to record and share / 记录并共享: git add params.yaml dvc.lock models metrics && git commit -m 'models'"
            f" && {cmd('push')}")


# ---------------------------------------------------------------------------------------------- fetch / import


def fetch(models=None, allow_unverified: bool = False, url: str | None = None) -> None:
    """`fetch` in a repository: select, `dvc repro` the stages, print one line per model."""
    with errors_exit():
        report = _fetch(models, allow_unverified, url)
    _say_fetched(report)


def _fetch(models, allow_unverified: bool, url: str | None = None):
    from ..repo.commands import fetch_in_repository

    return fetch_in_repository(models, root(), allow_unverified, url, announce=say)


def _say_fetched(report) -> None:
    from ..progress import human_size

    if report.added:
        say(f"selected in params.yaml / 已加入 params.yaml: {', '.join(report.added)}")
    for m in report.models:
        checks = {True: "sha256",
                  "prefix": "sha256 (only its name's hash prefix was pinned / 仅校验了文件名中的哈希前缀)"}
        check = checks.get(m.verified, "UNVERIFIED (no pin) sha256")
        say(f"{m.model}: {m.path}  {human_size(m.size)}  {check}:{m.sha256}  {m.seconds:.1f}s  {FETCH_STATES[m.state]}")
    if report.added or any(m.state != "up to date" for m in report.models):
        say(git_hint())


def import_(paths, allow_unverified: bool = False) -> None:
    from ..sources.imported import import_models

    with errors_exit():
        done = import_models(list(paths), allow_unverified=allow_unverified)
        say(*(line for _, line in done))
        report = _fetch(list(dict.fromkeys(m for m, _ in done)), allow_unverified)
    _say_fetched(report)


# ---------------------------------------------------------------------------------------------- list / status / verify


def list_() -> None:
    from ..progress import human_size
    from ..repo import commands

    with errors_exit():
        listing = commands.list_models()
    mark = {True: "yes", False: "-", None: "?"}
    header = ("model", "dim", "params", "size", "selected", "workspace", "dvc-cache", "remote")
    table = [header] + [
        (r["model"], str(r["dim"]), f"{r['params'] / 1e6:.1f}M", human_size(r["size"]), mark[r["selected"]],
         mark[r["workspace"]], mark[r["cache"]], mark[r["remote"]])
        for r in listing.rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    say(*("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table))
    say(f"selected = in params.yaml (已选); workspace = {listing.save_dir} (工作区); remote = {listing.remote} (远端)",
        *listing.notes)


def status(cloud: bool = False, remote: str | None = None) -> None:
    from ..repo import commands

    with errors_exit():
        st = commands.status(cloud=cloud, remote=remote)
    say(f"{st.where}: {'changed / 有变化' if st.changes else 'up to date / 已是最新'}")
    say(*(f"  {target}: {what}" for target, what in st.changes))


def verify(repair: bool = False, remote: str | None = None) -> None:
    from ..repo import integrity

    marks = {"ok": "ok  ", "bad": "FAIL", "missing": "FAIL", "registry": "FAIL", "unfetched": "-   "}
    with errors_exit():
        repaired, checked = integrity.verify(repair=repair, remote=remote)
        for done in repaired:
            say(f"repaired {done.model} from {done.source}: {', '.join(done.placed)} linked to good bytes / 已修复")
        say(*(f"{marks[c.state]} {c.path}: {c.detail}" for c in checked))
        error = integrity.verification_error(checked)
        if error:
            raise error
    fetched = any(c.state == "ok" for c in checked)
    say("all models verified / 全部模型校验通过" if fetched else "no model fetched yet, nothing to verify / 尚无模型")


# ---------------------------------------------------------------------------------------------- remotes


def remote(url, name="team", endpoint_url=None, access_key_id=None, secret_access_key=None, profile=None,
           region=None, keyfile=None, user=None, password=None, jobs=None, default=True, check=True) -> None:
    from ..remotes.config import configure

    with errors_exit():
        done = configure(
            root(), url, name, default=default, check=check, endpoint_url=endpoint_url,
            access_key_id=access_key_id, secret_access_key=secret_access_key, profile=profile, region=region,
            keyfile=keyfile, user=user, password=password, jobs=int(jobs) if jobs else None,
        )
    if done.probed:
        say(f"{done.probed}: write/read/delete probe OK / 读写删除测试通过")
    say(f"remote '{done.name}' → {done.url.url}{' (default / 默认)' if done.default else ''}; "
        f"in .dvc/config.local only / 仅写入 .dvc/config.local: {', '.join(done.secrets) or 'none'}")


def _retrying(err, delay, attempt, retries) -> None:
    say(f"{err.message} — retrying in {delay:g} s ({attempt}/{retries}) / {delay:g} 秒后重试")


def _transferred(result) -> None:
    say(*(f"{stage}: not fetched yet, nothing to {result.direction} / 尚未获取，跳过" for stage in result.skipped))
    say(*(f"WARNING: {w}" for w in result.warnings), result.summary())


def push(remote=None, jobs=None, retries=2) -> None:
    from ..remotes import transfer

    with errors_exit():
        result = transfer.push(root(), remote, jobs=int(jobs) if jobs else None, retries=int(retries),
                               on_retry=_retrying)
    _transferred(result)


def pull(models=None, remote=None, jobs=None, retries=2) -> None:
    from ..remotes import transfer

    with errors_exit():
        result = transfer.pull(root(), models or None, remote, jobs=int(jobs) if jobs else None,
                               retries=int(retries), on_retry=_retrying)
    _transferred(result)


def _ask(question: str) -> bool:
    if not sys.stdin or not sys.stdin.isatty():
        return False
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes", "是")
    except EOFError:
        return False


def clean(yes: bool = False) -> None:
    from ..repo import commands

    with errors_exit():
        done = commands.clean(yes=yes, confirm=_ask)
    say(*(f"kept {path} / 已保留 (push it first: `{cmd('push')}`, or use --yes)" for path in done.kept))
    say(*(f"removed {model} from the workspace / 已从工作区移除" for model in done.removed))
    if not done.removed and not done.kept:
        say("nothing to clean: every model in the workspace is selected / 无需清理")
    say(*[done.note] if done.note else [])


# ---------------------------------------------------------------------------------------------- extract / init


def extract(model="dinov2_vitb14", images="", out="", batch_size=32, weights=None, device=None, dtype=None,
            normalize=False) -> None:
    from ..errors import DinovaultError

    with errors_exit():
        if not images or not out:
            raise DinovaultError(
                "extract needs --images DIR and --out FILE / extract 需要 --images 与 --out",
                f"for example: {cmd('extract --model dinov2_vits14 --images photos --out feats.npz')} / "
                f"例如：{cmd('extract --images 图片文件夹 --out 输出.npz')}",
            )
        size = _check_extract(model, images, out, batch_size)  # before torch is imported (seconds)
        from ..inference import features

        result = features.extract_folder(
            model, images, out, size, weights=weights, device=device, dtype=dtype, normalize=normalize
        )
        say(features.summary(result))


def _check_extract(model: str, images: str, out: str, batch_size) -> int:
    """The arguments of `extract`, checked at once; the batch size as an int."""
    import os

    from ..catalog import get_spec
    from ..errors import UsageError

    get_spec(model)
    try:
        size = int(batch_size)
    except (TypeError, ValueError):
        size = 0
    if size < 1:
        raise UsageError(f"--batch-size must be a whole number of at least 1, got {batch_size!r} / 批大小须为正整数",
                         "e.g. --batch-size 32 / 例如 --batch-size 32")
    if not Path(images).is_dir():
        raise UsageError(f"no image folder at {images} / 图片文件夹不存在：{images}",
                         "pass an existing folder: --images DIR / 请用 --images 指定已存在的文件夹")
    target = Path(out).expanduser().absolute()
    ancestor = next(p for p in target.parents if p.exists())
    if target.is_dir() or not ancestor.is_dir() or not os.access(ancestor, os.W_OK):
        what = "is a folder" if target.is_dir() else f"cannot be created under {ancestor}"
        raise UsageError(f"--out {out} {what} / 无法写入输出文件 {out}",
                         "pass a file path in a writable folder, e.g. --out feats.npz / 请指定可写目录中的文件路径")
    return size


def init() -> None:
    from ..repo.init import init as run

    with errors_exit():
        done = run()
    say(*(f"  kept / 保留: {line}" for line in done.kept))
    say(*(f"  added / 已添加: {line}" for line in done.changed))
    if not done.changed:
        say(f"{done.root}: already set up for dinovault, nothing changed / 已初始化，无变化")
        return
    say(f"{done.root}: ready for dinovault / 已初始化",
        "next / 下一步: dinovault fetch --model dinov2_vitb14   (then / 然后: git add -A && git commit -m 'dinovault')")


def features(name=None, engine=None, address=None, workers=None, stage=False) -> None:
    """`features`: `dvc repro` of the sets' stages, or (``stage``) the computation itself, as the stage runs it."""
    from .. import settings
    from ..features.stages import check_engine

    with errors_exit():
        engine = check_engine(engine or settings.features_engine())
        workers = int(workers) if workers not in (None, "") else settings.features_workers()
        if stage:
            from ..features.engine import run_set
            from ..features.sets import load_sets
            from ..repo.layout import PARAMS_FILE

            found = root()
            for set_name in [name] if name else list(load_sets(found / PARAMS_FILE)[1]):
                say(*run_set(found, set_name, engine, address, workers, progress=sys.stderr.isatty()).lines(found))
            return
        from ..features.stages import STATES, reproduce

        with settings.path_first(Path(sys.executable).parent):
            done = reproduce(root(), [name] if name else None, engine, address, workers)
    say(*(f"{set_name}: {STATES[state]}" for set_name, state in done))
    say("to record and share / 记录并共享: git add params.yaml dvc.lock features/.gitignore && "
        f"git commit -m 'features' && {cmd('push')}")
