"""Where the weights of a model are, whatever the install (a clone, a wheel, a user's own project). No torch here.

The order, first that applies:

1. ``weights=`` (a file, or a folder holding ``<model>.pth``): the only place looked at when given;
2. ``$DINOVAULT_MODELS_DIR``: the only place looked at when set;
3. the ``save_dir`` of a repository: the one given (hubconf.py's own clone), then the project around the current
   directory (``project.project_root``, the one rule of every command), as its ``params.yaml`` says (default
   ``models/dinov2``); a file there must be what its name and model card say (`identity_error`: the pin, or the
   card of a conversion; a stamp spares the re-hash), so a fine-tuned file committed under an official name is
   refused, never loaded as the official model;
4. the torch.hub cache file (``$TORCH_HOME/hub/checkpoints/<official file>``), only when it matches its pin (by the
   verified stamp, else by hashing it): an unverified file there is never used; else a checkpoint converted from the
   pinned Hugging Face or ModelScope file (``$TORCH_HOME/hub/dinovault/converted/``), checked against its record.

The error when none has it names each place looked at and the command that brings the file.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..cache import cache_path, check_file
from ..catalog import family_of, get_spec
from ..errors import DinovaultError, MissingWeightsError, VerificationError
from ..files import file_sha256
from ..params import load_params
from ..project import project_root
from ..registry import Pin, load_pins
from ..settings import models_dir

PARAMS_FILE = "params.yaml"
HUB_SOURCES = ("huggingface", "modelscope")  # the sources that convert a hub file into the official layout


def save_dir_of(root: Path, name: str = "dinov2_vitb14") -> Path:
    """The folder of ``name``'s family in ``root``, from its params.yaml (``save_dir`` for DINOv2, ``dinov3_save_dir``
    for DINOv3; the family's default when there is no params.yaml, or one that does not parse)."""
    try:
        return root / load_params(root / PARAMS_FILE, own_keys=True).save_dir_of(name)
    except DinovaultError:
        return root / family_of(name).default_save_dir


def _in_folder(path: Path, name: str) -> Path:
    return path / f"{name}.pth" if path.is_dir() else path


def _verified_cache(name: str) -> tuple[Path, str]:
    """The torch.hub cache file and why it cannot be used ('' when it can)."""
    spec = get_spec(name)
    path = cache_path(spec.upstream_file)
    if not path.is_file():
        return path, "absent"
    from ..sources.prefix import PrefixPin, official_pin

    try:
        pin = official_pin(spec.upstream_file, load_pins())
    except DinovaultError as err:
        return path, f"not verified: {err.message}"
    if pin is None:
        return path, "not verified: no pin for it"
    if isinstance(pin, PrefixPin):  # DINOv3: the name's SHA-256 prefix (a stamp spares the re-hash)
        problem = pin.problem(str(check_file(path, None).sha256))
        return path, f"not verified: {problem}" if problem else ""
    check = check_file(path, pin)
    return path, "" if check.ok else f"not verified: {check.reason}"


def _converted(name: str) -> Path | None:
    """A checkpoint converted from a pinned hub file (the ``huggingface`` or ``modelscope`` source), when intact."""
    from ..registry import load_pins
    from ..sources import Request, get

    for hub in HUB_SOURCES:
        try:
            got = get(hub).local(Request(get_spec(name), load_pins(), None))
        except DinovaultError:
            continue
        if got is not None and got.verified:
            return got.path
    return None


def identity_error(name: str, path: Path, shown: str | None = None, pins=None, hint: str | None = None):
    """None when ``path`` is the ``name`` its model card beside it says: the pin of the card's source (Meta's for an
    official file; its name's SHA-256 prefix and the card for DINOv3 without a full pin), or for a conversion its
    card. A valid stamp vouches, else it is hashed once and stamped. None too when nothing pins it
    (``--allow-unverified``: its card says so). Else the VerificationError naming the file and what it is instead;
    ``shown``: the path as the message names it, ``hint``: what to do instead of the default."""
    from .. import sources
    from ..exports.card import read_card

    card = read_card(path.with_suffix(".json"))
    want = sources.for_card(card).expected(get_spec(name), card, load_pins() if pins is None else pins)
    if want.sha256 is None or want.size is None:
        return None
    check = check_file(path, Pin(path.name, want.size, want.sha256))
    problems = want.problems if card.get("verified", True) else ()  # a card saying verified: false says it itself
    if check.ok and not problems:
        return None
    shown = shown or str(path)
    if check.ok:  # the bytes are what the card says, but the card contradicts the pin (e.g. its name's prefix)
        what = f"is not what its name says: its model card contradicts the pin ({'; '.join(problems)})"
    else:
        sha = check.sha256 or file_sha256(path)  # the size alone disagreed: hash it to say what it is
        official = "the official" if card.get("source", "official") in ("official", "signed") else "the"
        what = (f"is not {official} {name} (sha256 {sha[:12]}…, {check.size} B; {want.against} {want.sha256[:12]}…, "
                f"{want.size} B): a damaged, fine-tuned or other file under an official name")
    return VerificationError(
        f"{shown} {what} / {shown} 不是官方的 {name}（SHA-256 与固定值或模型卡不符）：官方名称下的微调或其他文件",
        hint or "restore the official file: dinovault verify --repair (damaged bytes), or git checkout dvc.lock && "
        "dinovault pull (another file recorded under its name: an older commit's dvc.lock, see git log -p dvc.lock; "
        "invoke … in a dinovault clone); load a fine-tuned file under its own name with weights=<file> / "
        "恢复官方文件：dinovault verify --repair，或 git checkout dvc.lock && dinovault pull；"
        "微调的文件请另起名字，用 weights=<文件> 加载",
    )


def find_weights(name: str, weights: str | os.PathLike | None = None, repo: str | os.PathLike | None = None,
                 start: str | os.PathLike | None = None, last_repo: str | os.PathLike | None = None) -> Path:
    """The checkpoint file for ``name`` in the order of this module's docstring; MissingWeightsError otherwise.
    ``repo`` is looked at before the repository around ``start`` (default: the current directory), ``last_repo``
    after it."""
    get_spec(name)
    explicit = weights if weights is not None else models_dir()
    if explicit is not None:
        path = _in_folder(Path(explicit).expanduser(), name)
        if path.is_file():
            return path
        raise _missing(name, [str(path)])
    looked, first_repo = [], None
    repos = (repo and Path(repo).resolve(), project_root(start), last_repo and Path(last_repo).resolve())
    for root in dict.fromkeys(r for r in repos if r):
        path = save_dir_of(root, name) / f"{name}.pth"
        first_repo = first_repo or (root, path)
        if path.is_file():
            error = identity_error(name, path, shown=str(path.relative_to(root)))
            if error is not None:
                raise error
            return path
        looked.append(str(path))
    path, problem = _verified_cache(name)
    if not problem:
        return path
    looked.append(f"{path} ({problem})")
    converted = _converted(name)
    if converted is not None:
        return converted
    folder = first_repo[1].parent.relative_to(first_repo[0]).as_posix() if first_repo else None
    raise _missing(name, looked, folder)


def _missing(name: str, looked: list[str], folder: str | None = None) -> MissingWeightsError:
    where = " nor ".join(looked)
    folder = folder or family_of(name).default_save_dir
    pull = f"dvc pull {folder}/{name}.pth"
    return MissingWeightsError(
        f"no weights for {name} at {where} / 找不到 {name} 的权重",
        f"bring them with `dinovault fetch --model {name}` (`invoke fetch --model {name}` in a dinovault clone) or "
        f"`{pull}`, or pass weights=<file or folder> / 请运行 `dinovault fetch --model {name}` 或 `{pull}`，"
        "或传入 weights=<文件或文件夹>",
    )


def load_backbone(name: str, weights=None, device=None, repo: str | os.PathLike | None = None):
    """The backbone ``name`` in eval mode, its weights found as above (or ``weights`` a state_dict mapping)."""
    from collections.abc import Mapping

    from ..model.checkpoint import load_backbone as load

    spec = get_spec(name)
    source = weights if isinstance(weights, Mapping) else find_weights(name, weights, repo)
    return load(source, spec, device=device)


__all__ = ["find_weights", "identity_error", "load_backbone", "save_dir_of"]
