"""The suite removes its temporary data as it goes (issue 17 item 2): an inner pytest run with this suite's
conftest and pytest settings, in a temp folder of its own, leaves nothing behind when it passes, removes a
module-scoped fixture's folder at that module's end and a passing test's folders when it ends, and keeps the
folders of a failing one for a look."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MAKE = '''
import pytest

@pytest.fixture(scope="module")
def big(tmp_path_factory):
    folder = tmp_path_factory.mktemp("big")
    (folder / "blob").write_bytes(b"x" * 2_000_000)
    return folder

def test_uses_tmp_path(big, tmp_path):
    (tmp_path / "f").write_bytes(b"y" * 2_000_000)
    assert (big / "blob").is_file()

def test_makes_a_folder_in_its_body(big, tmp_path_factory):
    (tmp_path_factory.mktemp("body") / "f").write_bytes(b"z" * 2_000_000)
    assert (big / "blob").is_file()
'''

CHECK = '''
def test_the_first_module_left_nothing(tmp_path_factory):
    # pytest's own: its lock file and the "<name>current" links to the newest folders (dead ones go at the end)
    left = sorted(p.name for p in tmp_path_factory.getbasetemp().iterdir() if not p.is_symlink() and p.name != ".lock")
    assert left == [], left
'''

FAIL = '''
import pytest

@pytest.fixture(scope="module")
def kept(tmp_path_factory):
    return tmp_path_factory.mktemp("kept")

def test_fails(kept, tmp_path):
    (tmp_path / "evidence").write_text("look here")
    assert False
'''


def inner_run(tmp_path: Path, files: dict[str, str]) -> tuple[subprocess.CompletedProcess, Path]:
    project, temp = tmp_path / "project", tmp_path / "temp"
    project.mkdir()
    temp.mkdir()
    # the suite's own retention settings (tomllib is 3.11+; these are two plain lines of pyproject.toml)
    ini = dict(re.findall(r'^(tmp_path_retention_\w+) = "?(\w+)"?$', (ROOT / "pyproject.toml").read_text(), re.M))
    assert ini == {"tmp_path_retention_policy": "failed", "tmp_path_retention_count": "1"}, ini
    lines = "".join(f"{k} = {v}\n" for k, v in ini.items())
    (project / "pytest.ini").write_text("[pytest]\n" + lines, encoding="utf-8")
    for name, text in files.items():
        (project / name).write_text(text, encoding="utf-8")
    env = dict(os.environ, TMPDIR=str(temp), PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider"],
                         cwd=project, env=env, capture_output=True, text=True, timeout=300)
    return res, temp


def disk(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def test_a_passing_run_removes_its_data_as_it_goes(tmp_path):
    res, temp = inner_run(tmp_path, {"test_1_make.py": MAKE, "test_2_check.py": CHECK})
    assert res.returncode == 0, res.stdout + res.stderr
    assert "3 passed" in res.stdout
    assert disk(temp) < 100_000, sorted(temp.rglob("*"))


def test_a_failing_test_keeps_its_folders(tmp_path):
    res, temp = inner_run(tmp_path, {"test_1_make.py": MAKE, "test_3_fail.py": FAIL})
    assert res.returncode == 1 and "1 failed, 2 passed" in res.stdout, res.stdout + res.stderr
    names = {p.name for p in temp.rglob("*")}
    assert "evidence" in names and any(n.startswith("kept") for n in names)
    assert "blob" not in names  # the passing module's folder still went
    assert disk(temp) < 100_000
