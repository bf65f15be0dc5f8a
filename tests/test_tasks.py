"""tasks.py: every task documented in one line with help for each parameter; listing them imports nothing heavy."""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

from dinovault.catalog import MODEL_NAMES

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
EXPECTED = {"fetch", "list", "status", "verify", "push", "pull", "clean", "test"}


def _collection():
    from invoke import Collection

    sys.path.insert(0, str(ROOT))
    try:
        import tasks
    finally:
        sys.path.remove(str(ROOT))
    return Collection.from_module(tasks)


def test_every_task_has_a_one_line_docstring_and_help_for_each_parameter():
    tasks = _collection().tasks
    assert EXPECTED <= set(tasks)
    for name, task in tasks.items():
        doc = inspect.getdoc(task.body) or ""
        assert doc and "\n" not in doc.strip(), f"{name}: needs a one-line docstring, got {doc!r}"
        params = [p for p in inspect.signature(task.body).parameters if p != "c"]
        missing = [p for p in params if not (task.help or {}).get(p)]
        assert not missing, f"invoke {name}: no help= for {missing}"


def test_fetch_and_pull_take_a_repeatable_model():
    tasks = _collection().tasks
    for name in ("fetch", "pull"):
        assert "model" in tasks[name].iterable, name


def test_listing_tasks_imports_neither_torch_nor_dvc():
    code = (
        "import sys; sys.path.insert(0, '.'); import tasks; "
        "heavy = sorted(m for m in ('torch', 'dvc', 'dvc.repo', 'requests') if m in sys.modules); print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    res = subprocess.run([str(BIN / "invoke"), "--list"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    for name in EXPECTED:
        assert f"  {name} " in res.stdout or f"  {name}\n" in res.stdout


def test_help_of_a_task_shows_its_parameters():
    res = subprocess.run([str(BIN / "invoke"), "--help", "fetch"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0
    assert "--model" in res.stdout and "dinov2_vitb14" in res.stdout


def quick_start_commands() -> list[str]:
    """The shell commands of the README's Quick start code block."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_readme_quick_start_is_two_commands_and_ci_runs_the_second():
    first, second = quick_start_commands()  # exactly two
    assert "pip install -e" in first and "invoke fetch --model dinov2_vitb14" in first
    assert second == "invoke test"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    ci_commands = [line.strip() for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert ci_commands[-1] == second  # CI ends with exactly the README's second command
    assert "ruff check ." in ci_commands
    # and installs the project the way the first command does
    for part in first.split("&&")[:-1]:
        assert part.strip() in ci, part


def test_one_set_of_short_flags_r_is_remote_everywhere():
    """`-r` is `--remote` in every task that has a remote (verify had `-r` for `--repair`: `verify -r home` failed
    with "No idea what 'home' is!")."""

    for name in ("verify", "push", "pull", "status"):
        out = subprocess.run([str(BIN / "invoke"), "--help", name], cwd=ROOT, capture_output=True, text=True,
                             timeout=60).stdout
        assert re.search(r"-r STRING, --remote=STRING", out), (name, out)


def test_readme_counts_the_torch_hub_entries_of_hubconf():
    """The README's torch.hub paragraph names as many entries as hubconf.py defines, in both languages (it said 8
    after DINOv3 added 13)."""
    spec = importlib.util.spec_from_file_location("hubconf_counted", ROOT / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    entries = [k for k, v in vars(module).items() if callable(v) and not k.startswith("_")]
    assert sorted(entries) == sorted(MODEL_NAMES)
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())  # lines joined as one paragraph
    assert f"with the {len(entries)} official entry names" in readme and f"全部 {len(entries)} 个官方入口名" in readme


def test_invoke_caches_the_package_bytecode(tmp_path):
    """invoke turns bytecode caching off for what tasks.py imports; tasks.py turns it back on for the package, or every
    `invoke` command compiled dinovault from source (a third of a no-op `invoke fetch`, bench/bench_pipeline.py)."""
    from tests.support.clones import copy_worktree

    clone = copy_worktree(tmp_path / "clone")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    res = subprocess.run([str(BIN / "invoke"), "--list"], cwd=clone, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert list((clone / "dinovault" / "cli" / "__pycache__").glob("ops.*.pyc"))
    assert not list(clone.glob("__pycache__/tasks.*.pyc"))  # tasks.py itself stays as invoke wants it
