"""Core JIT behaviour: fused == eager, kernel counts, caching, backward through lazy tensors.

The broader suite (fuzzer, per-op fused-vs-eager table) lives in tests/jit/.
"""

from __future__ import annotations

import numpy as np
import pytest

import runba
import runba.nn.functional as F
from runba import nn
from runba.kernels import blas


def _launches():
    return runba.jit.cache_info().launches


def _compiles():
    return runba.jit.cache_info().compiles


def chain(x, b):
    return ((x * 2.0 + b).tanh() * 0.5 - 0.25).relu()


def test_elementwise_chain_is_one_kernel_and_matches_eager():
    x, b = runba.randn(33, 17), runba.randn(17)
    fused = runba.fuse(chain)
    y = fused(x, b)
    assert y._lazy is not None
    before = _launches()
    got = y.numpy()
    assert _launches() - before == 1
    np.testing.assert_allclose(got, chain(x, b).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fn", [lambda x: x.softmax(-1), lambda x: x.log_softmax(-1)])
def test_row_kernels_are_one_kernel(fn):
    x = runba.randn(40, 30)
    y = runba.fuse(fn)(x)
    before = _launches()
    got = y.numpy()
    assert _launches() - before == 1
    np.testing.assert_allclose(got, fn(x).numpy(), rtol=1e-5, atol=1e-6)


def test_full_reduction_matches_numpy_float64():
    x = runba.randn(300, 200)
    got = runba.fuse(lambda x: (x * x).sum())(x).item()
    ref = float((x.numpy().astype(np.float64) ** 2).sum())
    assert got == pytest.approx(ref, rel=1e-5)


def test_matmul_epilogue_is_cut_plus_one_kernel():
    lin = nn.Linear(12, 7)
    x = runba.randn(5, 12)
    report = runba.jit.explain(lambda x: F.relu(lin(x)), x)
    assert ("gemm matmul#0" if blas.available() else "eager matmul") in report
    assert "1 kernel(s)" in report.splitlines()[0]
    assert "E_add_relu_f32" in report


def test_second_call_smaller_batch_and_new_scalar_compile_nothing():
    f = runba.fuse(lambda x, s: (x * s + 1.0).exp().sum(-1))
    f(runba.randn(16, 9), 0.5).numpy()
    before = _compiles()
    hits = runba.jit.cache_info().plan_hits
    f(runba.randn(16, 9), 0.5).numpy()
    f(runba.randn(7, 9), 0.25).numpy()
    assert _compiles() == before
    assert runba.jit.cache_info().plan_hits >= hits + 2


def test_backward_through_lazy_tensors_matches_eager():
    runba.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3), nn.LogSoftmax(dim=1))
    x, t = runba.randn(10, 6), runba.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])

    def grads(m):
        m.zero_grad()
        F.nll_loss(m(x), t).backward()
        return [p.grad.numpy().copy() for p in m.parameters()]

    eager = grads(model)
    fused = grads(runba.fuse(model))
    for a, b in zip(eager, fused):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_dynamic_depth_fused_equals_eager_with_gradients():
    def f(x):
        y = x
        for _ in range(int(x.shape[0])):  # depth varies with the input
            y = (y * 0.9).tanh() + x
        return (y * y).sum()

    fused = runba.fuse(f)
    for n in (2, 3, 5):
        x = runba.randn(n, 4, requires_grad=True)
        f(x).backward()
        g_eager = x.grad.numpy().copy()
        x.grad = None
        out = fused(x)
        out.backward()
        np.testing.assert_allclose(x.grad.numpy(), g_eager, rtol=1e-5, atol=1e-6)
        assert out.item() == pytest.approx(f(x).item(), rel=1e-5)


def test_runba_jit_0_runs_eagerly(monkeypatch):
    monkeypatch.setenv("RUNBA_JIT", "0")
    y = runba.fuse(chain)(runba.randn(3, 4), runba.randn(4))
    assert y._lazy is None


def test_fuse_returns_the_same_module_with_the_same_state_dict_keys():
    m = nn.Linear(3, 2)
    keys = list(m.state_dict())
    assert runba.fuse(m) is m
    assert list(m.state_dict()) == keys


def test_user_shape_error_inside_fuse_is_the_eager_message():
    with pytest.raises(RuntimeError, match=r"add: The size of tensor a \(3\) must match"):
        runba.fuse(lambda a, b: a + b)(runba.ones(2, 3), runba.ones(2, 4))


def test_seed_cnn_fused_inference_matches_eager():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    from mnist_cnn import Net

    runba.manual_seed(3)
    model = Net().eval()
    x = runba.randn(4, 1, 28, 28)
    with runba.no_grad():
        ref = model(x).numpy().copy()
        got = runba.fuse(model)(x).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
