"""hubconf.py: torch.hub.load(<repo>, '<model>', source='local') with the repository's weights, offline.

The offline case runs in a child process whose every internet socket is refused by an audit hook, with an empty
TORCH_HOME and a dead proxy: a call to GitHub (or anywhere) would fail it. Its outputs are compared bit for bit
with the official model (plain) and transformers (registers) holding the same weights.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from dinovault.catalog import MODEL_NAMES, get_spec
from dinovault.errors import DinovaultError, MissingWeightsError
from tests.support.checkpoints import make_state_dict, save_checkpoint
from tests.support.official import hf_model, official_model

REPO = Path(__file__).resolve().parents[1]
OFFLINE_CHILD = textwrap.dedent(
    """
    import socket, sys

    def no_network(event, args):
        if event == "socket.connect" and args[0].family in (socket.AF_INET, socket.AF_INET6):
            raise ConnectionRefusedError(f"test: network use refused: {args[1]}")
        if event == "socket.getaddrinfo":
            raise ConnectionRefusedError(f"test: name lookup refused: {args[0]}")

    sys.addaudithook(no_network)
    import torch

    repo, out = sys.argv[1], sys.argv[2]
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(31))
    results = {}
    for name in ("dinov2_vits14", "dinov2_vits14_reg"):
        model = torch.hub.load(repo, name, source="local")
        with torch.inference_mode():
            features = model.forward_features(x)
        results[name] = {"training": model.training, "prenorm": features["x_prenorm"], "cls": model(x)}
    torch.save(results, out)
    """
)


def hubconf_clone(tmp_path: Path) -> Path:
    """A folder laid out like a clone: hubconf.py at the top, the weights in models/dinov2."""
    clone = tmp_path / "clone"
    clone.mkdir()
    shutil.copy2(REPO / "hubconf.py", clone / "hubconf.py")
    return clone


def test_hubconf_has_the_official_entry_names():
    spec = importlib.util.spec_from_file_location("hubconf_under_test", REPO / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    entries = {k for k, v in vars(module).items() if callable(v) and not k.startswith("_")}
    assert entries == set(MODEL_NAMES)
    assert module.dependencies == ["torch"]
    assert "dinov2_vitg14_reg" in module.dinov2_vitg14_reg.__doc__ and "4 registers" in module.dinov2_vitg14_reg.__doc__


def test_torch_hub_load_local_is_offline_and_official(tmp_path):
    clone = hubconf_clone(tmp_path)
    weights = {}
    for name in ("dinov2_vits14", "dinov2_vits14_reg"):
        spec = get_spec(name)
        weights[name] = make_state_dict(spec, seed=32)
        save_checkpoint(spec, clone / "models" / "dinov2" / f"{name}.pth", seed=32)
    # the weights a repository holds must be what their names say (pinned): a registry of these random weights
    registry = tmp_path / "registry.txt"
    registry.write_text("".join(
        f"{get_spec(n).upstream_file} {p.stat().st_size} sha256:{hashlib.sha256(p.read_bytes()).hexdigest()}\n"
        for n in weights for p in [clone / "models" / "dinov2" / f"{n}.pth"]), encoding="utf-8")
    torch_home = tmp_path / "torch-home"
    env = {k: v for k, v in os.environ.items() if k not in ("DINOVAULT_MODELS_DIR", "GITHUB_TOKEN")}
    env.update(
        PYTHONPATH=str(REPO), TORCH_HOME=str(torch_home), CUDA_VISIBLE_DEVICES="", DINOVAULT_REGISTRY=str(registry),
        HTTPS_PROXY="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9", NO_PROXY="", no_proxy="",
    )
    out = tmp_path / "out.pt"
    proc = subprocess.run(
        [sys.executable, "-c", OFFLINE_CHILD, str(clone), str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    stamps = torch_home / "hub" / "dinovault" / "stamps"  # the verification of the repository's files, remembered
    cached = [p for p in torch_home.rglob("*") if p.is_file() and p.parent != stamps]
    assert not cached, f"torch.hub downloaded or cached something: {cached}"
    results = torch.load(out, weights_only=True)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(31))
    with torch.inference_mode():
        plain = official_model(get_spec("dinov2_vits14"), weights["dinov2_vits14"]).forward_features(x)
        reg = hf_model(get_spec("dinov2_vits14_reg"), weights["dinov2_vits14_reg"], tmp_path / "hf")
        reg_prenorm = reg(pixel_values=x, output_hidden_states=True).hidden_states[-1]
    assert torch.equal(results["dinov2_vits14"]["prenorm"], plain["x_prenorm"])
    assert torch.equal(results["dinov2_vits14_reg"]["prenorm"], reg_prenorm)
    cls = results["dinov2_vits14"]["cls"]
    assert (cls - plain["x_norm_clstoken"]).abs().max() <= 1e-6 * plain["x_norm_clstoken"].abs().max()
    assert results["dinov2_vits14"]["training"] is True  # as the official entry returns it


@pytest.mark.parametrize("name", ["dinov2_vits14", "dinov2_vits14_reg"])
def test_pretrained_false_is_the_official_untrained_network(name, tmp_path, monkeypatch):
    monkeypatch.setenv("DINOVAULT_MODELS_DIR", str(tmp_path / "no-weights-here"))
    model = torch.hub.load(str(REPO), name, source="local", pretrained=False)
    spec = get_spec(name)
    state = model.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == spec.state_dict_shapes()
    assert model.training
    assert abs(state["pos_embed"].std().item() - 0.02) < 0.002
    assert state["cls_token"].abs().max() < 1e-5 and state["cls_token"].abs().max() > 0
    assert abs(state["blocks.0.attn.qkv.weight"].std().item() - 0.02) < 0.002
    assert not state["blocks.0.mlp.fc1.bias"].any() and not state["mask_token"].any()
    assert torch.equal(state["blocks.3.ls2.gamma"], torch.ones(spec.embed_dim))
    if spec.num_register_tokens:
        assert state["register_tokens"].abs().max() < 1e-5
    with torch.inference_mode():
        assert model(torch.zeros(1, 3, 224, 224)).shape == (1, spec.embed_dim)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_missing_weights_say_how_to_fetch_them(name, tmp_path, monkeypatch):
    monkeypatch.setenv("DINOVAULT_MODELS_DIR", str(tmp_path))
    with pytest.raises(MissingWeightsError) as err:
        torch.hub.load(str(REPO), name, source="local")
    text = str(err.value)
    assert f"no weights for {name} at {tmp_path / name}.pth / 找不到 {name} 的权重" in text
    assert f"invoke fetch --model {name}" in text and "pretrained=False" in text and "请先获取" in text
    assert len(text.splitlines()) == 2


def test_weights_argument_and_unknown_options(tmp_path, monkeypatch):
    spec = get_spec("dinov2_vits14")
    path = save_checkpoint(spec, tmp_path / "elsewhere" / "mine.pth", seed=33)
    monkeypatch.setenv("DINOVAULT_MODELS_DIR", str(tmp_path / "empty"))
    model = torch.hub.load(str(REPO), "dinov2_vits14", source="local", weights=str(path))
    assert torch.equal(model.pos_embed.detach(), make_state_dict(spec, seed=33)["pos_embed"])
    monkeypatch.setenv("DINOVAULT_MODELS_DIR", str(path.parent.rename(tmp_path / "folder")))
    (tmp_path / "folder" / "mine.pth").rename(tmp_path / "folder" / "dinov2_vits14.pth")
    default = torch.hub.load(str(REPO), "dinov2_vits14", source="local", weights="LVD142M")  # the official value
    assert torch.equal(default.cls_token.detach(), model.cls_token.detach())
    with pytest.raises(DinovaultError, match=r"unsupported option\(s\) drop_path_rate / 不支持的参数"):
        torch.hub.load(str(REPO), "dinov2_vits14", source="local", drop_path_rate=0.1)
