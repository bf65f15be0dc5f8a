"""The repository as a product: the real `dvc` CLI and `invoke` tasks in temporary git clones of this repository,
fetching from the loopback test server (tests/support/httpserver.py).

One "machine" per module: a private HOME (so the default remote ``~/.cache/dinovault/dvc-remote`` lands in a
temporary folder), DVC config/site-cache folders, and a TORCH_HOME per clone. Only dinov2_vits14 is really
downloaded (88 MB, official layout, random weights); the two-model cases use the small files of ``faulty_server``
with the smoke test off.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from tests.support.clones import Clone, Machine, snapshot_worktree

VITS = "dinov2_vits14"
VITB = "dinov2_vitb14"
VITS_FILE = "dinov2_vits14_pretrain.pth"
REG = "dinov2_vits14_reg"


# ---------------------------------------------------------------------------------------------- helpers


def md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def requests_to(server) -> int:
    return sum(server.requests.values())


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return snapshot_worktree(tmp_path_factory.mktemp("source"))


@pytest.fixture(scope="module")
def machine(tmp_path_factory, dinov2_server, source) -> Machine:
    return Machine(tmp_path_factory.mktemp("machine"), dinov2_server.env, source, DINOVAULT_BACKOFF="0.05",
                   DINOVAULT_TIMEOUT="5")


@pytest.fixture(scope="module")
def fetched(machine, dinov2_server) -> Clone:
    """Clone A: selection emptied, then `invoke fetch --model dinov2_vits14` (smoke test on, as shipped)."""
    a = machine.clone("a")
    original = (a.path / "params.yaml").read_text(encoding="utf-8")
    a.select()
    a.commit("start with no model selected")
    before = requests_to(dinov2_server)
    res = a.invoke("fetch", "--model", VITS)
    a.fetch_output = res.text
    a.fetch_requests = requests_to(dinov2_server) - before
    a.original_params = original
    return a


# ---------------------------------------------------------------------------------------------- the main path


def test_fetch_in_a_fresh_clone_records_the_model(fetched, dinov2_server):
    a = fetched
    weights = a.weights(VITS)
    served = dinov2_server.files[VITS_FILE]
    assert weights.is_file()
    if served:
        assert md5(weights) == md5(Path(served))
    assert a.fetch_requests >= 1  # it really downloaded
    assert "Running stage 'fetch@dinov2_vits14'" in a.fetch_output
    # what the task prints per model: path, size, sha256, time
    assert re.search(r"dinov2_vits14: models/dinov2/dinov2_vits14\.pth .*sha256:[0-9a-f]{64} .*s", a.fetch_output)
    # the selection was added to params.yaml, every comment kept
    params = (a.path / "params.yaml").read_text(encoding="utf-8")
    assert VITS in params
    for line in a.original_params.splitlines():
        if line.startswith("#"):
            assert line in params
    # dvc.lock records the md5 of the weights; the card is small and in git, the metrics list dim and params
    assert a.lock_md5(VITS) == md5(weights)
    card = json.loads((a.path / "models" / "dinov2" / f"{VITS}.json").read_text())
    assert card["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    metrics = json.loads(a.dvc("metrics", "show", "--json").stdout)
    shown = json.dumps(metrics)
    assert "embed_dim" in shown and "384" in shown and "num_params" in shown and "22056576" in shown
    assert "smoke_test" in shown
    # dvc status is clean, and `dvc dag` draws the stage
    assert "up to date" in a.dvc("status").stdout
    assert "fetch@dinov2_vits14" in a.dvc("dag").stdout
    # the weights and card are ignored by git (DVC tracks them), the metrics and dvc.lock are not
    a.git("check-ignore", "-q", "models/dinov2/dinov2_vits14.pth")
    a.git("check-ignore", "-q", "models/dinov2/dinov2_vits14.json")
    a.git("check-ignore", "-q", "metrics/dinov2_vits14.json", ok=False)
    a.git("check-ignore", "-q", "dvc.lock", ok=False)


def test_one_physical_copy_across_workspace_dvc_cache_and_torch_cache(fetched):
    a = fetched
    weights = a.weights(VITS)
    obj = a.cache_object(a.lock_md5(VITS))
    torch_file = a.torch_cache / VITS_FILE
    inodes = {os.stat(p).st_ino for p in (weights, obj, torch_file)}
    assert len(inodes) == 1, "workspace, DVC cache and torch cache should be hard links of one file"
    assert os.stat(weights).st_nlink == 3


def test_second_fetch_runs_no_stage_and_sends_no_request(fetched, dinov2_server):
    a = fetched
    lock_before = (a.path / "dvc.lock").read_bytes()
    before = requests_to(dinov2_server)
    res = a.invoke("fetch")
    assert "Running stage" not in res.text
    assert "up to date" in res.text
    assert requests_to(dinov2_server) == before
    assert (a.path / "dvc.lock").read_bytes() == lock_before


def test_deleted_models_come_back_from_the_dvc_cache_without_download(fetched, dinov2_server):
    a = fetched
    expected = a.lock_md5(VITS)
    torch_file = a.torch_cache / VITS_FILE
    before = requests_to(dinov2_server)
    # `dvc checkout` restores the weights from the DVC cache
    a.weights(VITS).unlink()
    a.dvc("checkout")
    assert md5(a.weights(VITS)) == expected
    # `dvc repro` after deleting the whole folder: restored from the run cache, the stage does not run
    shutil.rmtree(a.path / "models" / "dinov2")
    res = a.dvc("repro")
    assert "skipping run, checking out outputs" in res.text, res.text
    assert md5(a.weights(VITS)) == expected
    assert (a.path / "models" / "dinov2" / f"{VITS}.json").is_file()
    assert (a.path / "metrics" / f"{VITS}.json").is_file()
    assert requests_to(dinov2_server) == before
    assert os.stat(a.weights(VITS)).st_ino == os.stat(torch_file).st_ino
    assert "up to date" in a.dvc("status").stdout
    a.git("diff", "--exit-code", "--", "metrics", "dvc.lock")  # byte-identical metrics, nothing re-recorded


def test_push_then_pull_on_a_second_clone_gives_the_same_bytes(machine, fetched, dinov2_server):
    a = fetched
    a.commit("fetch dinov2_vits14")
    a.invoke("push")
    # the zero-setup default remote, below this machine's HOME: weights and card (and the listing of the empty
    # export folders, formats: [pth])
    pushed = sorted(p for p in (machine.default_remote / "files" / "md5").rglob("*") if p.is_file())
    assert len([p for p in pushed if not p.name.endswith(".dir")]) == 2
    assert a.lock_md5(VITS)[2:] in {p.name for p in pushed}
    stamps = [p.stat().st_mtime_ns for p in pushed]
    a.invoke("push")  # nothing left to send
    assert [p.stat().st_mtime_ns for p in pushed] == stamps

    b = machine.clone("b", source=a.path)
    assert not (b.path / ".dvc" / "cache").exists() and not b.torch_cache.exists()
    before = requests_to(dinov2_server)
    b.invoke("pull")
    assert b.weights(VITS).read_bytes() == a.weights(VITS).read_bytes()
    assert "all models verified" in b.invoke("verify").text
    assert "up to date" in b.dvc("status").stdout
    assert requests_to(dinov2_server) == before
    # the pulled file is linked into the torch.hub cache too, so torch.hub finds it (still one copy)
    assert os.stat(b.torch_cache / VITS_FILE).st_ino == os.stat(b.weights(VITS)).st_ino
    # a stage that has to rerun (here: forced) verifies that file instead of downloading
    b.dvc("repro", "--force", f"fetch@{VITS}")
    assert requests_to(dinov2_server) == before
    assert md5(b.weights(VITS)) == a.lock_md5(VITS)

    # `invoke pull --model` pulls only that model's file
    c = machine.clone("c", source=a.path)
    c.invoke("pull", "--model", VITS)
    assert md5(c.weights(VITS)) == a.lock_md5(VITS)


def test_pull_skips_a_selected_model_that_was_never_fetched(machine, fetched):
    """The README's path: the default selection holds two models and only one was fetched and pushed. A second
    clone's `invoke pull` gets that one and says the other was never fetched, instead of failing on it."""
    a = fetched
    a.git("add", "-A")
    a.git("commit", "-q", "--allow-empty", "-m", "fetch dinov2_vits14")  # dvc.lock, whatever ran before
    a.invoke("push")
    d = machine.clone("d", source=a.path)
    d.select(VITS, VITB)  # dinov2_vitb14 selected, never fetched: no record in dvc.lock
    res = d.invoke("pull")
    assert f"fetch@{VITB}: not fetched yet" in res.text
    assert md5(d.weights(VITS)) == a.lock_md5(VITS)
    assert not d.weights(VITB).exists()
    res = d.invoke("pull", "--model", VITB, ok=False)
    assert f"{VITB} was never fetched" in res.text and f"invoke fetch --model {VITB}" in res.text


def test_tampered_remote_object_is_detected_and_not_placed(machine, fetched):
    a = fetched
    if not (machine.default_remote / "files").exists():
        a.invoke("push")
    tampered = machine.base / "tampered-remote"
    shutil.copytree(machine.default_remote, tampered)
    obj = tampered / "files" / "md5" / a.lock_md5(VITS)[:2] / a.lock_md5(VITS)[2:]
    mode = obj.stat().st_mode
    os.chmod(obj, 0o644)
    with open(obj, "r+b") as fh:  # one byte changed, size and (read-only) mode kept
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    os.chmod(obj, mode)

    for pull in (("invoke", "pull"), ("dvc", "pull")):
        d = machine.clone(f"d-{pull[0]}", source=a.path)
        d.dvc("remote", "modify", "--local", "home", "url", tampered)
        res = (d.invoke if pull[0] == "invoke" else d.dvc)(*pull[1:], ok=False)
        assert not d.weights(VITS).exists(), res.text
        assert not list((d.path / "models" / "dinov2").glob("*.pth"))
        if pull[0] == "invoke":  # one clear line that names the remote
            assert "'home'" in res.text and str(tampered) in res.text and "Traceback" not in res.text


def test_verify_names_a_file_that_does_not_match(machine, fetched):
    e = machine.clone("e", source=fetched.path)
    e.invoke("pull")
    bad = e.weights(VITS)
    data = bytearray(bad.read_bytes())
    data[-10] ^= 0xFF
    bad.unlink()  # a hard link to the DVC cache: replace it, never write through it
    bad.write_bytes(bytes(data))
    res = e.invoke("verify", ok=False)
    assert "models/dinov2/dinov2_vits14.pth" in res.text and "FAIL" in res.text
    assert "dvc.lock" in res.text and "pinned" in res.text


def test_verify_fails_on_a_recorded_missing_file_but_not_on_a_model_never_fetched(fetched):
    a = fetched
    params = a.path / "params.yaml"
    original = params.read_text(encoding="utf-8")
    a.select(VITS, VITB)  # dinov2_vitb14 selected, never fetched: nothing in dvc.lock to contradict
    try:
        res = a.invoke("verify")
        assert f"models/dinov2/{VITB}.pth: not fetched yet" in res.text
        assert "all models verified" in res.text
    finally:
        params.write_text(original, encoding="utf-8")
    weights = a.weights(VITS)
    aside = weights.with_name("aside.bin")
    weights.rename(aside)  # recorded in dvc.lock, gone from the workspace: a failure naming the file
    try:
        res = a.invoke("verify", ok=False)
        assert f"models/dinov2/{VITS}.pth: missing" in res.text
    finally:
        aside.rename(weights)


def test_list_shows_where_each_model_is(fetched):
    out = fetched.invoke("list").stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("dinov2_")}
    assert set(rows) == {
        "dinov2_vits14",
        "dinov2_vitb14",
        "dinov2_vitl14",
        "dinov2_vitg14",
        "dinov2_vits14_reg",
        "dinov2_vitb14_reg",
        "dinov2_vitl14_reg",
        "dinov2_vitg14_reg",
    }
    # model dim params size(2 cells) selected workspace dvc-cache remote
    assert rows[VITS][1] == "384" and rows[VITS][5:8] == ["yes", "yes", "yes"]
    assert rows["dinov2_vitg14"][1] == "1536" and rows["dinov2_vitg14"][5] == "-"


# ---------------------------------------------------------------------------------------------- selection, clean


def test_extractor_loads_the_fetched_model_offline(fetched, dinov2_server):
    """Issue 4's done-when: after `invoke fetch`, DINOv2FeatureExtractor(model_name=...) finds the clone's
    models/dinov2 by itself and needs no network (the download URL points at a closed port; no request arrives)."""
    script = (
        "from pathlib import Path\n"
        "from PIL import Image\n"
        "import dinovault\n"
        "from dinovault import DINOv2FeatureExtractor\n"
        "print(Path(dinovault.__file__).resolve())\n"
        "extractor = DINOv2FeatureExtractor(model_name='dinov2_vits14', device='cpu')\n"
        "images = [Image.new('RGB', (300 + 40 * i, 260), (60 * i, 90, 200)) for i in range(3)]\n"
        "features = extractor.extract(images)\n"
        "print(tuple(features.shape), bool(features.isfinite().all()), extractor.embed_dim)\n"
    )
    offline = Clone(fetched.path, {**fetched.env, "DINOV2_BASE_URL": "http://127.0.0.1:9/dinov2"})
    before = requests_to(dinov2_server)
    res = offline.run(sys.executable, "-c", script)
    module_path, result = res.stdout.strip().splitlines()[-2:]
    assert Path(module_path).is_relative_to(fetched.path.resolve())  # the clone's package, so its models/ folder
    assert result == "(3, 384) True 384"
    assert requests_to(dinov2_server) == before


@pytest.fixture(scope="module")
def with_more(machine, dinov2_server, tmp_path_factory) -> dict[str, str]:
    """The test server also serves dinov2_vits14_reg and dinov2_vitb14 (real architectures, random weights);
    the returned environment points at a registry pinning all three."""
    from dinovault.catalog import get_spec

    from .support.checkpoints import save_checkpoint
    from .support.httpserver import registry_line

    lines = [registry_line(dinov2_server.files[VITS_FILE])]
    for seed, name in enumerate((REG, VITB), start=1):
        spec = get_spec(name)
        served = dinov2_server.root / "dinov2" / spec.upstream_path
        if not served.exists():
            save_checkpoint(spec, served, seed=seed)
            dinov2_server.files[served.name] = served
        lines.append(registry_line(served))
    registry = tmp_path_factory.mktemp("registry") / "registry.txt"
    registry.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"DINOVAULT_REGISTRY": str(registry)}


def test_readme_first_command_ends_with_the_model_in_models_and_dvc_lock(machine, with_more):
    from .test_tasks import quick_start_commands

    first = quick_start_commands()[0]
    fetch = first.split("&&")[-1].strip()  # the venv and `pip install -e` parts are what this test runs in
    assert fetch == f"invoke fetch --model {VITB}"
    g = machine.clone("g", extra_env=with_more)
    g.run("bash", "-c", fetch)
    assert g.lock_md5(VITB) == md5(g.weights(VITB))
    assert "up to date" in g.dvc("status", f"fetch@{VITB}").stdout


def test_selection_changes_stages_and_clean_removes_only_unselected(
    machine, fetched, with_more, dinov2_server, tmp_path
):
    # same machine as clone A: its torch cache already holds dinov2_vits14
    f = machine.clone("f", torch_home=Path(fetched.env["TORCH_HOME"]), extra_env=with_more)
    f.select(VITS, REG)
    f.commit("two models")
    assert f.stages() == sorted([f"fetch@{VITS}", f"fetch@{REG}"])
    f.invoke("fetch")
    assert f.weights(VITS).is_file() and f.weights(REG).is_file()
    assert json.loads((f.path / "metrics" / f"{REG}.json").read_text())["smoke_test"] is True

    # smoke_test: false is a stage parameter: both stages rerun (from the torch cache), without the forward test
    before = requests_to(dinov2_server)
    f.skip_smoke_test()
    assert "smoke_test" in f.dvc("status").stdout
    res = f.invoke("fetch")
    assert res.text.count("Running stage") == 2 and "Smoke test skipped" in res.text, res.text
    assert json.loads((f.path / "metrics" / f"{REG}.json").read_text())["smoke_test"] is False
    assert requests_to(dinov2_server) == before

    # deselect the reg model: its stage goes, vits14's stays, nothing else changes
    f.select(VITS)
    assert f.stages() == [f"fetch@{VITS}"]
    assert "up to date" in f.dvc("status").stdout
    # add a model: a stage appears and is pending
    f.select(VITS, "dinov2_vitl14_reg")
    assert f.stages() == sorted([f"fetch@{VITS}", "fetch@dinov2_vitl14_reg"])
    assert "fetch@dinov2_vitl14_reg" in f.dvc("status").stdout
    f.select(VITS)

    # the reg model is not in the remote: clean asks, and without a yes (no terminal) keeps it
    res = f.invoke("clean")
    assert f"kept models/dinov2/{REG}.pth" in res.text
    assert f.weights(REG).is_file()
    # once pushed, clean removes it without asking, and only it
    f.select(VITS, REG)
    f.invoke("push")
    f.select(VITS)
    res = f.invoke("clean")
    assert f"removed {REG}" in res.text
    assert not f.weights(REG).exists() and not (f.path / "models" / "dinov2" / f"{REG}.json").exists()
    assert not (f.path / "metrics" / f"{REG}.json").exists()
    assert not (f.path / "models" / "dinov2" / "hf" / REG).exists()  # its (empty) export folders go too
    assert (f.path / "models" / "dinov2" / "hf" / VITS).is_dir()
    assert f.weights(VITS).is_file() and md5(f.weights(VITS)) == f.lock_md5(VITS)
    assert "up to date" in f.dvc("status").stdout
    # select the reg model again: `invoke fetch` brings it back from the DVC cache, without a request
    f.select(REG)
    before = requests_to(dinov2_server)
    res = f.invoke("fetch")
    assert f.weights(REG).is_file() and requests_to(dinov2_server) == before, res.text
    # --yes removes one the remote does not hold, without asking
    f.dvc("remote", "modify", "--local", "home", "url", tmp_path / "empty-remote")
    res = f.invoke("clean", "--yes")
    assert f"removed {VITS}" in res.text
    assert not f.weights(VITS).exists() and f.weights(REG).is_file()


# ---------------------------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def plain(machine) -> Clone:
    """A fresh clone nothing is fetched in (for the cheap bad-input cases)."""
    return machine.clone("plain")


def test_unknown_model_suggests_names_and_leaves_params_untouched(plain):
    params = (plain.path / "params.yaml").read_bytes()
    res = plain.invoke("fetch", "--model", "dinov2_vitb41", ok=False)
    assert "unknown model 'dinov2_vitb41'" in res.stderr and "未知模型" in res.stderr
    assert "did you mean dinov2_vitb14" in res.stderr
    assert (plain.path / "params.yaml").read_bytes() == params
    assert not (plain.path / "dvc.lock").exists()
    res = plain.invoke("pull", "--model", "vitb14", ok=False)
    assert "did you mean" in res.stderr


def test_a_dvc_yaml_without_a_familys_stage_says_so_and_undoes_the_selection(plain):
    """A dvc.yaml from before DINOv3 (no fetch_dinov3 group): fetching a DINOv3 model says which stage is missing
    and what to do, and params.yaml is put back (the DINOv2 stages would still be checked: one reproduce each group)."""
    dvc_yaml, params = plain.path / "dvc.yaml", plain.path / "params.yaml"
    before, selection = dvc_yaml.read_bytes(), params.read_bytes()
    dvc_yaml.write_bytes(before[:before.index(b"  # dinovault: one stage per DINOv3 model")])
    try:
        res = plain.invoke("fetch", "--model", "dinov3_vits16", ok=False)
    finally:
        dvc_yaml.write_bytes(before)
    assert "fetch dinov3_vits16: dvc.yaml has no stage fetch_dinov3@dinov3_vits16 / dvc.yaml 中没有该阶段" in res.stderr
    assert "dinovault init" in res.stderr and "Traceback" not in res.text
    assert params.read_bytes() == selection and not (plain.path / "dvc.lock").exists()


@pytest.mark.parametrize(
    "text, where, problem",
    [
        ("models: [dinov2_vits14\nsave_dir: x\n", "params.yaml:", "not valid YAML"),
        ("models:\n  - dinov2_vits14\nsmoke_test: 'yes'\n", "params.yaml:3", "smoke_test must be a bool"),
        ("models:\n  - dinov2_vits14\n  - dinov2_vits14\n", "params.yaml:3", "selected twice"),
        ("models:\n  - dinov2_vitz14\n", "params.yaml:2", "unknown model"),
    ],
)
def test_bad_params_yaml_gives_line_and_problem(plain, text, where, problem):
    params = plain.path / "params.yaml"
    good = params.read_bytes()
    try:
        params.write_text(text, encoding="utf-8")
        for task in (("fetch",), ("status",), ("fetch", "--model", VITS)):
            res = plain.invoke(*task, ok=False)
            assert where in res.stderr and problem in res.stderr, res.stderr
            assert "Traceback" not in res.stderr
        assert params.read_text(encoding="utf-8") == text
    finally:
        params.write_bytes(good)


def test_pull_without_a_remote_says_how_to_set_one(plain):
    config = plain.path / ".dvc" / "config"
    good = config.read_bytes()
    try:
        plain.dvc("remote", "remove", "home")
        res = plain.invoke("pull", ok=False)
        assert "no DVC remote" in res.stderr and "未配置" in res.stderr
        assert "invoke remote --url" in res.stderr or "dvc remote add -d" in res.stderr
        assert "Traceback" not in res.stderr
    finally:
        config.write_bytes(good)


def test_pull_from_a_remote_that_does_not_answer_names_it(plain, tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        plain.dvc("remote", "modify", "--local", "home", "url", f"http://127.0.0.1:{port}/remote")
        res = plain.invoke("pull", ok=False)
        assert f"remote 'home' (http://127.0.0.1:{port}/remote) does not answer" in res.stderr
        assert "远端无响应" in res.stderr and "dvc remote add -d" in res.stderr
        plain.dvc("remote", "modify", "--local", "home", "url", tmp_path / "never-pushed")
        res = plain.invoke("pull", ok=False)
        assert f"'home' ({tmp_path / 'never-pushed'})" in res.stderr and "invoke push" in res.stderr
    finally:
        (plain.path / ".dvc" / "config.local").unlink(missing_ok=True)


def test_tasks_outside_the_repository_fail_clearly(plain, tmp_path):
    assert "dinov2_vitg14_reg" in plain.invoke("list", cwd=plain.path / "dinovault").stdout  # a subfolder is inside
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for task in ("fetch", "list", "status", "verify", "push", "pull", "clean", "test"):
        res = plain.invoke("-r", plain.path, task, ok=False, cwd=outside)
        assert "is not inside a dinovault repository" in res.stderr, (task, res.stderr)
        assert "不在 dinovault 仓库中" in res.stderr
        assert "Traceback" not in res.stderr


def test_status_in_a_fresh_clone_says_what_is_not_fetched(plain):
    from dinovault.params import load_params

    out = plain.invoke("status").stdout
    for model in load_params(plain.path / "params.yaml").models:  # the shipped selection (dinov2_vitb14)
        assert f"fetch@{model}: not fetched yet" in out and f"invoke fetch --model {model}" in out


def test_a_failed_download_records_nothing_and_says_why(plain, dinov2_server):
    params = plain.path / "params.yaml"
    good = params.read_bytes()
    try:
        res = plain.invoke("fetch", "--model", "dinov2_vitl14", ok=False)  # the test registry does not pin it
        assert "dinov2_vitl14_pretrain.pth has no pinned SHA-256" in res.stderr, res.stderr
        assert "fetch@dinov2_vitl14" in res.stderr and "阶段运行失败" in res.stderr
        assert "Traceback" not in res.stderr
        assert not (plain.path / "models" / "dinov2" / "dinov2_vitl14.pth").exists()
        lock = plain.path / "dvc.lock"
        assert not lock.exists() or "dinov2_vitl14" not in lock.read_text()
        assert params.read_bytes() == good  # issue 9: a failed fetch leaves params.yaml as it was
        # each failure printed once: the script's reason, one summary line, no DVC warning repeating it
        assert res.stderr.count("has no pinned SHA-256") == 1, res.stderr
        assert res.stderr.count("error:") == 1 and "failed to run" not in res.text, res.text
    finally:
        params.write_bytes(good)
