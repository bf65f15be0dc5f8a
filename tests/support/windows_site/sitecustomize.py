"""Start-up hook of every Python process started with ``tests.support.windows.windows_env``: this folder is first
on its PYTHONPATH, so Python imports this module at start-up (``site``), and it applies tests/support/windows.py's
rules (Windows' ``os`` for dinovault, NTFS rename/link rules, stat results without st_blocks) before any other code
runs. Without the volumes variable it does nothing."""

import os

if os.environ.get("DINOVAULT_TEST_WINDOWS_VOLUMES"):
    import importlib.util
    from pathlib import Path

    _spec = importlib.util.spec_from_file_location("_dinovault_windows_rules", Path(__file__).parents[1] / "windows.py")
    _rules = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_rules)
    _rules.apply([Path(v) for v in os.environ["DINOVAULT_TEST_WINDOWS_VOLUMES"].split(os.pathsep) if v], setattr)
