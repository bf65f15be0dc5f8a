"""The Hugging Face source: a pinned ``model.safetensors`` from facebook/dinov2-*, fetched by huggingface_hub,
verified against its SHA-256, converted to the official state_dict and kept as ``<model>.pth``.

Where the converted file lives: ``$TORCH_HOME/hub/dinovault/converted/<model>.pth`` (+ ``<model>.json`` saying
what it was converted from). Not in ``$TORCH_HOME/hub/checkpoints``: torch.hub looks there for Meta's own files
under Meta's names and dinovault pins those bytes, so a converted file of other bytes under an official name would
fail every official pin and could be mistaken for Meta's file. The downloaded safetensors stays in the Hugging
Face cache (``$HF_HOME/hub``), where huggingface_hub and transformers find it again.

huggingface_hub reads HF_ENDPOINT, HF_HOME, HF_TOKEN and HF_HUB_OFFLINE itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from ..cache import check_file, file_sha256, place_file, read_json, torch_home, write_json_atomic
from ..catalog import ModelSpec
from ..errors import DownloadError, VerificationError
from ..registry import HubPin, Pin, Pins
from .base import Expected, Obtained, Request, Source, register

log = logging.getLogger("dinovault")
HF_FILE = "model.safetensors"
HUB = "hf"


def converted_dir() -> Path:
    return torch_home() / "hub" / "dinovault" / "converted"


def converted_path(spec: ModelSpec) -> Path:
    return converted_dir() / f"{spec.name}.pth"


def hf_url(repo: str, revision: str, file: str) -> str:
    """The public address of a Hub file, for model cards (independent of HF_ENDPOINT mirrors)."""
    return f"https://huggingface.co/{repo}/resolve/{revision}/{file}"


def _obtained(path: Path, size: int, sha256: str, source: dict, digest: str | None, verified: bool,
              downloaded: bool) -> Obtained:
    """The result for a converted file: the card names the Hugging Face file it was made from."""
    url = hf_url(str(source.get("repo")), str(source.get("revision")), str(source.get("file")))
    card = {"source": "huggingface", "hf_repo": source.get("repo"), "hf_revision": source.get("revision"),
            "hf_file": source.get("file"), "hf_sha256": source.get("sha256"), "url": url}
    return Obtained(path, size, sha256, verified, True, None if downloaded else 0, url if downloaded else None, card,
                    digest)


def find_converted(spec: ModelSpec, pin: HubPin | None, allow_unverified: bool) -> Obtained | None:
    """The converted file already in the cache, when it is intact and was made from the pinned Hugging Face file
    (or, with ``allow_unverified``, from any)."""
    path = converted_path(spec)
    meta = read_json(path.with_suffix(".json"))
    if not meta or not path.is_file():
        return None
    source = meta.get("source") or {}
    if pin is not None and source.get("sha256") != pin.sha256:
        return None
    if pin is None and not (allow_unverified or not meta.get("verified", True)):
        return None
    check = check_file(path, Pin(path.name, int(meta.get("size", -1)), str(meta.get("sha256"))))
    if not check.ok or check.sha256 is None:
        return None
    return _obtained(path, check.size, check.sha256, source, meta["tensor_digest"], bool(meta.get("verified")), False)


def adopt_export(spec: ModelSpec, export: Path | None, pin: HubPin | None, allow_unverified: bool) -> Obtained | None:
    """A ``<save_dir>/<model>.pth`` converted from Hugging Face on another machine (restored by ``dvc pull``),
    taken back into the cache when its model card names the pinned source and its bytes match the card."""
    if export is None or not export.is_file():
        return None
    card = read_json(export.with_suffix(".json")) or {}
    if card.get("source") != "huggingface" or card.get("model") != spec.name:
        return None
    if (pin.sha256 if pin else None) != card.get("hf_sha256") and not (pin is None and allow_unverified):
        return None
    size, sha = card.get("size"), card.get("sha256")
    if not isinstance(size, int) or not isinstance(sha, str) or not check_file(export, Pin(export.name, size, sha)).ok:
        return None
    dest = converted_path(spec)
    dest.parent.mkdir(parents=True, exist_ok=True)
    place_file(export, dest, size, sha)
    source = {"repo": card.get("hf_repo"), "revision": card.get("hf_revision"), "file": card.get("hf_file"),
              "sha256": card.get("hf_sha256")}
    meta: dict = {"model": spec.name, "size": size, "sha256": sha, "source": source,
            "tensor_digest": card.get("tensor_digest"), "verified": bool(card.get("verified"))}
    write_json_atomic(dest.with_suffix(".json"), meta)
    log.info("took %s from %s (converted from Hugging Face, verified against its card; no download)", dest, export)
    return _obtained(dest, size, sha, source, meta["tensor_digest"], meta["verified"], False)


def _download(spec: ModelSpec, pin: HubPin | None) -> tuple[Path, bool]:
    """``hf_hub_download`` of the pinned revision (``main`` without a pin); returns the cached path and whether
    bytes were transferred."""
    import huggingface_hub
    from huggingface_hub import constants

    repo = spec.hub_repo(HUB)
    assert repo is not None, f"{spec.name} has no {HUB} repository"
    revision, file = (pin.revision, pin.file) if pin else ("main", HF_FILE)
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
        text = str(err)
        if "resolve" in text or "Name or service" in text or "getaddrinfo" in text:
            why = "the host name does not resolve / 主机名无法解析"
        elif "timed out" in text.lower():
            why = f"no answer within {wait:g} s / {wait:g} 秒内无应答"
        else:
            why = "the connection failed / 连接失败"
        proxy = " (a proxy is set: HTTPS_PROXY/HTTP_PROXY may be at fault / 已设置代理，可能是代理的问题)" \
            if settings.proxy_set() else ""
        raise DownloadError(f"{where}: {why}{proxy}", _MIRROR_HINT) from None


def _hub_error(err: Exception, where: str, repo: str) -> DownloadError:
    """One line per kind of huggingface_hub error (matched by class name: the classes moved between versions)."""
    kinds = {c.__name__ for c in type(err).__mro__}
    text = " ".join(str(err).split()) or type(err).__name__
    cause = err if getattr(err, "response", None) is not None else (err.__cause__ or err.__context__)
    status = getattr(getattr(cause, "response", None), "status_code", None)
    if "GatedRepoError" in kinds or status in (401, 403):  # a gated repository (DINOv3's): the licence, then a token
        page = f"https://huggingface.co/{repo}"
        return DownloadError(
            f"{where}: access refused (HTTP {status or 403}, a gated repository): accept the licence on {page} and set "
            "HF_TOKEN / 访问被拒绝（受限仓库）：需在模型页面接受许可协议并设置 HF_TOKEN",
            f"log in at {page}, accept the licence, create a read token (https://huggingface.co/settings/tokens) and "
            "export HF_TOKEN=… / 登录并接受许可后，创建令牌并设置 HF_TOKEN",
        )
    if "RepositoryNotFoundError" in kinds:
        return DownloadError(f"{where}: no such repository on this endpoint / 仓库不存在",
                             "check HF_ENDPOINT (a mirror without it?) / 请检查 HF_ENDPOINT")
    if "RevisionNotFoundError" in kinds:
        return DownloadError(f"{where}: the pinned revision is not on this endpoint / 固定的修订不存在",
                             "a mirror that lags behind? check HF_ENDPOINT / 镜像可能未同步，请检查 HF_ENDPOINT")
    if "OfflineModeIsEnabled" in kinds or ("LocalEntryNotFoundError" in kinds and "offline" in text.lower()):
        return DownloadError(f"{where}: not in the Hugging Face cache, and HF_HUB_OFFLINE=1 / 离线且缓存中没有该文件",
                             "unset HF_HUB_OFFLINE to download it / 取消 HF_HUB_OFFLINE 以下载")
    if "LocalEntryNotFoundError" in kinds:
        return DownloadError(f"{where}: the Hub could not be reached and the file is not cached / 无法连接且无缓存",
                             _MIRROR_HINT)
    if "EntryNotFoundError" in kinds:
        return DownloadError(f"{where}: no such file in that revision / 该修订中没有此文件",
                             "check the pin in the registry / 请检查哈希登记")
    return DownloadError(f"{where}: {text} / Hugging Face 下载失败", _MIRROR_HINT)


def _verify(path: Path, spec: ModelSpec, pin: HubPin | None) -> tuple[int, str]:
    size = path.stat().st_size
    if pin is None:
        log.warning("%s/%s is not pinned: accepting it unverified", spec.hub_repo(HUB), HF_FILE)
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
    assert check.sha256 is not None  # ok: hashed
    return check.size, check.sha256


def convert_file(src: Path, spec: ModelSpec, source: dict, verified: bool, downloaded: bool = False) -> Obtained:
    """Convert a verified Hugging Face ``model.safetensors`` into the cache's official-format ``<model>.pth``."""
    from .convert import convert_to_pth

    dest = converted_path(spec)
    size, sha, digest = convert_to_pth(src, spec, dest)
    meta = {"model": spec.name, "size": size, "sha256": sha, "source": source, "tensor_digest": digest,
            "verified": verified}
    write_json_atomic(dest.with_suffix(".json"), meta)
    return _obtained(dest, size, sha, source, digest, verified, downloaded)


def fetch_hf(spec: ModelSpec, pin: HubPin | None) -> Obtained:
    """Download (or reuse from the Hugging Face cache), verify, convert. DownloadError / VerificationError."""
    path, downloaded = _download(spec, pin)
    size, sha = _verify(path, spec, pin)
    revision = pin.revision if pin else _revision_of(path)
    source = {"repo": spec.hub_repo(HUB), "revision": revision, "file": pin.file if pin else HF_FILE, "sha256": sha,
              "size": size}
    return convert_file(path, spec, source, verified=pin is not None, downloaded=downloaded)


def card_problems(card: dict, spec: ModelSpec, pins: Pins) -> list[str]:
    """What is wrong with the model card of a workspace ``<model>.pth`` converted from Hugging Face: its source file
    must be the pinned one (when there is a pin)."""
    pin = pins.hub(HUB, spec.hub_repo(HUB))
    if pin is not None and card.get("hf_sha256") != pin.sha256:
        return [f"converted from sha256 {card.get('hf_sha256')}, not the pinned {pin.ref} ({pin.sha256})"]
    if pin is None and card.get("verified"):
        return [f"no hf: pin for {spec.hub_repo(HUB)} in the registry / 注册表中无此文件的哈希"]
    return []


def _revision_of(path: Path) -> str:
    """The commit of a file in the Hugging Face cache (``.../snapshots/<commit>/<file>``)."""
    return Path(path).parent.name


class HuggingFaceSource(Source):
    name = "huggingface"

    def pin(self, spec: ModelSpec, pins: Pins) -> HubPin | None:
        return pins.hub(HUB, spec.hub_repo(HUB))

    def describe_pin(self, spec: ModelSpec) -> str:
        return f"{HUB}:{spec.hub_repo(HUB)}"

    def local(self, req: Request) -> Obtained | None:
        pin = self.pin(req.spec, req.pins)
        return (find_converted(req.spec, pin, req.allow_unverified)
                or adopt_export(req.spec, req.export_path, pin, req.allow_unverified))

    def obtain(self, req: Request) -> Obtained:
        if req.spec.hub_repo(HUB) is None:
            raise DownloadError(f"huggingface: {req.spec.name} has no Hugging Face repository / 无 Hugging Face 仓库")
        return fetch_hf(req.spec, self.pin(req.spec, req.pins))

    def take_file(self, path: Path, spec: ModelSpec, size: int, sha256: str, pin: HubPin | None) -> str:
        if pin is not None:
            source = {"repo": pin.repo_id, "revision": pin.revision, "file": pin.file, "sha256": sha256, "size": size}
        else:
            source = {"repo": spec.hub_repo(HUB), "revision": "unknown", "file": path.name, "sha256": sha256,
                      "size": size}
        return f"converted to {convert_file(path, spec, source, verified=pin is not None).path}"

    def cache_copy(self, spec: ModelSpec) -> Path:
        return converted_path(spec)

    def expected(self, spec: ModelSpec, card: dict, pins: Pins):
        size, sha = card.get("size"), card.get("sha256")  # a conversion is checked against its own card
        return Expected(size if isinstance(size, int) else None, sha if isinstance(sha, str) else None,
                        tuple(card_problems(card, spec, pins)), "its model card")

    def describe(self, spec: ModelSpec, card: dict) -> str:
        return f"{spec.name} from {card.get('hf_repo')}@{str(card.get('hf_revision'))[:12]} (converted)"


register(HuggingFaceSource())

__all__ = [
    "HuggingFaceSource", "adopt_export", "card_problems", "convert_file", "converted_dir", "converted_path",
    "fetch_hf", "find_converted", "hf_url",
]
