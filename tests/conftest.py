"""Shared fixtures. Each concern keeps its fixtures in tests/support/<concern>.py; they are imported here
so that session-scoped servers start once per test session."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
# Only loopback traffic: the default DINOV2_SOURCES ends with huggingface, so a test whose official source fails
# would otherwise ask huggingface.co. Port 9 on 127.0.0.1 refuses at once; tests of the Hugging Face source set
# HF_ENDPOINT to their own server. A private HF_HOME keeps the user's Hugging Face cache out of the tests.
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="dinovault-hf-home-")
atexit.register(shutil.rmtree, os.environ["HF_HOME"], ignore_errors=True)
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.pop("HF_HUB_OFFLINE", None)
from tests.support.checkpoints import models_dir  # noqa: E402,F401
from tests.support.httpserver import dinov2_server, faulty_server, torch_home_dir  # noqa: E402,F401
from tests.support.servers import s3_server, ssh_server, webdav_server  # noqa: E402,F401
