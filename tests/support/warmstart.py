"""`invoke` and `dvc` commands of the tests' clones run as forks of one Python that has imported invoke and DVC.

A fresh `invoke fetch` spends ~0.45 of its ~0.7 CPU-seconds starting Python and importing invoke and DVC, and the
suite runs a few hundred such commands. ``Launcher`` keeps one interpreter per test process that has done those
imports once (and nothing else); each command is a fork of it that takes the command's working directory,
environment, argv and standard streams, runs the console script as Python would (``runpy``, ``__main__``) and exits
with its code. So a command is still a process of its own: its own exit code, module state, children, and a kill on
timeout. dinovault is never imported before the fork: the child imports the clone's own tasks.py and package, as a
fresh `invoke` does.

Not forked, but started as before: any other program, a stdin other than /dev/null, an environment whose PYTHON*
variables differ from the launcher's (they change how Python starts: the Windows simulation's sitecustomize, a
plug-in on PYTHONPATH), and a command while another one is running. The benchmarks in bench/ never fork (they time
real processes): only tests/conftest.py turns this on.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
from pathlib import Path

BIN = Path(sys.executable).parent
SCRIPTS = {BIN / "invoke", BIN / "dvc", BIN / "dinovault"}
# What every invoke/DVC command imports; none of it starts a thread or reads the environment when imported.
PRELOAD = ("invoke.main", "dvc.cli", "dvc.repo", "dvc.repo.reproduce", "dvc.repo.push", "dvc.repo.pull",
           "dvc.repo.fetch", "dvc.repo.status", "dvc.stage", "dvc.output", "dvc.dependency", "dvc.config",
           "dvc_data.hashfile", "dvc.commands.repro", "dvc.commands.status", "ruamel.yaml", "requests")


def fresh(argv, cwd, env, stdin=subprocess.DEVNULL, timeout=None) -> subprocess.CompletedProcess:
    """The command started as a fresh process: what ``Launcher.run`` stands in for."""
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, stdin=stdin, capture_output=True, text=True,
                          timeout=timeout)


def _python_settings(env) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith("PYTHON")}


class Launcher:
    """One forking interpreter (started on first use); ``run`` is ``subprocess.run(argv, cwd, env,
    stdin=DEVNULL, capture_output=True, text=True, timeout)`` for a console script in SCRIPTS."""

    def __init__(self, env: dict[str, str] | None = None):
        self.env = dict(env if env is not None else os.environ, PYTHONUNBUFFERED="1")
        self._proc: subprocess.Popen | None = None
        self._busy = threading.Lock()
        self.forked = 0  # commands run as forks (the others were started as before)

    def can_run(self, argv, env, stdin) -> bool:
        return (Path(argv[0]) in SCRIPTS and stdin is subprocess.DEVNULL
                and _python_settings(env) == _python_settings(self.env))

    def run(self, argv, cwd, env, stdin=subprocess.DEVNULL, timeout=None) -> subprocess.CompletedProcess:
        argv = [str(a) for a in argv]
        if not self.can_run(argv, env, stdin) or not self._busy.acquire(blocking=False):
            return fresh(argv, cwd, env, stdin, timeout)
        try:
            return self._forked(argv, str(cwd), dict(env), timeout)
        finally:
            self._busy.release()

    def _forked(self, argv, cwd, env, timeout) -> subprocess.CompletedProcess:
        import tempfile

        proc = self._started()
        with tempfile.TemporaryDirectory(prefix="warmstart-") as tmp:
            out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
            request = dict(argv=argv, cwd=cwd, env=env, stdout=str(out), stderr=str(err))
            proc.stdin.write((json.dumps(request) + "\n").encode())
            pid = json.loads(proc.stdout.readline())["pid"]
            ready, _, _ = select.select([proc.stdout], [], [], timeout)
            if not ready:
                os.kill(pid, 9)
                proc.stdout.readline()
                raise subprocess.TimeoutExpired(argv, timeout, out.read_bytes(), err.read_bytes())
            code = json.loads(proc.stdout.readline())["code"]
            self.forked += 1
            return subprocess.CompletedProcess(argv, code, _text(out), _text(err))

    def _started(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            # unbuffered: a line read must not leave the next one in a buffer that select() does not see
            self._proc = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          env=self.env, cwd=str(BIN), bufsize=0)
            hello = self._proc.stdout.readline()
            assert hello == b"ready\n", f"the launcher did not start: {hello!r}"
        return self._proc

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.stdin.close()
            self._proc.wait(timeout=30)


def _text(path: Path) -> str:
    # as subprocess.run(text=True) decodes: the locale's encoding, universal newlines
    with open(path, encoding=None, newline=None) as f:
        return f.read()


def _serve() -> None:
    """The launcher: import, then fork a child per request line on stdin; answer its pid, then its exit code."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    assert threading.active_count() == 1, "a preloaded module started a thread: forking would be unsafe"
    requests = os.fdopen(0, "rb", buffering=0)
    answer = os.fdopen(os.dup(1), "wb", buffering=0)
    answer.write(b"ready\n")
    while line := requests.readline():
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(request)  # never returns
        answer.write((json.dumps({"pid": pid}) + "\n").encode())
        _, status = os.waitpid(pid, 0)
        answer.write((json.dumps({"code": os.waitstatus_to_exitcode(status)}) + "\n").encode())


def _child(request: dict) -> None:
    import atexit
    import runpy
    import tempfile
    import traceback

    code = 1
    try:
        for fd, name, flags in ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], os.O_WRONLY | os.O_CREAT),
                                (2, request["stderr"], os.O_WRONLY | os.O_CREAT)):
            opened = os.open(name, flags, 0o600)
            os.dup2(opened, fd)
            os.close(opened)
        os.closerange(3, 256)  # the launcher's answer pipe: the command must not hold it
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        tempfile.tempdir = None  # TMPDIR is read again
        script = request["argv"][0]
        sys.argv = list(request["argv"])
        sys.path[0] = str(Path(script).parent)  # what a script's interpreter has first
        try:
            runpy.run_path(script, run_name="__main__")
            code = 0
        except SystemExit as done:
            if done.code is None or isinstance(done.code, int):
                code = done.code or 0
            else:
                print(done.code, file=sys.stderr)
                code = 1
        except BaseException:  # noqa: BLE001 - as the interpreter does with an uncaught exception
            sys.excepthook(*sys.exc_info())
            code = 1
        threading._shutdown()  # type: ignore[attr-defined]  # the interpreter's exit: wait for non-daemon threads
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001 - the launcher itself failed: say so in the command's stderr
        traceback.print_exc()
    finally:
        os._exit(code & 0xFF)


if __name__ == "__main__":
    _serve()
