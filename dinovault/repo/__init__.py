"""The repository as a product: its layout (layout.py), the one adapter to DVC (dvc.py) and the commands behind
`invoke fetch/list/status/verify/clean` (commands.py), which return data and print nothing."""
