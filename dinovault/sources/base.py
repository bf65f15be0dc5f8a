"""The interface every source implements, and the table of registered sources (see __init__.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ..catalog import ModelSpec
from ..registry import Pins


@dataclass(frozen=True)
class Obtained:
    """Verified (or, allowed, unverified) bytes of one model in the cache, and what the card says of their origin."""

    path: Path
    size: int
    sha256: str
    verified: bool | str  # True: matched a full pin; "prefix": only the hash prefix in the file's name; False
    hashed: bool  # a full SHA-256 pass ran (False: a verified stamp was trusted)
    transferred: int | None  # bytes received over the network by this call; None: some, the count is not known
    url: str | None  # where they came from this time; None: bytes already on this machine
    card: dict  # what the model card records about the origin (``source`` and the source's own fields)
    tensor_digest: str | None = None

    @property
    def downloaded(self) -> bool:
        return self.transferred is None or self.transferred > 0


@dataclass(frozen=True)
class Expected:
    """What the workspace file of a model card must be, according to the card's source."""

    size: int | None
    sha256: str | None  # None: nothing to check against (no pin)
    problems: tuple[str, ...] = ()  # what is wrong with the card itself
    against: str = "pinned"  # what the size and SHA-256 are, for messages: "pinned", "its model card"
    note: str = ""  # shown beside a file that matches (e.g. "verified: prefix …": no full pin exists)


@dataclass(frozen=True)
class Request:
    spec: ModelSpec
    pins: Pins
    export_path: Path | None  # <save_dir>/<model>.pth when exporting (e.g. restored by `dvc pull`: bytes to reuse)
    allow_unverified: bool = False
    progress: object = None
    rehash: bool = False
    url: str | None = None  # a download link given for this fetch (fetch_model(url=...)); a credential: never stored


class Source:
    name = ""

    def pin(self, spec: ModelSpec, pins: Pins):
        """The pin this source's bytes of ``spec`` are checked against; None when the registry has none."""
        raise NotImplementedError

    def offers(self, req: Request) -> bool:
        """Whether this source can serve ``req`` at all (e.g. a signed link is given, the model has a repository on
        this hub); sources that cannot are left out of the order silently."""
        return True

    def describe_pin(self, spec: ModelSpec) -> str:
        """What is pinned for ``spec``, for the message saying there is no such pin."""
        raise NotImplementedError

    def local(self, req: Request) -> Obtained | None:
        """Verified bytes already on this machine (no request); None when there are none."""
        return None

    def obtain(self, req: Request) -> Obtained:
        """Bring the bytes (DownloadError when this source cannot; VerificationError when they do not match)."""
        raise NotImplementedError

    def cache_copy(self, spec: ModelSpec) -> Path:
        """Where this source keeps the file it produced for ``spec`` (linked with the workspace file)."""
        raise NotImplementedError

    def expected(self, spec: ModelSpec, card: dict, pins: Pins) -> Expected:
        """What a workspace file with this card must be, and what is wrong with the card itself."""
        raise NotImplementedError

    def take_file(self, path: Path, spec: ModelSpec, size: int, sha256: str, pin) -> str:
        """Place a file of this source's kind downloaded by hand (``pin``: the pin it matched, None: unverified)
        where ``local`` finds it; says where. The user's file is never written."""
        raise NotImplementedError

    def describe(self, spec: ModelSpec, card: dict) -> str:
        """What was fetched, for the success line."""
        return spec.upstream_file


_SOURCES: dict[str, Source] = {}


S = TypeVar("S", bound="Source")


def register(source: S) -> S:
    """Make ``source`` available under ``source.name`` (replacing one of that name)."""
    _SOURCES[source.name] = source
    return source
