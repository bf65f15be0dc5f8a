"""Every environment variable dinovault reads, read here and nowhere else, on each call (never at import), so a
long-lived process or a test sees the environment as it is now.

| variable | read by | effect |
|---|---|---|
| ``DINOV2_BASE_URL`` | sources | base URL(s) of the official layout, comma or space separated, tried in order |
| ``DINOVAULT_REGISTRY`` | registry | a pin file replacing ``dinovault/registry.txt`` |
| ``DINOVAULT_RETRIES``, ``DINOVAULT_BACKOFF``, ``DINOVAULT_MAX_WAIT``, ``DINOVAULT_TIMEOUT`` | download | retries |
| ``DINOVAULT_TIMEOUT`` | remotes.bounded | also bounds a remote probe (3 x) and its requests |
| ``DINOVAULT_RETRY_DELAYS`` | remotes.transfer | seconds before each retry of a push or pull (default ``1 3 8``) |
| ``TORCH_HOME``, ``XDG_CACHE_HOME`` | cache | the torch.hub cache root, defaulting exactly as torch does |
| ``DINOVAULT_MODELS_DIR`` | inference.weights | the one folder the extractor, hubconf.py, load_backbone read when set |
| ``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY`` (either case) | remotes.probe | a proxy is used: no direct TCP check |
| ``NO_PROXY`` (and the proxies above) | download | which proxy a failed download went through, named in its error |
| ``DINOVAULT_CONNECTIONS`` | download | connections per source for a large pinned file (default 8, 1-32; 1: one) |
| ``DINOVAULT_SEGMENT_SIZE`` | download | bytes per range of a segmented download (default 8 MiB; smaller for tests) |
| ``DINOVAULT_SOURCES`` | fetch | sources tried in order: ``official`` (the base URLs), ``huggingface`` (default both) |
| ``DINOVAULT_ALLOW_UNVERIFIED`` | fetch script | ``1``: accept a model with no pin (invoke fetch --allow-unverified) |
| ``PATH`` | cli | set, not read: this interpreter's folder first while `dinovault fetch` runs the DVC stages |
| ``DINOV3_URL`` | sources.signed | the signed link from Meta's e-mail (a credential: never written anywhere) |
| ``DINOVAULT_MODELSCOPE_ENDPOINT`` | sources.modelscope | ModelScope's address, a full URL |
| ``MODELSCOPE_DOMAIN`` | sources.modelscope | the ``modelscope`` client's own: a bare domain (https) |
| ``DINOVAULT_FAMILIES`` | catalog | plug-in families: ``module:attribute`` of a ``Family``, comma separated |
| ``DVC_ROOT`` | fetch script | set by DVC for every stage command: the repository whose outputs the stage writes |

The ``DINOVAULT_*`` names in ``OLD_NAMES`` were ``DINOV2_*`` before they governed DINOv3 too; the old name is still
read when the new one is unset or empty (``value_of``). ``DINOV2_BASE_URL``/``DINOV3_BASE_URL``/``DINOV3_URL`` are
each one family's and keep their names.

huggingface_hub reads ``HF_ENDPOINT``, ``HF_HOME``, ``HF_TOKEN`` and ``HF_HUB_OFFLINE`` itself, as it documents;
dinovault only passes them through. ``DINOVAULT_REQUIRE_SERVERS`` is read by the tests only (tests/support/servers.py).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import ConfigError, DinovaultError

BASE_URL = "DINOV2_BASE_URL"
REGISTRY = "DINOVAULT_REGISTRY"
RETRIES, BACKOFF = "DINOVAULT_RETRIES", "DINOVAULT_BACKOFF"
MAX_WAIT, TIMEOUT = "DINOVAULT_MAX_WAIT", "DINOVAULT_TIMEOUT"
CONNECTIONS = "DINOVAULT_CONNECTIONS"
SEGMENT_SIZE = "DINOVAULT_SEGMENT_SIZE"
SOURCES_ENV = "DINOVAULT_SOURCES"
OLD_NAMES = {  # the name each setting had while only DINOv2 existed, still read as a fallback
    name: name.replace("DINOVAULT_", "DINOV2_", 1)
    for name in (REGISTRY, RETRIES, BACKOFF, MAX_WAIT, TIMEOUT, CONNECTIONS, SEGMENT_SIZE, SOURCES_ENV)
}
ALLOW_UNVERIFIED = "DINOVAULT_ALLOW_UNVERIFIED"
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def base_url_env(family: str = "dinov2") -> str:
    """The variable naming a family's mirrors: ``DINOV2_BASE_URL``, ``DINOV3_BASE_URL``."""
    return f"{family.upper()}_BASE_URL"


def base_urls_text(family: str = "dinov2") -> str:
    return os.environ.get(base_url_env(family), "")


def value_of(name: str) -> tuple[str, str]:
    """The variable that gives setting ``name`` its value, and that value: ``name`` when set and not empty, else its
    old ``DINOV2_*`` name when set (so a message names what the user wrote), else ``(name, "")``."""
    for each in (name, OLD_NAMES.get(name)):
        if each and os.environ.get(each, "").strip():
            return each, os.environ[each]
    return name, ""


def registry_file() -> Path | None:
    value = value_of(REGISTRY)[1].strip()
    return Path(value).expanduser() if value else None


FAMILIES_ENV = "DINOVAULT_FAMILIES"


def families_refs() -> list[str]:
    """``$DINOVAULT_FAMILIES``: the ``module:attribute`` references of plug-in families (catalog/__init__.py)."""
    return [ref.strip() for ref in os.environ.get(FAMILIES_ENV, "").split(",") if ref.strip()]


def dvc_root() -> Path | None:
    """The repository DVC is running this process as a stage of (DVC sets ``DVC_ROOT`` for every stage command)."""
    value = os.environ.get("DVC_ROOT")
    return Path(value) if value else None


def number(name: str, default: float, kind=float):
    """A non-negative number from ``name`` or its old name (``default`` when unset or empty); a DinovaultError naming
    the variable otherwise."""
    name, value = value_of(name)
    if not value:
        return default
    try:
        result = kind(value)
    except ValueError:
        result = -1
    if result < 0:
        raise DinovaultError(f"{name}={value!r} is not a non-negative number / 不是非负数",
                             f"unset {name} or fix its value / 请取消或修正 {name}")
    return result


def torch_home() -> Path:
    """``$TORCH_HOME``, defaulting exactly as torch.hub does (``$XDG_CACHE_HOME/torch`` or ``~/.cache/torch``)."""
    default = os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(os.path.expanduser(os.getenv("TORCH_HOME", default)))


def models_dir() -> str | None:
    return os.environ.get("DINOVAULT_MODELS_DIR") or None


def proxy_set() -> bool:
    return any(os.environ.get(name) for name in PROXY_VARS)


def allow_unverified() -> bool:
    return os.environ.get(ALLOW_UNVERIFIED, "") == "1"


@contextlib.contextmanager
def overridden(name: str, value: str) -> Iterator[None]:
    """``name=value`` in this process's environment (inherited by the commands it runs) for the block."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before

DEFAULT_CONNECTIONS = 8
DEFAULT_SEGMENT_SIZE = 8 << 20


def _positive_int(name: str, default: int, high: int) -> int:
    name, value = value_of(name)
    value = value.strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= high:
        raise ConfigError(f"{name}={value!r} is not a whole number from 1 to {high} / {name} 的值无效",
                          f"unset {name} or set it to a number such as {default} / 请取消设置或改为如 {default} 的数字")
    return number


RETRY_DELAYS = "DINOVAULT_RETRY_DELAYS"
DEFAULT_RETRY_DELAYS = (1.0, 3.0, 8.0)


def retry_delays() -> tuple[float, ...]:
    """Seconds before retry 1, 2, 3… of a push or pull after a transient failure (``DINOVAULT_RETRY_DELAYS``, comma
    or space separated); ``--retries N`` uses the first N."""
    text = os.environ.get(RETRY_DELAYS, "")
    if not text.strip():
        return DEFAULT_RETRY_DELAYS
    try:
        delays = tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        delays = (-1.0,)
    if min(delays) < 0:
        raise ConfigError(f"{RETRY_DELAYS}={text!r} is not a list of seconds / {RETRY_DELAYS} 的值无效",
                          f"unset {RETRY_DELAYS} or set it like \"1 3 8\" / 请取消设置或改为如 \"1 3 8\" 的秒数")
    return delays


def connections() -> int:
    """Connections per source for a segmented download (``DINOVAULT_CONNECTIONS``, 1 to 32)."""
    return _positive_int(CONNECTIONS, DEFAULT_CONNECTIONS, 32)


def segment_size() -> int:
    """Bytes per range of a segmented download (``DINOVAULT_SEGMENT_SIZE``)."""
    return _positive_int(SEGMENT_SIZE, DEFAULT_SEGMENT_SIZE, 1 << 34)


def sources_text() -> str:
    """``$DINOVAULT_SOURCES`` (or the old ``$DINOV2_SOURCES``) as written (sources/__init__.py knows which names
    exist)."""
    return value_of(SOURCES_ENV)[1]

@contextlib.contextmanager
def path_first(folder: Path) -> Iterator[None]:
    """``folder`` first on ``PATH`` for the block, so the commands a DVC stage runs (``dinovault fetch --stage``)
    are those of this interpreter's environment even when it was not activated."""
    with overridden("PATH", os.pathsep.join([str(folder), os.environ.get("PATH", "")])):
        yield


def proxy_for(url: str) -> tuple[str, str] | None:
    """The proxy variable requests uses for ``url`` and its value without credentials (``user:pass@`` dropped),
    None when no proxy applies (none set, or ``NO_PROXY`` exempts the host)."""
    from urllib.parse import urlsplit

    from requests.utils import should_bypass_proxies

    parts = urlsplit(url)
    no_proxy = os.environ.get("NO_PROXY", os.environ.get("no_proxy", ""))
    if parts.hostname and no_proxy and should_bypass_proxies(url, no_proxy=no_proxy):
        return None
    scheme = parts.scheme.upper()
    for name in (f"{scheme}_PROXY", f"{scheme}_PROXY".lower(), "ALL_PROXY", "all_proxy"):
        value = os.environ.get(name)
        if value:
            proxy = urlsplit(value if "://" in value else "http://" + value)
            host = proxy.hostname or "?"
            port = proxy.netloc.rpartition("@")[2].rpartition(":")[2] if ":" in proxy.netloc.rpartition("@")[2] else ""
            return name, f"{proxy.scheme}://{host}{':' + port if port else ''}"
    return None


def signed_url_env(family: str = "dinov3") -> str:
    """The variable holding a family's signed download link: ``DINOV3_URL``."""
    return f"{family.upper()}_URL"


def signed_url(family: str = "dinov3") -> str | None:
    return os.environ.get(signed_url_env(family), "").strip() or None


@contextlib.contextmanager
def signed_urls(url: str | None, families) -> Iterator[None]:
    """``$<FAMILY>_URL=url`` for each family, for the commands a DVC stage runs (dvc.yaml and dvc.lock record a stage's
    command line, never its environment); nothing without a url."""
    with contextlib.ExitStack() as stack:
        for family in families if url is not None else ():
            stack.enter_context(overridden(signed_url_env(family), str(url)))
        yield


MODELSCOPE_ENDPOINT = "DINOVAULT_MODELSCOPE_ENDPOINT"
MODELSCOPE_DEFAULT = "https://www.modelscope.cn"


def modelscope_endpoint() -> str:
    """ModelScope's address: ``$DINOVAULT_MODELSCOPE_ENDPOINT`` (a full URL), else ``https://$MODELSCOPE_DOMAIN``
    (the ``modelscope`` client's own variable), else https://www.modelscope.cn."""
    value = os.environ.get(MODELSCOPE_ENDPOINT, "").strip()
    if value:
        return value.rstrip("/")
    domain = os.environ.get("MODELSCOPE_DOMAIN", "").strip().rstrip("/")
    return f"https://{domain}" if domain else MODELSCOPE_DEFAULT


FEATURES_ENGINE = "DINOVAULT_FEATURES_ENGINE"  # how a features@<set> stage computes: local (default) or ray; Ray
FEATURES_WORKERS = "DINOVAULT_FEATURES_WORKERS"  # itself reads RAY_ADDRESS (`invoke features --address`)


def features_engine() -> str:
    return os.environ.get(FEATURES_ENGINE, "").strip() or "local"


def features_workers() -> int | None:
    value = os.environ.get(FEATURES_WORKERS, "").strip()
    return int(value) if value.isdigit() else None
