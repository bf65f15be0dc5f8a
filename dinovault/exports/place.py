"""Preparing save_dir: created when needed and proven writable before anything is fetched; a folder DVC records
refused at once when it is reached through a link (`refuse_linked`).

The ``<model>.pth`` export itself is the cache file (cache.place_file: a hard link when both are on one file
system, a verified copy otherwise, through a temporary name; a target that already holds the right bytes is left
untouched, so DVC sees nothing to do); its model card is exports/card.py.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ..catalog import ModelSpec
from ..errors import ExportError
from ..files import temp_beside
from .formats import export_dirs


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


def linked_folder(root: Path, folder: Path) -> Path | None:
    """The first folder from ``root`` (excluded) down to ``folder`` that is a link (a symbolic link, or a junction on
    Windows: its real path is not where its name is); None when there is none or ``folder`` is not under ``root``."""
    here, folder = Path(os.path.realpath(root)), Path(os.path.abspath(folder))
    for base in (here, Path(os.path.abspath(root))):  # the folder may be named through the root's real path or not
        if folder.is_relative_to(base):
            parts = folder.relative_to(base).parts
            break
    else:
        return None
    for part in parts:
        here = here / part
        if not os.path.lexists(here):
            return None  # not made yet: the stage makes a real folder
        if os.path.normcase(os.path.realpath(here)) != os.path.normcase(str(here)):
            return here
    return None


def refuse_linked(root: Path, save_dir: Path, spec: ModelSpec, metrics_dir: Path | None) -> None:
    """ExportError when a folder the stage of ``spec`` records outputs in (``save_dir``, its export folders,
    ``metrics_dir``; under the repository ``root``) is reached through a link. DVC cannot track outputs inside a
    symlinked folder: its `dvc add` says so, and a stage fails only after its command ran ("… is outside of git
    repository", when DVC writes the folder's .gitignore). Said before any download, with the ways DVC supports."""
    for folder in [save_dir, *export_dirs(save_dir, spec).values(), *([metrics_dir] if metrics_dir else [])]:
        link = linked_folder(root, folder)
        if link is None:
            continue
        target = Path(os.path.realpath(link))
        shown, cache = link.relative_to(os.path.realpath(root)), _quoted(target.parent / "dvc-cache")
        if not cache.isascii():  # DVC writes its config files in ASCII only (remotes/config.py says so too)
            cache = "<a folder on that disk whose path is ASCII only, as DVC's config must be>"
        raise ExportError(
            f"{shown} is a link to {target}: DVC cannot track files inside a symlinked folder (\"Cannot add files "
            "inside symlinked directories\", https://dvc.org/doc/user-guide/troubleshooting#add-symlink), so the "
            f"fetch would fail after the download; nothing was downloaded / {shown} 是指向 {target} 的链接，"
            "DVC 不能跟踪符号链接目录中的文件，未下载任何内容",
            "remove the link itself (its target keeps its files) and keep the bytes on that disk as DVC allows: "
            f"`dvc cache dir {cache}` and `dvc config cache.type symlink` (TORCH_HOME on that disk too), or put the "
            "whole repository there (a link to the repository folder itself is fine) / 请删除该链接（目标中的文件"
            "保留），改用 dvc cache dir 把 DVC 缓存放到该磁盘并设 cache.type symlink（TORCH_HOME 也放到该磁盘），"
            "或把整个仓库放到该磁盘",
        )


def _quoted(path: Path) -> str:
    return f'"{path}"' if " " in str(path) else str(path)  # double quotes: both POSIX shells and cmd.exe read them


__all__ = ["linked_folder", "prepare_save_dir", "refuse_linked"]
