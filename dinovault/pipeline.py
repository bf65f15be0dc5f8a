"""The repository as a product: the logic behind `invoke fetch/list/status/verify/push/pull/clean`.

DVC does the tracking and moving (``dvc.repo.Repo``, opened per step and closed after it); this module
composes it with the catalog, the pin registry and params.yaml, and turns DVC's failures into one or two
bilingual lines. Importing it imports neither torch nor DVC (``invoke --list`` stays instant).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .catalog import CATALOG, MODEL_NAMES, get_spec
from .errors import DinovaultError
from .params import Params, add_models, load_params
from .progress import human_size

STAGE = "fetch"
PARAMS_FILE = "params.yaml"
METRICS_DIR = "metrics"
_CHUNK = 8 << 20
GIT_HINT = (
    "to record and share / 记录并共享: git add params.yaml dvc.lock models metrics && git commit -m 'models'"
    " && invoke push"
)


class PipelineError(DinovaultError):
    """The repository, DVC or a remote cannot do what was asked."""


def stage_name(model: str) -> str:
    return f"{STAGE}@{model}"


def _say(*lines: str) -> None:
    for line in lines:
        print(line, flush=True)


# ---------------------------------------------------------------------------------------------- the repo


def find_root(start: str | Path | None = None) -> Path:
    """The dinovault repository holding ``start`` (default: the current directory), like git finds its root."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file() and (folder / ".dvc").is_dir() and (folder / PARAMS_FILE).is_file():
            return folder
    raise PipelineError(
        f"{here} is not inside a dinovault repository (no dvc.yaml, .dvc/ and params.yaml above it) / "
        "当前目录不在 dinovault 仓库中",
        "cd into your clone of dinovault and run the task again / 请先 cd 到仓库目录再运行",
    )


@dataclass(frozen=True)
class Layout:
    """Where each file of a model goes in the repository."""

    root: Path
    params: Params

    @classmethod
    def load(cls, root: Path) -> Layout:
        return cls(root, load_params(root / PARAMS_FILE))

    @property
    def save_dir(self) -> Path:
        return self.root / self.params.save_dir

    def weights(self, model: str) -> Path:
        return self.save_dir / f"{model}.pth"

    def card(self, model: str) -> Path:
        return self.save_dir / f"{model}.json"

    def metrics(self, model: str) -> Path:
        return self.root / METRICS_DIR / f"{model}.json"

    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)


@contextlib.contextmanager
def open_repo(root: Path, remote: str | None = None, verify: bool = False) -> Iterator:
    """A ``dvc.repo.Repo`` for one step, closed after it. ``verify`` makes downloads re-hash what arrives."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        repo = Repo(str(root), remote=remote)
    except DvcException as err:
        raise PipelineError(f"DVC cannot open {root}: {err}", "run `dvc doctor` / 请检查 DVC 配置") from None
    repo.scm_context.quiet = True  # the tasks print one git hint of their own
    name = remote or repo.config["core"].get("remote")
    if verify and name in repo.config["remote"]:
        repo.config["remote"][name]["verify"] = True  # in memory only: this step re-hashes what it downloads
    try:
        yield repo
    finally:
        repo.close()


def describe_remote(repo, name: str | None = None) -> str:
    """``'name' (url)`` of the remote a command would use, or a note that there is none."""
    name = name or repo.config["core"].get("remote")
    if not name:
        return "(no default remote)"
    url = repo.config["remote"].get(name, {}).get("url", "?")
    return f"'{name}' ({url})"


def lock_md5s(root: Path, layout: Layout | None = None) -> dict[str, str]:
    """model → md5 of its weights as dvc.lock records them (only models whose stage has run)."""
    from ruamel.yaml import YAML

    lock = root / "dvc.lock"
    if not lock.is_file():
        return {}
    data = YAML(typ="safe").load(lock.read_text(encoding="utf-8")) or {}
    found: dict[str, str] = {}
    for name, stage in (data.get("stages") or {}).items():
        stage_kind, _, model = name.partition("@")
        if stage_kind != STAGE or model not in CATALOG:
            continue
        for out in stage.get("outs") or []:
            if str(out.get("path", "")).endswith(f"{model}.pth") and out.get("md5"):
                found[model] = out["md5"]
    return found


# ---------------------------------------------------------------------------------------------- errors


def _translate(err: Exception, action: str, remote: str = "") -> PipelineError:
    """One or two bilingual lines for a DVC failure."""
    from dvc.config import NoRemoteError, RemoteConfigError
    from dvc.exceptions import CheckoutError, FileTransferError, ReproductionError

    if isinstance(err, NoRemoteError):
        return PipelineError(
            f"{action}: no DVC remote is configured / 未配置 DVC 远端",
            "set one: `dvc remote add -d NAME URL` (or `invoke remote --url URL`); see README 'Remotes' / 请先设置远端",
        )
    if isinstance(err, RemoteConfigError):
        return PipelineError(f"{action}: {err} / 远端配置错误", "check `dvc remote list` / 请检查 `dvc remote list`")
    if isinstance(err, FileTransferError):
        return PipelineError(
            f"{action}: {err} with remote {remote} / 与远端 {remote} 传输失败",
            "check that the remote answers and the credentials are right, then rerun / "
            "请检查远端是否可达、凭据是否正确后重试",
        )
    if isinstance(err, CheckoutError):
        files = ", ".join(getattr(err, "target_infos", []) or []) or "some files"
        return PipelineError(
            f"{action}: {files} could not be placed: missing from remote {remote}, unreachable, or corrupted there "
            f"(hash mismatch) / 无法放入工作区：远端 {remote} 缺少该文件、不可达或已损坏",
            "push it from a machine that has it (`invoke push`), or fetch it again (`invoke fetch --model NAME`) / "
            "请在有该文件的机器上 `invoke push`，或重新 `invoke fetch`",
        )
    if isinstance(err, ReproductionError):
        return PipelineError(
            f"{action}: {err} (its own message is above) / 阶段运行失败（详见上方信息）",
            "fix the cause and rerun; nothing half-written was recorded / 修正后重试；未记录任何半成品",
        )
    return PipelineError(f"{action}: {err}", "run with DVC_SHOW_TRACEBACK=1 for details / 详见 DVC_SHOW_TRACEBACK=1")


def _dvc_errors():
    from dvc.exceptions import DvcException

    return (DvcException,)


@contextlib.contextmanager
def exit_on_error() -> Iterator[None]:
    """For command-line fronts: print a DinovaultError as ``error: ...`` on stderr and exit 1."""
    try:
        yield
    except DinovaultError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print("interrupted / 已中断", file=sys.stderr, flush=True)
        raise SystemExit(130) from None


# ---------------------------------------------------------------------------------------------- fetch


@dataclass(frozen=True)
class Fetched:
    model: str
    path: str
    size: int
    sha256: str
    seconds: float
    ran: bool


def _read_card(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def fetch(models: list[str] | None = None, root: Path | None = None) -> list[Fetched]:
    """Select ``models`` in params.yaml (keeping its comments) and ``dvc repro`` their stages; None: all selected."""
    root = find_root(root)
    added: list[str] = []
    if models:
        for name in models:
            get_spec(name)  # an unknown name fails before params.yaml is touched
        added = add_models(root / PARAMS_FILE, list(models))
        if added:
            _say(f"selected in {PARAMS_FILE} / 已加入 {PARAMS_FILE}: {', '.join(added)}")
    layout = Layout.load(root)
    targets = list(dict.fromkeys(models)) if models else list(layout.params.models)
    if not targets:
        raise PipelineError(
            f"no model is selected in {PARAMS_FILE} / {PARAMS_FILE} 中没有选中任何模型",
            "invoke fetch --model dinov2_vits14",
        )
    link_into_torch_cache(layout, targets, root)
    seconds: dict[str, float] = {}

    def timed(stage, **kwargs):  # DVC's own per-stage step, timed
        from dvc.repo.reproduce import _reproduce_stage

        start = time.perf_counter()
        try:
            return _reproduce_stage(stage, **kwargs)
        finally:
            seconds[stage.addressing] = time.perf_counter() - start

    with open_repo(root) as repo:
        try:  # one call for every target: DVC reads dvc.yaml, dvc.lock and params once
            ran = repo.reproduce(
                targets=[stage_name(m) for m in targets], single_item=True, repro_fn=timed, on_error="keep-going"
            )
        except _dvc_errors() as err:
            raise _translate(err, f"fetch {', '.join(targets)}") from None
    ran_names = {stage.addressing for stage in ran}
    results = [_fetched(layout, m, seconds.get(stage_name(m), 0.0), stage_name(m) in ran_names) for m in targets]
    for item in results:
        state = "fetched / 已获取" if item.ran else "up to date / 已是最新"
        _say(f"{item.model}: {item.path}  {human_size(item.size)}  sha256:{item.sha256}  {item.seconds:.1f}s  {state}")
    if any(item.ran for item in results) or added:
        _say(GIT_HINT)
    return results


def link_into_torch_cache(layout: Layout, models: list[str], root: Path) -> list[Path]:
    """Hard-link workspace weights (e.g. from `dvc pull`) into the torch.hub cache where it lacks them, so a stage
    that reruns (after a code change) verifies them there instead of downloading, and torch.hub finds them.
    Only files of the pinned size; the fetch script still checks their SHA-256. Never copies."""
    # a workspace file with 3 links is already in the DVC cache and the torch cache: skip the imports (fast no-op)
    models = [m for m in models if layout.weights(m).is_file() and layout.weights(m).stat().st_nlink < 3]
    if not models:
        return []
    from .cache import cache_path
    from .registry import load_registry

    try:
        pins = load_registry()
    except DinovaultError:
        return []
    md5s = lock_md5s(root)
    linked = []
    for model in models:
        spec = CATALOG[model]
        pin = pins.get(spec.upstream_file)
        dest = cache_path(spec.upstream_file)
        src = layout.weights(model)
        if pin is None or dest.exists() or model not in md5s or not src.is_file() or src.stat().st_size != pin.size:
            continue
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.link")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.link(src, tmp)
            os.replace(tmp, dest)
            linked.append(dest)
        except OSError:  # another file system or no permission: the stage downloads as usual
            with contextlib.suppress(OSError):
                tmp.unlink()
    return linked


def _fetched(layout: Layout, model: str, seconds: float, ran: bool) -> Fetched:
    card = _read_card(layout.card(model))
    path = layout.weights(model)
    size = card.get("size") or (path.stat().st_size if path.exists() else 0)
    return Fetched(model, layout.rel(path), int(size), str(card.get("sha256", "?")), seconds, ran)


# ---------------------------------------------------------------------------------------------- list / status


def list_models(root: Path | None = None) -> list[dict]:
    """Every catalog model: dim, parameters, pinned size; selected, in the workspace, DVC cache, default remote."""
    from .registry import load_registry

    root = find_root(root)
    layout = Layout.load(root)
    try:
        pins = load_registry()
    except DinovaultError as err:
        _say(f"note: {err.message}")
        pins = {}
    md5s = lock_md5s(root)
    rows = []
    with open_repo(root) as repo:
        remote = describe_remote(repo)
        in_remote, remote_note = _remote_has(repo, set(md5s.values()))
        for name in MODEL_NAMES:
            spec = CATALOG[name]
            pin = pins.get(spec.upstream_file)
            md5 = md5s.get(name)
            rows.append(
                {
                    "model": name,
                    "dim": spec.embed_dim,
                    "params": spec.num_params,
                    "size": pin.size if pin else None,
                    "selected": name in layout.params.models,
                    "workspace": layout.weights(name).is_file(),
                    "cache": bool(md5) and os.path.exists(repo.cache.local.oid_to_path(md5)),
                    "remote": None if in_remote is None else bool(md5) and md5 in in_remote,
                }
            )
    mark = {True: "yes", False: "-", None: "?"}
    header = ("model", "dim", "params", "size", "selected", "workspace", "dvc-cache", "remote")
    table = [header] + [
        (
            r["model"],
            str(r["dim"]),
            f"{r['params'] / 1e6:.1f}M",
            human_size(r["size"]),
            mark[r["selected"]],
            mark[r["workspace"]],
            mark[r["cache"]],
            mark[r["remote"]],
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        _say("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    _say(f"selected = in {PARAMS_FILE} (已选); workspace = {layout.params.save_dir} (工作区); remote = {remote} (远端)")
    if remote_note:
        _say(remote_note)
    return rows


def _remote_has(repo, md5s: set[str]) -> tuple[set[str] | None, str]:
    """Which of ``md5s`` the default remote holds; None (and a note) when there is none or it does not answer."""
    if not repo.config["core"].get("remote"):
        return None, "remote: none configured / 未配置远端 (dvc remote add -d NAME URL)"
    if not md5s:
        return set(), ""
    try:
        odb = repo.cloud.get_remote_odb()
        return set(odb.oids_exist(sorted(md5s))), ""
    except Exception as err:  # any remote failure only blanks one column of a listing
        return None, f"remote {describe_remote(repo)} did not answer / 远端无响应: {err}"


def status(root: Path | None = None, cloud: bool = False, remote: str | None = None) -> bool:
    """Print what `dvc repro` (or, with cloud, `dvc push`) would change; True when nothing would."""
    root = find_root(root)
    Layout.load(root)  # a broken params.yaml is reported with its line, before DVC's own parse error
    with open_repo(root, remote=remote) as repo:
        try:
            changes = repo.status(cloud=cloud, remote=remote)
        except _dvc_errors() as err:
            raise _translate(err, "status", describe_remote(repo, remote)) from None
        where = f"remote {describe_remote(repo, remote)}" if cloud else "the pipeline"
    if not changes:
        _say(f"{where}: up to date / 已是最新")
        return True
    _say(f"{where}: changed / 有变化")
    fetched = lock_md5s(root)
    for target, what in changes.items():
        _say(f"  {target}: {_describe_change(target, what, fetched)}")
    return False


def _describe_change(target: str, what, fetched: dict[str, str]) -> str:
    """One line for one entry of `dvc status`: a stage never run, or what changed in it."""
    kind, _, model = target.partition("@")
    if kind == STAGE and model in CATALOG and model not in fetched:
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


# ---------------------------------------------------------------------------------------------- verify


def hash_file(path: Path) -> tuple[str, str, int]:
    """(md5, sha256, size) in one read; the two digests run in parallel threads (hashlib frees the GIL)."""
    md5, sha = hashlib.md5(), hashlib.sha256()
    size = 0
    with open(path, "rb", buffering=0) as fh, ThreadPoolExecutor(2) as pool:
        while chunk := fh.read(_CHUNK):
            size += len(chunk)
            list(pool.map(lambda h, c=chunk: h.update(c), (md5, sha)))
    return md5.hexdigest(), sha.hexdigest(), size


def verify(root: Path | None = None) -> list[str]:
    """Re-hash every model in the workspace against dvc.lock (md5) and the pinned registry (sha256). A model recorded
    in dvc.lock but missing fails; one selected but never fetched is only reported."""
    from .registry import load_registry

    root = find_root(root)
    layout = Layout.load(root)
    pins = load_registry()
    md5s = lock_md5s(root)
    problems: list[str] = []
    checked = 0
    present = {p.stem for p in layout.save_dir.glob("*.pth")} if layout.save_dir.is_dir() else set()
    for model in [*layout.params.models, *sorted(present - set(layout.params.models))]:
        if model not in CATALOG:
            continue
        path = layout.weights(model)
        rel = layout.rel(path)
        if not path.is_file():
            if model not in md5s:  # selected but never fetched: nothing recorded, so nothing to contradict
                _say(f"-    {rel}: not fetched yet / 尚未获取 (invoke fetch --model {model})")
                continue
            problems.append(f"{rel}: missing / 缺失 (invoke pull --model {model}, or invoke fetch --model {model})")
            continue
        checked += 1
        md5, sha, size = hash_file(path)
        pin = pins.get(CATALOG[model].upstream_file)
        bad = []
        if model in md5s and md5 != md5s[model]:
            bad.append(f"md5 {md5} != dvc.lock {md5s[model]}")
        if model not in md5s and model in layout.params.models:
            bad.append("not recorded in dvc.lock / dvc.lock 中无记录 (invoke fetch)")
        card = _read_card(layout.card(model))
        if card.get("source") == "huggingface":  # converted from a pinned Hugging Face file: see hub.py
            from .hub import card_problems

            bad.extend(card_problems(card, CATALOG[model], sha, size))
        elif pin is None:
            bad.append(f"no pin for {CATALOG[model].upstream_file} in the registry / 注册表中无此文件的哈希")
        elif sha != pin.sha256 or size != pin.size:
            bad.append(f"sha256 {sha} ({size} B) != pinned {pin.sha256} ({pin.size} B)")
        if bad:
            problems.append(f"{rel}: " + "; ".join(bad))
            _say(f"FAIL {rel}: " + "; ".join(bad))
        else:
            _say(f"ok   {rel}  {human_size(size)}  sha256:{sha}")
    if problems:
        raise PipelineError(
            f"verification failed for {len(problems)} file(s) / {len(problems)} 个文件校验失败:\n  "
            + "\n  ".join(problems),
            "restore with `dvc checkout --relink` or `invoke pull`, or fetch again / 请用 `invoke pull` 或重新获取",
        )
    _say("all models verified / 全部模型校验通过" if checked else "no model fetched yet, nothing to verify / 尚无模型")
    return problems


# ---------------------------------------------------------------------------------------------- push / pull


def _pull_targets(layout: Layout, models: list[str] | None) -> list[str] | None:
    if not models:
        return None
    recorded = lock_md5s(layout.root, layout)
    for name in models:
        get_spec(name)
        if name not in layout.params.models:
            raise PipelineError(
                f"{name} is not selected in {PARAMS_FILE}, so no stage records it / {name} 未在 {PARAMS_FILE} 中选中",
                f"invoke fetch --model {name}",
            )
        if name not in recorded:
            raise PipelineError(
                f"{name} was never fetched: dvc.lock records no file to pull / {name} 尚未获取，dvc.lock 中无记录",
                f"invoke fetch --model {name} (then git commit dvc.lock and invoke push on that machine)",
            )
    return [stage_name(m) for m in dict.fromkeys(models)]


def _recorded_targets(repo) -> list[str] | None:
    """The stages whose outputs dvc.lock records (None: all of them). A selected model that was never fetched has
    nothing to pull; DVC would fail on it as if its file were missing from the remote."""
    stages = list(repo.index.stages)
    unrecorded = [s for s in stages if any(not out.hash_info for out in s.outs)]
    if not unrecorded:
        return None
    for stage in unrecorded:
        _say(f"{stage.addressing}: not fetched yet, nothing to pull / 尚未获取，无需拉取")
    return [s.addressing for s in stages if s not in unrecorded]


def push(
    root: Path | None = None, remote: str | None = None, jobs: int | None = None, models: list[str] | None = None
) -> int:
    """`dvc push` of the models recorded in dvc.lock; returns how many files were sent."""
    root = find_root(root)
    layout = Layout.load(root)
    targets = _pull_targets(layout, models)
    with open_repo(root, remote=remote) as repo:
        where = describe_remote(repo, remote)
        try:
            sent = repo.push(targets=targets, remote=remote, jobs=jobs)
        except _dvc_errors() as err:
            raise _translate(err, "push", where) from None
    if sent:
        _say(f"{sent} file(s) pushed to remote {where} / 已推送 {sent} 个文件")
    else:
        _say(f"remote {where}: up to date, nothing to push / 远端已是最新")
    return sent


def pull(
    root: Path | None = None, models: list[str] | None = None, remote: str | None = None, jobs: int | None = None
) -> dict:
    """`dvc pull` (only the named models' files when given), re-hashing what arrives so a tampered object is refused."""
    root = find_root(root)
    layout = Layout.load(root)
    targets = _pull_targets(layout, models)
    with open_repo(root, remote=remote, verify=True) as repo:
        where = describe_remote(repo, remote)
        _check_remote_answers(repo, remote, where)
        if targets is None:
            targets = _recorded_targets(repo)
            if targets == []:
                _say("no model fetched yet, nothing to pull / 尚无已获取的模型")
                return {}
        try:
            result = repo.pull(targets=targets, remote=remote, jobs=jobs)
        except _dvc_errors() as err:
            raise _translate(err, "pull", where) from None
    link_into_torch_cache(layout, [m for m in layout.params.models if not models or m in models], root)
    stats = result.get("stats", {})
    fetched = stats.get("fetched", 0)
    placed = sum(v if isinstance(v, int) else len(v) for k, v in stats.items() if k in ("added", "modified"))
    _say(f"pulled from remote {where}: {fetched} file(s) downloaded, {placed} placed in the workspace / 已拉取")
    return stats


def check_remote(root: Path | None = None, remote: str | None = None) -> str:
    """Fail clearly when there is no remote, or it does not answer, or (local) it was never pushed to; else its name."""
    root = find_root(root)
    with open_repo(root, remote=remote) as repo:
        where = describe_remote(repo, remote)
        _check_remote_answers(repo, remote, where)
    return where


def _check_remote_answers(repo, remote: str | None, where: str) -> None:
    """Fail early and clearly when the remote is missing or does not answer (DVC would only say 'missing files')."""
    from dvc.config import NoRemoteError

    from .remotes import reach

    try:
        odb = repo.cloud.get_remote_odb(remote, "pull")
    except NoRemoteError as err:
        raise _translate(err, "pull") from None
    except _dvc_errors() as err:
        raise _translate(err, "pull", where) from None
    try:
        reach(repo, remote)
        odb.fs.info(odb.path)
        answered = True
    except FileNotFoundError:
        # an HTTP server may 404 a folder whose files it serves: only DVC's own transfer can tell
        answered = odb.fs.protocol in ("http", "https")
    except Exception as err:  # connection refused, DNS, timeouts, auth: whatever the protocol raises
        raise PipelineError(
            f"pull: remote {where} does not answer: {type(err).__name__}: {err} / 远端无响应",
            "check the URL and that the server runs (`dvc remote list`), or set another remote: "
            "`dvc remote add -d NAME URL` / 请检查远端地址与服务，或设置其他远端",
        ) from None
    if not answered:
        raise PipelineError(
            f"pull: remote {where} is empty or does not exist / 远端为空或不存在",
            "run `invoke push` on the machine that fetched the models, or point at the team remote: "
            "`dvc remote add -d NAME URL` / 请先在已获取模型的机器上 `invoke push`，或设置团队远端",
        )


# ---------------------------------------------------------------------------------------------- clean


def clean(root: Path | None = None, yes: bool = False, confirm: Callable[[str], bool] | None = None) -> list[str]:
    """Remove the models that params.yaml no longer selects from the workspace (weights, card, metrics).

    A file the default remote does not hold is removed only after ``confirm`` (or ``yes``) agrees.
    """
    from dvc.fs import localfs
    from dvc_data.hashfile.hash import hash_file as dvc_hash_file

    root = find_root(root)
    layout = Layout.load(root)
    selected = set(layout.params.models)
    if not layout.save_dir.is_dir():
        _say("nothing to clean / 无需清理")
        return []
    unselected = sorted(p.stem for p in layout.save_dir.glob("*.pth") if p.stem not in selected and p.stem in CATALOG)
    removed: list[str] = []
    if not unselected:
        _say(f"nothing to clean: every model in {layout.params.save_dir} is selected / 无需清理")
        return removed
    md5s = lock_md5s(root)
    with open_repo(root) as repo:
        where = describe_remote(repo)
        oids = {}
        for model in unselected:
            known = md5s.get(model)
            oids[model] = known or dvc_hash_file(str(layout.weights(model)), localfs, "md5", repo.state)[1].value
        in_remote, note = _remote_has(repo, set(oids.values()))
    for model in unselected:
        weights = layout.weights(model)
        if in_remote is None or oids[model] not in in_remote:
            question = f"{layout.rel(weights)} is not in remote {where}; delete it anyway? / 远端没有此文件，仍删除？"
            if not (yes or (confirm or _ask)(question)):
                _say(f"kept {layout.rel(weights)} / 已保留 (push it first: `invoke push`, or use --yes)")
                continue
        for path in (weights, layout.card(model), layout.metrics(model)):
            if path.exists():
                path.unlink()
                removed.append(layout.rel(path))
        from .exports import export_dirs

        for folder in export_dirs(layout.save_dir, CATALOG[model]).values():  # derived from the weights
            if folder.is_dir():
                shutil.rmtree(folder)
                removed.append(layout.rel(folder))
        _say(f"removed {model} from the workspace / 已从工作区移除")
    if note:
        _say(note)
    return removed


def _ask(question: str) -> bool:
    if not sys.stdin or not sys.stdin.isatty():
        return False
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes", "是")
    except EOFError:
        return False


__all__ = [
    "Fetched",
    "Layout",
    "PipelineError",
    "check_remote",
    "clean",
    "exit_on_error",
    "fetch",
    "find_root",
    "hash_file",
    "list_models",
    "lock_md5s",
    "pull",
    "push",
    "stage_name",
    "status",
    "verify",
]
