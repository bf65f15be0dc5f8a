"""dvc.lock as dinovault reads it: which models' weights it records, and one clear line, naming the file and the
fix, for a dvc.lock that neither dinovault nor DVC could read (git merge-conflict markers after two teammates fetched
different models, a list, binary bytes, broken YAML) instead of a parser's traceback on every task."""

from __future__ import annotations

import re
from pathlib import Path

from ..catalog import CATALOG, family_of
from ..errors import RepoError

LOCK_FILE = "dvc.lock"
LOCK_FIX = ("resolve it, or take one side: `git checkout --theirs dvc.lock` then `dvc repro` / "
            "请解决冲突，或执行 `git checkout --theirs dvc.lock` 后运行 `dvc repro`")
LOCK_REBUILD = ("restore it from git (`git checkout dvc.lock`), or delete it and run `dvc repro` / "
                "请从 git 恢复（git checkout dvc.lock），或删除后运行 `dvc repro`")
_CONFLICT = re.compile(rb"^(<<<<<<<|>>>>>>>|=======$|\|\|\|\|\|\|\|)", re.M)


def read_lock(root: Path) -> dict[str, str]:
    """model → md5 of its weights as dvc.lock records them (only models whose stage has run)."""
    found: dict[str, str] = {}
    for name, stage in lock_stages(root).items():
        kind, _, model = name.partition("@")
        if model not in CATALOG or kind != family_of(model).stage or not isinstance(stage, dict):
            continue
        for out in stage.get("outs") or []:
            if isinstance(out, dict) and str(out.get("path", "")).endswith(f"{model}.pth") and out.get("md5"):
                found[model] = out["md5"]
    return found


def lock_stages(root: Path) -> dict:
    """dvc.lock's ``stages`` mapping ({} when there is no dvc.lock); a file DVC could not read either (merge-conflict
    markers, not YAML, binary, not a mapping) is one RepoError naming the file and the fix."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    path = root / LOCK_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise RepoError(f"{LOCK_FILE}: cannot read it ({err.strerror or err}) / 无法读取 {LOCK_FILE}",
                        LOCK_REBUILD) from None
    marker = _CONFLICT.search(data)
    if marker:
        line = data.count(b"\n", 0, marker.start()) + 1
        raise RepoError(f"{LOCK_FILE}:{line}: unresolved git merge conflict (two fetches of different models were "
                        f"merged) / {LOCK_FILE} 中有未解决的 git 合并冲突", LOCK_FIX)
    try:
        text = data.decode("utf-8")
        if "\0" in text:
            raise UnicodeDecodeError("utf-8", data, 0, 1, "NUL byte")
    except UnicodeDecodeError:
        raise RepoError(f"{LOCK_FILE}: not a text file (binary bytes) / {LOCK_FILE} 不是文本文件",
                        LOCK_REBUILD) from None
    try:
        loaded = YAML(typ="safe").load(text)
    except YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{LOCK_FILE}:{mark.line + 1}" if mark else LOCK_FILE
        raise RepoError(f"{where}: not valid YAML ({getattr(err, 'problem', None) or err}) / 不是有效的 YAML",
                        LOCK_REBUILD) from None
    if loaded is None:
        return {}
    stages = loaded.get("stages") if isinstance(loaded, dict) else None
    if not isinstance(loaded, dict) or not isinstance(stages, dict | None):
        raise RepoError(f"{LOCK_FILE}: expected a mapping with 'schema' and 'stages', got "
                        f"{type(loaded if not isinstance(loaded, dict) else stages).__name__} / {LOCK_FILE} 格式错误",
                        LOCK_REBUILD)
    return stages or {}
