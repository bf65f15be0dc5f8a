"""The newcomer's path (issue 17, items 1 and 3): the README's Quick start leaves the repository clean, and git
never sees weights.

- The Quick start's fetch, run as written in a real clone against the loopback mirror, leaves `dvc status` and
  `invoke status` up to date and `git status` without weights: params.yaml selects what it fetches.
- The root .gitignore ignores every export kind under the default save_dir even when the folder's own .gitignore
  files are gone (`rm -rf models/dinov2`).
- The fetch script writes a `.gitignore` into a `--save_dir` outside DVC, so `git add -n` of it lists no weights.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.clones import Machine, snapshot_worktree

ROOT = Path(__file__).resolve().parents[1]
VITB = "dinov2_vitb14"
WEIGHT_SUFFIXES = (".pth", ".safetensors", ".bin")


def quick_start_fetch() -> str:
    """The fetch part of the README Quick start's first command (the venv and install parts are what runs this)."""
    from tests.test_tasks import quick_start_commands

    return quick_start_commands()[0].split("&&")[-1].strip()


def weights_in(lines: list[str]) -> list[str]:
    return [ln for ln in lines if ln.rstrip("'\"").endswith(WEIGHT_SUFFIXES) or "/hf/" in ln or "safetensors/" in ln]


@pytest.fixture(scope="module")
def machine(tmp_path_factory, dinov2_server) -> Machine:
    """A machine whose mirror (the loopback server) also serves dinov2_vitb14 (real architecture, random weights),
    pinned with dinov2_vits14 in a registry of its own."""
    from dinovault.catalog import get_spec

    from .support.checkpoints import save_checkpoint
    from .support.httpserver import registry_line

    spec = get_spec(VITB)
    served = dinov2_server.root / "dinov2" / spec.upstream_path
    if not served.exists():
        save_checkpoint(spec, served, seed=2)
        dinov2_server.files[served.name] = served
    base = tmp_path_factory.mktemp("quickstart")
    registry = base / "registry.txt"
    registry.write_text("".join(registry_line(Path(p)) + "\n" for p in dinov2_server.files.values()), encoding="utf-8")
    return Machine(base / "machine", dinov2_server.env, snapshot_worktree(base / "source"),
                   DINOVAULT_REGISTRY=str(registry), DINOVAULT_BACKOFF="0.05", DINOVAULT_TIMEOUT="5")


def test_params_select_what_the_quick_start_fetches():
    from dinovault.params import load_params

    fetch = quick_start_fetch()
    assert fetch.startswith("invoke fetch"), fetch
    named = fetch.split()[3::2] if "--model" in fetch else None  # `invoke fetch --model A --model B`
    selected = list(load_params(ROOT / "params.yaml").models)
    assert named is None or named == selected, f"the Quick start fetches {named}, params.yaml selects {selected}"


def test_quick_start_fetch_leaves_dvc_and_git_clean(machine):
    q = machine.clone("q")
    params = (q.path / "params.yaml").read_bytes()
    res = q.run("bash", "-c", quick_start_fetch())
    assert f"fetch@{VITB}" in res.text
    assert "is empty" not in res.text, res.text  # DVC's warning for the folders of formats not chosen (issue 15.9)
    weights = q.weights(VITB)
    assert q.lock_md5(VITB) == hashlib.md5(weights.read_bytes()).hexdigest()
    assert (q.path / "params.yaml").read_bytes() == params  # nothing to add: already selected

    dvc_status = q.dvc("status").stdout
    assert "Data and pipelines are up to date" in dvc_status, dvc_status
    invoke_status = q.invoke("status").stdout
    assert "up to date" in invoke_status and "changed" not in invoke_status, invoke_status

    changed = q.git("status", "--porcelain", "--untracked-files=all").stdout.splitlines()
    assert not weights_in(changed), changed
    assert sorted(ln[3:] for ln in changed) == ["dvc.lock", f"metrics/{VITB}.json"], changed
    # the README's "record and share" step then stages no weights either
    staged = q.git("add", "-n", "params.yaml", "dvc.lock", "models", "metrics").stdout.splitlines()
    assert not weights_in(staged) and staged, staged

    # deleted and checked out again: the folder's .gitignore comes back from git, the root rules hold meanwhile
    q.run("rm", "-rf", "models/dinov2")
    assert not weights_in(q.git("add", "-n", "models").stdout.splitlines())
    q.dvc("checkout")
    assert weights.is_file()
    assert not weights_in(q.git("add", "-n", "models").stdout.splitlines())
    assert "Data and pipelines are up to date" in q.dvc("status").stdout


def test_root_gitignore_covers_every_export_kind_without_the_folders_own(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".gitignore").write_bytes((ROOT / ".gitignore").read_bytes())
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    exports = [
        "models/dinov2/dinov2_vits14.pth",
        "models/dinov2/dinov2_vits14.json",
        "models/dinov2/safetensors/dinov2_vits14/dinov2_vits14.safetensors",
        "models/dinov2/hf/dinov2_vits14/model.safetensors",
        "models/dinov2/hf/dinov2_vits14/config.json",
    ]
    for rel in exports:
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_bytes(b"x")
    out = subprocess.run(["git", "add", "-n", "models"], cwd=repo, capture_output=True, text=True, check=True).stdout
    assert out == "", out
    ignored = subprocess.run(["git", "check-ignore", *exports], cwd=repo, capture_output=True, text=True).stdout
    assert ignored.split() == exports


def test_script_save_dir_outside_dvc_gets_a_gitignore(machine):
    s = machine.clone("s")
    script = [sys.executable, "scripts/download_dinov2.py", "--model", "dinov2_vits14", "--skip-test",
              "--formats", "safetensors,hf"]
    s.run(*script, "--save_dir", "./models")  # the original README's usage
    made = s.path / "models" / ".gitignore"
    assert made.read_text(encoding="utf-8") == "*\n!.gitignore\n"
    assert (s.path / "models" / "dinov2_vits14.pth").is_file()
    assert (s.path / "models" / "safetensors" / "dinov2_vits14" / "dinov2_vits14.safetensors").is_file()
    assert (s.path / "models" / "hf" / "dinov2_vits14" / "model.safetensors").is_file()
    listed = s.git("add", "-n", "models").stdout.splitlines()
    assert listed == ["add 'models/.gitignore'"], listed
    # an absolute path into the repository: the same
    s.run(*script, "--save_dir", s.path / "weights" / "dinov2")
    assert (s.path / "weights" / "dinov2" / ".gitignore").is_file()
    assert not weights_in(s.git("add", "-n", "weights").stdout.splitlines())
    # a folder in no git work tree (D:\models on Windows): git cannot stage it, nothing added there
    elsewhere = machine.base / "elsewhere"
    s.run(*script, "--save_dir", elsewhere)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["dinov2_vits14.json", "dinov2_vits14.pth", "hf",
                                                         "safetensors"]
    # a .gitignore the user already has is left as it is (never written into)
    (s.path / "mine").mkdir()
    (s.path / "mine" / ".gitignore").write_text("*.pth\n", encoding="utf-8")
    s.run(*script, "--save_dir", "mine")
    assert (s.path / "mine" / ".gitignore").read_text(encoding="utf-8") == "*.pth\n"
    # the DVC save_dir of params.yaml gets none: the root .gitignore and DVC's own entries cover it
    s.run(*script, "--save_dir", "models/dinov2")
    assert (s.path / "models" / "dinov2" / ".gitignore").read_text(encoding="utf-8") == (
        ROOT / "models" / "dinov2" / ".gitignore"
    ).read_text(encoding="utf-8")


def test_metrics_are_the_same_bytes_on_every_rerun(machine):
    """issue 17 item 5: no timings in metrics/<m>.json (git would show a diff after every rerun); the smoke test's
    time is printed instead."""
    m = machine.clone("m")
    script = [sys.executable, "scripts/download_dinov2.py", "--model", "dinov2_vits14", "--save_dir", "models/dinov2",
              "--metrics", "metrics/dinov2_vits14.json"]
    first = m.run(*script)
    metrics = m.path / "metrics" / "dinov2_vits14.json"
    written = metrics.read_bytes()
    second = m.run(*script)
    assert metrics.read_bytes() == written
    assert written.decode() == '{\n  "embed_dim": 384,\n  "num_params": 22056576,\n  "smoke_test": true\n}\n'
    for res in (first, second):
        assert "Smoke test passed" in res.stdout and "smoke test: one forward pass in" in res.stderr
