"""`invoke remote`: S3 (and S3-compatible stores), SSH/SFTP, WebDAV and local folders (a NAS, a USB disk) as DVC
remotes, in one command each.

The URL and team-wide settings (``verify = true`` among them: every pull re-hashes what it downloads, a plain `dvc
pull` too) go to the tracked ``.dvc/config``, every secret or per-person setting to ``.dvc/config.local`` (git-ignored
by DVC); the bucket or folder is created and probed. On any failure both files are left as they were.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import RemoteError
from ..files import write_atomic
from ..repo.dvc import describe, open_repo
from .bounded import deadline, request_timeouts, signals_unwind, within
from .probe import probe

DEFAULT_NAME = "team"
SCHEMES = {"s3": "S3", "ssh": "SSH", "webdav": "WebDAV", "webdavs": "WebDAV", "local": "local folder"}
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_FIX = "fix the option and run `invoke remote` again / 请修正后重新运行 invoke remote"


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
        return SCHEMES[self.scheme]


def parse_url(url: str) -> RemoteURL:
    """Check a remote URL and split it; refuses URLs that would put a password in a tracked file. A path without a
    scheme is a local folder (a mounted NAS, a USB disk), which must be absolute on this machine."""
    bad = f"remote URL {url!r}"
    if "://" not in url:
        folder = Path(url).expanduser()
        if not folder.is_absolute():
            raise RemoteError(f"{bad}: a local folder remote needs an absolute path on this machine / "
                              "本地目录须为绝对路径",
                              "e.g. --url /mnt/nas/dvc (Windows: --url D:\\dvc-store) / 例如 --url /mnt/nas/dvc")
        return RemoteURL(url=str(folder), scheme="local", host="", port=None, path=str(folder))
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise RemoteError(f"{bad} does not parse ({err}) / 远程地址无法解析", _FIX) from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise RemoteError(f"{bad}: unsupported scheme {scheme or '(none)'!r} / 不支持的协议",
                          "use s3://bucket/prefix, ssh://user@host[:port]/path, webdav[s]://host[:port]/path or "
                          "a folder: /mnt/nas/dvc")
    if parts.password:
        raise RemoteError(f"{bad} contains a password, which would end up in git / 地址中不能包含密码",
                          "pass it with --password or --secret-access-key instead / 请用 --password 传入")
    if parts.query or parts.fragment:
        raise RemoteError(f"{bad}: remove the '?…' or '#…' part / 请去掉地址中的 ? 或 # 部分", _FIX)
    host, path = parts.hostname or "", parts.path.rstrip("/")
    if scheme == "s3":
        if not _BUCKET.match(host) or ".." in host:
            raise RemoteError(f"{bad}: {host!r} is not a valid bucket name / 存储桶名称无效",
                              "3–63 lowercase letters, digits, '.', '-' / 3–63 个小写字母、数字、'.' 或 '-'")
        if parts.username or port:
            raise RemoteError(f"{bad}: an S3 URL is s3://bucket/prefix / S3 地址格式为 s3://bucket/prefix",
                              "give the server with --endpoint-url / 服务器地址请用 --endpoint-url")
        path = path.lstrip("/")
    elif not host:
        raise RemoteError(f"{bad}: no host / 缺少主机名", _FIX)
    elif not path:
        raise RemoteError(f"{bad}: no folder / 缺少目录", f"e.g. {scheme}://{host}/dvc-store / 请给出服务器上的目录")
    clean = f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}"
    return RemoteURL(url=clean, scheme=scheme, host=host, port=port, path=path, user=parts.username)


def ascii_only(**values) -> None:
    """DVC writes .dvc/config and config.local in ASCII only (configobj without an encoding): a non-ASCII URL or
    setting would end in UnicodeEncodeError and a truncated config, so it is refused first."""
    for key, value in values.items():
        if isinstance(value, str) and not value.isascii():
            option = "--" + key.replace("_", "-")
            shown = "(hidden)" if key in ("password", "secret_access_key") else repr(value)
            raise RemoteError(
                f"{option} {shown} has non-ASCII characters, which DVC cannot write to its config files / "
                "DVC 的配置文件只能写入 ASCII 字符",
                "use an ASCII name: on the server a link such as `ln -s '/srv/远端 dir' /srv/dvc`, an ASCII user "
                "name, a key file under an ASCII path / 请使用 ASCII 名称（可在服务器上建符号链接）",
            )


@dataclass
class Options:
    """What `configure` writes: ``shared`` to .dvc/config, ``local`` (secrets, per-person) to .dvc/config.local."""

    shared: dict[str, str] = field(default_factory=dict)
    local: dict[str, str] = field(default_factory=dict)


_ALLOWED = {
    "s3": {"endpoint_url", "region", "access_key_id", "secret_access_key", "profile"},
    "ssh": {"keyfile", "user", "password"},
    "webdav": {"user", "password"},
    "webdavs": {"user", "password"},
    "local": set(),
}


def options_for(remote: RemoteURL, *, endpoint_url=None, region=None, access_key_id=None, secret_access_key=None,
                profile=None, keyfile=None, user=None, password=None, jobs: int | None = None) -> Options:
    """Sort the options into DVC remote settings, refusing the ones that do not fit the scheme."""
    given = {"endpoint_url": endpoint_url, "region": region, "access_key_id": access_key_id,
             "secret_access_key": secret_access_key, "profile": profile, "keyfile": keyfile, "user": user,
             "password": password}
    wrong = sorted(k for k, v in given.items() if v and k not in _ALLOWED[remote.scheme])
    if wrong:
        opts = ", ".join("--" + k.replace("_", "-") for k in wrong)
        raise RemoteError(f"{opts} do(es) not apply to a {remote.kind} remote / 这些选项不适用于该远程", _FIX)
    if bool(access_key_id) != bool(secret_access_key):
        raise RemoteError("give both --access-key-id and --secret-access-key / 访问密钥 ID 与密钥需同时提供",
                          "or neither, to use --profile or the AWS_* environment variables / 或都不提供")
    if keyfile and not Path(keyfile).expanduser().is_file():
        raise RemoteError(f"SSH key file {keyfile} does not exist / SSH 私钥文件不存在: {keyfile}", _FIX)
    out = Options()
    if endpoint_url:
        if not re.match(r"^https?://[^/\s]+", endpoint_url):
            raise RemoteError(f"--endpoint-url {endpoint_url!r} must look like http(s)://host[:port] / 端点格式错误",
                              _FIX)
        out.shared["endpointurl"] = endpoint_url.rstrip("/")
    if region:
        out.shared["region"] = region
    if jobs:
        out.shared["jobs"] = str(jobs)
    if remote.scheme in ("webdav", "webdavs") and remote.user and not user:
        user = remote.user
    keyfile = keyfile and str(Path(keyfile).expanduser().resolve())
    for key, value in (("access_key_id", access_key_id), ("secret_access_key", secret_access_key),
                       ("profile", profile), ("keyfile", keyfile), ("user", user), ("password", password)):
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
                write_atomic(path, data)
        raise


@dataclass(frozen=True)
class Configured:
    url: RemoteURL
    name: str
    default: bool
    probed: str | None  # the remote's description when the probe passed; None with check=False
    secrets: list[str]  # the settings written to .dvc/config.local only


def configure(root: Path, url: str, name: str = DEFAULT_NAME, *, default: bool = True, check: bool = True,
              **options) -> Configured:
    """Add or replace remote ``name`` (the default one unless ``default=False``); create and probe it.

    ``options`` are those of `options_for`. On any failure the DVC config files are left as they were.
    """
    from dvc.config import ConfigError

    ascii_only(url=url, **options)
    remote = parse_url(url)
    opts = options_for(remote, **options)
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", name):
        raise RemoteError(f"remote name {name!r} / 远程名称无效",
                          "use letters, digits, '.', '_', '-' / 只能含字母、数字、. _ -")
    probed = None
    with signals_unwind(), _restored_on_error(root), open_repo(root) as repo:
        if check:  # before anything is written: killed or timed out, it leaves the config files as they were
            probed = _probe_in_memory(repo, name, {"url": remote.url, **opts.shared, **opts.local})
        try:
            # DVC validates the merged config on every edit, so the old local settings go first (an S3 key would not
            # be valid next to a new ssh:// URL)
            with repo.config.edit("local") as conf:
                conf["remote"].pop(name, None)
            with repo.config.edit("repo") as conf:
                # verify: every `dvc pull` re-hashes what arrives, a plain one by a teammate too
                conf["remote"][name] = {"url": remote.url, "verify": "true", **opts.shared}
                if default:
                    conf["core"]["remote"] = name
            if opts.local:
                with repo.config.edit("local") as conf:
                    conf["remote"][name] = dict(opts.local)
        except ConfigError as err:
            raise RemoteError(f"DVC refused the remote settings: {err} / DVC 拒绝了这些远程设置", _FIX) from None
    return Configured(remote, name, default, probed, sorted(opts.local))


def _probe_in_memory(repo, name: str, remote: dict) -> str:
    """Create and probe remote ``name`` as this command's DVC config holds it in memory only, each request with a
    timeout and the whole within a deadline (bounded.py)."""
    from dvc.config import Config, ConfigError

    try:
        repo.config["remote"][name] = Config.validate({"remote": {name: request_timeouts(remote)}})["remote"][name]
    except ConfigError as err:
        raise RemoteError(f"DVC refused the remote settings: {err} / DVC 拒绝了这些远程设置", _FIX) from None
    return within(deadline(), lambda: probe(repo, name, create=True), describe(repo, name))
