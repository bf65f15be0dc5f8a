"""torch.hub entries for the weights of this repository, offline: no download, no call to GitHub.

    model = torch.hub.load("/path/to/dinovault", "dinov2_vitb14", source="local")   # models/dinov2/dinov2_vitb14.pth
    model = torch.hub.load("/path/to/dinovault", "dinov2_vitb14", source="local", pretrained=False)   # untrained
    model = torch.hub.load("/path/to/dinovault", "dinov3_vitl16", source="local", weights="SAT493M")  # the _sat row

The weights are found as everywhere in dinovault (dinovault/inference/weights.py): ``weights=``, then
``$DINOVAULT_MODELS_DIR``, then this clone's save_dir (its params.yaml), the repository around the current directory,
and the verified file in the torch.hub cache. The entries have the official names and return what the official ones
return (dinovault/inference/torchhub.py holds the logic).
"""

from pathlib import Path as _Path

from dinovault.inference.torchhub import entry as _entry

dependencies = ["torch"]
_REPO = _Path(__file__).resolve().parent

dinov2_vits14 = _entry("dinov2_vits14", _REPO)
dinov2_vitb14 = _entry("dinov2_vitb14", _REPO)
dinov2_vitl14 = _entry("dinov2_vitl14", _REPO)
dinov2_vitg14 = _entry("dinov2_vitg14", _REPO)
dinov2_vits14_reg = _entry("dinov2_vits14_reg", _REPO)
dinov2_vitb14_reg = _entry("dinov2_vitb14_reg", _REPO)
dinov2_vitl14_reg = _entry("dinov2_vitl14_reg", _REPO)
dinov2_vitg14_reg = _entry("dinov2_vitg14_reg", _REPO)
dinov3_vits16 = _entry("dinov3_vits16", _REPO)
dinov3_vits16plus = _entry("dinov3_vits16plus", _REPO)
dinov3_vitb16 = _entry("dinov3_vitb16", _REPO)
dinov3_vitl16 = _entry("dinov3_vitl16", _REPO)
dinov3_vitl16plus = _entry("dinov3_vitl16plus", _REPO)
dinov3_vith16plus = _entry("dinov3_vith16plus", _REPO)
dinov3_vit7b16 = _entry("dinov3_vit7b16", _REPO)
dinov3_vitl16_sat = _entry("dinov3_vitl16_sat", _REPO)
dinov3_vit7b16_sat = _entry("dinov3_vit7b16_sat", _REPO)
dinov3_convnext_tiny = _entry("dinov3_convnext_tiny", _REPO)
dinov3_convnext_small = _entry("dinov3_convnext_small", _REPO)
dinov3_convnext_base = _entry("dinov3_convnext_base", _REPO)
dinov3_convnext_large = _entry("dinov3_convnext_large", _REPO)
