"""Fetching one model: registry pin → sources → verified download into the torch.hub cache → smoke test →
export to save_dir with its model card.

The smoke test runs on the cache file before the export, so a file that is not a safe state_dict of the expected
model never reaches save_dir. Nothing here imports torch unless the smoke test runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .cache import cache_path, clear_stamp
from .catalog import ModelSpec, get_spec
from .download import ensure_file
from .errors import CheckpointError, VerificationError
from .export import card, export_file, prepare_save_dir, write_card
from .registry import load_registry, registry_path
from .sources import source_urls

log = logging.getLogger("dinovault")


@dataclass(frozen=True)
class FetchResult:
    spec: ModelSpec
    cache_path: Path  # $TORCH_HOME/hub/checkpoints/<upstream file>
    export_path: Path | None  # <save_dir>/<model>.pth, None without save_dir
    card_path: Path | None
    size: int
    sha256: str
    verified: bool  # matched a pinned size and SHA-256
    downloaded: bool  # bytes were transferred over the network by this call
    transferred: int  # how many
    source_url: str | None  # where they came from (None: the cache or save_dir already had the file)
    hashed: bool  # a full SHA-256 pass ran (False: the verified stamp was trusted)
    forward_seconds: float | None  # the smoke test's forward pass; None when skipped

    @property
    def path(self) -> Path:
        """Where the model is to be used from: the export when there is one, else the torch.hub cache."""
        return self.export_path or self.cache_path


def fetch_model(
    name: str,
    save_dir: str | Path | None = None,
    *,
    allow_unverified: bool = False,
    smoke_test: bool = True,
    progress=None,
    rehash: bool = False,
) -> FetchResult:
    """Bring ``name`` (a torch.hub DINOv2 name) into the torch.hub cache, verified against its pin, and export it to
    ``save_dir`` when given. ``progress``: None (auto), False (silent) or a progress object (see download.py);
    ``rehash`` ignores verified stamps and hashes files again."""
    spec = get_spec(name)
    pin = load_registry().get(spec.upstream_file)
    if pin is None and not allow_unverified:
        raise VerificationError(
            f"{spec.upstream_file} has no pinned SHA-256 in {registry_path()}: it cannot be verified / 无固定哈希",
            "add '<file> <size> sha256:<hex>' to that registry (or DINOV2_REGISTRY), or pass --allow-unverified "
            "to accept an unverified file / 或使用 --allow-unverified",
        )
    if pin is None:
        log.warning("%s is not pinned: accepting whatever the first source serves (unverified)", spec.upstream_file)
    out_dir = prepare_save_dir(Path(save_dir)) if save_dir is not None else None
    export_path = out_dir / f"{spec.name}.pth" if out_dir else None
    dest = cache_path(spec.upstream_file)
    local = [export_path] if export_path is not None else []  # e.g. restored by `dvc pull`: no need to download
    got = ensure_file(source_urls(spec), dest, pin, progress=progress, rehash=rehash, local=local)

    seconds = None
    if smoke_test:
        from .smoke import smoke_test as run_smoke_test

        try:
            seconds = run_smoke_test(dest, spec)
        except CheckpointError:
            if pin is None:  # unverified bytes that proved bad: do not leave them where torch.hub would find them
                clear_stamp(dest)
                dest.unlink(missing_ok=True)
            raise

    card_path = None
    if out_dir is not None:
        export_file(dest, export_path, got.size, got.sha256)
        card_path = out_dir / f"{spec.name}.json"
        write_card(card_path, card(spec, got.size, got.sha256, got.verified))
    return FetchResult(
        spec=spec,
        cache_path=dest,
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
    )


__all__ = ["FetchResult", "fetch_model"]
