"""``dinovault.load_features("faces")``: a set's paths and vectors (memory-mapped: nothing is read until used), for
training code.

    paths, vectors = dinovault.load_features("faces")       # vectors[i] is the image at paths[i]
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DinovaultError
from ..repo.layout import find_root
from .sets import FEATURES_DIR
from .store import INDEX, META, VECTORS


@dataclass
class Features:
    name: str
    paths: list[str]  # relative to the set's images folder, POSIX
    vectors: np.memmap  # (len(paths), ...) read-only
    sha256: list[str]  # the content hash of each path's file
    meta: dict  # what made them: model, its SHA-256, preprocessing, tokens, dtype, dinovault version

    def __iter__(self):
        return iter((self.paths, self.vectors))

    def __len__(self) -> int:
        return len(self.paths)


def load_features(name: str, root: str | Path | None = None) -> Features:
    """The feature set ``name`` of the repository around ``root`` (default: the current directory)."""
    folder = find_root(root) / FEATURES_DIR / name
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
        with open(folder / INDEX, encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
        vectors = np.load(folder / VECTORS, mmap_mode="r")
    except (OSError, ValueError) as err:
        raise DinovaultError(f"no complete feature set {name!r} in {folder} ({type(err).__name__}) / 特征集 {name!r} "
                             "不存在或不完整", f"invoke features --set {name} (or dvc pull) / 请先运行 invoke features "
                             f"--set {name}（或 dvc pull）") from None
    if not len(rows) == vectors.shape[0] == meta.get("count"):
        raise DinovaultError(f"{folder}: index, vectors and meta.json disagree (a run was stopped while it indexed) "
                             "/ 索引与向量不一致", f"invoke features --set {name} / 请重新运行")
    return Features(name, [r["path"] for r in rows], vectors, [r["sha256"] for r in rows], meta)
