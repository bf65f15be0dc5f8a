"""Errors a user can hit. Each carries what happened and what to do next."""

from __future__ import annotations


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


class VerificationError(DinovaultError):
    """Bytes whose size or SHA-256 do not match the pin."""


class CheckpointError(DinovaultError):
    """A file that is not a safe state_dict of the expected model."""


class ExportError(DinovaultError):
    """save_dir cannot receive the model."""


class MissingWeightsError(DinovaultError):
    """No checkpoint file where the extractor or a torch.hub entry looks for one."""


class ImageError(DinovaultError, ValueError):
    """An image that cannot be decoded (``reason`` says why, without the path), or a folder holding none."""

    def __init__(self, message: str, hint: str | None = None, reason: str = ""):
        super().__init__(message, hint)
        self.reason = reason


class UsageError(DinovaultError, ValueError):
    """An argument value the API or a command cannot use (a dtype, a device)."""
