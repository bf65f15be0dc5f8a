"""The backbone against the official implementation, bit for bit, with realistic random weights.

Plain models: the official code (PyPI dinov2==0.0.1.dev2 with the official attention of today, see
tests/support/official.py). S and B at full depth (2 blocks at 518 and 448 px), L and g at their real width,
heads and FFN with 2 blocks. ``forward_features`` and ``get_intermediate_layers`` must be equal (torch.equal) on
CPU float32; ``forward(x)``, which computes only the CLS token in its last block, within 1e-6 of the output's
scale. Register models are checked against transformers in test_backbone_hf.py.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dinovault.catalog import get_spec
from dinovault.model.backbone import DinoVisionTransformer, build_backbone
from dinovault.model.checkpoint import load_backbone
from tests.support.checkpoints import make_state_dict
from tests.support.official import official_model, reduced

TOL = 1e-5  # against the 2023 arithmetic (explicit softmax attention) only
# forward(x)'s CLS-only last block does the same operations on a few rows, for which BLAS and SDPA pick other
# kernels (another rounding): ≤ 1e-6 relative to the output's scale (up to 3e-6 absolute on outputs ~4 here)
CLS_TOL = 1e-6
RESOLUTIONS = [(224, 224), (518, 518), (280, 420), (448, 448)]
MODELS = {"dinov2_vits14": None, "dinov2_vitb14": None, "dinov2_vitl14": 2, "dinov2_vitg14": 2}  # name: depth
SHORT = 2  # blocks, for the large inputs: every block does the same arithmetic, so depth adds time, not coverage
_cache: dict[tuple, tuple] = {}


def depth_for(name: str, hw: tuple[int, int]) -> int | None:
    return MODELS[name] if hw in ((224, 224), (280, 420)) else SHORT


def pair(name: str, depth: int | None = None):
    """(ours, official, state_dict) with the same realistic weights, cached per model and depth."""
    key = (name, depth or MODELS[name])
    if key not in _cache:
        spec = reduced(get_spec(name), key[1])
        state_dict = make_state_dict(spec, seed=1)
        ours = load_backbone({k: v.clone() for k, v in state_dict.items()}, spec)
        _cache[key] = (ours, official_model(spec, state_dict), state_dict)
    return _cache[key]


def max_diff(a, b) -> float:
    if isinstance(a, (tuple, list)):
        assert isinstance(b, (tuple, list)) and len(a) == len(b)
        return max((max_diff(x, y) for x, y in zip(a, b, strict=True)), default=0.0)
    if a is None:
        assert b is None
        return 0.0
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def assert_equal(got, want, what="") -> None:
    """Bit-identical, with the largest difference in the failure message."""
    if isinstance(got, (tuple, list)):
        assert isinstance(want, (tuple, list)) and len(got) == len(want), what
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_equal(g, w, f"{what}[{i}]")
        return
    assert got.shape == want.shape, (what, got.shape, want.shape)
    assert torch.equal(got, want), f"{what}: not bit-identical, max |diff| {max_diff(got, want):.3g}"


def assert_cls_close(got, want) -> None:
    assert max_diff(got, want) <= CLS_TOL * want.abs().max().item(), "forward(x) drifted from forward_features"


def image_batch(batch: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("hw", RESOLUTIONS, ids=lambda hw: f"{hw[0]}x{hw[1]}")
@pytest.mark.parametrize("name", list(MODELS))
def test_forward_features_bit_identical_to_official(name, hw):
    ours, ref, _ = pair(name, depth_for(name, hw))
    x = image_batch(2 if hw == (224, 224) else 1, *hw)
    with torch.inference_mode():
        got, want = ours.forward_features(x), ref.forward_features(x)
        cls_only = ours(x)
    assert got.keys() == {*want, "x_norm_regtokens"}
    for key in ("x_norm_clstoken", "x_norm_patchtokens", "x_prenorm"):
        assert_equal(got[key], want[key], key)
    assert got["masks"] is None
    assert_cls_close(cls_only, want["x_norm_clstoken"])
    assert got["x_norm_regtokens"].shape == (x.shape[0], 0, ours.embed_dim)
    assert got["x_norm_clstoken"].shape == (x.shape[0], ours.embed_dim)
    # guard against a vacuous comparison: the features are O(1), not near zero
    assert got["x_norm_clstoken"].abs().mean() > 0.1


INTERMEDIATE = {
    (224, 224): [dict(), dict(n=2, norm=False)],
    (518, 518): [dict(n=2, reshape=True, return_class_token=True)],
    (280, 420): [dict(n=[0, -1], reshape=True, return_class_token=True, norm=False)],
}


@pytest.mark.parametrize("hw", list(INTERMEDIATE), ids=lambda hw: f"{hw[0]}x{hw[1]}")
@pytest.mark.parametrize("name", list(MODELS))
def test_intermediate_layers_bit_identical_to_official(name, hw):
    ours, ref, _ = pair(name, depth_for(name, hw))
    x = image_batch(1, *hw, seed=2)
    for kwargs in INTERMEDIATE[hw]:
        if kwargs.get("n") == [0, -1]:
            kwargs = {**kwargs, "n": [0, len(ours.blocks) - 1]}
        with torch.inference_mode():
            got, want = ours.get_intermediate_layers(x, **kwargs), ref.get_intermediate_layers(x, **kwargs)
        assert_equal(got, want, str(kwargs))
        if kwargs.get("reshape"):
            first = got[0][0] if kwargs.get("return_class_token") else got[0]
            assert first.shape == (1, ours.embed_dim, hw[0] // 14, hw[1] // 14)


def test_masked_tokens_bit_identical_to_official():
    ours, ref, _ = pair("dinov2_vits14")
    x = image_batch(2, 224, 224, seed=3)
    masks = torch.rand(2, 256, generator=torch.Generator().manual_seed(4)) < 0.4
    with torch.inference_mode():
        got, want = ours.forward_features(x, masks=masks), ref.forward_features(x, masks=masks)
        for key in ("x_norm_clstoken", "x_norm_patchtokens", "x_prenorm"):
            assert_equal(got[key], want[key], key)
        assert got["masks"] is masks
        assert_cls_close(ours(x, masks=masks), ref(x, masks=masks))  # only the CLS token in the last block
        assert_equal(ours(x, masks, is_training=True)["x_prenorm"], want["x_prenorm"], "is_training")


def test_list_input_bit_identical_to_official():
    """The official list form runs the images of each size as one batch (its nested path needs xFormers)."""
    ours, ref, _ = pair("dinov2_vits14")
    xs = [image_batch(1, 224, 224, seed=5), image_batch(2, 280, 420, seed=6)]
    with torch.inference_mode():
        got, want = ours.forward_features(xs), [ref.forward_features(x) for x in xs]
    assert len(got) == len(want) == 2
    for g, w in zip(got, want, strict=True):
        assert_equal(g["x_norm_patchtokens"], w["x_norm_patchtokens"], "list")


@pytest.mark.parametrize("name", list(MODELS))
def test_close_to_the_2023_arithmetic(name):
    """The published 2023 code computes attention as softmax(q·scale @ kᵀ) @ v: another rounding, same values."""
    ours, _, state_dict = pair(name, SHORT)
    ref = official_model(reduced(get_spec(name), SHORT), state_dict, attention="2023")
    x = image_batch(1, 280, 420, seed=9)
    with torch.inference_mode():
        got, want = ours.forward_features(x), ref.forward_features(x)
        assert max_diff(ours(x), want["x_norm_clstoken"]) <= TOL
    assert max_diff(got["x_norm_patchtokens"], want["x_norm_patchtokens"]) <= TOL
    assert got["x_norm_patchtokens"].abs().mean() > 0.1


# -- register models: offset 0, size-based, antialiased ---------------------------------------------------


def pil_bicubic(grid: torch.Tensor, h0: int, w0: int) -> torch.Tensor:
    """(M, M, D) → (h0, w0, D) resized channel by channel with PIL's bicubic filter (antialiased, a = -0.5)."""
    channels = [
        np.asarray(Image.fromarray(grid[..., c].numpy(), mode="F").resize((w0, h0), Image.BICUBIC))
        for c in range(grid.shape[-1])
    ]
    return torch.from_numpy(np.stack(channels, axis=-1).copy())


def plain_rule(grid: torch.Tensor, h0: int, w0: int) -> torch.Tensor:
    m = grid.shape[0]
    out = F.interpolate(grid.permute(2, 0, 1)[None], scale_factor=((h0 + 0.1) / m, (w0 + 0.1) / m), mode="bicubic")
    return out[0].permute(1, 2, 0)


@pytest.mark.parametrize("hw", [(224, 224), (280, 420), (812, 700)], ids=lambda hw: f"{hw[0]}x{hw[1]}")
def test_register_model_resizes_position_embeddings_by_size_with_antialias(hw):
    spec = reduced(get_spec("dinov2_vits14_reg"), 1)
    model = load_backbone(make_state_dict(spec, seed=5), spec)
    h0, w0 = hw[0] // 14, hw[1] // 14
    grid = model.pos_embed[0, 1:].detach().reshape(37, 37, -1)
    tokens = torch.zeros(1, 1 + h0 * w0, spec.embed_dim)
    with torch.inference_mode():
        got = model.interpolate_pos_encoding(tokens, *hw)[0]
    expected = pil_bicubic(grid, h0, w0).reshape(h0 * w0, -1)
    assert torch.equal(got[0], model.pos_embed[0, 0])
    assert max_diff(got[1:], expected) <= 5e-5
    # the plain models' rule gives another embedding: this test tells the two rules apart
    assert max_diff(plain_rule(grid, h0, w0).reshape(h0 * w0, -1), expected) > 0.05


# -- construction and errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dinov2_vits14", "dinov2_vits14_reg", "dinov2_vitg14", "dinov2_vitg14_reg"])
def test_meta_build_has_the_official_keys_and_allocates_nothing(name):
    spec = get_spec(name)
    model = build_backbone(spec, device="meta")
    assert isinstance(model, DinoVisionTransformer)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert list(shapes) == list(spec.state_dict_shapes())
    assert shapes == spec.state_dict_shapes()
    assert all(p.is_meta for p in model.parameters())


def test_load_backbone_uses_the_given_tensors():
    spec = reduced(get_spec("dinov2_vits14_reg"), 2)
    state_dict = make_state_dict(spec, seed=8)
    model = load_backbone(state_dict, spec)
    assert not model.training
    for key, value in model.state_dict().items():
        assert value.data_ptr() == state_dict[key].data_ptr(), key  # assigned, not copied into fresh memory


@pytest.mark.parametrize("hw", [(225, 224), (224, 230), (100, 13)])
def test_sides_not_multiple_of_14_give_a_clear_error(hw):
    ours, _, _ = pair("dinov2_vits14")
    with pytest.raises(ValueError, match=r"multiples of the patch size 14.*resize or crop to e\.g\."):
        ours(torch.zeros(1, 3, *hw))


def test_building_loading_and_forward_warn_nothing(tmp_path):
    spec = reduced(get_spec("dinov2_vits14_reg"), 2)
    path = tmp_path / "reg.pth"
    torch.save(make_state_dict(spec), path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = load_backbone(path, spec)
        with torch.inference_mode():
            model(image_batch(1, 280, 420))
            model.get_intermediate_layers(image_batch(1, 224, 224), n=2)
