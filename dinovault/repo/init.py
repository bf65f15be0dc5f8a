"""`dinovault init`: make any git repository a place where `dinovault fetch`, `dvc repro` and `dvc pull` work.

Each step only adds what is missing, so a second run changes nothing: `dvc init` when there is no .dvc/, the
default remote and cache type in .dvc/config (a remote or cache type of the project's own is kept), dinovault's keys
at the end of params.yaml and the ``fetch`` stage in dvc.yaml (the project's own keys, stages and comments kept), the
.gitignore lines for the weights, cards and every export kind (exports/formats.py ``ignore_rules``), and
``.dinovault/package.json``.

The stage calls the installed package (``dinovault fetch --stage``) and depends on ``.dinovault/package.json``: the
package's version and a hash of its fetch code, rewritten by `dinovault init` and `dinovault fetch` when they differ,
so an upgrade reruns the stage.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..catalog import FAMILIES
from ..errors import RepoError
from ..exports.formats import ignore_rules
from ..files import json_text, write_atomic
from ..params import PACKAGE_FILE, load_params
from ..project import project_root
from . import stages as ours
from .layout import PARAMS_FILE

DVC_FILE = "dvc.yaml"
REMOTE_NAME, REMOTE_URL = "home", "~/.cache/dinovault/dvc-remote"
CACHE_TYPE = "hardlink,symlink"  # one physical copy: workspace, DVC cache and torch.hub cache share the inode
# what does not decide the bytes (see .dvcignore)
NOT_FETCH = {"inference", "features", "repo", "remotes", "cli", "api.py", "__pycache__"}
OURS = ("dinovault fetch", "dinovault features", "python -m dinovault", "download_dinov2.py")  # commands of ours

def _blocks() -> dict[str, str]:
    """Every stage `dinovault init` writes, by name (repo/stages.py: the same definition as this repository's)."""
    return ours.blocks()


# ---------------------------------------------------------------------------------------------- the package record


def package_record() -> dict:
    """The installed package's version and the SHA-256 of its fetch code (every file outside NOT_FETCH)."""
    from .. import __version__

    package = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    files = [p for p in package.rglob("*") if p.is_file() and not NOT_FETCH & set(p.relative_to(package).parts)
             and p.suffix != ".pyc"]
    for path in sorted(files, key=lambda p: p.relative_to(package).as_posix()):
        data = path.read_bytes()
        h.update(f"{path.relative_to(package).as_posix()}\0{len(data)}\0".encode())
        h.update(data)
    return {"package": "dinovault", "version": __version__, "fetch_code": f"sha256:{h.hexdigest()}"}


def refresh_package_file(root: Path) -> bool:
    """Rewrite ``root/.dinovault/package.json`` when the installed package differs from it; True when it changed.
    Only in a repository whose stage depends on it (dinovault's own clone depends on its source folder instead)."""
    path = root / PACKAGE_FILE
    dvc_yaml = root / DVC_FILE
    if not path.is_file() and not (dvc_yaml.is_file() and PACKAGE_FILE in dvc_yaml.read_text(encoding="utf-8")):
        return False
    text = json_text(package_record())
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text)
    return True


# ---------------------------------------------------------------------------------------------- init


@dataclass
class Initialised:
    root: Path
    changed: list[str] = field(default_factory=list)  # one line per change
    kept: list[str] = field(default_factory=list)  # what was already there and left as it was


def init(start: Path | None = None) -> Initialised:
    """Initialise the project around ``start`` (default: the current directory); see the module docstring."""
    root = project_root(start)  # a DVC project (possibly a subdir project), else the git repository's top folder
    if root is None:
        raise RepoError(f"{Path(start or '.').resolve()} is not inside a git repository / 当前目录不在 git 仓库中",
                        "run `git init` first (or cd into your project), then `dinovault init` / 请先 git init")
    done = Initialised(root)
    _check(root)
    _dvc(root, done)
    _params(root, done)
    _stage(root, done)
    if refresh_package_file(root):
        done.changed.append(f"{PACKAGE_FILE}: dinovault {package_record()['version']} and its fetch code's hash")
    elif (root / PACKAGE_FILE).is_file():
        done.kept.append(f"{PACKAGE_FILE}: dinovault {package_record()['version']}")
    _gitignore(root, done)
    return done


def _check(root: Path) -> None:
    """What would stop init, found before anything is written: a params.yaml that does not validate, a dvc.yaml
    that does not parse or has a ``fetch`` stage that is not dinovault's."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    path = root / PARAMS_FILE
    if path.is_file() and path.read_text(encoding="utf-8").strip():
        load_params(path, own_keys=True)
    path = root / DVC_FILE
    try:
        data = YAML(typ="safe").load(path.read_text(encoding="utf-8")) if path.is_file() else None
    except YAMLError as err:
        raise RepoError(f"{path}: not valid YAML ({err}) / 不是有效的 YAML", "fix it first / 请先修正") from None
    for name in _blocks():
        stage = ((data or {}).get("stages") or {}).get(name) if isinstance(data, dict) else None
        if stage is None:
            continue
        cmd = str((stage.get("do") or stage).get("cmd", "")) if isinstance(stage, dict) else str(stage)
        if not any(mark in cmd for mark in OURS):
            raise RepoError(f"{DVC_FILE} already has a stage named '{name}' that is not dinovault's: {cmd} / "
                            f"已有同名阶段 '{name}'",
                            "rename that stage, then run `dinovault init` again / 请先重命名该阶段后重试")


def _dvc(root: Path, done: Initialised) -> None:
    from dvc.repo import Repo

    if not (root / ".dvc").is_dir():
        with _quiet():
            Repo.init(str(root)).close()
        done.changed.append(".dvc/: dvc init")
    repo = Repo(str(root))
    try:
        conf = repo.config.read("repo")
        core, cache = conf.get("core", {}), conf.get("cache", {})
        with repo.config.edit("repo") as edit:
            if not core.get("remote"):
                if REMOTE_NAME not in conf.get("remote", {}):
                    edit["remote"][REMOTE_NAME] = {"url": REMOTE_URL, "verify": True}
                edit["core"]["remote"] = REMOTE_NAME
                done.changed.append(f".dvc/config: default remote '{REMOTE_NAME}' → {REMOTE_URL}")
            else:
                done.kept.append(f".dvc/config: default remote '{core['remote']}'")
            if not cache.get("type"):
                edit["cache"]["type"] = CACHE_TYPE
                done.changed.append(f".dvc/config: cache.type = {CACHE_TYPE} (one copy on disk)")
    finally:
        repo.close()


@contextlib.contextmanager
def _quiet():
    """DVC's own "Initialized DVC repository" lines: init prints one line per change of its own."""
    logger = logging.getLogger("dvc")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _ends_with_newline(text: str) -> str:
    return text if not text or text.endswith("\n") else text + "\n"


def _params(root: Path, done: Initialised) -> None:
    path = root / PARAMS_FILE
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    from ruamel.yaml import YAML

    data = YAML(typ="safe").load(text) or {}
    wanted = ours.params_blocks()
    missing = [key for key in wanted if key not in data]
    if not missing:
        done.kept.append(f"{PARAMS_FILE}: {', '.join(wanted)}")
        return
    write_atomic(path, _ends_with_newline(text) + "".join(wanted[k] for k in missing))
    load_params(path, own_keys=True)
    done.changed.append(f"{PARAMS_FILE}: added {', '.join(missing)}")


def _stage(root: Path, done: Initialised) -> None:
    from ruamel.yaml import YAML

    path = root / DVC_FILE
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    data = YAML().load(text) if text.strip() else None
    stages = data.get("stages") if data else None
    have = [name for name in _blocks() if stages and name in stages]  # dinovault's (_check refused any other)
    if have:
        done.kept.append(f"{DVC_FILE}: stage {', '.join(have)}")
    missing = [name for name in _blocks() if name not in have]
    if not missing:
        return
    blocks = "".join(_blocks()[name] for name in missing)
    if data is None or "stages" not in data:
        new = _ends_with_newline(text) + "stages:\n" + blocks
    elif list(data)[-1] == "stages" and (stages is None or (stages and not stages.fa.flow_style())):
        indent = stages.lc.key(next(iter(stages)))[1] if stages else 2  # the column of the project's own stages
        new = _ends_with_newline(text) + "".join(" " * indent + line[2:] if line.strip() else line
                                                 for line in blocks.splitlines(keepends=True))
    else:  # stages is not the last key, or written inline: DVC's own way of editing dvc.yaml (ruamel round trip)
        block = YAML().load("stages:\n" + blocks)["stages"]
        if stages is None:
            data["stages"] = block
        else:
            stages.update(block)
        out = io.StringIO()
        yaml = YAML()
        yaml.indent(mapping=2, sequence=4, offset=2)
        yaml.dump(data, out)
        new = out.getvalue()
    write_atomic(path, new)
    each = ours.descriptions()
    names = ", ".join(f"{name} ({each[name]})" for name in missing)
    done.changed.append(f"{DVC_FILE}: stage {names}")


def _gitignore(root: Path, done: Initialised) -> None:
    save_dirs = load_params(root / PARAMS_FILE, own_keys=True).save_dirs.values()
    wanted = list(dict.fromkeys(line for d in save_dirs for line in ignore_rules(d)))
    path = root / ".gitignore"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    have = {line.strip() for line in text.splitlines()}
    missing = [line for line in wanted if line not in have]
    if not missing:
        done.kept.append(f".gitignore: {', '.join(wanted)}")
        return
    block = "# dinovault: the weights, cards and exports are DVC outputs (DVC tracks them, git does not)\n"
    write_atomic(path, _ends_with_newline(text) + block + "".join(f"{line}\n" for line in missing))
    done.changed.append(f".gitignore: {', '.join(missing)}")




def has_stage(root: Path) -> bool:
    """Whether ``root``'s dvc.yaml has dinovault's fetch stage (`dinovault init` adds it)."""
    from ruamel.yaml import YAML

    path = root / DVC_FILE
    if not path.is_file():
        return False
    data = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}
    return FAMILIES[0].stage in (data.get("stages") or {}) if isinstance(data, dict) else False


__all__ = ["PACKAGE_FILE", "Initialised", "has_stage", "init", "package_record", "refresh_package_file"]
