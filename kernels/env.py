"""Environment variables read on hot paths, cheaply.

``os.environ.get`` costs ~0.7 µs (the Mapping machinery, then key and value codecs), and a
fused call reads ``RUNBA_JIT``, ``RUNBA_DEBUG`` and ``RUNBA_GEMM`` every time: they are
re-read so a change (a test's ``monkeypatch.setenv``, say) takes effect at once. On POSIX
``os.environ`` keeps its items in a dict of bytes, which :func:`get` reads directly
(~0.15 µs); elsewhere it falls back to ``os.environ.get``.
"""

from __future__ import annotations

import os

__all__ = ["get"]

_DATA = getattr(os.environ, "_data", None)
_DIRECT = os.name == "posix" and isinstance(_DATA, dict)
_KEYS: dict[str, bytes] = {}


def get(name: str, default: str = "") -> str:
    """``os.environ.get(name, default)``, faster.

    >>> get("RUNBA_NO_SUCH_VARIABLE", "unset")
    'unset'
    """
    if not _DIRECT:
        return os.environ.get(name, default)
    key = _KEYS.get(name)
    if key is None:
        key = _KEYS[name] = os.fsencode(name)
    value = _DATA.get(key)
    return default if value is None else os.fsdecode(value)
