"""Environment variables read by dinovault (those added for the Hugging Face source and exports).

huggingface_hub reads HF_ENDPOINT, HF_HOME, HF_TOKEN and HF_HUB_OFFLINE itself, exactly as it documents; dinovault
only passes through, so they behave as in every other Hugging Face tool.
"""

from __future__ import annotations

import os
import re

from .errors import SourceError

SOURCES_ENV = "DINOV2_SOURCES"
KNOWN_SOURCES = ("official", "huggingface")
DEFAULT_SOURCES = ("official", "huggingface")


def sources(value: str | None = None) -> tuple[str, ...]:
    """The sources to try, in order: ``$DINOV2_SOURCES`` (comma or space separated) or official,huggingface."""
    if value is None:
        value = os.environ.get(SOURCES_ENV, "")
    names = [s.strip().lower() for s in re.split(r"[,\s]+", value) if s.strip()]
    bad = [n for n in names if n not in KNOWN_SOURCES]
    if bad:
        raise SourceError(
            f"{SOURCES_ENV}={value!r}: unknown source {bad[0]!r} / 未知来源",
            f"use a comma list of {' and '.join(KNOWN_SOURCES)}, e.g. {SOURCES_ENV}=huggingface,official",
        )
    return tuple(dict.fromkeys(names)) or DEFAULT_SOURCES


__all__ = ["DEFAULT_SOURCES", "KNOWN_SOURCES", "SOURCES_ENV", "sources"]
