"""`invoke features` / `dinovault features`: `dvc repro` of the sets' stages (``features@<set>``, which chains the
model's fetch stage before it), the engine passed to the stage's command through its environment."""

from __future__ import annotations

import contextlib
from pathlib import Path

from .. import settings
from ..errors import RepoError, UsageError
from ..repo.dvc import explain, open_repo, recorded_logs
from ..repo.known_errors import interrupted
from ..repo.layout import PARAMS_FILE
from .sets import find_set, load_sets

ENGINES = ("local", "ray")
STATES = {"ran": "computed / 已计算", "up to date": "up to date / 已是最新"}


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise UsageError(f"--engine must be local or ray, got {engine!r} / --engine 须为 local 或 ray",
                         "e.g. --engine ray --address auto / 例如 --engine ray --address auto")
    return engine


def reproduce(root: Path, names: list[str] | None = None, engine: str = "local", address: str | None = None,
              workers: int | None = None) -> list[tuple[str, str]]:
    """(set, "ran" | "up to date") for each set named (default: every set of params.yaml)."""
    from dvc.exceptions import DvcException

    check_engine(engine)
    params_file = root / PARAMS_FILE
    sets = [find_set(params_file, n)[1] for n in names] if names else list(load_sets(params_file)[1].values())
    if not sets:
        raise RepoError(f"no feature set in {PARAMS_FILE} / {PARAMS_FILE} 中没有特征集",
                        "add one: features: {faces: {images: data/faces, model: dinov2_vitb14}} / 请先添加")
    done = []
    with contextlib.ExitStack() as stack:
        stack.enter_context(settings.overridden(settings.FEATURES_ENGINE, engine))
        if address:
            stack.enter_context(settings.overridden("RAY_ADDRESS", address))
        if workers:
            stack.enter_context(settings.overridden(settings.FEATURES_WORKERS, str(workers)))
        repo = stack.enter_context(open_repo(root))
        stack.enter_context(recorded_logs())
        for fs in sets:
            try:
                ran = repo.reproduce(fs.stage)
            except DvcException as err:
                if interrupted(err):
                    raise KeyboardInterrupt from None
                raise explain(err, f"features {fs.name}") from None
            done.append((fs.name, "ran" if any(s.addressing == fs.stage for s in ran) else "up to date"))
    return done
