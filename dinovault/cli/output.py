"""What the fronts print on stdout, ending quietly when its reader goes away (`dinovault list | head -1`)."""

from __future__ import annotations

import contextlib
import os
import sys

# 128 + SIGPIPE (13): what a shell reports for a writer that `| head` cut off (`yes | head -1`, git). Windows has no
# SIGPIPE; the same code there. SIGPIPE itself stays ignored, as Python sets it: a download socket that breaks must
# raise an error, not end the process.
PIPE_CLOSED = 141


def stdout_gone() -> int:
    """After a BrokenPipeError on stdout: point stdout at os.devnull, so the interpreter's last flush does not fail
    again (the Python docs' recipe, signal module, "Note on SIGPIPE"); the exit code to end with, quietly."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return PIPE_CLOSED


def say(*lines: str) -> None:
    """Each line on stdout at once; when no one reads any more, SystemExit(PIPE_CLOSED) and no traceback."""
    try:
        for line in lines:
            print(line, flush=True)
    except BrokenPipeError:
        raise SystemExit(stdout_gone()) from None
