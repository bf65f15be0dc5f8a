"""The two hub sources are one HubSource (sources/hub.py) with two small subclasses (issue 22): every rule that the
Hugging Face and ModelScope twins had each written their own way is tested here on both, and each test failed on one
of the old twins. In process: a conversion made by ``take_file`` (what ``invoke import`` does), endpoints that refuse
at once (a request would fail the test), a loopback Hub (tests/support/hubserver.py) for huggingface_hub's errors.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from dinovault import catalog, settings, sources
from dinovault.errors import CheckpointError, DownloadError, VerificationError
from dinovault.pipeline import fetch_model
from dinovault.registry import parse_pins
from tests.support.hubserver import save_hf_checkpoint, start_hub

REPO = "facebook/dinov2-small"
COMMIT = "c" * 40
S14 = catalog.get_spec("dinov2_vits14")
ROW = dataclasses.replace(S14, hub_repos=(("hf", REPO), ("ms", REPO)))
HUBS = ("huggingface", "modelscope")
REFUSED = "http://127.0.0.1:9"  # port 9 refuses at once


@dataclasses.dataclass(frozen=True)
class HubFile:
    path: Path
    size: int
    sha256: str

    @property
    def pin(self) -> str:
        """Its registry line (ModelScope takes the ``hf:`` pin of the same repository for its copy)."""
        return f"hf:{REPO}@{COMMIT}/model.safetensors {self.size} sha256:{self.sha256}"


@pytest.fixture(scope="module")
def hub_file(tmp_path_factory) -> HubFile:
    path = tmp_path_factory.mktemp("hub_file") / "model.safetensors"
    save_hf_checkpoint(S14, path, seed=3)
    data = path.read_bytes()
    return HubFile(path, len(data), hashlib.sha256(data).hexdigest())


@pytest.fixture
def env(torch_home_dir, tmp_path, monkeypatch):
    """The row in the catalog, both hubs out of reach, a private Hugging Face cache, and a registry of ``lines``."""
    from huggingface_hub import constants

    monkeypatch.setitem(catalog.CATALOG, ROW.name, ROW)
    monkeypatch.setenv(settings.MODELSCOPE_ENDPOINT, REFUSED)
    monkeypatch.setattr(constants, "ENDPOINT", REFUSED)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("DINOVAULT_SOURCES", raising=False)

    def registry(*lines: str) -> None:
        path = tmp_path / "registry.txt"
        path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        monkeypatch.setenv("DINOVAULT_REGISTRY", str(path))

    registry()
    return registry


def unverified_conversion(name: str, hub_file: HubFile) -> None:
    """``name``'s conversion of ``hub_file`` in the cache with no pin to check it (``invoke import
    --allow-unverified``)."""
    sources.get(name).take_file(hub_file.path, ROW, hub_file.size, hub_file.sha256, None)


@pytest.mark.parametrize("name", HUBS)
def test_an_unverified_conversion_is_used_only_with_allow_unverified(name, env, hub_file, tmp_path):
    """Was: Hugging Face reused a conversion recorded ``verified: false`` without --allow-unverified."""
    unverified_conversion(name, hub_file)
    with pytest.raises(VerificationError, match="no pinned SHA-256") as exc:
        fetch_model(ROW.name, tmp_path / "models", sources=(name,), smoke_test=False)
    assert "--allow-unverified" in exc.value.hint
    assert not (tmp_path / "models" / f"{ROW.name}.pth").exists()
    res = fetch_model(ROW.name, tmp_path / "models", sources=(name,), allow_unverified=True, smoke_test=False)
    assert res.verified is False and not res.downloaded and res.source_url is None
    assert res.cache_path == sources.get(name).converted_path(ROW)


@pytest.mark.parametrize("name", HUBS)
def test_an_unverified_export_restored_elsewhere_is_taken_back_with_allow_unverified(name, env, hub_file, tmp_path,
                                                                                      monkeypatch):
    """Was: ModelScope never took back an unpinned export (restored by ``dvc pull``), even with --allow-unverified:
    it downloaded again."""
    unverified_conversion(name, hub_file)
    export = fetch_model(ROW.name, tmp_path / "models", sources=(name,), allow_unverified=True,
                         smoke_test=False).export_path
    before = export.read_bytes()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "another machine"))  # empty caches, only the pulled export
    with pytest.raises(VerificationError, match="no pinned SHA-256"):
        fetch_model(ROW.name, tmp_path / "models", sources=(name,), smoke_test=False)
    res = fetch_model(ROW.name, tmp_path / "models", sources=(name,), allow_unverified=True, smoke_test=False)
    assert res.verified is False and not res.downloaded
    converted = sources.get(name).converted_path(ROW)
    assert str(converted).startswith(str(tmp_path / "another machine")) and converted.read_bytes() == before
    assert json.loads(export.with_suffix(".json").read_text())["verified"] is False


@pytest.mark.parametrize("name", HUBS)
def test_a_conversion_of_the_file_pinned_later_is_verified_here_and_elsewhere(name, env, hub_file, tmp_path,
                                                                               monkeypatch):
    """A conversion made before its hub file was pinned is verified once the pin names the file it was made from:
    in the cache and, restored by ``dvc pull``, on another machine. Was: both twins kept ``verified: false`` for the
    cache's conversion, and Hugging Face for an export taken back (ModelScope said true)."""
    unverified_conversion(name, hub_file)
    export = fetch_model(ROW.name, tmp_path / "models", sources=(name,), allow_unverified=True,
                         smoke_test=False).export_path
    env(hub_file.pin)
    for machine in ("this machine", "another machine"):
        if machine == "another machine":
            monkeypatch.setenv("TORCH_HOME", str(tmp_path / machine))  # empty caches, only the pulled export
        res = fetch_model(ROW.name, tmp_path / "models", sources=(name,), smoke_test=False)
        assert res.verified is True and not res.downloaded, machine
        assert res.cache_path == sources.get(name).converted_path(ROW), machine
        assert json.loads(export.with_suffix(".json").read_text())["verified"] is True, machine


@pytest.mark.parametrize("name", HUBS)
def test_a_card_is_checked_against_the_pin_and_says_so_in_both_languages(name):
    """Was: Hugging Face's problem was English only, ModelScope's did not name the pin; the line for a missing pin
    named the repository on one hub and the model on the other."""
    source, hub = sources.get(name), sources.get(name).hub
    pins = parse_pins(f"hf:{REPO}@{COMMIT}/model.safetensors 10 sha256:{'c' * 64}\n")
    card = {"source": name, "size": 10, "sha256": "a" * 64, f"{hub}_sha256": "b" * 64, "verified": True}
    [problem] = source.expected(ROW, card, pins).problems
    ref = source.pin(ROW, pins).ref
    assert problem == f"converted from sha256 {'b' * 64}, not the pinned {ref} ({'c' * 64}) / 来源文件与固定哈希不符"
    assert source.expected(ROW, {**card, f"{hub}_sha256": "c" * 64}, pins).problems == ()
    assert source.expected(ROW, card, parse_pins("")).problems == (
        f"no pin for {source.describe_pin(ROW)} in the registry / 注册表中无此文件的哈希",)


@pytest.mark.parametrize("name", HUBS)
def test_a_model_with_no_repository_on_the_hub_is_not_offered(name, env, tmp_path, monkeypatch):
    """Was: Hugging Face offered every model and failed on ``hf:None has no pinned SHA-256``."""
    bare = dataclasses.replace(ROW, name="dinov2_vits14_nowhere", hub_repos=())
    monkeypatch.setitem(catalog.CATALOG, bare.name, bare)
    with pytest.raises(DownloadError, match=f"no configured source can serve {bare.name}"):
        fetch_model(bare.name, tmp_path / "models", sources=(name,), smoke_test=False, allow_unverified=True)


@pytest.mark.parametrize("name", HUBS)
def test_a_family_without_a_converter_fails_before_any_request(name, env, hub_file, tmp_path, monkeypatch):
    """Was: Hugging Face downloaded the file first (here: a refused endpoint, so a DownloadError)."""
    other = dataclasses.replace(ROW, name="otherfamily_vits14", family="otherfamily")
    family = dataclasses.replace(catalog.family_of(ROW), name="otherfamily", rows=(other,), conversion=None)
    monkeypatch.setitem(catalog.CATALOG, other.name, other)
    monkeypatch.setitem(catalog._BY_NAME, family.name, family)  # this test's alone (register_family is for good)
    env(hub_file.pin)
    with pytest.raises(CheckpointError, match="no conversion .* for otherfamily"):
        fetch_model(other.name, tmp_path / "models", sources=(name,), smoke_test=False)


@pytest.fixture(scope="module")
def hub(hub_file):
    server = start_hub()
    server.add(REPO, hub_file.path, COMMIT)
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize(("case", "said"), [
    ("offline", "not in the Hugging Face cache, and HF_HUB_OFFLINE=1 / 离线且缓存中没有该文件"),
    ("repository", "no such repository on this endpoint / 仓库不存在"),
    ("revision", "the pinned revision is not on this endpoint / 固定的修订不存在"),
    ("file", "no such file in that revision / 该修订中没有此文件"),
])
def test_each_refusal_of_the_hub_gets_its_own_line(case, said, hub, hub_file, env, tmp_path, monkeypatch):
    """Told apart by huggingface_hub's exported classes. Was: by class names and message text, which took an empty
    cache under HF_HUB_OFFLINE=1 for an unreachable Hub (huggingface_hub 2.x words it differently)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", case == "offline")
    row, line = ROW, hub_file.pin
    if case == "repository":
        row = dataclasses.replace(ROW, name="dinov2_vits14_elsewhere", hub_repos=(("hf", "facebook/nowhere"),))
        monkeypatch.setitem(catalog.CATALOG, row.name, row)
        line = line.replace(REPO, "facebook/nowhere")
    elif case == "revision":
        line = line.replace(COMMIT, "d" * 40)
    elif case == "file":
        line = line.replace("model.safetensors", "other.safetensors")
    env(line)
    gets = hub.get_count(row.hub_repo("hf"))
    with pytest.raises(DownloadError) as exc:
        fetch_model(row.name, tmp_path / "models", sources=("huggingface",), smoke_test=False)
    assert said in exc.value.message and "Traceback" not in exc.value.message
    assert hub.get_count(row.hub_repo("hf")) == gets  # nothing was downloaded
    assert not (tmp_path / "models" / f"{row.name}.pth").exists()
