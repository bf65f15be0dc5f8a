"""The named feature sets of params.yaml (``features:`` for DINOv2 models, ``dinov3_features:`` for DINOv3 ones, as
the model lists), validated on read: each error names the file and line.

    features:
      faces: {images: data/faces, model: dinov2_vitb14}            # required: images, model
      crops: {images: data/crops, model: dinov2_vits14, size: 448, tokens: cls+mean_patch, dtype: float16,
              batch_size: 64, shard_size: 512}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..catalog import FAMILIES, family_of, get_spec
from ..errors import ParamsError, UnknownModelError
from ..params import Params, read_document, windows_path_problem

FEATURES_DIR = "features"  # features/<set>/ beside params.yaml: the stage's output
TOKENS = ("cls", "cls+mean_patch", "patch")
DTYPES = ("float32", "float16")  # .npy has no bfloat16
OPTIONS = {"images": str, "model": str, "size": int, "tokens": str, "dtype": str, "batch_size": int,
           "shard_size": int}


@dataclass(frozen=True)
class FeatureSet:
    name: str
    images: str  # relative to the repository, forward slashes
    model: str
    size: int | None = None  # the side the model sees; None: the family's official preprocessing
    tokens: str = "cls"
    dtype: str = "float32"
    batch_size: int = 32
    shard_size: int = 512  # rows per shard: what a kill may lose at most

    @property
    def stage(self) -> str:
        return f"{family_of(self.model).features_stage}@{self.name}"

    def weights(self, root: Path, params: Params) -> Path:
        return root / params.save_dir_of(self.model) / f"{self.model}.pth"

    def out_dir(self, root: Path) -> Path:
        return root / FEATURES_DIR / self.name


def load_sets(params_file: Path, own_keys: bool | None = None) -> tuple[Params, dict[str, FeatureSet]]:
    """Every feature set of ``params_file`` by name, with the file's Params."""
    params, data = read_document(params_file, own_keys)
    sets: dict[str, FeatureSet] = {}
    for family, key in ((f.name, f.features_key) for f in FAMILIES):
        block = data.get(key) or {}
        for name, options in block.items():
            line = block.lc.key(name)[0] + 1 if hasattr(block, "lc") else 0
            where = f"{params_file}:{line}: {key}.{name}"
            if name in sets:
                raise ParamsError(f"{where}: a second set named {name!r} / 特征集 {name!r} 重名",
                                  "give each set its own name / 每个特征集须有不同的名字")
            sets[name] = _one(where, family, key, str(name), options)
    return params, sets


def _one(where: str, family: str, key: str, name: str, options) -> FeatureSet:
    if not name.replace("-", "").replace("_", "").isalnum() or not name.isascii():
        raise ParamsError(f"{where}: a set name is letters, digits, - and _ / 特征集名只能含字母、数字、- 和 _",
                          "it names the folder features/<set>/ and the stage features@<set> / 它也是目录名与阶段名")
    if not isinstance(options, dict):
        raise ParamsError(f"{where}: expected a mapping such as {{images: data/faces, model: dinov2_vitb14}}, got "
                          f"{options!r} / 应为映射", "fix that line / 请修正该行")
    for option, value in options.items():
        kind = OPTIONS.get(option)
        if kind is None:
            raise ParamsError(f"{where}: unknown option {option!r} / 未知选项 {option!r}",
                              f"options / 可用选项: {', '.join(OPTIONS)}")
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ParamsError(f"{where}: {option} must be a {kind.__name__}, got {value!r} / {option} 的类型应为 "
                              f"{kind.__name__}", "fix that line / 请修正该行")
    for required in ("images", "model"):
        if required not in options:
            raise ParamsError(f"{where}: {required} is missing / 缺少 {required}",
                              "e.g. {images: data/faces, model: dinov2_vitb14}")
    images = options["images"]
    problem = windows_path_problem(images)
    if problem or Path(images).is_absolute() or ".." in Path(images).parts or images.startswith("~"):
        raise ParamsError(f"{where}: images {images!r} {problem or 'is not inside the repository'} / images 须为"
                          "仓库内的相对路径", "a relative path with forward slashes, e.g. data/faces / 例如 data/faces")
    try:
        spec = get_spec(options["model"])
    except UnknownModelError as err:
        raise ParamsError(f"{where}: {err.message}", err.hint) from None
    if spec.family != family:
        right = family_of(spec).features_key
        raise ParamsError(f"{where}: {spec.name} is a {spec.family} model, its sets go under {right}: / "
                          f"{spec.name} 的特征集应放在 {right}: 下", f"move the set to {right}: / 请移到 {right}:")
    size = options.get("size")
    if size is not None and (size < spec.patch_size or size % spec.patch_size):
        raise ParamsError(f"{where}: size {size} is not a multiple of {spec.name}'s patch size {spec.patch_size} / "
                          f"size 须为 {spec.patch_size} 的倍数",
                          f"e.g. size: {spec.patch_size * 16} / 例如 size: {spec.patch_size * 16}")
    for option, allowed in (("tokens", TOKENS), ("dtype", DTYPES)):
        if option in options and options[option] not in allowed:
            raise ParamsError(f"{where}: {option} {options[option]!r} is not one of {', '.join(allowed)} / "
                              f"{option} 须为 {', '.join(allowed)} 之一", "fix that line / 请修正该行")
    for option in ("batch_size", "shard_size"):
        if option in options and options[option] < 1:
            raise ParamsError(f"{where}: {option} must be at least 1 / {option} 须为正整数",
                              "fix that line / 请修正该行")
    return FeatureSet(name=name, images=images.rstrip("/"), model=spec.name, size=size,
                      **{k: options[k] for k in ("tokens", "dtype", "batch_size", "shard_size") if k in options})


def find_set(params_file: Path, name: str) -> tuple[Params, FeatureSet]:
    params, sets = load_sets(params_file)
    if name not in sets:
        known = ", ".join(sets) or "none yet / 尚无"
        raise ParamsError(f"no feature set {name!r} in {params_file} / 没有名为 {name!r} 的特征集",
                          f"sets / 已有: {known}; add one under features: e.g. "
                          f"{name}: {{images: data/{name}, model: dinov2_vitb14}} / 请在 features: 下添加")
    return params, sets[name]
