"""A 2-D float matmul under fusion is a GEMM step, and the kernel after it that reads it
runs inside the GEMM's blocks of rows, or of columns for a pointwise kernel on a product
wider than tall (one kernel: BLAS, then the epilogue, per chunk)."""

import numpy as np
import pytest
from jitutil import Delta, assert_fused_matches, explain_counts, randn

import runba
import runba.nn.functional as F
from runba.kernels import blas

pytestmark = pytest.mark.skipif(
    not blas.available(), reason="no runba GEMM here (no cblas): matmul stays an eager cut"
)


def _ran_as_one(fn, *args):
    """Names of the kernels that ran as GEMM + epilogue in one fused call of ``fn``."""
    report = runba.jit.explain(fn, *args)
    return [ln.split()[4].rstrip(":") for ln in report.splitlines() if "ran as one kernel" in ln]


def linear_relu(x, w, b):
    return F.relu(F.linear(x, w, b))


def matmul_relu(x, w):
    return (x @ w).relu()


def matmul_softmax(x, w):
    return (x @ w).softmax(-1)


@pytest.mark.parametrize(
    "fn,shapes,kernel",
    [
        # rows: a pointwise kernel with a broadcast bias, one outer axis = C's rows
        (linear_relu, [(128, 96), (80, 96), (80,)], "G_matmul_add_relu_f32"),
        # flat: one merged loop over C, each chunk its rows' elements
        (matmul_relu, [(96, 60), (60, 70)], "G_matmul_relu_f32"),
        # rows with reductions: the softmax row kernel on each block of rows
        (matmul_softmax, [(64, 80), (80, 120)], "G_matmul_amax_sub_exp_sum_div_f32"),
        # C wider than tall, pointwise: blocks of columns (B transposed, then not)
        (linear_relu, [(40, 96), (150, 96), (150,)], "G_matmul_add_relu_f32"),
        (matmul_relu, [(30, 60), (60, 170)], "G_matmul_relu_f32"),
    ],
)
def test_gemm_and_epilogue_run_as_one_kernel_and_match_eager(fn, shapes, kernel):
    args = [randn(*s, seed=k) for k, s in enumerate(shapes)]
    assert _ran_as_one(fn, *args) == [kernel]
    d = assert_fused_matches(fn, *args, rtol=1e-5, atol=1e-5)
    assert d.launches == 1


def test_a_pointwise_epilogue_has_one_parallel_body_for_row_and_column_blocks():
    """Column blocks (C wider than tall) and row blocks share one ``prange``: numba compiles
    each parallel body on its own (~0.4 s), so two would cost that twice on a cold start."""
    from runba.kernels import loader

    for shapes in ([(128, 96), (80, 96), (80,)], [(40, 96), (150, 96), (150,)]):
        args = [randn(*s, seed=k) for k, s in enumerate(shapes)]
        assert_fused_matches(linear_relu, *args, rtol=1e-5, atol=1e-5)
    kernels = [d for d in loader._memory.values() if d.__name__ == "G_matmul_add_relu_f32"]
    assert kernels
    for d in kernels:
        with open(d.py_func.__code__.co_filename) as fh:
            assert fh.read().count("prange(") == 1


def _two(c):
    return c.relu(), c * 2


def _kept(c):
    return c, c.abs()


@pytest.mark.parametrize(
    "fn",
    [
        lambda x, w, s, r: (x @ w) * s + r,  # a per-row scale and a full residual
        lambda x, w, s, r: ((x @ w) - s).sigmoid(),  # a transcendental, broadcast operand
        lambda x, w, s, r: _two(x @ w),  # two outputs of one group
        lambda x, w, s, r: _kept(x @ w),  # the product itself kept as well
    ],
    ids=["scale+residual", "sigmoid", "two outputs", "product kept"],
)
def test_column_blocks_with_broadcast_operands_and_several_outputs(fn):
    """C (40 x 300) is wider than tall: a pointwise epilogue takes blocks of C's columns,
    and operands broadcast along either axis still line up with each block."""
    x, w = randn(40, 96), randn(96, 300, seed=1)
    s, r = randn(40, 1, seed=2), randn(40, 300, seed=3)
    assert len(_ran_as_one(fn, x, w, s, r)) == 1
    assert_fused_matches(fn, x, w, s, r, rtol=1e-5, atol=1e-5)


def test_float64_transposed_and_sliced_operands():
    rng = np.random.default_rng(3)
    a = runba.tensor(rng.standard_normal((300, 90)))  # float64
    w = runba.tensor(rng.standard_normal((70, 300 + 7)))[:, 3:303]  # a column slice
    fn = lambda a, w: F.gelu(a.T @ w.T) * 2  # noqa: E731
    assert _ran_as_one(fn, a, w) == ["G_matmul_gelu_mul_f64"]
    assert_fused_matches(fn, a, w, rtol=1e-12, atol=1e-12)
    wide = runba.tensor(rng.standard_normal((200, 300 + 7)))[:, 3:303]  # column blocks
    assert_fused_matches(fn, a, wide, rtol=1e-12, atol=1e-12)


def test_two_layers_each_gemm_reads_the_epilogue_before_it():
    x, w1, w2 = randn(100, 120), randn(120, 90, seed=1), randn(90, 80, seed=2)
    fn = lambda x, w1, w2: F.relu(x @ w1) @ w2 + 1.0  # noqa: E731
    assert _ran_as_one(fn, x, w1, w2) == ["G_matmul_relu_f32", "G_matmul_add_f32"]
    d = assert_fused_matches(fn, x, w1, w2, rtol=1e-5, atol=1e-5)
    assert d.launches == 2


@pytest.mark.parametrize(
    "case",
    ["one row", "column kernel", "staged chain", "no epilogue", "kept and read"],
)
def test_gemm_runs_first_where_the_epilogue_cannot_join_it(case):
    """Each of these still gives eager's result; the GEMM and the kernel run one after
    the other (or there is no kernel)."""
    x, w = randn(96, 60), randn(60, 70, seed=1)
    fn = matmul_relu
    if case == "one row":  # one row cannot be split into blocks
        x = randn(1, 4000)
        w = randn(4000, 100, seed=1)
    elif case == "column kernel":
        fn = lambda x, w: (x @ w).sum(0)  # noqa: E731
    elif case == "staged chain":  # 3+ transcendentals: tiles, not rows
        fn = lambda x, w: (x @ w).tanh().exp().tanh()  # noqa: E731
    elif case == "no epilogue":
        fn = lambda x, w: x @ w  # noqa: E731
    else:  # the product itself is an output too: written, then read by the kernel
        fn = lambda x, w: ((x @ w) * 2, (x @ w).T.exp())  # noqa: E731
    ran = _ran_as_one(fn, x, w)
    if case == "kept and read":
        assert ran == ["G_matmul_mul_f32"]  # the transposed read is a second step
    else:
        assert ran == []
    assert_fused_matches(fn, x, w, rtol=1e-5, atol=1e-5)


def test_a_product_below_min_work_runs_in_the_same_kernel_serially():
    """Below blas.MIN_WORK the GEMM-epilogue kernel takes its serial branch (one BLAS call,
    no parallel region) rather than np.matmul and a second kernel: a size never decides
    which kernel runs, so crossing MIN_WORK compiles nothing."""
    x, w = randn(4, 8), randn(8, 5, seed=1)
    assert 4 * 8 * 5 < blas.MIN_WORK
    assert _ran_as_one(matmul_relu, x, w) == ["G_matmul_relu_f32"]
    assert_fused_matches(matmul_relu, x, w, rtol=1e-5, atol=1e-5)
    big = randn(96, 60, seed=2), randn(60, 70, seed=3)
    assert 96 * 60 * 70 >= blas.MIN_WORK
    with Delta() as d:
        assert_fused_matches(matmul_relu, *big, rtol=1e-5, atol=1e-5)
    assert d.compiles == 0 and d.launches == 1


def test_one_thread_runs_the_gemm_kernel_serially_and_compiles_nothing_new():
    x, w, b = randn(64, 96), randn(80, 96, seed=1), randn(80, seed=2)
    fused = runba.fuse(linear_relu)
    want = linear_relu(x, w, b).numpy()
    with runba.no_grad():
        np.testing.assert_allclose(fused(x, w, b).numpy(), want, rtol=1e-5, atol=1e-5)
        threads = runba.get_num_threads()
        runba.set_num_threads(1)
        try:
            with Delta() as d:
                got = fused(x, w, b).numpy()
        finally:
            runba.set_num_threads(threads)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert d.compiles == 0 and d.launches == 1


def test_a_smaller_last_batch_and_a_batch_below_min_work_compile_nothing_new():
    w, b = randn(50, 96, seed=1), randn(50, seed=2)
    fused = runba.fuse(linear_relu)
    with runba.no_grad():
        fused(randn(128, 96), w, b).numpy()
        with Delta() as d:
            # 2 x 50 x 96 is below MIN_WORK: the same kernel, its serial branch
            for n in (100, 37, 3, 2):
                got = fused(x := randn(n, 96, seed=n), w, b).numpy()
                np.testing.assert_allclose(got, linear_relu(x, w, b).numpy(), rtol=1e-5, atol=1e-5)
    assert d.compiles == 0 and d.plan_misses == 0


def test_gradients_through_a_lazy_matmul_match_eager():
    x = randn(64, 96)
    w = randn(96, 80, seed=1).requires_grad_()
    b = randn(80, seed=2).requires_grad_()
    fn = lambda x, w, b: (F.relu(x @ w + b) ** 2).sum()  # noqa: E731
    fn(x, w, b).backward()
    gw, gb = w.grad.numpy().copy(), b.grad.numpy().copy()
    w.grad = b.grad = None
    runba.fuse(fn)(x, w, b).backward()
    np.testing.assert_allclose(w.grad.numpy(), gw, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(b.grad.numpy(), gb, rtol=1e-4, atol=1e-4)


def test_an_in_place_write_to_the_weight_after_recording_is_not_seen():
    x, w = randn(96, 60), randn(60, 70, seed=1)
    want = matmul_relu(x, w).numpy().copy()
    out = runba.fuse(matmul_relu)(x, w)
    assert out._lazy is not None
    w.add_(1.0)  # realizes the pending graph first, as eager would have read w by now
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-5, atol=1e-5)
    assert explain_counts(runba.jit.explain(matmul_relu, x, w))[2] == 0


def _buffers(monkeypatch):
    """The shapes of the buffers the runtime allocates from now on."""
    from runba.jit import runtime

    shapes = []
    new = runtime._new_buffer

    def counted(shape, npdt):
        shapes.append(tuple(shape))
        return new(shape, npdt)

    monkeypatch.setattr(runtime, "_new_buffer", counted)
    return shapes


@pytest.mark.parametrize(
    "fn,shapes",
    [
        (linear_relu, [(128, 96), (80, 96), (80,)]),  # row blocks
        (matmul_relu, [(96, 60), (60, 70)]),  # flat
        (linear_relu, [(40, 96), (150, 96), (150,)]),  # column blocks
    ],
)
def test_a_pointwise_epilogue_writes_its_output_over_the_scratch_product(fn, shapes, monkeypatch):
    args = [randn(*s, seed=k) for k, s in enumerate(shapes)]
    want = fn(*args).numpy()
    fused = runba.fuse(fn)
    fused(*args).numpy()  # plan and kernel made
    allocated = _buffers(monkeypatch)
    got = fused(*args).numpy()
    assert allocated == [want.shape]  # C only: the epilogue's output is C's storage
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _relu_and_sum(x, w):
    c = x @ w
    return c.relu(), c.sum()  # C read by the epilogue and by a later reduction


@pytest.mark.parametrize(
    "fn",
    [
        _relu_and_sum,
        lambda x, w: _kept(x @ w),  # C shown by a live tensor
        lambda x, w: (x @ w).softmax(-1),  # a row kernel with reductions
        lambda x, w: (x @ w) > 0,  # an output of another dtype
    ],
    ids=["read later", "kept", "reductions", "bool output"],
)
def test_the_product_keeps_its_own_buffer_where_it_is_not_scratch(fn, monkeypatch):
    x, w = randn(96, 60), randn(60, 70, seed=1)
    assert_fused_matches(fn, x, w, rtol=1e-5, atol=1e-5)  # plan and kernels made
    allocated = _buffers(monkeypatch)
    assert_fused_matches(fn, x, w, rtol=1e-5, atol=1e-5)
    assert allocated.count((96, 70)) >= 2
