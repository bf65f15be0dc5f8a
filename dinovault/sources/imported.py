"""Importing checkpoints downloaded by hand: an official ``.pth`` under any name, or a Hugging Face
``model.safetensors`` of facebook/dinov2-*.

A file is recognised by its SHA-256 against the pins, or else by its tensor names and shapes; it is then verified
and placed in the cache where a fetch finds it without a download: an official file in the torch.hub cache under
its official name (a hard link of the user's file where possible, else a verified copy; the user's file is never
written), a Hugging Face file converted into the dinovault cache (huggingface.py). A file that matches no model, or
looks like one but differs from its pin, is refused with what it looks like.
"""

from __future__ import annotations

from pathlib import Path

from ..cache import file_sha256
from ..catalog import CATALOG
from ..errors import ImportFileError
from ..registry import load_pins
from . import get, known
from .prefix import PrefixPin

SUFFIXES = (".pth", ".pt", ".safetensors", ".bin")
_HINT = "download the file again, or fetch it: invoke fetch --model NAME / 请重新下载或直接获取"


def _files(paths) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
            if not found:
                raise ImportFileError(f"{path}: no .pth or .safetensors file in this folder / 文件夹中没有权重文件",
                                      "pass the file itself / 请直接指定文件")
            out.extend(found)
        elif path.is_file():
            out.append(path)
        else:
            raise ImportFileError(f"{path}: no such file or folder / 文件不存在", "check the path / 请检查路径")
    return out


def _shapes(path: Path) -> dict[str, tuple[int, ...]] | None:
    """Tensor names and shapes of a safetensors file (header only) or a safe PyTorch checkpoint; None if neither."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                return {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}  # noqa: SIM118
        except (SafetensorError, OSError, ValueError):
            return None
    import torch

    try:
        obj = torch.load(path, map_location="meta", weights_only=True, mmap=True)
    except Exception:  # not a zip, pickled code, truncated: whatever it is, it is not a checkpoint we can use
        return None
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        return None
    return {str(k): tuple(v.shape) for k, v in obj.items()}


def _looks_like(shapes: dict | None) -> str:
    if shapes is None:
        return "it is not a readable safetensors file or weights-only PyTorch checkpoint"
    keys = ", ".join(list(shapes)[:3])
    dim = (shapes.get("cls_token") or shapes.get("embeddings.cls_token") or (None,))[-1]
    what = f"{len(shapes)} tensors ({keys}, …)"
    return f"{what}, embed dim {dim}: not a catalog model" if dim else f"{what}: not a DINOv2 backbone"


def import_file(path: Path, allow_unverified: bool = False) -> tuple[str, str]:
    """Place one file; returns (model name, a line saying what was done)."""
    from ..model.hf_dinov2 import identify

    path = Path(path)
    size, sha = path.stat().st_size, file_sha256(path)
    pins = load_pins()
    for spec in CATALOG.values():
        for source in known():
            pin = source.pin(spec, pins)
            if pin is not None and pin.sha256 == sha and pin.size in (None, size):
                got = source.take_file(path, spec, size, sha, pin)
                return spec.name, f"✓ {path}: {source.name} {source.describe_pin(spec)}, pinned sha256 matches → {got}"
    official = get("official")
    for spec in CATALOG.values():  # a DINOv3 file with no full pin: recognised by the hash prefix in its name
        pin = official.pin(spec, pins)
        if isinstance(pin, PrefixPin) and pin.problem(sha) is None:
            got = official.take_file(path, spec, size, sha, pin)
            return spec.name, (f"✓ {path}: official {spec.upstream_file}, sha256 starts with the {pin.prefix} of its "
                               f"name (verified: prefix, no full pin) → {got}")
    shapes = _shapes(path)
    found = identify(shapes) if shapes else None
    if found is None:
        raise ImportFileError(f"{path}: not a known DINOv2 checkpoint: {_looks_like(shapes)} / 无法识别的文件", _HINT)
    spec, layout = found
    source = get("official" if layout == "official" else "huggingface")
    pinned = source.pin(spec, pins)
    if layout == "official" and path.suffix == ".safetensors":
        raise ImportFileError(f"{path}: {spec.name} in the official layout as safetensors (a dinovault export?)",
                              "import the original .pth instead / 请导入原始 .pth 文件")
    if pinned is not None or not allow_unverified:
        why = ("there is no pin to verify it" if pinned is None else pinned.problem(sha)
               if isinstance(pinned, PrefixPin) else f"sha256 {sha} is not the pinned {pinned.sha256}")
        raise ImportFileError(
            f"{path}: looks like {spec.name} ({'Hugging Face' if layout == 'hf' else 'official'} layout), but {why}"
            " / 看起来是该模型，但与固定哈希（或文件名中的哈希前缀）不符",
            "a re-saved, fine-tuned or damaged file? " + ("" if pinned else "--allow-unverified accepts it; ") + _HINT,
        )
    return spec.name, f"! {path}: {spec.name}, UNVERIFIED → {source.take_file(path, spec, size, sha, None)}"


def import_paths(paths, allow_unverified: bool = False) -> list[str]:
    """Import every file named or found in the folders named; the lines to print. Stops at the first refusal."""
    return [line for _, line in import_models(paths, allow_unverified)]


def import_models(paths, allow_unverified: bool = False) -> list[tuple[str, str]]:
    return [import_file(f, allow_unverified) for f in _files(paths)]


__all__ = ["import_file", "import_models", "import_paths"]
