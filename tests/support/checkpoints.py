"""Official-format DINOv2 checkpoints with the real architectures and realistic random weights.

"Realistic" matters for parity tests: LayerNorm weights near 1, small biases, layerscale between 0.1 and 1 and a
smooth position embedding (low-frequency sinusoids plus a little noise) make bicubic resizing and attention behave
as they do with trained weights, where i.i.d. noise would hide differences.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from dinovault.catalog import ModelSpec, get_spec
from dinovault.catalog.dinov2 import PATCH_SIZE


def _pos_embed(torch, g, n_pos: int, dim: int):
    side = int(math.isqrt(n_pos - 1))
    ys, xs = torch.meshgrid(torch.arange(side, dtype=torch.float32), torch.arange(side, dtype=torch.float32),
                            indexing="ij")
    freq = torch.rand(2, dim, generator=g) * 2.5  # at most 2.5 periods across the grid: smooth
    phase = torch.rand(dim, generator=g) * 2 * math.pi
    amp = 0.2 + 0.6 * torch.rand(dim, generator=g)
    arg = (2 * math.pi / side) * (xs.reshape(-1, 1) * freq[0] + ys.reshape(-1, 1) * freq[1]) + phase
    grid = amp * torch.sin(arg) + 0.02 * torch.randn(side * side, dim, generator=g)
    cls = 0.02 * torch.randn(1, dim, generator=g)
    return torch.cat([cls, grid]).unsqueeze(0)


def _tensor(torch, g, key: str, shape: tuple[int, ...], spec: ModelSpec):
    leaf = key.rsplit(".", 1)[-1]

    def randn(std):
        return std * torch.randn(shape, generator=g)

    if key == "pos_embed":
        return _pos_embed(torch, g, shape[1], shape[2])
    if key in ("cls_token", "register_tokens"):
        return randn(0.5)
    if key == "mask_token":
        return torch.zeros(shape)  # the official checkpoints keep it at its initial value
    if ".norm" in f".{key}" and leaf == "weight":  # norm1, norm2, final norm
        return 1.0 + randn(0.1)
    if leaf == "gamma":  # layerscale
        return 0.1 + 0.9 * torch.rand(shape, generator=g)
    if leaf == "bias":
        return randn(0.02)
    if key == "patch_embed.proj.weight":
        return randn(1.0 / math.sqrt(3 * PATCH_SIZE * PATCH_SIZE))
    if leaf == "weight":  # linear layers: fan-in scaled
        return randn(1.0 / math.sqrt(shape[1]))
    raise KeyError(f"no init rule for {key}")


def make_state_dict(spec: ModelSpec, seed: int = 0, depth: int | None = None, device=None) -> dict:
    """Every key of ``spec``'s official checkpoint (flat, block_chunks=0, file order) with seeded random weights.

    ``depth`` builds fewer blocks (fast reduced-depth L/g for parity tests); ``device="meta"`` gives shapes only.
    """
    import torch

    if depth is not None:
        spec = dataclasses.replace(spec, depth=depth)
    shapes = spec.state_dict_shapes()
    if str(device) == "meta":
        return {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    g = torch.Generator().manual_seed(seed)
    out = {k: _tensor(torch, g, k, s, spec).float().contiguous() for k, s in shapes.items()}
    if device is not None:
        out = {k: v.to(device) for k, v in out.items()}
    return out


def save_checkpoint(spec: ModelSpec, path: Path, seed: int = 0, depth: int | None = None) -> Path:
    """Write a checkpoint the way the official files are written (``torch.save`` of the flat state_dict)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(make_state_dict(spec, seed=seed, depth=depth), path)
    return path


def save_object(obj, path: Path) -> Path:
    """``torch.save`` anything (not-a-state-dict tests)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return path


class Payload:
    """Unpickling this runs code: it creates ``marker``. A safe loader must refuse it without running it."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def save_malicious(spec: ModelSpec, path: Path, marker: Path) -> Path:
    """A genuine-looking checkpoint of ``spec`` with one extra entry whose unpickling would create ``marker``."""
    sd = make_state_dict(spec, seed=3)
    sd["__payload__"] = Payload(marker)
    return save_object(sd, path)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    """A models folder holding ``dinov2_vits14.pth`` (seeded random weights), fresh for each test module."""
    folder = tmp_path_factory.mktemp("models")
    save_checkpoint(get_spec("dinov2_vits14"), folder / "dinov2_vits14.pth", seed=11)
    return folder


def write_registry(path: Path, files) -> Path:
    """A pin registry (``<file> <size> sha256:<hex>``) for ``files``."""
    from .httpserver import write_registry as _write

    return _write(Path(path), files)


__all__ = ["make_state_dict", "save_checkpoint", "save_malicious", "save_object", "write_registry"]
