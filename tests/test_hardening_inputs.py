"""Inputs users hand the tasks that DVC or the parsers choke on: a dvc.lock with git merge-conflict markers, a list or
binary dvc.lock, non-ASCII remote settings, Windows paths in save_dir. Each ends in one clear line naming the file or
option and the fix, exit 1, no traceback, nothing changed. Real `invoke`/`dvc` CLIs in a fresh clone; no server.
"""

from __future__ import annotations

import pytest

from tests.support.clones import Clone, Machine, snapshot_worktree

CONFLICTED = """schema: '2.0'
stages:
<<<<<<< HEAD
  fetch@dinov2_vits14:
    cmd: python scripts/download_dinov2.py --model dinov2_vits14
=======
  fetch@dinov2_vitb14:
    cmd: python scripts/download_dinov2.py --model dinov2_vitb14
>>>>>>> teammate
"""


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Clone:
    base = tmp_path_factory.mktemp("inputs")
    machine = Machine(base / "machine", {"DINOV2_BASE_URL": "http://127.0.0.1:9/dinov2"},
                      snapshot_worktree(base / "source"))
    return machine.clone("c")


def assert_one_clear_line(res, *expected: str) -> None:
    assert res.returncode == 1, res.text
    assert "Traceback" not in res.text and "ruamel" not in res.text, res.text
    first = res.stderr.strip().splitlines()[0]
    assert first.startswith("error: "), res.text
    for text in expected:
        assert text in res.stderr, res.text


@pytest.mark.parametrize("task", [("status",), ("fetch", "--model", "dinov2_vits14"), ("push",), ("pull",),
                                  ("verify",), ("list",)])
def test_merge_conflict_in_dvc_lock_names_the_file_and_the_fix(clone, task):
    params = (clone.path / "params.yaml").read_bytes()
    (clone.path / "dvc.lock").write_text(CONFLICTED, encoding="utf-8")
    res = clone.invoke(*task, ok=None)
    assert_one_clear_line(res, "dvc.lock:3: unresolved git merge conflict", "git checkout --theirs dvc.lock",
                          "dvc repro", "合并冲突")
    assert (clone.path / "params.yaml").read_bytes() == params  # the fetch put nothing in params.yaml


@pytest.mark.parametrize(("data", "says"), [(b"- a\n- b\n", "dvc.lock: expected a mapping"),
                                            (b"\x00\x01\xfe\xff" * 64, "dvc.lock: not a text file"),
                                            (b"stages: {fetch@x: [\n", "dvc.lock:2: not valid YAML")])
def test_a_broken_dvc_lock_names_the_file(clone, data, says):
    (clone.path / "dvc.lock").write_bytes(data)
    for task in (("status",), ("fetch",)):
        assert_one_clear_line(clone.invoke(*task, ok=None), says, "git checkout dvc.lock")


@pytest.mark.parametrize("args", [("--url", "ssh://127.0.0.1/srv/远端 dir"),
                                  ("--url", "webdav://127.0.0.1/dvc", "--user", "张三")])
def test_non_ascii_remote_settings_are_refused_before_any_change(clone, args):
    (clone.path / "dvc.lock").unlink(missing_ok=True)
    config = (clone.path / ".dvc" / "config").read_bytes()
    res = clone.invoke("remote", *args, "--no-check", ok=None)
    option = args[-2]
    assert_one_clear_line(res, f"{option} ", "non-ASCII", "ASCII 字符")
    assert (clone.path / ".dvc" / "config").read_bytes() == config
    assert not (clone.path / ".dvc" / "config.local").exists()


@pytest.mark.parametrize("save_dir", [r"D:\models\dinov2", "D:/models/dinov2", r"models\dinov2", "models/aux",
                                      "models/a:b"])
def test_a_windows_save_dir_is_refused_and_nothing_is_written(clone, save_dir):
    (clone.path / "dvc.lock").unlink(missing_ok=True)
    params = clone.path / "params.yaml"
    original = params.read_text(encoding="utf-8")
    params.write_text(original.replace("save_dir: models/dinov2", f"save_dir: '{save_dir}'"), encoding="utf-8")
    try:
        before = sorted(p.name for p in clone.path.iterdir())
        line = next(i for i, text in enumerate(params.read_text(encoding="utf-8").splitlines(), 1)
                    if text.startswith("save_dir"))
        for task in (("fetch", "--model", "dinov2_vits14"), ("status",)):
            res = clone.invoke(*task, ok=None)
            assert_one_clear_line(res, f"params.yaml:{line}: save_dir", "forward slashes", "正斜杠")
        res = clone.dvc("repro", ok=False)  # DVC runs the stage script, which checks params.yaml itself
        assert "forward slashes" in res.text
        assert sorted(p.name for p in clone.path.iterdir()) == before  # no D:modelsdinov2/ appeared
    finally:
        params.write_text(original, encoding="utf-8")


def test_windows_path_rules():
    from dinovault.params import windows_path_problem

    assert windows_path_problem(r"D:\models\dinov2") == "is a Windows path on drive 'D:'"
    assert windows_path_problem(r"\\nas\share\models").startswith("is a Windows path on drive")
    assert windows_path_problem("C:models").startswith("is a Windows path on drive 'C:'")
    assert windows_path_problem(r"models\dinov2") == "has backslashes (a Windows path)"
    assert "reserves" in windows_path_problem("models/NUL.txt")
    assert "dot or space" in windows_path_problem("models/dinov2.")
    for fine in ("models/dinov2", "./weights", "模型/dinov2", "models/dinov2-v1.0/x"):
        assert windows_path_problem(fine) == ""
