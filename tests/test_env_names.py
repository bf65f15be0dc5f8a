"""The DINOVAULT_* settings that were DINOV2_* while only DINOv2 existed: each new name is read, each old name still
is, and the new one wins when both are set (settings.OLD_NAMES)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dinovault import settings, sources
from dinovault.errors import DinovaultError
from dinovault.transport.retry import RetryPolicy

# new name → (what the setting reads as, a value for the old name, a different value for the new name)
READERS = {
    "DINOVAULT_REGISTRY": (lambda: str(settings.registry_file()), "/old/registry.txt", "/new/registry.txt"),
    "DINOVAULT_RETRIES": (lambda: str(RetryPolicy.from_env().attempts), "3", "7"),
    "DINOVAULT_BACKOFF": (lambda: f"{RetryPolicy.from_env().backoff:g}", "0.5", "2"),
    "DINOVAULT_MAX_WAIT": (lambda: f"{RetryPolicy.from_env().max_wait:g}", "11", "22"),
    "DINOVAULT_TIMEOUT": (lambda: f"{RetryPolicy.from_env().read_timeout:g}", "4", "6"),
    "DINOVAULT_CONNECTIONS": (lambda: str(settings.connections()), "2", "5"),
    "DINOVAULT_SEGMENT_SIZE": (lambda: str(settings.segment_size()), "4096", "8192"),
    "DINOVAULT_SOURCES": (lambda: ",".join(s.name for s in sources.configured()), "huggingface", "official"),
}


def test_every_renamed_setting_is_tested():
    assert set(READERS) == set(settings.OLD_NAMES)
    assert all(old.startswith("DINOV2_") for old in settings.OLD_NAMES.values())


@pytest.mark.parametrize("new", sorted(READERS))
def test_new_name_old_name_and_new_wins(new, monkeypatch):
    read, old_value, new_value = READERS[new]
    old = settings.OLD_NAMES[new]
    for name in (new, old):
        monkeypatch.delenv(name, raising=False)
    default = read()

    monkeypatch.setenv(old, old_value)
    assert read() == (str(Path(old_value)) if new == "DINOVAULT_REGISTRY" else old_value)
    assert read() != default

    monkeypatch.setenv(new, new_value)  # both set: the new name wins
    assert read() == (str(Path(new_value)) if new == "DINOVAULT_REGISTRY" else new_value)

    monkeypatch.delenv(old)  # the new name alone
    assert read() == (str(Path(new_value)) if new == "DINOVAULT_REGISTRY" else new_value)

    monkeypatch.setenv(new, "")  # empty counts as unset: the old name is read again
    monkeypatch.setenv(old, old_value)
    assert read() == (str(Path(old_value)) if new == "DINOVAULT_REGISTRY" else old_value)


@pytest.mark.parametrize("new", ["DINOVAULT_TIMEOUT", "DINOVAULT_CONNECTIONS"])
def test_a_bad_value_names_the_variable_the_user_set(new, monkeypatch):
    old = settings.OLD_NAMES[new]
    read = READERS[new][0]
    for name, other in ((old, new), (new, old)):
        monkeypatch.delenv(other, raising=False)
        monkeypatch.setenv(name, "lots")
        with pytest.raises(DinovaultError) as caught:
            read()
        assert f"{name}='lots'" in str(caught.value)
        monkeypatch.delenv(name)
