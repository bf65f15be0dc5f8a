"""Small tmpfs file systems for tests: another file system, a full disk, a read-only one (needs root or
CAP_SYS_ADMIN; a test that asks for one is skipped without)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


def _mount_tmpfs(path: Path, size: str, ro: bool = False) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if ro else "")
    return subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True).returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def tmpfs(tmp_path):
    """Mount small tmpfs file systems (needs root or CAP_SYS_ADMIN; the test is skipped without)."""
    mounted = []

    def mount(name: str, size: str = "1m", ro: bool = False) -> Path:
        path = tmp_path / name
        if not _mount_tmpfs(path, size, ro):
            pytest.skip("cannot mount tmpfs here (not root?)")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        _umount(path)
