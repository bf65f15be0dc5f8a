"""The DINOv3 catalog rows, backbones and Hugging Face conversion.

- every row's ``state_dict_shapes()`` is the built network's state_dict (keys, order, shapes; built on the meta
  device, so the 7B costs nothing), and the parameter counts are the published ones;
- the backbones against transformers' ``DINOv3ViTModel`` / ``DINOv3ConvNextModel`` (installed from PyPI) within
  1e-5, loaded from an on-disk Hugging Face folder written by ``dinovault.model.hf_dinov3`` (transformers'
  RoPE multiplies by inverse periods where the official code divides by the periods, so the two agree to float32
  rounding, not bit for bit). Bit-identity with the official code itself (not on PyPI, under the DINOv3 License,
  so not vendored) was checked outside the repository against facebookresearch/dinov3 @ 6876159: all 13 rows
  with random weights (2 blocks, S and S+ also all 12; ConvNeXt-T at full depth), CPU float32, at 224×224,
  224×320 and 320×224, forward_features (plain, masked, list), forward and get_intermediate_layers with every
  option, all ``torch.equal``; a seeded ``init_weights()`` equals the official one too;
- the conversion: the names and shapes transformers writes, official → Hugging Face → official bit-identical in
  the official key order, and what the Hugging Face layout cannot carry named exactly.

Small random configurations (real widths for S and S+, shrunk widths for the large ones), 2 blocks, CPU.
"""

from __future__ import annotations

import json

import pytest
import torch

from dinovault.catalog.dinov3 import ROWS, SAT_MEAN
from dinovault.model import convnext, dinov3_vit
from dinovault.model.hf_dinov3 import (
    RECONSTRUCTED_INEXACT,
    hf_config,
    hf_shapes,
    hf_to_official,
    official_to_hf,
    rope_periods,
    round_trip_losses,
)
from tests.support.dinov3_checkpoints import make_state_dict, small

transformers = pytest.importorskip("transformers")
transformers.utils.logging.disable_progress_bar()
transformers.utils.logging.set_verbosity_error()

BUILD = {"dinov3_vit": dinov3_vit.build, "dinov3_convnext": convnext.build}
TOL = 1e-5
# published sizes: the official README (ViTs, in millions, rounded) and timm's ConvNeXt counts, which include
# the ImageNet classifier (C·1000 + 1000) that the DINOv3 ConvNeXts do not have
README_M = {"dinov3_vits16": 21, "dinov3_vits16plus": 29, "dinov3_vitb16": 86, "dinov3_vitl16": 300,
            "dinov3_vitl16_sat": 300, "dinov3_vith16plus": 840, "dinov3_vit7b16": 6716, "dinov3_vit7b16_sat": 6716}
TIMM_CONVNEXT = {"tiny": 28_589_128, "small": 50_223_688, "base": 88_591_464, "large": 197_767_336}

VITS = {  # id: (catalog row, changes, bias_mask kind)
    "s16": ("dinov3_vits16", {"depth": 2}, "official"),
    "s16plus": ("dinov3_vits16plus", {"depth": 2}, "released"),
    "l16sat-like": ("dinov3_vitl16_sat", {"depth": 2, "embed_dim": 128, "num_heads": 2, "ffn_hidden": 512}, "official"),
    "7b-like": ("dinov3_vit7b16", {"depth": 2, "embed_dim": 128, "num_heads": 4, "ffn_hidden": 256}, "released"),
}
CONVNEXTS = {"tiny-short": ("dinov3_convnext_tiny", {"depths": (1, 1, 2, 1)})}
SIZES = [(224, 224), (224, 320)]


def _count(spec) -> int:
    """Parameters and buffers, the duplicate ConvNeXt norm (norms.3) counted once."""
    shapes = spec.state_dict_shapes()
    return sum(torch.Size(s).numel() for k, s in shapes.items() if not k.startswith("norms."))


def test_rows_are_the_official_entries_and_files():
    names = [r.name for r in ROWS]
    assert names == [
        "dinov3_vits16", "dinov3_vits16plus", "dinov3_vitb16", "dinov3_vitl16", "dinov3_vitl16plus",
        "dinov3_vith16plus", "dinov3_vit7b16", "dinov3_vitl16_sat", "dinov3_vit7b16_sat",
        "dinov3_convnext_tiny", "dinov3_convnext_small", "dinov3_convnext_base", "dinov3_convnext_large",
    ]
    for r in ROWS:
        data = r.weights.lower()
        assert r.upstream_file == f"{r.arch}_pretrain_{data}-{r.hash_prefix}.pth"
        assert r.url == f"https://dl.fbaipublicfiles.com/dinov3/{r.arch}/{r.upstream_file}"
        assert r.license == "DINOv3 License" and r.patch_size == 16 and r.family == "dinov3"
        assert r.name == r.arch + ("_sat" if data == "sat493m" else "")
        assert (r.mean == SAT_MEAN) == (data == "sat493m")
        hf = r.hub_repo("hf")
        assert hf == r.hub_repo("ms")
        if r.name == "dinov3_vitl16plus":  # not in the Hugging Face collection
            assert hf is None
        else:
            assert hf == f"facebook/dinov3-{r.arch.removeprefix('dinov3_').replace('_', '-')}-pretrain-{data}"
    assert ROWS[7].upstream_file == "dinov3_vitl16_pretrain_sat493m-eadcf0ff.pth"


@pytest.mark.parametrize("spec", ROWS, ids=lambda s: s.name)
def test_shapes_are_the_built_networks_and_counts_the_published_ones(spec):
    model = BUILD[spec.builder](spec, device="meta")
    built = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert list(built) == list(spec.state_dict_shapes())  # file order
    assert built == spec.state_dict_shapes()
    if spec.name in README_M:
        assert abs(_count(spec) / 1e6 - README_M[spec.name]) / README_M[spec.name] < 0.03, _count(spec)
    else:
        size = spec.name.rsplit("_", 1)[1]
        if size in TIMM_CONVNEXT:
            assert _count(spec) + spec.embed_dim * 1000 + 1000 == TIMM_CONVNEXT[size]
        else:  # vitl16plus: no published count; ViT-L/16 with the SwiGLU FFN of width 4096
            assert spec.ffn == "swiglu" and spec.ffn_hidden == 4096 and round(_count(spec) / 1e6) == 404


def _write_hf_folder(spec, state_dict, folder):
    from safetensors.torch import save_file

    save_file(official_to_hf(state_dict, spec), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(hf_config(spec)), encoding="utf-8")


def _load_hf(spec, folder):
    model, info = transformers.AutoModel.from_pretrained(str(folder), output_loading_info=True)
    assert not any(info.values()), info  # every tensor of the folder used, none missing
    return model.eval()


def _pair(spec, state_dict, folder):
    ours = BUILD[spec.builder](spec, device="meta")
    ours.load_state_dict({k: v.clone() for k, v in state_dict.items()}, strict=True, assign=True)
    _write_hf_folder(spec, state_dict, folder)
    return ours.eval(), _load_hf(spec, folder)


def _close(got, want, what):
    assert got.shape == want.shape, (what, got.shape, want.shape)
    scale = max(1.0, want.abs().max().item())
    diff = (got - want).abs().max().item()
    assert diff <= TOL * scale, f"{what}: max |diff| {diff:.3g} (scale {scale:.3g})"


@pytest.mark.parametrize("case", VITS)
def test_vit_matches_transformers(case, tmp_path):
    name, changes, mask = VITS[case]
    spec = small(name, **changes)
    ours, hf = _pair(spec, make_state_dict(spec, seed=31, bias_mask=mask), tmp_path)
    s = spec.num_register_tokens
    for hw in SIZES:
        x = torch.randn(2, 3, *hw, generator=torch.Generator().manual_seed(hw[1]))
        with torch.inference_mode():
            got = ours.forward_features(x)
            out = hf(pixel_values=x, output_hidden_states=True)
            layers = ours.get_intermediate_layers(x, n=[0, 1], return_class_token=True, norm=False)
            grid = ours.get_intermediate_layers(x, n=1, reshape=True)[0]
        normed = out.last_hidden_state
        assert got["x_norm_patchtokens"].shape == (2, hw[0] // 16 * hw[1] // 16, spec.embed_dim)
        assert got["x_norm_patchtokens"].abs().mean() > 0.1  # not a vacuous comparison
        _close(got["x_norm_clstoken"], normed[:, 0], f"{hw} x_norm_clstoken")
        _close(got["x_storage_tokens"], normed[:, 1 : s + 1], f"{hw} x_storage_tokens")
        _close(got["x_norm_patchtokens"], normed[:, s + 1 :], f"{hw} x_norm_patchtokens")
        _close(got["x_prenorm"], out.hidden_states[-1], f"{hw} x_prenorm")
        _close(layers[0][0], out.hidden_states[1][:, s + 1 :], f"{hw} block 0 patch tokens")
        _close(layers[0][1], out.hidden_states[1][:, 0], f"{hw} block 0 class token")
        want_grid = normed[:, s + 1 :].reshape(2, hw[0] // 16, hw[1] // 16, -1).permute(0, 3, 1, 2)
        _close(grid, want_grid, f"{hw} reshaped last layer")


@pytest.mark.parametrize("case", CONVNEXTS)
def test_convnext_matches_transformers(case, tmp_path):
    name, changes = CONVNEXTS[case]
    spec = small(name, **changes)
    ours, hf = _pair(spec, make_state_dict(spec, seed=32), tmp_path)
    for hw in SIZES:
        x = torch.randn(2, 3, *hw, generator=torch.Generator().manual_seed(hw[1]))
        with torch.inference_mode():
            got = ours.forward_features(x)
            out = hf(pixel_values=x, output_hidden_states=True)
            maps = ours.get_intermediate_layers(x, n=4, reshape=True, norm=False)
            (last, pooled), = ours.get_intermediate_layers(x, n=1, return_class_token=True)
        normed = out.last_hidden_state
        assert got["x_storage_tokens"].shape == (2, 0, spec.embed_dim)
        assert got["x_norm_patchtokens"].abs().mean() > 0.1
        _close(got["x_norm_clstoken"], normed[:, 0], f"{hw} x_norm_clstoken")
        _close(got["x_norm_patchtokens"], normed[:, 1:], f"{hw} x_norm_patchtokens")
        _close(got["x_prenorm"], out.hidden_states[-1].flatten(2).transpose(1, 2), f"{hw} x_prenorm")
        for i, (m, want) in enumerate(zip(maps, out.hidden_states[-4:], strict=True)):
            _close(m, want, f"{hw} stage {i} map")
        _close(last, normed[:, 1:], f"{hw} normed last stage tokens")
        _close(pooled, normed[:, 0], f"{hw} normed last stage pooled token")


CONVERSIONS = [(n, c, m) for n, c, m in VITS.values()] + [(n, c, "official") for n, c in CONVNEXTS.values()]


@pytest.mark.parametrize("name,changes,mask", CONVERSIONS, ids=[*VITS, *CONVNEXTS])
def test_conversion_layout_and_round_trip(name, changes, mask, tmp_path):
    from safetensors.torch import load_file

    spec = small(name, **changes)
    config = {k: v for k, v in hf_config(spec).items() if k not in ("architectures", "model_type", "torch_dtype")}
    config_cls = transformers.DINOv3ConvNextConfig if spec.dims else transformers.DINOv3ViTConfig
    model_cls = transformers.DINOv3ConvNextModel if spec.dims else transformers.DINOv3ViTModel
    model_cls(config_cls(**config)).save_pretrained(tmp_path)  # transformers' own on-disk names and shapes
    written = {k: tuple(v.shape) for k, v in load_file(str(tmp_path / "model.safetensors")).items()}
    assert written == hf_shapes(spec)

    official = make_state_dict(spec, seed=33, bias_mask=mask)
    hf = official_to_hf(official, spec)
    assert {k: tuple(v.shape) for k, v in hf.items()} == written
    back = hf_to_official(hf, spec)
    assert list(back) == list(spec.state_dict_shapes())  # the official key order
    inexact = list(RECONSTRUCTED_INEXACT) if spec.local_cls_norm else []
    assert round_trip_losses(official, spec) == inexact
    for key, tensor in official.items():
        same = back[key].dtype == tensor.dtype and torch.equal(back[key], tensor)
        assert same != (key in inexact), key
    assert round_trip_losses(back, spec) == []
    model = BUILD[spec.builder](spec, device="meta")
    model.load_state_dict(back, strict=True, assign=True)  # a strict load


def test_round_trip_losses_names_what_the_hf_layout_cannot_carry():
    spec = small("dinov3_vits16", depth=1)
    official = make_state_dict(spec, seed=34, bias_mask="released")
    assert round_trip_losses(official, spec) == []
    official["blocks.0.attn.qkv.bias"][spec.embed_dim] = 0.5  # a key bias: masked, and not in the HF files
    official["rope_embed.periods"] = official["rope_embed.periods"] * 1.0000001 + 1e-3
    assert round_trip_losses(official, spec) == ["rope_embed.periods", "blocks.0.attn.qkv.bias"]


def test_local_cls_norm_is_not_used_at_inference():
    """What hf_to_official cannot rebuild for vitl16 SAT and the 7B changes no output."""
    spec = small("dinov3_vit7b16", depth=1, embed_dim=64, num_heads=2, ffn_hidden=128)
    official = make_state_dict(spec, seed=35, bias_mask="released")
    rebuilt = hf_to_official(official_to_hf(official, spec), spec)
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(36))
    outs = []
    for sd in (official, rebuilt):
        model = dinov3_vit.build(spec, device="meta")
        model.load_state_dict(sd, strict=True, assign=True)
        with torch.inference_mode():
            outs.append(model.eval().forward_features(x))
    for key in ("x_norm_clstoken", "x_storage_tokens", "x_norm_patchtokens", "x_prenorm"):
        assert torch.equal(outs[0][key], outs[1][key]), key


def test_init_weights_gives_the_official_fixed_tensors():
    spec = small("dinov3_vits16", depth=1)
    model = dinov3_vit.build(spec)
    model.init_weights()
    sd = model.state_dict()
    d = spec.embed_dim
    assert torch.equal(sd["rope_embed.periods"], rope_periods(spec))
    assert torch.equal(sd["blocks.0.attn.qkv.bias_mask"], torch.cat([torch.ones(d), torch.zeros(d), torch.ones(d)]))
    assert torch.equal(sd["blocks.0.ls1.gamma"], torch.full((d,), 1e-5)) and not sd["mask_token"].any()
    net = convnext.build(small("dinov3_convnext_tiny", depths=(1, 1, 1, 1)))
    net.init_weights()
    assert torch.equal(net.state_dict()["stages.0.0.gamma"], torch.full((96,), 1e-6))
    assert net.norms[3] is net.norm
