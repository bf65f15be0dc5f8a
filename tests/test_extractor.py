"""DINOv2FeatureExtractor end to end: a models folder with a real-size dinov2_vits14 checkpoint, real images made
with PIL, and the official package's model and evaluation transform as the reference."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from dinovault import DINOv2FeatureExtractor
from dinovault.errors import CheckpointError, DinovaultError

logging.getLogger("dinov2").setLevel(logging.ERROR)
NAME = "dinov2_vits14"


@pytest.fixture(scope="module")
def extractor(models_dir):
    return DINOv2FeatureExtractor(NAME, weights=models_dir, device="cpu")


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    """Real encoded images of several sizes and modes (JPEG, PNG with alpha, grayscale, palette)."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:1:300j, 0:1:420j]
    smooth = np.stack([np.sin(6 * xx), np.cos(5 * yy), np.sin(4 * (xx + yy))], -1) * 100 + 128
    rgb = (smooth + rng.normal(0, 12, smooth.shape)).clip(0, 255).astype(np.uint8)
    Image.fromarray(rgb).save(folder / "wide.jpg", quality=90)
    Image.fromarray(rgb.transpose(1, 0, 2).copy()).resize((250, 500)).save(folder / "tall.png")
    Image.fromarray(rgb[:200, :200]).convert("RGBA").save(folder / "alpha.png")
    Image.fromarray(rgb[:, :, 0]).save(folder / "gray.png")
    Image.fromarray(rgb).convert("P").save(folder / "palette.gif")
    return sorted(folder.iterdir())


def official_transform():
    from dinov2.data.transforms import make_classification_eval_transform

    return make_classification_eval_transform()


def test_transform_is_the_official_evaluation_preprocessing(extractor, image_files):
    by_hand = transforms.Compose(
        [
            transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    official = official_transform()
    for path in image_files:
        image = Image.open(path).convert("RGB")
        ours = extractor.transform(image)
        assert ours.shape == (3, 224, 224)
        assert torch.equal(ours, by_hand(image))
        assert torch.equal(ours, official(image))
    batch = extractor.preprocess([str(p) for p in image_files])
    assert torch.equal(batch, torch.stack([official(Image.open(p).convert("RGB")) for p in image_files]))


def test_extract_matches_the_official_model_on_real_images(extractor, models_dir, image_files):
    from dinov2.models.vision_transformer import vit_small

    ref = vit_small(patch_size=14, img_size=518, init_values=1.0, block_chunks=0)
    ref.load_state_dict(torch.load(models_dir / f"{NAME}.pth", weights_only=True))
    ref.eval()
    with torch.inference_mode():
        want = ref(torch.stack([official_transform()(Image.open(p).convert("RGB")) for p in image_files]))
    got = extractor.extract(image_files, batch_size=2)
    assert got.shape == (len(image_files), 384) and got.dtype == torch.float32 and got.device.type == "cpu"
    assert (got - want).abs().max().item() <= 1e-5
    assert extractor.embed_dim == 384 and not extractor.model.training


def test_every_input_kind_gives_the_same_features(extractor, image_files):
    images = [Image.open(p).convert("RGB") for p in image_files[:3]]
    from_pil = extractor.extract(images)
    assert torch.equal(extractor.extract([str(p) for p in image_files[:3]]), from_pil)
    gray = Image.open(next(p for p in image_files if p.name == "gray.png"))
    assert gray.mode == "L" and torch.equal(extractor.extract(gray), extractor.extract(gray.convert("RGB")))
    assert torch.allclose(extractor.extract(images[0]), from_pil[:1], atol=1e-6)
    ready = torch.stack([extractor.transform(im) for im in images])
    assert torch.allclose(extractor.extract(ready), from_pil, atol=1e-5)
    pixels = torch.from_numpy(np.array(images[0].resize((256, 256)))).permute(2, 0, 1)[None].repeat(2, 1, 1, 1)
    from_uint8 = extractor.extract(pixels)  # raw pixels get Resize/CenterCrop/Normalize as tensors
    assert from_uint8.shape == (2, 384) and torch.equal(from_uint8[0], from_uint8[1])
    assert torch.allclose(from_uint8[0], extractor.extract(images[0].resize((256, 256)))[0], atol=0.05)


def test_normalize_and_patch_tokens(extractor, image_files):
    cls, patches = extractor.extract(image_files[:2], normalize=True, patch_tokens=True)
    assert cls.shape == (2, 384) and patches.shape == (2, 256, 384)
    assert torch.allclose(cls.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert torch.allclose(patches.norm(dim=-1), torch.ones(2, 256), atol=1e-5)
    raw = extractor.extract(image_files[:2])
    assert torch.allclose(cls, raw / raw.norm(dim=-1, keepdim=True), atol=1e-6)
    assert extractor.extract([]).shape == (0, 384)


def test_weights_from_environment_folder_or_file(models_dir, monkeypatch, tmp_path, image_files):
    monkeypatch.setenv("DINOVAULT_MODELS_DIR", str(models_dir))
    from_env = DINOv2FeatureExtractor(NAME, device="cpu")
    assert from_env.weights == models_dir / f"{NAME}.pth"
    from_file = DINOv2FeatureExtractor(NAME, weights=models_dir / f"{NAME}.pth", device="cpu")
    assert torch.equal(from_env.extract(image_files[:1]), from_file.extract(image_files[:1]))
    monkeypatch.setenv("DINOVAULT_MODELS_DIR", str(tmp_path))
    with pytest.raises(DinovaultError, match=r"no weights for dinov2_vitb14.*\n.*invoke fetch --model dinov2_vitb14"):
        DINOv2FeatureExtractor()
    with pytest.raises(DinovaultError, match=r"dvc pull models/dinov2/dinov2_vits14_reg\.pth"):
        DINOv2FeatureExtractor("dinov2_vits14_reg", weights=models_dir)


def test_default_folder_is_the_repository_models_dir(monkeypatch, tmp_path):
    """The save_dir of the repository around the current directory (here this clone, as its params.yaml says), not
    a folder beside the installed package (issue 16: a wheel looked in <site-packages>/models/dinov2)."""
    from dinovault.inference import extractor as module

    root = module.Path(module.__file__).resolve().parents[2]
    monkeypatch.delenv("DINOVAULT_MODELS_DIR", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.chdir(root / "tests")
    assert module.REPO_MODELS_DIR == root / "models" / "dinov2"
    with pytest.raises(DinovaultError, match=str(module.REPO_MODELS_DIR / "dinov2_vitg14_reg.pth")):
        module.resolve_weights("dinov2_vitg14_reg")


def test_wrong_file_for_the_model_name(models_dir):
    with pytest.raises(CheckpointError, match=r"looks like dinov2_vits14 .*not dinov2_vitb14"):
        DINOv2FeatureExtractor("dinov2_vitb14", weights=models_dir / f"{NAME}.pth", device="cpu")


def test_bfloat16_autocast_and_bad_dtype(models_dir, extractor, image_files):
    bf16 = DINOv2FeatureExtractor(NAME, weights=models_dir, device="cpu", dtype="bfloat16")
    got, want = bf16.extract(image_files[:2]), extractor.extract(image_files[:2])
    assert got.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(got, want).min() > 0.98
    with pytest.raises(ValueError, match="dtype must be"):
        DINOv2FeatureExtractor(NAME, weights=models_dir, dtype="int8")


def test_importing_dinovault_does_not_import_torch():
    code = "import sys, dinovault, dinovault.inference.features; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
