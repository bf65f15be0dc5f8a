"""Is the remote there? A TCP connection first (a wrong host or port is told at once, not after the client
library's own retries), then a small write/read/delete (`invoke remote`) or a look at its folder (before a pull)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Sequence
from urllib.parse import urlsplit

from ..errors import RemoteError, causes
from ..repo.dvc import describe, explain, remote_name, s3_code
from ..settings import proxy_set

_DEFAULT_PORTS = {"ssh": 22, "http": 80, "webdav": 80, "https": 443, "webdavs": 443}


def get_remote(repo, name: str | None, doing: str):
    """DVC's remote ``name`` (default: the default remote), or the explained NoRemoteError."""
    try:
        return repo.cloud.get_remote(name)
    except Exception as err:  # noqa: BLE001 - NoRemoteError and config errors, explained
        raise explain(err, doing, describe(repo, name)) from None


def reach(repo, name: str | None = None, timeout: float = 10.0) -> None:
    """Open (and close) a TCP connection to a network remote's server; botocore takes ~40 s to give up on an unknown
    host, and this also tells 'does not answer' apart from 'empty'."""
    cfg = repo.config["remote"].get(remote_name(repo, name), {})
    url = urlsplit(cfg.get("url", ""))
    if url.scheme == "s3":
        if not cfg.get("endpointurl"):
            return  # AWS itself
        url = urlsplit(cfg["endpointurl"])
    if url.scheme not in _DEFAULT_PORTS or not url.hostname:
        return
    if url.scheme != "ssh" and proxy_set():
        return  # the client goes through a proxy; a direct connection proves nothing
    port = url.port or int(cfg.get("port") or _DEFAULT_PORTS[url.scheme])
    socket.create_connection((url.hostname, port), timeout=timeout).close()


def why_forbidden(fs, path: str, errors: Sequence[BaseException]) -> list[BaseException]:
    """S3 answers a HEAD with a bare 403 both for a wrong secret and for a missing permission; a LIST answers with
    the real error code, so ask once more when that is all ``errors`` have: returns ``errors`` with the LIST's."""
    codes = {code for err in errors for e in causes(err) if (code := s3_code(e)) is not None}
    if fs.protocol != "s3" or not codes & {"403", "Forbidden"} or codes & {
        "SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied"
    }:
        return list(errors)
    try:
        fs.fs.ls(path.split("/", 1)[0], refresh=True)
    except Exception as err:  # noqa: BLE001
        return [err, *errors]
    return list(errors)


def probe(repo, name: str | None = None, *, create: bool = True) -> str:
    """Create the remote's bucket/folder if missing, then write, read back and delete a small object; returns the
    remote's description."""
    remote = get_remote(repo, name, "probe")
    fs, path, where = remote.fs, remote.path, describe(repo, remote.name)
    step = "connect / 连接"
    try:
        reach(repo, remote.name)
        if create:
            step = "create the bucket or folder / 创建存储桶或目录"
            _ensure_container(fs, path)
        token = f".dinovault-probe-{uuid.uuid4().hex}"
        probe_path, data = fs.join(path, token), b"dinovault probe " + token.encode()
        step = "write / 写入"
        fs.pipe_file(probe_path, data)
        step = "read back / 读回"
        back = fs.cat_file(probe_path)
        step = "delete / 删除"
        fs.rm_file(probe_path)
    except Exception as err:  # noqa: BLE001 - every failure becomes one explained line
        raise explain(err, f"probe: {step}", where, why_forbidden(fs, path, [err])) from None
    if back != data:
        raise RemoteError(f"{where}: the probe read back differs from what was written / 读回的数据不一致",
                          "check the server's storage / 请检查服务器存储")
    return where


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


def check_answers(repo, name: str | None, where: str) -> None:
    """Before a pull: fail clearly when the remote is missing, does not answer or was never pushed to (DVC would
    only say 'missing files')."""
    try:
        odb = repo.cloud.get_remote_odb(name, "pull")
    except Exception as err:  # noqa: BLE001 - NoRemoteError and config errors, explained
        raise explain(err, "pull", where) from None
    try:
        reach(repo, name)
        odb.fs.info(odb.path)
        answered = True
    except FileNotFoundError:
        # an HTTP server may 404 a folder whose files it serves: only DVC's own transfer can tell
        answered = odb.fs.protocol in ("http", "https")
    except Exception as err:  # noqa: BLE001 - connection refused, DNS, timeouts, auth: whatever the protocol raises
        explained = explain(err, "pull", where, why_forbidden(odb.fs, odb.path, [err]))
        if getattr(explained, "cause", None) not in (None, "refused"):
            raise explained from None
        raise RemoteError(
            f"pull: {where} does not answer: {type(err).__name__}: {err} / 远端无响应",
            "check the URL and that the server runs (`dvc remote list`), or set another remote: "
            "`dvc remote add -d NAME URL` / 请检查远端地址与服务，或设置其他远端",
        ) from None
    if not answered:
        raise RemoteError(
            f"pull: {where} is empty or does not exist / 远端为空或不存在",
            "run `invoke push` on the machine that fetched the models, or point at the team remote: "
            "`dvc remote add -d NAME URL` / 请先在已获取模型的机器上 `invoke push`，或设置团队远端",
        )
