"""Pinned sizes and SHA-256 of upstream files, read from a plain-text registry.

One line per file: ``<upstream file name> <size in bytes> sha256:<hex>``; ``#`` starts a comment.
Hugging Face files: ``hf:<repo_id>@<40-hex commit>/<file> <size or -> sha256:<hex>`` (``-`` where no public
record gives the exact byte count: the size is then taken from the server, the SHA-256 still decides).
The registry shipped in the package holds the official pins; ``DINOV2_REGISTRY=<path>`` replaces it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import RegistryError
from .files import decode_utf8
from .settings import registry_file

DEFAULT_REGISTRY = Path(__file__).with_name("registry.txt")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HF = re.compile(r"hf:(?P<repo>[\w.-]+/[\w.-]+)@(?P<rev>[0-9a-f]{40})/(?P<file>[\w./-]+)")


@dataclass(frozen=True)
class Pin:
    file: str
    size: int
    sha256: str


@dataclass(frozen=True)
class HfPin:
    repo_id: str
    revision: str  # the 40-hex commit
    file: str
    size: int | None  # None: no public record of the exact byte count
    sha256: str

    @property
    def ref(self) -> str:
        return f"hf:{self.repo_id}@{self.revision}/{self.file}"


def registry_path() -> Path:
    return registry_file() or DEFAULT_REGISTRY


def parse_registry(text: str, source: str = "<registry>") -> dict[str, Pin]:
    """The official pins of a registry text (``hf:`` lines are checked but left to ``parse_hf_pins``)."""
    return {k: v for k, v in _parse(text, source).items() if isinstance(v, Pin)}


def parse_hf_pins(text: str, source: str = "<registry>") -> dict[str, HfPin]:
    """The Hugging Face pins of a registry text, keyed by repo id."""
    return {v.repo_id: v for v in _parse(text, source).values() if isinstance(v, HfPin)}


def _parse(text: str, source: str) -> dict[str, Pin | HfPin]:
    pins: dict[str, Pin | HfPin] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}:{lineno}"
        fields = line.split()
        if len(fields) != 3:
            raise RegistryError(
                f"{where}: expected '<file> <size> sha256:<hex>', got {raw.strip()!r} / "
                "格式应为 '<文件> <大小> sha256:<哈希>'",
                "fix or remove that line / 请修正该行",
            )
        name, size, digest = fields
        hf = _HF.fullmatch(name) if name.startswith("hf:") else None
        if name.startswith("hf:") and hf is None:
            raise RegistryError(
                f"{where}: {name!r} is not 'hf:<owner>/<repo>@<40-hex commit>/<file>' / hf: 登记格式错误",
                "fix that line / 请修正该行",
            )
        if not size.isdigit() and not (hf and size == "-"):
            raise RegistryError(
                f"{where}: size {size!r} is not a whole number of bytes / 大小须为整数字节数",
                "fix that line / 请修正该行",
            )
        alg, _, hexdigest = digest.partition(":")
        if alg != "sha256" or not _HEX64.fullmatch(hexdigest):
            raise RegistryError(
                f"{where}: hash {digest!r} is not 'sha256:' followed by 64 lowercase hex digits / "
                "哈希须为 'sha256:' 加 64 位小写十六进制",
                "fix that line / 请修正该行",
            )
        key = f"hf:{hf['repo']}" if hf else name
        if key in pins:
            raise RegistryError(
                f"{where}: {key} is pinned twice / {key} 重复登记", "keep one line per file / 每个文件只保留一行"
            )
        if hf:
            pins[key] = HfPin(hf["repo"], hf["rev"], hf["file"], None if size == "-" else int(size), hexdigest)
        else:
            pins[key] = Pin(name, int(size), hexdigest)
    return pins


def _read(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise RegistryError(
            f"cannot read pin registry {path}: {err.strerror or err} / 无法读取哈希登记文件",
            "check DINOV2_REGISTRY / 请检查 DINOV2_REGISTRY",
        ) from None
    return decode_utf8(data, str(path), RegistryError)


def load_registry(path: Path | None = None) -> dict[str, Pin]:
    """The official pins, keyed by upstream file name."""
    path = path or registry_path()
    return parse_registry(_read(path), str(path))


def load_hf_pins(path: Path | None = None) -> dict[str, HfPin]:
    """The Hugging Face pins, keyed by repo id (one pinned file per repo)."""
    path = path or registry_path()
    return parse_hf_pins(_read(path), str(path))
