"""Issue 23: feature sets (dinovault/features/): the vectors equal ``extract`` of each image alone, every kind of bad
or odd file, incremental reruns, a kill mid-run, params validation, the loader, and `invoke features` in a clone
chaining fetch → features through the real `dvc`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dinovault.catalog import get_spec
from dinovault.errors import ImageError, ParamsError
from dinovault.features.engine import run_set
from dinovault.features.loader import load_features
from dinovault.features.sets import load_sets
from tests.support.checkpoints import save_checkpoint
from tests.support.clones import ROOT, Machine, snapshot_worktree
from tests.support.images import BAD, GOOD, make_many, make_mixed

VITS = "dinov2_vits14"
SETS = f"""\
models: []
save_dir: models/dinov2
features:
  mixed: {{images: data/mixed, model: {VITS}}}
  pooled: {{images: data/mixed, model: {VITS}, size: 56, tokens: cls+mean_patch, dtype: float16}}
  inc: {{images: data/inc, model: {VITS}, size: 56, batch_size: 2, shard_size: 2}}
  big: {{images: data/big, model: {VITS}, batch_size: 2, shard_size: 2}}
  viaray: {{images: data/mixed, model: {VITS}, batch_size: 4}}
  few: {{images: data/few, model: {VITS}}}
  missing: {{images: data/nothing, model: {VITS}}}
  empty: {{images: data/empty, model: {VITS}}}
dinov3_features:
  v3: {{images: data/few, model: dinov3_vits16}}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A repository (params.yaml, dvc.yaml, .dvc/) with a random-weight ViT-S/14 in save_dir and image folders."""
    root = tmp_path_factory.mktemp("project")
    (root / ".dvc").mkdir()
    (root / "dvc.yaml").write_text("stages: {}\n", encoding="utf-8")
    (root / "params.yaml").write_text(SETS, encoding="utf-8")
    save_checkpoint(get_spec(VITS), root / "models" / "dinov2" / f"{VITS}.pth", seed=11)
    make_mixed(root / "data" / "mixed")
    make_many(root / "data" / "few", 3)
    (root / "data" / "empty").mkdir(parents=True)
    (root / "data" / "empty" / "readme.txt").write_text("no images yet\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def extractor(project):
    from dinovault import DINOv2FeatureExtractor

    return DINOv2FeatureExtractor(VITS, weights=project / "models" / "dinov2" / f"{VITS}.pth", device="cpu")


@pytest.fixture(scope="module")
def mixed(project):
    return run_set(project, "mixed", workers=2)


def test_vectors_equal_extract_of_each_image_alone(project, mixed, extractor):
    paths, vectors = load_features("mixed", root=project)
    assert isinstance(vectors, np.memmap) and vectors.dtype == np.float32
    assert sorted(paths) == sorted(GOOD) and vectors.shape == (len(GOOD), 384)
    for path, vector in zip(paths, vectors, strict=True):
        alone = extractor.extract([project / "data" / "mixed" / path]).numpy()[0]
        assert np.array_equal(vector, alone), path  # bit for bit (ViT-S: no batch-dependent reduction)


def test_cls_and_mean_patch_at_another_size_in_float16(project, extractor):
    from PIL import Image

    from dinovault.inference.extractor import build_transform

    run_set(project, "pooled", workers=0)
    features = load_features("pooled", root=project)
    assert features.vectors.dtype == np.float16 and features.vectors.shape == (len(GOOD), 768)
    small = build_transform(get_spec(VITS), 56)
    for path, vector in zip(features.paths, features.vectors, strict=True):
        with Image.open(project / "data" / "mixed" / path) as im:
            x = small(im.convert("RGB")).unsqueeze(0)
        cls, patches = extractor.extract(x, patch_tokens=True)
        assert patches.shape[1] == (56 // 14) ** 2
        expected = np.concatenate([cls[0].numpy(), patches[0].mean(0).numpy()])
        # at 56 px (17 tokens) the batched matmuls block differently from one image's: within 1e-5, then fp16's
        # rounding (2^-11 relative)
        np.testing.assert_allclose(vector.astype(np.float32), expected, rtol=1e-3, atol=1e-5, err_msg=path)


def test_a_dinov3_set_takes_its_weights_from_dinov3_save_dir(project):
    import torch

    from dinovault import DINOv2FeatureExtractor
    from tests.support.dinov3_checkpoints import DINOV3, make_state_dict

    weights = project / "models" / "dinov3" / "dinov3_vits16.pth"
    weights.parent.mkdir(parents=True, exist_ok=True)
    torch.save(make_state_dict(DINOV3["dinov3_vits16"], seed=5), weights)
    run_set(project, "v3", workers=1)
    features = load_features("v3", root=project)
    assert features.meta["model"] == "dinov3_vits16" and features.vectors.shape == (3, 384)
    fx = DINOv2FeatureExtractor("dinov3_vits16", weights=weights, device="cpu")
    for path, vector in zip(features.paths, features.vectors, strict=True):
        alone = fx.extract([project / "data" / "few" / path]).numpy()[0]
        np.testing.assert_allclose(vector, alone, rtol=0, atol=1e-5, err_msg=path)
    _, sets = load_sets(project / "params.yaml")
    assert sets["v3"].stage == "features_dinov3@v3" and sets["few"].stage == "features@few"


def test_bad_files_are_listed_as_skipped_with_their_reason(project, mixed):
    reasons = {path: why for path, _, why in mixed.skipped}
    assert sorted(reasons) == sorted(BAD)
    assert "not an image file" in reasons["notes.txt"]
    assert reasons["truncated.jpg"].startswith("unreadable") and reasons["text.jpg"].startswith("unreadable")
    import csv

    with open(project / "features" / "mixed" / "skipped.csv", encoding="utf-8", newline="") as fh:
        assert {row["path"] for row in csv.DictReader(fh)} == set(BAD)
    again = run_set(project, "mixed", workers=0)  # bad files are not decoded again: nothing to compute
    assert again.computed == 0 and sorted(p for p, _, _ in again.skipped) == sorted(BAD)


def test_the_index_records_what_made_the_vectors(project, mixed):
    import pandas

    index = pandas.read_csv(project / "features" / "mixed" / "index.csv")
    assert list(index.columns) == ["path", "sha256", "shard", "row"] and len(index) == len(GOOD)
    assert "sub/中文 照片.jpg" in set(index["path"])
    meta = load_features("mixed", root=project).meta
    from dinovault.features.images import content_hash

    assert meta["weights_sha256"] == content_hash(project / "models" / "dinov2" / f"{VITS}.pth")
    assert meta["model"] == VITS and meta["tokens"] == "cls" and "Resize" in meta["preprocessing"]


def test_a_rerun_computes_only_new_content_and_renames_cost_nothing(project):
    folder = project / "data" / "inc"
    made = make_many(folder, 6)
    first = run_set(project, "inc", workers=0)
    assert (first.computed, first.count) == (6, 6)
    before = load_features("inc", root=project)
    old = {p: np.array(v) for p, v in zip(before.paths, before.vectors, strict=True)}
    del before
    made[0].rename(folder / "renamed.jpg")
    shutil.copy(made[1], folder / "dup.jpg")
    made[2].unlink()
    make_many(folder, 2, start=100)
    second = run_set(project, "inc", workers=0)
    assert (second.computed, second.reused, second.count) == (2, 5, 8)
    after = load_features("inc", root=project)
    assert "img_000002.jpg" not in after.paths and {"renamed.jpg", "dup.jpg"} <= set(after.paths)
    vec = dict(zip(after.paths, after.vectors, strict=True))
    assert np.array_equal(vec["renamed.jpg"], old["img_000000.jpg"])
    assert np.array_equal(vec["dup.jpg"], old["img_000001.jpg"])
    assert run_set(project, "inc", workers=0).computed == 0


def test_a_kill_mid_run_loses_at_most_the_shard_in_flight(project):
    make_many(project / "data" / "big", 24)
    shards = project / "features" / "big" / "shards"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "dinovault", "features", "--stage", "--set", "big", "--workers",
                             "0"], cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while not (shards.is_dir() and any(shards.glob("*.json"))):
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.kill()  # SIGKILL: no cleanup of any kind
    proc.wait()
    assert not (project / "features" / "big" / "meta.json").exists(), "the run ended before the kill: no test"
    from dinovault.features.store import Store

    kept = sum(1 for _ in shards.glob("*.json"))
    assert kept >= 1
    rerun = run_set(project, "big", workers=0)
    assert rerun.reused == 2 * kept and rerun.computed == 24 - 2 * kept
    assert load_features("big", root=project).vectors.shape == (24, 384)
    assert not [p for p in Store(shards.parent, "").folder.rglob(".*")], "temporary files left behind"


def test_a_missing_or_imageless_folder_is_an_error_and_writes_nothing(project):
    for name, words in (("missing", "no images folder"), ("empty", "no image in data/empty")):
        with pytest.raises(ImageError, match=words) as caught:
            run_set(project, name)
        assert " / " in str(caught.value)  # English / 中文
        assert not (project / "features" / name).exists()


@pytest.mark.parametrize("text, words", [
    ("features:\n  a: {images: x, model: dinov2_vits14, colour: red}\n", r":3: features\.a: unknown option 'colour'"),
    ("features:\n  a: {images: x, model: dinov3_vits16}\n", r"its sets go under dinov3_features"),
    ("features:\n  a: {images: x, model: dinov2_vits14, size: 100}\n", r"not a multiple of .* patch size 14"),
    ("features:\n  a: {images: x, model: dinov2_vits14, tokens: all}\n", r"tokens 'all' is not one of"),
    ("features:\n  a: {images: ../x, model: dinov2_vits14}\n", r"not inside the repository"),
    ("features:\n  a: {model: dinov2_vits14}\n", r"images is missing"),
    ("features:\n  a: [data]\n", r"expected a mapping"),
    ("features: [a]\n", r"features must be a dict"),
])
def test_params_are_validated_with_the_line(tmp_path, text, words):
    path = tmp_path / "params.yaml"
    path.write_text("models: []\n" + text, encoding="utf-8")
    with pytest.raises(ParamsError, match=words):
        load_sets(path)


def test_the_shipped_params_have_no_set_and_validate():
    params, sets = load_sets(ROOT / "params.yaml")
    assert sets == {} and params.models


def test_the_ray_engine_gives_the_local_engines_vectors(project, mixed):
    ray = pytest.importorskip("ray")
    environ = dict(os.environ)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    try:
        done = run_set(project, "viaray", engine="ray", workers=2)
    finally:
        ray.shutdown()
        # ray.init leaves its driver's variables (PYTHONBREAKPOINT) in this process: the later tests' commands
        # would inherit them (and none of them could be forked: tests/support/warmstart.py)
        os.environ.clear()
        os.environ.update(environ)
    assert done.computed == len(GOOD) and sorted(p for p, _, _ in done.skipped) == sorted(BAD)
    local, remote = load_features("mixed", root=project), load_features("viaray", root=project)
    assert local.paths == remote.paths and local.sha256 == remote.sha256
    assert np.array_equal(local.vectors, remote.vectors)  # other batches, one thread per actor: the same bits


# ---------------------------------------------------------------------------------------------- in a clone


@pytest.fixture(scope="module")
def clone(tmp_path_factory, dinov2_server):
    machine = Machine(tmp_path_factory.mktemp("machine"), dinov2_server.env,
                      snapshot_worktree(tmp_path_factory.mktemp("source")), DINOVAULT_BACKOFF="0.05")
    c = machine.clone("a")
    c.select(VITS)
    c.skip_smoke_test()
    params = c.path / "params.yaml"
    params.write_text(params.read_text(encoding="utf-8").replace(
        "\nfeatures: {}", f"\nfeatures:\n  faces: {{images: data/faces, model: {VITS}, size: 28}}"), encoding="utf-8")
    make_many(c.path / "data" / "faces", 3)
    c.commit("a feature set")
    return c


def test_invoke_features_in_a_clone_chains_fetch_then_features(clone):
    res = clone.invoke("features", "--set", "faces")
    assert "3 computed" in res.text and "faces: computed" in res.text, res.text
    stages = clone.lock()["stages"]
    assert f"fetch@{VITS}" in stages and "features@faces" in stages
    assert load_features("faces", root=clone.path).vectors.shape == (3, 384)
    make_many(clone.path / "data" / "faces", 1, start=50)
    res = clone.dvc("repro")  # plain DVC: the stage's own command reports what it did
    assert "1 computed, 3 reused" in res.text, res.text
    assert "faces: up to date" in clone.invoke("features").text
    assert "features@faces" not in clone.dvc("status").stdout


def test_init_writes_the_feature_stages_for_a_project_of_its_own(tmp_path):
    from ruamel.yaml import YAML

    from dinovault.repo.init import init

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    done = init(tmp_path)
    assert any("features@<set>" in line for line in done.changed)
    stages = YAML(typ="safe").load((tmp_path / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    assert stages["features"]["do"]["cmd"] == "dinovault features --stage --set ${key}"
    assert stages["features_dinov3"]["do"]["deps"] == ["${item.images}", "${dinov3_save_dir}/${item.model}.pth"]
    assert load_sets(tmp_path / "params.yaml", own_keys=True)[1] == {}
    listed = subprocess.run([str(Path(sys.executable).parent / "dvc"), "stage", "list"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr  # foreach over the empty sets: no stage, no error
    assert init(tmp_path).changed == []
