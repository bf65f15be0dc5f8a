"""DVC's own error shown, with what to do, where "(its own message is above)" used to stand over nothing: DVC's lock
held by another process, a params.yaml without a key dvc.yaml reads, an output the stage did not write, a DVC cache
on a full disk; and what an interrupted pull leaves in .dvc/cache removed by the next pull. Real `invoke`/`dvc` CLIs
in fresh clones, the small files of ``faulty_server``, smoke test off.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.clones import Clone, Machine, snapshot_worktree

VITS = "dinov2_vits14"


@pytest.fixture
def machine(tmp_path, faulty_server) -> Machine:
    return Machine(tmp_path / "machine", faulty_server.env, snapshot_worktree(tmp_path / "source"),
                   DINOVAULT_BACKOFF="0.05", DINOVAULT_TIMEOUT="5", DINOVAULT_RETRIES="1")


def fresh(machine: Machine, name: str = "c") -> Clone:
    c = machine.clone(name)
    c.select()
    c.skip_smoke_test()
    c.commit("nothing selected, no smoke test")
    return c


def assert_dvc_error(res, *expected: str) -> None:
    assert res.returncode == 1, res.text
    assert "its own message is above" not in res.text and "Traceback" not in res.text, res.text
    assert sum(line.startswith("error: ") for line in res.stderr.splitlines()) == 1, res.text
    for text in expected:
        assert text in res.stderr, res.text


def test_dvc_lock_held_by_another_process(machine):
    c = fresh(machine)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom dvc.repo import Repo\nr = Repo('.')\nr.lock.lock()\n"
         "print('held', flush=True)\ntime.sleep(120)"],
        cwd=c.path, env=c.env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        params = (c.path / "params.yaml").read_bytes()
        res = c.invoke("fetch", "--model", VITS, ok=None)
        assert_dvc_error(res, "Unable to acquire lock", "(LockError)", "another DVC process")
        assert (c.path / "params.yaml").read_bytes() == params
    finally:
        holder.kill()
        holder.wait()


def test_params_yaml_without_a_key_dvc_yaml_reads(machine):
    c = fresh(machine)
    params = c.path / "params.yaml"
    params.write_text(params.read_text(encoding="utf-8").replace("smoke_test: false\n", ""), encoding="utf-8")
    res = c.invoke("fetch", "--model", VITS, ok=None)
    assert_dvc_error(res, "Parameters 'smoke_test' are missing from 'params.yaml'", "(MissingParamsError)",
                     "smoke_test: true")


def test_an_output_the_stage_did_not_write(machine):
    c = fresh(machine)
    dvc_yaml = c.path / "dvc.yaml"
    text = dvc_yaml.read_text(encoding="utf-8")
    dvc_yaml.write_text(text.replace("        - ${save_dir}/${item}.json\n",
                                     "        - ${save_dir}/${item}.json\n        - ${save_dir}/${item}.extra\n"),
                        encoding="utf-8")
    res = c.invoke("fetch", "--model", VITS, ok=None)
    assert_dvc_error(res, f"output 'models/dinov2/{VITS}.extra' does not exist", "(OutputDoesNotExistError)",
                     "check dvc.yaml")


def test_next_pull_removes_what_an_interrupted_pull_left_in_the_cache(machine):
    a = fresh(machine, "a")
    a.invoke("fetch", "--model", VITS)
    a.invoke("push")
    a.commit("fetched")
    b = machine.clone("b", source=a.path)
    md5 = a.lock_md5(VITS)
    folder = b.cache_object(md5).parent
    folder.mkdir(parents=True)
    leftovers = [folder / ".AbCdEfGhIjKlMnOpQrStUv.tmp",  # DVC's copy of a local/ssh remote object
                 folder / f"{md5[2:]}.ZyXwVuTsRqPoNmLkJiHgFe.tmp",  # DVC's copyfile
                 folder / f".{md5[2:]}.12345.678.pull"]  # remotes/s3.py
    for path in leftovers:
        path.write_bytes(os.urandom(1 << 20))
    keep = folder / "unrelated-file"
    keep.write_bytes(b"x")
    res = b.invoke("pull")
    assert "leftover temporary file(s) removed" in res.stdout, res.text
    assert not any(p.exists() for p in leftovers) and keep.exists()
    assert b.lock_md5(VITS) == a.lock_md5(VITS) and b.weights(VITS).is_file()


@pytest.fixture
def tiny_disk(tmpfs):
    """A 1 MiB tmpfs: a disk that fills at once."""
    return tmpfs("tiny", "1m")


def test_dvc_cache_on_a_full_disk_during_fetch(machine, tiny_disk):
    c = fresh(machine)
    c.dvc("cache", "dir", tiny_disk / "cache")
    res = c.invoke("fetch", "--model", VITS, ok=None)
    assert_dvc_error(res, "free space on this machine's disk")
    assert "models: []" in (c.path / "params.yaml").read_text(encoding="utf-8")  # the fetch deselected its model


def test_pull_into_a_full_disk_then_again(machine, tiny_disk):
    a = fresh(machine, "a")
    a.invoke("fetch", "--model", VITS)
    a.invoke("push")
    a.commit("fetched")
    b = machine.clone("b", source=a.path)
    b.dvc("cache", "dir", tiny_disk / "cache")
    res = b.invoke("pull", ok=None)
    assert_dvc_error(res, "no space left", "free space on this machine's disk")
    assert "free space on the remote" not in res.text
    subprocess.run(["mount", "-o", "remount,size=16m", str(tiny_disk)], check=True)
    res = b.invoke("pull")
    assert b.weights(VITS).is_file()
    assert not [p for p in (tiny_disk / "cache").rglob("*") if p.name.endswith((".tmp", ".pull"))]


def test_dvc_cache_it_cannot_link_into(machine, tiny_disk):
    """hardlink only, and the cache on another file system: DVC's CacheLinkError, shown."""
    subprocess.run(["mount", "-o", "remount,size=16m", str(tiny_disk)], check=True)
    c = fresh(machine)
    c.dvc("cache", "dir", tiny_disk / "cache")
    c.dvc("config", "cache.type", "hardlink")
    res = c.invoke("fetch", "--model", VITS, ok=None)
    assert_dvc_error(res, "No possible cache link types", "(CacheLinkError)", "could not place the file")
