"""Fetching one model: pins → sources (in DINOV2_SOURCES order) → verified bytes in the cache → smoke test →
export to save_dir with its model card.

Local bytes come first and need no network: a verified official file in the torch.hub cache, an export restored
by ``dvc pull``, or a file converted earlier from Hugging Face. Then each source in order: ``official`` (the
DINOV2_BASE_URL mirrors, see download.py) and ``huggingface`` (see huggingface.py). A source without a pin for this
model is skipped unless ``allow_unverified``.

The smoke test runs on the cache file before the export, so a file that is not a safe state_dict of the expected
model never reaches save_dir. Nothing here imports torch unless the smoke test runs or a conversion is needed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from .cache import cache_path, check_file, clear_stamp, place_file
from .catalog import ModelSpec, get_spec
from .errors import CheckpointError, DiskSpaceError, DownloadError, VerificationError
from .exports.place import card, prepare_save_dir, write_card
from .registry import HfPin, Pin, load_hf_pins, load_registry, registry_path
from .settings import sources as configured_sources
from .sources.official import source_urls
from .transport.download import ensure_file

log = logging.getLogger("dinovault")


@dataclass(frozen=True)
class FetchResult:
    spec: ModelSpec
    cache_path: Path  # $TORCH_HOME/hub/checkpoints/<upstream file>, or the converted file for Hugging Face
    export_path: Path | None  # <save_dir>/<model>.pth, None without save_dir
    card_path: Path | None
    size: int
    sha256: str
    verified: bool  # matched a pinned size and SHA-256
    downloaded: bool  # bytes were transferred over the network by this call
    transferred: int  # how many (0 when unknown for Hugging Face)
    source_url: str | None  # where they came from (None: the cache or save_dir already had the file)
    hashed: bool  # a full SHA-256 pass ran (False: the verified stamp was trusted)
    forward_seconds: float | None  # the smoke test's forward pass; None when skipped
    source: dict = field(default_factory=lambda: {"source": "official"})  # what the card records about the origin
    tensor_digest: str | None = None

    @property
    def path(self) -> Path:
        """Where the model is to be used from: the export when there is one, else the cache."""
        return self.export_path or self.cache_path


@dataclass(frozen=True)
class _Got:
    path: Path
    size: int
    sha256: str
    verified: bool
    transferred: int
    url: str | None
    hashed: bool
    source: dict
    tensor_digest: str | None = None


def _official(spec, pin: Pin | None, export_path, progress, rehash) -> _Got:
    dest = cache_path(spec.upstream_file)
    local = [export_path] if export_path is not None else []  # e.g. restored by `dvc pull`: no need to download
    got = ensure_file(source_urls(spec), dest, pin, progress=progress, rehash=rehash, local=local)
    return _Got(dest, got.size, got.sha256, got.verified, got.transferred, got.url, got.hashed, {"source": "official"})


def _from_converted(conv) -> _Got:
    from .sources.huggingface import hf_url

    src = conv.source
    info = {"source": "huggingface", "hf_repo": src.get("repo"), "hf_revision": src.get("revision"),
            "hf_file": src.get("file"), "hf_sha256": src.get("sha256"),
            "url": hf_url(src.get("repo"), src.get("revision"), src.get("file"))}
    url = info["url"] if conv.downloaded else None
    return _Got(conv.path, conv.size, conv.sha256, conv.verified, 1 if conv.downloaded else 0, url, True, info,
                conv.tensor_digest)


def _local(spec, pin: Pin | None, hf_pin: HfPin | None, allow_unverified, export_path, progress) -> _Got | None:
    """Verified bytes already on this machine, whichever source they came from, without any request."""
    from .sources.huggingface import adopt_export, find_converted

    dest = cache_path(spec.upstream_file)
    if pin is not None and dest.is_file() and check_file(dest, pin).ok:
        return _official(spec, pin, export_path, progress, False)  # finds it in the cache, no request
    conv = find_converted(spec, hf_pin, allow_unverified) or adopt_export(spec, export_path, hf_pin, allow_unverified)
    return _from_converted(conv) if conv else None


def _obtain(spec, pin, hf_pin, order, export_path, allow_unverified, progress, rehash) -> _Got:
    local = None if rehash else _local(spec, pin, hf_pin, allow_unverified, export_path, progress)
    if local is not None:
        return local
    failures: list[str] = []
    errors: list[DownloadError] = []
    for name in order:
        try:
            if name == "official":
                if pin is None and not allow_unverified:
                    failures.append(f"official: {spec.upstream_file} has no pin in {registry_path()}")
                    continue
                if pin is None:
                    log.warning("%s is not pinned: accepting what the first source serves", spec.upstream_file)
                return _official(spec, pin, export_path, progress, rehash)
            if hf_pin is None and not allow_unverified:
                failures.append(f"huggingface: {spec.hub_repo('hf')} has no hf: pin in {registry_path()}")
                continue
            from .sources.huggingface import fetch_hf

            return _from_converted(fetch_hf(spec, hf_pin))
        except DiskSpaceError:  # local: every source would meet the same disk
            raise
        except DownloadError as err:
            errors.append(err)
            failures.append(err.message)
            if len(order) > 1:
                log.warning("%s source failed: %s", name, err.message.splitlines()[0])
    if len(errors) == 1:  # the only source tried (the others had no pin): its own message and hint say it best
        raise errors[0]
    if not errors:
        raise VerificationError(
            f"{spec.upstream_file} has no pinned SHA-256 in {registry_path()}, nor {spec.hub_repo('hf')} an hf: pin "
            f"(DINOV2_SOURCES={','.join(order)}): it cannot be verified / 无固定哈希",
            "add a pin to that registry (or DINOV2_REGISTRY), or pass --allow-unverified to accept an unverified "
            "file / 或使用 --allow-unverified",
        )
    raise DownloadError(
        "every source failed / 所有来源均失败: " + "; ".join(failures),
        "check the network, DINOV2_BASE_URL, HF_ENDPOINT and DINOV2_SOURCES, then rerun (downloads resume) "
        "/ 检查网络与镜像设置后重试",
    )


def fetch_model(
    name: str,
    save_dir: str | Path | None = None,
    *,
    allow_unverified: bool = False,
    smoke_test: bool = True,
    progress=None,
    rehash: bool = False,
    sources: tuple[str, ...] | None = None,
    formats: tuple[str, ...] | None = None,
) -> FetchResult:
    """Bring ``name`` (a torch.hub DINOv2 name) into the cache, verified against its pin, and export it to
    ``save_dir`` when given. ``progress``: None (auto), False (silent) or a progress object (see download.py);
    ``rehash`` ignores verified stamps and hashes files again; ``sources`` overrides DINOV2_SOURCES; ``formats``
    (params.yaml ``formats``) writes the extra exports of exports.py into ``save_dir`` (None: only the .pth)."""
    spec = get_spec(name)
    pin = load_registry().get(spec.upstream_file)
    hf_pin = load_hf_pins().get(spec.hub_repo('hf'))
    order = sources or configured_sources()
    out_dir = prepare_save_dir(Path(save_dir)) if save_dir is not None else None
    export_path = out_dir / f"{spec.name}.pth" if out_dir else None
    got = _obtain(spec, pin, hf_pin, order, export_path, allow_unverified, progress, rehash)

    seconds = None
    if smoke_test:
        from .model.smoke import smoke_test as run_smoke_test

        try:
            seconds = run_smoke_test(got.path, spec)
        except CheckpointError:
            if not got.verified:  # unverified bytes that proved bad: do not leave them where they would be reused
                clear_stamp(got.path)
                got.path.unlink(missing_ok=True)
            raise

    card_path = None
    digest = got.tensor_digest
    if out_dir is not None:
        from .exports.digest import cached_tensor_digest

        try:
            digest = digest or cached_tensor_digest(got.path, spec, got.sha256, compute=smoke_test)
        except CheckpointError as err:  # only without the smoke test, which would have refused the file
            log.warning("no tensor digest for the card: %s", err.message)
        place_file(got.path, export_path, got.size, got.sha256)
        card_path = out_dir / f"{spec.name}.json"
        write_card(card_path, card(spec, got.size, got.sha256, got.verified, got.source, digest))
        if formats is not None:
            from .exports.formats import write_exports

            write_exports(export_path, spec, out_dir, formats)
    return FetchResult(
        spec=spec,
        cache_path=got.path,
        export_path=export_path,
        card_path=card_path,
        size=got.size,
        sha256=got.sha256,
        verified=got.verified,
        downloaded=got.transferred > 0,
        transferred=got.transferred,
        source_url=got.url,
        hashed=got.hashed,
        forward_seconds=seconds,
        source=got.source,
        tensor_digest=digest,
    )


__all__ = ["FetchResult", "fetch_model"]
