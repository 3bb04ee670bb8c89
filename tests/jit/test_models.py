"""The seed CNN (examples/mnist_cnn.py) fused: eval mode under no_grad == eager."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
from jitutil import Delta, cut_lines, explain_counts, kernel_lines, randn

import runba
from runba.kernels import blas

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_mnist_cnn_fused_eval_matches_eager():
    mod = _load("mnist_cnn")
    runba.manual_seed(0)
    eager = mod.Net().eval()
    fused = mod.Net().eval()
    fused.load_state_dict(eager.state_dict())
    keys = list(fused.state_dict())
    assert runba.fuse(fused) is fused and list(fused.state_dict()) == keys
    x = randn(3, 1, 28, 28)
    with runba.no_grad():
        want = eager(x).numpy()
        report = runba.jit.explain(fused, x)
        out = fused(x)
        assert out._lazy is not None  # log_softmax at the end is pending
        got = out.numpy()
        with Delta() as d:  # a smaller batch: same plans, no compile
            got2 = fused(x[:2]).numpy()
    assert got.shape == (3, 10) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got2, want[:2], rtol=1e-5, atol=1e-5)
    assert d.compiles == 0 and d.plan_misses == 0
    graphs, kernels, cuts = explain_counts(report)
    assert graphs >= 2 and kernels >= 4, report
    cuts_by_op = {c.split(":")[0] for c in cut_lines(report)}
    if blas.available():  # Linear's x @ W.T: a GEMM step of the graph
        assert "  gemm matmul#" in report, report
    else:
        assert "eager matmul" in cuts_by_op, report
    assert any("pool" in c for c in cuts_by_op), report  # pooling is an extern op
    assert any(k.startswith("row kernel R_add_amax_sub_exp_sum") for k in kernel_lines(report))
    assert any(k.startswith("pointwise kernel E_add_relu") for k in kernel_lines(report))
