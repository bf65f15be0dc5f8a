"""Issue 11's done-when, with the real `dvc` and `invoke` in a fresh clone: `DINOVAULT_SOURCES=huggingface
HF_ENDPOINT=<loopback Hub> invoke fetch --model dinov2_vits14` gives models/dinov2/dinov2_vits14.pth with the
official keys and bit-identical tensors; `formats: [pth, safetensors, hf]` gives the three exports as DVC outputs
of the stage; `invoke import` of a hand-downloaded file records it with no download."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from dinovault.catalog import get_spec
from tests.support.clones import Machine, snapshot_worktree
from tests.support.hubserver import save_hf_checkpoint, start_hub

pytest.importorskip("huggingface_hub")
ROOT = Path(__file__).resolve().parents[1]
VITS = "dinov2_vits14"
COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    base = tmp_path_factory.mktemp("hub")
    with start_hub() as server:
        server.official = save_hf_checkpoint(get_spec(VITS), base / "model.safetensors", seed=8)
        server.add("facebook/dinov2-small", base / "model.safetensors", COMMIT)
        server.registry = base / "registry.txt"
        # as the shipped registry does: Meta's file of the same model pinned too (other bytes than the conversion), so a
        # converted file is checked against its own pin and card, never Meta's (issue 15 item 3)
        meta = next(line for line in (ROOT / "dinovault" / "registry.txt").read_text().splitlines()
                    if line.startswith(get_spec(VITS).upstream_file))
        server.registry.write_text(server.registry_line("facebook/dinov2-small", size=False) + "\n" + meta + "\n")
        yield server


@pytest.fixture(scope="module")
def machine(tmp_path_factory, hub) -> Machine:
    base = tmp_path_factory.mktemp("machine")
    source = snapshot_worktree(tmp_path_factory.mktemp("source"))
    return Machine(base, {"HF_ENDPOINT": hub.endpoint}, source, HF_HOME=str(base / "hf"),
                   DINOVAULT_SOURCES="huggingface", DINOVAULT_REGISTRY=str(hub.registry))


def set_formats(params, formats: str) -> None:
    text = params.read_text(encoding="utf-8")
    params.write_text(re.sub(r"^formats:.*$", f"formats: {formats}", text, count=1, flags=re.M), encoding="utf-8")


def test_fetch_from_hugging_face_with_three_exports(machine, hub):
    a = machine.clone("a")
    a.select()
    set_formats(a.path / "params.yaml", "[pth, safetensors, hf]")
    a.commit("no model yet, three formats")
    a.invoke("fetch", "--model", VITS)
    loaded = torch.load(a.weights(VITS), map_location="cpu", weights_only=True)
    assert list(loaded) == list(hub.official)
    assert all(torch.equal(loaded[k], v) for k, v in hub.official.items())
    card = json.loads((a.path / "models" / "dinov2" / f"{VITS}.json").read_text())
    assert card["source"] == "huggingface" and card["hf_revision"] == COMMIT
    st = a.path / "models" / "dinov2" / "safetensors" / VITS / f"{VITS}.safetensors"
    hf = a.path / "models" / "dinov2" / "hf" / VITS
    assert st.is_file() and sorted(p.name for p in hf.iterdir()) == ["config.json", "model.safetensors"]
    outs = {o["path"] for o in a.lock()["stages"][f"fetch@{VITS}"]["outs"]}
    assert {f"models/dinov2/safetensors/{VITS}", f"models/dinov2/hf/{VITS}", f"models/dinov2/{VITS}.pth"} <= outs
    assert "up to date" in a.dvc("status").text
    assert "all models verified" in a.invoke("verify").text  # against the card and the hf: pin
    # fewer formats: the stage reruns from the cache (no request) and the dropped exports go
    gets = hub.get_count("facebook/dinov2-small")
    set_formats(a.path / "params.yaml", "[pth]")
    a.invoke("fetch")
    assert not st.exists() and not any(hf.iterdir()) and a.weights(VITS).is_file()
    assert hub.get_count("facebook/dinov2-small") == gets
    assert "up to date" in a.dvc("status").text


def test_import_a_hand_downloaded_file_then_record_it(machine, hub, tmp_path):
    b = machine.clone("b", extra_env={"HF_ENDPOINT": "http://127.0.0.1:9"})  # the Hub is out of reach
    b.select()
    b.commit("no model yet")
    mine = tmp_path / "Downloads" / "model.safetensors"
    mine.parent.mkdir()
    mine.write_bytes(hub.files[("facebook/dinov2-small", "model.safetensors")].path.read_bytes())
    res = b.invoke("import", str(mine))
    assert "pinned sha256 matches" in res.text
    assert b.weights(VITS).is_file() and f"fetch@{VITS}" in b.lock()["stages"]
    assert "up to date" in b.dvc("status").text
    (tmp_path / "empty").mkdir()
    res = b.invoke("import", str(tmp_path / "empty"), ok=False)
    assert "no .pth or .safetensors file in this folder" in res.text
    (tmp_path / "Downloads" / "notes.pth").write_bytes(b"\x00" * 100)
    res = b.invoke("import", str(tmp_path / "Downloads" / "notes.pth"), ok=False)
    assert "not a known DINOv2 checkpoint" in res.text and "Traceback" not in res.text
