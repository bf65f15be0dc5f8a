"""What the hub sources share (Hugging Face: huggingface.py, ModelScope: modelscope.py): a ``model.safetensors`` in
transformers' layout, pinned by a ``<hub>:<repo>@<revision>/<file>`` line of the registry, verified, converted to the
official state_dict (conversion.py) and kept as ``$TORCH_HOME/hub/dinovault/converted/[<folder>/]<model>.pth`` with a
``.json`` saying what it was made from. A subclass says only how the file is downloaded (and how its failures are
worded), the file's public address, and how the success line names it.

Not in ``$TORCH_HOME/hub/checkpoints``: torch.hub looks there for Meta's own files under Meta's names and dinovault
pins those bytes, so a converted file of other bytes under an official name would fail every official pin and could
be mistaken for Meta's file.

A conversion already on this machine (in that folder, or an export restored by ``dvc pull``, whose card says what it
was made from) is used without a request when it was made from the pinned file; with no pin, only with
``allow_unverified``, and it then says ``verified: false``. The model card's fields are the hub's key and the name:
``hf_repo``, ``hf_revision``, ``hf_file``, ``hf_sha256`` (``ms_…`` for ModelScope), and ``url``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..cache import check_file, place_file, read_json, torch_home, write_json_atomic
from ..catalog import ModelSpec
from ..errors import DownloadError
from ..registry import HubPin, Pin, Pins
from .base import Expected, Obtained, Request, Source
from .conversion import convert_to_pth, converter

log = logging.getLogger("dinovault")
HUB_FILE = "model.safetensors"  # the file fetched from a repository without a pin
_ORIGIN = ("repo", "revision", "file", "sha256")  # what a conversion records of the hub file it was made from


def converted_dir() -> Path:
    return torch_home() / "hub" / "dinovault" / "converted"


class HubSource(Source):
    """A hub of repositories in transformers' layout; a subclass sets the four names and implements ``download``
    and ``public_url``."""

    name = ""  # the DINOVAULT_SOURCES name and the card's ``source``
    hub = ""  # the catalog's and the registry's key ("hf", "ms"); the card's fields are ``<hub>_repo``, …
    title = ""  # for messages: "Hugging Face", "ModelScope"
    folder = ""  # where its conversions are kept, under converted_dir()
    default_revision = ""  # fetched without a pin

    # --- what a hub does its own way

    def download(self, req: Request, pin: HubPin | None) -> tuple[Path, dict, int | None]:
        """The hub file of ``req.spec`` checked against ``pin`` (None: accepted unverified): its path, what it is
        (``repo``, ``revision``, ``file``, ``sha256``, ``size``) and the bytes received (None: some, count unknown).
        DownloadError / VerificationError."""
        raise NotImplementedError

    def public_url(self, repo: str, revision: str, file: str) -> str:
        """The address recorded in model cards (independent of endpoint overrides and mirrors)."""
        raise NotImplementedError

    # --- the same for every hub

    def pin(self, spec: ModelSpec, pins: Pins) -> HubPin | None:
        return pins.hub(self.hub, spec.hub_repo(self.hub))

    def offers(self, req: Request) -> bool:
        return req.spec.hub_repo(self.hub) is not None

    def describe_pin(self, spec: ModelSpec) -> str:
        return f"{self.hub}:{spec.hub_repo(self.hub)}"

    def converted_path(self, spec: ModelSpec) -> Path:
        return converted_dir() / self.folder / f"{spec.name}.pth"

    def cache_copy(self, spec: ModelSpec) -> Path:
        return self.converted_path(spec)

    def local(self, req: Request) -> Obtained | None:
        pin = self.pin(req.spec, req.pins)
        if pin is None and not req.allow_unverified:  # an unverified conversion is never taken without asking
            return None
        return self._find_converted(req.spec, pin) or self._adopt_export(req.spec, req.export_path, pin)

    def obtain(self, req: Request) -> Obtained:
        if req.spec.hub_repo(self.hub) is None:
            raise DownloadError(f"{self.name}: {req.spec.name} has no {self.title} repository / 无 {self.title} 仓库")
        pin = self.pin(req.spec, req.pins)
        converter(req.spec)  # a family without a conversion fails before the download
        path, origin, transferred = self.download(req, pin)
        return self._convert(path, req.spec, origin, pin is not None, transferred)

    def take_file(self, path: Path, spec: ModelSpec, size: int, sha256: str, pin: HubPin | None) -> str:
        repo, revision, file = (pin.repo_id, pin.revision, pin.file) if pin else (spec.hub_repo(self.hub), "unknown",
                                                                                  path.name)
        origin = {"repo": repo, "revision": revision, "file": file, "sha256": sha256, "size": size}
        return f"converted to {self._convert(path, spec, origin, pin is not None, 0).path}"

    def expected(self, spec: ModelSpec, card: dict, pins: Pins) -> Expected:
        size, sha = card.get("size"), card.get("sha256")  # a conversion is checked against its own card
        pin, made_from = self.pin(spec, pins), card.get(f"{self.hub}_sha256")
        problems: tuple[str, ...] = ()
        if pin is not None and made_from != pin.sha256:
            problems = (f"converted from sha256 {made_from}, not the pinned {pin.ref} ({pin.sha256}) "
                        "/ 来源文件与固定哈希不符",)
        elif pin is None and card.get("verified"):
            problems = (f"no pin for {self.describe_pin(spec)} in the registry / 注册表中无此文件的哈希",)
        return Expected(size if isinstance(size, int) else None, sha if isinstance(sha, str) else None, problems,
                        "its model card")

    def _convert(self, src: Path, spec: ModelSpec, origin: dict, verified: bool, transferred: int | None) -> Obtained:
        """Convert a checked hub file into the official-format ``<model>.pth`` of this hub's folder."""
        dest = self.converted_path(spec)
        size, sha, digest = convert_to_pth(src, spec, dest)
        return self._keep(dest, spec, size, sha, origin, digest, verified, transferred)

    def _keep(self, dest: Path, spec: ModelSpec, size: int, sha256: str, origin: dict, digest: str | None,
              verified: bool, transferred: int | None) -> Obtained:
        """Record beside ``dest`` what it was made from; the result, its card naming the hub file."""
        write_json_atomic(dest.with_suffix(".json"), {"model": spec.name, "size": size, "sha256": sha256,
                                                      "source": origin, "tensor_digest": digest, "verified": verified})
        return self._obtained(dest, size, sha256, origin, digest, verified, transferred)

    def _obtained(self, path: Path, size: int, sha256: str, origin: dict, digest: str | None, verified: bool,
                  transferred: int | None) -> Obtained:
        url = self.public_url(*(str(origin.get(k)) for k in ("repo", "revision", "file")))
        card = {"source": self.name, **{f"{self.hub}_{k}": origin.get(k) for k in _ORIGIN}, "url": url}
        return Obtained(path, size, sha256, verified, True, transferred, url if transferred != 0 else None, card,
                        digest)

    def _find_converted(self, spec: ModelSpec, pin: HubPin | None) -> Obtained | None:
        """The conversion in this hub's folder, when intact and made from the pinned file (or, no pin, any)."""
        path = self.converted_path(spec)
        meta = read_json(path.with_suffix(".json")) or {}
        origin = meta.get("source") or {}
        if not _made_from(origin.get("sha256"), pin) or not _matches(path, meta):
            return None
        return self._obtained(path, meta["size"], meta["sha256"], origin, meta.get("tensor_digest"), pin is not None, 0)

    def _adopt_export(self, spec: ModelSpec, export: Path | None, pin: HubPin | None) -> Obtained | None:
        """A ``<save_dir>/<model>.pth`` converted from this hub on another machine (restored by ``dvc pull``), taken
        back into the cache when its card names the pinned file (or, no pin, any) and its bytes match the card."""
        if export is None:
            return None
        card = read_json(export.with_suffix(".json")) or {}
        if card.get("source") != self.name or card.get("model") != spec.name:
            return None
        if not _made_from(card.get(f"{self.hub}_sha256"), pin) or not _matches(export, card):
            return None
        dest = self.converted_path(spec)
        dest.parent.mkdir(parents=True, exist_ok=True)
        place_file(export, dest, card["size"], card["sha256"])
        origin = {k: card.get(f"{self.hub}_{k}") for k in _ORIGIN}
        log.info("took %s from %s (converted from %s, verified against its card; no download)", dest, export,
                 self.title)
        return self._keep(dest, spec, card["size"], card["sha256"], origin, card.get("tensor_digest"), pin is not None,
                          0)


def _made_from(sha256: str | None, pin: HubPin | None) -> bool:
    """Whether a conversion recorded as made from a file of ``sha256`` may serve: the pinned one (no pin: any; the
    caller has checked that unverified files are allowed)."""
    return pin is None or sha256 == pin.sha256


def _matches(path: Path, record: dict) -> bool:
    """Whether ``path`` holds the bytes ``record`` (a ``.json`` beside a conversion, or a model card) says."""
    size, sha = record.get("size"), record.get("sha256")
    return (isinstance(size, int) and isinstance(sha, str) and path.is_file()
            and check_file(path, Pin(path.name, size, sha)).ok)


__all__ = ["HUB_FILE", "HubSource", "converted_dir"]
