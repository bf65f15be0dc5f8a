"""The ModelScope source: the copies of the Hub repositories that users in China reach (``facebook/dinov3-…`` and
the like on modelscope.cn), in transformers' layout, verified, then converted to the official state_dict.

Files come over ModelScope's public file API, the one the ``modelscope`` client itself downloads from
(``<endpoint>/api/v1/models/<owner>/<repo>/repo?Revision=<rev>&FilePath=<file>``, Range honoured), through
dinovault's own transport: resumable, segmented when the size is pinned, hashed as it arrives. (The ``modelscope``
package would bring a large dependency tree, a second cache and its own checks, and still need ours.)
``DINOVAULT_MODELSCOPE_ENDPOINT`` (a full URL) or the client's ``MODELSCOPE_DOMAIN`` (a domain, https) moves it.

Pins: an ``ms:<owner>/<repo>@<revision>/<file> <size> sha256:<hex>`` line of the registry; without one, the
``hf:`` pin of the model's Hugging Face repository, fetched from the ``master`` revision: ModelScope's copies hold
the same files, and the SHA-256 decides. Downloads stay in ``$TORCH_HOME/hub/dinovault/modelscope/<repo>/<rev>/``,
the conversion (by the family's converter, convert.py) in ``…/converted/modelscope/<model>.pth`` with a ``.json``
saying what it was made from.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import quote_plus

from .. import settings
from ..cache import check_file, place_file, read_json, torch_home, write_json_atomic
from ..catalog import ModelSpec
from ..errors import DownloadError
from ..registry import HubPin, Pin, Pins
from .base import Expected, Obtained, Request, Source, register
from .convert import convert_to_pth, converter
from .huggingface import converted_dir
from .prefix import fetch_checked

log = logging.getLogger("dinovault")
HUB = "ms"
MS_FILE = "model.safetensors"
DEFAULT_REVISION = "master"


def file_url(repo: str, revision: str, file: str, endpoint: str | None = None) -> str:
    endpoint = (endpoint or settings.modelscope_endpoint()).rstrip("/")
    return f"{endpoint}/api/v1/models/{repo}/repo?Revision={quote_plus(revision)}&FilePath={quote_plus(file)}"


def public_url(repo: str, revision: str, file: str) -> str:
    """The address recorded in model cards (independent of endpoint overrides)."""
    return file_url(repo, revision, file, settings.MODELSCOPE_DEFAULT)


def ms_pin(spec: ModelSpec, pins: Pins) -> HubPin | None:
    """The ``ms:`` pin of the model's ModelScope repository, else its Hugging Face file's pin (same bytes)."""
    repo = spec.hub_repo(HUB)
    if repo is None:
        return None
    if (pin := pins.hub(HUB, repo)) is not None:
        return pin
    hf = pins.hub("hf", spec.hub_repo("hf"))
    return HubPin(HUB, repo, DEFAULT_REVISION, hf.file, hf.size, hf.sha256) if hf else None


def download_path(repo: str, revision: str, file: str) -> Path:
    return torch_home() / "hub" / "dinovault" / "modelscope" / repo / revision / file


def converted_path(spec: ModelSpec) -> Path:
    return converted_dir() / "modelscope" / f"{spec.name}.pth"


def _obtained(path: Path, size: int, sha256: str, source: dict, digest: str | None, verified: bool,
              downloaded: int | None) -> Obtained:
    url = public_url(source["repo"], source["revision"], source["file"])
    card = {"source": "modelscope", "ms_repo": source["repo"], "ms_revision": source["revision"],
            "ms_file": source["file"], "ms_sha256": source["sha256"], "url": url}
    return Obtained(path, size, sha256, verified, True, downloaded, url if downloaded != 0 else None, card, digest)


def _download(spec: ModelSpec, pin: HubPin | None, req: Request):
    from ..transport.download import ensure_file

    repo, revision, file = (pin.repo_id, pin.revision, pin.file) if pin else (spec.hub_repo(HUB), DEFAULT_REVISION,
                                                                              MS_FILE)
    assert repo is not None, f"{spec.name} has no {HUB} repository"
    urls, dest = [file_url(repo, revision, file)], download_path(repo, revision, file)
    if pin is not None and pin.size is None:  # no size: one stream, checked before it gets its name
        def problem(sha: str) -> str | None:
            return None if sha == pin.sha256 else f"sha256 {sha} differs from the pinned {pin.sha256}"
        got = fetch_checked(urls, dest, problem, progress=req.progress, rehash=req.rehash)
    else:
        if pin is None:
            log.warning("%s:%s is not pinned: accepting it unverified / 无固定哈希", HUB, repo)
        sized = Pin(file, pin.size, pin.sha256) if pin is not None and pin.size is not None else None
        got = ensure_file(urls, dest, sized, progress=req.progress, rehash=req.rehash)
    return got, {"repo": repo, "revision": revision, "file": file, "sha256": got.sha256, "size": got.size}


def _convert(src: Path, spec: ModelSpec, source: dict, verified: bool, transferred: int | None) -> Obtained:
    dest = converted_path(spec)
    size, sha, digest = convert_to_pth(src, spec, dest)
    write_json_atomic(dest.with_suffix(".json"), {"model": spec.name, "size": size, "sha256": sha, "source": source,
                                                  "tensor_digest": digest, "verified": verified})
    return _obtained(dest, size, sha, source, digest, verified, transferred)


def _find_converted(spec: ModelSpec, pin: HubPin | None, allow_unverified: bool) -> Obtained | None:
    path = converted_path(spec)
    meta = read_json(path.with_suffix(".json"))
    if not meta or not path.is_file():
        return None
    source = meta.get("source") or {}
    if (pin is not None and source.get("sha256") != pin.sha256) or (pin is None and not allow_unverified):
        return None
    if not check_file(path, Pin(path.name, int(meta.get("size", -1)), str(meta.get("sha256")))).ok:
        return None
    return _obtained(path, meta["size"], meta["sha256"], source, meta.get("tensor_digest"), bool(meta["verified"]), 0)


def _adopt_export(spec: ModelSpec, export: Path | None, pin: HubPin | None) -> Obtained | None:
    """A ``<save_dir>/<model>.pth`` converted from ModelScope elsewhere (restored by ``dvc pull``), taken back into
    the cache when its card names the pinned file and its bytes match the card."""
    if pin is None or export is None or not export.is_file():
        return None
    card = read_json(export.with_suffix(".json")) or {}
    size, sha = card.get("size"), card.get("sha256")
    if card.get("source") != "modelscope" or card.get("model") != spec.name or card.get("ms_sha256") != pin.sha256:
        return None
    if not isinstance(size, int) or not isinstance(sha, str) or not check_file(export, Pin(export.name, size, sha)).ok:
        return None
    dest = converted_path(spec)
    dest.parent.mkdir(parents=True, exist_ok=True)
    place_file(export, dest, size, sha)
    source = {"repo": card.get("ms_repo"), "revision": card.get("ms_revision"), "file": card.get("ms_file"),
              "sha256": pin.sha256}
    write_json_atomic(dest.with_suffix(".json"), {"model": spec.name, "size": size, "sha256": sha, "source": source,
                                                  "tensor_digest": card.get("tensor_digest"), "verified": True})
    return _obtained(dest, size, sha, source, card.get("tensor_digest"), True, 0)


class ModelScopeSource(Source):
    name = "modelscope"

    def pin(self, spec: ModelSpec, pins: Pins) -> HubPin | None:
        return ms_pin(spec, pins)

    def offers(self, req: Request) -> bool:
        return req.spec.hub_repo(HUB) is not None

    def describe_pin(self, spec: ModelSpec) -> str:
        return f"{HUB}:{spec.hub_repo(HUB)} (or its hf: pin)"

    def local(self, req: Request) -> Obtained | None:
        if req.spec.hub_repo(HUB) is None:
            return None
        pin = self.pin(req.spec, req.pins)
        return _find_converted(req.spec, pin, req.allow_unverified) or _adopt_export(req.spec, req.export_path, pin)

    def obtain(self, req: Request) -> Obtained:
        if req.spec.hub_repo(HUB) is None:
            raise DownloadError(f"modelscope: {req.spec.name} has no ModelScope repository / 无 ModelScope 仓库")
        pin = self.pin(req.spec, req.pins)
        converter(req.spec)  # a family without a conversion fails before the download
        try:
            got, source = _download(req.spec, pin, req)
        except DownloadError as err:
            raise DownloadError(f"modelscope ({settings.modelscope_endpoint()}): {err.message}", err.hint) from None
        return _convert(got.path, req.spec, source, pin is not None, got.transferred)

    def take_file(self, path: Path, spec: ModelSpec, size: int, sha256: str, pin: HubPin | None) -> str:
        repo, revision, file = (pin.repo_id, pin.revision, pin.file) if pin else (spec.hub_repo(HUB), "unknown",
                                                                                  path.name)
        source = {"repo": repo, "revision": revision, "file": file, "sha256": sha256, "size": size}
        return f"converted to {_convert(path, spec, source, pin is not None, 0).path}"

    def cache_copy(self, spec: ModelSpec) -> Path:
        return converted_path(spec)

    def expected(self, spec: ModelSpec, card: dict, pins: Pins) -> Expected:
        size, sha = card.get("size"), card.get("sha256")  # a conversion is checked against its own card
        pin = self.pin(spec, pins)
        problems: tuple[str, ...] = ()
        if pin is not None and card.get("ms_sha256") != pin.sha256:
            problems = (f"converted from sha256 {card.get('ms_sha256')}, not the pinned {pin.sha256} "
                        "/ 来源文件与固定哈希不符",)
        elif pin is None and card.get("verified"):
            problems = (f"no ms: or hf: pin for {spec.name} in the registry / 注册表中无此文件的哈希",)
        return Expected(size if isinstance(size, int) else None, sha if isinstance(sha, str) else None, problems,
                        "its model card")

    def describe(self, spec: ModelSpec, card: dict) -> str:
        return f"{spec.name} from ModelScope {card.get('ms_repo')}@{card.get('ms_revision')} (converted)"


register(ModelScopeSource())

__all__ = ["ModelScopeSource", "converted_path", "download_path", "file_url", "ms_pin", "public_url"]
