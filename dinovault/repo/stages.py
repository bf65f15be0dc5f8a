"""The DVC stages of every registered family (catalog/family.py), as dvc.yaml text, and dinovault's params.yaml keys:
one definition for this repository's own ``dvc.yaml`` (``own=True``: the fetch script and the package's source are
the dependencies) and for the stages `dinovault init` writes into a project (the installed package: its record
``.dinovault/package.json``). tests/test_family.py fails when the checked-in dvc.yaml is not ``dvc_yaml()``.
"""

from __future__ import annotations

from ..catalog import FAMILIES, Family
from ..params import PACKAGE_FILE
from .layout import PARAMS_FILE

SCRIPT = "scripts/download_dinov2.py"  # this repository's fetch script (a DVC stage command)
HEADER = """\
# dinovault/repo/stages.py writes this file from the model families (dinovault/catalog/): edit those, then run
# `python -m dinovault.repo.stages > dvc.yaml` (tests/test_family.py checks they agree).
# 由 dinovault/repo/stages.py 依模型族定义生成；请修改 dinovault/catalog/ 后重新生成。
stages:
"""


def fetch_stage(family: Family, own: bool = False) -> str:
    """The fetch stage of ``family`` (``<stage>@<model>``, one per model of its params.yaml list)."""
    save_dir = family.save_dir_key
    run = f"python {SCRIPT}" if own else "dinovault fetch --stage"
    cmd = f"{run} --model ${{item}} --save_dir ${{{save_dir}}} --metrics metrics/${{item}}.json --params {PARAMS_FILE}"
    if own:
        deps = ("      deps:  # the code that decides the bytes, the card and the metrics: the package less what "
                ".dvcignore leaves\n        # out (inference/, repo/, remotes/, …), checked against the fetch script's"
                " imports by tests/test_layers.py\n"
                f"        - {SCRIPT}\n        - dinovault\n")
    else:
        deps = ("      deps:  # the installed dinovault: its version and a hash of its fetch code (an upgrade reruns "
                f"the stage)\n        - {PACKAGE_FILE}\n")
    note = f"\n  # {family.stage_note}" if family.stage_note else ""
    return f"""\
  # dinovault: one stage per {family.title} model of params.yaml `{family.select_key}` ({family.stage}@<model>):
  # download once into the torch.hub cache, verify against the pinned SHA-256, export to `{save_dir}`, smoke-test,
  # record the metrics. The model card is derived from the catalog and the registry, so it is cached like the weights;
  # one folder per extra format of params.yaml `formats`, empty when not chosen (dinovault/exports/formats.py).{note}
  {family.stage}:
    foreach: ${{{family.select_key}}}
    do:
      cmd: {cmd}
{deps}      params:
        - {save_dir}
        - smoke_test
        - formats
      outs:
        - ${{{save_dir}}}/${{item}}.pth
        - ${{{save_dir}}}/${{item}}.json
        - ${{{save_dir}}}/safetensors/${{item}}
        - ${{{save_dir}}}/hf/${{item}}
      metrics:
        - metrics/${{item}}.json:
            cache: false
"""


def features_stage(family: Family, own: bool = False) -> str:
    """The feature-set stage of ``family`` (``<features_stage>@<set>``); its output persists between runs, which
    compute only the images not yet embedded (dinovault/features/)."""
    key, save_dir = family.features_key, family.save_dir_key
    run = "python -m dinovault features" if own else "dinovault features"
    return f"""\
  # dinovault: one stage per feature set of {family.title} models in params.yaml `{key}`
  # ({family.features_stage}@<set>): the vectors of every image below its folder, computed incrementally into
  # features/<set>/.
  {family.features_stage}:
    foreach: ${{{key}}}
    do:
      cmd: {run} --stage --set ${{key}}
      deps:
        - ${{item.images}}
        - ${{{save_dir}}}/${{item.model}}.pth
      params:
        - {key}.${{key}}
      outs:
        - features/${{key}}:
            persist: true
"""


def blocks(own: bool = False) -> dict[str, str]:
    """Every stage of ours by name: the fetch stages, then the feature-set stages, of every registered family."""
    return {**{f.stage: fetch_stage(f, own) for f in FAMILIES},
            **{f.features_stage: features_stage(f, own) for f in FAMILIES}}


def descriptions() -> dict[str, str]:
    """What each stage of ours runs once for, by stage name (`dinovault init`'s report)."""
    return {**{f.stage: f"{f.stage}@<model> for each model in {f.select_key}" for f in FAMILIES},
            **{f.features_stage: f"{f.features_stage}@<set> for each set in {f.features_key}" for f in FAMILIES}}


def dvc_yaml() -> str:
    """This repository's own dvc.yaml."""
    return HEADER + "".join(blocks(own=True).values())


def _names(family: Family) -> str:
    lines, line = [], "#  "
    for name in family.model_names:
        if len(line) + len(name) + 1 > 118:
            lines.append(line)
            line = "#  "
        line += f" {name}"
    return "\n".join([*lines, line]) + "\n"


def params_blocks() -> dict[str, str]:
    """The params.yaml text of each key of ours, with its comment (`dinovault init` appends the missing ones)."""
    out: dict[str, str] = {}
    for f in FAMILIES:
        out[f.select_key] = (f"# dinovault: {f.select_hint or f.title + ' models / ' + f.title + ' 模型'}\n"
                             f"{_names(f)}{f.select_key}: []\n")
        out[f.save_dir_key] = (f"# dinovault: where the {f.title} weights go (DVC outputs) / {f.title} 模型导出目录\n"
                               f"{f.save_dir_key}: {f.default_save_dir}\n")
        if f is FAMILIES[0]:
            out["formats"] = "# dinovault: exports beside the .pth: safetensors, hf / 额外导出格式\nformats: [pth]\n"
            out["smoke_test"] = ("# dinovault: a forward pass after each download / 下载后运行一次前向测试\n"
                                 "smoke_test: true\n")
    for f in FAMILIES:
        out[f.features_key] = (f"# dinovault: feature sets of {f.title} models, e.g. faces: {{images: data/faces, "
                               f"model: {f.model_names[0]}}} (`dinovault features`) / {f.title} 模型的特征集\n"
                               f"{f.features_key}: {{}}\n")
    return out


if __name__ == "__main__":
    print(dvc_yaml(), end="")
