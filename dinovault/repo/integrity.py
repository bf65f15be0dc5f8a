"""`invoke verify [--repair]`: every recorded model's bytes, wherever they are linked, against dvc.lock and the pin.

A model's weights live in up to three places: the workspace file, the DVC cache object and the torch.hub cache
copy, usually one inode (hard links). Each is re-hashed (each inode once). Repair gets good bytes (an intact copy
among those three, else the DVC remote, else the pinned download sources), verifies them, and links them into every
place: a damaged inode is never written into; renaming the new link over each name unlinks it there.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, replace
from pathlib import Path

from .. import sources
from ..cache import check_file, write_stamp
from ..catalog import CATALOG
from ..errors import DinovaultError, RegistryError, RepoError, VerificationError
from ..exports.card import read_card
from ..files import Digests, hash_file, link_atomic, link_or_copy_atomic, remove, temp_beside
from ..progress import human_size
from ..registry import Pin, Pins, fix_hint, load_pins, pinned_at
from .dvc import describe, open_repo
from .layout import Layout

REPAIR = "invoke verify --repair"


@dataclass(frozen=True)
class Checked:
    path: str  # relative to the repository (workspace) or absolute (DVC cache, torch.hub cache)
    state: str  # "ok", "bad", "missing" or "unfetched" (selected, never fetched: nothing recorded to contradict)
    detail: str  # "<size>  sha256:<hex>" when ok, what is wrong otherwise
    file: str = ""  # state "registry" (the registry, not the bytes, is wrong): the upstream file it is wrong about


@dataclass(frozen=True)
class _Model:
    name: str
    md5: str | None  # dvc.lock's
    expected: sources.Expected  # what the workspace file must be: its source's pin (a conversion: its card)
    places: dict[str, Path]  # "workspace", "DVC cache", "torch.hub cache" → path
    source: sources.Source  # the source the card names
    card: dict  # the model card: what was verified when the file was fetched



def _models(layout: Layout, repo) -> list[_Model]:
    pins: Pins = load_pins()
    present = set(layout.present())
    out = []
    for name in [*layout.params.models, *sorted(present - set(layout.params.models))]:
        if name not in CATALOG:
            continue
        md5 = layout.recorded.get(name)
        card = read_card(layout.card(name))
        source = sources.for_card(card)
        expected = source.expected(CATALOG[name], card, pins)
        places = {"workspace": layout.weights(name), "torch.hub cache": source.cache_copy(CATALOG[name])}
        if md5:
            places["DVC cache"] = Path(repo.cache.local.oid_to_path(md5))
        out.append(_Model(name, md5, expected, places, source, card))
    return out


def _problems(model: _Model, got: Digests, selected: bool) -> list[str]:
    bad = []
    if model.md5 and got.md5 != model.md5:
        bad.append(f"md5 {got.md5} != dvc.lock {model.md5}")
    if not model.md5 and selected:
        bad.append("not recorded in dvc.lock / dvc.lock 中无记录 (invoke fetch)")
    want = model.expected
    bad.extend(want.problems)
    if want.sha256 is not None and (got.sha256, got.size) != (want.sha256, want.size):
        bad.append(f"sha256 {got.sha256} ({got.size} B) != {want.against} {want.sha256} ({want.size} B)")
    return bad


def _registry_disagrees(card: dict, want: sources.Expected, sha256: str | None, size: int) -> bool:
    """Whether the registry, not the bytes, is the suspect: they are what the model card recorded when they were
    fetched (its SHA-256 and size), and the registry has no pin for the file or, the card saying verified, another
    one. Such bytes are not damaged: nothing is ever repaired over them."""
    if want.against != "pinned" or (card.get("sha256"), card.get("size")) != (sha256, size):
        return False
    return want.sha256 is None or (card.get("verified") is True and want.sha256 != sha256)


def _registry_detail(model: str, want: sources.Expected, sha256: str | None) -> str:
    file = CATALOG[model].upstream_file
    said = f"pins sha256:{want.sha256}" if want.sha256 else f"has no pin for {file}"
    return (f"sha256:{sha256} is what was verified when it was fetched (model card, dvc.lock), but "
            f"{pinned_at(file)} {said}: the registry is the suspect, not the file / 文件与获取时的校验一致，注册表可疑")


def _registry_blamed(model: _Model, got: Digests) -> bool:
    """The registry alone disagrees with these bytes: they match the card and what dvc.lock records."""
    return model.md5 == got.md5 and _registry_disagrees(model.card, model.expected, got.sha256, got.size)


class _Hasher:
    """Digests per inode: hard links are read once."""

    def __init__(self):
        self.seen: dict[tuple[int, int], Digests] = {}

    def __call__(self, path: Path) -> Digests:
        st = path.stat()
        key = (st.st_dev, st.st_ino)
        if key not in self.seen:
            self.seen[key] = hash_file(path, md5=True)
        return self.seen[key]


def verify(root: Path | None = None, repair: bool = False, remote: str | None = None) -> tuple[list, list[Checked]]:
    """(what was repaired, what was checked). Re-hash every model's workspace file, DVC cache object and torch.hub
    copy against dvc.lock (md5) and the pinned registry (sha256), after repairing them when asked (good bytes from
    ``remote``, default: the default remote). A recorded workspace file that is missing fails; a model selected but
    never fetched is only reported; a missing cache object or torch.hub copy is no failure (repair links it again)."""
    layout = Layout.load(root)
    with open_repo(layout.root, remote=remote) as repo:
        models = _models(layout, repo)
        repaired = _repair(repo, remote, models) if repair else []
        if repair:
            repaired += _recache(repo)
        _suspect_pushed_copies(repo, remote, models, repaired)
        on_remote = _remote_checked(repo, remote) if remote else []
    digest = _Hasher()  # after a repair: the inodes are new
    checked = []
    for model in models:
        for place, path in model.places.items():
            shown = layout.rel(path) if place == "workspace" else f"{path} ({place})"
            if not path.is_file():
                if place == "workspace":
                    checked.append(_absent(model, shown))
                continue
            got = digest(path)
            # dvc.lock speaks for this repository's files only: a shared torch.hub cache may hold a model this clone
            # never fetched, and is then checked against the pin alone
            bad = _problems(model, got, model.name in layout.params.models and place != "torch.hub cache")
            if bad and _registry_blamed(model, got):
                checked.append(Checked(shown, "registry", _registry_detail(model.name, model.expected, got.sha256),
                                       CATALOG[model.name].upstream_file))
                continue
            checked.append(Checked(shown, "bad" if bad else "ok",
                                   "; ".join(bad) or f"{human_size(got.size)}  sha256:{got.sha256}"
                                   + (f"  {model.expected.note}" if model.expected.note else "")))
    return repaired, checked + on_remote


def _remote_checked(repo, remote: str) -> list[Checked]:
    """`invoke verify --remote NAME`: every recorded object as the remote holds it, read back and hashed; a corrupt
    one is remembered so that the next `invoke push` replaces it (repo/objects.py)."""
    from .dvc import explain
    from .objects import add_suspects, recorded_objects, remote_states

    where = describe(repo, remote)
    try:
        states = remote_states(repo, remote, recorded_objects(repo))
    except Exception as err:  # noqa: BLE001 - no such remote, unreachable: explained
        raise explain(err, "verify", where) from None
    add_suspects(repo, remote, [o.oid for o in states if o.state == "corrupted"])
    detail = {"ok": "intact on the remote / 远端完好",
              "corrupted": "corrupted on the remote: its bytes do not hash to its name / 远端对象已损坏 "
                           "(invoke push sends good bytes in its place)",
              "missing": "not on the remote / 远端没有 (invoke push)"}
    return [Checked(f"{o.label} ({where})", {"ok": "ok", "corrupted": "bad"}.get(o.state, "missing"), detail[o.state])
            for o in states]


def _suspect_pushed_copies(repo, remote: str | None, models: list[_Model], repaired: list[Repaired]) -> None:
    """A repaired model's damaged bytes may have been pushed (plain `dvc push` sends them): the next push re-reads
    its object on the remote, unless the good bytes just came from there."""
    from .objects import add_suspects

    fixed = {r.model for r in repaired if r.source != describe(repo, remote)}
    add_suspects(repo, "*", [m.md5 for m in models if m.name in fixed and m.md5])


def _absent(model: _Model, shown: str) -> Checked:
    if not model.md5:
        return Checked(shown, "unfetched", f"not fetched yet / 尚未获取 (invoke fetch --model {model.name})")
    how = f"{REPAIR}, invoke pull --model {model.name} or invoke fetch --model {model.name}"
    return Checked(shown, "missing", f"missing / 缺失 ({how})")


def fetched_file(layout: Layout, model: str, pins: Pins) -> tuple[str, int, str, bool | str]:
    """(path, size, sha256, verified: True, "prefix" or False) of a model's workspace file just fetched, as it is
    now: hashed, unless a stamp of this very inode (size, mtime, ctime) vouches. It is checked against what its
    card's source says it must be: Meta's pin for an official file, the card of a file converted from a hub (itself
    checked against that hub's pin). RepoError when it is not."""
    path = layout.weights(model)
    card = read_card(layout.card(model))
    want = sources.for_card(card).expected(CATALOG[model], card, pins)
    check = check_file(path, Pin(path.name, want.size, want.sha256) if want.sha256 and want.size is not None else None)
    problems = [check.reason] if not check.ok else list(want.problems) if card.get("verified", True) else []
    if problems and _registry_disagrees(card, want, (check if check.sha256 else check_file(path, None)).sha256,
                                        check.size):
        raise RegistryError(f"{layout.rel(path)}: {_registry_detail(model, want, card['sha256'])}",
                            fix_hint(CATALOG[model].upstream_file))
    if problems:  # (a card saying verified: false says it itself)
        raise RepoError(f"{layout.rel(path)}: {'; '.join(problems)} / 文件与固定哈希不符 (damaged or replaced)",
                        "repair it / 修复: invoke verify --repair")
    return layout.rel(path), check.size, str(check.sha256), card.get("verified", True) if want.sha256 else False


def refuse_contradicted(layout: Layout, repo, remote: str | None, models: list[str], fetched: set[str]) -> None:
    """After a pull: each of ``models``' workspace file against its pin or card (stamp-aware: a file stamped as its
    pin is not read again; a new one is hashed once). The pull fails naming each one that contradicts them:
    bytes that do not hash to dvc.lock's md5 are damaged: ``fetched`` (objects this pull brought) arrived so, past
    DVC's re-hash (which trusts a read-only file in its cache unread), and are unlinked from the workspace, the DVC
    cache and the torch.hub cache where it is the same file; others were damaged here, or placed by a plain `dvc pull`
    from a remote without ``verify`` (`invoke verify --repair`). Bytes that do hash to it
    are another file recorded under the official name (a fine-tuned one, `dvc commit` + `dvc push`): unlinked from the
    workspace and the same torch.hub file, kept in the DVC cache (intact as DVC's object)."""
    from ..inference.weights import identity_error
    from .objects import add_suspects, damage_error

    pins = load_pins()
    arrived, here, foreign = [], [], []
    for model in models:
        md5, path = layout.recorded.get(model), layout.weights(model)
        if not md5 or not path.is_file():
            continue
        shown = layout.rel(path)
        error = identity_error(model, path, shown, pins, hint=_FOREIGN_HINT)
        if error is None:
            continue
        if hash_file(path, md5=True, sha256=False).md5 == md5:
            foreign.append(error)
            doomed = [path]
        elif md5 in fetched:
            arrived.append((md5, shown))
            doomed = [path, Path(repo.cache.local.oid_to_path(md5))]  # DVC's copy: the object's bytes it placed
        else:
            here.append(shown)
            continue
        if _same(layout.torch_copy(model), path):  # linked by an earlier pull; another file there is not ours
            doomed.append(layout.torch_copy(model))
        for place in doomed:
            remove(place)
    if arrived:
        add_suspects(repo, remote, [md5 for md5, _ in arrived])
        raise damage_error(repo, remote, [shown for _, shown in arrived], "; it arrived so, past DVC's check")
    if foreign:
        raise VerificationError("\n".join(f"{e.message}; removed from the workspace / 已从工作区移除" for e in foreign),
                                foreign[0].hint)
    if here:
        raise RepoError(f"{', '.join(here)}: does not match dvc.lock (damaged here, or placed by a `dvc pull` that "
                        "did not re-hash) / 文件与 dvc.lock 不符（已损坏）",
                        f"repair it / 修复: {REPAIR}")


_FOREIGN_HINT = (
    "dvc.lock records another file under this official name (see who: git log -p dvc.lock); restore the official "
    "record: git checkout <commit> dvc.lock && invoke pull; a fine-tuned model needs its own file name (load it with "
    "weights=<file>) / dvc.lock 记录了官方名称下的其他文件：请用 git checkout <提交> dvc.lock && invoke pull "
    "恢复官方记录；微调模型请另起文件名"
)


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def verification_error(checked: list[Checked]) -> RepoError | RegistryError | None:
    problems = [c for c in checked if c.state in ("bad", "missing", "registry")]
    if not problems:
        return None
    listed = "\n  ".join(f"{c.path}: {c.detail}" for c in problems)
    if all(c.state == "registry" for c in problems):
        return RegistryError(f"the pin registry disagrees with {len(problems)} file(s) that are as they were "
                             "verified when fetched; nothing is damaged / 注册表与已校验的文件不符，文件未损坏:\n  "
                             + listed,
                             "; ".join(dict.fromkeys(fix_hint(c.file) for c in problems)))
    return RepoError(
        f"verification failed for {len(problems)} file(s) / {len(problems)} 个文件校验失败:\n  {listed}",
        f"repair them (good bytes from the DVC remote, else the pinned sources) / 修复: {REPAIR}",
    )


# ---------------------------------------------------------------------------------------------- repair


@dataclass(frozen=True)
class Repaired:
    model: str
    source: str  # where the good bytes came from
    placed: list[str]  # the places linked to them again


def _repair(repo, remote: str | None, models: list[_Model]) -> list[Repaired]:
    """Put good bytes in every place of every recorded model that is missing or does not verify."""
    digest = _Hasher()
    done = []
    for model in models:
        if model.md5 and any(p.is_file() and _registry_blamed(model, digest(p)) for p in model.places.values()):
            # bytes as verified when fetched: the registry is wrong about them; only copies that differ from them are
            # bad, and are repaired towards them (the card), never from the registry's pin
            model = replace(model, expected=sources.Expected(model.card["size"], model.card["sha256"]))
        if not model.md5 or model.expected.sha256 is None:
            continue  # nothing recorded to repair towards (never fetched, or no pin to check against)
        bad = [p for p, path in model.places.items() if not path.is_file() or _problems(model, digest(path), True)]
        if bad:
            done.append(_repair_one(repo, remote, model, bad))
    return done


def _repair_one(repo, remote: str | None, model: _Model, bad: list[str]) -> Repaired:
    good_places = [p for p in model.places if p not in bad]
    sha256 = model.expected.sha256
    assert sha256 is not None  # _repair skips a model without one
    source: str | None
    cache_obj = model.places["DVC cache"]
    cache_obj.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(cache_obj, "repair")
    try:
        if good_places:
            good, source = model.places[good_places[0]], f"the intact {good_places[0]} copy"
        elif source := _from_remote(repo, remote, model, tmp):
            good = tmp
        else:
            good, source = _from_sources(model)
        os.chmod(good, 0o444)  # DVC keeps its cache read-only; the workspace file is the same inode
        copies: list[Path] = []
        for place in bad:
            if model.places[place] != good:
                _place(good, model.places[place], sha256, copies)
        write_stamp(model.places["workspace"], sha256)
    finally:
        tmp.unlink(missing_ok=True)
    return Repaired(model.name, source or "", bad)


def _place(good: Path, dest: Path, sha256: str, copies: list[Path]) -> None:
    """Link ``dest`` to the good bytes: to ``good``, else (another file system) to a copy already made on dest's
    file system (``copies``), else to a new copy verified as it is written, which joins ``copies``: one physical
    copy per file system, so the workspace and the DVC cache stay one inode when the good bytes came from elsewhere."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    for source in (good, *copies):
        with contextlib.suppress(OSError):
            link_atomic(source, dest)
            return
    link_or_copy_atomic(good, dest, sha256)
    os.chmod(dest, 0o444)
    copies.append(dest)


def _recache(repo) -> list[Repaired]:
    """The outputs besides the weights (model cards, export folders) whose DVC cache objects are gone (e.g. after
    `rm -rf .dvc/cache`) while the workspace still matches dvc.lock: put back in the cache from the workspace, so
    `dvc status` and `invoke push` find them."""
    from .objects import recache_outputs

    return [Repaired(stage, "the workspace (matches dvc.lock)", outs) for stage, outs in recache_outputs(repo)]


def _good(model: _Model, path: Path) -> bool:
    return path.is_file() and not _problems(model, hash_file(path, md5=True), True)


def _from_remote(repo, remote: str | None, model: _Model, tmp: Path) -> str | None:
    """The object from the DVC remote into ``tmp``; its description when it verifies, else None."""
    with contextlib.suppress(Exception):  # no remote, unreachable, object missing: the pinned sources are next
        odb = repo.cloud.get_remote_odb(remote, "pull")
        odb.fs.get_file(odb.oid_to_path(model.md5), str(tmp))
        if _good(model, tmp):
            return describe(repo, remote)
    tmp.unlink(missing_ok=True)
    return None


def _from_sources(model: _Model) -> tuple[Path, str]:
    """Fresh verified bytes from the model's own source (e.g. the official mirrors, or Hugging Face converted again)
    as a new cache file: the damaged one there is unlinked first, never written into."""
    try:
        got = model.source.obtain(sources.Request(CATALOG[model.name], load_pins(), None, rehash=True))
    except DinovaultError as err:
        raise RepoError(f"cannot repair {model.name}: no intact copy, the DVC remote has no good one, and "
                        f"{err.message}", err.hint) from None
    if not _good(model, got.path):  # the pin matched; dvc.lock's md5 must too
        raise RepoError(f"cannot repair {model.name}: the pinned file does not match dvc.lock's md5 / 与 dvc.lock 不符",
                        "fetch it again: invoke fetch --model NAME / 请重新获取")
    return got.path, got.url or f"the {model.source.name} source's cache"
