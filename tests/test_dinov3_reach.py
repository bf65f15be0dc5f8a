"""Issue 21 items 6 and 7: DINOv3 reaches every place DINOv2 does, and the shipped registry carries the full DINOv3
pins that independent public records agree on.

The checkpoint is an official-layout DINOv3 ViT-S/16 with random weights (tests/support/dinov3_checkpoints.py, in
float16 to keep it small: only its tensor names and shapes matter here). Its SHA-256 does not start with the real
file's ``08c60483``, so where a test needs a file that fits its name, the catalog row (monkeypatched) carries this
file's prefix instead, as tests/test_signed_links.py does.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
import torch

from dinovault import catalog
from dinovault.errors import DownloadError, ImportFileError, VerificationError
from dinovault.model.hf_dinov3 import official_to_hf
from dinovault.pipeline import fetch_model
from dinovault.registry import parse_pins
from dinovault.sources.imported import import_file
from dinovault.sources.prefix import name_prefix
from tests.support.dinov3_checkpoints import make_state_dict
from tests.support.httpserver import start_server
from tests.support.msserver import start_ms

MODEL = "dinov3_vits16"
SPEC = catalog.get_spec(MODEL)
REAL_PREFIX = SPEC.hash_prefix


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def official(tmp_path_factory) -> Path:
    """An official-layout DINOv3 ViT-S/16 checkpoint (random weights) saved by hand under a name of the user's."""
    path = tmp_path_factory.mktemp("dinov3") / "my download.pth"
    torch.save({k: v.half() for k, v in make_state_dict(SPEC, seed=7, bias_mask="released").items()}, path)
    return path


@pytest.fixture
def registry(tmp_path, torch_home_dir, monkeypatch):
    """A registry of the given lines instead of the shipped one (none: DINOv3 checked by its name's prefix)."""
    def write(*lines: str) -> Path:
        path = tmp_path / "registry.txt"
        path.write_text("# test registry\n" + "".join(f"{line}\n" for line in lines), encoding="utf-8")
        monkeypatch.setenv("DINOVAULT_REGISTRY", str(path))
        return path

    write()
    return write


@pytest.fixture
def fitting_row(official, monkeypatch):
    """The catalog row of dinov3_vits16 renamed after ``official``'s own hash prefix."""
    prefix = sha256(official)[:8]
    file = SPEC.upstream_file.replace(REAL_PREFIX, prefix)
    row = dataclasses.replace(SPEC, upstream_file=file, upstream_path=f"{SPEC.arch}/{file}", hash_prefix=prefix)
    monkeypatch.setitem(catalog.CATALOG, MODEL, row)
    return row


# ---------------------------------------------------------------------------------------------- item 6


def test_verify_a_dinov3_model_by_its_name_s_prefix_or_its_full_pin(official, registry, fitting_row, tmp_path):
    import dinovault

    got = dinovault.verify(MODEL, official)
    assert (got.model, got.level, got.sha256) == (MODEL, "prefix", sha256(official))
    assert dinovault.verify(path=official).model == MODEL  # recognised by the prefix in its official name
    bad = tmp_path / "bad.pth"
    data = bytearray(official.read_bytes())
    data[-100] ^= 1
    bad.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match=f"does not start with {fitting_row.hash_prefix}"):
        dinovault.verify(MODEL, bad)
    registry(f"{fitting_row.upstream_file} {official.stat().st_size} sha256:{sha256(official)}")
    assert dinovault.verify(MODEL, official).level == "sha256"
    with pytest.raises(VerificationError, match="differs from the pinned"):
        dinovault.verify(MODEL, bad)


def test_the_extractor_finds_dinov3_weights_fetched_through_modelscope_outside_a_repository(
        official, registry, tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from dinovault import settings
    from dinovault.errors import MissingWeightsError
    from dinovault.inference.weights import find_weights

    outside = tmp_path / "not a repository"
    outside.mkdir()
    monkeypatch.chdir(outside)
    monkeypatch.delenv("DINOVAULT_MODELS_DIR", raising=False)
    with pytest.raises(MissingWeightsError, match=f"dvc pull models/dinov3/{MODEL}.pth"):  # its family's folder
        find_weights(MODEL)
    hf_file = tmp_path / "served" / "model.safetensors"
    hf_file.parent.mkdir()
    state = torch.load(official, map_location="cpu", weights_only=True)
    save_file(official_to_hf(state, SPEC), str(hf_file), metadata={"format": "pt"})
    repo = SPEC.hub_repo("ms")
    ms = start_ms()
    try:
        ms.add(repo, hf_file, "v1")
        registry(ms.pin_line(repo, "v1"))
        monkeypatch.setenv(settings.MODELSCOPE_ENDPOINT, ms.endpoint)
        fetched = fetch_model(MODEL, sources=("modelscope",), smoke_test=False, progress=False)
    finally:
        ms.close()
    assert fetched.verified is True
    assert find_weights(MODEL) == fetched.path


def test_a_dinov3_download_failure_names_dinov3_s_mirror_variable(registry, tmp_path, monkeypatch):
    server = start_server(tmp_path / "www")  # serves nothing: 404
    try:
        monkeypatch.setenv("DINOV3_BASE_URL", f"{server.origin}/dinov3")
        monkeypatch.setenv("DINOV2_BASE_URL", f"{server.origin}/dinov2")
        monkeypatch.setenv("DINOVAULT_RETRIES", "0")
        registry(f"{SPEC.upstream_file} 1000 sha256:{REAL_PREFIX}{'0' * 56}")  # sized: the ranged transport
        with pytest.raises(DownloadError) as err:
            fetch_model(MODEL, sources=("official",), smoke_test=False, progress=False)
    finally:
        server.close()
    hint = err.value.hint
    assert "DINOV3_BASE_URL" in hint and "DINOV2" not in hint, hint
    assert "the mirror does not have this file" in hint


def test_a_family_without_a_hugging_face_converter_still_imports(official, registry, monkeypatch):
    """A plug-in family may have no Hugging Face layout: recognising a file by its shapes skips that layout."""
    monkeypatch.setitem(catalog._BY_NAME, "dinov3", dataclasses.replace(catalog.family_of(MODEL), conversion=None))
    with pytest.raises(ImportFileError, match=f"looks like {MODEL} \\(official layout\\)"):
        import_file(official)


def test_importing_a_dinov3_file_that_contradicts_its_name_s_prefix_says_so(official, registry):
    with pytest.raises(ImportFileError) as err:
        import_file(official)
    text = str(err.value)
    assert f"looks like {MODEL}" in text and f"does not start with {REAL_PREFIX}" in text, text
    assert "None" not in text, text


# ---------------------------------------------------------------------------------------------- item 7


STRONG = {  # independent public records agree on the SHA-256 and the size (shared notes, dinov3-facts)
    "dinov3_vits16", "dinov3_vits16plus", "dinov3_vitb16", "dinov3_vitl16", "dinov3_vitl16_sat", "dinov3_vith16plus"}


def test_the_shipped_registry_pins_the_corroborated_dinov3_files_in_full():
    from dinovault.registry import DEFAULT_REGISTRY

    pins = parse_pins(DEFAULT_REGISTRY.read_text(encoding="utf-8"), str(DEFAULT_REGISTRY))
    dinov3 = {s.upstream_file: s for s in catalog.CATALOG.values() if s.family == "dinov3"}
    pinned = {dinov3[f].name for f in pins.files if f in dinov3}
    assert pinned == STRONG  # the others (one project only, or no record) stay prefix-verified
    for file, pin in pins.files.items():
        prefix = name_prefix(file)
        assert prefix is None or pin.sha256.startswith(prefix), f"{file}: {pin.sha256}"
    assert all(pins.files[dinov3[f].upstream_file].size > 0 for f in dinov3 if dinov3[f].name in STRONG)
    for (hub, repo), pin in pins.hubs.items():  # a ModelScope copy holds the Hugging Face file
        twin = pins.hubs.get(("hf" if hub == "ms" else "ms", repo))
        assert twin is None or twin.sha256 == pin.sha256, repo
