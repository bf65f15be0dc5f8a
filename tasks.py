"""Short commands for dinovault (`invoke --list`). Thin: each task composes DVC and the package.

Everything heavy (DVC, torch) is imported inside the task that needs it, so `invoke --list` is instant.
"""

from __future__ import annotations

import sys

from invoke import task

# The official reference implementation used by the parity tests. It pins torch 2.0, xformers and cuml,
# which we do not want, so it is installed with --no-deps instead of being listed in pyproject.toml.
REFERENCE = ("dinov2", "0.0.1.dev2")
MODEL_HELP = "a torch.hub model name, e.g. dinov2_vitb14; repeat for several / 模型名，可重复"


def _pipeline():
    from dinovault import pipeline

    return pipeline


@task(iterable=["model"], help={"model": MODEL_HELP + " (default: every model selected in params.yaml)"})
def fetch(c, model=None):
    """Download, verify and record models (`dvc repro`)."""
    p = _pipeline()
    with p.exit_on_error():
        p.fetch(model or None)


@task(name="list")
def list_(c):
    """Show every model and where its weights are."""
    p = _pipeline()
    with p.exit_on_error():
        p.list_models()


@task(
    help={
        "cloud": "compare the DVC cache with the remote instead of the pipeline with the workspace / 与远端比较",
        "remote": "the remote to compare with (default: the default remote) / 远端名",
    }
)
def status(c, cloud=False, remote=None):
    """Show what `dvc repro` (or `dvc push`) would change."""
    p = _pipeline()
    with p.exit_on_error():
        p.status(cloud=cloud, remote=remote)


@task
def verify(c):
    """Re-hash workspace models against dvc.lock and the pinned SHA-256."""
    p = _pipeline()
    with p.exit_on_error():
        p.verify()


RETRIES_HELP = "retries after a transient failure such as a lost connection (default 2) / 临时故障后的重试次数"


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
    from dinovault import remotes

    p = _pipeline()
    with p.exit_on_error():
        remotes.configure(
            p.find_root(), url, name, default=default, check=check, endpoint_url=endpoint_url,
            access_key_id=access_key_id, secret_access_key=secret_access_key, profile=profile, region=region,
            keyfile=keyfile, user=user, password=password, jobs=int(jobs) if jobs else None,
        )


@task(
    help={
        "remote": "the DVC remote to push to (default: the default remote) / 远端名",
        "jobs": "parallel transfers (default: DVC's) / 并行传输数",
        "retries": RETRIES_HELP,
    }
)
def push(c, remote=None, jobs=None, retries=2):
    """Send what DVC tracks to the remote (`dvc push`): only what it lacks, retried, with a summary."""
    from dinovault import remotes

    p = _pipeline()
    with p.exit_on_error():
        remotes.push(p.find_root(), remote, jobs=int(jobs) if jobs else None, retries=int(retries))


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
    from dinovault import remotes

    p = _pipeline()
    with p.exit_on_error():
        remotes.pull(p.find_root(), model or None, remote, jobs=int(jobs) if jobs else None, retries=int(retries))


@task(help={"yes": "delete without asking, even files the remote does not hold / 不询问直接删除"})
def clean(c, yes=False):
    """Remove unselected models from the workspace (asks first)."""
    p = _pipeline()
    with p.exit_on_error():
        p.clean(yes=yes)


@task(help={"args": "extra pytest arguments, e.g. '-k pipeline -x' / 额外的 pytest 参数"})
def test(c, args=""):
    """Run the whole test suite."""
    from importlib.metadata import PackageNotFoundError, version

    p = _pipeline()
    with p.exit_on_error():
        root = p.find_root()
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
    from dinovault import features
    from dinovault.errors import DinovaultError

    p = _pipeline()
    with p.exit_on_error():
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
