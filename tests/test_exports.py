"""Exports (exports/formats.py): the safetensors file holds the official tensors bit for bit and maps lazily; the hf
folder loads offline in transformers with outputs within 1e-5 of the official model (dinovault's backbone, itself
checked against the official code in test_backbone.py) at 518×518, and at every size for the register models.
Writing them imports no transformers; choosing fewer formats empties the other folders."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch

from dinovault.catalog import get_spec
from dinovault.exports.formats import write_exports
from dinovault.model.checkpoint import load_backbone
from tests.support.checkpoints import make_state_dict

transformers = pytest.importorskip("transformers")
SIZES = [(518, 518), (224, 224), (280, 420)]


def checkpoint(tmp_path, name, depth=None, seed=7):
    spec = get_spec(name)
    if depth:
        spec = dataclasses.replace(spec, depth=depth)
    sd = make_state_dict(spec, seed=seed)
    path = tmp_path / f"{name}.pth"
    torch.save(sd, path)
    return spec, sd, path


def load_transformers(folder):
    return transformers.AutoModel.from_pretrained(folder, local_files_only=True).eval()


def outputs_of_transformers(model, x):
    with torch.inference_mode():
        return model(pixel_values=x).last_hidden_state


def test_safetensors_export_is_bit_identical_and_mappable(tmp_path):
    from safetensors import safe_open

    spec, sd, pth = checkpoint(tmp_path, "dinov2_vitb14_reg")
    written = write_exports(pth, spec, tmp_path / "m", ["pth", "safetensors"])
    file = written["safetensors"] / "dinov2_vitb14_reg.safetensors"
    with safe_open(str(file), framework="pt") as fh:
        assert set(fh.keys()) == set(sd)
        for key, tensor in sd.items():
            assert torch.equal(fh.get_tensor(key), tensor), key
    assert list((tmp_path / "m" / "hf" / spec.name).iterdir()) == []  # hf not chosen: an empty folder
    inode = file.stat().st_ino
    write_exports(pth, spec, tmp_path / "m", ["pth", "safetensors"])
    assert file.stat().st_ino == inode  # same bytes: left in place, DVC sees no change
    write_exports(pth, spec, tmp_path / "m", ["pth"])
    assert not file.exists()


@pytest.mark.parametrize(("name", "depth", "sizes"), [
    ("dinov2_vits14", None, SIZES[:1]),
    ("dinov2_vitg14", 2, SIZES[:1]),
    ("dinov2_vits14_reg", None, SIZES),
    ("dinov2_vitg14_reg", 2, SIZES),
])
def test_hf_export_loads_in_transformers_with_official_outputs(tmp_path, name, depth, sizes):
    spec, sd, pth = checkpoint(tmp_path, name, depth)
    folder = write_exports(pth, spec, tmp_path / "m", ["pth", "hf"])["hf"]
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    ours, model = load_backbone(sd, spec), load_transformers(folder)
    r = spec.num_register_tokens
    for h, w in sizes:
        x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(h + w))
        theirs = outputs_of_transformers(model, x)
        with torch.inference_mode():
            feats = ours.forward_features(x)
        assert (theirs[:, 0] - feats["x_norm_clstoken"]).abs().max() <= 1e-5, (h, w)
        assert (theirs[:, 1 + r:] - feats["x_norm_patchtokens"]).abs().max() <= 1e-5, (h, w)


def test_plain_models_differ_in_transformers_off_518_as_the_readme_says(tmp_path):
    spec, sd, pth = checkpoint(tmp_path, "dinov2_vits14")
    folder = write_exports(pth, spec, tmp_path / "m", ["hf"])["hf"]
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    theirs = outputs_of_transformers(load_transformers(folder), x)
    with torch.inference_mode():
        ours = load_backbone(sd, spec).forward_features(x)["x_norm_patchtokens"]
    diff = (theirs[:, 1:] - ours).abs().max().item()
    assert 1e-4 < diff < 0.2  # position embeddings resized without the official 0.1 offset (README, Using the weights)


def test_writing_exports_does_not_import_transformers(tmp_path):
    spec, _, pth = checkpoint(tmp_path, "dinov2_vits14")
    code = ("import sys; from pathlib import Path; from dinovault.catalog import get_spec; "
            "from dinovault.exports.formats import write_exports; "
            f"write_exports(Path({str(pth)!r}), get_spec('dinov2_vits14'), Path({str(tmp_path / 'm')!r}), "
            "['pth', 'safetensors', 'hf']); print('transformers' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False" and (tmp_path / "m" / "hf" / spec.name / "config.json").is_file()
