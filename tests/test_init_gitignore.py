"""Issue 21 item 8: a project made by `dinovault init` keeps every export kind out of git, by the same rules as this
repository's own .gitignore: one definition (dinovault.exports.formats.ignore_rules) for both.

The project is a fresh git repository on a simulated machine (tests/support/clones.py) with the real `dinovault`,
`dvc` and `git` CLIs, fetching dinov2_vits14 from the loopback server.
"""

from __future__ import annotations

from pathlib import Path

from dinovault.exports.formats import EXTRA_FORMATS, ignore_rules
from dinovault.params import load_params
from tests.support.clones import BIN, Clone, Machine

ROOT = Path(__file__).resolve().parents[1]
VITS = "dinov2_vits14"
WEIGHTS = (".pth", ".safetensors", ".bin")


def test_this_repository_s_gitignore_holds_the_rules_init_writes():
    lines = set((ROOT / ".gitignore").read_text(encoding="utf-8").splitlines())
    for save_dir in load_params(ROOT / "params.yaml").save_dirs.values():
        rules = ignore_rules(save_dir)
        assert len(rules) == 2 + len(EXTRA_FORMATS)  # weights, cards, one folder per export kind
        assert set(rules) <= lines, sorted(set(rules) - lines)


def test_an_initialised_project_stages_no_weights_after_the_folder_is_checked_out_again(tmp_path, dinov2_server):
    machine = Machine(tmp_path / "machine", dinov2_server.env, DINOVAULT_BACKOFF="0.05", DINOVAULT_TIMEOUT="5")
    project = Clone(tmp_path / "my project", dict(machine.env, TORCH_HOME=str(tmp_path / "torch")))
    project.path.mkdir()
    project.git("init", "-q", "-b", "main")
    (project.path / "train.py").write_text("print('train')\n", encoding="utf-8")
    project.run(BIN / "dinovault", "init")
    params = project.path / "params.yaml"
    params.write_text(params.read_text(encoding="utf-8").replace("formats: [pth]", "formats: [pth, safetensors, hf]")
                      .replace("smoke_test: true", "smoke_test: false"), encoding="utf-8")
    assert load_params(params).formats == ("pth", "safetensors", "hf")
    project.run(BIN / "dinovault", "fetch", "--model", VITS)
    folder = project.path / "models" / "dinov2"
    exported = [folder / f"{VITS}.pth", folder / "safetensors" / VITS / f"{VITS}.safetensors",
                folder / "hf" / VITS / "model.safetensors"]
    assert all(p.is_file() for p in exported)
    project.git("add", "-A")
    assert not staged_weights(project)
    project.git("commit", "-q", "-m", "dinovault")

    project.run("rm", "-rf", "models/dinov2")
    project.run(BIN / "dvc", "checkout")
    assert all(p.is_file() for p in exported)
    project.git("add", "-A")
    assert not staged_weights(project)


def staged_weights(project: Clone) -> list[str]:
    staged = project.git("diff", "--cached", "--name-only").stdout.splitlines()
    return [p for p in staged if p.endswith(WEIGHTS) or ("/hf/" in p and not p.endswith("/.gitignore"))]
