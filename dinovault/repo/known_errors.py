"""DVC errors whose own message says what is wrong, shown as they are with what to do. DVC's CLI prints them; through
its API nothing does, so a stage that failed on one used to end in "(its own message is above)" over nothing; now only
a stage whose command failed (and printed) says so (`stage_failed`)."""

from __future__ import annotations

import errno
import logging
import re

from ..errors import DinovaultError, RepoError

LOCAL_SPACE = ("free space on this machine's disk (the DVC cache .dvc/cache and the workspace; `df -h .`), then "
               "rerun: only what is missing moves / 请释放本机磁盘空间后重试")
# DVC errors whose own message says what is wrong (DVC's CLI would print it; through its API nothing does): shown
# as they are, with what to do. StageCmdFailedError is not here: the stage's command printed its own error above.
_DVC_HINTS = {
    "LockError": "another DVC process (a `dvc` command, an IDE's DVC extension) is using this repository: wait for it "
                 "to finish and rerun / 另一个 DVC 进程正在使用本仓库，请等待其结束后重试",
    "MissingParamsError": "add the missing key to params.yaml (smoke_test: true, formats: [pth], save_dir: "
                          "models/dinov2; dvc.yaml reads them) / 请在 params.yaml 中补上缺少的键",
    "OutputDoesNotExistError": "the stage's command did not write that output: check dvc.yaml and save_dir, then "
                               "rerun `invoke fetch` / 阶段命令未生成该输出，请检查 dvc.yaml 与 save_dir 后重试",
    "YAMLValidationError": "fix the file it names: dvc.lock can be restored from git (`git checkout dvc.lock`) or "
                           "deleted and rebuilt with `dvc repro` / 请修正所指文件（dvc.lock 可从 git 恢复，"
                           "或删除后 dvc repro）",
    "CacheLinkError": "DVC could not place the file in its cache (the disk is full, or it cannot link there): "
                      + LOCAL_SPACE,
}


def dvc_error(err: BaseException | None, doing: str) -> DinovaultError | None:
    """DVC's own message for the errors of ``_DVC_HINTS`` and a full local disk, found anywhere in ``err``'s chain
    (a stage's failure is a ReproductionError caused by the real one); None for others."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        name = type(err).__name__
        if name in _DVC_HINTS:
            message = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()
            return RepoError(f"{doing}: {message} ({name}) / DVC 报错", _DVC_HINTS[name])
        if isinstance(err, OSError) and err.errno == errno.ENOSPC and doing != "push":
            where = f" ({err.filename})" if err.filename else ""
            return RepoError(f"{doing}: no space left on this machine's disk{where} / 本机磁盘空间不足", LOCAL_SPACE)
        if name == "StageCmdFailedError":
            return None
        err = err.__cause__ or err.__context__
    return None


def stage_failed(err: BaseException, doing: str) -> RepoError:
    """A stage that failed on something no rule knows. Only a failed command printed its own message (DVC ran it
    in this terminal); any other cause (e.g. DVC refusing an output) is shown here, as DVC's CLI would."""
    chain, cause = [], err.__cause__ or err.__context__
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    from dvc.stage.exceptions import StageCmdFailedError

    failed = next((c for c in chain if isinstance(c, StageCmdFailedError)), None)
    if failed is not None:
        return RepoError(f"{doing}: {err} (its command failed; its own message is above) / "
                         "阶段运行失败（详见上方信息）",
                         "fix the cause and rerun; nothing half-written was recorded / 修正后重试；未记录任何半成品")
    cause = chain[0] if chain else None
    reason = re.sub(r"\x1b\[[0-9;]*m", "", str(cause)).strip() if cause is not None else ""
    said = f": {reason} ({type(cause).__name__})" if reason else ""
    return RepoError(f"{doing}: {err}{said} / 阶段运行失败，DVC 报错",
                     "fix what DVC names and rerun (DVC_SHOW_TRACEBACK=1 shows where it failed); dvc.lock was not "
                     "changed / 请修正 DVC 所指出的问题后重试；dvc.lock 未改变")


def interrupted(err: BaseException | None) -> bool:
    """Whether a stage failed because its command was interrupted: it exited 130 (SIGINT caught) or was killed by
    SIGINT (-2)."""
    while err is not None:
        if type(err).__name__ == "StageCmdFailedError" and str(err).endswith(("exited with 130", "exited with -2")):
            return True
        err = err.__cause__ or err.__context__
    return False


_UNCHOSEN = re.compile(r"'.*/(safetensors|hf)/[^/']+' is empty")


def unchosen_export(record: logging.LogRecord) -> bool:
    """DVC warns of every empty output folder: an export folder of a format params.yaml does not choose is empty by
    design (exports/formats.py), twice per model and fetch; the user's own empty outputs still warn."""
    return not (record.levelno == logging.WARNING and _UNCHOSEN.search(record.getMessage()))
