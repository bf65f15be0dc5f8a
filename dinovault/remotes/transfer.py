"""THE push and THE pull: DVC's own, in one ``Repo`` per command, retried after a transient failure once the server
has answered, every failure explained by the one table (repo/dvc.py), and one summary of what moved.

Push sends only what the remote lacks, and re-sends objects a cut-short WebDAV upload left truncated under their
final name; every object sent is re-hashed first (S3: while it is read for the upload, by remotes/s3.py). Pull
re-hashes what it downloads (``verify``, whatever the remote's config says), calls a corrupt remote object damage
even where DVC deleted it (repo/objects.py), skips selected models that were never fetched, checks every model file
against its pin or card (repo/integrity.py: what contradicts them is removed and named), and links the weights into
the torch.hub cache. S3 objects move by boto3's transfer manager (remotes/s3.py), ``jobs`` connections (default 16)
in parts fitted to the objects, and are checked on the way; DVC then only places them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import tenacity

from .. import settings
from ..cache import carry_stamp
from ..errors import DamagedObjectError, DinovaultError, RemoteError
from ..files import hash_file
from ..repo.dvc import captured_logs, describe, explain, open_repo, remote_has, remote_name
from ..repo.integrity import refuse_contradicted
from ..repo.layout import Layout, link_torch_copies
from ..repo.objects import corrupted_error, drop_corrupt, drop_pull_temps
from . import s3
from .bounded import bound_requests
from .probe import check_answers, get_remote, reach, why_forbidden

# Uploads to these go straight to the final object name, so an interrupted push can leave a truncated object that
# DVC would later count as present (seen with WebDAV: a 1.6 MB file standing for a 20 MB object).
NON_ATOMIC_UPLOADS = ("webdav", "webdavs", "http", "https")
# Uploads to these go to a temporary name beside the object (dvc-objects/dvc-ssh: ".<22 url-safe chars>.tmp"),
# renamed when complete: a push killed mid-upload leaves the temporary file behind.
TEMP_UPLOADS = ("local", "ssh")
_TEMP_NAME = re.compile(r"\.[A-Za-z0-9_-]{22}\.tmp$")


@dataclass
class Transfer:
    """What one push or pull moved, over all its attempts."""

    direction: str  # "push" or "pull"
    remote: str = ""
    objects: int = 0
    bytes: int = 0
    present: int | None = None  # objects the remote already had (push)
    repaired: int = 0  # truncated or corrupt objects found on the remote and sent again
    corrupt: int = 0  # of those, the corrupt ones (right size, wrong bytes)
    temps: int = 0  # temporary files of an interrupted upload removed from the remote
    seconds: float = 0.0
    attempts: int = 0
    fetched: set[str] = field(default_factory=set)  # the objects a pull lacked locally and asked the remote for
    skipped: list[str] = field(default_factory=list)  # stages never fetched: nothing to pull
    warnings: list[str] = field(default_factory=list)  # DVC's warnings of a transfer that succeeded

    def summary(self) -> str:
        mb = self.bytes / 1e6
        rate = f", {mb / self.seconds:.0f} MB/s" if self.seconds > 0 and self.bytes else ""
        verb, zh, to = ("sent", "已上传", "to") if self.direction == "push" else ("received", "已下载", "from")
        extra = [f"{self.present} already there"] if self.present is not None else []
        truncated = self.repaired - self.corrupt
        extra += [f"{truncated} truncated object(s) sent again"] if truncated else []
        extra += [f"{self.corrupt} corrupt object(s) on the remote replaced by good bytes"] if self.corrupt else []
        extra += [f"{self.temps} leftover temporary file(s) removed"] if self.temps else []
        extra += [f"{self.attempts} attempts"] if self.attempts > 1 else []
        return (f"{verb} {self.objects} object(s), {mb:.1f} MB in {self.seconds:.1f} s{rate} "
                f"({to} {self.remote}{''.join('; ' + e for e in extra)}) / {zh} {self.objects} 个对象，{mb:.1f} MB")


Retried = Callable[[RemoteError, float, int, int], None]  # (error, delay, attempt, retries) before each retry


def push(root: Path, remote: str | None = None, *, jobs: int | None = None, retries: int = 2,
         on_retry: Retried | None = None) -> Transfer:
    """`invoke push`: DVC's push of everything tracked; only what the remote lacks (or holds truncated) is sent."""
    return _run("push", Layout.load(root), remote, jobs, retries, on_retry, None)


def pull(root: Path, models: list[str] | None = None, remote: str | None = None, *, jobs: int | None = None,
         retries: int = 2, on_retry: Retried | None = None) -> Transfer:
    """`invoke pull`: DVC's pull (only ``models`` when given), re-hashing what arrives so a tampered object is
    refused; then every pulled model file is checked against dvc.lock and its pin or card (repo/integrity.py: bytes
    that contradict them are removed, and the pull fails naming them), and the weights are linked into the torch.hub
    cache."""
    layout = Layout.load(root)
    targets = layout.pull_targets(models)
    pulled = [m for m in layout.params.models if not models or m in models]
    result = _run("pull", layout, remote, jobs, retries, on_retry, targets,
                  lambda repo, done: refuse_contradicted(layout, repo, remote, pulled, done.fetched))
    checked = {path: path.stat() for path in map(layout.weights, pulled) if path.is_file()}
    link_torch_copies(layout, pulled, result.warnings)
    for path, before in checked.items():  # the check's stamps outlive the links (a link moves the inode's ctime)
        carry_stamp(path, before)
    result.warnings += _unverified(layout.root, remote)
    return result


def _unverified(root: Path, name: str | None) -> list[str]:
    """A note when the remote's own config lacks ``verify = true``: this pull re-hashed anyway, a plain `dvc pull`
    from it would not (e.g. a remote added with `dvc remote add`)."""
    from dvc.config import Config

    with contextlib.suppress(Exception):  # the pull succeeded: a config that cannot be read again only loses a note
        config = Config(str(root / ".dvc"))
        name = name or config["core"].get("remote")
        if name and not config["remote"][name.lower()].get("verify"):
            return [f"remote '{name}' has no `verify = true`: invoke pull re-hashed what arrived, a plain `dvc pull` "
                    f"from it would not → dvc remote modify {name} verify true / 该远端未设置 verify = true，"
                    "直接 dvc pull 不会校验"]
    return []


def _run(direction, layout: Layout, name, jobs, retries, on_retry, targets, placed=None) -> Transfer:
    """One push or pull; ``placed(repo, result)`` runs after a pull has succeeded, before the repository is
    closed."""
    delays = settings.retry_delays()[: max(0, retries)]
    result = Transfer(direction)
    contacted = False  # failures before the server ever answered are not retried: nothing is running there
    present_before: set[str] = set()  # objects a pull lacks locally that the remote held before it (corrupted_error)
    t0 = time.monotonic()
    with open_repo(layout.root, remote=name, verify=direction == "pull") as repo:
        result.remote = describe(repo, name)
        bound_requests(repo, remote_name(repo, name))
        if targets is None:
            targets = _recorded_targets(repo, result)
        if targets == [] and direction == "push":  # nothing fetched yet (a pull still checks its remote)
            return result
        on_s3 = _is_s3(repo, name)
        if on_s3:
            jobs = jobs or int(repo.config["remote"][remote_name(repo, name)].get("jobs") or s3.DEFAULT_JOBS)

        def attempt() -> None:
            nonlocal contacted
            result.attempts += 1
            with captured_logs() as logs:
                try:
                    if direction == "push":
                        planned, to_send = _plan_push(repo, name, jobs, result, layout, targets)
                        contacted = True  # the server answered what it holds
                        if on_s3:
                            _push_s3(repo, planned, to_send, jobs, layout)
                        else:
                            repo.push(targets=targets, remote=planned, jobs=jobs)
                    else:
                        if not contacted:
                            check_answers(repo, name, result.remote)
                            contacted = True
                        _pull_once(repo, name, jobs, targets, result, on_s3, present_before)
                except DinovaultError:
                    raise
                except Exception as err:  # noqa: BLE001 - explained below
                    raise _explain(repo, name, direction, err, logs, present_before) from None
            result.warnings = logs.warnings

        def worth_retrying(err: BaseException) -> bool:
            # before the server ever answered, only a timeout is worth another try (it may be overloaded)
            return isinstance(err, RemoteError) and err.transient and (contacted or err.cause == "timeout")

        def retrying(state: tenacity.RetryCallState) -> None:
            if on_retry and state.outcome is not None and state.next_action is not None:
                on_retry(state.outcome.exception(), state.next_action.sleep, state.attempt_number, len(delays))
            _forget_connections(repo, name)  # the retry opens fresh connections instead of reusing dead ones

        # the push's and pull's one retry policy: settings.retry_delays() between tries, transient failures only
        tenacity.Retrying(retry=tenacity.retry_if_exception(worth_retrying),
                          stop=tenacity.stop_after_attempt(len(delays) + 1),
                          wait=lambda state: (delays[state.attempt_number - 1]  # asked even when it stops
                                              if state.attempt_number <= len(delays) else 0.0),
                          before_sleep=retrying, reraise=True)(attempt)
        result.seconds = time.monotonic() - t0
        if placed is not None:
            placed(repo, result)
        return result


def _explain(repo, name, direction: str, err: BaseException, logs, present_before: set[str]) -> Exception:
    errors = [*logs.errors, err]
    with contextlib.suppress(Exception):
        remote = repo.cloud.get_remote(name)
        errors = why_forbidden(remote.fs, remote.path, errors)
    _forget_connections(repo, name)
    explained = explain(err, direction, describe(repo, name), [e for e in errors if e is not err],
                        " | ".join(logs.texts))
    if direction == "pull" and getattr(explained, "cause", None) == "missing":
        return corrupted_error(repo, name, present_before) or explained
    return explained


def _forget_connections(repo, name) -> None:
    """Drop cached fsspec filesystems so a retry opens fresh connections instead of reusing dead ones."""
    with contextlib.suppress(Exception):
        type(repo.cloud.get_remote(name).fs.fs).clear_instance_cache()


def _plan_push(repo, name, jobs, result: Transfer, layout: Layout, targets) -> tuple[str, set]:
    """What the remote lacks (truncated objects removed so they are sent again), counted into ``result`` and
    re-hashed (a damaged object stops the push before anything is sent; S3 re-hashes while uploading instead);
    returns the remote's name and the objects to send."""
    remote = get_remote(repo, name, "push")
    reach(repo, remote.name)
    objs = set().union(*repo.used_objs(targets, remote=remote.name).values())
    status = repo.cloud.status(objs, jobs=jobs, remote=remote.name)
    to_send, present = set(status.new), set(status.ok)
    repaired = _drop_truncated(repo, remote, present) if remote.fs.protocol in NON_ATOMIC_UPLOADS else set()
    corrupt = drop_corrupt(repo, remote.name, present - repaired)
    result.corrupt += len(corrupt)
    repaired |= corrupt
    to_send |= repaired
    if remote.fs.protocol in TEMP_UPLOADS:
        result.temps += _drop_temps(repo, remote, to_send)
    if remote.fs.protocol != "s3":
        _refuse_damaged(repo, to_send, layout)
    if result.attempts == 1:  # counts what had to move; later attempts only finish it
        result.objects, result.present = len(to_send), len(present) - len(repaired)
        result.bytes = sum(_size(repo, hi.value) for hi in to_send)
    else:
        result.objects += len(repaired)
    result.repaired += len(repaired)
    return remote.name, to_send


def _push_s3(repo, name: str, to_send: set, jobs: int, layout: Layout) -> None:
    """The objects to send, uploaded straight into the remote's layout by boto3's transfer manager, each re-hashed
    while it uploads: a damaged one never completes its upload. Folder listings (``.dir``) go last, once every file
    has landed, as DVC does: a listing on the remote tells DVC that all its files are there. DVC's push then has
    nothing left to send, so it is not called (its status check would only cost round trips)."""
    odb = repo.cloud.get_remote_odb(name, "push")
    client, fs_args = s3.client_for(odb.fs.fs_args), odb.fs.fs_args
    extra = {k: v for k, v in (fs_args.get("s3_additional_kwargs") or {}).items() if v}
    for listings in (False, True):
        objects = _s3_objects(repo, odb, [h.value for h in to_send if h.value.endswith(".dir") == listings])
        damaged = s3.upload_verified(client, objects, jobs=jobs, extra_args=extra) if objects else []
        if damaged:
            raise _damaged(repo, damaged, layout)


def _refuse_damaged(repo, objs: set, layout: Layout) -> None:
    """Re-hash every object about to be sent; one whose bytes do not match its name (md5) would spread the damage
    to every clone that pulls it, so none is sent."""
    bad = []
    for hi in sorted(objs, key=lambda h: h.value):
        path = repo.cache.local.oid_to_path(hi.value)
        with contextlib.suppress(OSError):  # a missing object is DVC's to report
            if hash_file(path, md5=True, sha256=False).md5 != hi.value.removesuffix(".dir"):
                bad.append(path)
    if bad:
        raise _damaged(repo, bad, layout)


def _damaged(repo, paths: list[str], layout: Layout) -> DamagedObjectError:
    """The refusal for cache objects (``paths``) whose bytes do not match their names, named as the workspace has
    them."""
    names = {repo.cache.local.oid_to_path(md5): layout.rel(layout.weights(model))
             for model, md5 in layout.recorded.items()}
    return DamagedObjectError(
        f"push refused: {', '.join(names.get(p, p) for p in paths)} does not match its recorded hash (damaged); "
        "nothing damaged was sent / 拒绝推送：文件已损坏，未发送损坏的内容",
        "repair, then push again / 请先修复再推送: invoke verify --repair && invoke push",
    )


def _drop_temps(repo, remote, to_send: set) -> int:
    """Remove the temporary files in the remote folders of the objects about to be sent: the remote lacks those
    objects, so a temporary file there is an upload that was cut off (or a teammate's concurrent push of the same
    object, which then fails and is rerun)."""
    odb = repo.cloud.get_remote_odb(remote.name, "push")
    removed = 0
    for folder in sorted({odb.fs.parent(odb.oid_to_path(hi.value)) for hi in to_send}):
        try:
            names = odb.fs.ls(folder, detail=False)
        except FileNotFoundError:
            continue
        for name in names:
            if _TEMP_NAME.search(name):
                with contextlib.suppress(FileNotFoundError):
                    odb.fs.rm_file(name)
                    removed += 1
    return removed


def _drop_truncated(repo, remote, present: set) -> set:
    """Objects the remote holds with the wrong size (an upload cut short), deleted so DVC sends them again."""
    odb = repo.cloud.get_remote_odb(remote.name, "push")
    dropped = set()
    for hi in present:
        want = _size(repo, hi.value)
        try:
            have = odb.fs.size(odb.oid_to_path(hi.value))
        except FileNotFoundError:
            continue
        if want and have is not None and have != want:
            odb.fs.rm_file(odb.oid_to_path(hi.value))
            dropped.add(hi)
    return dropped


def _pull_once(repo, name, jobs, targets, result: Transfer, on_s3: bool, present_before: set[str]) -> None:
    if targets == []:
        return
    missing = _missing_outs(repo, targets)
    result.fetched |= set(missing)
    result.temps += drop_pull_temps(repo, missing)
    if not on_s3:  # DVC may delete a corrupt object from the remote during its pull: what was there before tells
        present_before |= remote_has(repo, set(missing) - present_before, name)[0] or set()
    if on_s3:  # every object lands in the cache by boto3's transfer manager: DVC only places them
        result.objects = _pull_s3(repo, name, jobs, missing)
        repo.checkout(targets=targets)
    else:
        result.objects = repo.pull(targets=targets, remote=name, jobs=jobs).get("stats", {}).get("fetched", 0)
    result.bytes = sum(size for oid, size in missing.items() if os.path.exists(repo.cache.local.oid_to_path(oid)))


def _pull_s3(repo, name, jobs, missing: dict[str, int]) -> int:
    """The missing objects straight into the local DVC cache by boto3's transfer manager, each MD5-checked before it
    is placed: folder listings (``.dir``) first, then the files they list and the other files."""
    odb = repo.cloud.get_remote_odb(name, "pull")
    client = s3.client_for(odb.fs.fs_args)
    listings = {oid: size for oid, size in missing.items() if oid.endswith(".dir")}
    _download_s3(repo, name, odb, client, jobs, listings)
    files = {oid: size for oid, size in missing.items() if not oid.endswith(".dir")}
    for oid in listings:
        with open(repo.cache.local.oid_to_path(oid), encoding="utf-8") as fh:
            for entry in json.load(fh):
                if not os.path.exists(repo.cache.local.oid_to_path(entry["md5"])):
                    files[entry["md5"]] = entry.get("size") or 0
    _download_s3(repo, name, odb, client, jobs, files)
    return len(listings) + len(files)


def _download_s3(repo, name, odb, client, jobs, oids: dict[str, int]) -> None:
    if not oids:
        return
    damaged = s3.download_verified(client, _s3_objects(repo, odb, oids), jobs=jobs, largest=max(oids.values()))
    if damaged:
        raise RemoteError(
            f"pull: {describe(repo, name)}: {', '.join(damaged)} corrupted on the remote (its hash does not match its "
            "name); not placed in the workspace / 远端对象已损坏（哈希不符），未放入工作区",
            "push it again from a machine that has the file: invoke push / 请在有该文件的机器上重新 invoke push",
            cause="corrupt",
        )


def _recorded_targets(repo, result: Transfer) -> list[str] | None:
    """The stages whose outputs dvc.lock records (None: all of them). A selected model that was never fetched has
    nothing to move; DVC would warn about it (push) or fail on it as if its file were missing from the remote (pull)."""
    stages = list(repo.index.stages)
    unrecorded = [s for s in stages if any(not out.hash_info for out in s.outs)]
    result.skipped = [s.addressing for s in unrecorded]
    return [s.addressing for s in stages if s not in unrecorded] if unrecorded else None


def _missing_outs(repo, targets) -> dict[str, int]:
    """oid → size (dvc.lock's) of each output of ``targets`` whose object is not in the local cache yet."""
    stages = [s for s in repo.index.stages if targets is None or s.addressing in targets]
    outs = [o for s in stages for o in s.outs if o.use_cache and o.hash_info and o.hash_info.value]
    return {o.hash_info.value: o.meta.size or 0 for o in outs
            if not os.path.exists(repo.cache.local.oid_to_path(o.hash_info.value))}


def _s3_objects(repo, odb, oids) -> list[tuple[str, str, str, str]]:
    """(local cache path, bucket, key, md5 of the bytes) of each object id, for remotes/s3.py."""
    places = []
    for oid in sorted(oids):
        bucket, _, key = odb.oid_to_path(oid).partition("/")
        places.append((repo.cache.local.oid_to_path(oid), bucket, key, oid.removesuffix(".dir")))
    return places


def _is_s3(repo, name) -> bool:
    return str(repo.config["remote"].get(remote_name(repo, name), {}).get("url", "")).startswith("s3://")


def _size(repo, oid: str) -> int:
    try:
        return os.path.getsize(repo.cache.local.oid_to_path(oid))
    except OSError:
        return 0


__all__ = ["Transfer", "pull", "push"]
