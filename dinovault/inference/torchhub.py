"""The torch.hub entries of ``hubconf.py``: the official entry names, with the weights of this repository, offline.

``torch.hub.load('<repo>', 'dinov2_vitb14', source='local')`` imports ``<repo>/hubconf.py`` and calls its entry,
which loads ``<repo>/models/dinov2/dinov2_vitb14.pth`` (found as ``weights.find_weights`` says: ``weights=``,
``$DINOVAULT_MODELS_DIR``, this repository's save_dir, the one around the current directory, the verified torch.hub
cache) the way the official entry loads its download: the same architecture, keys and outputs, with
nothing downloaded and no call to GitHub (``source='local'`` never makes one).
"""

from __future__ import annotations

import os

from ..catalog import get_spec
from ..errors import DinovaultError, MissingWeightsError

OFFICIAL_WEIGHTS = "LVD142M"  # the only value of the official entries' ``weights`` argument: the default here


def load(name: str, repo_dir: str | os.PathLike, *, pretrained: bool = True, weights=None, **kwargs):
    """The backbone ``name`` as the official torch.hub entry returns it (a module in training mode, which
    computes the same as in eval mode: it has no dropout). ``pretrained=False``: the untrained network with the
    official initialisation. ``weights``: a ``.pth`` file or a folder holding ``<name>.pth``."""
    spec = get_spec(name)
    if kwargs:
        raise DinovaultError(
            f"{name}: unsupported option(s) {', '.join(sorted(kwargs))} / 不支持的参数：{', '.join(sorted(kwargs))}",
            "dinovault's entries take pretrained= and weights= (a .pth file or a folder) / "
            "仅支持 pretrained= 与 weights=（.pth 文件或文件夹）",
        )
    if not pretrained:
        from ..model.backbone import build_backbone

        model = build_backbone(spec)
        model.init_weights()
        return model

    from ..model.checkpoint import load_backbone
    from .weights import find_weights

    chosen = None if weights in (None, OFFICIAL_WEIGHTS) else weights
    try:
        path = find_weights(name, chosen, repo=repo_dir)
    except MissingWeightsError as err:
        raise MissingWeightsError(
            err.message,
            f"fetch them: dinovault fetch --model {name} (invoke fetch --model {name} in a dinovault clone, or dvc "
            f"pull models/dinov2/{name}.pth); or pass weights=<file or folder>, or pretrained=False for the untrained "
            f"network / 请先获取：dinovault fetch --model {name}（或 dvc pull），或传入 weights=<文件或文件夹>，或用 "
            "pretrained=False 得到未训练的网络",
        ) from None
    return load_backbone(path, spec).train()


def entry(name: str, repo_dir: str | os.PathLike):
    """A hubconf entry for ``name`` bound to the repository at ``repo_dir``, with the help torch.hub shows."""
    spec = get_spec(name)

    def hub_entry(*, pretrained: bool = True, weights=None, **kwargs):
        return load(name, repo_dir, pretrained=pretrained, weights=weights, **kwargs)

    registers = f", {spec.num_register_tokens} registers" if spec.num_register_tokens else ""
    hub_entry.__name__ = hub_entry.__qualname__ = name
    hub_entry.__doc__ = (
        f"DINOv2 {name} (embed dim {spec.embed_dim}, {spec.depth} blocks{registers}) with the weights of "
        f"models/dinov2/{name}.pth, offline. pretrained=False: untrained; weights=<.pth file or folder>."
    )
    return hub_entry


__all__ = ["OFFICIAL_WEIGHTS", "entry", "load"]
