"""Checkpoint loading: only tensors are ever unpickled, and a file that is not the requested model says what it is."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dinovault.catalog import get_spec
from dinovault.errors import CheckpointError
from dinovault.model.checkpoint import check_state_dict, load_backbone, load_state_dict
from tests.support.checkpoints import make_state_dict, save_checkpoint, save_malicious, save_object

S = get_spec("dinov2_vits14")
S2 = dataclasses.replace(S, depth=2)  # a small file for the tests that only need a valid checkpoint


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "payload-ran"
    path = save_malicious(S2, tmp_path / "evil.pth", marker)
    with pytest.raises(CheckpointError, match="refused: the file holds code, not only tensors") as info:
        load_state_dict(path, S2)
    assert not marker.exists()
    assert "weights_only=False" in str(info.value)  # the hint warns against the unsafe way out


def test_b_weights_loaded_as_s_name_vitb14():
    b_shapes = make_state_dict(get_spec("dinov2_vitb14"), device="meta")  # shapes only: no 350 MB file needed
    with pytest.raises(CheckpointError, match=r"looks like dinov2_vitb14 \(embed dim 768.*not dinov2_vits14") as info:
        check_state_dict(b_shapes, S, source="b.pth")
    assert "cls_token (1, 1, 768) (expected (1, 1, 384))" in str(info.value)


def test_plain_file_loaded_as_register_model_names_the_missing_key(tmp_path):
    path = save_checkpoint(S, tmp_path / "s.pth")
    with pytest.raises(
        CheckpointError, match=r"looks like dinov2_vits14 .*not dinov2_vits14_reg.*missing: register_tokens"
    ):
        load_state_dict(path, get_spec("dinov2_vits14_reg"))


def test_chunked_block_keys_are_explained():
    chunked = {k.replace("blocks.", "blocks.0."): v for k, v in make_state_dict(S, device="meta").items()}
    with pytest.raises(CheckpointError, match=r"blocks\.0\.0\.\*.*block_chunks"):
        check_state_dict(chunked, S)


@pytest.mark.parametrize(
    "obj, match",
    [
        ([torch.zeros(1)], "is not a state_dict"),
        ({"teacher": {"backbone.cls_token": torch.zeros(1)}, "epoch": 3}, "training checkpoint"),
        ({}, "is not a state_dict"),
    ],
    ids=["list", "training-checkpoint", "empty"],
)
def test_files_that_are_not_state_dicts(tmp_path, obj, match):
    path = save_object(obj, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match=match):
        load_state_dict(path, S)


def test_truncated_and_missing_files(tmp_path):
    good = save_checkpoint(S2, tmp_path / "good.pth")
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint.*\n.*truncated"):
        load_state_dict(cut, S2)
    with pytest.raises(CheckpointError, match=r"no checkpoint file.*\n.*invoke fetch --model dinov2_vits14"):
        load_state_dict(tmp_path / "absent.pth", S2)


def test_load_backbone_from_file_holds_exactly_the_file_weights(tmp_path):
    path = save_checkpoint(S2, tmp_path / "s.pth", seed=4)
    model = load_backbone(path, S2)
    expected = make_state_dict(S2, seed=4)
    assert not model.training
    got = model.state_dict()
    assert list(got) == list(expected)
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    assert not any(p.is_meta for p in model.parameters())


def test_legacy_format_and_half_precision_files_load_as_float32(tmp_path):
    state_dict = make_state_dict(S2, seed=5)
    legacy = tmp_path / "legacy.pth"
    torch.save(state_dict, legacy, _use_new_zipfile_serialization=False)  # cannot be memory-mapped
    assert torch.equal(load_state_dict(legacy, S2)["pos_embed"], state_dict["pos_embed"])
    half = save_object({k: v.half() for k, v in state_dict.items()}, tmp_path / "half.pth")
    loaded = load_state_dict(half, S2)
    assert {v.dtype for v in loaded.values()} == {torch.float32}
