"""dinovault: pinned, verified, reproducible DINOv2 weights, loaded offline with official behaviour.

Importing the package imports neither torch nor DVC: each name below is loaded on first use.
"""

from importlib import import_module

__version__ = "0.1.0"
_LAZY = {
    "DINOv2FeatureExtractor": "dinovault.inference.extractor",
    "load_backbone": "dinovault.model.checkpoint",
    "fetch_model": "dinovault.fetch",
}
__all__ = [*_LAZY, "__version__"]


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dinovault' has no attribute {name!r}")
