"""torch.hub entries for the weights of this repository, offline: no download, no call to GitHub.

    model = torch.hub.load("/path/to/dinovault", "dinov2_vitb14", source="local")   # models/dinov2/dinov2_vitb14.pth
    model = torch.hub.load("/path/to/dinovault", "dinov2_vitb14", source="local", pretrained=False)   # untrained
    model = torch.hub.load("/path/to/dinovault", "dinov3_vitl16", source="local", weights="SAT493M")  # the _sat row

The weights are found as everywhere in dinovault (dinovault/inference/weights.py): ``weights=``, then
``$DINOVAULT_MODELS_DIR``, then this clone's save_dir (its params.yaml), the repository around the current directory,
and the verified file in the torch.hub cache. The entries have the official names and return what the official ones
return (dinovault/inference/torchhub.py holds the logic); a family registered as a plug-in has its entries here too.
"""

from pathlib import Path as _Path

from dinovault.catalog import MODEL_NAMES as _MODEL_NAMES
from dinovault.inference.torchhub import entry as _entry

dependencies = ["torch"]
_REPO = _Path(__file__).resolve().parent

# one entry per model of every registered family (dinovault/catalog/), under its official name
globals().update({_name: _entry(_name, _REPO) for _name in _MODEL_NAMES})
