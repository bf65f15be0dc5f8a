"""Fetching one model: pins → sources (in DINOVAULT_SOURCES order) → verified bytes in the cache → smoke test →
export to save_dir with its model card.

Local bytes come first and need no network: each source is asked for verified bytes already on this machine (a
verified official file in the torch.hub cache, an export restored by ``dvc pull``, a file converted earlier). Then
each configured source in order (sources/). A source without a pin for this model is skipped unless
``allow_unverified``.

The smoke test runs on the cache file before the export, so a file that is not a safe state_dict of the expected
model never reaches save_dir. Nothing here imports torch unless the smoke test runs or a conversion is needed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from . import settings, sources
from .cache import clear_stamp, place_file
from .catalog import ModelSpec, get_spec
from .errors import CheckpointError, DiskSpaceError, DownloadError, VerificationError
from .exports.card import ModelCard, write_card
from .exports.place import prepare_save_dir
from .registry import load_pins, registry_path
from .sources import Obtained, Request

log = logging.getLogger("dinovault")


@dataclass(frozen=True)
class FetchResult:
    spec: ModelSpec
    got: Obtained  # the verified bytes in the cache and where they came from
    export_path: Path | None  # <save_dir>/<model>.pth, None without save_dir
    card_path: Path | None
    forward_seconds: float | None  # the smoke test's forward pass; None when skipped
    tensor_digest: str | None = None

    @property
    def path(self) -> Path:
        """Where the model is to be used from: the export when there is one, else the cache."""
        return self.export_path or self.got.path

    # Read-only views of ``got``, kept because they are public: ``dinovault.fetch_model`` returns this object, and the
    # fetch script (cli/stage.py), bench/ and the tests read them. New code may read ``got`` directly; a new alias
    # should not be added.
    cache_path = property(lambda self: self.got.path)  # $TORCH_HOME/hub/checkpoints/<file>, or a converted file
    size = property(lambda self: self.got.size)
    sha256 = property(lambda self: self.got.sha256)
    verified = property(lambda self: self.got.verified)
    downloaded = property(lambda self: self.got.downloaded)
    transferred = property(lambda self: self.got.transferred or 0)
    source_url = property(lambda self: self.got.url)
    hashed = property(lambda self: self.got.hashed)
    source = property(lambda self: self.got.card)

    @property
    def description(self) -> str:
        """What was fetched, for the success line (the source says it)."""
        return sources.for_card(self.got.card).describe(self.spec, self.got.card)


def _obtain(req: Request, order: tuple[sources.Source, ...]) -> Obtained:
    if not req.rehash:
        for source in sources.known():
            if (got := source.local(req)) is not None:
                return got
    failures: list[str] = []
    errors: list[DownloadError] = []
    order = tuple(s for s in order if s.offers(req))
    if not order:
        raise DownloadError(f"no configured source can serve {req.spec.name} / 没有可用的来源",
                            f"check {settings.SOURCES_ENV} (a signed link needs --url or "
                            f"{settings.signed_url_env(req.spec.family)}) / 请检查来源设置")
    for i, source in enumerate(order):
        if source.pin(req.spec, req.pins) is None and not req.allow_unverified:
            failures.append(f"{source.name}: {source.describe_pin(req.spec)} has no pin in {registry_path()}")
            continue
        try:
            return source.obtain(req)
        except DiskSpaceError:  # local: every source would meet the same disk
            raise
        except DownloadError as err:
            errors.append(err)
            failures.append(err.message)
            if i + 1 < len(order):  # the reasons are in the final error when every source fails
                log.warning("%s source failed; trying %s / %s 来源失败，尝试 %s", source.name, order[i + 1].name,
                            source.name, order[i + 1].name)
    if len(errors) == 1:  # the only source tried (the others had no pin): its own message and hint say it best
        raise errors[0]
    if not errors:
        first, *others = [source.describe_pin(req.spec) for source in order]
        nor = f", nor {' or '.join(others)}" if others else ""
        raise VerificationError(
            f"{first} has no pinned SHA-256 in {registry_path()}{nor} (DINOVAULT_SOURCES="
            f"{','.join(s.name for s in order)}): it cannot be verified / 无固定哈希",
            "add a pin to that registry (or DINOVAULT_REGISTRY), or pass --allow-unverified to accept an unverified "
            "file / 或使用 --allow-unverified",
        )
    raise DownloadError(
        "every source failed / 所有来源均失败: " + "; ".join(failures),
        "check the network, DINOV2_BASE_URL, HF_ENDPOINT and DINOVAULT_SOURCES, then rerun (downloads resume) "
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
    url: str | None = None,
) -> FetchResult:
    """Bring ``name`` (a torch.hub name) into the cache, verified against its pin, and export it to ``save_dir``
    when given. ``progress``: None (auto), False (silent) or a progress object (see transport/download.py);
    ``rehash`` ignores verified stamps and hashes files again; ``sources`` overrides DINOVAULT_SOURCES; ``formats``
    (params.yaml ``formats``) writes the extra exports of exports/formats.py into ``save_dir`` (None: only the
    .pth); ``url``: a signed download link (as ``$DINOV3_URL``), tried first; it is never written anywhere."""
    from . import sources as registered

    spec = get_spec(name)
    order = registered.configured(",".join(sources) if sources else None,
                                  link=bool(url or settings.signed_url(spec.family)))
    pins = load_pins()  # a broken registry is reported before anything is written
    out_dir = prepare_save_dir(Path(save_dir)) if save_dir is not None else None
    export_path = out_dir / f"{spec.name}.pth" if out_dir else None
    got = _obtain(Request(spec, pins, export_path, allow_unverified, progress, rehash, url), order)

    seconds = None
    if smoke_test:
        from .model.smoke import smoke_test as run_smoke_test

        try:
            seconds = run_smoke_test(got.path, spec)
        except CheckpointError:
            if got.verified is not True:  # bytes not fully verified that proved bad: never to be reused
                clear_stamp(got.path)
                got.path.unlink(missing_ok=True)
            raise

    card_path = None
    digest = got.tensor_digest
    if out_dir is not None and export_path is not None:
        from .exports.digest import cached_tensor_digest

        try:
            digest = digest or cached_tensor_digest(got.path, spec, got.sha256, compute=smoke_test)
        except CheckpointError as err:  # only without the smoke test, which would have refused the file
            log.warning("no tensor digest for the card / 模型卡无张量摘要: %s", err.message)
        place_file(got.path, export_path, got.size, got.sha256)
        card_path = out_dir / f"{spec.name}.json"
        write_card(card_path, ModelCard.of(spec, got.size, got.sha256, got.verified, got.card, digest))
        if formats is not None:
            from .exports.formats import write_exports

            write_exports(export_path, spec, out_dir, formats)
    return FetchResult(spec, got, export_path, card_path, seconds, digest)


__all__ = ["FetchResult", "fetch_model"]
