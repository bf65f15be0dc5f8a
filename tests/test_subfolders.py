"""Issue 21 item 5: every command and API call works from any subfolder of a repository, as git's do.

One clone of this repository (tests/support/clones.py) fetching dinov2_vits14 from the loopback server, then every
command run from its ``models/`` folder: `invoke fetch` and `dinovault fetch` as real processes (the process boundary
is what a user crosses), the others in-process (``dinovault.cli.main.main`` with the clone's environment and the
subfolder as working directory). Paths the user types stay relative to the user's folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dvc  # noqa: F401 - DVC binds its log handlers to sys.stdout/stderr when imported: import it under pytest's
import pytest  # session capture, not under one test's capsys (closed when that test ends)

from tests.support.clones import BIN, Clone, Machine, snapshot_worktree

VITS = "dinov2_vits14"
VITS_FILE = "dinov2_vits14_pretrain.pth"


@pytest.fixture(scope="module")
def clone(tmp_path_factory, dinov2_server) -> Clone:
    """A fresh clone, no model selected, smoke test off; `invoke fetch` run from its models/ folder."""
    source = snapshot_worktree(tmp_path_factory.mktemp("source"))
    machine = Machine(tmp_path_factory.mktemp("machine"), dinov2_server.env, source, DINOVAULT_BACKOFF="0.05",
                      DINOVAULT_TIMEOUT="5")
    c = machine.clone("sub")
    c.select()
    c.skip_smoke_test()
    c.commit("start with no model selected")
    (c.path / "models").mkdir(exist_ok=True)
    c.fetched = c.invoke("fetch", "--model", VITS, cwd=c.path / "models")
    return c


@pytest.fixture
def inside(clone, monkeypatch) -> Path:
    """This process as the clone's user, standing in its models/ folder."""
    for key in [k for k in __import__("os").environ if k.startswith(("DINOV2_", "DINOV3_", "DVC_", "DINOVAULT_"))]:
        monkeypatch.delenv(key)
    for key, value in clone.env.items():
        monkeypatch.setenv(key, value)
    folder = clone.path / "models"
    monkeypatch.chdir(folder)
    return folder


def run(*argv: str) -> int:
    from dinovault.cli.main import main

    return main(list(argv))


def test_invoke_fetch_from_a_subfolder(clone):
    assert "does not exist" not in clone.fetched.text, clone.fetched.text
    assert f"{VITS}: " in clone.fetched.stdout and "fetched / 已获取" in clone.fetched.stdout
    assert clone.weights(VITS).is_file()
    assert f"fetch@{VITS}" in clone.lock()["stages"]
    assert (clone.path / "params.yaml").read_text(encoding="utf-8").count(f"- {VITS}") == 1


def test_dinovault_fetch_from_a_deeper_subfolder(clone):
    deeper = clone.path / "models" / "dinov2"
    res = clone.run(BIN / "dinovault", "fetch", "--model", VITS, cwd=deeper)
    assert f"{VITS}: " in res.stdout and "up to date / 已是最新" in res.stdout, res.text


def test_every_command_from_a_subfolder(clone, inside, capsys, tmp_path):
    assert run("list") == 0
    out = capsys.readouterr().out
    assert f"{VITS} " in out and "yes" in out.splitlines()[[VITS in line for line in out.splitlines()].index(True)]
    assert run("status") == 0
    assert "the pipeline: up to date" in capsys.readouterr().out
    assert run("verify") == 0
    assert "all models verified" in capsys.readouterr().out
    team = tmp_path / "team remote"
    assert run("remote", "--url", str(team), "--name", "team") == 0
    assert run("push") == 0
    assert team.is_dir() and any(p.is_file() for p in team.rglob("*"))
    assert run("pull") == 0
    assert run("clean", "--yes") == 0
    out = capsys.readouterr().out
    assert "probe OK" in out and "nothing to clean" in out, out
    assert clone.weights(VITS).is_file()


def hand_downloaded(clone, server) -> Path:
    """The official file saved by hand under a name of the user's, in a folder beside models/."""
    path = clone.path / "incoming" / "downloaded by hand.pth"
    if not path.is_file():
        path.parent.mkdir(exist_ok=True)
        shutil.copyfile(server.files[VITS_FILE], path)
    return path


def test_import_takes_the_user_s_relative_path(clone, inside, capsys, dinov2_server):
    hand_downloaded(clone, dinov2_server)
    assert run("import", "../incoming/downloaded by hand.pth") == 0, capsys.readouterr().err
    assert f"{VITS}: " in capsys.readouterr().out
    res = clone.invoke("import", "../incoming/downloaded by hand.pth", cwd=inside)  # invoke finds tasks.py upward
    assert f"{VITS}: " in res.stdout and "up to date" in res.stdout, res.text


def test_extract_writes_where_the_user_said(clone, inside, capsys):
    from PIL import Image

    photos = clone.path / "photos"
    photos.mkdir(exist_ok=True)
    for i in range(2):
        Image.new("RGB", (64 + 8 * i, 48), (40 * i, 90, 200)).save(photos / f"{i}.png")
    assert run("extract", "--model", VITS, "--images", "../photos", "--out", "feats.npz", "--device", "cpu") == 0, \
        capsys.readouterr().err
    assert (inside / "feats.npz").is_file() and not (clone.path / "feats.npz").exists()


def test_the_api_from_a_subfolder(clone, inside, dinov2_server):
    import dinovault

    assert dinovault.fetch(VITS) == clone.weights(VITS)
    assert dinovault.verify(VITS).path == clone.weights(VITS)
    hand_downloaded(clone, dinov2_server)
    assert dinovault.import_file(Path("..") / "incoming" / "downloaded by hand.pth") == VITS
    backbone = dinovault.load_backbone(VITS, device="cpu")
    assert backbone.embed_dim == 384
    extractor = dinovault.DINOv2FeatureExtractor(VITS, device="cpu")
    assert Path(extractor.weights) == clone.weights(VITS)
