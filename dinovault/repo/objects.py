"""The DVC objects a repository records, and whether a remote holds them intact: each remote copy is read back and
hashed against its name (md5), so a corrupted object is told apart from a missing one.

A remote object found corrupted, or one whose local copy was repaired (the damaged bytes may have been pushed
before), is a *suspect* (kept in ``.dvc/tmp``, per remote URL): the next `invoke push` re-reads it on the remote
and sends good bytes in place of a corrupt copy, which DVC alone would count as "already there" forever.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import RemoteError
from ..files import CHUNK, json_text, write_atomic
from .dvc import describe, remote_name

SUSPECTS_FILE = ".dvc/tmp/dinovault-suspects.json"
# A pull cut short (disk full, Ctrl-C, kill -9) leaves its temporary file beside the object in the local DVC cache:
# DVC's (same names as above) or remotes/s3.py's (files.temp_beside: ".<oid part>.<pid>.<thread>.pull").
_PULL_TEMP = re.compile(r"(\.[A-Za-z0-9_-]{22}\.tmp|\.\d+\.\d+\.pull)$")


@dataclass(frozen=True)
class RemoteObject:
    oid: str  # md5, with ".dir" for a folder listing
    label: str  # the workspace path it stands for
    state: str  # "ok", "corrupted" or "missing"


def recorded_objects(repo, targets: list[str] | None = None) -> dict[str, str]:
    """oid → workspace path (relative) of every cached output dvc.lock records (``targets``: those stages only),
    folder outputs with their listing and, where the listing is in the local cache, each file in it."""
    found: dict[str, str] = {}
    root = Path(repo.root_dir)
    for stage in repo.index.stages:
        if targets is not None and stage.addressing not in targets:
            continue
        for out in stage.outs:
            if not (out.use_cache and out.hash_info and out.hash_info.value):
                continue
            rel = Path(out.fs_path).relative_to(root).as_posix()
            oid = out.hash_info.value
            found[oid] = rel
            if oid.endswith(".dir"):
                for entry in _listing(Path(repo.cache.local.oid_to_path(oid))):
                    found[entry["md5"]] = f"{rel}/{entry['relpath']}"
    return found


def _listing(path: Path) -> list[dict]:
    try:
        return [e for e in json.loads(path.read_bytes()) if isinstance(e, dict) and e.get("md5")]
    except (OSError, ValueError):
        return []


def remote_states(repo, name: str | None, objects: dict[str, str]) -> list[RemoteObject]:
    """Each of ``objects`` (oid → label) as remote ``name`` holds it: its bytes read back and hashed."""
    odb = repo.cloud.get_remote_odb(name, "verify")
    out = []
    for oid, label in sorted(objects.items(), key=lambda kv: kv[1]):
        path = odb.oid_to_path(oid)
        try:
            digest = hashlib.md5(usedforsecurity=False)
            with odb.fs.open(path, "rb") as fh:
                while chunk := fh.read(CHUNK):
                    digest.update(chunk)
            state = "ok" if digest.hexdigest() == oid.removesuffix(".dir") else "corrupted"
        except FileNotFoundError:
            state = "missing"
        out.append(RemoteObject(oid, label, state))
    return out


def remove_remote(repo, name: str | None, oid: str) -> None:
    """Delete one object from the remote (a corrupt copy, so that good bytes are sent in its place)."""
    odb = repo.cloud.get_remote_odb(name, "push")
    with contextlib.suppress(FileNotFoundError):
        odb.fs.rm_file(odb.oid_to_path(oid))


# ---------------------------------------------------------------------------------------------- suspects


def _key(repo, name: str | None) -> str:
    """Suspects are kept per remote URL (a remote renamed or re-added under another name keeps them)."""
    remote = name or repo.config["core"].get("remote") or ""
    return str(repo.config["remote"].get(remote, {}).get("url", remote))


def _read(root: Path) -> dict[str, list[str]]:
    try:
        data = json.loads((root / SUSPECTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: [str(o) for o in v] for k, v in data.items() if isinstance(v, list)} if isinstance(data, dict) else {}


def _write(root: Path, data: dict[str, list[str]]) -> None:
    path = root / SUSPECTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json_text({k: sorted(set(v)) for k, v in data.items() if v}))


def add_suspects(repo, name: str | None, oids: list[str]) -> None:
    """Remember ``oids`` for remote ``name`` (None: the default; '*': every configured remote, for a repaired local
    copy that may have been pushed anywhere) until a push has checked them there."""
    if not oids:
        return
    root = Path(repo.root_dir)
    data = _read(root)
    for remote in (list(repo.config["remote"]) if name == "*" else [name]):
        data.setdefault(_key(repo, remote), []).extend(oids)
    _write(root, data)


def suspects(repo, name: str | None) -> set[str]:
    return set(_read(Path(repo.root_dir)).get(_key(repo, name), []))


def clear_suspects(repo, name: str | None, oids: set[str]) -> None:
    """Forget ``oids`` for remote ``name``: checked there, or sent again."""
    root = Path(repo.root_dir)
    data = _read(root)
    key = _key(repo, name)
    if not oids or key not in data:
        return
    data[key] = [o for o in data[key] if o not in oids]
    if any(data.values()):
        _write(root, data)
    else:
        with contextlib.suppress(OSError):
            os.unlink(root / SUSPECTS_FILE)


# ---------------------------------------------------------------------------------------------- push and pull


def drop_corrupt(repo, name: str, present: set) -> set:
    """The suspects among the objects the remote holds (found corrupted by `invoke verify --remote`, or repaired
    here since they may have been pushed damaged: repo/objects.py), read back there; a corrupt one is deleted so
    good bytes are sent in its place. Either way it is no longer a suspect."""
    check = suspects(repo, name)
    if not check:
        return set()
    by_oid = {hi.value: hi for hi in present if hi.value in check}
    dropped = set()
    for obj in remote_states(repo, name, {oid: oid for oid in by_oid}):
        if obj.state == "corrupted":
            remove_remote(repo, name, obj.oid)
            dropped.add(by_oid[obj.oid])
    clear_suspects(repo, name, set(by_oid))
    return dropped


def corrupted_error(repo, name, present_before: set[str] | frozenset = frozenset()) -> RemoteError | None:
    """After a pull that found objects "missing": those the remote does hold, but corrupted (DVC re-hashed them and
    refused to place them), read back and named; and those ``present_before`` the pull (remote_has) that the remote
    lacks now: DVC re-hashes the objects of a folder remote when it lists them (``HashFileDB.check``, for files not
    read-only) and deletes a corrupt one there, so an object gone during the pull was found corrupt. None when they
    really are missing."""
    wanted = {oid: label for oid, label in recorded_objects(repo).items()
              if not os.path.exists(repo.cache.local.oid_to_path(oid))}
    with contextlib.suppress(Exception):  # unreadable now: DVC's own diagnosis stands
        states = remote_states(repo, name, wanted)
        bad = [o for o in states if o.state == "corrupted"]
        gone = [o for o in states if o.state == "missing" and o.oid in present_before]
        add_suspects(repo, name, [o.oid for o in bad])
        if bad or gone:
            return damage_error(repo, name, [o.label for o in bad + gone],
                                "; DVC found it so and deleted it from the remote" if gone and not bad else "")
    return None


def damage_error(repo, name, labels: list[str], how: str = "") -> RemoteError:
    """The refusal of a pull for remote objects whose bytes do not hash to their names (``labels``: the workspace
    paths they stand for; ``how``: what else is known), and what to do."""
    return RemoteError(
        f"pull: {describe(repo, name)}: {', '.join(labels)} corrupted on the remote (its bytes do not hash to its "
        f"name{how}); not placed in the workspace / 远端对象已损坏（哈希不符），未放入工作区",
        f"on a machine with intact files: invoke verify --remote {remote_name(repo, name)}, then invoke push "
        "(it replaces the corrupt copy) / 请在文件完好的机器上运行 invoke verify --remote 后 invoke push",
        cause="corrupt",
    )


def drop_pull_temps(repo, missing: dict[str, int]) -> int:
    """Remove what an interrupted pull left in the local cache folders of the objects this pull fetches again."""
    removed = 0
    for folder in sorted({os.path.dirname(repo.cache.local.oid_to_path(oid)) for oid in missing}):
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(folder):
                if _PULL_TEMP.search(entry.name) and entry.is_file(follow_symlinks=False):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                        removed += 1
    return removed


def recache_outputs(repo) -> list[tuple[str, list[str]]]:
    """(stage, outputs) put back into the local DVC cache: each cached output of a recorded stage whose object is
    missing there while the workspace still hashes to what dvc.lock records (DVC's own Output API: a changed output
    is left alone, and dvc.lock is never rewritten)."""
    done = []
    for stage in repo.index.stages:
        outs = [o for o in stage.outs if o.use_cache and o.hash_info and o.hash_info.value and o.exists
                and not o.workspace_status() and o.changed_cache()]
        for out in outs:
            out.commit()
        if outs:
            done.append((stage.addressing, [str(o) for o in outs]))
    return done
