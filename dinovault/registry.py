"""Pinned sizes and SHA-256 of model files, read from a plain-text registry.

One line per file; ``#`` starts a comment:

- an official file: ``<upstream file name> <size in bytes> sha256:<hex>``;
- a file on a model hub: ``<hub>:<owner>/<repo>@<revision>/<file> <size or -> sha256:<hex>``, where ``<hub>`` names
  the hub (``hf`` Hugging Face, whose revisions are 40-hex commits; ``ms`` ModelScope) and ``-`` stands for a size no
  public record gives exactly (the size is then taken from the server, the SHA-256 still decides).

The registry shipped in the package holds the official pins; ``DINOVAULT_REGISTRY=<path>`` (or its old name
``DINOV2_REGISTRY``) replaces it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DinovaultError, RegistryError
from .files import decode_utf8
from .settings import registry_file

DEFAULT_REGISTRY = Path(__file__).with_name("registry.txt")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HUB = re.compile(r"(?P<hub>[a-z]+):(?P<repo>[\w.-]+/[\w.-]+)@(?P<rev>[\w.-]+)/(?P<file>[\w./-]+)")
_COMMIT_HUBS = {"hf"}  # hubs whose revisions must be full commits (a branch name would not pin anything)
_FIX = "fix that line / 请修正该行"


@dataclass(frozen=True)
class Pin:
    file: str
    size: int
    sha256: str


@dataclass(frozen=True)
class HubPin:
    hub: str  # "hf", "ms", …
    repo_id: str
    revision: str
    file: str
    size: int | None  # None: no public record of the exact byte count
    sha256: str

    @property
    def ref(self) -> str:
        return f"{self.hub}:{self.repo_id}@{self.revision}/{self.file}"


@dataclass(frozen=True)
class Pins:
    """Every pin of one registry: official files by name, hub files by (hub, repository)."""

    files: dict[str, Pin] = field(default_factory=dict)
    hubs: dict[tuple[str, str], HubPin] = field(default_factory=dict)

    def hub(self, hub: str, repo: str | None) -> HubPin | None:
        return self.hubs.get((hub, repo)) if repo else None


def registry_path() -> Path:
    return registry_file() or DEFAULT_REGISTRY


def parse_pins(text: str, source: str = "<registry>") -> Pins:
    pins = Pins()
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if line:
            _add(pins, line, raw, f"{source}:{lineno}")
    return pins


def _add(pins: Pins, line: str, raw: str, where: str) -> None:
    fields = line.split()
    if len(fields) != 3:
        raise RegistryError(
            f"{where}: expected '<file> <size> sha256:<hex>', got {raw.strip()!r} / "
            "格式应为 '<文件> <大小> sha256:<哈希>'",
            "fix or remove that line / 请修正该行",
        )
    name, size, digest = fields
    hub = _HUB.fullmatch(name) if ":" in name else None
    if ":" in name and hub is None:
        raise RegistryError(f"{where}: {name!r} is not '<hub>:<owner>/<repo>@<revision>/<file>' / 登记格式错误", _FIX)
    if hub and hub["hub"] in _COMMIT_HUBS and not re.fullmatch(r"[0-9a-f]{40}", hub["rev"]):
        raise RegistryError(
            f"{where}: {name!r}: the revision must be a 40-hex commit for {hub['hub']}: / 修订须为 40 位提交哈希", _FIX)
    if not size.isdigit() and not (hub and size == "-"):
        raise RegistryError(f"{where}: size {size!r} is not a whole number of bytes / 大小须为整数字节数", _FIX)
    alg, _, hexdigest = digest.partition(":")
    if alg != "sha256" or not _HEX64.fullmatch(hexdigest):
        raise RegistryError(
            f"{where}: hash {digest!r} is not 'sha256:' followed by 64 lowercase hex digits / "
            "哈希须为 'sha256:' 加 64 位小写十六进制",
            _FIX,
        )
    key = (hub["hub"], hub["repo"]) if hub else name
    if key in pins.hubs or key in pins.files:
        shown = f"{key[0]}:{key[1]}" if hub else name
        raise RegistryError(f"{where}: {shown} is pinned twice / {shown} 重复登记",
                            "keep one line per file / 每个文件只保留一行")
    if hub:
        pins.hubs[hub["hub"], hub["repo"]] = HubPin(hub["hub"], hub["repo"], hub["rev"], hub["file"],
                                None if size == "-" else int(size), hexdigest)
    else:
        pins.files[name] = Pin(name, int(size), hexdigest)


def _read(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise RegistryError(
            f"cannot read pin registry {path}: {err.strerror or err} / 无法读取哈希登记文件",
            "check DINOVAULT_REGISTRY (or DINOV2_REGISTRY) / 请检查 DINOVAULT_REGISTRY",
        ) from None
    return decode_utf8(data, str(path), RegistryError)


def load_pins(path: Path | None = None) -> Pins:
    path = path or registry_path()
    return parse_pins(_read(path), str(path))


def parse_registry(text: str, source: str = "<registry>") -> dict[str, Pin]:
    """The official pins of a registry text (hub lines are checked too)."""
    return parse_pins(text, source).files


def load_registry(path: Path | None = None) -> dict[str, Pin]:
    """The official pins, keyed by upstream file name."""
    return load_pins(path).files


def pinned_at(file: str, path: Path | None = None) -> str:
    """``<registry>:<line>`` of the line pinning ``file`` (an official file name), or the registry's path alone when
    no line does."""
    path = path or registry_path()
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return str(path)
    found = (n for n, raw in enumerate(lines, start=1) if raw.split("#", 1)[0].split()[:1] == [file])
    return next((f"{path}:{n}" for n in found), str(path))


def fix_hint(file: str) -> str:
    """How to fix the registry in use when it, not the bytes, is wrong about ``file``: its line, or the shipped one."""
    path = registry_path()
    if registry_file() is None:
        return (f"the shipped registry {path} is in use: if these bytes were fetched under another one, set "
                "DINOVAULT_REGISTRY to it again; if the shipped file was edited, restore it (git checkout, or "
                "reinstall dinovault) / 正在使用内置注册表：若文件是在另一个注册表下获取的，"
                "请重新设置 DINOVAULT_REGISTRY；若内置注册表被改动，请恢复它")
    try:
        shipped = load_registry(DEFAULT_REGISTRY).get(file)
    except DinovaultError:
        shipped = None
    says = f"it pins sha256:{shipped.sha256}" if shipped else "it has no pin for this file either"
    return (f"fix or remove the line of {file} in {path}, or unset DINOVAULT_REGISTRY and DINOV2_REGISTRY to use the "
            f"shipped registry {DEFAULT_REGISTRY} ({says}) / 请修正 {path} 中 {file} 的那一行，或取消 "
            "DINOVAULT_REGISTRY 与 DINOV2_REGISTRY 以使用内置注册表")
