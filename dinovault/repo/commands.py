"""The commands behind `invoke fetch/list/status/clean`: each takes the repository, does its work through
the one DVC adapter (dvc.py) and returns data; printing is the fronts' job (tasks.py)."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import settings
from ..catalog import CATALOG, MODEL_NAMES, family_of, get_spec
from ..errors import DinovaultError, RepoError
from ..exports.formats import export_dirs
from ..exports.place import refuse_linked
from ..files import hash_file, remove
from ..params import add_models, undo_selection
from ..registry import load_pins, load_registry
from .dvc import describe, explain, open_repo, recorded_logs, remote_has, unverified_allowed
from .fetchlock import fetch_lock
from .integrity import fetched_file
from .known_errors import interrupted
from .layout import PARAMS_FILE, Layout, find_root, link_torch_copies, stage_name

# ---------------------------------------------------------------------------------------------- fetch


@dataclass(frozen=True)
class Fetched:
    model: str
    path: str
    size: int
    sha256: str  # of the workspace file, checked now (or by a stamp that includes the inode's ctime)
    seconds: float
    state: str  # "ran", "cached" (restored from DVC's run cache, not run again) or "up to date"
    verified: bool | str  # True: matches a pin; "prefix": only its name's hash prefix; False: allow_unverified


@dataclass(frozen=True)
class FetchReport:
    added: list[str]  # newly selected in params.yaml
    models: list[Fetched]


def fetch(models: list[str] | None = None, root: Path | None = None, allow_unverified: bool = False,
          url: str | None = None) -> FetchReport:
    """Select ``models`` in params.yaml (keeping its comments) and reproduce their stages; None: all selected.

    One ``repo.reproduce`` of the families' stage groups (``single_item``: a fetch stage has no upstream), running
    only the stages of ``models``, each timed on its own; a failed stage does not stop the others, all failures are
    raised at the end and the models this call added to params.yaml are deselected again. Every file reported is
    checked against its pin.
    Concurrent fetches in one repository (DDP ranks) take turns (`fetch_lock`): the later ones find their stages
    up to date. ``url``: a signed link (a credential), given to the stages in their environment (``DINOV3_URL``).
    """
    root = find_root(root)
    for name in models or []:
        get_spec(name)  # an unknown name fails before params.yaml is touched
    with fetch_lock(root):  # read under the lock: a fetch that held it may have changed params.yaml and dvc.lock
        layout = Layout.load(root)
        for m in models or layout.params.models:  # outputs DVC could not record (through a link): before any change
            refuse_linked(root, layout.save_dir_of(m), CATALOG[m], layout.metrics(m).parent)
        params = root / PARAMS_FILE
        before = params.read_bytes()
        added = add_models(params, list(models)) if models else []
        after = params.read_bytes()
        try:
            families = dict.fromkeys(CATALOG[m].family for m in models or []) or ("dinov3",)
            with settings.signed_urls(url, families):
                # read again only when the selection changed params.yaml (each reading: ~10 ms of a no-op's ~0.5 s)
                return _reproduce(root, models, added, allow_unverified, layout if after == before else None)
        except BaseException:
            if added:
                undo_selection(params, before, after, added)
            raise


def fetch_in_repository(models: list[str] | None, root: Path, allow_unverified: bool = False, url: str | None = None,
                        announce: Callable[[str], None] | None = None) -> FetchReport:
    """`dinovault fetch` in the repository ``root``, as the command and the API both run it: the installed package
    recorded in .dinovault/package.json first (``announce`` is told when that changed it), then ``fetch`` with the
    stages' `dinovault` the one beside this interpreter, even from a venv that is not activated."""
    from .init import refresh_package_file

    if refresh_package_file(root) and announce:
        announce("recorded the installed dinovault in .dinovault/package.json (the stage reruns after an upgrade) / "
                 "已记录已安装的 dinovault 版本")
    with settings.path_first(Path(sys.executable).parent):
        return fetch(models or None, root=root, allow_unverified=allow_unverified, url=url)


def _reproduce(root: Path, models: list[str] | None, added: list[str], allow_unverified: bool,
               layout: Layout | None = None) -> FetchReport:
    from dvc.exceptions import DvcException, ReproductionError
    from dvc.repo.reproduce import _reproduce_stage  # what `repo.reproduce` runs per stage; DVC's experiments wrap it
    from dvc.stage.exceptions import StageNotFound

    layout = layout or Layout.load(root)
    targets = list(dict.fromkeys(models)) if models else list(layout.params.models)
    if not targets:
        raise RepoError(f"no model is selected in {PARAMS_FILE} / {PARAMS_FILE} 中没有选中任何模型",
                        "invoke fetch --model dinov2_vits14")
    link_torch_copies(layout, targets)
    ours = {stage_name(m): m for m in targets}
    seconds, states, failed = {}, {}, {}

    def reproduce_one(stage, **kwargs):
        """One stage of the families' groups as `repo.reproduce` reaches it: ours run and are timed, a failure is
        kept (as DVC itself would raise it) so that the others still run."""
        model = ours.get(stage.addressing)
        if model is None:
            return None  # selected but not asked for (`invoke fetch --model OTHER`)
        start, mark = time.perf_counter(), len(heard)
        try:
            ran = _reproduce_stage(stage, **kwargs)
            cached = any("is cached - skipping run" in line for line in heard[mark:])
            states[model] = "cached" if cached else "ran" if ran else "up to date"
            return ran
        except Exception as exc:
            err = ReproductionError(f"failed to reproduce {stage.addressing!r}")
            err.__cause__ = exc
            if interrupted(err):  # Ctrl-C reached the stage's command (DVC itself ignores it meanwhile)
                raise KeyboardInterrupt from None
            failed[model] = explain(err, f"fetch {model}")
            return None
        finally:
            seconds[model] = time.perf_counter() - start

    # One `repo.reproduce` over the families' stage groups: DVC reads dvc.yaml, params.yaml and dvc.lock once, not
    # once per model (each reading took about 40 ms, as long as checking the stage)
    groups = list(dict.fromkeys(family_of(m).stage for m in targets))
    # open_repo works from the root: DVC reads a target relative to the working directory
    with open_repo(root) as repo, recorded_logs() as heard, \
            unverified_allowed(allow_unverified):
        while groups:
            try:
                repo.reproduce(groups, single_item=True, repro_fn=reproduce_one)
                break
            except DvcException as err:
                if isinstance(err, StageNotFound) and err.name in groups:  # a dvc.yaml older than a family: its
                    groups.remove(err.name)  # models fail below, the others run
                    continue
                failed.update((m, explain(err, f"fetch {m}")) for m in targets if m not in failed)  # before any ran
                break
    for model in targets:
        if model not in states and model not in failed:
            failed[model] = RepoError(f"fetch {model}: dvc.yaml has no stage {stage_name(model)} / "
                                      "dvc.yaml 中没有该阶段",
                                      "add the family's stage: run `dinovault init` (or restore dvc.yaml from git) / "
                                      "请运行 dinovault init 添加阶段")
    if failed:
        errors = [failed[m] for m in targets if m in failed]
        raise errors[0] if len(errors) == 1 else RepoError("; ".join(e.message for e in errors), errors[0].hint)
    pins = load_pins()
    checked = [fetched_file(layout, m, pins) for m in targets]
    return FetchReport(added, [Fetched(m, path, size, sha, seconds[m], states[m], verified)
                               for m, (path, size, sha, verified) in zip(targets, checked, strict=True)])


# ---------------------------------------------------------------------------------------------- list / status


@dataclass(frozen=True)
class Listing:
    rows: list[dict]  # model, dim, params, size, selected, workspace, cache, remote (None: unknown)
    save_dir: str
    remote: str
    notes: list[str]


def list_models(root: Path | None = None) -> Listing:
    """Every catalog model: dim, parameters, pinned size; selected, in the workspace, DVC cache, default remote."""
    layout = Layout.load(root)
    notes = []
    try:
        pins = load_registry()
    except DinovaultError as err:
        notes.append(f"note: {err.message}")
        pins = {}
    md5s = layout.recorded
    rows = []
    with open_repo(layout.root) as repo:
        in_remote, note = remote_has(repo, set(md5s.values()))
        for name in MODEL_NAMES:
            spec, md5 = CATALOG[name], md5s.get(name)
            pin = pins.get(spec.upstream_file)
            rows.append({
                "model": name, "dim": spec.embed_dim, "params": spec.num_params, "size": pin.size if pin else None,
                "selected": name in layout.params.models, "workspace": layout.weights(name).is_file(),
                "cache": bool(md5) and Path(repo.cache.local.oid_to_path(md5)).exists(),
                "remote": None if in_remote is None else bool(md5) and md5 in in_remote,
            })
        remote = describe(repo)
    return Listing(rows, layout.params.save_dir, remote, notes + ([note] if note else []))


@dataclass(frozen=True)
class Status:
    where: str  # "the pipeline" or the remote
    changes: list[tuple[str, str]]  # (stage or file, what changed)


def status(root: Path | None = None, cloud: bool = False, remote: str | None = None) -> Status:
    """What `dvc repro` (or, with ``cloud``, `dvc push`) would change; no changes: up to date."""
    from dvc.exceptions import DvcException

    layout = Layout.load(root)  # a broken params.yaml is reported with its line, before DVC's own parse error
    with open_repo(layout.root, remote=remote) as repo:  # from the root: a subfolder does not print ../dvc.yaml
        where = describe(repo, remote) if cloud else "the pipeline"
        try:
            changes = repo.status(cloud=cloud, remote=remote)
        except DvcException as err:
            raise explain(err, "status", describe(repo, remote) if cloud else "") from None
    return Status(where, [(t, _describe_change(t, what, layout.recorded)) for t, what in changes.items()])


def _describe_change(target: str, what, fetched: dict[str, str]) -> str:
    """One line for one entry of `dvc status`: a stage never run, or what changed in it."""
    kind, _, model = target.partition("@")
    if model in CATALOG and kind == family_of(model).stage and model not in fetched:
        return f"not fetched yet / 尚未获取 (invoke fetch --model {model})"
    if isinstance(what, str):
        return what
    parts = []
    for item in what if isinstance(what, list) else [what]:
        if isinstance(item, str):
            parts.append(item)
            continue
        for section, files in item.items():
            if isinstance(files, dict):
                files = ", ".join(f"{path} ({state})" for path, state in files.items())
            parts.append(f"{section}: {files}")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------- clean


@dataclass
class Cleaned:
    removed: list[str] = field(default_factory=list)  # models removed from the workspace
    kept: list[str] = field(default_factory=list)  # weights kept because the remote lacks them and no one agreed
    note: str = ""


def clean(root: Path | None = None, yes: bool = False, confirm: Callable[[str], bool] | None = None) -> Cleaned:
    """Remove the models that params.yaml no longer selects from the workspace (weights, card, metrics, exports).

    A file the default remote does not hold is removed only after ``confirm`` (or ``yes``) agrees.
    """
    layout = Layout.load(root)
    selected = set(layout.params.models)
    out = Cleaned()
    unselected = [m for m in layout.present() if m not in selected]
    if not unselected:
        return out
    oids = {m: layout.recorded.get(m) or hash_file(layout.weights(m), md5=True).md5 for m in unselected}
    with open_repo(layout.root) as repo:
        where = describe(repo)
        in_remote, out.note = remote_has(repo, {oid for oid in oids.values() if oid})
    for model in unselected:
        weights = layout.weights(model)
        if in_remote is None or oids[model] not in in_remote:
            question = f"{layout.rel(weights)} is not in {where}; delete it anyway? / 远端没有此文件，仍删除？"
            if not (yes or (confirm and confirm(question))):
                out.kept.append(layout.rel(weights))
                continue
        for path in (weights, layout.card(model), layout.metrics(model)):
            remove(path)
        for folder in export_dirs(layout.save_dir_of(model), CATALOG[model]).values():  # derived from the weights
            shutil.rmtree(folder, ignore_errors=True)
        out.removed.append(model)
    return out
