"""features/<set>/, content-addressed: what a run leaves and what the next run reuses.

    shards/<id>.npy    the vectors of up to shard_size images, one row each
    shards/<id>.json   the content hashes (SHA-256 of the file bytes) of those rows and the key they were made with
    vectors.npy        one row per indexed path, in index order (rewritten at the end of each run; memory-mapped by
                       the loader)
    index.csv          path, sha256, shard, row (pandas.read_csv and pyarrow.csv read it; no dependency to write it)
    skipped.csv        path, sha256, reason
    meta.json          what made them: model, its SHA-256, preprocessing, tokens, dtype, shape, dinovault version

The key is the hash of (model SHA-256, preprocessing, tokens, dtype): a shard made with another key is never reused
and is removed at the end of the run. Every file is written whole under a temporary name and renamed into place
(DVC may have hard-linked the old one into its cache); a shard counts only once its .json is there, so a kill loses
at most the shard in flight.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..files import json_text, replace, temp_beside, write_atomic

SHARDS = "shards"
INDEX, SKIPPED, VECTORS, META = "index.csv", "skipped.csv", "vectors.npy", "meta.json"
TEMP_SUFFIXES = (".tmp", ".partial")


def make_key(recipe: dict) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:32]


def remove(path: Path) -> None:
    """Unlink ``path``; DVC leaves its outputs read-only, which Windows refuses to delete until the bit is cleared."""
    try:
        path.unlink(missing_ok=True)
    except PermissionError:
        os.chmod(path, stat.S_IREAD | stat.S_IWRITE)
        path.unlink(missing_ok=True)


def _write_with(path: Path, write: Callable) -> None:
    tmp = temp_beside(path, "partial")
    try:
        with open(tmp, "xb") as fh:
            write(fh)
        replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class Store:
    def __init__(self, folder: Path, key: str):
        self.folder, self.key = Path(folder), key
        self.shards = self.folder / SHARDS

    def clean_temps(self) -> None:
        """Temporary files a killed run left (one run per set at a time)."""
        for where in (self.folder, self.shards):
            if where.is_dir():
                for path in where.iterdir():
                    if path.name.startswith(".") and path.name.endswith(TEMP_SUFFIXES):
                        remove(path)

    def known(self) -> dict[str, tuple[str, int]]:
        """Content hash → (shard id, row) of every complete shard made with this key."""
        found: dict[str, tuple[str, int]] = {}
        for record in sorted(self.shards.glob("*.json")) if self.shards.is_dir() else []:
            try:
                info = json.loads(record.read_text(encoding="utf-8"))
                rows = np.load(record.with_suffix(".npy"), mmap_mode="r").shape[0]
            except (OSError, ValueError):
                continue  # half of a shard (its .npy is gone or damaged): computed again
            if info.get("key") == self.key and len(info.get("sha256", ())) == rows:
                for row, digest in enumerate(info["sha256"]):
                    found.setdefault(digest, (record.stem, row))
        return found

    def previous_skips(self) -> dict[str, str]:
        """Content hash → reason, for files the last run with this key could not read (not tried again)."""
        try:
            if json.loads((self.folder / META).read_text(encoding="utf-8")).get("key") != self.key:
                return {}
            with open(self.folder / SKIPPED, encoding="utf-8", newline="") as fh:
                return {row["sha256"]: row["reason"] for row in csv.DictReader(fh) if row["sha256"]}
        except (OSError, ValueError, KeyError):
            return {}

    def write_shard(self, hashes: list[str], vectors: np.ndarray) -> str:
        shard = make_key({"key": self.key, "sha256": hashes})[:20]
        self.shards.mkdir(parents=True, exist_ok=True)
        _write_with(self.shards / f"{shard}.npy", lambda fh: np.save(fh, np.ascontiguousarray(vectors)))
        write_atomic(self.shards / f"{shard}.json", json_text({"key": self.key, "sha256": hashes}))
        return shard

    def finish(self, rows: list[tuple[str, str]], skipped: list[tuple[str, str, str]], meta: dict) -> int:
        """Write vectors.npy, index.csv, skipped.csv and meta.json for ``rows`` (path, content hash), every hash
        in a shard; then remove the shards no row uses. Returns the number of rows."""
        known = self.known()
        where = [known[digest] for _, digest in rows]
        shard_ids = sorted({shard for shard, _ in where})
        opened = {s: np.load(self.shards / f"{s}.npy", mmap_mode="r") for s in shard_ids}
        first = next(iter(opened.values()))
        vectors_path = self.folder / VECTORS
        tmp = temp_beside(vectors_path, "partial")
        try:
            out = np.lib.format.open_memmap(str(tmp), mode="w+", dtype=first.dtype, shape=(len(rows), *first.shape[1:]))
            number = {s: i for i, s in enumerate(shard_ids)}
            at = np.array([number[s] for s, _ in where], dtype=np.int64)
            row_of = np.array([r for _, r in where], dtype=np.int64)
            for i, shard in enumerate(shard_ids):  # one gather per shard: memory stays one shard wide
                positions = np.flatnonzero(at == i)
                out[positions] = opened[shard][row_of[positions]]
            out.flush()
            del out
            replace(tmp, vectors_path)
        finally:
            tmp.unlink(missing_ok=True)
        opened.clear()
        indexed = ((p, d, s, r) for (p, d), (s, r) in zip(rows, where, strict=True))
        _write_with(self.folder / INDEX, lambda fh: _csv(fh, ("path", "sha256", "shard", "row"), indexed))
        _write_with(self.folder / SKIPPED, lambda fh: _csv(fh, ("path", "sha256", "reason"), skipped))
        write_atomic(self.folder / META, json_text({**meta, "key": self.key, "count": len(rows),
                                                    "shape": [len(rows), *first.shape[1:]], "dtype": str(first.dtype),
                                                    "skipped": len(skipped)}))
        used = set(shard_ids)
        for record in self.shards.glob("*.json"):
            if record.stem not in used:
                remove(record)  # the .json first: a shard without it is never trusted
                remove(record.with_suffix(".npy"))
        for orphan in self.shards.glob("*.npy"):
            if orphan.stem not in used:
                remove(orphan)
        return len(rows)


def _csv(fh, header: tuple[str, ...], rows) -> None:
    import io

    text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    text.flush()
    text.detach()
