"""The networks with the official state_dict keys and forward (backbone.py), safe loading (checkpoint.py), official
<-> Hugging Face conversion (convert.py) and the smoke test (smoke.py). torch is imported by these modules only."""
