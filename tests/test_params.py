"""params.yaml: the shipped file is valid, bad files give the line and the problem, selecting keeps comments."""

from __future__ import annotations

from pathlib import Path

import pytest

from dinovault.errors import ParamsError, UnknownModelError
from dinovault.params import add_models, load_params

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_params_select_the_default_models():
    params = load_params(ROOT / "params.yaml")
    assert params.models == ("dinov2_vitb14",)  # what the README's Quick start fetches
    assert params.save_dir == "models/dinov2"
    assert params.smoke_test is True
    assert params.formats == ("pth",)


def test_formats_always_hold_pth_once(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("models: []\nformats: [hf, safetensors, hf]\n", encoding="utf-8")
    assert load_params(path).formats == ("pth", "hf", "safetensors")


@pytest.mark.parametrize(
    "text, where, problem",
    [
        ("models: [dinov2_vits14\nsave_dir: x\n", ":2", "not valid YAML"),
        ("models:\n  - dinov2_vits14\n save_dir: x\n", ":3", "not valid YAML"),
        ("- just\n- a list\n", "", "expected a mapping"),
        ("models: dinov2_vits14\n", ":1", "models must be a list"),
        ("models:\n  - dinov2_vits14\nsave_dir: 3\n", ":3", "save_dir must be a str"),
        ("models:\n  - dinov2_vits14\nsmoke_test: 'no'\n", ":3", "smoke_test must be a bool"),
        ("models:\n  - dinov2_vits14\nsave_dir: /tmp/models\n", ":3", "must be a relative path inside the repository"),
        ("models:\n  - dinov2_vits14\nsave_dir: ../models\n", ":3", "must be a relative path inside the repository"),
        ("save_dir: models/../../x\n", ":1", "must be a relative path inside the repository"),
        ("save_dir: ~/models\n", ":1", "must be a relative path inside the repository"),
        ("save_dir: .\n", ":1", "must be a relative path inside the repository"),
        ("models:\n  - dinov2_vits14\nmodel: x\n", ":3", "unknown key 'model'"),
        ("models:\n  - dinov2_vits14\n  - 12\n", ":3", "model names are strings"),
        ("# c\nmodels:\n  - dinov2_vits14\n  - dinov2_vits14\n", ":4", "selected twice"),
        ("models:\n  - dinov2_vits14\n  - dinov2_vitb41\n", ":3", "did you mean dinov2_vitb14"),
        ("models: []\nformats:\n  - pth\n  - onnx\n", ":4", "unknown format 'onnx'"),
    ],
)
def test_a_bad_file_gives_its_line_and_the_problem(tmp_path, text, where, problem):
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert f"{path}{where}" in str(err.value)
    assert problem in str(err.value)


def test_a_missing_file_says_where_to_run(tmp_path):
    with pytest.raises(ParamsError, match="cannot read .*params.yaml"):
        load_params(tmp_path / "params.yaml")


def test_selecting_a_model_keeps_comments_order_and_other_keys(tmp_path):
    path = tmp_path / "params.yaml"
    original = (ROOT / "params.yaml").read_text(encoding="utf-8")
    path.write_text(original, encoding="utf-8")
    assert add_models(path, ["dinov2_vitl14_reg", "dinov2_vitb14"]) == ["dinov2_vitl14_reg"]
    text = path.read_text(encoding="utf-8")
    for line in original.splitlines():
        assert line in text  # nothing lost, comments included
    assert load_params(path).models == ("dinov2_vitb14", "dinov2_vitl14_reg")
    # the comment after the list stays after it
    assert text.index("dinov2_vitl14_reg\n") < text.index("# Where the exported checkpoints go")
    assert add_models(path, ["dinov2_vitb14"]) == []  # already selected: the file is not rewritten
    assert path.read_text(encoding="utf-8") == text


def test_an_unknown_name_leaves_the_file_untouched(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes((ROOT / "params.yaml").read_bytes())
    before = path.read_bytes()
    with pytest.raises(UnknownModelError, match="did you mean dinov2_vitg14"):
        add_models(path, ["dinov2_vits14_reg", "dinov2_vitg41"])
    assert path.read_bytes() == before


def test_selecting_into_an_empty_selection(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("# keep me\nmodels: []  # none yet\nsave_dir: models/dinov2\n", encoding="utf-8")
    add_models(path, ["dinov2_vits14"])
    text = path.read_text(encoding="utf-8")
    assert "# keep me" in text and "# none yet" in text
    assert load_params(path).models == ("dinov2_vits14",)
