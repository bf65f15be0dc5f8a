#!/usr/bin/env python3
"""Download DINOv2 backbones, verified against pinned SHA-256, into the torch.hub cache and --save_dir.

The same as `dinovault fetch --stage ...` (dinovault/cli/stage.py holds the one implementation), kept so that a clone
runs it without installing the package: `python scripts/download_dinov2.py --model dinov2_vits14 --save_dir DIR`.
"""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run from a clone without installing the package
    sys.path.insert(0, str(REPO_ROOT))

from dinovault.cli.stage import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(default_params=REPO_ROOT / "params.yaml"))
