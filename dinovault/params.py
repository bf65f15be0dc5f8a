"""params.yaml: which models are selected and where they go. Validated on read; edited keeping comments."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from .catalog import MODEL_NAMES, get_spec
from .errors import ParamsError, UnknownModelError
from .files import decode_utf8, write_atomic

DEFAULT_MODELS = ("dinov2_vits14", "dinov2_vitb14")
KNOWN_KEYS = {"models": list, "save_dir": str, "smoke_test": bool, "formats": list}
FORMATS = ("pth", "safetensors", "hf")  # every export format (exports/formats.py writes them)
# written by `dinovault init` (repo/init.py) into a project of its own: its params.yaml may hold keys of the project's,
# which are kept and ignored (a key that looks like a misspelt one of ours is still an error)
PACKAGE_FILE = ".dinovault/package.json"


@dataclass(frozen=True)
class Params:
    models: tuple[str, ...]
    save_dir: str
    smoke_test: bool
    formats: tuple[str, ...] = ("pth",)


def _yaml() -> YAML:
    yaml = YAML()  # round-trip: keeps comments, order and line numbers
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def _read(path: Path):
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ParamsError(
            f"cannot read {path}: {err.strerror or err} / 无法读取 {path.name}",
            "run from the repository root / 请在仓库根目录运行",
        ) from None
    text = decode_utf8(data, str(path), ParamsError)
    try:
        data = _yaml().load(text)
    except YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or err
        raise ParamsError(
            f"{where}: not valid YAML ({problem}) / 不是有效的 YAML", "fix the file / 请修正该文件"
        ) from None
    if not hasattr(data, "lc") or not isinstance(data, dict):
        raise ParamsError(
            f"{path}: expected a mapping with 'models', 'save_dir', 'smoke_test' / 应为含这些键的映射",
            "see README / 参见 README",
        )
    return data


def _typo(key) -> bool:
    """A key that looks like a misspelt dinovault key (``model``, ``save-dir``), not one of the project's own."""
    import difflib

    return isinstance(key, str) and bool(difflib.get_close_matches(key, KNOWN_KEYS, n=1, cutoff=0.8))


def _validate(path: Path, data, own_keys: bool | None = None) -> Params:
    """``own_keys``: keys of the project's own are allowed (None: when ``PACKAGE_FILE`` is beside the file)."""
    own_keys = (path.parent / PACKAGE_FILE).is_file() if own_keys is None else own_keys

    def line_of(key) -> int:
        return data.lc.key(key)[0] + 1

    for key, value in data.items():
        expected = KNOWN_KEYS.get(key)
        if expected is None and own_keys and not _typo(key):
            continue  # a key of the project's own
        if expected is None:
            raise ParamsError(
                f"{path}:{line_of(key)}: unknown key {key!r} / 未知的键 {key!r}",
                f"known keys / 可用的键: {', '.join(KNOWN_KEYS)}",
            )
        if not isinstance(value, expected):
            raise ParamsError(
                f"{path}:{line_of(key)}: {key} must be a {expected.__name__}, got {type(value).__name__} {value!r} / "
                f"{key} 的类型应为 {expected.__name__}",
                "fix that line / 请修正该行",
            )
    models = data.get("models", list(DEFAULT_MODELS))
    seen: set[str] = set()
    for i, name in enumerate(models):
        line = models.lc.item(i)[0] + 1 if hasattr(models, "lc") else 0  # 0: the default selection
        if not isinstance(name, str):
            raise ParamsError(
                f"{path}:{line}: model names are strings, got {name!r} / 模型名应为字符串", "fix that line / 请修正该行"
            )
        try:
            get_spec(name)
        except UnknownModelError as err:
            raise ParamsError(f"{path}:{line}: {err.message}", err.hint) from None
        if name in seen:
            raise ParamsError(
                f"{path}:{line}: {name} is selected twice / {name} 重复选择", "remove the duplicate / 删除重复项"
            )
        seen.add(name)
    save_dir = str(data.get("save_dir", "models/dinov2"))
    parts = Path(save_dir).parts
    if not parts or Path(save_dir).is_absolute() or save_dir.startswith("~") or ".." in parts or parts == (".",):
        raise ParamsError(
            f"{path}:{line_of('save_dir')}: save_dir {save_dir!r} must be a relative path inside the repository "
            "(DVC tracks only files inside it) / save_dir 必须是仓库内的相对路径",
            "e.g. save_dir: models/dinov2 / 例如 save_dir: models/dinov2",
        )
    formats = data.get("formats", ["pth"])
    for i, fmt in enumerate(formats):
        if fmt not in FORMATS:
            line = formats.lc.item(i)[0] + 1 if hasattr(formats, "lc") else line_of("formats")
            raise ParamsError(f"{path}:{line}: unknown format {fmt!r} / 未知格式",
                              f"formats are {', '.join(FORMATS)} / 可用格式: {', '.join(FORMATS)}")
    formats = ("pth", *dict.fromkeys(f for f in formats if f != "pth"))  # pth is always exported
    return Params(tuple(models), save_dir, bool(data.get("smoke_test", True)), formats)


def load_params(path: str | Path = "params.yaml", own_keys: bool | None = None) -> Params:
    path = Path(path)
    return _validate(path, _read(path), own_keys)


def add_models(path: str | Path, names: list[str]) -> list[str]:
    """Select models not yet selected, keeping the file's comments and order; returns those added."""
    path = Path(path)
    for name in names:
        get_spec(name)  # an unknown name fails before the file is touched
    data = _read(path)
    _validate(path, data)
    models = data.setdefault("models", [])
    added = [n for n in dict.fromkeys(names) if n not in models]
    if added:
        trailing = models.ca.items.pop(len(models) - 1, None) if models else None
        models.extend(added)
        if trailing:  # ruamel hangs the comment that follows a list on its last item: keep it last
            models.ca.items[len(models) - 1] = trailing
        text = io.StringIO()
        _yaml().dump(data, text)
        write_atomic(path, text.getvalue())
    return added


__all__ = ["DEFAULT_MODELS", "MODEL_NAMES", "Params", "add_models", "load_params"]
