"""One model family as data: its rows, where it lives in a repository (params.yaml keys, folder, DVC stages), the
names of its environment variables, its hints, its networks and its optional converter.

Everything else follows from this one definition: the params.yaml keys and their validation (params.py), the stages
of this repository's ``dvc.yaml`` and of the one `dinovault init` writes (repo/stages.py), the .gitignore rules
(exports/formats.py ``ignore_rules`` of ``default_save_dir``), the torch.hub entries (hubconf.py), the network that
builds a row (model/families.py). No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass

from .spec import ModelSpec


@dataclass(frozen=True)
class Family:
    # e.g. "dinov2": every row's ``family``; upper-cased, the prefix of its environment variables (settings.py:
    # ``<NAME>_BASE_URL`` its mirrors, ``<NAME>_URL`` a signed link)
    name: str
    title: str  # e.g. "DINOv2", in comments and messages
    rows: tuple[ModelSpec, ...]
    networks: dict[str, str]  # a row's ``builder`` → "module:function" building it (``function(spec, device=)``)
    select_key: str  # params.yaml: the list of selected models
    save_dir_key: str  # params.yaml: the folder of its weights
    default_save_dir: str
    stage: str  # dvc.yaml: ``<stage>@<model>``
    features_key: str  # params.yaml: its feature sets
    features_stage: str  # dvc.yaml: ``<features_stage>@<set>``
    conversion: str | None = None  # the module converting its Hugging Face layout (None: official files only)
    default_models: tuple[str, ...] = ()  # selected when params.yaml has no ``select_key``
    select_hint: str = ""  # params.yaml's comment above ``select_key`` (English / 中文), without "# "
    stage_note: str = ""  # dvc.yaml's comment above its fetch stage in this repository, without "# "
    token_word: str = "registers"  # what its tokens between CLS and the patches are called
    # the official evaluation preprocessing: resize (a side or (h, w)), interpolation, centre crop (None: none),
    # whether it works on the uint8 tensor (torchvision v2) rather than on the PIL image
    eval_resize: int | tuple[int, int] = 256
    eval_interpolation: str = "bicubic"
    eval_crop: int | None = 224
    eval_on_tensor: bool = False

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.rows)


__all__ = ["Family"]
