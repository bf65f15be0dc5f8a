"""Team remotes: configuring them (config.py, `invoke remote`), probing them (probe.py) and the one push and the
one pull (transfer.py), all through the repository's one DVC adapter (repo/dvc.py)."""
