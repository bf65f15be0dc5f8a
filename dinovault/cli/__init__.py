"""The fronts: the `dinovault` command (main.py), the operations it shares with tasks.py (ops.py), the fetch stage's
command (stage.py, also scripts/download_dinov2.py) and the public API (api.py). Importing this imports nothing."""


def main(argv=None) -> int:
    from .main import main as run

    return run(argv)
