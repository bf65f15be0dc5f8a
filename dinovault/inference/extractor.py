"""``DINOv2FeatureExtractor`` (and ``DINOv3FeatureExtractor``, the same class for DINOv3's default): offline features
of any catalog model from images, paths or tensors, with its family's official preprocessing.

Never touches the network: the weights are found by ``weights.find_weights`` (``weights=``, then
``$DINOVAULT_MODELS_DIR``, then the save_dir of the repository around the current directory, then the verified file
in the torch.hub cache).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

from ..catalog import ModelSpec, family_of, get_spec
from ..errors import ImageError, UsageError
from ..model.checkpoint import load_backbone
from .weights import find_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# the models folder of the clone holding the package (an editable install), looked at after the repository around
# the current directory; a wheel has none
REPO_MODELS_DIR = Path(__file__).resolve().parents[2] / "models" / "dinov2"
_DTYPES = {
    None: None,
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}


def resolve_weights(
    model_name: str, weights: str | os.PathLike | None = None, repo: str | os.PathLike | None = None
) -> Path:
    """The checkpoint file for ``model_name`` (see weights.find_weights); ``repo``: a repository whose save_dir is
    looked at before the one around the current directory."""
    clone = REPO_MODELS_DIR.parent.parent
    return find_weights(model_name, weights, repo=repo,
                        last_repo=clone if (clone / "params.yaml").is_file() else None)


def _geometry(spec: ModelSpec, size: int | None = None) -> list:
    family = family_of(spec)
    if family.eval_on_tensor:  # torchvision's v2 kernels, as the official transform (v2 resizes uint8 on its own path)
        from torchvision.transforms import v2 as api
    else:
        api = transforms
    mode = transforms.InterpolationMode(family.eval_interpolation)
    resize, crop = family.eval_resize, family.eval_crop
    if size:  # another side, the official ratio kept: DINOv2 Resize(size × 256/224) + CenterCrop(size); DINOv3 square
        resize, crop = ((size, size), None) if not crop else (round(size * cast(int, resize) / crop), size)
    steps = [api.Resize(resize, interpolation=mode, antialias=True)]
    return steps + ([api.CenterCrop(crop)] if crop else [])


def build_transform(spec: ModelSpec | None = None, size: int | None = None):
    """The official evaluation preprocessing of ``spec``'s family, step for step (default DINOv2's: Resize 256
    bicubic, CenterCrop 224 on the PIL image, ImageNet mean/std; DINOv3's README: to a uint8 tensor, a square Resize
    to 256x256, to float, the row's mean/std, SAT-493M's own). ``size``: the side the model sees, when not the
    family's (a multiple of the patch size)."""
    spec = spec or get_spec("dinov2_vitb14")
    if family_of(spec).eval_on_tensor:
        from torchvision.transforms import v2

        return v2.Compose([v2.ToImage(), *_geometry(spec, size), v2.ToDtype(torch.float32, scale=True),
                           v2.Normalize(mean=spec.mean, std=spec.std)])
    return transforms.Compose([*_geometry(spec, size), transforms.ToTensor(),
                               transforms.Normalize(spec.mean, spec.std)])


def _problem(err: Exception) -> str:
    first = (str(err).splitlines() or [""])[0][:200]
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def _unreadable(name, err: Exception) -> ImageError:
    return ImageError(
        f"cannot read image {name}: {_problem(err)} / 无法读取图片 {name}",
        "the file is corrupt, truncated or not an image: replace it or leave it out / "
        "文件已损坏、不完整或不是图片：请替换或移除它",
        reason=_problem(err),
    )


def open_image(path: str | os.PathLike) -> Image.Image:
    """An RGB PIL image, decoded now: a corrupt file fails here, with an ImageError naming it."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except Exception as err:  # PIL raises many types for bad files (OSError, SyntaxError, struct.error, ...)
        raise _unreadable(path, err) from None


def to_rgb(image: Image.Image) -> Image.Image:
    """An RGB copy of an opened PIL image; its pixels may be decoded only now, so it may fail here too."""
    try:
        return image.convert("RGB")
    except Exception as err:
        raise _unreadable(getattr(image, "filename", "") or "(a PIL image without a file name)", err) from None


def _dtype(dtype) -> torch.dtype | None:
    if isinstance(dtype, torch.dtype) and dtype in _DTYPES.values():
        return dtype
    if (dtype is None or isinstance(dtype, str)) and dtype in _DTYPES:
        return _DTYPES[dtype]
    raise UsageError(
        f"dtype must be float32, bfloat16 or float16 (or None), got {dtype!r} / "
        "dtype 须为 float32、bfloat16、float16 或 None",
        "e.g. dtype='bf16' on a GPU / 例如在 GPU 上用 dtype='bf16'",
    )


def _device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(f"unknown device {device!r} / 未知设备 {device!r}", "cpu, cuda, cuda:1, mps…") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(
            f"device {device!r} asked for, but torch sees no CUDA GPU / 请求了 {device!r}，但 torch 找不到 CUDA GPU",
            "use device='cpu', or install the CUDA build of torch / 请用 device='cpu'，或安装 CUDA 版 torch",
        )
    return chosen


class DINOv2FeatureExtractor:
    """DINOv2 features, loaded offline.

    ``extract`` takes PIL images, image paths, a uint8 tensor of raw pixels (N, 3, H, W) — these three get
    ``.transform`` (Resize 256, CenterCrop 224, Normalize) — or a float tensor that is already model input
    (normalised, sides multiples of 14). ``dtype`` bfloat16/float16 runs the forward under autocast.
    """

    def __init__(
        self,
        model_name: str = "dinov2_vitb14",
        weights: str | os.PathLike | Mapping | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
    ):
        self.spec = get_spec(model_name)
        self.model_name = model_name
        self.device = _device(device)
        self.dtype = _dtype(dtype)
        self.autocast = self.dtype not in (None, torch.float32)
        self.weights = weights if isinstance(weights, Mapping) else resolve_weights(model_name, weights)
        self.model = load_backbone(self.weights, self.spec, device=self.device)
        self.transform = build_transform(self.spec)
        self._geometry = transforms.Compose(_geometry(self.spec))
        self.embed_dim = self.spec.embed_dim

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_name!r}, device={str(self.device)!r}, dtype={self.dtype})"

    def preprocess(self, images) -> torch.Tensor:
        """A model-ready float batch (N, 3, H, W) from any accepted input."""
        if isinstance(images, torch.Tensor):
            x = images.unsqueeze(0) if images.ndim == 3 else images
            if x.ndim != 4 or x.shape[1] != 3:
                raise ImageError(
                    f"expected an image tensor (N, 3, H, W), got shape {tuple(images.shape)} / "
                    "图片张量的形状须为 (N, 3, H, W)"
                )
            if x.dtype == torch.uint8:
                if family_of(self.spec).eval_on_tensor:  # the official transform takes the uint8 pixels as they are
                    return self.transform(x)
                return self.transform.transforms[-1](self._resize_crop(x.float() / 255))
            if not x.is_floating_point():
                raise ImageError(
                    f"image tensors must be uint8 (raw pixels) or float (model input), got {x.dtype} / "
                    "图片张量须为 uint8（原始像素）或浮点（模型输入）"
                )
            return x.float()
        if isinstance(images, (str, os.PathLike, Image.Image)):
            images = [images]
        pils = (to_rgb(im) if isinstance(im, Image.Image) else open_image(im) for im in images)
        return torch.stack([self.transform(im) for im in pils])

    def _resize_crop(self, x: torch.Tensor) -> torch.Tensor:
        return self._geometry(x)

    @torch.inference_mode()
    def forward(self, x: torch.Tensor, patch_tokens: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(normed CLS (B, D), normed patch tokens (B, P, D) or None) of one model-ready batch, on the
        extractor's device and dtype. Without patch tokens the backbone computes only what CLS needs."""
        x = x.to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.autocast):
            if not patch_tokens:
                return self.model(x), None
            out = self.model.forward_features(x)
            return out["x_norm_clstoken"], out["x_norm_patchtokens"]

    def extract(
        self,
        images: Iterable | torch.Tensor,
        batch_size: int = 32,
        normalize: bool = False,
        patch_tokens: bool = False,
    ):
        """CLS features (N, D) as a float32 CPU tensor, in input order; with ``patch_tokens=True`` a pair
        (cls (N, D), patches (N, P, D)). ``normalize=True`` scales every feature vector to unit L2 norm."""
        if isinstance(images, torch.Tensor):
            images = images.unsqueeze(0) if images.ndim == 3 else images
        elif isinstance(images, (str, os.PathLike, Image.Image)):
            images = [images]
        else:
            images = list(images)
        cls_out, patch_out = [], []
        for start in range(0, len(images), batch_size):
            cls, patches = self.forward(self.preprocess(images[start : start + batch_size]), patch_tokens)
            cls_out.append((F.normalize(cls.float(), dim=-1) if normalize else cls.float()).cpu())
            if patch_tokens:
                patches = patches.float()
                patch_out.append((F.normalize(patches, dim=-1) if normalize else patches).cpu())
        if not cls_out:
            cls_out = [torch.empty(0, self.embed_dim)]
            patch_out = [torch.empty(0, 0, self.embed_dim)]
        cls = torch.cat(cls_out)
        return (cls, torch.cat(patch_out)) if patch_tokens else cls

    __call__ = extract


class DINOv3FeatureExtractor(DINOv2FeatureExtractor):
    """The same extractor with a DINOv3 model by default (any catalog model works with either name)."""

    def __init__(self, model_name: str = "dinov3_vitb16", *args, **kwargs):
        super().__init__(model_name, *args, **kwargs)
