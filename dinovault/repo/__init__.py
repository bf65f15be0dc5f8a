"""The repository as a product: its layout (layout.py), the one adapter to DVC (dvc.py), the commands behind
`invoke fetch/list/status/clean` (commands.py) and `invoke verify [--repair]` (integrity.py); they return data and
print nothing."""
