"""`invoke` and `dvc` commands of the tests' clones run as forks of one Python that has imported invoke and DVC.

A fresh `invoke fetch` spends ~0.45 of its ~0.7 CPU-seconds starting Python and importing invoke and DVC, and the
suite runs a few hundred such commands. ``Launcher`` keeps one interpreter per test process that has done those
imports once (and nothing else); each command is a fork of it that takes the command's working directory,
environment, argv and standard streams, runs the console script as Python would (``runpy``, ``__main__``) and exits
with its code. So a command is still a process of its own: its own exit code, module state, children, and a kill on
timeout. dinovault is never imported before the fork: the child imports the clone's own tasks.py and package, as a
fresh `invoke` does.

A second kind (``Launcher(TORCH, python=True)``) serves ``python SCRIPT|-m MODULE|-c CODE ...`` for the tests
whose script or code loads a model anyway: its interpreter has imported torch (~1.7 CPU-s) and nothing of
dinovault or huggingface_hub (which reads HF_* when imported). Tests ask for it by name (``run_python``); a test
about what a command imports keeps a fresh process.

Not forked, but started as before: any other program, a stdin other than /dev/null, an environment whose PYTHON*
or thread-count variables differ from the launcher's (they change how Python starts or what the libraries read
when loaded: the Windows simulation's sitecustomize, a plug-in on PYTHONPATH, OMP_NUM_THREADS), one started with
Popen's own options (a new session, a preexec_fn), and everything when the launcher's imports started a thread
(forking would copy a process whose other threads are gone). Commands may run at once (``start``: the DDP case of
several fetches in one clone): the launcher answers each one's pid at once and its exit code when it ends. The
benchmarks in bench/ never fork (they time real processes): only tests/conftest.py turns this on.
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
# What invoke/DVC commands import (measured: the modules the suite's forked commands imported, about 80 ms of a
# fork's 360 ms before these were here), and the remotes' file systems (S3 alone ~250 ms). None of it starts a
# thread. What they read from the environment when imported, the tests do not vary: debug switches, TMPDIR (read
# again in the child), and dulwich's list of git credential files (for git over HTTP; the tests have none).
PRELOAD = ("invoke.main", "dvc.cli", "dvc.cli.parser", "dvc.repo", "dvc.repo.reproduce", "dvc.repo.push",
           "dvc.repo.pull", "dvc.repo.fetch", "dvc.repo.status", "dvc.repo.index", "dvc.repo.open_repo",
           "dvc.repo.plots", "dvc.stage", "dvc.output", "dvc.dependency", "dvc.config", "dvc.lock", "dvc.rwlock",
           "dvc.data_cloud", "dvc_data.hashfile", "dvc_data.hashfile.status", "dvc_data.index.checkout",
           "dvc_data.index.fetch", "dvc.commands.repro", "dvc.commands.status", "configobj", "platformdirs",
           "pyparsing", "filelock", "tenacity", "ruamel.yaml", "requests",
           "dvc_s3", "s3fs", "dvc_ssh", "sshfs", "dvc_webdav", "dvc_http")


# What a test's own python command imports before it builds or loads a model.
TORCH = ("torch", "numpy", "PIL.Image", "safetensors.torch", "requests")
PYTHON = str(Path(sys.executable))
STARTUP_SETTINGS = ("PYTHON", "OMP_", "OPENBLAS_", "MKL_")


def fresh(argv, cwd, env, stdin=subprocess.DEVNULL, timeout=None) -> subprocess.CompletedProcess:
    """The command started as a fresh process: what ``Launcher.run`` stands in for."""
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, stdin=stdin, capture_output=True, text=True,
                          timeout=timeout)


def popen(argv, cwd, env, stdin=subprocess.DEVNULL, **options) -> subprocess.Popen:
    """The command started as a fresh process and left running: what ``Launcher.start`` stands in for."""
    return subprocess.Popen([str(a) for a in argv], cwd=cwd, env=env, stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **options)


def startup_settings(env) -> dict[str, str]:
    """The variables that decide how Python and the libraries it loads start (threads). PYTHONUNBUFFERED is not
    one that matters here: a command's stdout and stderr go to files of their own, whatever their buffering."""
    return {k: v for k, v in env.items() if k.startswith(STARTUP_SETTINGS) and k != "PYTHONUNBUFFERED"}


class Forked:
    """A command forked by the launcher, as much of ``subprocess.Popen(..., text=True)`` as the tests use:
    ``args``, ``pid``, ``returncode``, ``poll``, ``wait``, ``communicate`` (its output, once it has ended), ``kill``."""

    def __init__(self, args: list[str], pid: int, tmp, done: threading.Event):
        self.args, self.pid, self._tmp, self._done = args, pid, tmp, done
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout)
        assert self.returncode is not None
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """(stdout, stderr) once it has ended; TimeoutExpired if it has not within ``timeout``."""
        self.wait(timeout)
        out, err = self._read("stdout"), self._read("stderr")
        self._tmp.cleanup()
        return out, err

    def kill(self) -> None:
        if self.returncode is None:
            os.kill(self.pid, 9)

    def _read(self, name: str) -> str:
        return _text(Path(self._tmp.name, name))


class Launcher:
    """One forking interpreter (started on first use) for a console script in SCRIPTS, or with ``python=True`` for
    ``sys.executable`` running a script, ``-m`` or ``-c``. ``run`` is ``subprocess.run(argv, cwd, env,
    stdin=DEVNULL, capture_output=True, text=True, timeout)``; ``start`` is ``subprocess.Popen`` with the same
    arguments (a ``Forked``, or a Popen for a command that cannot be forked). Several commands may run at once."""

    def __init__(self, preload: tuple[str, ...] = PRELOAD, *, python: bool = False,
                 env: dict[str, str] | None = None):
        self.preload = preload
        self.python = python
        self.env = dict(env if env is not None else os.environ)
        self._proc: subprocess.Popen | None = None
        self._sending = threading.Lock()  # one request and its "started" answer at a time
        self._started_pids: list[int] = []
        self._children: dict[int, Forked] = {}
        self._answered = threading.Condition()
        self._usable = True  # False when the preloaded interpreter had more than one thread
        self.forked = 0  # commands run as forks (the others were started as before)

    def can_run(self, argv, env, stdin) -> bool:
        if self.python:
            runs = argv[0] == PYTHON and len(argv) > 1 and (argv[1] in ("-c", "-m") or argv[1].endswith(".py"))
        else:
            runs = Path(argv[0]) in SCRIPTS
        return (runs and self._usable and stdin is subprocess.DEVNULL
                and startup_settings(env) == startup_settings(self.env))

    def run(self, argv, cwd, env, stdin=subprocess.DEVNULL, timeout=None) -> subprocess.CompletedProcess:
        argv = [str(a) for a in argv]
        if not self.can_run(argv, env, stdin) or self._started() is None:
            return fresh(argv, cwd, env, stdin, timeout)
        child = self.start(argv, cwd, env, stdin)
        try:
            out, err = child.communicate(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            out, err = child.communicate()
            raise subprocess.TimeoutExpired(argv, timeout, out, err) from None
        return subprocess.CompletedProcess(argv, child.returncode, out, err)

    def start(self, argv, cwd, env, stdin=subprocess.DEVNULL, **options):
        argv = [str(a) for a in argv]
        proc = self._started() if self.can_run(argv, env, stdin) and not options else None
        if proc is None:
            return popen(argv, cwd, env, stdin, **options)
        import tempfile

        tmp = tempfile.TemporaryDirectory(prefix="warmstart-")
        request = dict(argv=argv, cwd=str(cwd), env=dict(env), stdout=str(Path(tmp.name, "stdout")),
                       stderr=str(Path(tmp.name, "stderr")))
        with self._sending:
            proc.stdin.write((json.dumps(request) + "\n").encode())
            proc.stdin.flush()
            with self._answered:
                self._answered.wait_for(lambda: self._started_pids)
                pid = self._started_pids.pop(0)
                child = self._children[pid] = Forked(argv, pid, tmp, threading.Event())
        self.forked += 1
        return child

    def _read_answers(self, proc: subprocess.Popen) -> None:
        """The launcher's answers: ``{"started": pid}`` in the order of the requests, ``{"exited": pid, "code"}``."""
        for line in proc.stdout:
            answer = json.loads(line)
            with self._answered:
                if "started" in answer:
                    self._started_pids.append(answer["started"])
                    self._answered.notify_all()
                    continue
                self._answered.wait_for(lambda pid=answer["exited"]: pid in self._children)
                child = self._children.pop(answer["exited"])
            child.returncode = answer["code"]
            child._done.set()

    def _started(self) -> subprocess.Popen | None:
        if self._usable and (self._proc is None or self._proc.poll() is not None):
            self._proc = subprocess.Popen([sys.executable, __file__, *self.preload], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, env=self.env, cwd=str(BIN))
            hello = self._proc.stdout.readline()
            assert hello in (b"ready\n", b"threads\n"), f"the launcher did not start: {hello!r}"
            if hello == b"threads\n":
                self.close()
                self._usable = False
            else:
                threading.Thread(target=self._read_answers, args=(self._proc,), daemon=True).start()
        return self._proc if self._usable else None

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.stdin.close()
            self._proc.wait(timeout=30)


python_launcher: Launcher | None = None  # set by tests/conftest.py


def run_python(args, *, env=None, cwd=None, timeout=None) -> subprocess.CompletedProcess:
    """``subprocess.run([sys.executable, *args], capture_output=True, text=True, ...)``, forked from an interpreter
    that has imported torch when tests/conftest.py made one (``python_launcher``): for commands that load a model."""
    argv = [PYTHON, *map(str, args)]
    env = dict(os.environ if env is None else env)
    cwd = cwd or os.getcwd()
    if python_launcher is None:
        return fresh(argv, cwd, env, timeout=timeout)
    return python_launcher.run(argv, cwd, env, timeout=timeout)


def _text(path: Path) -> str:
    # as subprocess.run(text=True) decodes: the locale's encoding, universal newlines
    with open(path, encoding=None, newline=None) as f:
        return f.read()


def _serve(preload: list[str]) -> None:
    """The launcher: import, then fork a child per request line on stdin, answering its pid at once and its exit
    code when it ends (SIGCHLD wakes the loop), until stdin closes and the children have ended."""
    import importlib
    import signal
    import warnings

    with warnings.catch_warnings():  # asyncssh's DSA deprecation at import: a fork does not print it again
        warnings.simplefilter("ignore")
        for name in preload:
            importlib.import_module(name)
    answer = os.fdopen(os.dup(1), "wb", buffering=0)
    if len(os.listdir("/proc/self/task")) > 1:  # e.g. OpenBLAS's pool, unless OMP_NUM_THREADS=1
        answer.write(b"threads\n")
        return
    woken, wake = os.pipe()
    os.set_blocking(woken, False)
    os.set_blocking(wake, False)
    signal.set_wakeup_fd(wake)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    answer.write(b"ready\n")
    pending, running, reading = b"", set(), True
    while reading or running:
        ready, _, _ = select.select([0, woken] if reading else [woken], [], [])
        if woken in ready:
            while os.read(woken, 512) == 512:
                pass
            while running and (ended := os.waitpid(-1, os.WNOHANG))[0]:
                running.discard(ended[0])
                code = os.waitstatus_to_exitcode(ended[1])
                answer.write((json.dumps({"exited": ended[0], "code": code}) + "\n").encode())
        if 0 in ready:
            data = os.read(0, 1 << 16)
            reading = bool(data)
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    _child(json.loads(line))  # never returns
                running.add(pid)
                answer.write((json.dumps({"started": pid}) + "\n").encode())


def _child(request: dict) -> None:
    import atexit
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
        try:
            _main(request["argv"])
            code = 0
        except SystemExit as done:
            if done.code is None or isinstance(done.code, int):
                code = done.code or 0
            else:
                print(done.code, file=sys.stderr)
                code = 1
        except BaseException as err:  # noqa: BLE001 - as the interpreter does with an uncaught exception
            tb = _their_frames(err.__traceback__, request["argv"])
            sys.excepthook(type(err), err.with_traceback(tb), tb)
            code = 1
        threading._shutdown()  # type: ignore[attr-defined]  # the interpreter's exit: wait for non-daemon threads
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001 - the launcher itself failed: say so in the command's stderr
        traceback.print_exc()
    finally:
        os._exit(code & 0xFF)


def _main(argv: list[str]) -> None:
    """Run what ``argv`` names as Python's command line would: a console script, or ``python`` with a script, ``-m``
    or ``-c``, in a fresh ``__main__`` with the sys.argv and first sys.path entry that Python gives each."""
    import runpy
    import types

    sys.modules["__main__"] = main = types.ModuleType("__main__")
    main.__builtins__ = __builtins__  # type: ignore[attr-defined]
    if argv[0] != PYTHON:
        sys.argv, sys.path[0] = list(argv), str(Path(argv[0]).parent)
        runpy.run_path(argv[0], run_name="__main__")
    elif argv[1] == "-m":
        sys.argv, sys.path[0] = [argv[2], *argv[3:]], os.getcwd()
        runpy._run_module_as_main(argv[2])  # type: ignore[attr-defined]  # what `python -m` calls
    elif argv[1] == "-c":
        sys.argv, sys.path[0] = ["-c", *argv[3:]], ""
        exec(compile(argv[2], "<string>", "exec"), main.__dict__)
    else:
        sys.argv, sys.path[0] = list(argv[1:]), os.path.dirname(os.path.realpath(argv[1]))
        runpy.run_path(argv[1], run_name="__main__")


def _their_frames(tb, argv: list[str]):
    """The traceback without the launcher's frames, nor runpy's where Python's own start has none (all but -m)."""
    runpy_too = not (argv[0] == PYTHON and argv[1] == "-m")
    while tb is not None and (tb.tb_frame.f_code.co_filename == __file__
                              or runpy_too and tb.tb_frame.f_code.co_filename == "<frozen runpy>"):
        tb = tb.tb_next
    return tb

if __name__ == "__main__":
    _serve(sys.argv[1:])
