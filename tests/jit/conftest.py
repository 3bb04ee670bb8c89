"""Fixtures of the JIT tests: each test starts and ends with nothing pending."""

import numpy as np
import pytest

import runba
from runba.kernels import blas
from runba.ops import registry


@pytest.fixture(autouse=True, scope="session")
def _gemm_compiled():
    """Compile runba's GEMM kernel (both dtypes) once per worker before any JIT test: it is a
    hand-written kernel compiled on the first matmul big enough to use it, and tests that
    assert "a new size compiles nothing" count only the JIT's own kernels."""
    for dt in (np.float32, np.float64):
        a, b = np.ones((64, 64), dt), np.ones((64, blas.MIN_WORK // 4096 + 64), dt)
        blas.gemm(a, b, np.empty((64, b.shape[1]), dt))


@pytest.fixture(autouse=True)
def _no_pending_graph(monkeypatch):
    # the JIT is on and quiet unless a test says otherwise
    monkeypatch.delenv("RUNBA_JIT", raising=False)
    monkeypatch.delenv("RUNBA_DEBUG", raising=False)
    runba.realize()
    yield
    runba.realize()
    assert registry.lazy_graphs[0] == 0, "a lazy graph is still pending after realize()"
