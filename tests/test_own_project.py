"""Issue 16: dinovault from a project of one's own, with a wheel built from this checkout installed in a fresh venv
(never the editable install), the real `dvc` CLI and the loopback server of tests/support/httpserver.py.

The venv reuses the shared venv's packages through a ``.pth`` line (so torch and DVC need no download); that line
only adds the folder to sys.path, so the editable install's finder (a ``.pth`` of its own) is not run there, and the
venv's own site-packages, holding the wheel, comes first.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.support.clones import Clone, Machine, copy_worktree, snapshot_worktree

VITS = "dinov2_vits14"
VITS_FILE = "dinov2_vits14_pretrain.pth"
OWN_PARAMS = "# the project's own parameters\nlr: 0.1  # learning rate\nepochs: 3\n"
OWN_DVC_YAML = """\
# the project's own pipeline
stages:
    train:  # its own stage
        cmd: python -c "print('trained')" > model.txt
        params:
            - lr
        outs:
            - model.txt
"""
EXTRACT = """\
import sys, torch, dinovault
from dinovault import DINOv2FeatureExtractor
fx = DINOv2FeatureExtractor("dinov2_vits14", device="cpu")
print("weights", fx.weights)
print("package", dinovault.__file__)
print("shape", tuple(fx.extract(torch.zeros(1, 3, 224, 224)).shape))
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv holding the wheel built from this checkout; returns its bin folder."""
    base = tmp_path_factory.mktemp("venv")
    src = copy_worktree(base / "src")  # builds there, leaving no build/ in the checkout
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(src), "-w",
                    str(base / "wheel")], check=True, capture_output=True)
    wheel = next((base / "wheel").glob("dinovault-*.whl"))
    env = base / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = env / ("Scripts" if os.name == "nt" else "bin") / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "shared-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    return python.parent


@pytest.fixture(scope="module")
def machine(tmp_path_factory, dinov2_server, venv) -> Machine:
    m = Machine(tmp_path_factory.mktemp("machine"), dinov2_server.env, DINOVAULT_BACKOFF="0.05", DINOVAULT_TIMEOUT="5")
    m.env["PATH"] = os.pathsep.join([str(venv), m.env["PATH"]])  # `dinovault` is the wheel's, `dvc` the shared one
    m.env.pop("PYTHONPATH", None)
    return m


def new_project(machine: Machine, name: str, torch_home: str = "torch-project") -> Clone:
    path = machine.base / name
    path.mkdir()
    p = Clone(path, dict(machine.env, TORCH_HOME=str(machine.base / torch_home)))
    p.git("init", "-q", "-b", "main")
    p.dvc("init", "-q")
    return p


@pytest.fixture(scope="module")
def project(machine, venv) -> Clone:
    """An existing git+DVC project with its own stage and params, run once; then `dinovault init` twice and
    `dinovault fetch --model dinov2_vits14`."""
    p = new_project(machine, "face000")
    (p.path / "params.yaml").write_text(OWN_PARAMS, encoding="utf-8")
    (p.path / "dvc.yaml").write_text(OWN_DVC_YAML, encoding="utf-8")
    p.dvc("repro")
    p.commit("the project's own pipeline")
    p.own_lock = p.lock()["stages"]["train"]
    p.init_output = p.run(venv / "dinovault", "init").text
    tracked = ("dvc.yaml", "params.yaml", ".gitignore", ".dvc/config", ".dinovault/package.json")
    p.after_init = {f: (p.path / f).read_bytes() for f in tracked}
    p.init_again = p.run(venv / "dinovault", "init").text
    p.after_second_init = {f: (p.path / f).read_bytes() for f in tracked}
    p.commit("dinovault init")
    p.fetch_output = p.run(venv / "dinovault", "fetch", "--model", VITS).text
    return p


def test_the_package_is_the_wheel_and_help_imports_nothing_heavy(venv, machine, tmp_path):
    where = subprocess.run([str(venv / "python"), "-c", "import dinovault; print(dinovault.__file__)"],
                           env=machine.env, cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert Path(where.strip()).is_relative_to(venv.parent), where
    for args in (["--help"], ["fetch", "--help"]):
        res = subprocess.run([str(venv / "python"), "-X", "importtime", "-m", "dinovault", *args], env=machine.env,
                             cwd=tmp_path, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr[-2000:]
        imported = {line.split("|")[-1].strip().split(".")[0] for line in res.stderr.splitlines() if "|" in line}
        assert "dinovault" in imported and "argparse" in imported  # importtime really listed the imports
        assert not imported & {"torch", "dvc", "ruamel", "requests", "numpy"}, imported & {"torch", "dvc"}
    assert "--save_dir" in res.stdout and "--model" in res.stdout and "--stage" in res.stdout


def test_init_adds_the_stage_and_keeps_the_project_s_own(project):
    out = project.init_output
    assert "dvc.yaml: stage fetch" in out and "params.yaml: added models, save_dir, formats, smoke_test" in out
    assert "next / 下一步: dinovault fetch --model" in out
    params = project.after_init["params.yaml"].decode()
    assert params.startswith(OWN_PARAMS)  # the project's own keys and comments, byte for byte
    dvc_yaml = project.after_init["dvc.yaml"].decode()
    assert dvc_yaml.startswith(OWN_DVC_YAML)
    assert "cmd: dinovault fetch --stage --model ${item}" in dvc_yaml and "- .dinovault/package.json" in dvc_yaml
    record = json.loads(project.after_init[".dinovault/package.json"])
    assert record["version"] and record["fetch_code"].startswith("sha256:")
    config = project.after_init[".dvc/config"].decode()
    assert "remote = home" in config and "hardlink,symlink" in config
    assert "/models/dinov2/*.pth" in project.after_init[".gitignore"].decode()


def test_init_twice_changes_nothing(project):
    assert project.after_second_init == project.after_init
    assert "nothing changed / 已初始化，无变化" in project.init_again


def test_fetch_records_identical_weights_and_leaves_the_project_s_own_alone(project, dinov2_server):
    weights = project.path / "models" / "dinov2" / f"{VITS}.pth"
    assert sha256(weights) == sha256(dinov2_server.files[VITS_FILE])
    assert f"{VITS}: models/dinov2/{VITS}.pth" in project.fetch_output and "fetched / 已获取" in project.fetch_output
    lock = project.lock()["stages"]
    assert project.lock_md5(VITS) == hashlib.md5(weights.read_bytes()).hexdigest()
    assert lock["train"] == project.own_lock
    assert any(d["path"] == ".dinovault/package.json" for d in lock[f"fetch@{VITS}"]["deps"])
    params = (project.path / "params.yaml").read_text(encoding="utf-8")
    assert params.startswith(OWN_PARAMS) and (f"- {VITS}" in params or f"[{VITS}]" in params)
    project.dvc("repro")
    assert "up to date" in project.dvc("status").stdout
    project.git("check-ignore", "-q", f"models/dinov2/{VITS}.pth")


def test_push_and_pull_in_the_project(project, venv):
    weights = project.path / "models" / "dinov2" / f"{VITS}.pth"
    digest = sha256(weights)
    assert "sent" in project.run(venv / "dinovault", "push").stdout
    weights.unlink()
    for obj in (project.path / ".dvc" / "cache").rglob("*"):
        if obj.is_file():
            obj.unlink()
    project.run(venv / "dinovault", "pull")
    assert sha256(weights) == digest
    assert "up to date" in project.dvc("status").stdout


def test_a_package_upgrade_reruns_the_stage_and_fetch_records_the_installed_one(project, venv):
    record = project.path / ".dinovault" / "package.json"
    installed = record.read_bytes()
    older = dict(json.loads(installed), version="0.0.1")  # what an older release recorded
    record.write_text(json.dumps(older), encoding="utf-8")
    status = project.dvc("status").stdout
    assert f"fetch@{VITS}" in status and "changed deps" in status and ".dinovault/package.json" in status
    out = project.run(venv / "dinovault", "fetch").text  # every selected model
    assert "recorded the installed dinovault in .dinovault/package.json" in out
    assert record.read_bytes() == installed  # the lock's deps again: nothing left to rerun
    assert "up to date" in project.dvc("status").stdout


def test_the_extractor_finds_the_project_s_weights_from_a_subfolder(project, venv, machine):
    sub = project.path / "src" / "train"
    sub.mkdir(parents=True)
    env = dict(project.env, TORCH_HOME=str(machine.base / "torch-empty"))  # not from the torch.hub cache
    res = subprocess.run([str(venv / "python"), "-c", EXTRACT], cwd=sub, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"weights {project.path / 'models' / 'dinov2' / f'{VITS}.pth'}" in res.stdout
    assert f"package {venv.parent}" in res.stdout and "shape (1, 384)" in res.stdout


def test_fetch_outside_any_repository_fills_the_cache_and_the_extractor_loads_it(machine, venv, dinov2_server):
    folder = machine.base / "scratch" / "notes"
    folder.mkdir(parents=True)
    torch_home = machine.base / "torch-scratch"
    env = dict(machine.env, TORCH_HOME=str(torch_home))
    res = subprocess.run([str(venv / "dinovault"), "fetch", "--model", VITS], cwd=folder, env=env,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Model downloaded" in res.stdout and "Smoke test passed" in res.stdout
    cached = torch_home / "hub" / "checkpoints" / VITS_FILE
    assert sha256(cached) == sha256(dinov2_server.files[VITS_FILE])
    assert not (folder / ".dvc").exists() and not (folder / "models").exists()
    res = subprocess.run([str(venv / "python"), "-c", EXTRACT], cwd=folder, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"weights {cached}" in res.stdout and "shape (1, 384)" in res.stdout
    with_dir = subprocess.run([str(venv / "dinovault"), "fetch", "--model", VITS, "--save_dir", "w", "--skip-test"],
                              cwd=folder, env=env, capture_output=True, text=True)
    assert with_dir.returncode == 0, with_dir.stderr
    assert sha256(folder / "w" / f"{VITS}.pth") == sha256(cached)


def test_dvc_import_from_a_dinovault_clone_gives_identical_bytes(machine, venv, project, tmp_path_factory):
    """The data-registry route: a dinovault clone with a local remote, imported by another repository."""
    source = snapshot_worktree(tmp_path_factory.mktemp("registry-source"))
    registry = machine.clone("registry", source, torch_home=machine.base / "torch-project")  # the file is cached
    registry.select(VITS)
    params = registry.path / "params.yaml"
    params.write_text(params.read_text(encoding="utf-8").replace("smoke_test: true", "smoke_test: false"), "utf-8")
    registry.run(venv / "dinovault", "fetch", "--model", VITS)
    registry.run(venv / "dinovault", "push")
    registry.commit("models")
    weights = registry.weights(VITS)

    user = new_project(machine, "consumer")
    (user.path / "weights").mkdir()
    user.dvc("import", registry.path, f"models/dinov2/{VITS}.pth", "-o", "weights/vits14.pth")
    assert sha256(user.path / "weights" / "vits14.pth") == sha256(weights)
    user.dvc("update", "weights/vits14.pth.dvc")
    assert "up to date" in user.dvc("status").stdout
    user.dvc("get", registry.path, f"models/dinov2/{VITS}.pth", "-o", "once.pth")
    assert sha256(user.path / "once.pth") == sha256(weights)
