"""Shared fixtures. Each concern keeps its fixtures in tests/support/<concern>.py; they are imported here
so that session-scoped servers start once per test session."""

import os

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
from tests.support.checkpoints import models_dir  # noqa: E402,F401
from tests.support.httpserver import dinov2_server, faulty_server, torch_home_dir  # noqa: E402,F401
from tests.support.servers import s3_server, ssh_server, webdav_server  # noqa: E402,F401
