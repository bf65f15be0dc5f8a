"""The plug-ins installed packages declare (entry-point groups ``dinovault.families``, ``dinovault.sources``).

Read once per process: one scan of every installed distribution's metadata serves all groups (a scan takes ~10 ms
beside torch, DVC and Ray, and the catalog and the sources each needed one, on every command: a no-op `invoke
fetch` included).
"""

from __future__ import annotations

from functools import cache


@cache
def _entry_points():
    from importlib.metadata import entry_points

    return entry_points()


def entry_points_of(group: str):
    """The entry points of ``group`` in the installed packages, as ``importlib.metadata.entry_points(group=...)``."""
    return _entry_points().select(group=group)


__all__ = ["entry_points_of"]
