"""Fixtures of the JIT tests: each test starts and ends with nothing pending."""

import pytest

import runba
from runba.ops import registry


@pytest.fixture(autouse=True)
def _no_pending_graph(monkeypatch):
    # the JIT is on and quiet unless a test says otherwise
    monkeypatch.delenv("RUNBA_JIT", raising=False)
    monkeypatch.delenv("RUNBA_DEBUG", raising=False)
    runba.realize()
    yield
    runba.realize()
    assert registry.lazy_graphs[0] == 0, "a lazy graph is still pending after realize()"
