"""DVC errors whose own message says what is wrong, shown as they are with what to do. DVC's CLI prints them; through
its API nothing does, so a stage that failed on one used to end in "(its own message is above)" over nothing; now only
a stage whose command failed (and printed) says so (`stage_failed`)."""

from __future__ import annotations

import errno
import logging
import re

from ..errors import DinovaultError, RepoError, causes

LOCAL_SPACE = ("free space on this machine's disk (the DVC cache .dvc/cache and the workspace; `df -h .`), then "
               "rerun: only what is missing moves / 请释放本机磁盘空间后重试")


def _dvc_hints() -> list[tuple[type[BaseException], str]]:
    """DVC errors whose own message says what is wrong (DVC's CLI would print it; through its API nothing does):
    shown as they are, with what to do. StageCmdFailedError is not here: the stage's command printed its own error
    above. Imported when asked: DVC loads slowly."""
    from dvc.dependency.param import MissingParamsError
    from dvc.exceptions import CacheLinkError
    from dvc.lock import LockError
    from dvc.output import OutputDoesNotExistError
    from dvc.utils.strictyaml import YAMLValidationError

    return [
        (LockError, "another DVC process (a `dvc` command, an IDE's DVC extension) is using this repository: wait for "
                    "it to finish and rerun / 另一个 DVC 进程正在使用本仓库，请等待其结束后重试"),
        (MissingParamsError, "add the missing key to params.yaml (smoke_test: true, formats: [pth], save_dir: "
                             "models/dinov2; dvc.yaml reads them) / 请在 params.yaml 中补上缺少的键"),
        (OutputDoesNotExistError, "the stage's command did not write that output: check dvc.yaml and save_dir, then "
                                  "rerun `invoke fetch` / 阶段命令未生成该输出，请检查 dvc.yaml 与 save_dir 后重试"),
        (YAMLValidationError, "fix the file it names: dvc.lock can be restored from git (`git checkout dvc.lock`) or "
                              "deleted and rebuilt with `dvc repro` / 请修正所指文件（dvc.lock 可从 git 恢复，"
                              "或删除后 dvc repro）"),
        (CacheLinkError, "DVC could not place the file in its cache (the disk is full, or it cannot link there): "
                         + LOCAL_SPACE),
    ]


def _plain(err: BaseException) -> str:
    """DVC's message without the terminal colours some of its errors carry (YAMLValidationError's excerpt)."""
    return re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()


def dvc_error(err: BaseException | None, doing: str) -> DinovaultError | None:
    """DVC's own message for the errors of ``_DVC_HINTS`` and a full local disk, found anywhere in ``err``'s chain
    (a stage's failure is a ReproductionError caused by the real one); None for others."""
    from dvc.stage.exceptions import StageCmdFailedError

    hints = _dvc_hints()
    for cause in causes(err):
        hint = next((h for kind, h in hints if isinstance(cause, kind)), None)
        if hint is not None:
            return RepoError(f"{doing}: {_plain(cause)} ({type(cause).__name__}) / DVC 报错", hint)
        if isinstance(cause, OSError) and cause.errno == errno.ENOSPC and doing != "push":
            where = f" ({cause.filename})" if cause.filename else ""
            return RepoError(f"{doing}: no space left on this machine's disk{where} / 本机磁盘空间不足", LOCAL_SPACE)
        if isinstance(cause, StageCmdFailedError):
            return None
    return None


def stage_failed(err: BaseException, doing: str) -> RepoError:
    """A stage that failed on something no rule knows. Only a failed command printed its own message (DVC ran it
    in this terminal); any other cause (e.g. DVC refusing an output) is shown here, as DVC's CLI would."""
    from dvc.stage.exceptions import StageCmdFailedError

    chain = list(causes(err))[1:]

    failed = next((c for c in chain if isinstance(c, StageCmdFailedError)), None)
    if failed is not None:
        return RepoError(f"{doing}: {err} (its command failed; its own message is above) / "
                         "阶段运行失败（详见上方信息）",
                         "fix the cause and rerun; nothing half-written was recorded / 修正后重试；未记录任何半成品")
    cause = chain[0] if chain else None
    reason = _plain(cause) if cause is not None else ""
    said = f": {reason} ({type(cause).__name__})" if reason else ""
    return RepoError(f"{doing}: {err}{said} / 阶段运行失败，DVC 报错",
                     "fix what DVC names and rerun (DVC_SHOW_TRACEBACK=1 shows where it failed); dvc.lock was not "
                     "changed / 请修正 DVC 所指出的问题后重试；dvc.lock 未改变")


def interrupted(err: BaseException | None) -> bool:
    """Whether a stage failed because its command was interrupted: it exited 130 (SIGINT caught) or was killed by
    SIGINT (-2)."""
    from dvc.stage.exceptions import StageCmdFailedError

    # by its message: StageCmdFailedError keeps the exit status only in its text (dvc/stage/exceptions.py)
    return any(isinstance(cause, StageCmdFailedError) and str(cause).endswith(("exited with 130", "exited with -2"))
               for cause in causes(err))


# over a log record's text: DVC logs this warning with no exception or structured field to tell it by
_UNCHOSEN = re.compile(r"'.*/(safetensors|hf)/[^/']+' is empty")


def unchosen_export(record: logging.LogRecord) -> bool:
    """DVC warns of every empty output folder: an export folder of a format params.yaml does not choose is empty by
    design (exports/formats.py), twice per model and fetch; the user's own empty outputs still warn."""
    return not (record.levelno == logging.WARNING and _UNCHOSEN.search(record.getMessage()))
