"""Errors a user can hit. Each carries what happened and what to do next."""

from __future__ import annotations

from collections.abc import Iterator


class DinovaultError(Exception):
    """Base class: ``str(err)`` is one or two lines fit to print before exiting non-zero."""

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(message if not hint else f"{message}\n  → {hint}")


class UnknownModelError(DinovaultError, ValueError):
    """A model name that is not in the catalog."""


class RegistryError(DinovaultError):
    """A pin registry that cannot be read or has a malformed line."""


class ParamsError(DinovaultError):
    """params.yaml that does not parse or does not validate."""


class DownloadError(DinovaultError):
    """Every source failed; the message names each source and why."""


class DiskSpaceError(DownloadError):
    """The local disk cannot take the file (too little free space, or it filled up): no other source would help."""


class VerificationError(DinovaultError):
    """Bytes whose size or SHA-256 do not match the pin."""


class CheckpointError(DinovaultError):
    """A file that is not a safe state_dict of the expected model."""


class ExportError(DinovaultError):
    """save_dir cannot receive the model."""


class RepoError(DinovaultError):
    """The repository or DVC cannot do what was asked: no repository here, a stage that failed, a file that does
    not verify."""


class RemoteError(DinovaultError):
    """A DVC remote that cannot be configured, reached or used. ``cause`` names the rule that explained it (see
    ``repo/dvc.py``); ``transient`` failures may be retried."""

    def __init__(self, message: str, hint: str | None = None, *, cause: str | None = None, transient: bool = False):
        super().__init__(message, hint)
        self.cause = cause
        self.transient = transient


class DamagedObjectError(RepoError):
    """A file whose bytes do not hash to the DVC object name it stands for: never sent to a remote."""


class ConfigError(DinovaultError):
    """An environment variable or setting with a value that cannot work; retrying would not help."""


class SourceError(DinovaultError):
    """DINOVAULT_SOURCES names something that is not a source."""


class ImportFileError(DinovaultError):
    """A hand-downloaded file that is not a known DINOv2 checkpoint, or does not match its pin."""


class MissingWeightsError(DinovaultError):
    """No checkpoint file where the extractor or a torch.hub entry looks for one."""


class ImageError(DinovaultError, ValueError):
    """An image that cannot be decoded (``reason`` says why, without the path), or a folder holding none."""

    def __init__(self, message: str, hint: str | None = None, reason: str = ""):
        super().__init__(message, hint)
        self.reason = reason


class UsageError(DinovaultError, ValueError):
    """An argument value the API or a command cannot use (a dtype, a device)."""


# Signals inside transport/ (never shown to a user: each ends in a retry, a restart or one of the errors above)


class Retryable(Exception):
    """Worth another try at the same source. ``limit``: at most this many attempts for this kind of failure;
    ``progressed``: bytes arrived before it failed; ``at``: the bytes (a, b) the failed response was to carry."""

    def __init__(self, reason: str, retry_after: float | None = None, progressed: bool = False,
                 limit: int | None = None, timed_out: bool = False, at: tuple[int, int] | None = None):
        super().__init__(reason)
        self.reason, self.retry_after, self.progressed, self.limit = reason, retry_after, progressed, limit
        self.timed_out, self.at = timed_out, at


class SourceFailed(Exception):
    def __init__(self, reason: str, discard: bool = False):
        super().__init__(reason)
        self.reason, self.discard = reason, discard  # discard: the partial holds this source's bad bytes


class Restart(Exception):
    """The partial cannot be trusted: drop it and try once more from byte zero."""


class NoRanges(Exception):
    """No source honours Range requests: download with one stream instead."""


class LocalWriteError(Exception):
    def __init__(self, err: OSError, kept: int):
        super().__init__(str(err))
        self.err, self.kept = err, kept


class SignedLinkError(DownloadError):
    """A signed download link that cannot work: expired, for another file, or refused by the server (HTTP 403)."""


def causes(err: BaseException | None) -> Iterator[BaseException]:
    """``err`` and every exception it carries, outermost first, each once: what it was raised from (``__cause__``,
    else ``__context__``) and what a library wraps by value (requests puts urllib3's error in ``args``, urllib3's
    MaxRetryError its cause in ``reason``, urllib3's ProtocolError the socket's error in ``args``). Foreign errors are
    told apart by ``isinstance`` over this, never by their names or messages."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [err]
    while todo:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [a for a in current.args if isinstance(a, BaseException)]
        reason = getattr(current, "reason", None)
        todo += [reason] if isinstance(reason, BaseException) else []
        todo.append(current.__cause__ or current.__context__)
