"""Plan runners (runner.py): from a plan's second run on, its steps run by one generated
function; it gives the generic path's values and counters, and a step whose arrays break
the runner's assumptions runs generically."""

from __future__ import annotations

import numpy as np
import pytest
from jitutil import Delta, needs_gemm, randn, values

import runba
import runba.nn.functional as F
from runba.jit import cache, runner, runtime


def _pointwise(x, b):
    return ((x * 1.5 + b).tanh() - 0.25) * x  # one scalar type: the scalar array


def _mixed_scalars(x, b):
    return runba.where(x > 0.5, x + b, 2.0)  # a bool and float scalars: one each


def _rows(x, b):
    return (x + b).softmax(-1)  # a row kernel


def _columns(x, b):
    return (x * b).sum(0)  # a leading-axis reduction: partials, then a combine


def _interior(x, b):
    # a permuted group (always generic) and a pointwise one over other axes
    return (x.reshape(4, 3, -1) * 2).sum(1) + 1, (x + b).exp()


def _view_steps(x, b):
    # a row kernel, numpy steps for the views of its result, a kernel reading them permuted
    return ((x * 2).sum(1) + b).reshape(3, 4).t() * 2


def _linear_relu(x, w, b):
    return F.relu(F.linear(x, w, b))  # GEMM; the epilogue writes over C


def _matmul_softmax(x, w, b):
    return (x @ w.t()).softmax(-1) * 2  # GEMM; the epilogue has reductions: own output


PROGRAMS = [
    (_pointwise, lambda: (randn(12, 8), randn(8, seed=1))),
    (_mixed_scalars, lambda: (randn(12, 8), randn(8, seed=1))),
    (_rows, lambda: (randn(12, 8), randn(8, seed=1))),
    (_columns, lambda: (randn(12, 8), randn(8, seed=1))),
    (_interior, lambda: (randn(12, 8), randn(8, seed=1))),
    (_view_steps, lambda: (randn(12, 8), randn(12, seed=1))),
    pytest.param(
        _linear_relu,
        lambda: (randn(64, 96), randn(80, 96, seed=1), randn(80, seed=2)),
        marks=needs_gemm,
    ),
    pytest.param(
        _matmul_softmax,
        lambda: (randn(64, 96), randn(80, 96, seed=1), randn(80, seed=2)),
        marks=needs_gemm,
    ),
]


def _plans_with_runners():
    return [p for p in cache.PLANS.values() if p.runner]


@pytest.mark.parametrize("fn,make", PROGRAMS)
def test_from_the_second_run_a_plan_runs_by_its_runner(fn, make, monkeypatch):
    runba.jit.clear_cache()
    args = make()
    want = values(fn(*args))
    fused = runba.fuse(fn)
    with Delta() as first:
        got = values(fused(*args))
    # built after the first run; where a kernel's arrays are not C-contiguous (_view_steps),
    # after runner.MAX_TRIES runs, with that step left to the generic path
    for _ in range(runner.MAX_TRIES - 1):
        if not _plans_with_runners():
            fused(*args).numpy()
    assert len(_plans_with_runners()) == 1
    generic = []
    steps = runtime._run_steps
    monkeypatch.setattr(runtime, "_run_steps", lambda *a: generic.append(1) or steps(*a))
    for _ in range(2):
        with Delta() as again:
            again_got = values(fused(*args))
        assert not generic, "the runner did not run"
        assert again.launches == first.launches and again.compiles == 0
        for a, b in zip(again_got, got):
            np.testing.assert_array_equal(a, b)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_a_new_size_runs_by_the_same_runner():
    runba.jit.clear_cache()
    fused = runba.fuse(_rows)
    fused(*(randn(12, 8), randn(8, seed=1))).numpy()
    (plan,) = _plans_with_runners()
    runner = plan.runner
    x, b = randn(7, 33, seed=3), randn(33, seed=4)
    np.testing.assert_allclose(fused(x, b).numpy(), _rows(x, b).numpy(), rtol=1e-5, atol=1e-6)
    assert plan.runner is runner


@pytest.mark.parametrize(
    "variant",
    [
        "strided",  # a non-contiguous input: that group's layout differs
        "read-only",  # numba types read-only arrays apart: the generic path aliases them
    ],
)
def test_a_step_whose_arrays_break_the_runners_assumptions_runs_generically(variant, monkeypatch):
    runba.jit.clear_cache()
    fused = runba.fuse(_pointwise)
    x, b = randn(12, 8), randn(8, seed=1)
    fused(x, b).numpy()
    assert _plans_with_runners()
    if variant == "strided":
        x = randn(8, 24, seed=5)[:, ::2].t()  # (12, 8), neither C- nor F-contiguous
    else:
        arr = np.random.default_rng(6).standard_normal((12, 8)).astype(np.float32)
        arr.flags.writeable = False
        x = runba.from_numpy(arr)
    generic = []
    run_group = runtime._run_group
    monkeypatch.setattr(runtime, "_run_group", lambda *a: generic.append(1) or run_group(*a))
    with Delta() as d:
        got = fused(x, b).numpy()
    np.testing.assert_allclose(got, _pointwise(x, b).numpy(), rtol=1e-5, atol=1e-6)
    assert generic == [1]
    # strided: a kernel of its own layout (compiled, or from an earlier run's disk cache);
    # read-only: the generic path passes a writable alias, so the kernel is the same one
    assert d.compiles + d.disk_hits == (1 if variant == "strided" else 0)


@needs_gemm
@pytest.mark.parametrize("rows", [1, 3])
def test_a_gemm_the_runner_cannot_block_runs_generically(rows):
    """One row: runba's GEMM declines it (numpy's matmul, then the epilogue on its own);
    a transposed input: the GEMM reads it in place."""
    runba.jit.clear_cache()
    fused = runba.fuse(_linear_relu)
    w, b = randn(80, 96, seed=1), randn(80, seed=2)
    fused(randn(64, 96), w, b).numpy()
    assert _plans_with_runners()
    x = randn(96, rows, seed=3).t() if rows > 1 else randn(rows, 96, seed=3)
    np.testing.assert_allclose(
        fused(x, w, b).numpy(), _linear_relu(x, w, b).numpy(), rtol=1e-5, atol=1e-5
    )


def test_a_kernel_failing_inside_a_runner_names_the_ops():
    runba.jit.clear_cache()
    fused = runba.fuse(_pointwise)
    x, b = randn(12, 8), randn(8, seed=1)
    fused(x, b).numpy()
    (plan,) = _plans_with_runners()

    def failing(*args):
        raise TypeError("a numba typing error")

    kernel = plan.runner.__globals__["K0"]
    plan.runner.__globals__["K0"] = failing
    y = fused(x, b)
    try:
        match = r"fused kernel E_mul_add_tanh.*\[mul\[12, 8\]"
        with pytest.raises(runtime.KernelError, match=match):
            y.numpy()
    finally:
        plan.runner.__globals__["K0"] = kernel
    # the graph stayed pending: the next read runs it
    np.testing.assert_allclose(y.numpy(), _pointwise(x, b).numpy(), rtol=1e-5)


def test_per_launch_debug_output_still_prints_after_the_runner_is_built(monkeypatch, capsys):
    runba.jit.clear_cache()
    fused = runba.fuse(_pointwise)
    x, b = randn(12, 8), randn(8, seed=1)
    fused(x, b).numpy()
    assert _plans_with_runners()
    monkeypatch.setenv("RUNBA_DEBUG", "2")
    fused(x, b).numpy()
    assert "launch E_mul_add_tanh" in capsys.readouterr().err


def test_debug_level_4_prints_the_runner(monkeypatch, capsys):
    runba.jit.clear_cache()
    monkeypatch.setenv("RUNBA_DEBUG", "4")
    runba.fuse(_pointwise)(randn(12, 8), randn(8, seed=1)).numpy()
    err = capsys.readouterr().err
    assert "plan runner (1 steps, 1 fast):\ndef run(nodes, values, nthreads):" in err, err
