"""The ModelScope source (issue 18 item 3) against a loopback imitation of ModelScope's file API with Range
(tests/support/msserver.py), and a gated Hugging Face repository's refusal (item 4).

The DINOv3 rows and their converter are other modules' work: the source is tested with a DINOv2 row given a
ModelScope repository (its conversion exists: dinovault.model.hf_dinov2), put in ``dinovault.catalog.CATALOG``
(monkeypatched) so ``fetch_model`` finds it by name; a row of another family shows the converter is looked up by
``spec.family``. The file is a real-architecture random checkpoint in transformers' layout (tests/support/hubserver).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import torch

from dinovault import catalog, settings
from dinovault.errors import CheckpointError, DownloadError
from dinovault.pipeline import fetch_model
from dinovault.sources.modelscope import converted_path
from tests.support.hubserver import save_hf_checkpoint
from tests.support.msserver import start_ms

REPO = "facebook/dinov2-small"
REVISION = "v1.0.2"
S14 = catalog.get_spec("dinov2_vits14")
ROW = dataclasses.replace(S14, hub_repos=(("hf", REPO), ("ms", REPO)))


@pytest.fixture(scope="module")
def ms(tmp_path_factory):
    base = tmp_path_factory.mktemp("ms")
    server = start_ms()
    server.official = save_hf_checkpoint(S14, base / "model.safetensors", seed=5)
    server.add(REPO, base / "model.safetensors", REVISION)
    server.add(REPO, base / "model.safetensors", "master")
    server.base = base
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def env(ms, torch_home_dir, tmp_path, monkeypatch):
    """The row in the catalog, ModelScope on loopback, and a registry holding ``lines``."""
    monkeypatch.setitem(catalog.CATALOG, ROW.name, ROW)
    monkeypatch.setenv(settings.MODELSCOPE_ENDPOINT, ms.endpoint)
    monkeypatch.delenv("DINOVAULT_SOURCES", raising=False)
    ms.log.clear()

    def registry(*lines: str) -> Path:
        path = tmp_path / "registry.txt"
        path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        monkeypatch.setenv("DINOVAULT_REGISTRY", str(path))
        return path

    return registry


def assert_official(path: Path, expected: dict) -> None:
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    assert list(loaded) == list(expected)  # official names, official order
    for key, tensor in expected.items():
        assert torch.equal(loaded[key], tensor), key


def test_a_modelscope_copy_is_fetched_in_ranges_verified_and_converted(ms, env, tmp_path):
    env(ms.pin_line(REPO, REVISION))
    res = fetch_model(ROW.name, tmp_path / "models", sources=("modelscope",))  # with the smoke test
    assert res.verified is True and res.downloaded and res.forward_seconds is not None
    assert_official(res.export_path, ms.official)
    card = json.loads(res.card_path.read_text())
    sha = hashlib.sha256((ms.base / "model.safetensors").read_bytes()).hexdigest()
    assert (card["source"], card["ms_repo"], card["ms_revision"], card["ms_sha256"]) == ("modelscope", REPO, REVISION,
                                                                                        sha)
    assert card["url"] == f"https://www.modelscope.cn/api/v1/models/{REPO}/repo?Revision={REVISION}&FilePath=model.safetensors"
    ranged = [entry for entry in ms.log if entry[2]]
    assert len(ranged) >= 2 and all(f"Revision={REVISION}&FilePath=model.safetensors" in e[1] for e in ranged)
    assert res.description == f"{ROW.name} from ModelScope {REPO}@{REVISION} (converted)"
    # again: the conversion in the cache is reused, no request
    ms.log.clear()
    again = fetch_model(ROW.name, tmp_path / "models", sources=("modelscope",), smoke_test=False)
    assert not again.downloaded and again.sha256 == res.sha256 and ms.log == []
    assert again.path.stat().st_ino == converted_path(ROW).stat().st_ino


def test_without_an_ms_pin_the_hugging_face_pin_checks_the_same_file_and_any_family_converts(ms, env, tmp_path,
                                                                                               monkeypatch):
    """ModelScope's copy holds the Hugging Face file: its hf: pin verifies it, fetched from ``master``. The
    converter is the row's family's (here a family mapped to DINOv2's converter)."""
    hub_line = ms.pin_line(REPO, "master").replace(f"ms:{REPO}@master", f"hf:{REPO}@{'c' * 40}")
    env(hub_line)
    other = dataclasses.replace(ROW, name="otherfamily_vits14", family="otherfamily")
    monkeypatch.setitem(catalog.CATALOG, other.name, other)
    plain = dataclasses.replace(catalog.family_of(ROW), name="otherfamily", rows=(other,), conversion=None)
    monkeypatch.setitem(catalog._BY_NAME, "otherfamily", plain)
    with pytest.raises(CheckpointError, match="no conversion .* for otherfamily"):
        fetch_model(other.name, tmp_path / "models", sources=("modelscope",), smoke_test=False)
    monkeypatch.setitem(catalog._BY_NAME, "otherfamily",
                        dataclasses.replace(plain, conversion="dinovault.model.hf_dinov2"))
    res = fetch_model(other.name, tmp_path / "models", sources=("modelscope",), smoke_test=False)
    assert res.verified is True and json.loads(res.card_path.read_text())["ms_revision"] == "master"
    assert_official(res.export_path, ms.official)
    assert all("Revision=master" in e[1] for e in ms.log)


def test_a_tampered_modelscope_file_is_refused_and_nothing_exported(ms, env, tmp_path):
    env(ms.pin_line(REPO, REVISION))
    data = bytearray((ms.base / "model.safetensors").read_bytes())
    data[-100] ^= 0xFF  # one tensor byte: the file still parses
    bad = ms.base / "tampered.safetensors"
    bad.write_bytes(bytes(data))
    ms.add(REPO, bad, REVISION)
    try:
        with pytest.raises(DownloadError, match="modelscope .*do not match the pin"):
            fetch_model(ROW.name, tmp_path / "models", sources=("modelscope",), smoke_test=False)
    finally:
        ms.add(REPO, ms.base / "model.safetensors", REVISION)
    assert not (tmp_path / "models" / f"{ROW.name}.pth").exists()
    assert not converted_path(ROW).exists()
    left = [p for p in (tmp_path / "torch_home").rglob("*.safetensors*") if p.is_file()]
    assert not [p for p in left if p.name == "model.safetensors"]  # the bad bytes never got the file's name


def test_a_model_without_a_modelscope_repository_is_not_offered(env, tmp_path):
    env()
    with pytest.raises(DownloadError, match="no configured source can serve dinov2_vitb14"):
        fetch_model("dinov2_vitb14", tmp_path / "models", sources=("modelscope",), smoke_test=False)


def test_the_endpoint_follows_the_settings(monkeypatch):
    monkeypatch.delenv(settings.MODELSCOPE_ENDPOINT, raising=False)
    monkeypatch.delenv("MODELSCOPE_DOMAIN", raising=False)
    assert settings.modelscope_endpoint() == "https://www.modelscope.cn"
    monkeypatch.setenv("MODELSCOPE_DOMAIN", "modelscope.example.cn")  # the modelscope client's variable
    assert settings.modelscope_endpoint() == "https://modelscope.example.cn"
    monkeypatch.setenv(settings.MODELSCOPE_ENDPOINT, "http://127.0.0.1:8080/")
    assert settings.modelscope_endpoint() == "http://127.0.0.1:8080"


@pytest.mark.parametrize("status", [401, 403])
def test_a_gated_hugging_face_repository_says_to_accept_the_licence_and_set_hf_token(status, env, ms, tmp_path,
                                                                                      monkeypatch):
    from huggingface_hub import constants

    refusing = start_ms()
    refusing.status = status
    monkeypatch.setattr(constants, "ENDPOINT", refusing.endpoint)  # read by huggingface_hub at import
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        refusing.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    env(ms.pin_line(REPO, REVISION).replace(f"ms:{REPO}@{REVISION}", f"hf:{REPO}@{'c' * 40}"))
    try:
        with pytest.raises(DownloadError) as exc:
            fetch_model(ROW.name, tmp_path / "models", sources=("huggingface",), smoke_test=False)
    finally:
        refusing.close()
    assert refusing.log, "the Hub imitation was asked"
    assert f"HTTP {status}" in exc.value.message and f"https://huggingface.co/{REPO}" in exc.value.message
    assert "HF_TOKEN" in exc.value.message and "许可" in exc.value.message and "HF_TOKEN" in exc.value.hint
