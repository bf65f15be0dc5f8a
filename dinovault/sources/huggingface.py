"""The Hugging Face source: a pinned ``model.safetensors`` from facebook/dinov2-* (and the DINOv3 repositories),
fetched by huggingface_hub, verified against its SHA-256, then converted and kept as hub.py says
(``$TORCH_HOME/hub/dinovault/converted/<model>.pth``). The downloaded safetensors stays in the Hugging Face cache
(``$HF_HOME/hub``), where huggingface_hub and transformers find it again.

huggingface_hub reads HF_ENDPOINT, HF_HOME, HF_TOKEN and HF_HUB_OFFLINE itself. Its failures are told apart by the
classes it exports (huggingface_hub.errors), the endpoint check's by requests' and the socket module's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from pathlib import Path

from ..cache import check_file, file_sha256
from ..catalog import ModelSpec
from ..errors import DownloadError, VerificationError, causes
from ..registry import HubPin, Pin
from .base import Request, register
from .hub import HUB_FILE, HubSource

log = logging.getLogger("dinovault")


def hf_url(repo: str, revision: str, file: str) -> str:
    """The public address of a Hub file, for model cards (independent of HF_ENDPOINT mirrors)."""
    return f"https://huggingface.co/{repo}/resolve/{revision}/{file}"


def _download(repo: str, revision: str, file: str) -> tuple[Path, bool]:
    """``hf_hub_download`` of one file; returns the cached path and whether bytes were transferred."""
    import huggingface_hub
    from huggingface_hub import constants

    cached = huggingface_hub.try_to_load_from_cache(repo, file, revision=revision)
    where = f"huggingface ({constants.ENDPOINT}) {repo}@{revision[:12]}/{file}"
    if not isinstance(cached, str) and not constants.HF_HUB_OFFLINE:
        _check_reachable(constants.ENDPOINT, where)
    try:
        with _quiet("huggingface_hub", "httpx", "httpx2"):  # their retry lines and per-request INFO lines
            path = huggingface_hub.hf_hub_download(repo, file, revision=revision)
    except Exception as err:  # HTTP, offline, missing repo, network: this source failed, say why
        raise _hub_error(err, where, repo) from None
    return Path(path), not isinstance(cached, str)


@contextlib.contextmanager
def _quiet(*names: str):
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


_MIRROR_HINT = ("set HF_ENDPOINT to a mirror (e.g. https://hf-mirror.com; README: From China), check the network or "
                "the proxy, or use HF_HUB_OFFLINE=1 with a filled cache / "
                "请设置 HF_ENDPOINT 镜像（见 README「在中国」）或检查网络与代理")


def _check_reachable(endpoint: str, where: str) -> None:
    """One quick request to the endpoint before huggingface_hub's own retries (five, over ~25 s, each printed): a
    host that does not resolve, refuses or does not answer fails at once, with what to do."""
    import requests

    from .. import settings
    from ..transport.retry import RetryPolicy

    policy = RetryPolicy.from_env()
    wait = min(policy.read_timeout, 15)
    try:
        requests.head(endpoint, timeout=(policy.connect_timeout, wait), allow_redirects=False)
    except requests.RequestException as err:
        if any(isinstance(e, socket.gaierror) for e in causes(err)):  # under urllib3's NameResolutionError
            why = "the host name does not resolve / 主机名无法解析"
        elif isinstance(err, requests.Timeout):
            why = f"no answer within {wait:g} s / {wait:g} 秒内无应答"
        else:
            why = "the connection failed / 连接失败"
        proxy = " (a proxy is set: HTTPS_PROXY/HTTP_PROXY may be at fault / 已设置代理，可能是代理的问题)" \
            if settings.proxy_set() else ""
        raise DownloadError(f"{where}: {why}{proxy}", _MIRROR_HINT) from None


def _hub_error(err: Exception, where: str, repo: str) -> DownloadError:
    """One line per kind of huggingface_hub error, told apart by the classes of huggingface_hub.errors (a refusal
    met on the metadata request arrives as the cause of a LocalEntryNotFoundError)."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    chain = list(causes(err))
    http = next((e for e in chain if isinstance(e, HfHubHTTPError) and e.response is not None), None)
    status = http.response.status_code if http is not None else None
    if isinstance(err, GatedRepoError) or status in (401, 403):  # a gated repository (DINOv3's): licence, token
        page = f"https://huggingface.co/{repo}"
        return DownloadError(
            f"{where}: access refused (HTTP {status or 403}, a gated repository): accept the licence on {page} and set "
            "HF_TOKEN / 访问被拒绝（受限仓库）：需在模型页面接受许可协议并设置 HF_TOKEN",
            f"log in at {page}, accept the licence, create a read token (https://huggingface.co/settings/tokens) and "
            "export HF_TOKEN=… / 登录并接受许可后，创建令牌并设置 HF_TOKEN",
        )
    if isinstance(err, RepositoryNotFoundError):
        return DownloadError(f"{where}: no such repository on this endpoint / 仓库不存在",
                             "check HF_ENDPOINT (a mirror without it?) / 请检查 HF_ENDPOINT")
    if isinstance(err, RevisionNotFoundError):
        return DownloadError(f"{where}: the pinned revision is not on this endpoint / 固定的修订不存在",
                             "a mirror that lags behind? check HF_ENDPOINT / 镜像可能未同步，请检查 HF_ENDPOINT")
    offline = any(isinstance(e, OfflineModeIsEnabled) for e in chain) or constants.HF_HUB_OFFLINE
    if isinstance(err, OfflineModeIsEnabled) or (isinstance(err, LocalEntryNotFoundError) and offline):
        return DownloadError(f"{where}: not in the Hugging Face cache, and HF_HUB_OFFLINE=1 / 离线且缓存中没有该文件",
                             "unset HF_HUB_OFFLINE to download it / 取消 HF_HUB_OFFLINE 以下载")
    if isinstance(err, LocalEntryNotFoundError):
        return DownloadError(f"{where}: the Hub could not be reached and the file is not cached / 无法连接且无缓存",
                             _MIRROR_HINT)
    if isinstance(err, EntryNotFoundError):
        return DownloadError(f"{where}: no such file in that revision / 该修订中没有此文件",
                             "check the pin in the registry / 请检查哈希登记")
    text = " ".join(str(err).split()) or type(err).__name__
    return DownloadError(f"{where}: {text} / Hugging Face 下载失败", _MIRROR_HINT)


def _verify(path: Path, repo: str, pin: HubPin | None) -> tuple[int, str]:
    size = path.stat().st_size
    if pin is None:
        log.warning("%s/%s is not pinned: accepting it unverified / 无固定哈希", repo, HUB_FILE)
        return size, file_sha256(path)
    check = check_file(path, Pin(pin.file, pin.size if pin.size is not None else size, pin.sha256), rehash=True)
    if not check.ok:
        real = Path(os.path.realpath(path))
        with contextlib.suppress(OSError):  # the bad blob goes, so the next try downloads it again
            path.unlink()
            real.unlink()
        raise VerificationError(
            f"{pin.repo_id}@{pin.revision[:12]}/{pin.file} from Hugging Face does not match its pin ({check.reason}); "
            "removed, nothing exported / 与固定哈希不符，已删除",
            "check HF_ENDPOINT (a mirror serving other bytes?) and try again / 请检查 HF_ENDPOINT 后重试",
        )
    assert check.sha256 is not None  # a check that passed has hashed the bytes
    return check.size, check.sha256


class HuggingFaceSource(HubSource):
    name, hub, title, folder, default_revision = "huggingface", "hf", "Hugging Face", "", "main"

    def download(self, req: Request, pin: HubPin | None) -> tuple[Path, dict, int | None]:
        repo = req.spec.hub_repo(self.hub)
        assert repo is not None, f"{req.spec.name} has no {self.hub} repository"  # offers() said it has
        revision, file = (pin.revision, pin.file) if pin else (self.default_revision, HUB_FILE)
        path, downloaded = _download(repo, revision, file)
        size, sha = _verify(path, repo, pin)
        if pin is None:  # the commit ``main`` pointed to: the cache's ``.../snapshots/<commit>/<file>``
            revision = path.parent.name
        return path, {"repo": repo, "revision": revision, "file": file, "sha256": sha, "size": size}, \
            None if downloaded else 0  # huggingface_hub does not say how many bytes it received

    def public_url(self, repo: str, revision: str, file: str) -> str:
        return hf_url(repo, revision, file)

    def describe(self, spec: ModelSpec, card: dict) -> str:
        return f"{spec.name} from {card.get('hf_repo')}@{str(card.get('hf_revision'))[:12]} (converted)"


SOURCE = register(HuggingFaceSource())
converted_path = SOURCE.converted_path

__all__ = ["SOURCE", "HuggingFaceSource", "converted_path", "hf_url"]
