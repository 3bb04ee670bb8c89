"""``runba.jit.explain``, ``runba.fuse`` on modules and functions, and errors under fusion."""

import numpy as np
import pytest
from jitutil import (
    cut_lines,
    double,
    explain_counts,
    kernel_lines,
    needs_gemm,
    numpy_lines,
    randn,
)

import runba
import runba.nn as nn
import runba.nn.functional as F
from runba.kernels import blas


def mlp_block(x, w, b):
    h = F.relu(x @ w + b)
    return h * h.amax(-1, keepdim=True)


@needs_gemm
def test_explain_report_lists_graphs_kernels_and_cuts():
    x, w, b = randn(4, 8), randn(8, 5, seed=1), randn(5, seed=2)
    report = runba.jit.explain(mlp_block, x, w, b)
    lines = report.splitlines()
    assert lines[0] == "explain mlp_block: 1 graph(s), 1 kernel(s), 0 cut(s)", report
    assert "graph 1: 5 nodes -> 1 kernel(s), 1 numpy step(s)" in lines, report
    assert any(ln.startswith("  gemm matmul#0 -> [4, 5]: BLAS GEMM") for ln in lines), report
    assert kernel_lines(report) == ["row kernel R_add_relu_amax_mul_f32 over [4, 5]"], report
    assert "    ops: add#1 relu#2 amax#3 mul#4" in lines, report
    assert "    writes: #4" in lines, report
    assert any(ln.startswith("    boundary: ") for ln in lines), report
    # 4x8 @ 8x5 is below blas.MIN_WORK: still one kernel (its serial branch)
    assert any(
        ln.startswith("  ran as one kernel G_matmul_add_relu_amax_mul_f32:") for ln in lines
    ), report


@pytest.mark.skipif(not blas.available(), reason="no runba GEMM here (no cblas)")
def test_explain_shows_a_gemm_and_its_epilogue_running_as_one_kernel():
    x, w, b = randn(64, 96), randn(96, 80, seed=1), randn(80, seed=2)
    report = runba.jit.explain(mlp_block, x, w, b)
    assert explain_counts(report) == (1, 1, 0), report
    assert (
        "  ran as one kernel G_matmul_add_relu_amax_mul_f32: matmul#0's GEMM, then the kernel "
        "after it, on each block of its rows (or columns)" in report.splitlines()
    ), report


def test_explain_counts_every_graph_and_cut():
    x = randn(4, 8)

    def two_graphs(x):
        y = double(x)
        s = y.sum().item()  # a value read realizes graph 1
        z = (y - s).abs()
        return z.reshape(8, 4).T + 1  # graph 2: a view of a computed value splits it

    report = runba.jit.explain(two_graphs, x)
    assert explain_counts(report) == (2, 3, 0), report
    assert "graph 1:" in report and "graph 2:" in report
    assert len(numpy_lines(report)) == 2, report  # reshape and transpose


def test_explain_names_why_ops_run_eagerly():
    x = randn(4, 8)
    report = runba.jit.explain(lambda x: double(x).cumsum(-1).argmax(-1), x)
    cuts = cut_lines(report)
    assert any(c.startswith("eager cumsum: ") for c in cuts), report
    assert any(c.startswith("eager argmax: ") and "without a fused lowering" in c for c in cuts)
    assert explain_counts(report)[2] == len(cuts)


@needs_gemm
def test_explain_of_a_module_and_of_eager_only_code():
    model = nn.Sequential(nn.Linear(8, 4), nn.Tanh())
    report = runba.jit.explain(model, randn(2, 8))
    assert report.startswith("explain Sequential: 1 graph(s), 1 kernel(s), 0 cut(s)"), report
    assert "  gemm matmul#0 -> [2, 4]" in report, report  # Linear's x @ W.T: a step
    assert kernel_lines(report) == ["pointwise kernel E_add_tanh_f32 over [2, 4]"], report
    report = runba.jit.explain(lambda x: x.argmax(), randn(3))
    assert explain_counts(report) == (0, 0, 1), report


def test_explain_leaves_nothing_pending_and_runs_the_function_once():
    calls = []

    def f(x):
        calls.append(1)
        return x.sum(-1)

    y = runba.fuse(double)(randn(3))  # earlier pending work
    report = runba.jit.explain(f, randn(3))
    assert calls == [1]
    assert y._lazy is None  # realized before, not part of the report
    assert explain_counts(report) == (1, 1, 0), report
    assert "R_sum_f32" in report and "E_mul_f32" not in report


# ---------------------------------------------------------------------------- fuse()
class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.norm = nn.LayerNorm(3)

    def forward(self, x):
        return self.norm(self.lin(x)).tanh()


def test_fuse_returns_the_same_module_with_its_state_dict_keys():
    runba.manual_seed(0)
    m = Tiny()
    keys = list(m.state_dict())
    assert runba.fuse(m) is m
    assert list(m.state_dict()) == keys == ["lin.weight", "lin.bias", "norm.weight", "norm.bias"]
    assert "_runba_fused" not in dict(m.named_modules()) and len(list(m.parameters())) == 4
    eager = Tiny()
    eager.load_state_dict(m.state_dict())
    x = randn(2, 4)
    out = m(x)
    assert out._lazy is not None
    np.testing.assert_allclose(
        out.detach().numpy(), eager(x).detach().numpy(), rtol=1e-5, atol=1e-6
    )


def test_fuse_a_module_class_and_a_function():
    class Scaled(nn.Module):
        def forward(self, x):
            return (x * 3).exp()

    assert runba.fuse(Scaled) is Scaled
    out = Scaled()(randn(3))
    assert out._lazy is not None
    np.testing.assert_allclose(out.numpy(), np.exp(3 * randn(3).numpy()), rtol=1e-6)

    def twice(x):
        """Doc."""
        return double(x)

    fused = runba.fuse(twice)
    assert fused is not twice
    assert fused.__name__ == "twice" and fused.__doc__ == "Doc."
    assert fused.__runba_fused__ is twice
    assert runba.fuse()(twice)(randn(3))._lazy is not None  # @runba.fuse() form
    with pytest.raises(TypeError, match="expected a module or a callable"):
        runba.fuse(42)


# ---------------------------------------------------------------------------- errors
def _message(fn, *args):
    with pytest.raises(RuntimeError) as info:
        fn(*args)
    return str(info.value)


@pytest.mark.parametrize(
    "fn",
    [lambda a, b: a + b, lambda a, b: (a * 2) + b, lambda a, b: (a * 2).exp() + (b - 1)],
    ids=["concrete", "one-lazy", "both-lazy"],
)
def test_shape_error_is_the_same_as_eager(fn):
    a, b = randn(4, 8), randn(3, 8)
    eager = _message(fn, a, b)
    assert eager.startswith("add: The size of tensor a (4) must match the size of tensor b (3)")
    assert "[4, 8]" in eager and "[3, 8]" in eager
    assert _message(runba.fuse(fn), a, b) == eager
    # the JIT is still usable, nothing half-recorded leaks into the next graph
    runba.realize()
    np.testing.assert_array_equal(runba.fuse(double)(a).numpy(), a.numpy() * 2)


def test_error_in_a_fused_module_names_the_op():
    model = runba.fuse(nn.Sequential(nn.Linear(8, 4), nn.ReLU()))
    with pytest.raises(RuntimeError) as fused_err:
        model(randn(2, 8)) + randn(3, 4)
    with pytest.raises(RuntimeError) as eager_err:
        nn.Sequential(nn.Linear(8, 4), nn.ReLU())(randn(2, 8)) + randn(3, 4)
    assert str(fused_err.value) == str(eager_err.value)
    assert "add" in str(fused_err.value)


def test_explain_says_when_fusion_is_off(monkeypatch):
    """Under RUNBA_JIT=0 a fused call runs eagerly; explain still shows what fusion would
    do, and says so."""
    f = runba.fuse(lambda x: (x * 2.0).exp())
    monkeypatch.setenv("RUNBA_JIT", "0")
    report = runba.jit.explain(f, runba.ones(3))
    assert "RUNBA_JIT=0" in report.splitlines()[1]
    monkeypatch.setenv("RUNBA_JIT", "1")
    assert "RUNBA_JIT" not in runba.jit.explain(f, runba.ones(3))
