"""Concurrent `invoke fetch` in one clone (the DDP case: every rank runs it): the fetches take turns, the later ones
report "up to date", and params.yaml, dvc.lock and `dvc status` agree after every round. A fetch that fails
deselects only the model it added. Real `invoke`/`dvc` CLIs, the small files of ``faulty_server``, smoke test off.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.support.clones import BIN, Clone, Machine, snapshot_worktree

VITS, VITB = "dinov2_vits14", "dinov2_vitb14"
PROCESSES = 8


@pytest.fixture
def clone(tmp_path, faulty_server) -> Clone:
    source = snapshot_worktree(tmp_path / "source")
    machine = Machine(tmp_path / "machine", faulty_server.env, source, DINOVAULT_BACKOFF="0.05", DINOVAULT_TIMEOUT="5",
                      DINOVAULT_RETRIES="1")
    c = machine.clone("c")
    c.select()
    c.skip_smoke_test()
    c.commit("nothing selected, no smoke test")
    return c


def fetch_together(c: Clone, models: list[str]) -> list[subprocess.CompletedProcess]:
    """One `invoke fetch --model M` process per entry of ``models``, all started at once."""
    procs = [c.start(BIN / "invoke", "fetch", "--model", m) for m in models]
    done = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        res = subprocess.CompletedProcess(p.args, p.returncode, out, err)
        res.text = out + err
        done.append(res)
    return done


def selected(c: Clone) -> list[str]:
    from dinovault.params import load_params

    return list(load_params(c.path / "params.yaml").models)


def assert_consistent(c: Clone, models: set[str]) -> None:
    assert set(selected(c)) == models
    stages = set(c.lock()["stages"]) if (c.path / "dvc.lock").exists() else set()
    assert stages == {f"fetch@{m}" for m in models}
    for m in models:
        assert c.lock_md5(m)
        assert c.weights(m).is_file()
    status = c.dvc("status").stdout
    assert "up to date" in status, status


def test_eight_fetches_at_once_take_turns(clone):
    c = clone
    t0 = time.monotonic()
    # round 1: same model, from nothing
    runs = fetch_together(c, [VITS] * PROCESSES)
    for r in runs:
        assert r.returncode == 0, r.text
        assert "LockError" not in r.text and "its own message" not in r.text, r.text
    assert sum(f"{VITS}: models/dinov2/{VITS}.pth" in r.stdout and "fetched" in r.stdout for r in runs) == 1
    assert sum("up to date / 已是最新" in r.stdout for r in runs) == PROCESSES - 1
    assert_consistent(c, {VITS})
    # round 2: two models, one new
    runs = fetch_together(c, [VITS, VITB] * (PROCESSES // 2))
    assert all(r.returncode == 0 for r in runs), [r.text for r in runs if r.returncode]
    assert sum("fetched / 已获取" in r.stdout for r in runs) == 1
    assert_consistent(c, {VITS, VITB})
    # round 3: everything up to date already
    runs = fetch_together(c, [VITB, VITS] * (PROCESSES // 2))
    assert all(r.returncode == 0 and "up to date / 已是最新" in r.stdout for r in runs)
    assert_consistent(c, {VITS, VITB})
    assert time.monotonic() - t0 < 600


def test_a_failing_fetch_deselects_only_its_own_model(clone, faulty_server):
    c = clone
    faulty_server.fault("dinov2_vitb14_pretrain.pth", status=404)
    runs = fetch_together(c, [VITS, VITB, VITS, VITB])
    for r, model in zip(runs, [VITS, VITB, VITS, VITB], strict=True):
        assert (r.returncode == 0) == (model == VITS), r.text
    failed = [r for r in runs if r.returncode]
    assert all("error:" in r.stderr and "Traceback" not in r.text for r in failed)
    assert_consistent(c, {VITS})  # vitb14 deselected again by each failure, vits14 kept


def test_ctrl_c_during_a_fetch_exits_130_and_puts_params_yaml_back(clone, faulty_server):
    """Ctrl-C reaches the whole foreground process group: the stage's command stops (exit 130) while DVC ignores
    the signal; `invoke fetch` must then exit 130 too (it said 1), with the selection it added undone."""
    import os
    import signal

    params = (clone.path / "params.yaml").read_bytes()
    faulty_server.fault(throttle=200_000)  # slow enough to be interrupted mid-download
    # as from a terminal: a CI runner may start the suite with SIGINT ignored (a background job), which children
    # inherit; the fetch gets the default disposition back, as an interactive shell gives it
    proc = subprocess.Popen([str(BIN / "invoke"), "fetch", "--model", VITS], cwd=clone.path, env=clone.env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    part = clone.torch_cache / f"{VITS}_pretrain.pth.part"
    deadline = time.monotonic() + 120
    while not part.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert part.exists(), "the download never started"
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "interrupted / 已中断" in err and "Traceback" not in err, err
    assert (clone.path / "params.yaml").read_bytes() == params
