"""DINOv3 features through the one extractor: the official README's preprocessing (a square resize to 256, the
row's mean and std, SAT-493M's own), the same bits whatever the batch, and the default model of
DINOv3FeatureExtractor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from dinovault.catalog import get_spec
from dinovault.inference.extractor import DINOv2FeatureExtractor, DINOv3FeatureExtractor, build_transform
from dinovault.model.families import build


def official_transform(mean, std, resize_size: int = 256):
    """The transform of facebookresearch/dinov3's README (the SAT-493M one differs only in mean and std)."""
    return v2.Compose([v2.ToImage(), v2.Resize((resize_size, resize_size), antialias=True),
                       v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=mean, std=std)])


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(3)
    return Image.fromarray((rng.random((300, 420, 3)) * 255).astype("uint8"))


@pytest.mark.parametrize(("name", "mean", "std"), [
    ("dinov3_vits16", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ("dinov3_vitl16_sat", (0.430, 0.411, 0.296), (0.213, 0.156, 0.143)),
])
def test_the_preprocessing_is_the_official_one(name, mean, std, image):
    ours = build_transform(get_spec(name))(image)
    theirs = official_transform(mean, std)(image)
    assert ours.shape == (3, 256, 256) and torch.allclose(ours, theirs, atol=1e-6)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    spec = get_spec("dinov3_vits16")
    torch.manual_seed(0)
    model = build(spec)
    model.init_weights()
    path = tmp_path_factory.mktemp("dinov3") / "dinov3_vits16.pth"
    torch.save(model.state_dict(), path)
    return path


def test_features_are_the_model_s_and_do_not_depend_on_the_batch(weights, image):
    torch.set_num_threads(1)
    import inspect

    assert inspect.signature(DINOv3FeatureExtractor).parameters["model_name"].default == "dinov3_vitb16"
    ext = DINOv3FeatureExtractor("dinov3_vits16", weights=weights, device="cpu")
    assert repr(ext).startswith("DINOv3FeatureExtractor('dinov3_vits16'")
    alone = ext.extract([image])
    batch = ext.extract([image, image.transpose(Image.FLIP_LEFT_RIGHT), image], batch_size=3)
    assert alone.shape == (1, 384) and torch.equal(alone[0], batch[0]) and torch.equal(batch[0], batch[2])
    x = official_transform((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))(image)[None]
    with torch.inference_mode():
        expected = ext.model.forward_features(x)["x_norm_clstoken"]
    assert torch.allclose(alone, expected, atol=1e-5)
    same = DINOv2FeatureExtractor("dinov3_vits16", weights=weights, device="cpu")  # one class, either name
    assert torch.equal(same.extract([image]), alone)
