"""The conversion step of hub sources: a verified transformers-layout ``model.safetensors`` into the official
state_dict, by the converter of the model's family, saved as a ``.pth`` (a new file renamed into place).

A converter is a module with ``hf_shapes(spec)`` (the tensors and shapes the hub file must hold) and
``hf_to_official(tensors, spec)`` (the official state_dict, official key order). One per family, looked up by
``spec.family`` in model/families.py. Both hub sources (huggingface.py, modelscope.py) convert here.
"""

from __future__ import annotations

from pathlib import Path

from filelock import FileLock

from ..cache import file_sha256, write_stamp
from ..catalog import ModelSpec
from ..errors import CheckpointError
from ..files import replace, temp_beside


def converter(spec: ModelSpec):
    """The converter module of ``spec``'s family; CheckpointError when there is none."""
    from ..model.families import conversion

    found = conversion(spec)
    if found is None:
        raise CheckpointError(
            f"no conversion from the Hugging Face layout for {spec.family} models / 无此系列的格式转换",
            "fetch the official file instead (e.g. with a signed link) / 请改用官方文件")
    return found


def convert_to_pth(src: Path, spec: ModelSpec, dest: Path) -> tuple[int, str, str]:
    """Write ``spec``'s official state_dict converted from ``src`` to ``dest``; (size, SHA-256, tensor digest)."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from ..model.hf_dinov2 import tensor_digest

    conv = converter(spec)
    try:
        tensors = load_file(str(src))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{src} is not a readable safetensors file: {err}", "download it again") from None
    if {k: tuple(v.shape) for k, v in tensors.items()} != conv.hf_shapes(spec):
        raise CheckpointError(f"{src} does not hold the tensors of {spec.name} / 文件内容与 {spec.name} 不符",
                              "check the file or the model name / 请检查文件或模型名")
    state_dict = {k: v.float() for k, v in conv.hf_to_official(tensors, spec).items()}
    digest = tensor_digest(state_dict, spec)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest) + ".lock"):
        tmp = temp_beside(dest)
        try:
            with open(tmp, "wb") as fh:  # a file object: the archive name inside does not depend on the path
                torch.save(state_dict, fh)
            sha = file_sha256(tmp)
            replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        write_stamp(dest, sha)
    return dest.stat().st_size, sha, digest


__all__ = ["convert_to_pth", "converter"]
