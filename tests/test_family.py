"""Issue 22: a model family is one definition (dinovault/catalog/family.py). This repository's dvc.yaml and the
stages `dinovault init` writes are generated from it (dinovault/repo/stages.py), and a family defined outside the
package (tests/support/toyfamily.py: its row and its network, no converter) is fetched, verified, pushed, pulled,
imported and loaded with no change to the package."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import torch
from ruamel.yaml import YAML

from dinovault import catalog
from dinovault.repo import stages
from tests.support import toyfamily as toy
from tests.support.clones import BIN, ROOT, Clone, Machine
from tests.support.httpserver import start_server

PLUGIN = "tests.support.toyfamily:FAMILY"


def _yaml(text: str) -> dict:
    return YAML(typ="safe").load(text)


def test_the_checked_in_dvc_yaml_is_the_generated_one():
    """Edit the families (dinovault/catalog/), then `python -m dinovault.repo.stages > dvc.yaml`."""
    assert (ROOT / "dvc.yaml").read_text(encoding="utf-8") == stages.dvc_yaml()


def test_init_s_stages_are_this_repository_s_but_for_the_command_and_its_code():
    """One definition: the stage `dinovault init` writes differs from this repository's only in how it runs the
    package (the installed `dinovault` and its record) and not in its loop, parameters or outputs."""
    own = _yaml(stages.dvc_yaml())["stages"]
    init = _yaml("stages:\n" + "".join(stages.blocks().values()))["stages"]
    assert list(own) == list(init) == ["fetch", "fetch_dinov3", "features", "features_dinov3"]
    for name in own:
        mine, theirs = own[name]["do"], init[name]["do"]
        assert {k: v for k, v in mine.items() if k not in ("cmd", "deps")} == \
            {k: v for k, v in theirs.items() if k not in ("cmd", "deps")}, name
        arguments = [cmd.replace(" --stage", "").split(" --", 1)[1] for cmd in (mine["cmd"], theirs["cmd"])]
        assert arguments[0] == arguments[1], name  # the same arguments, whichever program takes them


@pytest.fixture
def toy_registered():
    """The toy family registered in this process, as a plug-in does; the catalog restored afterwards."""
    before = list(catalog.FAMILIES)
    catalog.register_family(toy.FAMILY)
    yield toy.FAMILY
    catalog.FAMILIES.clear()
    catalog._BY_NAME.clear()
    for family in before:
        catalog.register_family(family)


def test_a_family_may_not_take_another_s_names(toy_registered):
    import dataclasses

    from dinovault.errors import ConfigError

    with pytest.raises(ConfigError, match="'models' is already dinov2's"):
        catalog.register_family(dataclasses.replace(toy.FAMILY, name="toy2", select_key="models",
                                                    rows=(dataclasses.replace(toy.ROW, name="x", family="toy2"),)))
    assert "toy2" not in {f.name for f in catalog.FAMILIES}


def test_a_registered_family_has_its_keys_stages_and_entries(toy_registered):
    from dinovault.params import known_keys

    assert {"toyfam_models": list, "toyfam_save_dir": str, "toyfam_features": dict}.items() <= known_keys().items()
    assert "fetch_toyfam" in stages.blocks() and "features_toyfam" in stages.blocks()
    assert "toyfam_models: []" in stages.params_blocks()["toyfam_models"]
    assert catalog.get_spec(toy.MODEL) is toy.ROW and toy.MODEL in catalog.MODEL_NAMES


@pytest.fixture(scope="module")
def toy_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("toyserver")
    data = toy.checkpoint_bytes()
    path = root / "toyfam" / toy.MODEL / toy.FILE
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    server = start_server(root)
    registry = root / "registry.txt"
    registry.write_text(f"{toy.FILE} {len(data)} sha256:{hashlib.sha256(data).hexdigest()}\n", encoding="utf-8")
    server.env_toy = {"TOYFAM_BASE_URL": f"{server.origin}/toyfam", "DINOVAULT_REGISTRY": str(registry)}
    server.sha256 = hashlib.sha256(data).hexdigest()
    yield server
    server.close()


@pytest.fixture(scope="module")
def toy_project(tmp_path_factory, toy_server) -> Clone:
    """A project made by `dinovault init` (a path with a space and Chinese), the toy family registered in every
    process it starts through DINOVAULT_FAMILIES; then `dinovault fetch --model toyfam_tiny`."""
    base = tmp_path_factory.mktemp("toy machine")
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    machine = Machine(base, toy_server.env_toy, DINOVAULT_FAMILIES=PLUGIN, PYTHONPATH=pythonpath,
                      DINOVAULT_BACKOFF="0.05", DINOVAULT_TIMEOUT="5")
    p = Clone(base / "toy 项目", dict(machine.env, TORCH_HOME=str(base / "torch")))
    p.path.mkdir()
    p.git("init", "-q", "-b", "main")
    p.init_output = p.run(BIN / "dinovault", "init").text
    p.commit("dinovault init")
    p.fetch_output = p.run(BIN / "dinovault", "fetch", "--model", toy.MODEL).text
    p.remote = machine.default_remote
    return p


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_init_writes_the_plug_in_family_s_stage_keys_and_ignore_rules(toy_project):
    text = toy_project.init_output
    assert "fetch_toyfam (fetch_toyfam@<model> for each model in toyfam_models)" in text, text
    params = _yaml((toy_project.path / "params.yaml").read_text(encoding="utf-8"))
    assert params["toyfam_save_dir"] == "models/toyfam" and "toyfam_features" in params
    assert "/models/toyfam/*.pth" in (toy_project.path / ".gitignore").read_text(encoding="utf-8")


def test_fetch_verifies_and_records_the_plug_in_family_s_model(toy_project, toy_server):
    weights = toy_project.path / "models" / "toyfam" / f"{toy.MODEL}.pth"
    assert _sha256(weights) == toy_server.sha256
    assert f"fetch_toyfam@{toy.MODEL}" in toy_project.lock()["stages"]
    assert toy_server.requests, "the weights came from the test server"
    out = toy_project.run(BIN / "dinovault", "verify").text
    assert toy.MODEL in out, out


def test_verify_finds_bit_rot_in_the_plug_in_family_s_weights(toy_project):
    weights = toy_project.path / "models" / "toyfam" / f"{toy.MODEL}.pth"
    good, stat = weights.read_bytes(), weights.stat()
    damaged = bytearray(good)
    damaged[-20] ^= 0xFF
    tmp = weights.with_suffix(".tmp")  # a new file: the workspace file may be a hard link of the DVC cache
    tmp.write_bytes(bytes(damaged))
    os.replace(tmp, weights)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    try:
        out = toy_project.run(BIN / "dinovault", "verify", ok=False).text
        assert toy.MODEL in out, out
    finally:
        tmp.write_bytes(good)
        os.replace(tmp, weights)
        os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_push_then_pull_brings_the_plug_in_family_s_model_back(toy_project, toy_server):
    toy_project.commit("fetched")
    toy_project.run(BIN / "dinovault", "push")
    weights = toy_project.path / "models" / "toyfam" / f"{toy.MODEL}.pth"
    weights.unlink()
    shutil.rmtree(toy_project.path / ".dvc" / "cache")
    toy_project.run(BIN / "dinovault", "pull")
    assert _sha256(weights) == toy_server.sha256


def test_import_takes_a_hand_downloaded_file_of_the_plug_in_family(toy_project, toy_server, tmp_path):
    hand = tmp_path / "downloaded by hand.pth"
    hand.write_bytes(toy.checkpoint_bytes())
    torch_home = Path(toy_project.env["TORCH_HOME"])
    shutil.rmtree(torch_home, ignore_errors=True)
    out = toy_project.run(BIN / "dinovault", "import", hand).text
    assert toy.MODEL in out, out
    assert _sha256(torch_home / "hub" / "checkpoints" / toy.FILE) == toy_server.sha256


def test_the_extractor_and_load_backbone_run_the_plug_in_family_s_network(toy_project, toy_registered):
    from dinovault import DINOv2FeatureExtractor
    from dinovault.model.checkpoint import load_backbone

    weights = toy_project.path / "models" / "toyfam" / f"{toy.MODEL}.pth"
    model = load_backbone(weights, toy.ROW)
    assert torch.equal(model.state_dict()["proj.weight"], torch.load(weights, weights_only=True)["proj.weight"])
    fx = DINOv2FeatureExtractor(toy.MODEL, weights=weights, device="cpu")
    cls, patches = fx.extract(torch.rand(2, 3, 224, 224), patch_tokens=True)
    assert cls.shape == (2, toy.DIM) and patches.shape == (2, (224 // toy.PATCH) ** 2, toy.DIM)
    assert torch.isfinite(cls).all()


def test_a_plug_in_family_that_does_not_load_is_a_clear_error(tmp_path):
    import subprocess
    import sys

    env = dict(os.environ, DINOVAULT_FAMILIES="tests.support.no_such_module:FAMILY",
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    res = subprocess.run([sys.executable, "-m", "dinovault", "list"], env=env, cwd=tmp_path, capture_output=True,
                         text=True)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert "DINOVAULT_FAMILIES: cannot load 'tests.support.no_such_module:FAMILY'" in res.stderr
    assert "module:attribute" in res.stderr


def test_an_installed_package_registers_its_family_through_the_entry_point_group(tmp_path):
    """A distribution on sys.path naming the family under ``dinovault.families`` (what `pip install` of a plug-in
    leaves: its .dist-info with entry_points.txt) adds it to every process's catalog, DINOVAULT_FAMILIES unset."""
    import subprocess
    import sys

    info = tmp_path / "site" / "toyfam_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toyfam-plugin\nVersion: 1.0\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[{catalog.ENTRY_POINTS}]\ntoyfam = {PLUGIN}\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "DINOVAULT_FAMILIES"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tmp_path / "site"), str(ROOT), os.environ.get("PYTHONPATH", ""))
                                        if p)
    code = ("from dinovault.catalog import family_of; from dinovault.repo.stages import blocks; "
            f"print(family_of({toy.MODEL!r}).stage, 'fetch_toyfam' in blocks())")
    res = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["fetch_toyfam", "True"]
