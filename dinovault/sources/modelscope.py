"""The ModelScope source: the copies of the Hub repositories that users in China reach (``facebook/dinov3-…`` and
the like on modelscope.cn), in transformers' layout, verified, then converted and kept as hub.py says
(``$TORCH_HOME/hub/dinovault/converted/modelscope/<model>.pth``).

Files come over ModelScope's public file API, the one the ``modelscope`` client itself downloads from
(``<endpoint>/api/v1/models/<owner>/<repo>/repo?Revision=<rev>&FilePath=<file>``, Range honoured), through
dinovault's own transport: resumable, segmented when the size is pinned, hashed as it arrives. (The ``modelscope``
package would bring a large dependency tree, a second cache and its own checks, and still need ours.)
``DINOVAULT_MODELSCOPE_ENDPOINT`` (a full URL) or the client's ``MODELSCOPE_DOMAIN`` (a domain, https) moves it.

Pins: an ``ms:<owner>/<repo>@<revision>/<file> <size> sha256:<hex>`` line of the registry; without one, the
``hf:`` pin of the model's Hugging Face repository, fetched from the ``master`` revision: ModelScope's copies hold
the same files, and the SHA-256 decides. Downloads stay in ``$TORCH_HOME/hub/dinovault/modelscope/<repo>/<rev>/``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import quote_plus

from .. import settings
from ..cache import torch_home
from ..catalog import ModelSpec
from ..errors import DownloadError
from ..registry import HubPin, Pin, Pins
from .base import Request, register
from .hub import HUB_FILE, HubSource
from .prefix import fetch_checked

log = logging.getLogger("dinovault")


def file_url(repo: str, revision: str, file: str, endpoint: str | None = None) -> str:
    endpoint = (endpoint or settings.modelscope_endpoint()).rstrip("/")
    return f"{endpoint}/api/v1/models/{repo}/repo?Revision={quote_plus(revision)}&FilePath={quote_plus(file)}"


def download_path(repo: str, revision: str, file: str) -> Path:
    return torch_home() / "hub" / "dinovault" / "modelscope" / repo / revision / file


class ModelScopeSource(HubSource):
    name, hub, title, folder, default_revision = "modelscope", "ms", "ModelScope", "modelscope", "master"

    def pin(self, spec: ModelSpec, pins: Pins) -> HubPin | None:
        """The ``ms:`` pin of the model's ModelScope repository, else its Hugging Face file's pin (same bytes)."""
        repo = spec.hub_repo(self.hub)
        if repo is None:
            return None
        if (pin := pins.hub(self.hub, repo)) is not None:
            return pin
        hf = pins.hub("hf", spec.hub_repo("hf"))
        return HubPin(self.hub, repo, self.default_revision, hf.file, hf.size, hf.sha256) if hf else None

    def describe_pin(self, spec: ModelSpec) -> str:
        return f"{super().describe_pin(spec)} (or its hf: pin)"

    def download(self, req: Request, pin: HubPin | None) -> tuple[Path, dict, int | None]:
        from ..transport.download import ensure_file

        repo, revision, file = ((pin.repo_id, pin.revision, pin.file) if pin
                                else (req.spec.hub_repo(self.hub), self.default_revision, HUB_FILE))
        assert repo is not None, f"{req.spec.name} has no {self.hub} repository"  # offers() said it has
        urls, dest = [file_url(repo, revision, file)], download_path(repo, revision, file)
        try:
            if pin is not None and pin.size is None:  # no size: one stream, checked before it gets its name
                def problem(sha: str) -> str | None:
                    return None if sha == pin.sha256 else f"sha256 {sha} differs from the pinned {pin.sha256}"
                got = fetch_checked(urls, dest, problem, progress=req.progress, rehash=req.rehash)
            else:
                if pin is None:
                    log.warning("%s:%s is not pinned: accepting it unverified / 无固定哈希", self.hub, repo)
                sized = Pin(file, pin.size, pin.sha256) if pin and pin.size is not None else None
                got = ensure_file(urls, dest, sized, progress=req.progress, rehash=req.rehash)
        except DownloadError as err:
            raise DownloadError(f"modelscope ({settings.modelscope_endpoint()}): {err.message}", err.hint) from None
        return got.path, {"repo": repo, "revision": revision, "file": file, "sha256": got.sha256,
                          "size": got.size}, got.transferred

    def public_url(self, repo: str, revision: str, file: str) -> str:
        return file_url(repo, revision, file, settings.MODELSCOPE_DEFAULT)

    def describe(self, spec: ModelSpec, card: dict) -> str:
        return f"{spec.name} from ModelScope {card.get('ms_repo')}@{card.get('ms_revision')} (converted)"


SOURCE = register(ModelScopeSource())
converted_path = SOURCE.converted_path

__all__ = ["SOURCE", "ModelScopeSource", "converted_path", "download_path", "file_url"]
