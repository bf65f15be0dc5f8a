"""The tests' forked commands (tests/support/warmstart.py) give what fresh processes give: the same exit code, stdout
and stderr, from a clone's own tasks.py, in its working directory and environment."""

from __future__ import annotations

import subprocess

from tests.support.clones import BIN, Machine, snapshot_worktree
from tests.support.warmstart import Launcher

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
