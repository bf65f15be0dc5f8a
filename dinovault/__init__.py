"""dinovault: pinned, verified, reproducible DINOv2 weights, loaded offline with official behaviour.

Importing the package does not import torch; ``DINOv2FeatureExtractor`` is loaded on first use.
"""

__version__ = "0.1.0"
__all__ = ["DINOv2FeatureExtractor", "__version__"]


def __getattr__(name):
    if name == "DINOv2FeatureExtractor":
        from .extractor import DINOv2FeatureExtractor

        return DINOv2FeatureExtractor
    raise AttributeError(f"module 'dinovault' has no attribute {name!r}")
