"""Features of a dataset as reproducible assets: named sets in params.yaml (sets.py), one DVC stage each, vectors in
content-addressed shards with an index (store.py), computed incrementally by the local engine (engine.py: decoding
workers overlapped with the model) or as Ray Data tasks (ray_engine.py), read back memory-mapped (loader.py)."""
