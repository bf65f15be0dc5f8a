"""The test checkpoints themselves: official keys and shapes for all eight backbones, realistic statistics, and
loadable (strict) by the backbone the smoke test uses."""

from __future__ import annotations

import dataclasses
import io
import sys

import pytest
import torch

from dinovault.catalog import dinov2, get_spec
from dinovault.progress import LineProgress, NullProgress, TqdmProgress, make_progress
from tests.support.checkpoints import make_state_dict

KEYS = {"dinov2_vits14": 175, "dinov2_vitb14": 175, "dinov2_vitl14": 343, "dinov2_vitg14": 567}
PARAMS = {"dinov2_vits14": 22_056_576, "dinov2_vitb14": 86_580_480, "dinov2_vitl14": 304_368_640,
          "dinov2_vitg14": 1_136_480_768}


@pytest.mark.parametrize("name", [s.name for s in dinov2.ROWS])
def test_every_backbone_has_the_official_shapes(name):
    spec = get_spec(name)
    sd = make_state_dict(spec, device="meta")
    assert {k: tuple(v.shape) for k, v in sd.items()} == spec.state_dict_shapes()
    assert list(sd) == list(spec.state_dict_shapes())  # file order
    regs = spec.num_register_tokens
    assert len(sd) == KEYS[spec.arch] + (1 if regs else 0)
    assert sum(v.numel() for v in sd.values()) == PARAMS[spec.arch] + regs * spec.embed_dim


def test_weights_look_trained_and_are_seeded():
    spec = get_spec("dinov2_vits14")
    sd = make_state_dict(spec, seed=0)
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in sd.values())
    norms = torch.cat([v for k, v in sd.items() if k.endswith(("norm1.weight", "norm2.weight", "norm.weight"))])
    assert 0.9 < norms.mean() < 1.1 and norms.std() < 0.2
    biases = torch.cat([v for k, v in sd.items() if k.endswith(".bias")])
    assert biases.abs().mean() < 0.05
    gammas = torch.cat([v for k, v in sd.items() if k.endswith(".gamma")])
    assert 0.1 <= gammas.min() and gammas.max() <= 1.0
    grid = sd["pos_embed"][0, 1:].reshape(37, 37, -1)
    neighbour = (grid[1:] - grid[:-1]).abs().mean()
    assert grid.std() > 0.2 and neighbour < grid.std() / 3  # smooth, not i.i.d. noise
    again = make_state_dict(spec, seed=0)
    assert all(torch.equal(sd[k], again[k]) for k in sd)
    assert not torch.equal(sd["pos_embed"], make_state_dict(spec, seed=1)["pos_embed"])


def test_reduced_depth_giant_loads_strictly_and_runs():
    from dinovault.model.backbone import build_backbone

    spec = get_spec("dinov2_vitg14_reg")
    sd = make_state_dict(spec, seed=0, depth=1)
    assert "blocks.0.mlp.w12.weight" in sd and "blocks.1.norm1.weight" not in sd
    model = build_backbone(dataclasses.replace(spec, depth=1), device="meta")
    model.load_state_dict(sd, strict=True, assign=True)
    with torch.inference_mode():
        out = model.eval()(torch.randn(1, 3, 28, 28))
    assert out.shape == (1, 1536) and torch.isfinite(out).all()


def test_progress_kinds(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Tty())
    assert isinstance(make_progress(None), TqdmProgress)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert isinstance(make_progress(None), LineProgress)
    assert isinstance(make_progress(False), NullProgress) and not isinstance(make_progress(False), LineProgress)
    bar = make_progress(True)
    bar.start("x", 10)
    bar.update(10)
    bar.close()
