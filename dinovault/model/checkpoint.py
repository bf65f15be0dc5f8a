"""Reading a DINOv2 checkpoint safely and checking it against the catalog before any module sees it.

``torch.load(weights_only=True)`` never runs code from the file; ``mmap=True`` maps the tensors instead of
reading them into fresh memory, and ``load_backbone`` assigns those tensors to a model built on the meta
device, so loading costs about what reading the file costs and nothing is initialised at random.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from ..catalog import CATALOG, ModelSpec, family_of
from ..errors import CheckpointError

_REFETCH = "fetch it again: invoke fetch --model {name} (or dvc pull {folder}/{name}.pth)"
_REFETCH_ZH = "请重新获取：invoke fetch --model {name}（或 dvc pull {folder}/{name}.pth）"


def _refetch(name: str, why: str = "", why_zh: str = "") -> str:
    """The hint to get a good file again, after an optional reason, in English then Chinese."""
    folder = family_of(name).default_save_dir if name in CATALOG else "models/dinov2"
    return f"{why}{_REFETCH.format(name=name, folder=folder)} / {why_zh}{_REFETCH_ZH.format(name=name, folder=folder)}"
_CHUNKED = re.compile(r"^blocks\.\d+\.\d+\.")


def _read(path: Path, spec: ModelSpec):
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err):  # by its text: torch raises a bare RuntimeError, no type or field of its own
                raise
            # files written by torch.save(..., _use_new_zipfile_serialization=False) cannot be mapped
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # the line naming the refused global, for the message: torch's weights_only error has no field that holds it
        lines = [ln.strip() for ln in str(err).splitlines()]
        why = next((ln for ln in lines if "GLOBAL" in ln or "Unsupported" in ln), lines[0])
        raise CheckpointError(
            f"{path}: refused: the file holds code, not only tensors ({why[:160]}) / "
            "已拒绝：文件中含有代码，不只是张量",
            _refetch(spec.name, "do not load it with weights_only=False; ", "不要用 weights_only=False 加载；"),
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as err:
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint: {str(err).splitlines()[0][:200]} / "
            "不是可读取的 PyTorch 权重文件",
            _refetch(spec.name, "it may be truncated or corrupted; ", "文件可能不完整或已损坏；"),
        ) from None


def _shapes(state_dict: Mapping) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state_dict.items()}


def _resembles(shapes: dict[str, tuple[int, ...]], spec: ModelSpec) -> str:
    """A phrase naming the catalog model (other than ``spec``) a state_dict looks like, or ''."""
    for other in CATALOG.values():
        if other.state_dict_shapes() == shapes:
            return f"looks like {other.name} (embed dim {other.embed_dim}, depth {other.depth})"
    dim = shapes.get("cls_token", (None,))[-1]
    depth = len({k.split(".")[1] for k in shapes if k.startswith("blocks.")})
    regs = shapes.get("register_tokens", (0, 0))[1]
    close = [s.name for s in CATALOG.values() if s.embed_dim == dim and s.num_register_tokens == regs]
    if close and close[0] != spec.name:
        return f"closest is {close[0]} (embed dim {dim}) but it has {depth} blocks and other differences"
    if dim and not close:
        return f"has embed dim {dim}, {depth} blocks: no catalog model"
    return ""


def check_state_dict(state_dict: Mapping, spec: ModelSpec, source: str = "the state_dict") -> None:
    """Raise CheckpointError unless ``state_dict`` has exactly the keys and shapes of ``spec``."""
    if not isinstance(state_dict, Mapping) or not state_dict:
        raise CheckpointError(
            f"{source} is not a state_dict (a dict of tensors) but {type(state_dict).__name__} / "
            "不是 state_dict（张量字典）",
            _refetch(spec.name),
        )
    bad = [k for k, v in state_dict.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        keys = ", ".join(map(repr, list(state_dict)[:5]))
        raise CheckpointError(
            f"{source} is not a state_dict of tensors: {bad[0]!r} holds {type(state_dict[bad[0]]).__name__} "
            f"(keys: {keys}…) / 不是由张量组成的 state_dict",
            "a training checkpoint? pass its backbone's state_dict (e.g. ckpt['teacher'] without the "
            "'backbone.' prefix) / 训练检查点？请传入其 backbone 的 state_dict"
            "（如去掉 'backbone.' 前缀的 ckpt['teacher']）",
        )
    shapes, expected = _shapes(state_dict), spec.state_dict_shapes()
    if shapes == expected:
        return
    if any(_CHUNKED.match(k) for k in shapes):
        raise CheckpointError(
            f"{source} has chunked block keys (blocks.0.0.*): it was saved from a model built with "
            "block_chunks>0, while the official layout is flat (blocks.0.*) / 含分块的键，官方格式为扁平的 blocks.0.*",
            "re-save it from a model built with block_chunks=0, or rename blocks.<chunk>.<i>.* to blocks.<i>.* / "
            "请用 block_chunks=0 的模型重新保存，或把 blocks.<chunk>.<i>.* 改名为 blocks.<i>.*",
        )
    missing = [k for k in expected if k not in shapes]
    unexpected = [k for k in shapes if k not in expected]
    wrong = [f"{k} {shapes[k]} (expected {expected[k]})" for k in expected if k in shapes and shapes[k] != expected[k]]
    parts = []
    for label, items in (("shape mismatch", wrong), ("missing", missing), ("unexpected", unexpected)):
        if items:
            more = f" and {len(items) - 3} more" if len(items) > 3 else ""
            parts.append(f"{label}: {', '.join(items[:3])}{more}")
    resembles = _resembles(shapes, spec)
    lead = f"{source} {resembles}, not {spec.name}" if resembles else f"{source} does not match {spec.name}"
    raise CheckpointError(
        f"{lead} (embed dim {spec.embed_dim}, depth {spec.depth}); " + "; ".join(parts)
        + f" / 与 {spec.name} 的键或形状不符",
        _refetch(spec.name, "pass the model name that matches the file, or ", "请使用与文件相符的模型名，或"),
    )


def load_state_dict(path: str | Path, spec: ModelSpec) -> dict[str, torch.Tensor]:
    """The checked, memory-mapped state_dict of the checkpoint at ``path``, in float32."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path} / 找不到权重文件", _refetch(spec.name))
    state_dict = _read(path, spec)
    check_state_dict(state_dict, spec, source=str(path))
    return {k: v if v.dtype == torch.float32 else v.float() for k, v in state_dict.items()}


def check_file_structure(path: Path, spec: ModelSpec) -> None:
    """Keys and shapes of the checkpoint at ``path``, read memory-mapped: no tensor is copied into memory."""
    if not Path(path).is_file():
        raise CheckpointError(f"no checkpoint file at {path} / 找不到权重文件", _refetch(spec.name))
    check_state_dict(_read(Path(path), spec), spec, source=str(path))


def load_backbone(source, spec: ModelSpec, device: str | torch.device | None = None):
    """The eval-mode backbone of ``spec`` holding the weights of ``source`` (a path or a state_dict).

    Built on the meta device and filled with ``assign=True``: the checkpoint's (mmap'd) tensors become the
    parameters, nothing is allocated twice or initialised at random.
    """
    from .families import build

    if isinstance(source, Mapping):
        check_state_dict(source, spec)
        state_dict = dict(source)
    else:
        state_dict = load_state_dict(source, spec)
    model = build(spec, device="meta")
    model.load_state_dict(state_dict, strict=True, assign=True)
    if device is not None and torch.device(device).type != "cpu":
        model = model.to(device)
    return model.eval()
