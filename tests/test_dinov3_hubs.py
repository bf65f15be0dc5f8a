"""DINOv3 through the hubs (issue 18 item 3): the Hugging Face repository and its ModelScope copy hold the
transformers layout; `dinovault fetch --stage` (what a DVC stage runs) downloads the pinned file from a loopback
imitation of each, verifies it, converts it to the official state_dict — bit-identical tensors, official key order —
smoke-tests it and exports it, and a gated repository says to accept the licence and set HF_TOKEN."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from dinovault.catalog import get_spec
from dinovault.model.hf_dinov3 import official_to_hf
from tests.support.dinov3_checkpoints import make_state_dict
from tests.support.hubserver import start_hub
from tests.support.msserver import start_ms
from tests.support.warmstart import run_python, startup_settings

ROOT = Path(__file__).resolve().parents[1]
MODEL = "dinov3_vits16"
SPEC = get_spec(MODEL)
REPO = SPEC.hub_repo("hf")
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    base = tmp_path_factory.mktemp("dinov3_hub")
    official = make_state_dict(SPEC, seed=11, bias_mask="released")  # what Meta's files hold: zero key bias and mask
    save_file(official_to_hf(official, SPEC), str(base / "model.safetensors"), metadata={"format": "pt"})
    return base / "model.safetensors", official


def fetch(tmp_path: Path, registry: str, **env):
    (tmp_path / "registry.txt").write_text(registry + "\n", encoding="utf-8")
    # a bare environment, but Python and its libraries start as in this process (threads)
    run_env = {**startup_settings(os.environ), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
               "TORCH_HOME": str(tmp_path / "th"), "HF_HOME": str(tmp_path / "hf"),
               "DINOVAULT_REGISTRY": str(tmp_path / "registry.txt"), "HF_HUB_DISABLE_TELEMETRY": "1",
               "DINOVAULT_TIMEOUT": "5", **env}
    return run_python([ROOT / "scripts" / "download_dinov2.py", "--model", MODEL, "--save_dir",
                       tmp_path / "models" / "dinov3"], cwd=tmp_path, env=run_env, timeout=600)


def exact(export: Path, official: dict) -> None:
    loaded = torch.load(export, map_location="cpu", weights_only=True)
    assert list(loaded) == list(official)
    assert all(torch.equal(loaded[k], v) for k, v in official.items())


def test_from_hugging_face(files, tmp_path):
    path, official = files
    hub = start_hub()
    try:
        hub.add(REPO, path, COMMIT)
        r = fetch(tmp_path, hub.registry_line(REPO), HF_ENDPOINT=hub.endpoint, DINOVAULT_SOURCES="huggingface")
    finally:
        hub.close()
    assert r.returncode == 0, r.stderr
    assert f"Model downloaded: {MODEL} from {REPO}@{COMMIT[:12]} (converted)" in r.stdout
    assert "Smoke test passed: output (1, 384)" in r.stdout
    export = tmp_path / "models" / "dinov3" / f"{MODEL}.pth"
    exact(export, official)
    card = json.loads(export.with_suffix(".json").read_text())
    assert card["source"] == "huggingface" and card["license"] == "DINOv3 License" and card["verified"] is True


def test_from_modelscope(files, tmp_path):
    path, official = files
    ms = start_ms()
    try:
        ms.add(REPO, path, "master")
        r = fetch(tmp_path, ms.pin_line(REPO, "master"), DINOVAULT_MODELSCOPE_ENDPOINT=ms.endpoint,
                  DINOVAULT_SOURCES="modelscope")
    finally:
        ms.close()
    assert r.returncode == 0, r.stderr
    exact(tmp_path / "models" / "dinov3" / f"{MODEL}.pth", official)
    card = json.loads((tmp_path / "models" / "dinov3" / f"{MODEL}.json").read_text())
    assert card["source"] == "modelscope" and card["license"] == "DINOv3 License"


def test_a_tampered_hub_file_is_refused(files, tmp_path):
    path, _ = files
    bad = tmp_path / "bad.safetensors"
    data = bytearray(path.read_bytes())
    data[-64] ^= 1
    bad.write_bytes(bytes(data))
    hub = start_hub()
    try:
        hub.add(REPO, path, COMMIT)
        line = hub.registry_line(REPO)
        hub.add(REPO, bad, COMMIT)  # the Hub now serves other bytes under the pinned commit
        r = fetch(tmp_path, line, HF_ENDPOINT=hub.endpoint, DINOVAULT_SOURCES="huggingface")
    finally:
        hub.close()
    assert r.returncode == 1 and "does not match its pin" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "models" / "dinov3" / f"{MODEL}.pth").exists()
