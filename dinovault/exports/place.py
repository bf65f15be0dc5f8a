"""Putting a verified cache file into save_dir (``<model>.pth``, the same bytes) and its model card (``<model>.json``).

The export is the cache file itself: a hard link when both are on one file system, a copy otherwise, always
through a temporary name and an atomic rename. A target that already holds the right bytes is left untouched
(not even its mtime), so DVC sees nothing to do.
"""

from __future__ import annotations

import errno
import tempfile
from pathlib import Path

from ..catalog import ModelSpec
from ..errors import ExportError
from ..files import json_text, write_json_atomic


def prepare_save_dir(save_dir: Path) -> Path:
    """Create ``save_dir`` if needed and prove it can receive files; ExportError saying what to do otherwise."""
    save_dir = Path(save_dir)
    hint = "pass another --save_dir, or fix that path / 请换一个 --save_dir 或修正该路径"
    if save_dir.exists() and not save_dir.is_dir():
        raise ExportError(f"save_dir {save_dir} is a file, not a folder / 保存目录是一个文件", hint)
    try:
        save_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=save_dir, prefix=".dinovault-probe-"):
            pass
    except OSError as err:
        what = "is under a file" if err.errno == errno.ENOTDIR else f"is not writable ({err.strerror or err})"
        raise ExportError(f"save_dir {save_dir} {what} / 保存目录不可写", hint) from None
    return save_dir


def card(
    spec: ModelSpec, size: int, sha256: str, verified: bool, source: dict | None = None,
    tensor_digest: str | None = None,
) -> dict:
    """The model card. The URL is always the public one, never a mirror's (DINOV2_BASE_URL, HF_ENDPOINT), and
    nothing in it changes from run to run: DVC hashes of the card stay stable across machines and mirrors.
    ``source``: ``{"source": "official"}`` or the Hugging Face repo, revision, file and its sha256;
    ``tensor_digest``: the same for the same weights whichever file they came from (convert.tensor_digest)."""
    data = {
        "model": spec.name,
        "upstream_file": spec.upstream_file,
        "url": spec.url,
        "size": size,
        "sha256": sha256,
        "embed_dim": spec.embed_dim,
        "num_params": spec.num_params,
        "license": spec.license,
        "verified": verified,
        "source": "official",
    }
    data.update(source or {})
    if tensor_digest:
        data["tensor_digest"] = tensor_digest
    return data


def write_card(path: Path, data: dict) -> bool:
    """Write ``data`` as sorted JSON, atomically, only when the content differs. Returns True when written."""
    path = Path(path)
    try:
        if path.read_text(encoding="utf-8") == json_text(data):
            return False
    except (OSError, UnicodeDecodeError):
        pass
    try:
        write_json_atomic(path, data)
    except OSError as err:
        raise ExportError(f"cannot write the model card {path}: {err.strerror or err}", "check save_dir") from None
    return True


__all__ = ["card", "prepare_save_dir", "write_card"]
