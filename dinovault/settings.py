"""Environment variables that tune dinovault, read in one place (the older DINOV2_* retry knobs live in retry.py).

| variable | default | meaning |
|---|---|---|
| ``DINOV2_CONNECTIONS`` | 8 | connections per source for a large pinned file; 1 downloads with one stream |
| ``DINOV2_SEGMENT_SIZE`` | 8388608 | bytes per range of a segmented download (smaller only for tests) |
"""

from __future__ import annotations

import os

from .errors import ConfigError

CONNECTIONS_ENV = "DINOV2_CONNECTIONS"
SEGMENT_SIZE_ENV = "DINOV2_SEGMENT_SIZE"
DEFAULT_CONNECTIONS = 8
DEFAULT_SEGMENT_SIZE = 8 << 20


def _positive_int(name: str, default: int, high: int) -> int:
    value = os.environ.get(name, "").strip()
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


def connections() -> int:
    """Connections per source for a segmented download (``DINOV2_CONNECTIONS``, 1 to 32)."""
    return _positive_int(CONNECTIONS_ENV, DEFAULT_CONNECTIONS, 32)


def segment_size() -> int:
    """Bytes per range of a segmented download (``DINOV2_SEGMENT_SIZE``)."""
    return _positive_int(SEGMENT_SIZE_ENV, DEFAULT_SEGMENT_SIZE, 1 << 34)
