"""Helpers of the JIT tests: run fused and eager, count kernels, compare."""

from __future__ import annotations

import re

import numpy as np
import pytest

import runba
from runba.kernels import blas

# A 2-D float matmul is a GEMM step of the graph only where runba's own GEMM exists (a cblas in
# numpy's BLAS, or MKL); elsewhere (numpy on Accelerate, RUNBA_GEMM=numpy) it is a cut.
needs_gemm = pytest.mark.skipif(
    not blas.available(), reason="no runba GEMM (no cblas GEMM found): matmul is a cut here"
)

F32 = runba.float32
F64 = runba.float64


def flat(out) -> list:
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in flat(o)]
    return [out]


def values(out) -> list[np.ndarray]:
    """The outputs as numpy arrays (reading them realizes the graph)."""
    return [np.array(t.detach().numpy(), copy=True) for t in flat(out)]


class Delta:
    """``cache_info()`` counters gained inside a ``with`` block."""

    def __enter__(self):
        self._before = runba.jit.cache_info()
        return self

    def __exit__(self, *exc):
        runba.realize()
        after = runba.jit.cache_info()
        b = self._before
        self.launches = after.launches - b.launches
        self.graphs = after.graphs - b.graphs
        self.plan_hits = after.plan_hits - b.plan_hits
        self.plan_misses = after.plan_misses - b.plan_misses
        self.compiles = after.compiles - b.compiles
        self.disk_hits = after.kernels.disk_hits - b.kernels.disk_hits
        return False


def run_fused(fn, *args, lazy=True):
    """``runba.fuse(fn)(*args)`` as numpy arrays, and the counters it moved. With ``lazy``,
    the outputs must still be lazy before they are read."""
    with Delta() as d:
        out = runba.fuse(fn)(*args)
        if lazy:
            pending = [t for t in flat(out) if t._lazy is not None]
            assert pending, "no output of the fused function is lazy"
        got = values(out)
    return got, d


def assert_fused_matches(fn, *args, rtol=1e-5, atol=1e-6, lazy=True):
    """Fused == eager within tolerance (same dtypes and shapes); returns the counters."""
    want = values(fn(*args))
    got, d = run_fused(fn, *args, lazy=lazy)
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want)):
        assert g.dtype == w.dtype, f"output {k}: fused {g.dtype}, eager {w.dtype}"
        assert g.shape == w.shape, f"output {k}: fused {g.shape}, eager {w.shape}"
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"output {k}")
    return d


_HEAD = re.compile(r"^explain (\S+): (\d+) graph\(s\), (\d+) kernel\(s\), (\d+) cut\(s\)$")


def explain_counts(report: str) -> tuple[int, int, int]:
    """(graphs, kernels, cuts) from the first line of an explain report."""
    m = _HEAD.match(report.splitlines()[0])
    assert m, f"unexpected explain header: {report.splitlines()[0]!r}"
    return int(m[2]), int(m[3]), int(m[4])


def kernel_lines(report: str) -> list[str]:
    return [
        ln.strip()
        for ln in report.splitlines()
        if re.match(r"\s+(pointwise|row|column) kernel", ln)
    ]


def numpy_lines(report: str) -> list[str]:
    return [ln.strip() for ln in report.splitlines() if ln.strip().startswith("numpy ")]


def cut_lines(report: str) -> list[str]:
    return [ln for ln in report.splitlines() if ln.startswith("eager ")]


def randn(*shape, dtype=np.float32, seed=0):
    return runba.tensor(np.random.default_rng(seed).standard_normal(shape).astype(dtype))


# Shared fused programs: tests that only need "some fused op" use these, so their kernels
# compile once per run (kernels are keyed by structure and layout, never sizes or scalars).
def double(x):
    return x * 2


def scaled(x, s):
    return x * s  # the same kernel as double: a scalar is a run-time argument


def softmax(x):
    return x.softmax(-1)


def block(x, b):
    return (x * 2 + b).relu().sum(-1)
