"""The repository's layout: where it is, what params.yaml selects, where each file of a model goes (workspace,
metrics, torch.hub copy) and what dvc.lock records. Reads files only: DVC is not imported here (see dvc.py)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..cache import cache_path, read_json
from ..catalog import CATALOG, family_of, get_spec
from ..errors import DinovaultError, RepoError
from ..files import link_atomic
from ..params import Params, load_params
from ..project import project_root
from .lockfile import read_lock

PARAMS_FILE = "params.yaml"
METRICS_DIR = "metrics"


def stage_name(model: str) -> str:
    return f"{family_of(model).stage}@{model}"


def find_root(start: str | Path | None = None) -> Path:
    """The dinovault repository holding ``start`` (default: the current directory): the project around it
    (``project.project_root``, as git and DVC find theirs) when it has dvc.yaml, .dvc/ and params.yaml."""
    here = Path(start or os.getcwd()).resolve()
    root = project_root(here)
    if root is not None and all(p.is_file() for p in (root / "dvc.yaml", root / PARAMS_FILE)) \
            and (root / ".dvc").is_dir():
        return root
    raise RepoError(
        f"{here} is not inside a dinovault repository ({root or 'no git or DVC project'}"
        f"{' has no' if root else ', so no'} dvc.yaml, .dvc/ and params.yaml) / 当前目录不在 dinovault 仓库中",
        "cd into your clone of dinovault or your project, or run `dinovault init` in your git repository first / "
        "请先 cd 到仓库目录，或在你的 git 仓库中运行 dinovault init",
    )


@dataclass(frozen=True)
class Layout:
    """Where each file of a model goes in the repository, and what dvc.lock records (read once)."""

    root: Path
    params: Params
    recorded: dict[str, str]  # model → md5 of its weights in dvc.lock (only models whose stage has run)

    @classmethod
    def load(cls, root: Path | None = None) -> Layout:
        root = find_root(root)
        return cls(root, load_params(root / PARAMS_FILE), read_lock(root))

    @property
    def save_dir(self) -> Path:
        """DINOv2's folder (``save_dir``)."""
        return self.root / self.params.save_dir

    @property
    def save_dirs(self) -> list[Path]:
        """Every family's folder."""
        return list(dict.fromkeys(self.root / d for d in self.params.save_dirs.values()))

    def save_dir_of(self, model: str) -> Path:
        return self.root / self.params.save_dir_of(model)

    def present(self) -> list[str]:
        """The catalog models whose weights are in the workspace, whether selected or not."""
        found = {p.stem for d in self.save_dirs if d.is_dir() for p in d.glob("*.pth")}
        return sorted(m for m in found if m in CATALOG and self.weights(m).is_file())

    def weights(self, model: str) -> Path:
        return self.save_dir_of(model) / f"{model}.pth"

    def card(self, model: str) -> Path:
        return self.save_dir_of(model) / f"{model}.json"

    def metrics(self, model: str) -> Path:
        return self.root / METRICS_DIR / f"{model}.json"

    @staticmethod
    def torch_copy(model: str) -> Path:
        return cache_path(CATALOG[model].upstream_file)

    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def pull_targets(self, models: list[str] | None) -> list[str] | None:
        """The stages to pull for ``models`` (None: all); a model not selected or never fetched is an error."""
        if not models:
            return None
        for name in models:
            get_spec(name)
            if name not in self.params.models:
                raise RepoError(
                    f"{name} is not selected in {PARAMS_FILE}, so no stage records it / {name} 未被选中",
                    f"invoke fetch --model {name}",
                )
            if name not in self.recorded:
                raise RepoError(
                    f"{name} was never fetched: dvc.lock records no file to pull / {name} 尚未获取，dvc.lock 中无记录",
                    f"invoke fetch --model {name} (then git commit dvc.lock and invoke push on that machine)",
                )
        return [stage_name(m) for m in dict.fromkeys(models)]


def link_torch_copies(layout: Layout, models: list[str], notes: list[str] | None = None) -> list[Path]:
    """Hard-link recorded workspace weights (e.g. from `dvc pull`) into the torch.hub cache where it lacks them, so a
    stage that reruns verifies them there instead of downloading, and torch.hub finds them. Only files of the pinned
    size (``official_size``: DINOv3 with only a prefix pin too); the fetch script still checks their SHA-256. Never
    copies: a link refused (another file system, no permission) is said in ``notes``."""
    # a workspace file with 3 links is already in the DVC cache and the torch cache: skip the registry (fast no-op)
    models = [m for m in models if m in layout.recorded and _links(layout.weights(m)) in (1, 2)]
    if not models:
        return []
    from ..registry import load_pins
    from ..sources.prefix import official_size

    try:
        pins = load_pins()
    except DinovaultError:
        return []
    linked = []
    for model in models:
        src, dest = layout.weights(model), layout.torch_copy(model)
        size = official_size(CATALOG[model].upstream_file, pins, read_json(layout.card(model)))
        if size is None or dest.exists() or src.stat().st_size != size:
            continue
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            link_atomic(src, dest)
            linked.append(dest)
        except OSError as err:  # the stage downloads as usual; torch.hub.load would too
            if notes is not None:
                notes.append(
                    f"{dest.name} not linked into the torch.hub cache {dest.parent} ({err.strerror or err}): "
                    f"torch.hub.load would download it again; keep TORCH_HOME on the repository's disk, or load "
                    f"{layout.rel(src)} (DINOv2FeatureExtractor does) / 未能链接到 torch.hub 缓存（不同磁盘）"
                )
    return linked


def _links(path: Path) -> int:
    try:
        return path.stat().st_nlink
    except OSError:
        return 0
