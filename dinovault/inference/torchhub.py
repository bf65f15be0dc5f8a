"""The torch.hub entries of ``hubconf.py``: the official entry names, with the weights of this repository, offline.

``torch.hub.load('<repo>', 'dinov2_vitb14', source='local')`` imports ``<repo>/hubconf.py`` and calls its entry,
which loads ``<repo>/models/dinov2/dinov2_vitb14.pth`` (found as ``weights.find_weights`` says: ``weights=``,
``$DINOVAULT_MODELS_DIR``, this repository's save_dir, the one around the current directory, the verified torch.hub
cache) the way the official entry loads its download: the same architecture, keys and outputs, with
nothing downloaded and no call to GitHub (``source='local'`` never makes one).
"""

from __future__ import annotations

import os

from ..catalog import CATALOG, family_of, get_spec
from ..errors import DinovaultError, MissingWeightsError

OFFICIAL_WEIGHTS = "LVD142M"  # the only value of the official DINOv2 entries' ``weights`` argument: the default here


def _named_weights(name: str, weights):
    """The official entries name their pretraining data (DINOv2 ``LVD142M``; DINOv3 ``LVD1689M``, ``SAT493M``): the
    row of ``name``'s network trained on it, and no file. Anything else is a file or folder: ``name`` and it."""
    spec = get_spec(name)
    if weights is None or weights == OFFICIAL_WEIGHTS or weights == spec.weights:
        return name, None
    if isinstance(weights, str):
        same = [s.name for s in CATALOG.values() if s.arch == spec.arch and s.weights and s.weights == weights]
        if same:
            return same[0], None
    return name, weights


def load(name: str, repo_dir: str | os.PathLike, *, pretrained: bool = True, weights=None, **kwargs):
    """The backbone ``name`` as the official torch.hub entry returns it (a module in training mode, which
    computes the same as in eval mode: it has no dropout). ``pretrained=False``: the untrained network with the
    official initialisation. ``weights``: a ``.pth`` file or a folder holding ``<name>.pth``."""
    name, weights = _named_weights(name, weights)
    spec = get_spec(name)
    if kwargs:
        raise DinovaultError(
            f"{name}: unsupported option(s) {', '.join(sorted(kwargs))} / 不支持的参数：{', '.join(sorted(kwargs))}",
            "dinovault's entries take pretrained= and weights= (a .pth file or a folder) / "
            "仅支持 pretrained= 与 weights=（.pth 文件或文件夹）",
        )
    if not pretrained:
        from ..model.families import build

        model = build(spec)
        model.init_weights()
        return model

    from ..model.checkpoint import load_backbone
    from .weights import find_weights

    try:
        path = find_weights(name, weights, repo=repo_dir)
    except MissingWeightsError as err:
        raise MissingWeightsError(
            err.message,
            f"fetch them: dinovault fetch --model {name} (invoke fetch --model {name} in a dinovault clone, or dvc "
            f"pull {family_of(spec).default_save_dir}/{name}.pth); or pass weights=<file or folder>, or "
            f"pretrained=False for the untrained network / 请先获取：dinovault fetch --model {name}（或 dvc pull），"
            "或传入 weights=<文件或文件夹>，或用 pretrained=False 得到未训练的网络",
        ) from None
    return load_backbone(path, spec).train()


def entry(name: str, repo_dir: str | os.PathLike):
    """A hubconf entry for ``name`` bound to the repository at ``repo_dir``, with the help torch.hub shows."""
    spec = get_spec(name)

    def hub_entry(*, pretrained: bool = True, weights=None, **kwargs):
        return load(name, repo_dir, pretrained=pretrained, weights=weights, **kwargs)

    registers = f", {spec.num_register_tokens} {family_of(spec).token_word}" if spec.num_register_tokens else ""
    hub_entry.__name__ = hub_entry.__qualname__ = name
    hub_entry.__doc__ = (
        f"{family_of(spec).title} {name} (embed dim {spec.embed_dim}, {spec.depth} blocks{registers}, "
        f"{spec.license}) with the weights of {family_of(spec).default_save_dir}/{name}.pth, offline. "
        "pretrained=False: untrained; weights=<.pth file or folder>"
        + (f", or the name of the pretraining data ({spec.weights})." if spec.weights else ".")
    )
    return hub_entry


__all__ = ["OFFICIAL_WEIGHTS", "entry", "load"]
