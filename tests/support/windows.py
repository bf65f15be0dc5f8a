"""Windows file-system semantics on Linux, for the code paths that only Windows takes (there is no Windows machine
here). Inside ``windows_rules``:

- ``os.replace``/``os.rename`` onto an existing read-only file raise PermissionError (WinError 5), as NTFS does;
- ``os.unlink``/``os.remove`` of a read-only file raise PermissionError;
- ``os.link`` between two "volumes" (folders given as drive roots, e.g. C: and D:) raises OSError EXDEV (WinError 17,
  ERROR_NOT_SAME_DEVICE, which Python maps to EXDEV);
- ``os.symlink`` raises OSError EPERM (WinError 1314: creating symbolic links needs a privilege);
- ``dinovault.files.WINDOWS`` is true (``os.name`` itself stays, or pathlib would build WindowsPath objects).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path


def _read_only(path) -> bool:
    try:
        return not os.stat(path).st_mode & stat.S_IWRITE
    except OSError:
        return False


@contextlib.contextmanager
def windows_rules(monkeypatch, volumes: list[Path]):
    real = {name: getattr(os, name) for name in ("replace", "rename", "unlink", "remove", "link", "symlink")}
    roots = [Path(v).resolve() for v in volumes]
    seen = {"replace_refused": 0, "link_refused": 0}

    def volume(path) -> Path | None:
        p = Path(os.path.abspath(path)).resolve()
        return next((r for r in roots if p == r or r in p.parents), None)

    def replace(src, dst, *a, **kw):
        if os.path.exists(dst) and _read_only(dst):
            seen["replace_refused"] += 1
            raise PermissionError(errno.EACCES, "Access is denied", str(dst))
        return real["replace"](src, dst, *a, **kw)

    def rename(src, dst, *a, **kw):
        if os.path.exists(dst):
            raise FileExistsError(errno.EEXIST, "Cannot create a file when that file already exists", str(dst))
        return real["rename"](src, dst, *a, **kw)

    def unlink(path, *a, **kw):
        if _read_only(path) and not os.path.isdir(path):
            raise PermissionError(errno.EACCES, "Access is denied", str(path))
        return real["unlink"](path, *a, **kw)

    def link(src, dst, *a, **kw):
        if volume(src) != volume(os.path.dirname(os.path.abspath(dst))):
            seen["link_refused"] += 1
            raise OSError(errno.EXDEV, "The system cannot move the file to a different disk drive", str(dst))
        return real["link"](src, dst, *a, **kw)

    def symlink(src, dst, *a, **kw):
        raise OSError(errno.EPERM, "A required privilege is not held by the client", str(dst))

    for name, fn in (("replace", replace), ("rename", rename), ("unlink", unlink), ("remove", unlink),
                     ("link", link), ("symlink", symlink)):
        monkeypatch.setattr(os, name, fn)
    monkeypatch.setattr("dinovault.files.WINDOWS", True)
    try:
        yield seen
    finally:
        monkeypatch.undo()
