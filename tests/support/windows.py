"""Windows file-system semantics and Windows' ``os`` module on Linux, for the code paths that only Windows takes
(there is no Windows machine here). Inside ``windows_rules`` (this process) or ``windows_env`` (a subprocess, see
``windows_site/sitecustomize.py``):

- ``os.replace``/``os.rename`` onto an existing read-only file raise PermissionError (WinError 5), as NTFS does;
- ``os.unlink``/``os.remove`` of a read-only file raise PermissionError;
- ``os.link`` between two "volumes" (folders given as drive roots, e.g. C: and D:) raises OSError EXDEV (WinError 17,
  ERROR_NOT_SAME_DEVICE, which Python maps to EXDEV);
- ``os.symlink`` raises OSError EPERM (WinError 1314: creating symbolic links needs a privilege);
- dinovault's own code sees Windows' ``os``: every name that typeshed declares for Linux and not for Windows
  (``pwrite``, ``pread``, ``posix_fallocate``, ``getuid``, ``fchmod``, ``O_NOFOLLOW``... ``POSIX_ONLY`` below) is
  missing from it, as on Windows, and its ``os.open`` refuses a call without ``O_BINARY`` (text mode there). Only
  dinovault's modules get it: the standard library and DVC keep the real module, since they chose their POSIX
  branches by ``os.name``, which stays ``posix`` here;
- ``os.stat``/``os.lstat``/``os.fstat`` (and so ``Path.stat``) give results without ``st_blocks``, ``st_blksize``
  and ``st_rdev``, which Windows' ``stat_result`` lacks;
- ``dinovault.files.WINDOWS`` is true (``os.name`` itself stays, or pathlib would build WindowsPath objects).
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import errno
import operator
import os
import stat
import sys
import types
from pathlib import Path

SITE = Path(__file__).with_name("windows_site")  # put first on PYTHONPATH: its sitecustomize applies these rules
VOLUMES_ENV = "DINOVAULT_TEST_WINDOWS_VOLUMES"
_OPS = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
        ast.GtE: operator.ge}


def _typeshed_os_names(platform: str) -> set[str]:
    """The names typeshed's ``os`` stub (bundled with mypy, what ``mypy --platform win32`` checks against) declares
    on ``platform`` for this Python version."""
    import mypy

    def true(test) -> bool:
        if isinstance(test, ast.BoolOp):
            return (all if isinstance(test.op, ast.And) else any)(true(v) for v in test.values)
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            return not true(test.operand)
        if isinstance(test, ast.Call):  # sys.platform.startswith("linux")
            return platform.startswith(ast.literal_eval(test.args[0]))
        left, right = ast.unparse(test.left), ast.literal_eval(test.comparators[0])
        value = platform if left == "sys.platform" else sys.version_info[: len(right)]
        return _OPS[type(test.ops[0])](value, right)

    def walk(body, out: set[str]) -> set[str]:
        for node in body:
            if isinstance(node, ast.If):
                walk(node.body if true(node.test) else node.orelse, out)
            elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                out.add(node.name)
            elif isinstance(node, ast.Assign):
                out.update(t.id for t in node.targets if isinstance(t, ast.Name))
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                out.add(node.target.id)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                out.update(a.asname or a.name for a in node.names)
        return out

    stub = Path(mypy.__file__).parent / "typeshed" / "stdlib" / "os" / "__init__.pyi"
    return walk(ast.parse(stub.read_text(encoding="utf-8")).body, set())


POSIX_ONLY = frozenset(name for name in _typeshed_os_names("linux") - _typeshed_os_names("win32")
                       if hasattr(os, name))
_STAT_POSIX_ONLY = frozenset({"st_blocks", "st_blksize", "st_rdev"})


class WindowsOs(types.ModuleType):
    """``os`` as dinovault's modules see it on Windows: the real module (with the rules below) less POSIX_ONLY."""

    def __init__(self):
        super().__init__("os")

    def __getattr__(self, name):
        if name in POSIX_ONLY:
            raise AttributeError(f"module 'os' has no attribute {name!r} (simulated Windows)")
        if name == "O_BINARY":
            return _O_BINARY
        if name == "open":
            return _open
        return getattr(os, name)


_O_BINARY = 0x8000  # its value on Windows


def _open(path, flags, *args, **kwargs):
    """``os.open``, which on Windows opens in text mode (every \\n written becomes \\r\\n) unless O_BINARY is given:
    refused here instead of translated, so that the test says why."""
    if not flags & _O_BINARY:
        raise AssertionError(f"os.open({path!r}) without os.O_BINARY: Windows would open it in text mode "
                             "(simulated Windows)")
    return os.open(path, flags & ~_O_BINARY, *args, **kwargs)


class WindowsStat:
    """A ``stat_result`` as Windows gives it: the same fields, less st_blocks, st_blksize and st_rdev."""

    def __init__(self, real: os.stat_result):
        self._real = real

    def __getattr__(self, name):
        if name in _STAT_POSIX_ONLY:
            raise AttributeError(f"'os.stat_result' object has no attribute {name!r} (simulated Windows)")
        return getattr(self._real, name)

    def __getitem__(self, i):
        return self._real[i]

    def __len__(self):
        return len(self._real)

    def __iter__(self):
        return iter(self._real)

    def __eq__(self, other):
        return self._real == getattr(other, "_real", other)

    __hash__ = None  # type: ignore[assignment]


def _read_only(path) -> bool:
    try:
        return not os.stat(path).st_mode & stat.S_IWRITE
    except OSError:
        return False


def _dinovault_module(name: str) -> bool:
    return name == "dinovault" or name.startswith("dinovault.")


def apply(volumes: list[Path], setattr_) -> dict[str, int]:
    """Install the rules, each replacement through ``setattr_(owner, name, value)`` (monkeypatch.setattr in this
    process, so that they are undone; plain setattr in a subprocess). What the rules refused, counted."""
    real = {name: getattr(os, name) for name in ("replace", "rename", "unlink", "remove", "link", "symlink",
                                                   "stat", "lstat", "fstat")}
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

    def stat_of(name):
        def windows_stat(*a, **kw):
            return WindowsStat(real[name](*a, **kw))
        return windows_stat

    for name, fn in (("replace", replace), ("rename", rename), ("unlink", unlink), ("remove", unlink),
                     ("link", link), ("symlink", symlink), ("stat", stat_of("stat")), ("lstat", stat_of("lstat")),
                     ("fstat", stat_of("fstat"))):
        setattr_(os, name, fn)

    windows_os = WindowsOs()
    for name, module in list(sys.modules.items()):  # dinovault's modules already imported
        if _dinovault_module(name) and getattr(module, "os", None) is os:
            setattr_(module, "os", windows_os)
    windows_flag_set = "dinovault.files" in sys.modules
    if windows_flag_set:
        setattr_(sys.modules["dinovault.files"], "WINDOWS", True)
    real_import = builtins.__import__

    def import_(name, globals=None, locals=None, fromlist=(), level=0):  # and those imported from now on
        nonlocal windows_flag_set
        module = real_import(name, globals, locals, fromlist, level)
        if module is os and level == 0 and _dinovault_module((globals or {}).get("__name__", "")):
            return windows_os
        files = sys.modules.get("dinovault.files")
        if not windows_flag_set and "WINDOWS" in vars(files or os):  # once files.py has set it itself
            windows_flag_set = True
            setattr_(sys.modules["dinovault.files"], "WINDOWS", True)
        return module

    setattr_(builtins, "__import__", import_)
    return seen


@contextlib.contextmanager
def windows_rules(monkeypatch, volumes: list[Path]):
    """The rules in this process for the block; what they refused, counted."""
    try:
        yield apply(volumes, monkeypatch.setattr)
    finally:
        monkeypatch.undo()


def windows_env(env: dict[str, str], volumes: list[Path]) -> dict[str, str]:
    """``env`` for a subprocess (e.g. a Machine's) in which every Python process applies the rules at start-up."""
    path = os.pathsep.join(p for p in (str(SITE), env.get("PYTHONPATH", "")) if p)
    return {**env, "PYTHONPATH": path, VOLUMES_ENV: os.pathsep.join(str(v) for v in volumes)}
