"""Opening DVC and explaining its failures: one ``dvc.repo.Repo`` per command (`open_repo`), every DVC failure one
bilingual error by one table (`explain`); DVC is imported inside the functions. ``Repo`` methods are called where
they are needed (repo/commands.py, remotes/transfer.py); what no ``Repo`` method does uses DVC's object databases
(``repo.cache.local``, ``repo.cloud``) beside its feature: remotes/transfer.py, repo/objects.py, repo/integrity.py."""

from __future__ import annotations

import contextlib
import errno
import logging
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import settings
from ..errors import DinovaultError, RemoteError, RepoError, causes
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

@dataclass(frozen=True)
class _Rule:
    """One kind of remote failure: told by the exception classes the remote libraries export (``kinds``), an OS
    error's ``errnos``, an S3 error code (``codes``: botocore's ``response['Error']['Code']``, data the server sends)
    or an HTTP status; ``logged`` only for DVC's log lines, which carry no exception."""

    cause: str
    what: str
    check: str
    kinds: tuple[type[BaseException], ...] = ()
    errnos: frozenset[int] = frozenset()
    codes: frozenset[str] = frozenset()
    statuses: frozenset[int] = frozenset()
    logged: str = ""
    unless: tuple[type[BaseException], ...] = ()  # subclasses of ``kinds`` the rule does not mean

    def matches(self, err: BaseException) -> bool:
        return (isinstance(err, self.kinds) and not isinstance(err, self.unless)
                or (isinstance(err, OSError) and err.errno in self.errnos)
                or s3_code(err) in self.codes or _status(err) in self.statuses)


def _loaded(module: str, *names: str) -> tuple[type[BaseException], ...]:
    """The exception classes ``names`` of ``module`` when it is loaded, else none: a library never imported raised
    nothing, and importing one only to compare would cost every failure (asyncssh takes seconds and warns)."""
    found = sys.modules.get(module)
    return tuple(getattr(found, name) for name in names) if found is not None else ()


def s3_code(err: BaseException) -> str | None:
    """The error code an S3 server sent, from botocore's ClientError."""
    if isinstance(err, _loaded("botocore.exceptions", "ClientError")):
        return str(err.response.get("Error", {}).get("Code", ""))  # type: ignore[attr-defined]
    return None


def _status(err: BaseException) -> int | None:
    """The HTTP status of the response a remote library raised on: botocore's ClientError (S3), aiohttp's
    ClientResponseError (HTTP remotes), webdav4's HTTPError and httpx's HTTPStatusError (WebDAV)."""
    status = None
    if isinstance(err, _loaded("botocore.exceptions", "ClientError")):
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")  # type: ignore[attr-defined]
    elif isinstance(err, _loaded("aiohttp", "ClientResponseError")):
        status = err.status  # type: ignore[attr-defined]
    elif isinstance(err, _loaded("webdav4.client", "HTTPError")):
        status = err.status_code  # type: ignore[attr-defined]
    elif isinstance(err, _loaded("httpx", "HTTPStatusError")):
        status = err.response.status_code  # type: ignore[attr-defined]
    return status if isinstance(status, int) else None


def _rules() -> tuple[_Rule, ...]:
    """The rules, first match wins, over the classes of DVC's remote plugins' libraries (dvc-s3: botocore, s3fs maps
    S3's codes onto OSError subclasses; dvc-ssh: asyncssh; dvc-webdav: webdav4, httpx; dvc-http: aiohttp) that are
    loaded."""
    import http.client
    import socket

    from dvc.exceptions import CheckoutError, FileMissingError
    from dvc_objects.errors import ObjectFormatError

    boto = "botocore.exceptions"
    return (
        _Rule("credentials", "wrong or missing credentials / 凭据错误或缺失",
              "check the key, secret, key file or password in .dvc/config.local (run `invoke remote …` again) / "
              "请检查 .dvc/config.local 中的密钥、私钥文件或密码",
              kinds=(*_loaded(boto, "NoCredentialsError", "PartialCredentialsError"),
                     *_loaded("asyncssh", "PermissionDenied")),
              codes=frozenset({"SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidClientTokenId",
                               "AuthorizationHeaderMalformed", "401", "Unauthorized"}),
              statuses=frozenset({401})),
        _Rule("permission", "permission denied / 没有权限",
              "check that this user may write to the bucket or folder / 请检查该用户对存储桶或目录的写权限",
              kinds=(PermissionError, *_loaded("asyncssh", "SFTPPermissionDenied"),
                     *_loaded("webdav4.client", "ForbiddenOperation")),
              errnos=frozenset({errno.EACCES, errno.EROFS}), codes=frozenset({"AccessDenied", "403", "Forbidden"}),
              statuses=frozenset({403})),
        _Rule("host", "unknown host / 主机名无法解析",
              "check the host name in the URL or --endpoint-url / 请检查地址或 --endpoint-url 中的主机名",
              kinds=(socket.gaierror, *_loaded("aiohttp", "ClientConnectorDNSError"))),
        _Rule("bucket", "the bucket does not exist / 存储桶不存在",
              "run `invoke remote --url …` to create it, or check its name / 请运行 invoke remote 创建，或检查名称",
              codes=frozenset({"NoSuchBucket"})),
        _Rule("refused", "connection refused / 连接被拒绝",
              "check that the server is running and the port is right / 请检查服务器是否在运行、端口是否正确",
              kinds=(ConnectionRefusedError, *_loaded(boto, "EndpointConnectionError")),
              errnos=frozenset({errno.ECONNREFUSED})),
        _Rule("lost", "connection lost / 连接中断",
              "the server went away during the transfer; rerun when it is back, only what is missing is sent / "
              "传输中服务器断开；恢复后重新运行即可，只会发送缺失的部分",
              # asyncssh: the connection's end, and an SFTP request in flight or sent after it (sshfs passes both on)
              kinds=(ConnectionError, http.client.IncompleteRead,
                     *_loaded("asyncssh", "ConnectionLost", "SFTPConnectionLost", "SFTPNoConnection"),
                     *_loaded(boto, "ConnectionClosedError"), *_loaded("httpx", "NetworkError", "RemoteProtocolError"),
                     *_loaded("aiohttp", "ClientOSError", "ServerDisconnectedError", "ClientPayloadError")),
              # aiohttp's failure to connect is a ClientOSError too: its errno or its cause tells what happened
              unless=_loaded("aiohttp", "ClientConnectorError"), errnos=frozenset({errno.ECONNRESET, errno.EPIPE})),
        _Rule("timeout", "timed out / 超时",
              "check the network and that the server is not overloaded; DINOVAULT_TIMEOUT sets how long each request "
              "may wait / 请检查网络与服务器负载；DINOVAULT_TIMEOUT 设置每次请求的等待时间",
              kinds=(TimeoutError, *_loaded(boto, "ConnectTimeoutError", "ReadTimeoutError"),
                     *_loaded("httpx", "TimeoutException")), errnos=frozenset({errno.ETIMEDOUT})),
        _Rule("protocol", "the server does not speak this protocol (501 Not Implemented) / 服务器不支持该协议",
              "check that the URL or --endpoint-url points at an S3, SSH or WebDAV server, not a web page / "
              "请确认地址指向 S3、SSH 或 WebDAV 服务",
              errnos=frozenset({errno.ENOSYS}), codes=frozenset({"NotImplemented", "501"}), statuses=frozenset({501})),
        _Rule("server", "server error / 服务器错误",
              "retry later or check the server's logs / 请稍后重试或查看服务器日志",
              kinds=_loaded("webdav4.client", "BadGatewayError"),
              codes=frozenset({"InternalError", "ServiceUnavailable", "SlowDown", "500", "502", "503", "504"}),
              statuses=frozenset({500, 502, 503, 504})),
        _Rule("space", "no space left / 空间不足", "free space on the remote / 请清理远程存储空间",
              kinds=_loaded("webdav4.client", "InsufficientStorage"), errnos=frozenset({errno.ENOSPC}),
              codes=frozenset({"QuotaExceeded", "507"}), statuses=frozenset({507})),
        _Rule("corrupt", "an object on the remote is corrupted (its hash does not match; it was not placed in the "
              "workspace) / 远程对象已损坏（哈希不符，未放入工作区）",
              "push it again from a machine that has the file (`invoke push`) / 请在有该文件的机器上重新 invoke push",
              kinds=(ObjectFormatError, *_loaded(boto, "FlexibleChecksumError"))),
        _Rule("missing", "the remote lacks some files, or they could not be placed / 远端缺少部分文件或无法放入工作区",
              "run `invoke push` where they were fetched, or fetch again (`invoke fetch --model NAME`) / "
              "请在获取模型的机器上运行 invoke push，或重新 invoke fetch",
              kinds=(CheckoutError, FileMissingError),
              # DVC's warning "Some of the cache files do not exist neither locally nor on remote. Missing cache
              # files: …" (dvc/data_cloud.py, dvc_data/index/fetch.py) is a log line with no exception to tell
              logged="Missing cache files"),
    )


TRANSIENT = {"refused", "lost", "timeout", "server"}


def chain_text(err: BaseException | None) -> str:
    """Every exception of ``err``'s chain as ``Type: message``, with botocore's error code, joined by `` | ``: shown
    when no rule knows the failure, never matched."""
    parts = []
    for cause in causes(err):
        parts.append(f"{type(cause).__name__}: {cause}")
        code = s3_code(cause)
        if code is not None:
            parts.append(code)
    return " | ".join(parts)


def explain(err: BaseException | None, doing: str, where: str = "", also: Sequence[BaseException] = (),
            log: str = "") -> DinovaultError:
    """The one translation of a DVC (or remote library) failure: configuration and stage errors by type, then the
    first rule matching an exception of ``err``'s chain or of ``also`` (those DVC logged, S3's answer to a LIST), or
    a line of ``log`` (DVC's log). A RemoteError carries the rule's cause."""
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
    errors = [e for top in (*also, err) for e in causes(top)]
    prefix = f"{where}: {doing} failed" if where else f"{doing} failed"
    for rule in _rules():
        if any(map(rule.matches, errors)) or (rule.logged and rule.logged in log):
            check = rule.check
            if rule.cause == "space" and doing.split()[0] in ("pull", "fetch", "checkout"):
                check = LOCAL_SPACE
            return RemoteError(f"{prefix}: {rule.what}", check, cause=rule.cause, transient=rule.cause in TRANSIENT)
    full = " | ".join(t for t in (log, *map(chain_text, also), chain_text(err)) if t)
    detail = full.strip().splitlines()[0][:300] if full.strip() else "unknown error"
    return RemoteError(f"{prefix}: {detail} / 操作失败",
                       "run with DVC_SHOW_TRACEBACK=1 for details / 详见 DVC_SHOW_TRACEBACK=1")


class _Captured(logging.Handler):
    """What DVC logs at WARNING and above during a transfer, so the cause of a failure can be explained."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.texts: list[str] = []
        self.errors: list[BaseException] = []  # the exceptions DVC logged with them
        self.warnings: list[str] = []  # shown after a transfer that succeeds

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.levelno == logging.WARNING:
            self.warnings.append(text)
        if record.exc_info and record.exc_info[1] is not None:
            self.errors.append(record.exc_info[1])
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
