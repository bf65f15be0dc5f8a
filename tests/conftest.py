"""Shared fixtures. Each concern keeps its fixtures in tests/support/<concern>.py; they are imported here
so that session-scoped servers start once per test session.

Temporary data goes as the suite goes (issue 17: a run used to leave 11 GB in the system temp folder): pytest
removes each passing test's ``tmp_path`` (``tmp_path_retention_policy = "failed"`` in pyproject.toml) and, when
everything passed, the whole run's folder at the end; the folders that a module- or class-scoped fixture makes with
``tmp_path_factory.mktemp`` (clones, machines, servers' files) are removed when that fixture is torn down, unless a
test failed while it was set up (kept for a look, like the failed tests' ``tmp_path``); and what a passing test's
body makes with ``tmp_path_factory.mktemp`` goes when it ends.
"""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
# Under pytest-xdist (`invoke test` runs 2 workers a core) every process computes on one thread: torch's default of
# one thread a core, in each of several workers and their subprocesses, leaves the cores' time in OpenMP's waits
# (measured on 2 cores, 4 workers: 531 s and 1000 CPU-s with the default, 415 s and 782 CPU-s with one thread). Set
# before torch is imported, so that subprocesses inherit it; a test that is about several threads asks for them
# (the ``machine_threads`` fixture).
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # and the test that asks for a thread a core does not spin waiting for a thread another worker holds the core
    # of (the forward-at-every-batch tests with two busy processes beside them: 26.4 -> 18.1 CPU-s)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Only loopback traffic: the default DINOVAULT_SOURCES ends with huggingface, so a test whose official source fails
# would otherwise ask huggingface.co. Port 9 on 127.0.0.1 refuses at once; tests of the Hugging Face source set
# HF_ENDPOINT to their own server. A private HF_HOME keeps the user's Hugging Face cache out of the tests.
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="dinovault-hf-home-")
atexit.register(shutil.rmtree, os.environ["HF_HOME"], ignore_errors=True)
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.pop("HF_HUB_OFFLINE", None)
from tests.support import warmstart  # noqa: E402
from tests.support.checkpoints import models_dir  # noqa: E402,F401
from tests.support.clones import Clone  # noqa: E402
from tests.support.disks import tmpfs  # noqa: E402,F401
from tests.support.httpserver import dinov2_server, faulty_server, torch_home_dir  # noqa: E402,F401
from tests.support.servers import s3_server, ssh_server, webdav_server  # noqa: E402,F401
from tests.support.warmstart import Launcher  # noqa: E402

# The clones' `invoke`/`dvc`/`dinovault` commands fork from one interpreter that has imported invoke and DVC (tests/
# support/warmstart.py): each is still a process of its own, without ~0.45 CPU-s of start-up.
Clone.launcher = Launcher()
atexit.register(Clone.launcher.close)
# The tests' own `python` commands that load a model (warmstart.run_python, Clone.run) fork from one that has
# imported torch (~1.7 CPU-s each otherwise).
warmstart.python_launcher = Launcher(warmstart.TORCH, python=True)
atexit.register(warmstart.python_launcher.close)

# The modules that take longest, measured (`invoke test` prints the slowest tests), run first: pytest-xdist hands
# whole modules (--dist loadfile) to the workers in this order, so that none starts a long one at the end.
LONGEST_FIRST = ("test_remotes", "test_pipeline", "test_features", "test_backbone", "test_hub", "test_newcomer_batch",
                 "test_backbone_hf", "test_own_project", "test_pull_verifies", "test_hardening_concurrency",
                 "test_newcomer_quickstart", "test_convert", "test_exports", "test_integrity")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: each module's own order kept


@pytest.fixture
def machine_threads():
    """torch with one thread a core for this test, as a user's process has, whatever the workers' setting."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    yield
    torch.set_num_threads(before)


_SCOPED = ("module", "class", "package")
_nested: list[set[Path]] = []  # per fixture being set up: what fixtures set up inside it made (not its to remove)


def _children(folder: Path) -> set[Path]:
    return set(folder.iterdir()) if folder.is_dir() else set()


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    """Remove what a module/class-scoped fixture made under the run's temp folder when it is torn down."""
    if fixturedef.scope not in (*_SCOPED, "session") or fixturedef.argname == "tmp_path_factory":
        return (yield)
    base = request.getfixturevalue("tmp_path_factory").getbasetemp()
    before = _children(base)
    made: list[Path] = []
    session = request.session
    failed_before = session.testsfailed

    def remove() -> None:
        if session.testsfailed > failed_before:  # kept for a look, as pytest keeps the failed tests' tmp_path
            return
        for path in made:
            shutil.rmtree(path, ignore_errors=True)

    if fixturedef.scope in _SCOPED:
        # registered before the fixture runs, so it runs after the fixture's own teardown (last in, first out)
        fixturedef.addfinalizer(remove)
    _nested.append(set())
    try:
        return (yield)
    finally:
        new = _children(base) - before
        made.extend(sorted(new - _nested.pop()))  # a session fixture it asked for keeps its folder
        if _nested:
            _nested[-1].update(new)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """Remove what a passing test's body made with ``tmp_path_factory.mktemp`` (e.g. test_backbone_hf's on-disk
    Hugging Face folders, read once when the model is loaded) when it ends."""
    factory = getattr(item, "funcargs", {}).get("tmp_path_factory")  # a body can only mktemp with it
    if factory is None:
        return (yield)
    base = factory.getbasetemp()
    before = _children(base)
    outcome = yield  # re-raises a failure: then nothing is removed
    for path in sorted(_children(base) - before):
        shutil.rmtree(path, ignore_errors=True)
    return outcome
