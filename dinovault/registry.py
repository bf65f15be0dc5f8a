"""Pinned sizes and SHA-256 of upstream files, read from a plain-text registry.

One line per file: ``<upstream file name> <size in bytes> sha256:<hex>``; ``#`` starts a comment.
The registry shipped in the package holds the official pins; ``DINOV2_REGISTRY=<path>`` replaces it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import RegistryError
from .textfile import decode_utf8

DEFAULT_REGISTRY = Path(__file__).with_name("registry.txt")
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Pin:
    file: str
    size: int
    sha256: str


def registry_path() -> Path:
    env = os.environ.get("DINOV2_REGISTRY")
    return Path(env).expanduser() if env else DEFAULT_REGISTRY


def parse_registry(text: str, source: str = "<registry>") -> dict[str, Pin]:
    pins: dict[str, Pin] = {}
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
        if not size.isdigit():
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
        if name in pins:
            raise RegistryError(
                f"{where}: {name} is pinned twice / {name} 重复登记", "keep one line per file / 每个文件只保留一行"
            )
        pins[name] = Pin(name, int(size), hexdigest)
    return pins


def load_registry(path: Path | None = None) -> dict[str, Pin]:
    path = path or registry_path()
    try:
        data = path.read_bytes()
    except OSError as err:
        raise RegistryError(
            f"cannot read pin registry {path}: {err.strerror or err} / 无法读取哈希登记文件",
            "check DINOV2_REGISTRY / 请检查 DINOV2_REGISTRY",
        ) from None
    return parse_registry(decode_utf8(data, str(path), RegistryError), str(path))
