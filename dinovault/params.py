"""params.yaml: which models are selected and where they go. Validated on read; edited keeping comments."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from .catalog import FAMILIES, MODEL_NAMES, family_of, get_spec
from .errors import ParamsError, UnknownModelError
from .files import decode_utf8, write_atomic

# every family's; each family has keys of its own (catalog/family.py)
COMMON_KEYS = {"smoke_test": bool, "formats": list}


def known_keys() -> dict[str, type]:
    """Every key of ours and its type: the common ones, then each registered family's model list, folder and
    feature sets (features/sets.py validates those)."""
    return {**COMMON_KEYS, **{k: v for f in FAMILIES for k, v in ((f.select_key, list), (f.save_dir_key, str))},
            **{f.features_key: dict for f in FAMILIES}}


FORMATS = ("pth", "safetensors", "hf")  # every export format (exports/formats.py writes them)
# written by `dinovault init` (repo/init.py) into a project of its own: its params.yaml may hold keys of the project's,
# which are kept and ignored (a key that looks like a misspelt one of ours is still an error)
PACKAGE_FILE = ".dinovault/package.json"


@dataclass(frozen=True)
class Params:
    models: tuple[str, ...]  # every selected model, whatever its family
    save_dir: str  # DINOv2's folder (``save_dir``)
    smoke_test: bool
    formats: tuple[str, ...] = ("pth",)
    save_dirs: dict = field(default_factory=dict)  # family → its folder

    def save_dir_of(self, model: str) -> str:
        family = family_of(model)
        return self.save_dirs.get(family.name, family.default_save_dir)


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

    return isinstance(key, str) and bool(difflib.get_close_matches(key, known_keys(), n=1, cutoff=0.8))


def _validate(path: Path, data, own_keys: bool | None = None) -> Params:
    """``own_keys``: keys of the project's own are allowed (None: when ``PACKAGE_FILE`` is beside the file)."""
    own_keys = (path.parent / PACKAGE_FILE).is_file() if own_keys is None else own_keys

    def line_of(key) -> int:
        return data.lc.key(key)[0] + 1

    known = known_keys()
    for key, value in data.items():
        expected = known.get(key)
        if expected is None and own_keys and not _typo(key):
            continue  # a key of the project's own
        if expected is None:
            raise ParamsError(
                f"{path}:{line_of(key)}: unknown key {key!r} / 未知的键 {key!r}",
                f"known keys / 可用的键: {', '.join(known)}",
            )
        if not isinstance(value, expected):
            raise ParamsError(
                f"{path}:{line_of(key)}: {key} must be a {expected.__name__}, got {type(value).__name__} {value!r} / "
                f"{key} 的类型应为 {expected.__name__}",
                "fix that line / 请修正该行",
            )
    models: list[str] = []
    for family in FAMILIES:
        models += _models_of(path, data, family, list(family.default_models), line_of)
    save_dirs = {f.name: _save_dir(path, data, f.save_dir_key, f.default_save_dir, line_of) for f in FAMILIES}
    formats = data.get("formats", ["pth"])
    for i, fmt in enumerate(formats):
        if fmt not in FORMATS:
            line = formats.lc.item(i)[0] + 1 if hasattr(formats, "lc") else line_of("formats")
            raise ParamsError(f"{path}:{line}: unknown format {fmt!r} / 未知格式",
                              f"formats are {', '.join(FORMATS)} / 可用格式: {', '.join(FORMATS)}")
    formats = ("pth", *dict.fromkeys(f for f in formats if f != "pth"))  # pth is always exported
    return Params(tuple(models), save_dirs["dinov2"], bool(data.get("smoke_test", True)), formats, save_dirs)


def _models_of(path: Path, data, family, default: list, line_of) -> list[str]:
    key = family.select_key
    models = data.get(key, default)
    seen: set[str] = set()
    for i, name in enumerate(models):
        line = models.lc.item(i)[0] + 1 if hasattr(models, "lc") else 0  # 0: the default selection
        if not isinstance(name, str):
            raise ParamsError(
                f"{path}:{line}: model names are strings, got {name!r} / 模型名应为字符串", "fix that line / 请修正该行"
            )
        try:
            spec = get_spec(name)
        except UnknownModelError as err:
            raise ParamsError(f"{path}:{line}: {err.message}", err.hint) from None
        if family_of(spec) is not family:
            right = family_of(spec).select_key
            raise ParamsError(f"{path}:{line}: {name} is a {spec.family} model, listed under {key} / "
                              f"{name} 应列在 {right} 下", f"move it to {right}: / 请移到 {right}:")
        if name in seen:
            raise ParamsError(
                f"{path}:{line}: {name} is selected twice / {name} 重复选择", "remove the duplicate / 删除重复项"
            )
        seen.add(name)
    return list(models)


def _save_dir(path: Path, data, key: str, default: str, line_of) -> str:
    save_dir = str(data.get(key, default))
    windows = windows_path_problem(save_dir)
    if windows:
        raise ParamsError(
            f"{path}:{line_of(key)}: {key} {save_dir!r} {windows}; the repository is shared between "
            f"Linux, macOS and Windows / {key} 须为各系统通用的仓库内相对路径",
            f"write a relative path with forward slashes, e.g. {key}: {default} (also on Windows; the "
            f"repository itself may live on D:) / 请用正斜杠的相对路径，如 {key}: {default}",
        )
    parts = Path(save_dir).parts
    if not parts or Path(save_dir).is_absolute() or save_dir.startswith("~") or ".." in parts or parts == (".",):
        raise ParamsError(
            f"{path}:{line_of(key)}: {key} {save_dir!r} must be a relative path inside the repository "
            f"(DVC tracks only files inside it) / {key} 必须是仓库内的相对路径",
            f"e.g. {key}: {default} / 例如 {key}: {default}",
        )
    return save_dir


_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}


def windows_path_problem(value: str) -> str:
    """Why ``value`` (a path a user typed into a shared file) would not be the same relative path on Windows and
    POSIX; "" when it is. Checked with PureWindowsPath on every platform: on Linux ``D:\\models`` is one odd name."""
    win = PureWindowsPath(value)
    if win.drive:
        return f"is a Windows path on drive {win.drive!r}"
    if "\\" in value:
        return "has backslashes (a Windows path)"
    for part in win.parts:
        if re.search(r'[<>:"|?*\x00-\x1f]', part):
            return f"has a character Windows does not allow in names ({part!r})"
        if part not in (".", "..") and part.endswith((" ", ".")):
            return f"has a name ending in a dot or space, which Windows drops ({part!r})"
        if part.split(".")[0].upper() in _WINDOWS_RESERVED:
            return f"uses a name Windows reserves ({part!r})"
    return ""


def load_params(path: str | Path = "params.yaml", own_keys: bool | None = None) -> Params:
    path = Path(path)
    return _validate(path, _read(path), own_keys)


def read_document(path: str | Path = "params.yaml", own_keys: bool | None = None):
    """(the validated Params, the file's round-trip mapping with line numbers) for checks of a section of its own."""
    path = Path(path)
    data = _read(path)
    return _validate(path, data, own_keys), data


def add_models(path: str | Path, names: list[str]) -> list[str]:
    """Select models not yet selected, keeping the file's comments and order; returns those added."""
    path = Path(path)
    for name in names:
        get_spec(name)  # an unknown name fails before the file is touched
    data = _read(path)
    _validate(path, data)
    added = []
    for name in dict.fromkeys(names):
        models = data.setdefault(family_of(name).select_key, [])
        if name not in models:
            _keep_trailing_comment(models, models.append, name)
            added.append(name)
    if added:
        _write(path, data)
    return added


def remove_models(path: str | Path, names: list[str]) -> list[str]:
    """Deselect ``names`` (the undo of ``add_models``: only these, whatever else changed since), keeping comments."""
    path = Path(path)
    data = _read(path)
    gone = []
    for name in dict.fromkeys(names):
        models = data.get(family_of(name).select_key) if name in MODEL_NAMES else None
        if models is None or name not in models:
            continue
        _keep_trailing_comment(models, models.remove, name)
        gone.append(name)
    if gone:
        _write(path, data)
    return gone


def _keep_trailing_comment(models, change, name: str) -> None:
    """``change(name)`` (the list's append or remove); ruamel hangs the comment that follows a list on its last item:
    it stays on the last."""
    trailing = models.ca.items.pop(len(models) - 1, None) if models else None
    change(name)
    if trailing and models:
        models.ca.items[len(models) - 1] = trailing


def _write(path: Path, data) -> None:
    text = io.StringIO()
    _yaml().dump(data, text)
    write_atomic(path, text.getvalue())


def undo_selection(path: Path, before: bytes, after: bytes, added: list[str]) -> None:
    """Deselect only what a fetch selected (``added``): the old bytes when nothing else changed the file since
    ``after``, else ``remove_models``. A file broken meanwhile is left to its author."""
    try:
        if path.read_bytes() == after:
            write_atomic(path, before)
        else:
            remove_models(path, added)
    except ParamsError:
        pass


__all__ = ["MODEL_NAMES", "known_keys", "Params", "add_models", "load_params", "remove_models", "undo_selection"]
