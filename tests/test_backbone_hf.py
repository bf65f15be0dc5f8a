"""The backbone against transformers, bit for bit: ``Dinov2WithRegistersModel`` for the register models (it computes
exactly what the official code computes, at every size) and ``Dinov2Model`` for the plain ones at 518×518 (at other
sizes it resizes position embeddings by size, without the official 0.1 offset: checked here to differ).

The reference is loaded from an on-disk Hugging Face folder written from our official-format random weights with
the key conversion of tests/support/official.py; the models have 2 blocks (ViT-S/14-reg also its real 12 once).
"""

from __future__ import annotations

import pytest
import torch

from dinovault.catalog import get_spec
from dinovault.model.checkpoint import load_backbone
from dinovault.model.hf_dinov2 import official_to_hf
from tests.support.checkpoints import make_state_dict
from tests.support.official import hf_model, reduced

try:  # required, not optional: the register models' parity must not vanish silently from CI
    from transformers.utils import logging as hf_logging
except ImportError as err:
    raise ImportError("the register-model parity tests need transformers: pip install -e '.[dev]'") from err

hf_logging.disable_progress_bar()

CLS_TOL = 1e-6  # relative, for forward(x)'s CLS-only last block (see test_backbone.py)
REGISTER_MODELS = [f"dinov2_{arch}_reg" for arch in ("vits14", "vitb14", "vitl14", "vitg14")]
SHORT = 2  # blocks: every block does the same arithmetic, so depth adds time, not coverage
_cache: dict[tuple, tuple] = {}


def pair(name: str, depth: int | None, tmp_path_factory):
    """(ours, transformers' model, spec) with the same weights, cached per model and depth."""
    if (name, depth) not in _cache:
        spec = reduced(get_spec(name), depth)
        state_dict = make_state_dict(spec, seed=21)
        ours = load_backbone({k: v.clone() for k, v in state_dict.items()}, spec)
        folder = tmp_path_factory.mktemp(name)
        _cache[name, depth] = (ours, hf_model(spec, state_dict, folder), spec)
    return _cache[name, depth]


def run_both(ours, hf, x):
    with torch.inference_mode():
        return ours.forward_features(x), hf(pixel_values=x, output_hidden_states=True)


def assert_equal(got, want, what: str) -> None:
    assert got.shape == want.shape, (what, got.shape, want.shape)
    assert torch.equal(got, want), f"{what}: not bit-identical, max |diff| {(got - want).abs().max().item():.3g}"


@pytest.mark.parametrize("hw", [(224, 224), (518, 518), (280, 420)], ids=lambda hw: f"{hw[0]}x{hw[1]}")
@pytest.mark.parametrize("name", REGISTER_MODELS)
def test_register_models_bit_identical_to_transformers(name, hw, tmp_path_factory):
    full = name == "dinov2_vits14_reg" and hw == (224, 224)  # one model at its real depth
    ours, hf, spec = pair(name, None if full else SHORT, tmp_path_factory)
    x = torch.randn(2 if hw == (224, 224) else 1, 3, *hw, generator=torch.Generator().manual_seed(22))
    got, out = run_both(ours, hf, x)
    r = spec.num_register_tokens
    normed = out.last_hidden_state
    assert_equal(got["x_prenorm"], out.hidden_states[-1], "x_prenorm")
    assert_equal(got["x_norm_clstoken"], normed[:, 0], "x_norm_clstoken")
    assert_equal(got["x_norm_regtokens"], normed[:, 1 : r + 1], "x_norm_regtokens")
    assert_equal(got["x_norm_patchtokens"], normed[:, r + 1 :], "x_norm_patchtokens")
    assert got["x_norm_regtokens"].shape == (x.shape[0], 4, spec.embed_dim)
    assert got["x_norm_patchtokens"].abs().mean() > 0.1  # not a vacuous comparison
    with torch.inference_mode():
        cls_only = ours(x)
    assert (cls_only - normed[:, 0]).abs().max().item() <= CLS_TOL * normed[:, 0].abs().max().item()
    with torch.inference_mode():
        layers = ours.get_intermediate_layers(x, n=[0, spec.depth - 1], return_class_token=True, norm=False)
        normed_layers = ours.get_intermediate_layers(x, n=1, reshape=True)
        want_first = out.hidden_states[1]  # hidden_states[0] is the embedding output, [i + 1] block i's output
        hf_norm = hf.layernorm(out.hidden_states[-1])
    assert_equal(layers[0][0], want_first[:, r + 1 :], "block 0 patch tokens")
    assert_equal(layers[0][1], want_first[:, 0], "block 0 class token")
    assert_equal(layers[1][0], out.hidden_states[-1][:, r + 1 :], "last block patch tokens")
    h0, w0 = hw[0] // 14, hw[1] // 14
    want_grid = hf_norm[:, r + 1 :].reshape(x.shape[0], h0, w0, -1).permute(0, 3, 1, 2)
    assert_equal(normed_layers[0], want_grid, "reshaped normed last layer")


@pytest.mark.parametrize("name", ["dinov2_vits14", "dinov2_vitg14"])
def test_plain_models_bit_identical_to_transformers_at_518(name, tmp_path_factory):
    ours, hf, spec = pair(name, SHORT, tmp_path_factory)
    x = torch.randn(1, 3, 518, 518, generator=torch.Generator().manual_seed(23))
    got, out = run_both(ours, hf, x)
    assert_equal(got["x_prenorm"], out.hidden_states[-1], "x_prenorm")
    assert_equal(got["x_norm_patchtokens"], out.last_hidden_state[:, 1:], "x_norm_patchtokens")
    # at 224 transformers' plain model resizes position embeddings without the official offset: not the same
    small = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(24))
    got, out = run_both(ours, hf, small)
    assert (got["x_norm_patchtokens"] - out.last_hidden_state[:, 1:]).abs().max().item() > 1e-3


def test_key_conversion_is_complete_and_exact():
    spec = get_spec("dinov2_vitg14_reg")
    state_dict = make_state_dict(spec, seed=25, depth=1)
    converted = official_to_hf(state_dict, reduced(spec, 1))
    assert sum(v.numel() for v in converted.values()) == sum(v.numel() for v in state_dict.values())
    assert len(converted) == len(state_dict) + 4  # qkv weight and bias each split in three
    qkv = state_dict["blocks.0.attn.qkv.weight"]
    parts = [converted[f"encoder.layer.0.attention.attention.{n}.weight"] for n in ("query", "key", "value")]
    assert torch.equal(torch.cat(parts), qkv)
    assert torch.equal(converted["encoder.layer.0.mlp.weights_in.weight"], state_dict["blocks.0.mlp.w12.weight"])
    assert torch.equal(converted["embeddings.register_tokens"], state_dict["register_tokens"])
