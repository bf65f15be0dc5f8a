"""Preparing save_dir: created when needed and proven writable before anything is fetched.

The ``<model>.pth`` export itself is the cache file (cache.place_file: a hard link when both are on one file
system, a verified copy otherwise, through a temporary name; a target that already holds the right bytes is left
untouched, so DVC sees nothing to do); its model card is exports/card.py.
"""

from __future__ import annotations

import errno
from pathlib import Path

from ..errors import ExportError
from ..files import temp_beside


def prepare_save_dir(save_dir: Path) -> Path:
    """Create ``save_dir`` if needed and prove it can receive files; ExportError saying what to do otherwise."""
    save_dir = Path(save_dir)
    hint = "pass another --save_dir, or fix that path / 请换一个 --save_dir 或修正该路径"
    if save_dir.exists() and not save_dir.is_dir():
        raise ExportError(f"save_dir {save_dir} is a file, not a folder / 保存目录是一个文件", hint)
    try:
        save_dir.mkdir(parents=True, exist_ok=True)
        probe = temp_beside(save_dir / "dinovault-probe")
        with open(probe, "xb"):
            pass
        probe.unlink()
    except OSError as err:
        what = "is under a file" if err.errno == errno.ENOTDIR else f"is not writable ({err.strerror or err})"
        raise ExportError(f"save_dir {save_dir} {what} / 保存目录不可写", hint) from None
    return save_dir


__all__ = ["prepare_save_dir"]
