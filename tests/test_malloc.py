"""runba._malloc: glibc thresholds are set at import unless RUNBA_MALLOC_TUNE=0."""

import sys

import pytest

from runba import _malloc


def _glibc() -> bool:
    import ctypes

    try:
        ctypes.CDLL(None).gnu_get_libc_version  # noqa: B018
    except (OSError, AttributeError):
        return False
    return sys.platform.startswith("linux")


@pytest.mark.skipif(not _glibc(), reason="allocator tuning is glibc-only")
def test_glibc_accepts_the_thresholds(monkeypatch):
    monkeypatch.delenv("RUNBA_MALLOC_TUNE", raising=False)
    assert _malloc.tune_allocator() is True
    assert _malloc.ALLOCATOR_TUNED is True


@pytest.mark.parametrize("value", ["0", "off", "False"])
def test_env_var_turns_tuning_off(monkeypatch, value):
    monkeypatch.setenv("RUNBA_MALLOC_TUNE", value)
    assert _malloc.tune_allocator() is False
