"""Where the project is: the one rule every command, the API and the extractor use to find the repository around a
folder, as git and DVC find theirs (kernel: no other dinovault module needed).

The project around a folder is the nearest folder at or above it holding ``.dvc/`` (a DVC project, possibly a
subdirectory project) or ``.git`` (a git repository, or a worktree's ``.git`` file). Whether that project is set up
for dinovault (dvc.yaml, params.yaml) is for repo/layout.py to say; the extractor only reads its params.yaml.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root(start: str | os.PathLike | None = None) -> Path | None:
    """The project around ``start`` (default: the current directory), or None outside any git or DVC project."""
    here = Path(start or os.getcwd()).resolve()
    return next((d for d in (here, *here.parents) if (d / ".dvc").is_dir() or (d / ".git").exists()), None)


__all__ = ["project_root"]
