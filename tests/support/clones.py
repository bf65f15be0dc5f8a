"""Simulated computers and temporary git clones of this repository, driven through the real `dvc` / `invoke` CLIs.

``Machine`` is one computer: a private HOME (so the default remote ``~/.cache/dinovault/dvc-remote`` lands in a
temporary folder), DVC's global/system/site folders, a git identity and PATH with this venv's bin first. Clones made
on it get their own TORCH_HOME. ``Clone`` runs commands in one clone and asserts on their return code.

Used by tests/test_pipeline.py, tests/test_remotes.py and the benchmarks in bench/.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from dinovault.settings import OLD_NAMES
from tests.support import warmstart
from tests.support.warmstart import fresh

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

# what a local run may have produced: a fresh clone does not have it
_PRODUCED = re.compile(r"^(dvc\.lock|models/.*\.(pth|json)|metrics/.*)$")
_IDENTITY = dict(
    GIT_AUTHOR_NAME="dinovault test",
    GIT_AUTHOR_EMAIL="test@dinovault.invalid",
    GIT_COMMITTER_NAME="dinovault test",
    GIT_COMMITTER_EMAIL="test@dinovault.invalid",
    GIT_CONFIG_NOSYSTEM="1",
)


def copy_worktree(dest: Path, root: Path = ROOT) -> Path:
    """This checkout's files as they are now (tracked, and untracked but not ignored), without anything a run may
    have produced (dvc.lock, models, metrics), even when committed (the README's "record and share" step): what a
    fresh clone of the project sees."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)

    def git_ls(*args: str) -> list[str]:
        out = subprocess.run(["git", "-C", str(root), "ls-files", *args, "-z"], capture_output=True, check=True)
        return [rel for rel in out.stdout.decode().split("\0") if rel]

    for rel in git_ls("-co", "--exclude-standard"):
        src = root / rel
        if not src.is_file() or _PRODUCED.match(rel):
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    return dest


def snapshot_worktree(dest: Path, env: dict[str, str] | None = None, prefixes: dict[str, str] | None = None,
                      smoke_test: bool = True) -> Path:
    """``copy_worktree`` committed as a git repository (branch main) to clone from. ``prefixes``: {DINOv3 model:
    hash prefix} its catalog row's file name carries instead of the real one, so a served random file is "official".
    ``smoke_test=False`` commits params.yaml with the smoke test off, for modules whose subject it is not (the
    stage then never imports torch: ~2 CPU-s a stage run)."""
    dest = copy_worktree(dest)
    if not smoke_test:
        smoke_test_off(dest / "params.yaml")
    if prefixes:
        from dinovault.catalog import get_spec

        row = dest / "dinovault" / "catalog" / "dinov3.py"
        text = row.read_text(encoding="utf-8")
        for model, prefix in prefixes.items():
            text = text.replace(f'"{get_spec(model).hash_prefix}"', f'"{prefix}"')
        row.write_text(text, encoding="utf-8")
    env = env or {**os.environ, **_IDENTITY}
    for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"]):
        subprocess.run(["git", *cmd], cwd=dest, check=True, env=env)
    return dest


def select_models(params: Path, *models: str) -> None:
    """Rewrite the selection in a params.yaml (keeping everything else)."""
    text = params.read_text(encoding="utf-8")
    block = "models: []\n" if not models else "models:\n" + "".join(f"  - {m}\n" for m in models)
    text = re.sub(r"^models:.*\n(?:  - .*\n)*", block, text, count=1, flags=re.M)
    params.write_text(text, encoding="utf-8")


def smoke_test_off(params: Path) -> None:
    """``smoke_test: false`` in a params.yaml that has it on (keeping everything else)."""
    text = params.read_text(encoding="utf-8")
    assert "smoke_test: true" in text, f"{params} has no smoke_test: true to turn off"
    params.write_text(text.replace("smoke_test: true", "smoke_test: false"), encoding="utf-8")


class Clone:
    """One clone. ``run`` asserts the return code is 0 (``ok=True``), not 0 (``ok=False``) or nothing (``ok=None``),
    showing the command and its output when it is not; ``res.text`` is stdout + stderr."""

    timeout: float | None = None  # seconds per command
    log_times = False  # print each command's duration to stderr
    launcher = None  # a warmstart.Launcher (set by tests/conftest.py): invoke/dvc forked from a warm interpreter

    def __init__(self, path: Path, env: dict[str, str]):
        self.path = path
        self.env = env

    @property
    def torch_cache(self) -> Path:
        return Path(self.env["TORCH_HOME"]) / "hub" / "checkpoints"

    def run(self, *args, ok: bool | None = True, stdin=subprocess.DEVNULL, cwd=None) -> subprocess.CompletedProcess:
        t0 = time.monotonic()
        if str(args[0]) == warmstart.PYTHON and warmstart.python_launcher is not None:
            run = warmstart.python_launcher.run  # a python command of the test's: forked with torch imported
        else:
            run = self.launcher.run if self.launcher is not None else fresh
        res = run(args, cwd or self.path, self.env, stdin=stdin, timeout=self.timeout)
        if self.log_times:
            print(f"  [{time.monotonic() - t0:5.1f} s] {' '.join(map(str, args[:3]))}", file=sys.stderr)
        shown = f"$ {' '.join(map(str, args))}\n--- stdout\n{res.stdout}\n--- stderr\n{res.stderr}"
        if ok is not None:
            assert (res.returncode == 0) == ok, shown
        res.text = res.stdout + res.stderr  # type: ignore[attr-defined]
        return res

    def start(self, *args):
        """``args`` started and left running, as ``subprocess.Popen(..., stdout=PIPE, stderr=PIPE, text=True)``:
        ``communicate(timeout)`` gives its output once it has ended."""
        start = self.launcher.start if self.launcher is not None else warmstart.popen
        return start(args, self.path, self.env)

    def invoke(self, *args, **kw):
        return self.run(BIN / "invoke", *args, **kw)

    def dvc(self, *args, **kw):
        return self.run(BIN / "dvc", *args, **kw)

    def git(self, *args, **kw):
        return self.run("git", *args, **kw)

    def select(self, *models: str) -> None:
        """Rewrite the selection in params.yaml (keeping everything else)."""
        select_models(self.path / "params.yaml", *models)

    def skip_smoke_test(self) -> None:
        """``smoke_test: false`` in params.yaml (keeping everything else)."""
        smoke_test_off(self.path / "params.yaml")

    def commit(self, message: str) -> None:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)

    def lock(self) -> dict:
        from ruamel.yaml import YAML

        return YAML(typ="safe").load((self.path / "dvc.lock").read_text(encoding="utf-8"))

    def lock_md5(self, model: str) -> str:
        outs = self.lock()["stages"][f"fetch@{model}"]["outs"]
        return next(o["md5"] for o in outs if o["path"].endswith(f"{model}.pth"))

    def weights(self, model: str) -> Path:
        return self.path / "models" / "dinov2" / f"{model}.pth"

    def cache_object(self, md5sum: str) -> Path:
        return self.path / ".dvc" / "cache" / "files" / "md5" / md5sum[:2] / md5sum[2:]

    def stages(self) -> list[str]:
        return sorted(line.split()[0] for line in self.dvc("stage", "list").stdout.splitlines() if line.strip())


class Machine:
    """One computer: HOME, DVC's global/system/site folders under ``base``; clones made on it get their own
    TORCH_HOME. ``server_env`` (e.g. the test server's DINOV2_BASE_URL) and ``extra`` are added to the environment,
    from which any DINOV2_/DVC_/GIT_/AWS_ variable of the calling process and any DINOVAULT_ setting that had a DINOV2_
    name (settings.OLD_NAMES) is removed."""

    def __init__(self, base: Path, server_env: dict[str, str] | None = None, source: Path | None = None,
                 clone_class: type[Clone] = Clone, **extra: str):
        self.base = Path(base)
        self.source = source
        self.clone_class = clone_class
        self.home = self.base / "home"
        for sub in ("home", "dvc-global", "dvc-system", "dvc-site"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("DINOV2_", "DVC_", "GIT_", "AWS_")) and k not in OLD_NAMES}
        self.env.update(server_env or {})
        self.env.update(
            HOME=str(self.home),
            XDG_CACHE_HOME=str(self.home / ".cache"),
            XDG_CONFIG_HOME=str(self.home / ".config"),
            DVC_NO_ANALYTICS="1",
            DVC_GLOBAL_CONFIG_DIR=str(self.base / "dvc-global"),
            DVC_SYSTEM_CONFIG_DIR=str(self.base / "dvc-system"),
            DVC_SITE_CACHE_DIR=str(self.base / "dvc-site"),
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            PYTHONUNBUFFERED="1",
            **_IDENTITY,
        )
        self.env.update(extra)

    @property
    def default_remote(self) -> Path:
        return self.home / ".cache" / "dinovault" / "dvc-remote"

    def clone(
        self, name: str, source: Path | None = None, torch_home: Path | None = None, extra_env: dict | None = None
    ) -> Clone:
        """A fresh clone with an empty DVC cache and, unless ``torch_home`` is shared, an empty torch cache."""
        source = source or self.source
        assert source is not None, "no repository to clone from"
        dest = self.base / name
        subprocess.run(["git", "clone", "-q", str(source), str(dest)], check=True, env=self.env)
        env = dict(self.env, TORCH_HOME=str(torch_home or self.base / f"torch-{name}"), **(extra_env or {}))
        return self.clone_class(dest, env)
