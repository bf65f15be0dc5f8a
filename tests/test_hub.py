"""The Hugging Face source through the real huggingface_hub against a loopback Hub (tests/support/hubserver.py):
huggingface only, failover from a dead official source, a tampered file refused, an unpinned repo, offline reuse.
Each fetch runs the real script in a process of its own, as the DVC stage does (huggingface_hub reads HF_* at
import), forked from an interpreter that has imported torch (tests/support/warmstart.py)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch

from dinovault.catalog import get_spec
from dinovault.model.hf_dinov2 import tensor_digest
from tests.support.checkpoints import make_state_dict
from tests.support.httpserver import registry_line
from tests.support.hubserver import save_hf_checkpoint, start_hub
from tests.support.warmstart import run_python

pytest.importorskip("huggingface_hub")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "download_dinov2.py"
S14, S14R = get_spec("dinov2_vits14"), get_spec("dinov2_vits14_reg")
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def hub(tmp_path_factory, dinov2_server):
    """A Hub serving dinov2-small (the same weights as dinov2_server's official file: seed 0) and an unpinned
    dinov2-with-registers-small; ``hub.registry`` pins the official file and dinov2-small."""
    base = tmp_path_factory.mktemp("hub")
    server = start_hub()
    server.official = save_hf_checkpoint(S14, base / "small" / "model.safetensors", seed=0)
    server.add("facebook/dinov2-small", base / "small" / "model.safetensors", COMMIT)
    save_hf_checkpoint(S14R, base / "reg" / "model.safetensors", seed=2)
    server.add("facebook/dinov2-with-registers-small", base / "reg" / "model.safetensors", "f" * 40)
    official = dinov2_server.files[S14.upstream_file]
    server.registry = base / "registry.txt"
    server.registry.write_text(f"{registry_line(official)}\n{server.registry_line('facebook/dinov2-small')}\n")
    try:
        yield server
    finally:
        server.close()


def run(*args, tmp_path: Path, hub, **env):
    full = dict(os.environ, HF_ENDPOINT=hub.endpoint, HF_HOME=str(tmp_path / "hf"), TORCH_HOME=str(tmp_path / "th"),
                DINOVAULT_REGISTRY=str(hub.registry), DINOVAULT_BACKOFF="0.05", DINOVAULT_TIMEOUT="5",
                DINOVAULT_RETRIES="1")
    full.update(env)
    return run_python([SCRIPT, *args], env=full, timeout=300)


def assert_official(path: Path, expected: dict) -> None:
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    assert list(loaded) == list(expected)  # official names, official order
    for key, tensor in expected.items():
        assert loaded[key].dtype == torch.float32 and torch.equal(loaded[key], tensor), key


def test_huggingface_only(hub, tmp_path):
    out = tmp_path / "models"
    gets = hub.get_count("facebook/dinov2-small")
    r = run("--model", "dinov2_vits14", "--save_dir", out, tmp_path=tmp_path, hub=hub, DINOVAULT_SOURCES="huggingface")
    assert r.returncode == 0, r.stderr
    assert "from facebook/dinov2-small@0123456789ab (converted)" in r.stdout
    assert hub.get_count("facebook/dinov2-small") == gets + 1
    assert_official(out / "dinov2_vits14.pth", hub.official)
    card = json.loads((out / "dinov2_vits14.json").read_text())
    assert card["source"] == "huggingface" and card["hf_repo"] == "facebook/dinov2-small"
    assert card["hf_revision"] == COMMIT and card["hf_sha256"] == hub.files[("facebook/dinov2-small",
                                                                               "model.safetensors")].sha256
    assert card["verified"] is True and card["tensor_digest"] == tensor_digest(hub.official, S14)
    converted = tmp_path / "th" / "hub" / "dinovault" / "converted" / "dinov2_vits14.pth"
    assert (out / "dinov2_vits14.pth").stat().st_ino == converted.stat().st_ino  # a hard link, one copy
    assert not (tmp_path / "th" / "hub" / "checkpoints" / S14.upstream_file).exists()  # official names stay official
    # again: the converted file is reused, no request at all
    heads = hub.hits[("HEAD", "facebook/dinov2-small")]
    r = run("--model", "dinov2_vits14", "--save_dir", out, tmp_path=tmp_path, hub=hub, DINOVAULT_SOURCES="huggingface")
    assert r.returncode == 0, r.stderr
    assert hub.hits[("HEAD", "facebook/dinov2-small")] == heads and hub.get_count("facebook/dinov2-small") == gets + 1


def test_the_converted_file_is_the_same_on_every_machine(hub, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for where in (a, b):
        r = run("--model", "dinov2_vits14", "--save_dir", where / "m", "--skip-test", tmp_path=where, hub=hub,
                DINOVAULT_SOURCES="huggingface")
        assert r.returncode == 0, r.stderr
    assert (a / "m" / "dinov2_vits14.pth").read_bytes() == (b / "m" / "dinov2_vits14.pth").read_bytes()


def test_failover_from_a_dead_official_source_and_the_same_tensor_digest(hub, dinov2_server, tmp_path):
    r = run("--model", "dinov2_vits14", "--save_dir", tmp_path / "m", tmp_path=tmp_path, hub=hub,
            DINOV2_BASE_URL=f"http://127.0.0.1:{closed_port()}/dinov2")
    assert r.returncode == 0, r.stderr
    assert "official source failed" in r.stderr
    card = json.loads((tmp_path / "m" / "dinov2_vits14.json").read_text())
    assert card["source"] == "huggingface"
    # the official route on another machine: other file bytes, the same tensors
    other = tmp_path / "other"
    r = run("--model", "dinov2_vits14", "--save_dir", other / "m", tmp_path=other, hub=hub,
            DINOV2_BASE_URL=dinov2_server.base_url)
    assert r.returncode == 0, r.stderr
    official_card = json.loads((other / "m" / "dinov2_vits14.json").read_text())
    assert official_card["source"] == "official" and official_card["sha256"] != card["sha256"]
    assert official_card["tensor_digest"] == card["tensor_digest"]


def test_tampered_safetensors_is_refused_and_nothing_exported(hub, tmp_path):
    entry = hub.files[("facebook/dinov2-small", "model.safetensors")]
    bad = tmp_path / "bad.safetensors"
    data = bytearray(entry.path.read_bytes())
    data[-100] ^= 0xFF  # one tensor byte: the file still parses
    bad.write_bytes(bytes(data))
    original = entry.path
    entry.path = bad
    try:
        r = run("--model", "dinov2_vits14", "--save_dir", tmp_path / "m", tmp_path=tmp_path, hub=hub,
                DINOVAULT_SOURCES="huggingface")
    finally:
        entry.path = original
    assert r.returncode == 1
    assert "does not match its pin" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "m" / "dinov2_vits14.pth").exists() and not (tmp_path / "m" / "dinov2_vits14.json").exists()
    assert not list((tmp_path / "th").rglob("*.pth"))
    blobs = [p for p in (tmp_path / "hf").rglob("*") if p.is_file() and "blobs" in p.parts]
    assert not blobs  # the bad download is gone: the next try downloads again


def test_a_repo_without_pin_needs_allow_unverified(hub, tmp_path):
    r = run("--model", "dinov2_vits14_reg", "--save_dir", tmp_path / "m", tmp_path=tmp_path, hub=hub,
            DINOVAULT_SOURCES="huggingface")
    assert r.returncode == 1 and "no pinned SHA-256" in r.stderr and "--allow-unverified" in r.stderr
    assert hub.get_count("facebook/dinov2-with-registers-small") == 0
    r = run("--model", "dinov2_vits14_reg", "--save_dir", tmp_path / "m", "--allow-unverified", tmp_path=tmp_path,
            hub=hub, DINOVAULT_SOURCES="huggingface")
    assert r.returncode == 0, r.stderr
    card = json.loads((tmp_path / "m" / "dinov2_vits14_reg.json").read_text())
    assert card["verified"] is False and card["hf_revision"] == "f" * 40
    assert card["tensor_digest"] == tensor_digest(make_state_dict(S14R, seed=2), S14R)


def test_offline_reuses_the_hugging_face_cache(hub, tmp_path):
    r = run("--model", "dinov2_vits14", "--skip-test", tmp_path=tmp_path, hub=hub, DINOVAULT_SOURCES="huggingface")
    assert r.returncode == 0, r.stderr
    for f in (tmp_path / "th" / "hub" / "dinovault" / "converted").iterdir():
        f.unlink()  # only the Hugging Face cache is left
    gets = hub.get_count("facebook/dinov2-small")
    r = run("--model", "dinov2_vits14", "--save_dir", tmp_path / "m", tmp_path=tmp_path, hub=hub,
            DINOVAULT_SOURCES="huggingface", HF_HUB_OFFLINE="1", HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}")
    assert r.returncode == 0, r.stderr
    assert hub.get_count("facebook/dinov2-small") == gets
    assert_official(tmp_path / "m" / "dinov2_vits14.pth", hub.official)


def test_an_export_restored_elsewhere_is_taken_back_without_a_request(hub, tmp_path):
    r = run("--model", "dinov2_vits14", "--save_dir", tmp_path / "m", "--skip-test", tmp_path=tmp_path, hub=hub,
            DINOVAULT_SOURCES="huggingface")
    assert r.returncode == 0, r.stderr
    export = tmp_path / "m" / "dinov2_vits14.pth"
    before = export.read_bytes()
    other = tmp_path / "other"  # another machine: empty torch and Hugging Face caches, only the pulled export
    dead = f"http://127.0.0.1:{closed_port()}"
    r = run("--model", "dinov2_vits14", "--save_dir", tmp_path / "m", tmp_path=other, hub=hub, HF_ENDPOINT=dead,
            DINOV2_BASE_URL=dead)
    assert r.returncode == 0, r.stderr
    assert export.read_bytes() == before
    converted = other / "th" / "hub" / "dinovault" / "converted" / "dinov2_vits14.pth"
    assert converted.stat().st_ino == export.stat().st_ino


def test_sources_setting_is_an_ordered_list_of_known_names():
    from dinovault.errors import SourceError
    from dinovault.sources import configured

    def sources(value):
        return tuple(s.name for s in configured(value))

    assert sources("") == ("official", "huggingface")
    assert sources(" HuggingFace, official ,huggingface") == ("huggingface", "official")
    with pytest.raises(SourceError, match="unknown source 'github'") as exc:
        sources("official,github")
    assert "DINOVAULT_SOURCES=" in exc.value.hint
