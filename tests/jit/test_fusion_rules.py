"""One kernel-count test per fusion rule (DESIGN §4 Fusion rules), and fused == eager for each.

Counts come from ``runba.jit.explain`` (the report's header and kernel lines) and from
``cache_info().launches``. The functions are module-level so the explain call and the fused
call share one compiled kernel; the large-size variants reuse the small tests' kernels
(sizes are run-time loop bounds) and run their ``prange`` branches.
"""

import re

import numpy as np
import pytest
from jitutil import (
    Delta,
    assert_fused_matches,
    cut_lines,
    explain_counts,
    kernel_lines,
    needs_gemm,
    numpy_lines,
    randn,
    values,
)

import runba
import runba.nn.functional as F
from runba.jit import schedule
from runba.jit.codegen import COLUMN_MIN_ROWS
from runba.kernels.loader import PARALLEL_THRESHOLD


def chain(x, b):
    return (x * 2 + b).tanh()


def dot(x, y):
    return (x * y).sum()


def softmax(x):
    return x.softmax(-1)


def log_softmax(x):
    return F.log_softmax(x, -1)


def layer_norm(x, w, b):
    return F.layer_norm(x, (x.shape[-1],), w, b)


def log_softmax_by_logsumexp(x):
    return x - x.logsumexp(-1, keepdim=True)


# ---------------------------------------------------------------------------- pointwise
def test_elementwise_chain_with_broadcasting_is_one_kernel():
    x, b = randn(4, 8), randn(8, seed=1)
    report = runba.jit.explain(chain, x, b)
    assert explain_counts(report) == (1, 1, 0), report
    assert kernel_lines(report) == ["pointwise kernel E_mul_add_tanh_f32 over [4, 8]"], report
    d = assert_fused_matches(chain, x, b)
    assert (d.launches, d.graphs) == (1, 1)


def test_elementwise_chain_large_runs_the_parallel_branch_without_compiling():
    x, b = randn(600, 300), randn(300, seed=1)
    assert x.numel() >= PARALLEL_THRESHOLD
    chain_small = assert_fused_matches(chain, randn(4, 8), randn(8, seed=1))
    d = assert_fused_matches(chain, x, b)
    assert d.launches == 1 and d.compiles == 0, "a new size compiled a second variant"
    assert chain_small.launches == 1


def test_broadcast_both_ways_and_rank3():
    x, y = randn(3, 1, 5), randn(4, 1, seed=1)
    d = assert_fused_matches(lambda x, y: (x * y - 1).abs(), x, y)
    assert d.launches == 1


def test_transposed_input_is_read_through_its_strides():
    x = randn(8, 4).T  # non-contiguous
    assert not x.is_contiguous()
    d = assert_fused_matches(chain, x, randn(8, seed=1))
    assert d.launches == 1


# ---------------------------------------------------------------------------- reductions
def test_elementwise_into_full_reduction_is_one_kernel():
    x, y = randn(4, 8), randn(4, 8, seed=1)
    report = runba.jit.explain(dot, x, y)
    assert explain_counts(report) == (1, 1, 0), report
    assert kernel_lines(report) == ["row kernel R_mul_sum_f32 over [4, 8]"], report
    d = assert_fused_matches(dot, x, y, rtol=1e-5, atol=1e-5)
    assert d.launches == 1


def test_full_reduction_large_is_chunked_in_parallel():
    # no rows: per-chunk partials in parallel, combined serially (same kernel as above)
    x, y = randn(700, 300), randn(700, 300, seed=1)
    assert x.numel() >= PARALLEL_THRESHOLD
    assert_fused_matches(dot, randn(4, 8), randn(4, 8, seed=1), atol=1e-5)
    got, want = None, float(np.sum(x.numpy().astype(np.float64) * y.numpy()))
    with Delta() as d:
        got = runba.fuse(dot)(x, y).item()
    assert d.compiles == 0 and d.launches == 1
    assert got == pytest.approx(want, rel=1e-4, abs=1e-2)


@pytest.mark.parametrize(
    "fn,args,name",
    [
        (softmax, (randn(4, 8),), "R_amax_sub_exp_sum_div_f32"),
        (log_softmax, (randn(4, 8),), "R_amax_sub_exp_sum_log_f32"),
        (layer_norm, (randn(4, 8), randn(8, seed=1), randn(8, seed=2)), "R_sum_div_sub_mul_"),
        (log_softmax_by_logsumexp, (randn(4, 8),), "R_amax_"),
    ],
    ids=["softmax", "log_softmax", "layer_norm", "logsumexp"],
)
def test_reduce_then_broadcast_back_is_one_row_kernel(fn, args, name):
    report = runba.jit.explain(fn, *args)
    assert explain_counts(report) == (1, 1, 0), report
    (line,) = kernel_lines(report)
    assert line.startswith("row kernel " + name), report
    assert line.endswith("over [4, 8]"), report
    assert not numpy_lines(report), report
    d = assert_fused_matches(fn, *args, rtol=1e-5, atol=1e-6)
    assert d.launches == 1


@pytest.mark.parametrize("shape", [(500, 300), (300, 500)])
def test_row_kernels_large_run_in_parallel(shape):
    x = randn(*shape)
    assert_fused_matches(softmax, randn(4, 8))
    d = assert_fused_matches(softmax, x, rtol=1e-5, atol=1e-7)
    assert d.compiles == 0 and d.launches == 1
    d = assert_fused_matches(softmax, randn(*shape[::-1]).T, rtol=1e-5, atol=1e-7)
    assert d.launches == 1  # a transposed input: rows are strided


def test_row_kernel_with_several_outer_axes():
    # the broadcast input lacks axis 1, so the outer axes cannot merge: rows are divmod'ed
    x, b = randn(3, 4, 5), randn(3, 1, 5, seed=1)

    def fn(x, b):
        h = x + b
        return h * h.amax(-1, keepdim=True)

    assert explain_counts(runba.jit.explain(fn, x, b)) == (1, 1, 0)
    assert_fused_matches(fn, x, b)
    d = assert_fused_matches(fn, randn(60, 50, 50), randn(60, 1, 50, seed=1))
    assert d.compiles == 0


def test_cross_entropy_matches_eager():
    x, t = randn(4, 8), runba.tensor([1, 7, 3, 0])
    report = runba.jit.explain(F.cross_entropy, x, t)
    assert any(ln.startswith("row kernel R_amax_sub_exp_sum_log") for ln in kernel_lines(report))
    assert_fused_matches(F.cross_entropy, x, t, lazy=False, rtol=1e-5, atol=1e-6)


def test_row_values_do_not_broadcast_along_the_wrong_axis():
    # x.sum(-1) has shape [4]: added to a [4, 4] tensor it broadcasts along rows, not
    # columns - it must not join the row kernel as a per-row value
    x = randn(4, 4)
    fn = lambda x: x + x.sum(-1)  # noqa: E731
    report = runba.jit.explain(fn, x)
    assert explain_counts(report)[1] == 2, report
    assert_fused_matches(fn, x, atol=1e-5)


def test_two_trailing_axes_reduce_in_one_row_kernel():
    x = randn(3, 4, 5)
    fn = lambda x: (x * 2).sum((-2, -1), keepdim=True) * x  # noqa: E731
    report = runba.jit.explain(fn, x)
    assert explain_counts(report) == (1, 1, 0), report
    assert_fused_matches(fn, x, atol=1e-5)


def test_reduction_over_leading_axes_is_one_column_kernel():
    """Producers, the leading-axis reduction and its row-role consumers (mean's division)
    are one kernel: per-chunk partials, then a combine."""
    x, b = randn(6, 4, 5), randn(5, seed=1)
    for fn in (
        lambda x, b: (x * 2 + b).relu().sum(0) / 6,
        lambda x, b: (x * b).mean((0, 1), keepdim=True),
        lambda x, b: (x - b).exp().amax(0),
    ):
        report = runba.jit.explain(fn, x, b)
        assert explain_counts(report) == (1, 1, 0), report
        assert_fused_matches(fn, x, b, atol=1e-5)


@pytest.mark.parametrize("rows", [3, PARALLEL_THRESHOLD // 4 + 7])
def test_column_kernel_serial_and_parallel_branches(rows):
    """Both size branches; the parallel one splits rows into chunks whose partials are
    combined in chunk order. Also a FULL output written on the way and a transposed input."""
    x = randn(4, rows).T
    fn = lambda x: ((x * 3).sum(0), (x * 3).tanh(), x.amin(0))  # noqa: E731
    assert_fused_matches(fn, x, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize(
    "shape, dims",
    [((2, PARALLEL_THRESHOLD + 3), (0,)), ((PARALLEL_THRESHOLD // 64 + 1, 3, 4, 16), (1,))],
)
def test_column_kernel_with_few_rows_splits_the_kept_positions(shape, dims):
    """In the parallel branch, with fewer than COLUMN_MIN_ROWS rows per chunk, a column
    kernel splits the kept positions among the chunks instead of the rows (no partials):
    one kept axis (its span per chunk), and several (per index of the first). Reductions,
    their row-role consumers and FULL outputs written on the way all match eager."""
    assert shape[dims[0]] < 4 * COLUMN_MIN_ROWS  # chunks >= 4 (4 per thread)
    x = randn(*shape)
    for fn in (
        lambda x: (x * 2 + 1).sum(dims).relu() / 3,
        lambda x: ((x - 1).amax(dims, keepdim=True) * 2, (x * 3).tanh()),
        lambda x: x.exp().mean(dims),
    ):
        report = runba.jit.explain(fn, x)
        assert explain_counts(report) == (1, 1, 0), report
        assert kernel_lines(report)[0].startswith("column kernel"), report
        assert_fused_matches(fn, x, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n", [8, PARALLEL_THRESHOLD // 12 + 5])
def test_interior_reduction_keeping_the_last_axis_is_one_permuted_column_kernel(n):
    """Reductions over interior axes that keep the last one - a mean over the sequence axis
    of (B, T, D) - are a column kernel over the shape permuted so the reduced axes lead;
    producers and row-role consumers join it. Both size branches (the parallel one also
    combines its partials in parallel), keepdim, two reduced axes, a transposed input."""
    x = randn(4, n, 3)
    fn = lambda x: (x * 2).mean(1).relu() + 1  # noqa: E731
    report = runba.jit.explain(fn, x)
    assert explain_counts(report) == (1, 1, 0), report
    (line,) = kernel_lines(report)
    assert line.startswith("column kernel") and line.endswith("(axes in order [1, 0, 2])"), report
    assert not numpy_lines(report), report
    assert_fused_matches(fn, x, atol=1e-5)
    x4 = randn(2, n, 3, 5, seed=1)
    for fn in (
        lambda x: (x - 1).amax((1, 2), keepdim=True) * 2,
        lambda x: x.sum((0, 2)),
        lambda x: x.exp().sum(1, keepdim=True),
    ):
        report = runba.jit.explain(fn, x4)
        assert explain_counts(report) == (1, 1, 0), report
        assert_fused_matches(fn, x4, rtol=1e-4, atol=1e-4)
    xt = randn(3, n, 4, seed=2).permute(2, 1, 0)  # a transposed input, (4, n, 3)
    assert_fused_matches(lambda x: (x * x).sum(1), xt, rtol=1e-4, atol=1e-4)


def _batch_norm_train(x, w, b):
    """BatchNorm2d's training arithmetic over NCHW: statistics over (0, 2, 3)."""
    mean = x.mean((0, 2, 3), keepdim=True)
    var = ((x - mean) ** 2).mean((0, 2, 3), keepdim=True)
    return (x - mean) / (var + 1e-5).sqrt() * w + b, mean.reshape(-1)


@pytest.mark.parametrize("n", [2, PARALLEL_THRESHOLD // 48 + 5])
def test_interior_reduction_with_the_last_axis_is_one_permuted_row_kernel(n):
    """Reductions over (0, 2, 3) of NCHW - BatchNorm's statistics, their producers and the
    normalisation reading them back - are one row kernel over the shape permuted to
    (C, N, H, W); both size branches; a transposed input and a keepdim=False output too."""
    x = randn(n, 3, 4, 4)
    w, b = randn(1, 3, 1, 1, seed=1), randn(1, 3, 1, 1, seed=2)
    report = runba.jit.explain(_batch_norm_train, x, w, b)
    assert explain_counts(report) == (1, 1, 0), report
    assert kernel_lines(report)[0].endswith(f"over [{n}, 3, 4, 4] (axes in order [1, 0, 2, 3])")
    # the only numpy step is the mean's reshape: a view of the kernel's output
    assert [ln.split(":")[0] for ln in numpy_lines(report)] == ["numpy reshape#12 -> [3]"]
    assert_fused_matches(_batch_norm_train, x, w, b, rtol=1e-4, atol=1e-4)
    xt = randn(n, 4, 4, 3, seed=3).permute(0, 3, 1, 2)  # NCHW values, NHWC memory
    assert_fused_matches(_batch_norm_train, xt, w, b, rtol=1e-4, atol=1e-4)

    def others(x):
        h = (x * 2).exp()
        return h.amax((0, 3)), h.sum((1, 3), keepdim=True) - x.amin((1, 3), keepdim=True)

    report = runba.jit.explain(others, x)
    assert not numpy_lines(report), report
    assert_fused_matches(others, x, rtol=1e-4, atol=1e-4)


def test_integer_reduction_is_a_cut():
    x = runba.tensor(np.arange(32).reshape(4, 8))
    fn = lambda x: (x * 2).sum(-1)  # noqa: E731
    report = runba.jit.explain(fn, x)
    assert any("integer reduction" in ln for ln in cut_lines(report)), report
    assert values(runba.fuse(fn)(x))[0].tolist() == (x * 2).sum(-1).tolist()


# ---------------------------------------------------------------------------- cuts
@needs_gemm
def test_matmul_is_a_gemm_step_and_bias_relu_one_epilogue_kernel():
    x, w, b = randn(4, 8), randn(8, 5, seed=1), randn(5, seed=2)
    fn = lambda x, w, b: F.relu(x @ w + b)  # noqa: E731
    report = runba.jit.explain(fn, x, w, b)
    assert explain_counts(report) == (1, 1, 0), report
    assert "  gemm matmul#0 -> [4, 5]" in report, report
    assert kernel_lines(report) == ["pointwise kernel E_add_relu_f32 over [4, 5]"], report
    d = assert_fused_matches(fn, x, w, b)
    assert d.launches == 1


def test_batched_and_integer_matmuls_stay_cuts():
    fn = lambda a, b: (a @ b).relu()  # noqa: E731
    for a, b in ((randn(2, 4, 8), randn(2, 8, 5)), (runba.ones(4, 8, dtype=runba.int64),) * 2):
        b = b if b.ndim == 3 else b.T
        report = runba.jit.explain(fn, a, b)
        (cut,) = cut_lines(report)
        assert cut.startswith("eager matmul: "), report
        assert_fused_matches(fn, a, b)


def test_view_of_a_computed_value_is_a_cut():
    """A view of a value computed from other lazy values: its producer is written, then read
    back through the view by the next kernel."""
    x = randn(4, 8)
    fn = lambda x: (x * 2).exp().reshape(8, 4) + 1  # noqa: E731
    report = runba.jit.explain(fn, x)
    assert explain_counts(report) == (1, 2, 0), report
    (line,) = numpy_lines(report)
    assert line.startswith("numpy reshape#2 -> [8, 4]: view"), report
    assert "#1 (read later)" in report, report
    d = assert_fused_matches(fn, x)
    assert d.launches == 2


@pytest.mark.parametrize(
    "view",
    [
        lambda y: y.reshape(2, 2, 8),
        lambda y: y.permute(1, 0),
        lambda y: y[1:, ::2],
        lambda y: y.unsqueeze(0).expand(3, 4, 8),
    ],
    ids=["reshape", "permute", "slice", "expand"],
)
def test_view_of_one_op_over_inputs_folds_into_its_strides(view):
    """view(op(inputs)) -> op(view(inputs)): numpy views of the inputs, one kernel, no
    numpy step (conv's bias add + permute + activation is one epilogue kernel this way)."""
    x, b = randn(4, 8), randn(8, seed=1)
    fn = lambda x, b: view(x * b).relu()  # noqa: E731
    report = runba.jit.explain(fn, x, b)
    assert explain_counts(report) == (1, 1, 0), report
    assert not numpy_lines(report), report
    assert_fused_matches(fn, x, b)


@pytest.mark.parametrize("method", ["reshape", "view"])
def test_view_that_would_copy_a_broadcast_input_is_not_folded(method):
    # b broadcast to [4, 8] cannot be reshaped to [8, 4] without a copy (and view() of it
    # raises): no fold, a numpy step on the computed value instead, as in eager mode
    x, b = randn(4, 8), randn(8, seed=1)
    fn = lambda x, b: getattr(x * b, method)(8, 4).relu()  # noqa: E731
    report = runba.jit.explain(fn, x, b)
    assert explain_counts(report) == (1, 2, 0), report
    assert_fused_matches(fn, x, b)


def test_folded_view_input_written_later_keeps_the_old_value():
    x, b = randn(4, 8), randn(8, seed=1)
    want = (x * b).permute(1, 0).relu().numpy()
    y = runba.fuse(lambda x, b: (x * b).permute(1, 0).relu())(x, b)
    x.add_(100.0)  # an eager in-place write: the pending graph must run first
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-6)


def test_views_of_inputs_are_free():
    # a view of a concrete tensor runs eagerly and is read through its strides
    x = randn(4, 8)
    fn = lambda x: (x.reshape(8, 4).T * 2).exp()  # noqa: E731
    report = runba.jit.explain(fn, x)
    assert explain_counts(report) == (1, 1, 0), report
    assert not numpy_lines(report)
    assert_fused_matches(fn, x)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: (x * 2).T + 1,
        lambda x: (x * 2)[:, ::2].exp().sum(-1),
        lambda x: (x * 2).sum(-1, keepdim=True).expand(8, 8) * x,
        lambda x: x - (x * 2).sum(-1).unsqueeze(-1),
        lambda x: (lambda a: a + a.T)(x * 2),
    ],
    ids=["transpose", "slice", "expand", "unsqueeze", "self-transpose"],
)
def test_views_of_lazy_values_match_eager(fn):
    assert_fused_matches(fn, randn(8, 8), atol=1e-5)


# ---------------------------------------------------------------------------- limits
def test_group_size_limit_splits_long_chains():
    def long_chain(x):
        for _ in range(schedule.MAX_GROUP_NODES // 2 + 4):  # > MAX_GROUP_NODES ops
            x = x * 1.01 + 0.01
        return x

    x = randn(4, 8)
    report = runba.jit.explain(long_chain, x)
    assert explain_counts(report)[1] >= 2, report
    assert f"group size limit ({schedule.MAX_GROUP_NODES} nodes)" in report
    d = assert_fused_matches(long_chain, x, rtol=1e-5, atol=1e-5)
    assert d.launches >= 2


def test_array_limit_splits_wide_groups():
    xs = [randn(4, 8, seed=k) for k in range(schedule.MAX_GROUP_ARRAYS + 4)]

    def wide(*xs):
        out = xs[0] * 2
        for x in xs[1:]:
            out = out + x
        return out

    report = runba.jit.explain(wide, *xs)
    assert explain_counts(report)[1] >= 2, report
    assert_fused_matches(wide, *xs, atol=1e-5)


# ---------------------------------------------------------------------------- outputs
def test_intermediates_kept_by_the_user_are_written_once():
    x = randn(4, 8)
    fn = lambda x: (x * 2, (x * 2).exp().sum(-1))  # noqa: E731
    report = runba.jit.explain(fn, x)
    assert explain_counts(report)[1] <= 2, report
    assert_fused_matches(fn, x, atol=1e-5)


def test_dead_values_are_not_computed():
    x = randn(4, 8)

    def fn(x):
        (x * 3).exp()  # never used: no kernel writes it
        return x + 1

    report = runba.jit.explain(fn, x)
    assert explain_counts(report)[1] == 1, report
    assert "E_add_f32" in report and "E_mul_exp" not in report, report
    assert_fused_matches(fn, x)


def test_independent_nodes_over_one_shape_share_a_kernel():
    """Nodes that read only inputs join the kernel already running over their shape:
    cross_entropy's target range check ``(t < 0) | (t >= n)`` is one kernel, not two."""
    t = runba.tensor([0, 3, -1, 9])

    def fn(t):
        return (t < 0) | (t >= 5)

    report = runba.jit.explain(fn, t)
    assert explain_counts(report)[1] == 1, report
    assert "E_lt_ge_logical_or_b8" in report, report
    assert_fused_matches(fn, t)


@pytest.mark.parametrize("n", [1500, PARALLEL_THRESHOLD + 3])
def test_long_transcendental_chain_runs_in_tiled_stages(n, monkeypatch, capsys):
    """Three or more transcendentals in a flat pointwise kernel: one loop per transcendental
    over L1 tiles (values in tile scratch), then the output loop; serial and parallel."""
    x = randn(n, seed=8)

    def fn(x):
        y = (x * 1.01 + 0.1).tanh() * 0.9
        return y.exp().sigmoid() - 0.05, y

    runba.jit.clear_cache()
    monkeypatch.setenv("RUNBA_DEBUG", "4")
    d = assert_fused_matches(fn, x, rtol=2e-6, atol=2e-6)
    src = capsys.readouterr().err
    assert d.launches == 1
    assert src.count("for k0 in range(te - tb):") == 4  # 3 stages + outputs, serial branch
    assert src.count("for k0_ in range(te_ - tb_):") == 4
    # tile loops run from 0 and index with unsigned offsets (no wraparound select)
    assert src.count("i0 = np.uintp(tb + k0)") == 4


@pytest.mark.parametrize("op", ["any", "all"])
@pytest.mark.parametrize("dim", [None, 0, 1])
def test_any_all_fuse_with_their_producer(op, dim):
    """``(x > c).any(dim)`` is one kernel (row, column or flat) with a bool result equal to
    numpy's; NaN counts as true, as in numpy, and integer inputs fuse too."""
    base = randn(40, 300, seed=11).numpy()
    base[3, 7] = np.nan
    x = runba.from_numpy(base)
    xi = runba.from_numpy((base > 1.0).astype(np.int64))

    def fn(x, xi):
        test = getattr(x > 0.8, op)
        nan_or_zero = getattr(x * (x > 2.5), op)  # mostly zeros, one NaN
        ints = getattr(xi, op)
        if dim is None:
            return test(), nan_or_zero(), ints()
        return test(dim), nan_or_zero(dim, keepdim=True), ints(dim)

    assert_fused_matches(fn, x, xi)
    got = values(runba.fuse(fn)(x, xi))
    with np.errstate(invalid="ignore"):
        parts = (base > 0.8, base * (base > 2.5), (base > 1.0).astype(np.int64))
    for g, p, kd in zip(got, parts, (False, True, False)):
        want = getattr(np, op)(p, axis=dim, keepdims=kd and dim is not None)
        assert g.dtype == np.bool_
        np.testing.assert_array_equal(g, want)
    report = runba.jit.explain(runba.fuse(fn), x, xi)
    assert explain_counts(report)[2] == 0 and not numpy_lines(report), report


@pytest.mark.parametrize("dim", [None, 0, 1])
def test_float_max_min_fuse_and_propagate_nan_like_numpy(dim):
    """amax/amin reductions (row, column, flat kernels) and maximum/minimum run as
    mathlib's llvm.maximum/minimum: NaN in a row or column gives NaN there, +-inf are
    ordinary values, float64 too; every one is fused (no cuts)."""
    base = randn(40, 300, seed=12).numpy()
    base[3, 7] = np.nan
    base[5, 9] = np.inf
    base[6, 11] = -np.inf
    x = runba.from_numpy(base)
    x64 = runba.from_numpy(base[:, ::-1].astype(np.float64))

    def fn(x, x64):
        h = x * 2.0
        if dim is None:
            return h.amax(), h.amin(), x64.amax(), runba.maximum(h, 0.5).amin()
        return (
            h.amax(dim),
            h.amin(dim, keepdim=True),
            x64.amax(dim),
            runba.minimum(runba.maximum(h, -0.5), 0.5),
        )

    assert_fused_matches(fn, x, x64)
    got = values(runba.fuse(fn)(x, x64))
    h, h64 = base * np.float32(2.0), base[:, ::-1].astype(np.float64)
    if dim is None:
        want = [h.max(), h.min(), h64.max(), np.maximum(h, np.float32(0.5)).min()]
    else:
        clipped = np.minimum(np.maximum(h, np.float32(-0.5)), np.float32(0.5))
        want = [h.max(dim), h.min(dim, keepdims=True), h64.max(dim), clipped]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    report = runba.jit.explain(runba.fuse(fn), x, x64)
    assert explain_counts(report)[2] == 0 and not numpy_lines(report), report


# ---------------------------------------------------------------------------- hash-consing
def test_a_repeated_value_is_computed_once_and_each_tensor_keeps_its_storage():
    """``(x * 2).tanh()`` recorded twice is one mul and one tanh (the repeat is a clone:
    a second store when both are kept); the two results still have separate storage."""
    x = randn(8, 16)

    def fn(x):
        a = (x * 2).tanh()
        b = (x * 2).tanh()
        return a + b, a, b

    report = runba.jit.explain(fn, x)
    (ops,) = [ln.strip() for ln in report.splitlines() if ln.strip().startswith("ops:")]
    assert ops.count("tanh#") == 1 and ops.count("mul#") == 1, report
    assert_fused_matches(fn, x)
    s, a, b = runba.fuse(fn)(x)
    a.add_(1)  # eager: b is a separate tensor
    np.testing.assert_allclose(b.numpy(), np.tanh(x.numpy() * 2), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(a.numpy(), np.tanh(x.numpy() * 2) + 1, rtol=1e-6, atol=1e-6)


def test_values_are_shared_only_when_inputs_are_the_same():
    """Equal scalars of another sign (0.0, -0.0), another type (2 vs 2.0 on ints) and
    different arrays with equal contents are different values; views are never shared."""
    x = randn(4, 5)
    y = runba.tensor(x.numpy().copy())
    i = runba.tensor(np.arange(20).reshape(4, 5))

    def fn(x, y, i):
        return x * 0.0, x * -0.0, x + 1, y + 1, i * 2, i * 2.0, x.T, x.T

    report = runba.jit.explain(fn, x, y, i)
    assert "clone" not in report, report
    got = values(runba.fuse(fn)(x, y, i))
    xn = x.numpy()
    for g, zero in ((got[0], 0.0), (got[1], -0.0)):
        np.testing.assert_array_equal(np.signbit(g), np.signbit(xn * np.float32(zero)))
    assert got[4].dtype == np.int64 and got[5].dtype == np.float32
    assert_fused_matches(fn, x, y, i, lazy=False)


# ---------------------------------------------------------------------------- strided inputs
def test_non_contiguous_arrays_are_indexed_as_flat_buffers_and_match_eager():
    """A transposed, a sliced (step 2) and an expanded (stride 0) input are passed as flat
    buffers with stride arguments (numba's own indexing of a non-contiguous array does not
    vectorise); a negative-stride one keeps numba's indexing. All match eager, serial and
    parallel sizes."""
    from runba.jit import cache

    for rows in (6, PARALLEL_THRESHOLD // 40 + 3):
        base = randn(rows, 80, seed=rows).numpy()
        t = runba.from_numpy(np.ascontiguousarray(base.T).T)  # F-order
        s = runba.from_numpy(randn(rows, 160, seed=1).numpy()[:, ::2])
        e = runba.from_numpy(randn(1, 80, seed=2).numpy()).expand(rows, 80)
        f = runba.from_numpy(randn(rows, 80, seed=3).numpy()[::-1])

        def fn(t, s, e, f):
            h = (t * s + e).tanh() - f
            return h, h.sum(-1)

        assert_fused_matches(fn, t, s, e, f, rtol=1e-5, atol=1e-5)
    srcs = [src for plan in cache.PLANS.values() for _, src, _ in plan.launchers.values()]
    assert any("np.uintp(i" in src and "_s0" in src for src in srcs)


def _affine(x):
    y = (x * 2.0 + 1.0) * 3.0 - 4.0  # one multiply-add: x * 6 + (3 - 4)
    z = 5.0 - (x * 0.5 - 1.0) * 2.0  # s - v: x * -1 + 7
    return y, z, (y.sigmoid() * 0.5 + 0.25) * 4.0  # a chain on a computed value


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scalar_affine_chains_fold_into_one_multiply_add(dtype, monkeypatch, capsys):
    """A chain of multiplies, adds and subtractions by scalars renders as one ``v * A + B``,
    A and B combined from the scalar arguments before the loops: new scalar values need no
    compile and give the chain's values."""
    x = randn(4, 33, dtype=dtype, seed=3)
    runba.jit.clear_cache()
    monkeypatch.setenv("RUNBA_DEBUG", "4")
    d = assert_fused_matches(_affine, x)
    src = capsys.readouterr().err
    assert d.launches == 1
    body = [ln.strip() for ln in src.splitlines() if re.match(r"\s+v\d+ = ", ln)]
    # x * f + f (the first chain; s - v), and the chain on the sigmoid's value
    pattern = r"v\d+ = \(a\d+\[i0\] \* f\d+ \+ f\d+\)"
    assert len([ln for ln in body if re.fullmatch(pattern, ln)]) == 2, body
    assert any(re.fullmatch(r"v\d+ = \(v\d+ \* f\d+ \+ f\d+\)", ln) for ln in body), body
    assert "f0 = " in src  # the prologue
    monkeypatch.delenv("RUNBA_DEBUG")

    def other_scalars(x):
        y = (x * -1.5 + 0.25) * 2.0 - 8.0
        z = 3.0 - (x * 4.0 - 2.0) * -0.5
        return y, z, (y.sigmoid() * 2.0 + 1.0) * -3.0

    d = assert_fused_matches(other_scalars, x)
    assert d.compiles == 0, "new scalar values compiled the affine kernel again"


def test_affine_chain_keeps_a_value_the_user_holds():
    """A step of a chain that is also returned is written, and the rest of the chain reads
    it (it is not folded away)."""

    def fn(x):
        y = x * 2.0 + 1.0
        return y, (y * 3.0 - 4.0) * 0.5

    d = assert_fused_matches(fn, randn(64, seed=4))
    assert d.launches == 1
