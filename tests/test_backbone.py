"""The backbone against the official implementation (PyPI dinov2==0.0.1.dev2, April 2023) with realistic weights.

S and B run at full size; L and g at their real width, heads and FFN with 2 blocks. Register models are absent
from that package: their rule (size-based, antialiased bicubic, no offset) is checked against PIL's bicubic
resampling, an implementation independent of torch.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dinovault.backbone import DinoVisionTransformer, build_backbone
from dinovault.catalog import get_spec
from dinovault.checkpoint import load_backbone
from tests.support.checkpoints import make_state_dict

logging.getLogger("dinov2").setLevel(logging.ERROR)  # the reference package warns that xFormers is absent
try:  # the reference is required, not optional: parity must not vanish silently from CI
    import dinov2.models.vision_transformer as official
    from dinov2.layers import MemEffAttention
    from dinov2.layers import NestedTensorBlock as OfficialBlock
except ImportError as err:
    raise ImportError(
        "the parity tests need the official reference: pip install --no-deps dinov2==0.0.1.dev2 (invoke test does)"
    ) from err

TOL = 1e-5
RESOLUTIONS = [(224, 224), (518, 518), (280, 420)]
MODELS = {"dinov2_vits14": None, "dinov2_vitb14": None, "dinov2_vitl14": 2, "dinov2_vitg14": 2}  # name: depth
_cache: dict[str, tuple] = {}


def reduced(spec, depth: int):
    """``spec`` with fewer blocks: the real width, heads and FFN."""
    return dataclasses.replace(spec, depth=depth)


def official_model(spec) -> torch.nn.Module:
    common = dict(patch_size=14, img_size=518, init_values=1.0, block_chunks=0)
    if spec.name == "dinov2_vits14" and spec.depth == 12:
        return official.vit_small(**common)
    if spec.name == "dinov2_vitb14" and spec.depth == 12:
        return official.vit_base(**common)
    return official.DinoVisionTransformer(
        embed_dim=spec.embed_dim,
        depth=spec.depth,
        num_heads=spec.num_heads,
        mlp_ratio=4,
        block_fn=partial(OfficialBlock, attn_class=MemEffAttention),
        ffn_layer="swiglufused" if spec.ffn == "swiglu" else "mlp",
        **common,
    )


def pair(name: str):
    """(ours, official) loaded with the same realistic weights, cached per model."""
    if name not in _cache:
        spec = get_spec(name) if MODELS[name] is None else reduced(get_spec(name), MODELS[name])
        state_dict = make_state_dict(spec, seed=1)
        ref = official_model(spec)
        ref.load_state_dict(state_dict, strict=True)
        ours = load_backbone({k: v.clone() for k, v in state_dict.items()}, spec)
        _cache[name] = (ours, ref.eval())
    return _cache[name]


def max_diff(a, b) -> float:
    if isinstance(a, (tuple, list)):
        assert isinstance(b, (tuple, list)) and len(a) == len(b)
        return max((max_diff(x, y) for x, y in zip(a, b, strict=True)), default=0.0)
    if a is None:
        assert b is None
        return 0.0
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def image_batch(batch: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("hw", RESOLUTIONS, ids=lambda hw: f"{hw[0]}x{hw[1]}")
@pytest.mark.parametrize("name", list(MODELS))
def test_forward_and_features_match_official(name, hw):
    ours, ref = pair(name)
    x = image_batch(1 if hw == (518, 518) else 2, *hw)
    with torch.inference_mode():
        got, want = ours.forward_features(x), ref.forward_features(x)
        assert max_diff(ours(x), ref(x)) <= TOL
    assert got.keys() == {*want, "x_norm_regtokens"}
    for key in want:
        assert max_diff(got[key], want[key]) <= TOL, key
    assert got["x_norm_regtokens"].shape == (x.shape[0], 0, ours.embed_dim)
    assert got["x_norm_clstoken"].shape == (x.shape[0], ours.embed_dim)
    # guard against a vacuous comparison: the features are O(1), not near zero
    assert got["x_norm_clstoken"].abs().mean() > 0.1


INTERMEDIATE = {
    (224, 224): [dict(), dict(n=2, norm=False)],
    (518, 518): [dict(n=2, reshape=True, return_class_token=True)],
    (280, 420): [dict(n=[0, -1], reshape=True, return_class_token=True, norm=False)],
}


@pytest.mark.parametrize("hw", RESOLUTIONS, ids=lambda hw: f"{hw[0]}x{hw[1]}")
@pytest.mark.parametrize("name", list(MODELS))
def test_intermediate_layers_match_official(name, hw):
    ours, ref = pair(name)
    x = image_batch(1, *hw, seed=2)
    for kwargs in INTERMEDIATE[hw]:
        if kwargs.get("n") == [0, -1]:
            kwargs = {**kwargs, "n": [0, len(ours.blocks) - 1]}
        with torch.inference_mode():
            got, want = ours.get_intermediate_layers(x, **kwargs), ref.get_intermediate_layers(x, **kwargs)
        assert max_diff(got, want) <= TOL, kwargs
        if kwargs.get("reshape"):
            first = got[0][0] if kwargs.get("return_class_token") else got[0]
            assert first.shape == (1, ours.embed_dim, hw[0] // 14, hw[1] // 14)


def test_masked_tokens_match_official():
    ours, ref = pair("dinov2_vits14")
    x = image_batch(2, 224, 224, seed=3)
    masks = torch.rand(2, 256, generator=torch.Generator().manual_seed(4)) < 0.4
    with torch.inference_mode():
        got, want = ours.forward_features(x, masks=masks), ref.forward_features(x, masks=masks)
    for key in ("x_norm_clstoken", "x_norm_patchtokens", "x_prenorm"):
        assert max_diff(got[key], want[key]) <= TOL
    assert got["masks"] is masks
    with torch.inference_mode():  # model(x) computes only the CLS token in its last block
        assert max_diff(ours(x, masks=masks), ref(x, masks=masks)) <= TOL
        assert max_diff(ours(x, masks, is_training=True)["x_prenorm"], want["x_prenorm"]) <= TOL


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


def test_register_model_forward_against_independent_composition():
    """Registers go after CLS, after the position embedding; get_intermediate_layers drops them."""
    spec = reduced(get_spec("dinov2_vitb14_reg"), 2)
    state_dict = make_state_dict(spec, seed=6)
    model = load_backbone({k: v.clone() for k, v in state_dict.items()}, spec)
    ref = official_model(spec)  # the 2023 blocks and norm, with a hand-made token sequence
    ref.load_state_dict({k: v for k, v in state_dict.items() if k != "register_tokens"}, strict=True)
    ref.eval()
    x = image_batch(2, 280, 420, seed=7)
    h0, w0 = 20, 30
    with torch.inference_mode():
        patches = ref.patch_embed(x)
        grid = state_dict["pos_embed"][0, 1:].reshape(37, 37, -1)
        pos = pil_bicubic(grid, h0, w0).reshape(1, h0 * w0, -1)
        cls = state_dict["cls_token"] + state_dict["pos_embed"][:, :1]
        tokens = torch.cat([cls.expand(2, -1, -1), state_dict["register_tokens"].expand(2, -1, -1), patches + pos], 1)
        for blk in ref.blocks:
            tokens = blk(tokens)
        normed = ref.norm(tokens)
        got = model.forward_features(x)
        layers = model.get_intermediate_layers(x, n=1, return_class_token=True)
    assert max_diff(got["x_prenorm"], tokens) <= 1e-4
    assert max_diff(got["x_norm_clstoken"], normed[:, 0]) <= 1e-4
    assert max_diff(got["x_norm_regtokens"], normed[:, 1:5]) <= 1e-4
    assert max_diff(got["x_norm_patchtokens"], normed[:, 5:]) <= 1e-4
    assert max_diff(layers[0][0], got["x_norm_patchtokens"]) <= TOL
    assert max_diff(layers[0][1], got["x_norm_clstoken"]) <= TOL
    with torch.inference_mode():
        assert max_diff(model(x), got["x_norm_clstoken"]) <= TOL


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
    ours, _ = pair("dinov2_vits14")
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
