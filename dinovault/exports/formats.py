"""Exports beside ``<save_dir>/<model>.pth``, chosen by params.yaml ``formats`` (``pth`` is always there):

- ``safetensors``: ``<save_dir>/safetensors/<model>/<model>.safetensors``: the official keys, order and tensors,
  bit-identical, no pickle, memory-mappable (``safetensors.torch.load_file`` / ``safe_open``);
- ``hf``: ``<save_dir>/hf/<model>/`` with ``config.json`` and ``model.safetensors`` in the transformers layout:
  ``transformers.AutoModel.from_pretrained(folder)`` loads it offline.

Each format owns one folder per model, declared as a DVC output of the model's stage in dvc.yaml: DVC outputs
are fixed in dvc.yaml (a stage cannot add or drop an output with a parameter, and foreach/matrix cannot map a
format to its own path), so a folder that is empty when its format is not chosen keeps the stage valid for any
``formats`` list. Writing needs safetensors and torch, not transformers. Files are written under a temporary name
and renamed into place; one that already holds the same bytes is left alone, so DVC sees nothing new.
"""

from __future__ import annotations

import filecmp
from pathlib import Path

from ..catalog import ModelSpec
from ..errors import ExportError
from ..files import json_text, remove, replace, temp_beside
from ..params import FORMATS

EXTRA_FORMATS = FORMATS[1:]


def export_dirs(save_dir: Path, spec: ModelSpec) -> dict[str, Path]:
    """The folder of each extra format for ``spec`` (each a DVC output of the stage ``fetch@<model>``)."""
    return {fmt: Path(save_dir) / fmt / spec.name for fmt in EXTRA_FORMATS}


def ignore_rules(save_dir: str) -> list[str]:
    """The .gitignore lines (from the repository's root) that keep a family's folder out of git: the weights and
    cards, and every export kind's folder, whichever ``formats`` params.yaml chooses now (a later choice is covered
    too). All are DVC outputs: `dvc checkout` brings them back but not the per-folder .gitignore files DVC wrote, so
    these root rules are what protects them. `dinovault init` writes them; this repository's .gitignore holds the
    same for its save_dirs (a test checks)."""
    folder = str(save_dir).replace("\\", "/").strip("/")
    return [f"/{folder}/*.pth", f"/{folder}/*.json", *(f"/{folder}/{fmt}/" for fmt in EXTRA_FORMATS)]


def _place(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` onto ``target`` unless ``target`` already holds the same bytes (then drop ``tmp``)."""
    if target.is_file() and filecmp.cmp(tmp, target, shallow=False):
        tmp.unlink()
    else:
        replace(tmp, target)


def _write_safetensors(tensors: dict, target: Path, metadata: dict) -> None:
    from safetensors.torch import save_file

    tmp = temp_beside(target)
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        _place(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _write_text(text: str, target: Path) -> None:
    tmp = temp_beside(target)
    try:
        tmp.write_text(text, encoding="utf-8")
        _place(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _empty(folder: Path) -> None:
    for child in folder.iterdir():
        if child.is_file() or child.is_symlink():
            remove(child)


def write_exports(pth: Path, spec: ModelSpec, save_dir: Path, formats) -> dict[str, Path]:
    """Write the chosen extra formats of the verified checkpoint ``pth``; the folders of the others are left
    empty. Returns the folder of each format written. torch is imported only when a format is chosen: a stage that
    exports only the .pth (the default) with the smoke test off never loads it (~2 s of a stage run)."""
    chosen = [f for f in EXTRA_FORMATS if f in set(formats)]
    written: dict = {}
    try:
        dirs = export_dirs(save_dir, spec)
        for fmt, folder in dirs.items():
            folder.mkdir(parents=True, exist_ok=True)
            if fmt not in chosen:
                _empty(folder)
        if not chosen:
            return written
        from ..model.checkpoint import load_state_dict
        from ..model.families import conversion

        state_dict = {k: v.contiguous() for k, v in load_state_dict(pth, spec).items()}
        meta = {"format": "pt"}  # one key: safetensors stores metadata unordered, and the bytes must not vary
        if "safetensors" in chosen:
            _write_safetensors(state_dict, dirs["safetensors"] / f"{spec.name}.safetensors", meta)
            written["safetensors"] = dirs["safetensors"]
        if "hf" in chosen:
            convert = conversion(spec)
            if convert is None:
                raise ExportError(f"no Hugging Face layout for {spec.family} models: no hf export of {spec.name} / "
                                  "该系列无 Hugging Face 格式",
                                  "remove hf from formats in params.yaml / 请从 params.yaml 的 formats 中删除 hf")
            _write_safetensors(convert.official_to_hf(state_dict, spec), dirs["hf"] / "model.safetensors", meta)
            _write_text(json_text(convert.hf_config(spec)), dirs["hf"] / "config.json")
            written["hf"] = dirs["hf"]
    except OSError as err:
        raise ExportError(
            f"cannot write the {spec.name} exports in {save_dir}: {err.strerror or err} / 无法写入导出文件",
            "free space or pick another save_dir, then rerun / 请释放空间或更换目录后重试",
        ) from None
    return written


__all__ = ["EXTRA_FORMATS", "FORMATS", "export_dirs", "ignore_rules", "write_exports"]
