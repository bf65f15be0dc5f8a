"""The tensor digest of a checkpoint file (convert.tensor_digest), remembered per file SHA-256 so that a rerun of
the stage does not load and hash the weights again."""

from __future__ import annotations

from pathlib import Path

from ..cache import read_json, torch_home, write_json_atomic
from ..catalog import ModelSpec


def _memo(sha256: str) -> Path:
    return torch_home() / "hub" / "dinovault" / "digests" / f"{sha256}.json"


def cached_tensor_digest(path: Path, spec: ModelSpec, sha256: str, compute: bool = True) -> str | None:
    """The tensor digest of the verified file ``path`` (whose SHA-256 is ``sha256``); None when it is not remembered
    and ``compute`` is false (computing it imports torch and reads every tensor: worth it only where the smoke test
    loads them anyway)."""
    memo = _memo(sha256)
    data = read_json(memo)
    if data and data.get("model") == spec.name and isinstance(data.get("tensor_digest"), str):
        return data["tensor_digest"]
    if not compute:
        return None
    from ..model.checkpoint import load_state_dict
    from ..model.hf_dinov2 import tensor_digest

    digest = tensor_digest(load_state_dict(path, spec), spec)
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(memo, {"model": spec.name, "tensor_digest": digest})
    except OSError:
        pass  # only costs a re-hash next time
    return digest


__all__ = ["cached_tensor_digest"]
