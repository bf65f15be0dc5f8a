"""The tests' forked commands (tests/support/warmstart.py) give what fresh processes give: the same exit code, stdout
and stderr, from a clone's own tasks.py, in its working directory and environment."""

from __future__ import annotations

import os
import subprocess

from tests.support.clones import BIN, Machine, snapshot_worktree
from tests.support.warmstart import PYTHON, TORCH, Launcher

COMMANDS = [
    ("invoke", "--list"),
    ("invoke", "list"),  # reads params.yaml and dvc.lock from the working directory
    ("invoke", "fetch", "--model", "dinov2_vits41"),  # an unknown model: exit 1, one line on stderr
    ("invoke", "status"),  # opens DVC
    ("dvc", "config", "core.remote"),  # no default remote: DVC's exit code and message
    ("dinovault", "list"),
]


def test_a_forked_command_is_what_a_fresh_process_gives(tmp_path):
    machine = Machine(tmp_path / "machine", {"DINOV2_BASE_URL": "http://127.0.0.1:9/dinov2"},
                      snapshot_worktree(tmp_path / "source"))
    c = machine.clone("c")
    launcher = Launcher()
    try:
        codes = set()
        for program, *args in COMMANDS:
            argv = [str(BIN / program), *args]
            fresh = subprocess.run(argv, cwd=c.path, env=c.env, stdin=subprocess.DEVNULL, capture_output=True,
                                   text=True)
            forked = launcher.run(argv, c.path, c.env)
            assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout,
                                                                          fresh.stderr), argv
            codes.add(fresh.returncode)
        assert launcher.forked == len(COMMANDS)  # all forked, none started as a fresh process
        assert 0 in codes and len(codes) > 1  # successes and failures both compared
        # a different PYTHONPATH changes how Python starts: started as before, not forked
        launcher.run([str(BIN / "invoke"), "--list"], c.path, {**c.env, "PYTHONPATH": str(tmp_path)})
        assert launcher.forked == len(COMMANDS)
    finally:
        launcher.close()


PROBE = "import sys; print(sys.argv[1:], sys.path[0] == {first!r}, __name__); sys.exit(len(sys.argv))"


def test_a_forked_python_command_is_what_a_fresh_process_gives(tmp_path):
    """``python SCRIPT``, ``python -m MODULE`` and ``python -c CODE`` from the interpreter that has imported torch:
    the same argv, first sys.path entry, __name__, exit code, output and traceback as a fresh Python's, and torch
    computing on as many threads."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "probe.py").write_text(PROBE.format(first=str(tmp_path / "pkg")), encoding="utf-8")
    (tmp_path / "probe_mod.py").write_text(PROBE.format(first=str(tmp_path)), encoding="utf-8")
    (tmp_path / "fails.py").write_text("raise ValueError('no / 不')\n", encoding="utf-8")
    commands = [[str(tmp_path / "pkg" / "probe.py"), "a", "b"], ["-m", "probe_mod", "x"],
                ["-c", PROBE.format(first=""), "y", "z"], [str(tmp_path / "fails.py")], ["-m", "fails"],
                ["-c", "import torch; print(torch.get_num_threads(), torch.randn(3, generator=torch.Generator())"
                       ".shape)"]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as under `invoke test`: else numpy's BLAS starts threads
    launcher = Launcher(TORCH, python=True, env=env)
    try:
        for args in commands:
            argv = [PYTHON, *args]
            fresh = subprocess.run(argv, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                   text=True)
            forked = launcher.run(argv, tmp_path, env)
            assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout,
                                                                          fresh.stderr), args
        assert launcher.forked == len(commands)
        assert fresh.stdout == "1 torch.Size([3])\n"
        # unbuffered output is the same output (the clones' environments ask for it): forked too
        launcher.run([PYTHON, "-c", "pass"], tmp_path, {**env, "PYTHONUNBUFFERED": "1"})
        assert launcher.forked == len(commands) + 1
        # other thread settings: started as before
        launcher.run([PYTHON, "-c", "pass"], tmp_path, {**env, "OMP_NUM_THREADS": "3"})
        assert launcher.forked == len(commands) + 1
    finally:
        launcher.close()


MEET = """import sys, time
from pathlib import Path
me, everyone = int(sys.argv[1]), int(sys.argv[2])
Path(f"here-{me}").touch()
deadline = time.monotonic() + 60
while len(list(Path().glob("here-*"))) < everyone:  # only commands running at the same time all get past this
    if time.monotonic() > deadline:
        sys.exit(f"{me}: alone")
    time.sleep(0.05)
print(f"{me} met the others")
sys.exit(me)
"""


def test_commands_started_together_run_together_each_with_its_own_end(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = Launcher(("json",), python=True, env=env)
    try:
        children = [launcher.start([PYTHON, "-c", MEET, str(i), "3"], tmp_path, env) for i in range(3)]
        ended = [(c.communicate(timeout=120), c.returncode) for c in children]
        assert launcher.forked == 3
    finally:
        launcher.close()
    assert ended == [((f"{i} met the others\n", ""), i) for i in range(3)]
