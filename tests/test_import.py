"""Importing hand-downloaded files (dinovault.sources.imported, the script's --from): an official .pth under another
name, a Hugging Face model.safetensors, a folder, an unknown file and a file that looks right but differs from its pin.
Every fetch after an import runs with both sources unreachable: the imported bytes are used, nothing downloaded."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dinovault.catalog import get_spec
from dinovault.errors import ImportFileError
from dinovault.model.hf_dinov2 import tensor_digest
from dinovault.pipeline import fetch_model
from dinovault.sources.imported import import_models
from tests.support.checkpoints import save_checkpoint
from tests.support.httpserver import registry_line
from tests.support.hubserver import save_hf_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "download_dinov2.py"
S14 = get_spec("dinov2_vits14")
COMMIT = "89abcdef0123456789abcdef0123456789abcdef"


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture(scope="module")
def files(tmp_path_factory, dinov2_server):
    """The official file (as a user would have downloaded it), a Hugging Face file of other weights, and a registry
    pinning both."""
    import hashlib

    base = tmp_path_factory.mktemp("import")
    hf = base / "hf" / "model.safetensors"
    weights = save_hf_checkpoint(S14, hf, seed=4)
    registry = base / "registry.txt"
    sha = hashlib.sha256(hf.read_bytes()).hexdigest()
    registry.write_text(f"{registry_line(dinov2_server.files[S14.upstream_file])}\n"
                        f"hf:facebook/dinov2-small@{COMMIT}/model.safetensors {hf.stat().st_size} sha256:{sha}\n")
    return {"official": dinov2_server.files[S14.upstream_file], "hf": hf, "hf_weights": weights, "registry": registry}


@pytest.fixture
def offline(files, torch_home_dir, monkeypatch):
    monkeypatch.setenv("DINOVAULT_REGISTRY", str(files["registry"]))
    monkeypatch.setenv("DINOV2_BASE_URL", dead_url())
    return torch_home_dir


def test_official_pth_under_any_name_is_linked_into_the_cache(files, offline, tmp_path):
    mine = tmp_path / "Downloads" / "vits14 (1).pth"
    mine.parent.mkdir()
    shutil.copyfile(files["official"], mine)
    before = mine.read_bytes()
    [(model, line)] = import_models([mine.parent])  # a folder works too
    assert model == "dinov2_vits14" and "pinned sha256 matches" in line
    cached = offline / "hub" / "checkpoints" / S14.upstream_file
    assert cached.stat().st_ino == mine.stat().st_ino and mine.read_bytes() == before  # linked, not rewritten
    res = fetch_model("dinov2_vits14", tmp_path / "m", smoke_test=False, progress=False)
    assert not res.downloaded and res.export_path.read_bytes() == before
    assert json.loads(res.card_path.read_text())["source"] == "official"


def test_hugging_face_file_is_converted_and_then_fetched_offline(files, offline, tmp_path, monkeypatch):
    monkeypatch.setenv("DINOVAULT_SOURCES", "huggingface")
    [(model, line)] = import_models([files["hf"]])
    assert model == "dinov2_vits14" and "converted" in line
    res = fetch_model("dinov2_vits14", tmp_path / "m", progress=False)
    assert not res.downloaded and res.source["hf_revision"] == COMMIT
    loaded = torch.load(res.export_path, map_location="cpu", weights_only=True)
    assert list(loaded) == list(files["hf_weights"])
    assert all(torch.equal(loaded[k], v) for k, v in files["hf_weights"].items())
    assert res.tensor_digest == tensor_digest(files["hf_weights"], S14)


def test_unknown_file_is_refused_with_what_it_looks_like(files, offline, tmp_path):
    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(1000, 512)}, other)
    with pytest.raises(ImportFileError, match=r"not a known DINOv2 checkpoint: 2 tensors \(conv1.weight"):
        import_models([other])
    junk = tmp_path / "model.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(ImportFileError, match="not a readable safetensors"):
        import_models([junk])
    assert not (offline / "hub").exists()


def test_a_look_alike_with_other_bytes_is_refused(files, offline, tmp_path):
    fake = save_checkpoint(S14, tmp_path / "dinov2_vits14_pretrain.pth", seed=9)
    with pytest.raises(ImportFileError, match="looks like dinov2_vits14 \\(official layout\\), but sha256") as exc:
        import_models([fake])
    assert "fine-tuned" in exc.value.hint
    assert not (offline / "hub" / "checkpoints" / S14.upstream_file).exists()


def test_script_from_then_fetch_with_every_source_down(files, tmp_path):
    env = dict(os.environ, TORCH_HOME=str(tmp_path / "th"), HF_HOME=str(tmp_path / "hf"),
               DINOVAULT_REGISTRY=str(files["registry"]), DINOV2_BASE_URL=dead_url(), HF_ENDPOINT=dead_url())
    r = subprocess.run([sys.executable, str(SCRIPT), "--model", "dinov2_vits14", "--from", str(files["hf"]),
                        "--save_dir", str(tmp_path / "m"), "--skip-test"], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "converted" in r.stdout and (tmp_path / "m" / "dinov2_vits14.pth").is_file()
    r = subprocess.run([sys.executable, str(SCRIPT), "--model", "dinov2_vits14", "--from", str(tmp_path / "nope.pth")],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "no such file" in r.stderr and "Traceback" not in r.stderr
