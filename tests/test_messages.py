"""Issue 9 items 6 and 8: the errors a user hits with text files, images and folders are one line (plus the hint),
English / 中文, what happened and what to do, exit non-zero, and no traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dinovault.errors import DinovaultError, ImageError, ParamsError, RegistryError, UsageError
from dinovault.inference.extractor import DINOv2FeatureExtractor
from dinovault.inference.features import extract_folder
from dinovault.params import load_params
from dinovault.registry import load_registry
from tests.support.warmstart import run_python

REPO = Path(__file__).resolve().parents[1]
NAME = "dinov2_vits14"
CHINESE = re.compile(r"[\u4e00-\u9fff]")
GBK_LINE = "# 模型登记\n".encode("gbk")  # what an editor set to GBK writes


def assert_bilingual(text: str) -> None:
    """One message line and one hint line, each 'English / 中文'."""
    lines = text.strip().splitlines()
    assert 1 <= len(lines) <= 2, text
    for line in lines:
        english, _, chinese = line.rpartition(" / ")
        assert english and re.search(r"[A-Za-z]{3}", english) and CHINESE.search(chinese), line
    assert "Traceback" not in text


def run(args, **env) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "DINOV2_BASE_URL": "http://127.0.0.1:9", **env}
    assert args[0] == sys.executable
    return run_python(args[1:], env=full_env, cwd=REPO, timeout=300)


# -- text files that are not UTF-8 ---------------------------------------------------------------------------


def test_a_registry_that_is_not_utf8_names_file_and_line(tmp_path):
    reg = tmp_path / "registry.txt"
    reg.write_bytes(b"# pins\n" + GBK_LINE + b"dinov2_vits14_pretrain.pth 1 sha256:" + b"0" * 64 + b"\n")
    with pytest.raises(RegistryError) as err:
        load_registry(reg)
    assert str(err.value).startswith(f"{reg}:2: not UTF-8 text (byte 0x")
    assert_bilingual(str(err.value))
    # the download script, as the DVC stage runs it: one line, exit 1, nothing fetched
    script = run([sys.executable, "scripts/download_dinov2.py", "--model", NAME, "--save_dir", str(tmp_path / "m")],
                 DINOVAULT_REGISTRY=str(reg), TORCH_HOME=str(tmp_path / "th"))
    assert script.returncode == 1 and f"{reg}:2: not UTF-8" in script.stderr
    assert "Traceback" not in script.stderr and not (tmp_path / "m").exists()


def test_a_params_file_that_is_not_utf8_names_file_and_line(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_bytes(b"models:\n  - dinov2_vits14\n" + GBK_LINE + b"save_dir: models/dinov2\n")
    with pytest.raises(ParamsError) as err:
        load_params(params)
    assert str(err.value).startswith(f"{params}:3: not UTF-8 text")
    assert_bilingual(str(err.value))
    script = run([sys.executable, "scripts/download_dinov2.py", "--all", "--params", str(params)],
                 TORCH_HOME=str(tmp_path / "th"))
    assert script.returncode != 0 and f"{params}:3: not UTF-8" in script.stderr and "Traceback" not in script.stderr


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_bytes("\ufeffmodels:\n  - dinov2_vits14\n".encode())
    assert load_params(params).models == (NAME,)


# -- images ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def extractor(models_dir):
    return DINOv2FeatureExtractor(NAME, weights=models_dir, device="cpu")


def test_a_corrupt_image_is_named(extractor, tmp_path):
    good = tmp_path / "good.png"
    Image.new("RGB", (64, 48), (10, 20, 30)).save(good)
    broken = tmp_path / "holiday.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is no jpeg")
    with pytest.raises(ImageError) as err:
        extractor.extract([good, broken])
    assert str(err.value).startswith(f"cannot read image {broken}: ")  # PIL's reason follows
    assert_bilingual(str(err.value))
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(good.read_bytes()[:60])
    with pytest.raises(ImageError, match=f"cannot read image {re.escape(str(truncated))}"):
        extractor.extract(str(truncated))
    lazy = Image.open(truncated)  # opened but not decoded yet: it fails in extract, and is still named
    with pytest.raises(ImageError, match=f"cannot read image {re.escape(str(truncated))}"):
        extractor.extract([lazy])
    assert extractor.extract(good).shape == (1, 384)


def test_bad_arguments_are_usage_errors():
    with pytest.raises(UsageError, match="dtype must be .* / dtype 须为"):
        DINOv2FeatureExtractor(NAME, weights={}, dtype="int8")
    with pytest.raises(UsageError, match="unknown device 'gpu0' / 未知设备"):
        DINOv2FeatureExtractor(NAME, weights={}, device="gpu0")


def test_bad_tensor_inputs_say_what_is_expected(extractor):
    with pytest.raises(ImageError, match=r"\(N, 3, H, W\), got shape \(2, 4, 8, 8\) / 图片张量"):
        extractor.extract(torch.zeros(2, 4, 8, 8))
    with pytest.raises(ImageError, match="uint8 .* or float .* got torch.int64 / 图片张量"):
        extractor.extract(torch.zeros(1, 3, 224, 224, dtype=torch.int64))


# -- folders for invoke extract ---------------------------------------------------------------------------------


def test_a_folder_without_images_is_an_error(models_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no pictures here")
    out = tmp_path / "f.npz"
    with pytest.raises(ImageError) as err:
        extract_folder(NAME, empty, out, weights=models_dir, device="cpu", progress=False)
    assert str(err.value).startswith(f"no images in {empty}: 1 file(s), none with an image extension")
    assert_bilingual(str(err.value))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ImageError, match="1 file\\(s\\), none readable"):
        extract_folder(NAME, broken, out, weights=models_dir, device="cpu", progress=False)
    assert not out.exists() and sorted(os.listdir(tmp_path)) == ["broken", "empty"]  # nothing half-written


def test_invoke_extract_on_an_empty_folder_exits_non_zero(models_dir, tmp_path):
    (tmp_path / "photos").mkdir()
    cmd = [sys.executable, "-m", "invoke", "extract", "--model", NAME, "--images", str(tmp_path / "photos"),
           "--out", str(tmp_path / "f.npz")]
    proc = run(cmd, DINOVAULT_MODELS_DIR=str(models_dir))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith(f"error: no images in {tmp_path / 'photos'}: 0 file(s)")
    assert_bilingual(proc.stderr.removeprefix("error: "))
    assert not (tmp_path / "f.npz").exists()
    missing = run([sys.executable, "-m", "invoke", "extract", "--model", NAME])
    assert missing.returncode == 1 and "--images DIR and --out FILE / extract 需要" in missing.stderr
    assert_bilingual(missing.stderr.removeprefix("error: "))


def test_invoke_extract_names_a_corrupt_file_it_skips(models_dir, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)).save(photos / "ok.png")
    (photos / "bad.png").write_bytes(b"\x89PNG broken")
    proc = run([sys.executable, "-m", "invoke", "extract", "--model", NAME, "--images", str(photos),
                "--out", str(tmp_path / "f.npz")], DINOVAULT_MODELS_DIR=str(models_dir))
    assert proc.returncode == 0, proc.stderr
    assert "bad.png: unreadable: " in proc.stdout and "/ 无法读取" in proc.stdout


# -- the modules of item 8 speak both languages ------------------------------------------------------------------


def _checkpoint_errors(tmp_path):
    from dinovault.catalog import get_spec
    from dinovault.model.checkpoint import check_state_dict, load_state_dict
    from dinovault.model.smoke import smoke_test
    from tests.support.checkpoints import make_state_dict, save_checkpoint, save_malicious, save_object

    s14, b14 = get_spec(NAME), get_spec("dinov2_vitb14")
    truncated = save_checkpoint(s14, tmp_path / "t.pth", depth=1)
    truncated.write_bytes(truncated.read_bytes()[:5000])
    nan = make_state_dict(s14, depth=1)
    nan["norm.weight"][0] = float("nan")
    chunked = {k.replace("blocks.0.", "blocks.0.0."): v for k, v in make_state_dict(s14, depth=1).items()}
    short = __import__("dataclasses").replace(s14, depth=1)
    yield lambda: load_state_dict(tmp_path / "absent.pth", s14)
    yield lambda: load_state_dict(truncated, s14)
    yield lambda: load_state_dict(save_malicious(s14, tmp_path / "m.pth", tmp_path / "marker"), s14)
    yield lambda: load_state_dict(save_object({"teacher": {"x": 1}}, tmp_path / "o.pth"), s14)
    yield lambda: check_state_dict([1, 2], s14)
    yield lambda: check_state_dict(make_state_dict(s14, device="meta"), b14)
    yield lambda: check_state_dict(chunked, short)
    yield lambda: smoke_test(save_object(nan, tmp_path / "nan.pth"), short)


def _text_file_errors(tmp_path):
    from dinovault.registry import parse_registry

    for bad in ["a b", "a x sha256:" + "0" * 64, "a 1 md5:00", "a 1 sha256:" + "0" * 64 + "\na 1 sha256:" + "0" * 64]:
        yield lambda bad=bad: parse_registry(bad, "reg.txt")
    yield lambda: load_registry(tmp_path / "absent.txt")
    for text in ["models: [", "- a", "models: 1", "oops: 1", "models:\n  - 12", "models:\n  - a\n  - a"]:
        path = tmp_path / f"p{abs(hash(text))}.yaml"
        path.write_text(text.replace("- a", "- dinov2_vits14"), encoding="utf-8")
        yield lambda path=path: load_params(path)
    yield lambda: load_params(tmp_path / "absent.yaml")


@pytest.mark.parametrize("errors", [_checkpoint_errors, _text_file_errors])
def test_checkpoint_smoke_params_registry_errors_are_bilingual(errors, tmp_path):
    count = 0
    for call in errors(tmp_path):
        with pytest.raises(DinovaultError) as err:
            call()
        assert_bilingual(str(err.value))
        count += 1
    assert count >= 8
