"""Official ↔ Hugging Face conversion (dinovault.model.hf_dinov2) against transformers' own models, for all 8 shapes
(reduced depth for L and g): same names and shapes as transformers writes, bit-identical round trip in the
official key order, strict load into dinovault's backbone, and a tensor digest that does not depend on the file."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

import pytest
import torch

from dinovault.catalog import CATALOG, dinov2, get_spec
from dinovault.model.checkpoint import load_backbone
from dinovault.model.hf_dinov2 import hf_config, hf_shapes, hf_to_official, identify, official_to_hf, tensor_digest
from tests.support.checkpoints import make_state_dict

DINOV2 = [s.name for s in dinov2.ROWS]

transformers = pytest.importorskip("transformers")


def reduced(name: str):
    spec = get_spec(name)
    return dataclasses.replace(spec, depth=2) if spec.depth > 12 else spec


def transformers_model(spec):
    registers = spec.num_register_tokens > 0
    config_cls = transformers.Dinov2WithRegistersConfig if registers else transformers.Dinov2Config
    model_cls = transformers.Dinov2WithRegistersModel if registers else transformers.Dinov2Model
    kwargs = {k: v for k, v in hf_config(spec).items() if k not in ("architectures", "model_type", "torch_dtype")}
    return model_cls(config_cls(**kwargs)).eval()


@pytest.mark.parametrize("name", DINOV2)
def test_layout_is_what_transformers_writes_and_round_trip_is_exact(name, tmp_path):
    from safetensors.torch import load_file

    spec = reduced(name)
    transformers_model(spec).save_pretrained(tmp_path)  # transformers' own on-disk names and shapes
    written = {k: tuple(v.shape) for k, v in load_file(str(tmp_path / "model.safetensors")).items()}
    assert written == hf_shapes(spec)

    official = make_state_dict(spec, seed=5)
    hf = official_to_hf(official, spec)
    assert {k: tuple(v.shape) for k, v in hf.items()} == written
    back = hf_to_official(hf, spec)
    assert list(back) == list(spec.state_dict_shapes())  # the official key order
    for key, tensor in official.items():
        assert back[key].dtype == tensor.dtype and torch.equal(back[key], tensor), key
    model_sd = load_backbone(back, spec).state_dict()  # a strict load
    assert all(torch.equal(model_sd[k], official[k]) for k in official)
    assert tensor_digest(back, spec) == tensor_digest(official, spec)


def test_transformers_loads_converted_tensors_into_the_same_network():
    spec = get_spec("dinov2_vits14_reg")
    official = make_state_dict(spec, seed=6)
    model = transformers_model(spec)
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as tmp:
        save_file(official_to_hf(official, spec), str(Path(tmp) / "model.safetensors"), metadata={"format": "pt"})
        (Path(tmp) / "config.json").write_text(json.dumps(hf_config(spec)))
        loaded = transformers.AutoModel.from_pretrained(tmp).eval()
    ours = load_backbone(official, spec)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        theirs = loaded(pixel_values=x).last_hidden_state
        feats = ours.forward_features(x)
    assert type(loaded) is type(model)
    assert torch.allclose(theirs[:, 0], feats["x_norm_clstoken"], atol=1e-5)
    assert torch.allclose(theirs[:, 5:], feats["x_norm_patchtokens"], atol=1e-5)


def test_identify_tells_layout_and_model_apart():
    from dinovault.model.families import conversion

    def alike(shapes):  # the rows whose file would have these shapes (same network, other training data)
        return [s for s in CATALOG.values() if shapes in (s.state_dict_shapes(), conversion(s).hf_shapes(s))]

    for spec in CATALOG.values():  # every family's, in both layouts
        for layout, shapes in (("official", spec.state_dict_shapes()), ("hf", conversion(spec).hf_shapes(spec))):
            assert identify(shapes) == ((spec, layout) if alike(shapes) == [spec] else None)
    assert alike(get_spec("dinov3_vitl16").state_dict_shapes()) == [get_spec("dinov3_vitl16")]  # SAT adds a norm
    assert identify(conversion(get_spec("dinov3_vitl16")).hf_shapes(get_spec("dinov3_vitl16"))) is None
    shapes = dict(get_spec("dinov2_vits14").state_dict_shapes())
    shapes.pop("mask_token")
    assert identify(shapes) is None


def test_digest_changes_with_any_bit():
    spec = get_spec("dinov2_vits14")
    sd = make_state_dict(spec, seed=1)
    before = tensor_digest(sd, spec)
    sd["norm.bias"] = sd["norm.bias"].clone()
    sd["norm.bias"][0] = torch.nextafter(sd["norm.bias"][0], torch.tensor(1.0))
    assert tensor_digest(sd, spec) != before and before.startswith("sha256:")
