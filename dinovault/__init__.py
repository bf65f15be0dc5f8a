"""dinovault: pinned, verified, reproducible DINOv2 and DINOv3 weights, loaded offline with official behaviour.

    from dinovault import fetch, load_backbone, verify, import_file, DINOv2FeatureExtractor, load_features

Importing the package imports neither torch nor DVC: each name below is loaded on first use.
"""

from importlib import import_module

__version__ = "0.1.0"
_LAZY = {
    "fetch": "dinovault.api",
    "load_backbone": "dinovault.api",
    "verify": "dinovault.api",
    "import_file": "dinovault.api",
    "DINOv2FeatureExtractor": "dinovault.inference.extractor",
    "DINOv3FeatureExtractor": "dinovault.inference.extractor",
    "fetch_model": "dinovault.pipeline",
    "load_features": "dinovault.features.loader",
}
__all__ = [*_LAZY, "__version__"]


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dinovault' has no attribute {name!r}")

