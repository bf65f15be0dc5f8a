"""Short commands for dinovault (`invoke --list`). Thin: each task calls the package, prints what it returns and
turns its errors into one `error: ...` line and a non-zero exit.

Everything heavy (DVC, torch) is imported inside the task that needs it, so `invoke --list` is instant.
"""

from __future__ import annotations

import contextlib
import sys

from invoke import task

# The official reference implementation used by the parity tests. It pins torch 2.0, xformers and cuml,
# which we do not want, so it is installed with --no-deps instead of being listed in pyproject.toml.
REFERENCE = ("dinov2", "0.0.1.dev2")
MODEL_HELP = "a torch.hub model name, e.g. dinov2_vitb14; repeat for several / 模型名，可重复"
RETRIES_HELP = "retries after a transient failure such as a lost connection (default 2) / 临时故障后的重试次数"
GIT_HINT = ("to record and share / 记录并共享: git add params.yaml dvc.lock models metrics && git commit -m 'models'"
            " && invoke push")


def say(*lines: str) -> None:
    for line in lines:
        print(line, flush=True)


@contextlib.contextmanager
def errors_exit():
    """A DinovaultError becomes ``error: ...`` on stderr and exit 1; Ctrl-C exits 130. No traceback."""
    from dinovault.errors import DinovaultError

    try:
        yield
    except DinovaultError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print("interrupted / 已中断", file=sys.stderr, flush=True)
        raise SystemExit(130) from None


def _root():
    from dinovault.repo.layout import find_root

    return find_root()


FETCH_STATES = {"ran": "fetched / 已获取", "cached": "restored from DVC's run cache, not run again / 从运行缓存恢复",
                "up to date": "up to date / 已是最新"}


@task(
    iterable=["model"],
    help={
        "model": MODEL_HELP + " (default: every model selected in params.yaml)",
        "allow_unverified": "accept a model with no pinned SHA-256 (card: verified: false) / 接受无固定哈希的模型",
        "url": "the signed download link from Meta's e-mail, in quotes (DINOv3; never stored) / 邮件中的签名下载链接",
    },
)
def fetch(c, model=None, allow_unverified=False, url=None):
    """Download, verify and record models (`dvc repro`)."""
    from dinovault.repo import commands

    with errors_exit():
        report = commands.fetch(model or None, allow_unverified=allow_unverified, url=url)
    _say_fetched(report)


def _say_fetched(report) -> None:
    from dinovault.progress import human_size

    if report.added:
        say(f"selected in params.yaml / 已加入 params.yaml: {', '.join(report.added)}")
    for m in report.models:
        check = "sha256" if m.verified else "UNVERIFIED (no pin) sha256"
        say(f"{m.model}: {m.path}  {human_size(m.size)}  {check}:{m.sha256}  {m.seconds:.1f}s  {FETCH_STATES[m.state]}")
    if report.added or any(m.state != "up to date" for m in report.models):
        say(GIT_HINT)


@task(
    name="import",
    positional=["path"],
    iterable=["also"],
    help={
        "path": "a file or folder downloaded by hand: an official .pth (any name) or a Hugging Face "
        "model.safetensors / 手动下载的文件或文件夹",
        "also": "more files or folders; repeat / 更多文件，可重复",
        "allow_unverified": "accept a recognised file that has no pin (card: verified false) / 接受未固定哈希的文件",
    },
)
def import_(c, path, also=None, allow_unverified=False):
    """Import hand-downloaded weights (verified, no download), then record them like `invoke fetch`."""
    from dinovault.repo import commands
    from dinovault.sources.local import import_models

    with errors_exit():
        done = import_models([path, *(also or [])], allow_unverified=allow_unverified)
        say(*(line for _, line in done))
        report = commands.fetch(list(dict.fromkeys(m for m, _ in done)), allow_unverified=allow_unverified)
    _say_fetched(report)


@task(name="list")
def list_(c):
    """Show every model and where its weights are."""
    from dinovault.progress import human_size
    from dinovault.repo import commands

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


@task(
    help={
        "cloud": "compare the DVC cache with the remote instead of the pipeline with the workspace / 与远端比较",
        "remote": "the remote to compare with (default: the default remote) / 远端名",
    }
)
def status(c, cloud=False, remote=None):
    """Show what `dvc repro` (or `dvc push`) would change."""
    from dinovault.repo import commands

    with errors_exit():
        st = commands.status(cloud=cloud, remote=remote)
    say(f"{st.where}: {'changed / 有变化' if st.changes else 'up to date / 已是最新'}")
    say(*(f"  {target}: {what}" for target, what in st.changes))


@task(
    help={
        "repair": "put good bytes (the DVC remote first, then the pinned sources) in place of missing or damaged "
                  "files / 修复缺失或损坏的文件",
        "remote": "the DVC remote to take good bytes from (default: the default remote) / 远端名",
    }
)
def verify(c, repair=False, remote=None):
    """Re-hash models (workspace, DVC cache, torch.hub cache) against dvc.lock and the pins; --repair fixes them."""
    from dinovault.repo import integrity

    marks = {"ok": "ok  ", "bad": "FAIL", "missing": "FAIL", "unfetched": "-   "}
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


@task(
    help={
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
    }
)
def remote(c, url, name="team", endpoint_url=None, access_key_id=None, secret_access_key=None, profile=None,
           region=None, keyfile=None, user=None, password=None, jobs=None, default=True, check=True):
    """Add or change the team DVC remote (S3, SSH, WebDAV); secrets go to .dvc/config.local; creates and probes it."""
    from dinovault.remotes.config import configure

    with errors_exit():
        done = configure(
            _root(), url, name, default=default, check=check, endpoint_url=endpoint_url,
            access_key_id=access_key_id, secret_access_key=secret_access_key, profile=profile, region=region,
            keyfile=keyfile, user=user, password=password, jobs=int(jobs) if jobs else None,
        )
    if done.probed:
        say(f"{done.probed}: write/read/delete probe OK / 读写删除测试通过")
    say(f"remote '{done.name}' → {done.url.url}{' (default / 默认)' if done.default else ''}; "
        f"in .dvc/config.local only / 仅写入 .dvc/config.local: {', '.join(done.secrets) or 'none'}")


def _retrying(err, delay, attempt, retries) -> None:
    say(f"{err.message} — retrying in {delay:.0f} s ({attempt}/{retries}) / {delay:.0f} 秒后重试")


def _transferred(result) -> None:
    say(*(f"{stage}: not fetched yet, nothing to {result.direction} / 尚未获取，跳过" for stage in result.skipped))
    say(*(f"WARNING: {w}" for w in result.warnings), result.summary())


@task(
    help={
        "remote": "the DVC remote to push to (default: the default remote) / 远端名",
        "jobs": "parallel transfers (default: DVC's) / 并行传输数",
        "retries": RETRIES_HELP,
    }
)
def push(c, remote=None, jobs=None, retries=2):
    """Send what DVC tracks to the remote (`dvc push`): only what it lacks, retried, with a summary."""
    from dinovault.remotes import transfer

    with errors_exit():
        result = transfer.push(_root(), remote, jobs=int(jobs) if jobs else None, retries=int(retries),
                               on_retry=_retrying)
    _transferred(result)


@task(
    iterable=["model"],
    help={
        "model": MODEL_HELP + " (default: every selected model)",
        "remote": "the DVC remote to pull from (default: the default remote) / 远端名",
        "jobs": "parallel transfers (default: DVC's) / 并行传输数",
        "retries": RETRIES_HELP,
    },
)
def pull(c, model=None, remote=None, jobs=None, retries=2):
    """Get recorded models from the DVC remote (`dvc pull`), hash-checked and retried, with a summary."""
    from dinovault.remotes import transfer

    with errors_exit():
        result = transfer.pull(_root(), model or None, remote, jobs=int(jobs) if jobs else None,
                               retries=int(retries), on_retry=_retrying)
    _transferred(result)


def _ask(question: str) -> bool:
    if not sys.stdin or not sys.stdin.isatty():
        return False
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes", "是")
    except EOFError:
        return False


@task(help={"yes": "delete without asking, even files the remote does not hold / 不询问直接删除"})
def clean(c, yes=False):
    """Remove unselected models from the workspace (asks first)."""
    from dinovault.repo import commands

    with errors_exit():
        done = commands.clean(yes=yes, confirm=_ask)
    say(*(f"kept {path} / 已保留 (push it first: `invoke push`, or use --yes)" for path in done.kept))
    say(*(f"removed {model} from the workspace / 已从工作区移除" for model in done.removed))
    if not done.removed and not done.kept:
        say("nothing to clean: every model in the workspace is selected / 无需清理")
    say(*[done.note] if done.note else [])


@task(help={"args": "extra pytest arguments, e.g. '-k pipeline -x' / 额外的 pytest 参数"})
def test(c, args=""):
    """Run the whole test suite."""
    from importlib.metadata import PackageNotFoundError, version

    with errors_exit():
        root = _root()
    try:
        have = version(REFERENCE[0])
    except PackageNotFoundError:
        have = None
    if have != REFERENCE[1]:
        print(f"installing the reference {REFERENCE[0]}=={REFERENCE[1]} (--no-deps) / 安装参考实现", flush=True)
        c.run(f"{sys.executable} -m pip install -q --no-deps {REFERENCE[0]}=={REFERENCE[1]}")
    with c.cd(str(root)):
        result = c.run(f"{sys.executable} -m pytest {args}", warn=True)
    if result.exited:
        raise SystemExit(result.exited)  # pytest's own report is above; its exit code is ours


@task(
    help={
        "model": "a torch.hub model name, e.g. dinov2_vitb14 / 模型名",
        "images": "the folder of images, searched recursively / 图片文件夹（递归）",
        "out": "the .npz to write: features, relative paths, model name / 输出的 .npz 文件",
        "batch_size": "images per forward pass (default 32) / 每批图片数",
        "weights": "checkpoint file or folder (default: models/dinov2 or $DINOVAULT_MODELS_DIR) / 权重文件或文件夹",
        "device": "cpu, cuda, cuda:1… (default: cuda when available) / 设备",
        "dtype": "bfloat16 or float16 to run under autocast (default: float32) / 精度",
        "normalize": "scale every feature vector to unit L2 norm / L2 归一化",
    }
)
def extract(
    c, model="dinov2_vitb14", images="", out="", batch_size=32, weights=None, device=None, dtype=None, normalize=False
):
    """Extract features for every image in a folder into one .npz; unreadable files are listed and skipped."""
    from dinovault.errors import DinovaultError
    from dinovault.inference import features

    with errors_exit():
        if not images or not out:
            raise DinovaultError(
                "extract needs --images DIR and --out FILE / extract 需要 --images 与 --out",
                "for example: invoke extract --model dinov2_vits14 --images photos --out feats.npz / "
                "例如：invoke extract --images 图片文件夹 --out 输出.npz",
            )
        result = features.extract_folder(
            model, images, out, int(batch_size), weights=weights, device=device, dtype=dtype, normalize=normalize
        )
        print(features.summary(result))
