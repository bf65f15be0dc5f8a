"""Features do not depend on the batch (issue 17, item 6).

``forward(x)``, and so the extractor, is the official arithmetic: equal bit for bit to
``forward_features(x)["x_norm_clstoken"]`` and to the official code's ``forward`` (PyPI dinov2==0.0.1.dev2 with
today's official attention, see tests/support/official.py) at batches of 1, 2 and 8, and one image's features are
the same bits alone and in a batch. Only ``cls_shortcut=True`` trades that for speed, and only when asked.

Batch independence is checked with one CPU thread. With more, MKL splits the long reductions of some linear layers
(input width >= 3072: the FFN output of B, L and g) differently for different batch sizes, so a batch of 2 can round
differently from one image; the official code does exactly the same (measured: torch 2.14, MKL 2024.2, AVX-512),
and ours stays equal to it at every batch.
"""

from __future__ import annotations

import pytest
import torch

from dinovault.catalog import get_spec
from dinovault.model.checkpoint import load_backbone
from tests.support.checkpoints import make_state_dict
from tests.support.official import official_model, reduced

# name: depth (S at its real depth; the others with 2 blocks of their real width: each block does the same
# arithmetic, so depth adds time, not coverage)
MODELS = {"dinov2_vits14": None, "dinov2_vitb14": 2, "dinov2_vits14_reg": 2, "dinov2_vitg14": 2}
BATCHES = (1, 2, 8)


def batch(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 224, 224, generator=torch.Generator().manual_seed(seed))


def model(name: str):
    spec = reduced(get_spec(name), MODELS[name])
    state_dict = make_state_dict(spec, seed=5)
    ours = load_backbone({k: v.clone() for k, v in state_dict.items()}, spec)
    official = None if spec.num_register_tokens else official_model(spec, state_dict)
    return ours, official, spec


def diff(a, b) -> str:
    return f"max |diff| {(a - b).abs().max().item():.3g}"


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_is_forward_features_and_official_at_every_batch(name, machine_threads):
    ours, official, spec = model(name)
    x = batch(8)
    for b in BATCHES:
        with torch.inference_mode():
            got = ours(x[:b])
            want = ours.forward_features(x[:b])["x_norm_clstoken"]
            ref = official(x[:b]) if official is not None else None
        assert got.shape == (b, spec.embed_dim) and got.abs().mean() > 0.1  # real features, not zeros
        assert torch.equal(got, want), f"batch {b}: forward != forward_features, {diff(got, want)}"
        if ref is not None:
            assert torch.equal(got, ref), f"batch {b}: forward != official forward, {diff(got, ref)}"


@pytest.mark.parametrize("name", list(MODELS))
def test_one_image_is_the_same_bits_alone_and_in_a_batch(name, one_thread):
    ours, _, _ = model(name)
    x = batch(8, seed=1)
    with torch.inference_mode():
        alone = [ours(x[i : i + 1]) for i in range(8)]
        in_two, in_eight = ours(x[:2]), ours(x)
    assert alone[0].abs().mean() > 0.1
    for i in range(2):
        assert torch.equal(in_two[i : i + 1], alone[i]), f"image {i}, batch of 2: {diff(in_two[i : i + 1], alone[i])}"
    for i in range(8):
        assert torch.equal(in_eight[i : i + 1], alone[i]), f"image {i}, batch of 8: {diff(in_eight[i:i + 1], alone[i])}"


def test_cls_shortcut_is_opt_in_close_and_batch_dependent(one_thread):
    """The shortcut is what the default used to be: close to the exact values, but not the same bits."""
    ours, _, _ = model("dinov2_vits14")
    x = batch(8, seed=2)
    with torch.inference_mode():
        exact = ours(x)
        fast = ours(x, cls_shortcut=True)
        fast_alone = ours(x[:1], cls_shortcut=True)
    assert fast.shape == exact.shape
    assert (fast - exact).abs().max().item() <= 1e-6 * exact.abs().max().item()
    assert not torch.equal(fast, exact)  # if it became exact, the opt-in and its docstring can go
    assert not torch.equal(fast[:1], fast_alone)


def test_extractor_features_do_not_depend_on_batch_size(models_dir, one_thread):
    from dinovault.inference.extractor import DINOv2FeatureExtractor

    fx = DINOv2FeatureExtractor("dinov2_vits14", weights=models_dir / "dinov2_vits14.pth", device="cpu")
    images = (torch.rand(8, 3, 256, 300, generator=torch.Generator().manual_seed(3)) * 255).to(torch.uint8)
    one_by_one = fx.extract(images, batch_size=1)
    by_three, all_eight = fx.extract(images, batch_size=3), fx.extract(images, batch_size=8)
    assert one_by_one.shape == (8, 384) and one_by_one.abs().mean() > 0.1
    assert torch.equal(by_three, one_by_one), diff(by_three, one_by_one)
    assert torch.equal(all_eight, one_by_one), diff(all_eight, one_by_one)
    with torch.inference_mode():
        want = fx.model.forward_features(fx.preprocess(images))["x_norm_clstoken"]
    assert torch.equal(all_eight, want)
