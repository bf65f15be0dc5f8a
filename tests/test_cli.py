"""Issue 16, in-process: the `dinovault` command mirrors the invoke tasks, `dinovault init` merges into any shape of
project (and refuses what it must not touch), and the weights are found in the documented order, never unverified.
The installed-wheel end-to-end checks are in tests/test_own_project.py."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from dinovault.cli.main import build_parser, main
from dinovault.errors import MissingWeightsError, ParamsError, RepoError, VerificationError
from dinovault.inference.weights import find_weights
from dinovault.params import load_params
from dinovault.repo.init import PACKAGE_FILE, init, package_record, refresh_package_file
from tests.support.httpserver import random_bytes, write_registry
from tests.test_tasks import _collection

NAME = "dinov2_vits14"


def _subcommands() -> dict:
    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices


def test_every_task_is_a_command_with_the_same_options():
    commands = _subcommands()
    for name, task in _collection().tasks.items():
        if name == "test":
            continue
        sub = commands[name]
        flags = {s for a in sub._actions for s in a.option_strings}
        positionals = {a.dest for a in sub._actions if not a.option_strings}
        for param in inspect.signature(task.body).parameters:
            if param == "c":
                continue
            assert f"--{param.replace('_', '-')}" in flags or param in positionals, f"dinovault {name}: no {param}"
    assert {"init", "fetch"} <= set(commands)
    fetch_flags = {s for a in commands["fetch"]._actions for s in a.option_strings}
    assert {"--save_dir", "--stage", "--skip-test", "--metrics", "--from", "--all"} <= fetch_flags


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "dinovault init" in capsys.readouterr().out


def _git_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q"], cwd=path, check=True)
    return path


def _stages(path: Path) -> dict:
    return YAML(typ="safe").load((path / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def test_init_in_a_bare_git_repository_runs_dvc_init(tmp_path, monkeypatch):
    repo = _git_repo(tmp_path / "bare")
    monkeypatch.chdir(repo)
    done = init()
    assert (repo / ".dvc").is_dir() and ".dvc/: dvc init" in done.changed
    assert load_params(repo / "params.yaml").models == ()
    assert "fetch" in _stages(repo)
    assert (repo / PACKAGE_FILE).is_file()
    (repo / "sub").mkdir()
    assert init(repo / "sub").changed == []  # from a subfolder: the same project, nothing left to change


def test_init_into_stages_that_are_not_last_keeps_them(tmp_path):
    repo = _git_repo(tmp_path / "p")
    text = "stages:\n  prep:\n    cmd: echo hi  # say hi\n    deps: [a.txt]\nartifacts:\n  m:\n    path: m.pt\n"
    (repo / "dvc.yaml").write_text(text, encoding="utf-8")
    init(repo)
    stages = _stages(repo)
    assert stages["prep"] == {"cmd": "echo hi", "deps": ["a.txt"]} and "fetch" in stages
    after = (repo / "dvc.yaml").read_text(encoding="utf-8")
    assert "# say hi" in after and "artifacts:" in after
    assert init(repo).changed == []


def test_init_refuses_a_stage_named_fetch_of_its_own_and_a_bad_params_file(tmp_path):
    repo = _git_repo(tmp_path / "p")
    (repo / "dvc.yaml").write_text("stages:\n  fetch:\n    cmd: wget data.zip\n", encoding="utf-8")
    with pytest.raises(RepoError, match="already has a stage named 'fetch'"):
        init(repo)
    assert not (repo / "params.yaml").exists() or "models" not in (repo / "params.yaml").read_text()
    other = _git_repo(tmp_path / "q")
    (other / "params.yaml").write_text("models: resnet50\n", encoding="utf-8")
    with pytest.raises(ParamsError, match="models must be a list"):
        init(other)
    assert not (other / ".dvc").exists() and not (other / "dvc.yaml").exists()  # nothing written
    (tmp_path / "nowhere").mkdir()
    with pytest.raises(RepoError, match="not inside a git repository"):
        init(tmp_path / "nowhere")


def test_params_of_an_initialised_project_keep_its_own_keys_but_catch_typos(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("lr: 0.1\ntrain: {epochs: 3}\nmodels: []\n", encoding="utf-8")
    with pytest.raises(ParamsError, match="unknown key 'lr'"):
        load_params(path)  # dinovault's own params.yaml: every key is one of ours
    (tmp_path / PACKAGE_FILE).parent.mkdir()
    (tmp_path / PACKAGE_FILE).write_text("{}", encoding="utf-8")  # `dinovault init` was here
    assert load_params(path).models == ()
    path.write_text("models: []\nsave-dir: x\n", encoding="utf-8")
    with pytest.raises(ParamsError, match="unknown key 'save-dir'"):
        load_params(path)


def test_the_package_record_follows_the_installed_package(tmp_path):
    repo = tmp_path / "p"
    repo.mkdir()
    assert refresh_package_file(repo) is False  # no stage depends on it: not written
    (repo / "dvc.yaml").write_text(f"stages:\n  fetch:\n    cmd: dinovault fetch --stage\n    deps: [{PACKAGE_FILE}]\n")
    assert refresh_package_file(repo) is True and refresh_package_file(repo) is False
    (repo / PACKAGE_FILE).write_text('{"version": "0.0.1"}\n', encoding="utf-8")  # as an older release wrote it
    assert refresh_package_file(repo) is True
    assert package_record()["fetch_code"] in (repo / PACKAGE_FILE).read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------- finding the weights


@pytest.fixture
def pinned(tmp_path, torch_home_dir, monkeypatch):
    """A pin for the small file standing for dinov2_vits14's official one, and that file."""
    good = tmp_path / "served" / "dinov2_vits14_pretrain.pth"
    good.parent.mkdir()
    good.write_bytes(random_bytes(4096, seed=3))
    monkeypatch.setenv("DINOVAULT_REGISTRY", str(write_registry(tmp_path / "registry.txt", [good])))
    monkeypatch.delenv("DINOVAULT_MODELS_DIR", raising=False)
    cache = torch_home_dir / "hub" / "checkpoints" / good.name
    cache.parent.mkdir(parents=True)
    return good, cache


def test_weights_are_found_in_order(pinned, tmp_path, monkeypatch):
    good, cache = pinned
    project = _git_repo(tmp_path / "project")  # found upward as git finds its repository
    (project / "src").mkdir(parents=True)
    (project / "params.yaml").write_text("lr: 1\nsave_dir: nets\n", encoding="utf-8")
    monkeypatch.chdir(project / "src")
    cache.write_bytes(good.read_bytes())
    assert find_weights(NAME) == cache  # the verified cache file, last
    (project / "nets").mkdir()
    (project / "nets" / f"{NAME}.pth").write_bytes(b"x")
    with pytest.raises(VerificationError, match=f"nets/{NAME}.pth is not the official {NAME} .*: a damaged, "):
        find_weights(NAME)  # other bytes under an official name in the save_dir are refused, not skipped
    (project / "nets" / f"{NAME}.pth").unlink()
    (project / "nets" / f"{NAME}.pth").write_bytes(good.read_bytes())
    assert find_weights(NAME) == project / "nets" / f"{NAME}.pth"  # the repository's save_dir, found upward
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    monkeypatch.setenv("DINOVAULT_MODELS_DIR", str(env_dir))
    with pytest.raises(MissingWeightsError, match=f"no weights for {NAME} at {env_dir / NAME}.pth / "):
        find_weights(NAME)  # when set, the only place looked at
    mine = tmp_path / "mine.pth"
    mine.write_bytes(b"y")
    assert find_weights(NAME, weights=mine) == mine  # weights= first of all


def test_an_unverified_cache_file_is_never_used_and_the_error_names_every_place(pinned, tmp_path, monkeypatch):
    good, cache = pinned
    cache.write_bytes(random_bytes(4096, seed=4))  # the pinned size, other bytes
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    monkeypatch.chdir(folder)
    with pytest.raises(MissingWeightsError) as err:
        find_weights(NAME, repo=tmp_path / "clone")
    text = str(err.value)
    assert str(tmp_path / "clone" / "models" / "dinov2" / f"{NAME}.pth") in text
    assert f"{cache} (not verified: sha256" in text
    assert f"dinovault fetch --model {NAME}" in text and f"dvc pull models/dinov2/{NAME}.pth" in text
    assert len(text.splitlines()) == 2
    cache.unlink()
    cache.write_bytes(good.read_bytes())
    assert find_weights(NAME) == cache


def test_dinovault_fetch_is_the_api_function_once_the_pipeline_is_imported():
    code = ("import dinovault, dinovault.pipeline, dinovault.api; from dinovault.pipeline import fetch_model; "
            "assert dinovault.fetch is dinovault.api.fetch and dinovault.fetch_model is fetch_model")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_importing_dinovault_and_the_cli_imports_nothing_heavy():
    code = ("import sys, dinovault, dinovault.cli.main; dinovault.fetch; dinovault.verify; "
            "print(sorted(m for m in ('torch', 'dvc', 'ruamel', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------------------------------------- the public API


def test_api_fetch_verify_and_import_outside_any_repository(faulty_server, torch_home_dir, tmp_path, monkeypatch):
    import dinovault
    from dinovault.errors import VerificationError

    monkeypatch.setenv("DINOV2_BASE_URL", faulty_server.base_url)
    monkeypatch.setenv("DINOVAULT_REGISTRY", str(faulty_server.registry))
    monkeypatch.setenv("DINOVAULT_SOURCES", "official")
    monkeypatch.delenv("DINOVAULT_MODELS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    served = faulty_server.files["dinov2_vits14_pretrain.pth"]
    path = dinovault.fetch(NAME, smoke_test=False)  # no repository here: the torch.hub cache
    assert path == torch_home_dir / "hub" / "checkpoints" / served.name
    assert path.read_bytes() == served.read_bytes() and faulty_server.hits(served.name) >= 1
    checked = dinovault.verify(NAME)
    assert (checked.model, checked.path, checked.size) == (NAME, path, served.stat().st_size)
    assert dinovault.verify(path=served).model == NAME  # the model is the one whose pin the file matches
    bad = tmp_path / "bad.pth"
    bad.write_bytes(served.read_bytes()[:-1] + b"\0")
    with pytest.raises(VerificationError, match="matches no pinned DINOv2 or DINOv3 file"):
        dinovault.verify(path=bad)
    with pytest.raises(VerificationError, match="sha256 .* differs from the pinned"):
        dinovault.verify(NAME, path=bad)
    path.unlink()
    hand = tmp_path / "downloaded by hand.pth"
    hand.write_bytes(served.read_bytes())
    assert dinovault.import_file(hand) == NAME and path.read_bytes() == served.read_bytes()
    saved = dinovault.fetch(NAME, tmp_path / "weights", smoke_test=False)  # save_dir: the script's behaviour
    assert saved == tmp_path / "weights" / f"{NAME}.pth" and saved.read_bytes() == served.read_bytes()


def test_api_load_backbone_finds_the_weights(models_dir, tmp_path, monkeypatch):
    import torch

    import dinovault

    monkeypatch.setenv("DINOVAULT_MODELS_DIR", str(models_dir))
    model = dinovault.load_backbone(NAME)
    assert not model.training and model.embed_dim == 384
    again = dinovault.load_backbone(NAME, weights=models_dir / f"{NAME}.pth")
    assert torch.equal(model.cls_token, again.cls_token)
    monkeypatch.setenv("DINOVAULT_MODELS_DIR", str(tmp_path))
    with pytest.raises(MissingWeightsError, match=f"dinovault fetch --model {NAME}"):
        dinovault.load_backbone(NAME)


def test_fetch_says_which_options_belong_where(tmp_path, monkeypatch, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    monkeypatch.chdir(outside)
    assert main(["fetch"]) == 2
    err = capsys.readouterr().err
    assert "no dinovault repository here: name the model / 不在 dinovault 仓库中" in err and "dinovault init" in err
    repo = _git_repo(tmp_path / "repo")
    init(repo)
    monkeypatch.chdir(repo)
    assert main(["fetch", "--model", NAME, "--metrics", "m.json"]) == 2
    assert "--metrics is for fetching without DVC" in capsys.readouterr().err
    assert main(["fetch", "--model", "dinov2_vits41"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "did you mean dinov2_vits14" in err and "Traceback" not in err
    assert load_params(repo / "params.yaml").models == ()  # an unknown name never reaches params.yaml
