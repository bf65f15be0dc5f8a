"""Opening DVC and explaining its failures: one ``dvc.repo.Repo`` per command (`open_repo`), every DVC failure one
bilingual error by one table (`explain`); DVC is imported inside the functions. ``Repo`` methods are called where
they are needed (repo/commands.py, remotes/transfer.py); what no ``Repo`` method does uses DVC's object databases
(``repo.cache.local``, ``repo.cloud``) beside its feature: remotes/transfer.py, repo/objects.py, repo/integrity.py."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from pathlib import Path

from .. import settings
from ..errors import DinovaultError, RemoteError, RepoError
from ..files import working_directory
from .known_errors import LOCAL_SPACE, dvc_error, stage_failed


@contextlib.contextmanager
def open_repo(root: Path, remote: str | None = None, verify: bool = False) -> Iterator:
    """The command's ``dvc.repo.Repo``, closed after it. ``verify`` makes downloads from ``remote`` (default: the
    default remote) re-hash what arrives, whatever its config says."""
    from dvc.config import Config
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        # DVC reloads its config from the files during a pull (Repo._reset), so a setting made in repo.config is
        # lost; ``remote_config`` is merged into every reload. It needs a remote's name, read from the files first.
        name = (remote or Config(str(Path(root) / ".dvc"))["core"].get("remote")) if verify else None
        repo = Repo(str(root), remote=remote, remote_config={"verify": True} if name else None)
        if name and name.lower() not in repo.config["remote"]:  # no such remote: DVC's own error, not a KeyError
            repo.close()
            repo = Repo(str(root), remote=remote)
    except DvcException as err:
        raise RepoError(f"DVC cannot open {root}: {err} / DVC 无法打开仓库", "run `dvc doctor` / 请检查 DVC") from None
    repo.scm_context.quiet = True  # the tasks print one git hint of their own
    from .known_errors import unchosen_export

    quiet = logging.getLogger("dvc.output")
    quiet.addFilter(unchosen_export)
    try:
        with working_directory(root):  # DVC reads targets (fetch@<model>, paths) and prints paths relative to it
            yield repo
    finally:
        quiet.removeFilter(unchosen_export)
        repo.close()


def remote_name(repo, name: str | None = None) -> str | None:
    return name or repo.config["core"].get("remote")


def describe(repo, name: str | None = None) -> str:
    """``remote 'name' (url[ at endpoint])`` of the remote a command would use, or a note that there is none."""
    name = remote_name(repo, name)
    if not name:
        return "(no default remote / 无默认远端)"
    cfg = repo.config["remote"].get(name, {})
    where = cfg.get("url", "?") + (f" at {cfg['endpointurl']}" if cfg.get("endpointurl") else "")
    return f"remote '{name}' ({where})"


def remote_has(repo, md5s: set[str], name: str | None = None) -> tuple[set[str] | None, str]:
    """Which of ``md5s`` remote ``name`` (default: the default one) holds; None (and a note) when there is none or it
    does not answer. Asked by existence: DVC's ``oids_exist`` re-hashes a folder remote's objects and deletes a
    corrupt one there, unseen (repo/objects.py tells damage from absence by reading back)."""
    if not remote_name(repo, name):
        return None, "remote: none configured / 未配置远端 (dvc remote add -d NAME URL)"
    if not md5s:
        return set(), ""
    try:
        odb = repo.cloud.get_remote_odb(name)
        return {oid for oid in md5s if odb.fs.exists(odb.oid_to_path(oid))}, ""
    except Exception as err:  # noqa: BLE001 - any remote failure only blanks one column of a listing
        return None, f"{describe(repo, name)} did not answer / 远端无响应: {err}"


# ------------------------------------------------------------------------------------------------ explaining

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
     "check the network and that the server is not overloaded; DINOV2_TIMEOUT sets how long each request may wait "
     "/ 请检查网络与服务器负载；DINOV2_TIMEOUT 设置每次请求的等待时间"),
    ("protocol", r"\b501\b|NotImplemented|Errno 38\b",
     "the server does not speak this protocol (501 Not Implemented) / 服务器不支持该协议",
     "check that the URL or --endpoint-url points at an S3, SSH or WebDAV server, not a web page / "
     "请确认地址指向 S3、SSH 或 WebDAV 服务"),
    ("server", r"\b50[0234]\b|InternalError|ServiceUnavailable|SlowDown|Service Unavailable|Bad Gateway",
     "server error / 服务器错误", "retry later or check the server's logs / 请稍后重试或查看服务器日志"),
    ("space", r"No space left|ENOSPC|QuotaExceeded|Insufficient Storage|\b507\b",
     "no space left / 空间不足", "free space on the remote / 请清理远程存储空间"),
    ("corrupt", r"corrupt|hash mismatch|checksum mismatch",
     "an object on the remote is corrupted (its hash does not match; it was not placed in the workspace) / "
     "远程对象已损坏（哈希不符，未放入工作区）",
     "push it again from a machine that has the file (`invoke push`) / 请在有该文件的机器上重新 invoke push"),
    ("missing", r"Missing cache files|neither locally nor on remote|failed to pull data|CheckoutError",
     "the remote lacks some files, or they could not be placed / 远端缺少部分文件或无法放入工作区",
     "run `invoke push` where they were fetched, or fetch again (`invoke fetch --model NAME`) / "
     "请在获取模型的机器上运行 invoke push，或重新 invoke fetch"),
]
TRANSIENT = {"refused", "lost", "timeout", "server"}


def chain_text(err: BaseException | None) -> str:
    """Every exception of ``err``'s chain as ``Type: message``, with botocore's error code, joined by `` | ``."""
    seen, parts = set(), []
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        parts.append(f"{type(err).__name__}: {err}")
        response = getattr(err, "response", None)
        if isinstance(response, dict):  # botocore ClientError
            parts.append(str(response.get("Error", {}).get("Code", "")))
        err = err.__cause__ or err.__context__
    return " | ".join(parts)


def explain(err: BaseException | None, doing: str, where: str = "", text: str = "") -> DinovaultError:
    """The one translation of a DVC (or remote library) failure: configuration and stage errors by type, then the
    first rule matching the error chain plus ``text`` (DVC's log). A RemoteError carries the rule's cause."""
    from dvc.config import NoRemoteError, RemoteConfigError
    from dvc.exceptions import ReproductionError

    if isinstance(err, DinovaultError):
        return err
    if isinstance(err, NoRemoteError):
        return RemoteError(
            f"{doing}: no DVC remote is configured / 未配置 DVC 远端",
            "set one: `invoke remote --url URL` or `dvc remote add -d NAME URL`; see README 'Remotes' / 请先设置远端",
        )
    if isinstance(err, RemoteConfigError):
        return RemoteError(f"{doing}: {err} / 远端配置错误", "check `dvc remote list` / 请检查 `dvc remote list`")
    known = dvc_error(err, doing)
    if known is not None:
        return known
    if isinstance(err, ReproductionError):
        return stage_failed(err, doing)
    full = " | ".join(t for t in (text, chain_text(err)) if t)
    prefix = f"{where}: {doing} failed" if where else f"{doing} failed"
    for cause, pattern, what, check in _RULES:
        if re.search(pattern, full, re.IGNORECASE):
            if cause == "space" and doing.split()[0] in ("pull", "fetch", "checkout"):
                check = LOCAL_SPACE
            return RemoteError(f"{prefix}: {what}", check, cause=cause, transient=cause in TRANSIENT)
    detail = full.strip().splitlines()[0][:300] if full.strip() else "unknown error"
    return RemoteError(f"{prefix}: {detail} / 操作失败",
                       "run with DVC_SHOW_TRACEBACK=1 for details / 详见 DVC_SHOW_TRACEBACK=1")


class _Captured(logging.Handler):
    """What DVC logs at WARNING and above during a transfer, so the cause of a failure can be explained."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.texts: list[str] = []
        self.warnings: list[str] = []  # shown after a transfer that succeeds

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.levelno == logging.WARNING:
            self.warnings.append(text)
        if record.exc_info and record.exc_info[1] is not None:
            text += " | " + chain_text(record.exc_info[1])
        self.texts.append(text)


@contextlib.contextmanager
def captured_logs() -> Iterator[_Captured]:
    """DVC's warnings and errors collected instead of printed (our one line replaces DVC's line per file)."""
    handler = _Captured()
    loggers = [logging.getLogger(n) for n in ("dvc", "dvc_data", "dvc_objects")]
    saved = [(lg, lg.propagate, lg.handlers[:], lg.level) for lg in loggers]
    for lg in loggers:
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


class _Recorder(logging.Handler):
    def __init__(self, lines: list[str]):
        super().__init__(logging.INFO)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def recorded_logs() -> Iterator[list[str]]:
    """DVC's messages (INFO and above) as a list, while DVC still prints them as usual."""
    lines: list[str] = []
    handler, logger = _Recorder(lines), logging.getLogger("dvc")
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)


@contextlib.contextmanager
def unverified_allowed(allow: bool) -> Iterator[None]:
    """Let the stages DVC runs accept a model without a pin (`invoke fetch --allow-unverified`): the stage command is
    fixed in dvc.yaml, so the choice travels in the environment (settings.ALLOW_UNVERIFIED)."""
    if not allow:
        yield
        return
    with settings.overridden(settings.ALLOW_UNVERIFIED, "1"):
        yield
