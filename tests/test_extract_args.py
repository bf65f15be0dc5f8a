"""`invoke extract`'s arguments are checked before torch is imported (a wrong one was reported after 8-17 s, or as a
traceback): one bilingual line, exit 1, nothing written (issue 15 item 5, issue 17 item 5)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE = """
import sys
from dinovault.cli import ops
try:
    ops.extract("dinov2_vits14", *sys.argv[1:4])
except SystemExit as done:
    print("exit", done.code, "torch imported" if "torch" in sys.modules else "no torch")
"""


@pytest.mark.parametrize(("images", "out", "batch", "says"), [
    ("{tmp}/missing", "{tmp}/f.npz", "32", "no image folder at"),
    ("{tmp}", "{tmp}/f.npz", "0", "--batch-size must be a whole number of at least 1"),
    ("{tmp}", "{tmp}/f.npz", "-3", "--batch-size must be a whole number of at least 1"),
    ("{tmp}", "{tmp}/a-file/f.npz", "32", "cannot be created under"),
    ("{tmp}", "{tmp}", "32", "is a folder"),
])
def test_a_wrong_argument_fails_at_once(images, out, batch, says, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    args = [a.format(tmp=tmp_path) for a in (images, out, batch)]
    r = subprocess.run([sys.executable, "-c", CODE, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "exit 1 no torch", (r.stdout, r.stderr)
    assert says in r.stderr and " / " in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
