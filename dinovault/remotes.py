"""Team remotes: S3 (and S3-compatible stores), SSH/SFTP and WebDAV as DVC remotes, in one command each.

`configure` writes the remote with the URL and team-wide settings in the tracked ``.dvc/config`` and every secret or
per-person setting in ``.dvc/config.local`` (git-ignored by DVC), creates the bucket or folder, and probes it with a
small write/read/delete. `push` and `pull` wrap the pipeline's (DVC's), retrying transient failures, re-sending
objects a cut-short WebDAV upload left truncated, and summarising what moved.
Every failure becomes one bilingual line saying what failed and what to check (`RemoteError`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .errors import DinovaultError

DEFAULT_NAME = "team"
SCHEMES = ("s3", "ssh", "webdav", "webdavs")
# Uploads to these go straight to the final object name, so an interrupted push can leave a truncated object that
# DVC would later count as present (seen with WebDAV: a 1.6 MB file standing for a 20 MB object).
NON_ATOMIC_UPLOADS = ("webdav", "webdavs", "http", "https")
RETRY_DELAYS = (1.0, 3.0, 8.0)  # seconds before retry 1, 2, 3 of a push or pull


class RemoteError(DinovaultError):
    """A remote that cannot be configured, reached or used; ``str()`` is one line (English / 中文)."""

    def __init__(self, message: str, transient: bool = False, cause: str | None = None):
        super().__init__(message)
        self.transient = transient
        self.cause = cause  # a key of _RULES, or None
        self.original: BaseException | None = None  # the pipeline's error this one explains


# ------------------------------------------------------------------------------------------------------ URLs


@dataclass(frozen=True)
class RemoteURL:
    url: str  # as DVC gets it; never holds a password
    scheme: str  # s3, ssh, webdav, webdavs
    host: str  # bucket for s3
    port: int | None
    path: str  # prefix inside the bucket, or the folder on the server
    user: str | None = None

    @property
    def kind(self) -> str:
        return {"s3": "S3", "ssh": "SSH", "webdav": "WebDAV", "webdavs": "WebDAV"}[self.scheme]


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def parse_url(url: str) -> RemoteURL:
    """Check a remote URL and split it; refuses URLs that would put a password in a tracked file."""
    bad = f"remote URL {url!r}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise RemoteError(f"{bad} does not parse ({err}) / 远程地址无法解析") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise RemoteError(
            f"{bad}: unsupported scheme {scheme or '(none)'!r}; use s3://bucket/prefix, ssh://user@host[:port]/path, "
            f"webdav[s]://host[:port]/path / 不支持的协议，请使用 s3://、ssh://、webdav:// 或 webdavs://"
        )
    if parts.password:
        raise RemoteError(
            f"{bad} contains a password, which would end up in git; pass it with --password or "
            f"--secret-access-key instead / 地址中不能包含密码（会被提交到 git），请用 --password 传入"
        )
    if parts.query or parts.fragment:
        raise RemoteError(f"{bad}: remove the '?…' or '#…' part / 请去掉地址中的 ? 或 # 部分")
    host = parts.hostname or ""
    path = parts.path.rstrip("/")
    if scheme == "s3":
        if not _BUCKET.match(host) or ".." in host:
            raise RemoteError(
                f"{bad}: {host!r} is not a valid bucket name (3–63 lowercase letters, digits, '.', '-') / "
                f"存储桶名称无效（3–63 个小写字母、数字、'.' 或 '-'）"
            )
        if parts.username or port:
            raise RemoteError(
                f"{bad}: an S3 URL is s3://bucket/prefix; give the server with --endpoint-url / "
                f"S3 地址格式为 s3://bucket/prefix，服务器地址请用 --endpoint-url"
            )
        path = path.lstrip("/")
    else:
        if not host:
            raise RemoteError(f"{bad}: no host / 缺少主机名")
        if not path:
            raise RemoteError(f"{bad}: give a folder, e.g. {scheme}://{host}/dvc-store / 请给出服务器上的目录")
    clean = f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}"
    return RemoteURL(url=clean, scheme=scheme, host=host, port=port, path=path, user=parts.username)


# ----------------------------------------------------------------------------------------------- configuring


@dataclass
class Settings:
    """What `configure` writes: ``shared`` to .dvc/config, ``local`` (secrets, per-person) to .dvc/config.local."""

    shared: dict[str, str] = field(default_factory=dict)
    local: dict[str, str] = field(default_factory=dict)


def settings_for(
    remote: RemoteURL,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    profile: str | None = None,
    keyfile: str | None = None,
    user: str | None = None,
    password: str | None = None,
    jobs: int | None = None,
) -> Settings:
    """Sort the options into DVC remote settings, refusing the ones that do not fit the scheme."""
    given = {"endpoint_url": endpoint_url, "region": region, "access_key_id": access_key_id,
             "secret_access_key": secret_access_key, "profile": profile, "keyfile": keyfile, "user": user,
             "password": password}
    allowed = {
        "s3": {"endpoint_url", "region", "access_key_id", "secret_access_key", "profile"},
        "ssh": {"keyfile", "user", "password"},
        "webdav": {"user", "password"},
        "webdavs": {"user", "password"},
    }[remote.scheme]
    wrong = sorted(k for k, v in given.items() if v and k not in allowed)
    if wrong:
        opts = ", ".join("--" + k.replace("_", "-") for k in wrong)
        raise RemoteError(f"{opts} do(es) not apply to a {remote.kind} remote / 这些选项不适用于 {remote.kind} 远程")
    if bool(access_key_id) != bool(secret_access_key):
        raise RemoteError(
            "give both --access-key-id and --secret-access-key (or neither, to use --profile or the AWS_* "
            "environment variables) / 访问密钥 ID 与密钥需同时提供"
        )
    if keyfile and not Path(keyfile).expanduser().is_file():
        raise RemoteError(f"SSH key file {keyfile} does not exist / SSH 私钥文件不存在: {keyfile}")
    out = Settings()
    if endpoint_url:
        if not re.match(r"^https?://[^/\s]+", endpoint_url):
            raise RemoteError(f"--endpoint-url {endpoint_url!r} must look like http(s)://host[:port] / 端点格式错误")
        out.shared["endpointurl"] = endpoint_url.rstrip("/")
    if region:
        out.shared["region"] = region
    if jobs:
        out.shared["jobs"] = str(jobs)
    if remote.scheme in ("webdav", "webdavs") and remote.user and not user:
        user = remote.user
    for key, value in (("access_key_id", access_key_id), ("secret_access_key", secret_access_key),
                       ("profile", profile), ("keyfile", keyfile and str(Path(keyfile).expanduser().resolve())),
                       ("user", user), ("password", password)):
        if value:
            out.local[key] = value
    if remote.scheme == "ssh" and password:
        out.local["ask_password"] = "false"
    return out


@contextlib.contextmanager
def _restored_on_error(root: Path) -> Iterator[None]:
    """Put .dvc/config and .dvc/config.local back as they were if the block fails."""
    saved = {}
    for name in ("config", "config.local"):
        path = root / ".dvc" / name
        saved[path] = path.read_bytes() if path.exists() else None
    try:
        yield
    except BaseException:
        for path, data in saved.items():
            if data is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(data)
        raise


def configure(
    root: str | os.PathLike,
    url: str,
    name: str = DEFAULT_NAME,
    *,
    default: bool = True,
    check: bool = True,
    say: Callable[[str], None] = print,
    **options,
) -> RemoteURL:
    """Add or replace remote ``name`` (the default one unless ``default=False``); create and probe it.

    ``options`` are those of `settings_for`. On any failure the DVC config files are left as they were.
    """
    from dvc.config import ConfigError
    from dvc.repo import Repo

    remote = parse_url(url)
    settings = settings_for(remote, **options)
    root = Path(root)
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", name):
        raise RemoteError(f"remote name {name!r}: use letters, digits, '.', '_', '-' / 远程名称只能含字母、数字、. _ -")
    with _restored_on_error(root):
        try:
            with Repo(root) as repo:
                # DVC validates the merged config on every edit, so the old local settings go first (an S3 key
                # would not be valid next to a new ssh:// URL)
                with repo.config.edit("local") as conf:
                    conf["remote"].pop(name, None)
                with repo.config.edit("repo") as conf:
                    conf["remote"][name] = {"url": remote.url, **settings.shared}
                    if default:
                        conf["core"]["remote"] = name
                if settings.local:
                    with repo.config.edit("local") as conf:
                        conf["remote"][name] = dict(settings.local)
        except ConfigError as err:
            raise RemoteError(f"DVC refused the remote settings: {err} / DVC 拒绝了这些远程设置") from None
        if check:
            probe(root, name, create=True, say=say)
    secrets = ", ".join(sorted(settings.local)) or "none"
    say(f"remote '{name}' → {remote.url}{' (default / 默认)' if default else ''}; "
        f"in .dvc/config.local only / 仅写入 .dvc/config.local: {secrets}")
    return remote


# ---------------------------------------------------------------------------------------------- probing


def _open_remote(root: Path, name: str | None):
    """(repo, remote) for ``name`` or the default remote; the caller closes the repo."""
    from dvc.config import NoRemoteError
    from dvc.repo import Repo

    repo = Repo(root)
    try:
        return repo, repo.cloud.get_remote(name)
    except NoRemoteError:
        repo.close()
        raise RemoteError(
            f"no DVC remote is configured{f' under the name {name!r}' if name else ''} / 未配置 DVC 远端 — add one: "
            "`invoke remote --url s3://bucket/prefix` (or ssh://, webdav://) or `dvc remote add -d NAME URL`"
        ) from None
    except Exception:
        repo.close()
        raise


_DEFAULT_PORTS = {"ssh": 22, "http": 80, "webdav": 80, "https": 443, "webdavs": 443}
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def reach(repo, name: str | None = None, timeout: float = 10.0) -> None:
    """Open (and close) a TCP connection to a network remote's server (default: the default remote), so that a
    wrong host or port is told at once rather than after the client library's own retries (botocore takes about
    40 s to give up on an unknown host), and 'does not answer' is told apart from 'empty'."""
    import socket

    cfg = repo.config["remote"].get(name or repo.config["core"].get("remote"), {})
    url = urlsplit(cfg.get("url", ""))
    if url.scheme == "s3":
        if not cfg.get("endpointurl"):
            return  # AWS itself
        url = urlsplit(cfg["endpointurl"])
    if url.scheme not in _DEFAULT_PORTS or not url.hostname:
        return
    if url.scheme != "ssh" and any(os.environ.get(v) for v in _PROXY_VARS):
        return  # the client goes through a proxy; a direct connection proves nothing
    port = url.port or int(cfg.get("port") or _DEFAULT_PORTS[url.scheme])
    socket.create_connection((url.hostname, port), timeout=timeout).close()


def probe(root: str | os.PathLike, name: str | None = None, *, create: bool = True,
          say: Callable[[str], None] = print) -> None:
    """Create the remote's bucket/folder if missing, then write, read back and delete a small object."""
    repo, remote = _open_remote(Path(root), name)
    fs, path = remote.fs, remote.path
    where = _describe(repo, remote)
    step = "connect / 连接"
    try:
        with repo:
            reach(repo, remote.name)
            if create:
                step = "create the bucket or folder / 创建存储桶或目录"
                _ensure_container(fs, path)
            token = f".dinovault-probe-{uuid.uuid4().hex}"
            probe_path = fs.join(path, token)
            data = b"dinovault probe " + token.encode()
            step = "write / 写入"
            fs.pipe_file(probe_path, data)
            step = "read back / 读回"
            back = fs.cat_file(probe_path)
            step = "delete / 删除"
            fs.rm_file(probe_path)
            if back != data:
                raise RemoteError(f"{where}: the probe read back differs from what was written / 读回的数据不一致")
    except RemoteError:
        raise
    except Exception as err:  # noqa: BLE001 - every failure becomes one explained line
        raise explain_text(_why_forbidden(remote, _chain_text(err)), where, f"probe: {step}") from None
    say(f"{where}: write/read/delete probe OK / 读写删除测试通过")


def _ensure_container(fs, path: str) -> None:
    if fs.protocol == "s3":
        bucket = path.split("/", 1)[0]
        if not fs.exists(bucket):
            try:
                fs.fs.mkdir(bucket)  # s3fs: a bare bucket name creates the bucket
            except FileExistsError:  # another account's bucket (HEAD said 403): the write probe tells if we may
                pass
        return
    if fs.protocol in ("webdav", "webdavs"):
        # DVC's WebDAV paths are relative to the remote's URL, so the folders of the URL itself are made from the
        # server's root: up to the deepest one that exists (a server's root may not be listable, e.g. Nextcloud),
        # then one MKCOL per missing level.
        from webdav4.fsspec import WebdavFileSystem

        args = {k: v for k, v in fs.fs_args.items() if k not in ("base_url", "skip_instance_cache")}
        base = urlsplit(fs.fs_args["base_url"])
        top = WebdavFileSystem(base_url=f"{base.scheme}://{base.netloc}", skip_instance_cache=True, **args)
        parts = [p for p in base.path.split("/") if p]
        have = len(parts)
        while have > 0 and not top.exists("/".join(parts[:have])):
            have -= 1
        for i in range(have + 1, len(parts) + 1):
            top.mkdir("/".join(parts[:i]), create_parents=False)
        return
    fs.makedirs(path, exist_ok=True)


def _describe(repo, remote) -> str:
    cfg = repo.config["remote"].get(remote.name, {})
    where = cfg.get("url", remote.path)
    if cfg.get("endpointurl"):
        where += f" at {cfg['endpointurl']}"
    return f"remote '{remote.name}' ({where})"


# --------------------------------------------------------------------------------------- explaining errors


_RULES: list[tuple[str, str, str, str]] = [
    # (cause, pattern over the error chain and DVC's log, what failed, what to check); first match wins
    ("credentials",
     r"SignatureDoesNotMatch|InvalidAccessKeyId|InvalidClientTokenId|AuthorizationHeaderMalformed"
     r"|\b401\b|Unauthorized|PermissionDenied\b|Permission denied \(publickey|No more authentication methods"
     r"|Authentication failed|NoCredentialsError|Unable to locate credentials|Auth fail",
     "wrong or missing credentials / 凭据错误或缺失",
     "check the key, secret, key file or password in .dvc/config.local (run `invoke remote …` again) / "
     "请检查 .dvc/config.local 中的密钥、私钥文件或密码"),
    ("permission",
     r"AccessDenied|\b403\b|Forbidden|Permission denied|PermissionError|EACCES|Errno 13|read-only file system",
     "permission denied / 没有权限",
     "check that this user may write to the bucket or folder / 请检查该用户对存储桶或目录的写权限"),
    ("host",
     r"Name or service not known|nodename nor servname|getaddrinfo|Could not resolve|Temporary failure in name "
     r"resolution|gaierror|No address associated",
     "unknown host / 主机名无法解析",
     "check the host name in the URL or --endpoint-url / 请检查地址或 --endpoint-url 中的主机名"),
    ("bucket", r"NoSuchBucket|bucket does not exist",
     "the bucket does not exist / 存储桶不存在",
     "run `invoke remote --url …` to create it, or check its name / 请运行 invoke remote 创建，或检查名称"),
    ("refused", r"Connection refused|ConnectionRefused|Errno 111|ECONNREFUSED|Could not connect to the endpoint",
     "connection refused / 连接被拒绝",
     "check that the server is running and the port is right / 请检查服务器是否在运行、端口是否正确"),
    ("lost",
     r"Connection not open|Connection lost|ConnectionLost|Connection reset|ConnectionReset|Broken pipe"
     r"|Server disconnected|RemoteProtocolError|ReadError|WriteError|IncompleteRead|EndpointConnectionError"
     r"|Connection closed|ServerDisconnected|ClientOSError|ConnectionError|ConnectError|Errno 104|Errno 32",
     "connection lost / 连接中断",
     "the server went away during the transfer; rerun when it is back, only what is missing is sent / "
     "传输中服务器断开；恢复后重新运行即可，只会发送缺失的部分"),
    ("timeout", r"timed out|Timeout|ETIMEDOUT", "timed out / 超时",
     "check the network and that the server is not overloaded / 请检查网络与服务器负载"),
    ("server", r"\b50[0234]\b|InternalError|ServiceUnavailable|SlowDown|Service Unavailable|Bad Gateway",
     "server error / 服务器错误", "retry later or check the server's logs / 请稍后重试或查看服务器日志"),
    ("space", r"No space left|ENOSPC|QuotaExceeded|Insufficient Storage|\b507\b",
     "no space left / 空间不足", "free space on the remote / 请清理远程存储空间"),
    ("corrupt", r"corrupt|hash mismatch|checksum mismatch",
     "an object on the remote is corrupted (its hash does not match; it was not placed in the workspace) / "
     "远程对象已损坏（哈希不符，未放入工作区）",
     "push it again from a machine that has the file (`invoke push`) / 请在有该文件的机器上重新 invoke push"),
    ("missing", r"Missing cache files|neither locally nor on remote|failed to pull data",
     "the remote lacks some files / 远程存储缺少部分文件",
     "run `invoke push` where they were fetched, or check --remote / 请在获取模型的机器上运行 invoke push"),
]
TRANSIENT = {"refused", "lost", "timeout", "server"}


def _chain_text(err: BaseException) -> str:
    seen, parts = set(), []
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        parts.append(f"{type(err).__name__}: {err}")
        response = getattr(err, "response", None)
        if isinstance(response, dict):  # botocore ClientError
            parts.append(str(response.get("Error", {}).get("Code", "")))
        err = err.__cause__ or err.__context__
    return " | ".join(parts)


def explain_text(text: str, where: str, doing: str) -> RemoteError:
    """The first rule that matches ``text`` gives the line; ``cause`` is None when none does."""
    for cause, pattern, what, check in _RULES:
        if re.search(pattern, text, re.IGNORECASE):
            return RemoteError(f"{where}: {doing} failed: {what} — {check}", cause in TRANSIENT, cause)
    detail = text.strip().splitlines()[0][:300] if text.strip() else "unknown error"
    return RemoteError(f"{where}: {doing} failed: {detail} / 操作失败")


def _why_forbidden(remote, text: str) -> str:
    """S3 answers a HEAD with a bare 403 both for a wrong secret and for a missing permission; a LIST answers with
    the real error code, so ask once more when that is all we have."""
    if remote.fs.protocol != "s3" or not re.search(r"\b403\b|Forbidden", text) or re.search(
        r"SignatureDoesNotMatch|InvalidAccessKeyId|AccessDenied", text
    ):
        return text
    try:
        remote.fs.fs.ls(remote.path.split("/", 1)[0], refresh=True)
    except Exception as err:  # noqa: BLE001
        return _chain_text(err) + " | " + text
    return text


class _Captured(logging.Handler):
    """Collects what DVC logs at WARNING and above during a transfer, so the cause can be explained."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.texts: list[str] = []
        self.warnings: list[str] = []  # shown after a transfer that succeeds

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.levelno == logging.WARNING:
            self.warnings.append(text)
        if record.exc_info and record.exc_info[1] is not None:
            text += " | " + _chain_text(record.exc_info[1])
        self.texts.append(text)


@contextlib.contextmanager
def _capture_dvc_logs() -> Iterator[_Captured]:
    handler = _Captured()
    loggers = [logging.getLogger(n) for n in ("dvc", "dvc_data", "dvc_objects")]
    saved = [(lg, lg.propagate, lg.handlers[:], lg.level) for lg in loggers]
    for lg in loggers:  # our one line replaces DVC's error line per file
        lg.handlers[:] = [handler]
        lg.propagate = False
        lg.setLevel(logging.INFO)  # DVC draws its progress bars (on a terminal) only at INFO, as its CLI does
    try:
        yield handler
    finally:
        for lg, propagate, handlers, level in saved:
            lg.handlers[:] = handlers
            lg.propagate = propagate
            lg.setLevel(level)


# ------------------------------------------------------------------------------------------ push and pull


@dataclass
class Transfer:
    """What one `push` or `pull` moved, over all its attempts."""

    direction: str  # "push" or "pull"
    remote: str
    objects: int = 0
    bytes: int = 0
    present: int = 0  # objects the destination already had
    repaired: int = 0  # truncated objects found on the remote and sent again
    seconds: float = 0.0
    attempts: int = 0

    def summary(self) -> str:
        mb = self.bytes / 1e6
        rate = f", {mb / self.seconds:.0f} MB/s" if self.seconds > 0 and self.bytes else ""
        verb, zh = ("sent", "已上传") if self.direction == "push" else ("received", "已下载")
        extra = f", {self.repaired} truncated object(s) sent again" if self.repaired else ""
        retried = f", {self.attempts} attempts" if self.attempts > 1 else ""
        return (f"{verb} {self.objects} object(s), {mb:.1f} MB in {self.seconds:.1f} s{rate} "
                f"({'to' if self.direction == 'push' else 'from'} '{self.remote}'; {self.present} already there"
                f"{extra}{retried}) / {zh} {self.objects} 个对象，{mb:.1f} MB")


def _local_size(repo, hash_info) -> int:
    try:
        return os.path.getsize(repo.cache.local.oid_to_path(hash_info.value))
    except OSError:
        return 0


def _plan_push(root: Path, remote_name: str | None, jobs: int | None) -> tuple[str, str, set, int, int]:
    """(remote name, description, objects to send with their sizes, objects already there, truncated ones removed).

    Truncated objects (a WebDAV upload cut short) are deleted so that DVC sends them again.
    """
    repo, remote = _open_remote(root, remote_name)
    with repo:
        where = _describe(repo, remote)
        try:
            reach(repo, remote.name)
            objs = set()
            for hashes in repo.used_objs(remote=remote.name).values():
                objs.update(hashes)
            status = repo.cloud.status(objs, jobs=jobs, remote=remote.name)
            to_send, present = set(status.new), set(status.ok)
            repaired = 0
            if remote.fs.protocol in NON_ATOMIC_UPLOADS and present:
                odb = repo.cloud.get_remote_odb(remote.name, "push")
                for hi in list(present):
                    want = _local_size(repo, hi)
                    try:
                        have = odb.fs.size(odb.oid_to_path(hi.value))
                    except FileNotFoundError:
                        continue
                    if want and have is not None and have != want:
                        odb.fs.rm_file(odb.oid_to_path(hi.value))
                        present.discard(hi)
                        to_send.add(hi)
                        repaired += 1
            sizes = {hi.value: _local_size(repo, hi) for hi in to_send}
        except Exception as err:  # noqa: BLE001 - explained below
            _forget_connections(remote)
            raise explain_text(_why_forbidden(remote, _chain_text(err)), where, "push") from None
        return remote.name, where, sizes, len(present), repaired


def _cache_objects(root: Path) -> dict[str, int]:
    """Path → size of every object in the repository's DVC cache (default location, or core cache.dir)."""
    from dvc.repo import Repo

    with Repo(root) as repo:
        cache = Path(repo.cache.local.path)
    out = {}
    for dirpath, _dirs, files in os.walk(cache):
        for f in files:
            p = os.path.join(dirpath, f)
            with contextlib.suppress(OSError):
                out[p] = os.path.getsize(p)
    return out


def _forget_connections(remote) -> None:
    """Drop cached fsspec filesystems so a retry opens fresh connections instead of reusing dead ones."""
    with contextlib.suppress(Exception):
        type(remote.fs.fs).clear_instance_cache()


def _explain_failure(root: Path, remote_name: str | None, text: str, doing: str) -> tuple[str, RemoteError]:
    try:
        repo, remote = _open_remote(root, remote_name)
    except RemoteError:
        return remote_name or "?", explain_text(text, f"remote {remote_name or '(default)'}", doing)
    with repo:
        err = explain_text(_why_forbidden(remote, text), _describe(repo, remote), doing)
        _forget_connections(remote)
        return remote.name, err


# Where the pipeline's own message is as clear as ours (and its tests rely on it), it is kept.
KEEP_PIPELINE_MESSAGE = {"push": {"corrupt", "missing", None}, "pull": {"refused", "corrupt", "missing", None}}


def _transfer(direction: str, root, remote_name, jobs, retries, say, models=None) -> Transfer:
    """Run the pipeline's `push`/`pull` (DVC's) with retries, a cause for every failure, and a summary."""
    from . import pipeline

    root = Path(root)
    delays = RETRY_DELAYS[: max(0, retries)]
    result = Transfer(direction, remote_name or "")
    before: dict[str, int] = {}
    contacted = False  # failures before the server ever answered are not retried: nothing is running there
    t0 = time.monotonic()
    while True:
        result.attempts += 1
        try:
            if direction == "push":
                name, _where, sizes, present, repaired = _plan_push(root, remote_name, jobs)
                contacted = True
                result.remote = name
                if result.attempts == 1:  # counts what had to move; later attempts only finish it
                    result.objects, result.bytes, result.present = len(sizes), sum(sizes.values()), present
                else:
                    result.objects += repaired
                result.repaired += repaired
            elif result.attempts == 1:
                before = _cache_objects(root)
            with _capture_dvc_logs() as logs:
                try:
                    if direction == "push":
                        pipeline.push(root, remote=remote_name, jobs=jobs)
                    else:
                        pipeline.pull(root, models=models, remote=remote_name, jobs=jobs)
                except Exception as err:  # noqa: BLE001 - explained below
                    contacted = contacted or bool(logs.texts)
                    text = " | ".join([*logs.texts, _chain_text(err)])
                    result.remote, mine = _explain_failure(root, remote_name, text, direction)
                    mine.original = err
                    raise mine from None
            for warning in logs.warnings:
                say(f"WARNING: {warning}")
        except RemoteError as err:
            if err.transient and contacted and result.attempts <= len(delays):
                delay = delays[result.attempts - 1]
                say(f"{err} — retrying in {delay:.0f} s ({result.attempts}/{len(delays)}) / {delay:.0f} 秒后重试")
                time.sleep(delay)
                continue
            if isinstance(err.original, DinovaultError) and err.cause in KEEP_PIPELINE_MESSAGE[direction]:
                raise err.original from None
            raise
        if direction == "pull":
            new = {p: size for p, size in _cache_objects(root).items() if p not in before}
            result.objects, result.bytes, result.present = len(new), sum(new.values()), len(before)
        result.seconds = time.monotonic() - t0
        return result


def push(root: str | os.PathLike, remote: str | None = None, *, jobs: int | None = None, retries: int = 2,
         say: Callable[[str], None] = print) -> Transfer:
    """`invoke push`: DVC's push of everything tracked, retried on transient failures; only what the remote lacks
    (or holds truncated) is sent."""
    result = _transfer("push", root, remote, jobs, retries, say)
    say(result.summary())
    return result


def pull(root: str | os.PathLike, models: list[str] | None = None, remote: str | None = None, *,
         jobs: int | None = None, retries: int = 2, say: Callable[[str], None] = print) -> Transfer:
    """`invoke pull`: the pipeline's hash-checked pull (only ``models`` when given), retried on transient failures."""
    result = _transfer("pull", root, remote, jobs, retries, say, models=models)
    say(result.summary())
    return result
