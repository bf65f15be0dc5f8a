"""The model card ``<save_dir>/<model>.json``: what the weights beside it are and where they came from, read and
written here only.

Nothing in it changes from run to run or with mirrors (the URL is always the public one, never DINOV2_BASE_URL's or
HF_ENDPOINT's), so DVC's hash of the card is the same on every machine. The layout is flat JSON with sorted keys;
the source's own fields (``hf_repo``, ``hf_revision``, … for Hugging Face) sit beside the common ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..cache import read_json
from ..catalog import ModelSpec
from ..errors import ExportError
from ..files import json_text, write_json_atomic

_COMMON = ("model", "upstream_file", "url", "size", "sha256", "embed_dim", "num_params", "license", "verified",
           "source", "tensor_digest")


@dataclass(frozen=True)
class ModelCard:
    model: str
    upstream_file: str
    url: str
    size: int
    sha256: str
    embed_dim: int
    num_params: int
    license: str
    verified: bool | str  # True: a full pin matched; "prefix": only the hash prefix in the file's name; False
    source: str = "official"  # the source's name (sources/)
    tensor_digest: str | None = None  # equal for equal weights whichever file they came from (model/hf_dinov2.py)
    origin: dict = field(default_factory=dict)  # the source's own fields

    @classmethod
    def of(cls, spec: ModelSpec, size: int, sha256: str, verified: bool | str, origin: dict | None = None,
           tensor_digest: str | None = None) -> ModelCard:
        """The card of ``spec``'s weights; ``origin``: what the source records (``source`` and its own fields,
        which may also give the ``url``)."""
        origin = dict(origin or {})
        return cls(spec.name, spec.upstream_file, origin.pop("url", spec.url), size, sha256, spec.embed_dim,
                   spec.num_params, spec.license, verified, origin.pop("source", "official"), tensor_digest, origin)

    def as_dict(self) -> dict:
        data = {k: getattr(self, k) for k in _COMMON if getattr(self, k) is not None}
        return {**data, **self.origin}

    @classmethod
    def from_dict(cls, data: dict) -> ModelCard | None:
        try:
            common = {k: data[k] for k in _COMMON if k in data}
            return cls(**common, origin={k: v for k, v in data.items() if k not in _COMMON})
        except TypeError:  # a key missing: not a card of ours
            return None


def read_card(path: Path) -> dict:
    """The card at ``path`` as a dict; empty when there is none (or it is not a card)."""
    data = read_json(Path(path)) or {}
    return data if ModelCard.from_dict(data) is not None else {}


def write_card(path: Path, card: ModelCard) -> bool:
    """Write ``card`` atomically, only when the content differs. Returns True when written."""
    path, data = Path(path), card.as_dict()
    try:
        if path.read_text(encoding="utf-8") == json_text(data):
            return False
    except (OSError, UnicodeDecodeError):
        pass
    try:
        write_json_atomic(path, data)
    except OSError as err:
        raise ExportError(f"cannot write the model card {path}: {err.strerror or err} / 无法写入模型卡",
                          "check save_dir / 请检查保存目录") from None
    return True


__all__ = ["ModelCard", "read_card", "write_card"]
