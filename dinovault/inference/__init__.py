"""Using the weights: the feature extractor (extractor.py), features of a folder (features.py), the torch.hub
entries of hubconf.py (torchhub.py). They need model/ and the kernel, never the fetch path."""
