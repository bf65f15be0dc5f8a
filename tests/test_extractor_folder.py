"""Folder → .npz (inference/features.py, `invoke extract`): sorted paths, corrupt and non-image files skipped and
reported, nothing half-written left behind."""

from __future__ import annotations

import os
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dinovault.errors import DinovaultError
from dinovault.inference.extractor import DINOv2FeatureExtractor
from dinovault.inference.features import extract_folder
from tests.support.warmstart import run_python

REPO = Path(__file__).resolve().parents[1]
NAME = "dinov2_vits14"


@pytest.fixture
def images_dir(tmp_path):
    root = tmp_path / "photos"
    (root / "b" / "deeper").mkdir(parents=True)
    rng = np.random.default_rng(1)
    for rel, size in [
        ("z.png", (300, 240)),
        ("a.jpg", (256, 256)),
        ("b/deeper/c.webp", (500, 320)),
        ("b/D.JPEG", (90, 60)),
    ]:
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(root / rel)
    (root / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.png").write_bytes(b"ignored")
    return root


def test_extract_folder_streams_sorted_images_and_reports_skips(models_dir, images_dir, tmp_path):
    extractor = DINOv2FeatureExtractor(NAME, weights=models_dir, device="cpu")
    out = tmp_path / "out" / "feats.npz"
    result = extract_folder(extractor, images_dir, out, batch_size=3, progress=False)
    expected_paths = ["a.jpg", "b/D.JPEG", "b/deeper/c.webp", "z.png"]
    assert result.count == 4
    assert [p for p, _ in result.skipped] == ["b/broken.jpg", "notes.txt"]
    assert "unreadable" in result.skipped[0][1] and "not an image" in result.skipped[1][1]
    with np.load(out) as data:
        assert list(data["paths"]) == expected_paths
        assert str(data["model"]) == NAME
        assert list(data["skipped"]) == ["b/broken.jpg", "notes.txt"]
        features = data["features"]
    assert features.shape == (4, 384) and features.dtype == np.float32
    direct = extractor.extract([images_dir / p for p in expected_paths])
    assert np.abs(features - direct.numpy()).max() <= 1e-5
    assert sorted(os.listdir(out.parent)) == ["feats.npz"]  # no scratch or partial files left


def test_extract_folder_errors(models_dir, tmp_path):
    with pytest.raises(DinovaultError, match="no image folder"):
        extract_folder(NAME, tmp_path / "absent", tmp_path / "f.npz", weights=models_dir, device="cpu")


def test_invoke_extract_skips_a_corrupt_file_and_says_so(models_dir, images_dir, tmp_path):
    out = tmp_path / "cli.npz"
    env = {**os.environ, "DINOVAULT_MODELS_DIR": str(models_dir), "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "invoke", "extract", "--model", NAME, "--images", str(images_dir), "--out", str(out)]
    proc = run_python(cmd[1:], cwd=REPO, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "4 images" in proc.stdout and "b/broken.jpg: unreadable" in proc.stdout and "notes.txt" in proc.stdout
    with np.load(out) as data:
        assert data["features"].shape == (4, 384)
    missing = run_python([*cmd[1:5], "dinov2_vitl14", *cmd[6:]], cwd=REPO, env=env, timeout=300)
    assert missing.returncode == 1 and "invoke fetch --model dinov2_vitl14" in missing.stderr


def test_memory_does_not_hold_the_folder(models_dir, tmp_path, monkeypatch):
    """Batches stream: at most batch_size decoded images are alive at once."""
    from dinovault.inference import extractor as module

    root = tmp_path / "many"
    root.mkdir()
    for i in range(7):
        Image.new("RGB", (64, 64), (i * 30, 0, 0)).save(root / f"{i:02d}.png")
    alive, peak = set(), [0]
    real_open = module.open_image

    def tracking_open(path):
        image = real_open(path)
        alive.add(id(image))
        peak[0] = max(peak[0], len(alive))
        weakref.finalize(image, alive.discard, id(image))
        return image

    monkeypatch.setattr(module, "open_image", tracking_open)
    ex = DINOv2FeatureExtractor(NAME, weights=models_dir, device="cpu")
    ex.model.blocks = ex.model.blocks[:1]  # the streaming, not the network, is under test here
    result = extract_folder(ex, root, tmp_path / "m.npz", batch_size=2, progress=False)
    assert result.count == 7 and peak[0] <= 2
    assert torch.is_tensor(ex.extract(root / "00.png"))
