"""The public API (``from dinovault import fetch, load_backbone, verify, import_file, DINOv2FeatureExtractor``): the
commands' work as functions that return values and raise DinovaultError, printing nothing of their own."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def fetch(model: str, save_dir: str | os.PathLike | None = None, *, record: bool | None = None,
          allow_unverified: bool = False, smoke_test: bool = True) -> Path:
    """Bring ``model``'s verified weights here; returns the file to load.

    In a dinovault repository (`dinovault init`; ``record=None`` looks for one around the current directory) and
    without ``save_dir``: selected in params.yaml and recorded by its DVC stage, as `dinovault fetch` does; the file
    is the workspace one. Otherwise (``record=False``, or no repository): the torch.hub cache, and ``save_dir`` when
    given, no DVC, as the download script does."""
    if record is not False and save_dir is None:
        from .errors import RepoError
        from .repo.init import has_stage
        from .repo.layout import find_root

        try:
            root = find_root()
        except RepoError:
            if record:
                raise
            root = None
        if root is not None and (record or has_stage(root)):
            from .repo.commands import fetch_in_repository

            return root / fetch_in_repository([model], root, allow_unverified).models[0].path
    from .pipeline import fetch_model

    folder = None if save_dir is None else Path(save_dir)
    return fetch_model(model, folder, allow_unverified=allow_unverified, smoke_test=smoke_test, progress=False).path


@dataclass(frozen=True)
class Verified:
    model: str
    path: Path
    size: int
    sha256: str
    level: str = "sha256"  # "sha256": its full pin; "prefix": only the SHA-256 prefix in its name (DINOv3, no pin)


def verify(model: str | None = None, path: str | os.PathLike | None = None, *, rehash: bool = False) -> Verified:
    """Check a model's weights against their pinned size and SHA-256 (a DINOv3 file with no full pin: the SHA-256
    prefix in its official name): ``path``, else the file ``load_backbone`` would load. With only ``path``, the model
    is the one whose pin it matches. VerificationError when it does not."""
    from .cache import check_file
    from .catalog import CATALOG, get_spec
    from .errors import UsageError, VerificationError
    from .inference.weights import find_weights
    from .registry import load_pins
    from .sources.prefix import PrefixPin, official_pin

    pins = load_pins()
    if model is None:
        if path is None:
            raise UsageError("verify needs a model name or a path / 需要模型名或路径", "verify('dinov2_vitb14')")
        path = Path(path).expanduser()
        got = check_file(path, None, rehash=rehash)
        if got.sha256 is None:
            raise VerificationError(f"{path}: no such file / 文件不存在", "check the path / 请检查路径")
        model = next((s.name for s in CATALOG.values() if (p := official_pin(s.upstream_file, pins))
                      and (p.size, p.sha256) == (got.size, got.sha256)), None)
        model = model or next((s.name for s in CATALOG.values() if isinstance(p := official_pin(s.upstream_file, pins),
                                                                              PrefixPin) and not p.problem(got.sha256)),
                              None)
        if model is None:
            raise VerificationError(f"{path}: sha256 {got.sha256} matches no pinned DINOv2 or DINOv3 file / "
                                    "与任何固定哈希都不符",
                                    "a damaged, re-saved or fine-tuned file? fetch it again / 请重新获取")
    spec = get_spec(model)
    path = Path(path).expanduser() if path is not None else find_weights(model)
    pin = official_pin(spec.upstream_file, pins)
    if pin is None:
        raise VerificationError(f"{spec.upstream_file} has no pin: it cannot be verified / 无固定哈希，无法校验",
                                "add one to the registry (DINOVAULT_REGISTRY) / 请在注册表中添加")
    if isinstance(pin, PrefixPin):
        check = check_file(path, None, rehash=rehash)
        why = "no such file" if check.sha256 is None else pin.problem(check.sha256)
        if why:
            raise VerificationError(f"{path}: {why} / 与文件名中的哈希前缀不符",
                                    f"fetch it again: dinovault fetch --model {model} / 请重新获取")
        return Verified(model, path, check.size, str(check.sha256), "prefix")
    check = check_file(path, pin, rehash=rehash)
    if not check.ok:
        raise VerificationError(f"{path}: {check.reason} / 与固定哈希不符",
                                f"fetch it again: dinovault fetch --model {model} / 请重新获取")
    return Verified(model, path, check.size, str(check.sha256))


def import_file(path: str | os.PathLike, allow_unverified: bool = False) -> str:
    """Verify a hand-downloaded file (an official .pth under any name, or a Hugging Face model.safetensors) and
    place it in the cache, with no download; returns the model name (then ``fetch(name)`` records it)."""
    from .sources.imported import import_file as place

    return place(Path(path).expanduser(), allow_unverified)[0]


def load_backbone(model: str, weights=None, device=None):
    """The backbone ``model`` in eval mode (official keys and forward), its weights found as the extractor finds
    them (``weights=``, $DINOVAULT_MODELS_DIR, the repository's save_dir, the verified torch.hub cache)."""
    from .inference.weights import load_backbone as load

    return load(model, weights, device)


__all__ = ["Verified", "fetch", "import_file", "load_backbone", "verify"]
