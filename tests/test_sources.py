"""Sources are plug-ins: a source defined outside the package, registered through the public ``register``, fetches a
model with no change to the package; and the shipped registry's two pins for one model (Meta's file and the Hugging
Face file) each check only the bytes of their own source."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dinovault import sources
from dinovault.cache import cache_path, check_file, place_file
from dinovault.catalog import get_spec
from dinovault.errors import DownloadError, SourceError
from dinovault.pipeline import fetch_model
from dinovault.registry import load_pins
from dinovault.sources import Expected, Obtained, Source, register

S14 = get_spec("dinov2_vits14")


class FolderSource(Source):
    """A team's shared folder holding official files under their official names (e.g. a mounted NAS)."""

    name = "teamfolder"

    def __init__(self, folder: Path):
        self.folder = folder
        self.asked: list[str] = []

    def pin(self, spec, pins):
        return pins.files.get(spec.upstream_file)

    def describe_pin(self, spec):
        return spec.upstream_file

    def obtain(self, req):
        self.asked.append(req.spec.name)
        src, pin = self.folder / req.spec.upstream_file, self.pin(req.spec, req.pins)
        check = check_file(src, pin, rehash=True)
        if not check.ok:
            raise DownloadError(f"teamfolder: {src}: {check.reason}")
        dest = cache_path(req.spec.upstream_file)
        dest.parent.mkdir(parents=True, exist_ok=True)
        place_file(src, dest, check.size, check.sha256)
        return Obtained(dest, check.size, check.sha256, True, True, 0, src.as_uri(),
                        {"source": self.name, "teamfolder_file": src.name})

    def cache_copy(self, spec):
        return cache_path(spec.upstream_file)

    def expected(self, spec, card, pins):
        pin = self.pin(spec, pins)
        return Expected(pin.size, pin.sha256)

    def describe(self, spec, card):
        return f"{spec.upstream_file} from the team folder"


@pytest.fixture
def team_folder(dinov2_server, torch_home_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("DINOVAULT_REGISTRY", str(dinov2_server.registry))
    folder = tmp_path / "共享 folder"
    folder.mkdir()
    shutil.copy(dinov2_server.files[S14.upstream_file], folder / S14.upstream_file)
    source = register(FolderSource(folder))
    yield source
    sources._SOURCES.pop(source.name)


def test_a_source_registered_from_outside_the_package_fetches_a_model(team_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("DINOVAULT_SOURCES", "teamfolder")
    res = fetch_model("dinov2_vits14", tmp_path / "models", smoke_test=True)
    assert team_folder.asked == ["dinov2_vits14"]
    assert res.verified and res.export_path.read_bytes() == (team_folder.folder / S14.upstream_file).read_bytes()
    card = json.loads(res.card_path.read_text())
    assert card["source"] == "teamfolder" and card["teamfolder_file"] == S14.upstream_file
    assert sources.for_card(card) is team_folder
    assert res.description == f"{S14.upstream_file} from the team folder"
    # and a second fetch finds the verified file in the torch.hub cache: the plug-in is not asked again
    again = fetch_model("dinov2_vits14", tmp_path / "models", smoke_test=False)
    assert team_folder.asked == ["dinov2_vits14"] and not again.downloaded


def test_a_plug_in_source_that_serves_bad_bytes_is_refused(team_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("DINOVAULT_SOURCES", "teamfolder")
    bad = team_folder.folder / S14.upstream_file
    data = bytearray(bad.read_bytes())
    data[1000] ^= 1
    bad.write_bytes(bytes(data))
    with pytest.raises(DownloadError, match="teamfolder: .*sha256"):
        fetch_model("dinov2_vits14", tmp_path / "models", smoke_test=False)
    assert not (tmp_path / "models" / "dinov2_vits14.pth").exists()


def test_an_unknown_source_name_lists_the_registered_ones(team_folder, monkeypatch):
    with pytest.raises(SourceError, match="unknown source 'nas'") as exc:
        sources.configured("nas,official")
    assert "teamfolder" in exc.value.hint and "official" in exc.value.hint and "/" in exc.value.hint


def test_the_shipped_registry_pins_each_source_separately():
    """Meta's file and the Hugging Face conversion of the same weights have different bytes: each source checks
    its own pin, and a conversion is checked against its own card (issue 15 item 3)."""
    pins = load_pins()
    official, hf = sources.get("official"), sources.get("huggingface")
    meta, hub = official.pin(S14, pins), hf.pin(S14, pins)
    assert meta.sha256 != hub.sha256 and meta.size == 88283115 and hub.size == 88249960
    card = {"source": "huggingface", "size": 88278177, "sha256": "a" * 64, "hf_sha256": hub.sha256}
    assert hf.expected(S14, card, pins) == Expected(88278177, "a" * 64, (), "its model card")
    assert hf.expected(S14, {**card, "hf_sha256": "b" * 64}, pins).problems  # converted from something else
    assert official.expected(S14, {}, pins) == Expected(meta.size, meta.sha256)
    assert sources.for_card({}) is official and sources.for_card(card) is hf
