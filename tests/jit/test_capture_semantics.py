"""Eager semantics are the contract of ``runba.fuse``: the same values and the same errors.

Regression tests for what the recorder used to get wrong: float16 results inside a fused
function (a KernelError), errors that only eager's numpy loop raised (bool ``-``, integer
``pow`` to a negative power), Python integers outside the compute dtype's range, writes into
storage a pending graph reads (``numpy()`` views, in-place ops from another thread), and a
failed realization that left NaN placeholders behind.

Compile time dominates the suite: the kernels here are jitutil's shared ``double`` on 1-d
float32 tensors; everything else either raises at record time, is a cut (runs eagerly), or
is recorded and dropped unread (dead nodes compile nothing).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from jitutil import Delta, cut_lines, double, randn

import runba
import runba.nn as nn
from runba.ops.registry import REGISTRY

# ---------------------------------------------------------------------------- float16


def _to_half(x):
    return double(x).half()


def test_float16_result_is_a_cut():
    x = randn(3)
    want = _to_half(x).numpy()
    y = runba.fuse(_to_half)(x)
    assert y.dtype is runba.float16
    assert y._lazy is None  # the cast ran eagerly (a cut), after the pending x * 2
    np.testing.assert_array_equal(y.numpy(), want)
    report = runba.jit.explain(_to_half, x)
    assert any("float16 result" in ln for ln in cut_lines(report)), report


def test_float16_chain_inside_fuse_matches_eager():
    def f(x):
        h = x.to(runba.float16) * 3  # a float16 result, then a float16 operand
        return double(h.float())  # back to float32: fuses again

    x = randn(3)
    want = f(x).numpy()
    y = runba.fuse(f)(x)
    assert y._lazy is not None
    np.testing.assert_array_equal(y.numpy(), want)


# ---------------------------------------------------------------------------- errors


def _outcome(fn, *args):
    """('ok', result tensor) or ('err', exception type, message)."""
    try:
        return ("ok", fn(*args))
    except Exception as e:  # noqa: BLE001 - the error itself is compared
        return ("err", type(e), str(e))


def _assert_same_errors(fn, *args):
    """Eager raises <=> the fused call raises the same error *at record time*. A fused
    result that is concrete (a cut) must equal eager's; a lazy one is dropped unread."""
    eager = _outcome(fn, *args)
    fused = _outcome(runba.fuse(fn), *args)
    if eager[0] == "err" or fused[0] == "err":
        assert fused == eager
        return
    e, f = eager[1], fused[1]
    assert f.dtype is e.dtype and f.shape == e.shape
    if f._lazy is None:
        np.testing.assert_array_equal(f.numpy(), e.numpy())


BOOL = runba.tensor([True, False, True])
INT = runba.tensor([3, -2, 0])


@pytest.mark.parametrize(
    "fn",
    [
        lambda b: -b,
        lambda b: b.neg(),
        lambda b: runba.neg(b),
        lambda b: b - b,
        lambda b: b - True,
        lambda b: True - b,
        lambda b: b.sub(b, alpha=1),
        lambda b: b.clone().sub_(b),
        lambda b: b.clone().neg_(),
    ],
    ids=["-b", "b.neg()", "runba.neg", "b-b", "b-True", "True-b", "sub", "sub_", "neg_"],
)
def test_bool_negation_and_subtraction_raise_in_both_modes(fn):
    with pytest.raises(TypeError, match=r"the `-` operator.* bool tensor"):
        fn(BOOL)
    with pytest.raises(TypeError, match=r"the `-` operator.* bool tensor"):
        runba.fuse(fn)(BOOL)
    _assert_same_errors(fn, BOOL)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: x**-1,
        lambda x: x.pow(-2),
        lambda x: runba.pow(x, np.int64(-1)),
        lambda x: x.to(runba.int32) ** -1,
        lambda x: (x > 0) ** -1,  # bool base: computes in int64
        lambda x: x.clone().pow_(-1),
        lambda x: (x * 2) ** -1,  # a lazy base
        lambda x: x ** runba.tensor([1, -1, 2]),  # a tensor exponent: a cut, eager checks
        lambda x: 2 ** runba.tensor([1, -1, 2]),
    ],
    ids=["**-1", "pow", "np.int64", "int32", "bool", "pow_", "lazy-base", "tensor", "rpow"],
)
def test_integer_pow_negative_exponent_raises_in_both_modes(fn):
    with pytest.raises(ValueError, match="Integers to negative integer powers"):
        fn(INT)
    with pytest.raises(ValueError, match="Integers to negative integer powers"):
        runba.fuse(fn)(INT)


def test_integer_pow_tensor_exponent_without_negatives_is_a_cut():
    e = runba.tensor([1, 0, 3])
    y = runba.fuse(lambda x: x**e)(INT)
    assert y._lazy is None  # ran eagerly: no kernel computes what eager would reject
    assert y.tolist() == [3, 1, 0]


@pytest.mark.parametrize(
    "dtype,value",
    [("uint8", -1), ("uint8", 300), ("int32", 2**40), ("int64", 2**70), ("int64", -(2**70))],
)
def test_python_integer_outside_the_compute_range_follows_eager(dtype, value):
    # numpy compares by value (a kernel would get the scalar converted: OverflowError at
    # the read) and rejects arithmetic (OverflowError at the op, in both modes)
    x = runba.tensor([0, 1, 2], dtype=getattr(runba, dtype))
    for fn in (lambda x: x == value, lambda x: x < value, lambda x: value > x):
        _assert_same_errors(fn, x)
        assert runba.fuse(fn)(x)._lazy is None  # a cut: eager computes it
    _assert_same_errors(lambda x: x + value, x)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_python_integer_too_large_for_a_float_raises_at_the_op(dtype):
    # float(2**1100) overflows: eager raises at the op, so fused must too, and must leave
    # the rest of the graph intact
    x = runba.tensor([0.5, 1.0], dtype=getattr(runba, dtype))
    _assert_same_errors(lambda x: x * 2**1100, x)
    _assert_same_errors(lambda x: -(2**1100) + x, x)

    def body(x):
        good = x + 1
        with pytest.raises(OverflowError):
            x * 2**1100
        return good

    assert runba.fuse(body)(x).tolist() == [1.5, 2.0]


# Every elementwise op the JIT lowers, on every dtype and operand form: errors at record time
# must be eager's. Nothing is read, so nothing compiles.
_UNARY = [
    "exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tan", "tanh", "sigmoid", "erf",
    "neg", "abs", "sign", "floor", "ceil", "round", "trunc", "relu", "clone",
    "isnan", "isinf", "logical_not",
]  # fmt: skip
_BINARY = [
    "add", "sub", "mul", "div", "pow", "maximum", "minimum", "remainder", "floor_divide",
    "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor",
]  # fmt: skip
_DTYPES = ["bool", "uint8", "int32", "int64", "float32", "float64"]
_SCALARS = [True, 0, -1, 2, 300, 1.5, -0.5]


def _sample(dtype, seed):
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return runba.tensor(rng.random(4) > 0.5)
    if dtype == "uint8":
        return runba.tensor(rng.integers(0, 4, 4).astype(np.uint8))
    if dtype.startswith("int"):
        return runba.tensor(rng.integers(-3, 4, 4).astype(dtype))
    return runba.tensor(rng.uniform(-2, 2, 4).astype(dtype))


def test_sweep_lists_every_elementwise_op():
    elementwise = {name for name, op in REGISTRY.items() if op.kind == "elementwise"}
    # cast, where (and attr-taking primitives) are covered by test_fused_vs_eager
    missing = elementwise - set(_UNARY) - set(_BINARY) - {"cast", "where", "gelu"}
    assert not missing, f"add {sorted(missing)} to the error sweep"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # log(-1) and friends, eagerly
@pytest.mark.parametrize("dtype", _DTYPES)
def test_record_time_errors_match_eager_for_every_elementwise_op(dtype):
    a, b = _sample(dtype, 0), _sample(dtype, 1)
    with Delta() as d:
        for name in _UNARY:
            fn = getattr(runba, name)
            _assert_same_errors(fn, a)
        for name in _BINARY:
            fn = getattr(runba, name)
            _assert_same_errors(fn, a, b)
            for other in ("int64", "float32", "bool"):
                _assert_same_errors(fn, a, _sample(other, 2))
            for s in _SCALARS:
                _assert_same_errors(lambda t, fn=fn, s=s: fn(t, s), a)
                _assert_same_errors(lambda t, fn=fn, s=s: fn(s, t), a)
        runba.realize()
    assert d.launches == 0  # lazy results were dropped unread: no fused kernel ran


# ---------------------------------------------------------------------------- writes


def test_numpy_write_after_recording_runs_the_graph_first():
    x = randn(3)
    want = np.array(x.numpy()) * 2
    y = runba.fuse(double)(x)
    assert y._lazy is not None
    x.numpy()[0] = 5.0  # a writable view of storage the pending graph reads
    assert y._lazy is None
    np.testing.assert_array_equal(y.numpy(), want)
    assert x.numpy()[0] == 5.0


def test_array_protocol_write_through_a_view_runs_the_graph_first():
    base = randn(4)
    want = np.array(base.numpy()[1:]) * 2
    y = runba.fuse(double)(base[1:])  # the graph reads a view of base's storage
    np.asarray(base)[2] = -7.0
    np.testing.assert_array_equal(y.numpy(), want)


def test_numpy_of_unrelated_tensor_leaves_the_graph_pending():
    x, other = randn(3), randn(3, seed=1)
    y = runba.fuse(double)(x)
    other.numpy()[0] = 1.0
    assert y._lazy is not None  # the graph does not read other's storage
    np.testing.assert_array_equal(y.numpy(), x.numpy() * 2)


@pytest.mark.parametrize(
    "write",
    [
        lambda x: x.add_(1),
        lambda x: x.__setitem__(0, 5.0),
        lambda x: x.detach().zero_(),
        lambda x: x.numpy().__setitem__(0, 5.0),
    ],
    ids=["add_", "setitem", "detach-zero_", "numpy"],
)
def test_write_from_another_thread_runs_the_pending_graph_first(write):
    x = randn(3)
    want = np.array(x.numpy()) * 2
    y = runba.fuse(double)(x)  # pending in this thread's graph
    errors = []

    def other():
        try:
            write(x)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert not errors, errors
    np.testing.assert_array_equal(y.numpy(), want)


def test_inplace_write_outside_fuse_runs_the_graph_first():
    x = randn(3)
    want = np.array(x.numpy()) * 2
    y = runba.fuse(double)(x)
    x.mul_(0)
    x[1] = 3.0
    np.testing.assert_array_equal(y.numpy(), want)


# ---------------------------------------------------------------------------- failures


def test_failed_realization_stays_pending_instead_of_nan(monkeypatch):
    import runba.jit.runtime as rt

    def boom(graph):
        raise KeyboardInterrupt  # say, Ctrl-C during a compile

    x = randn(3)
    y = runba.fuse(double)(x)
    monkeypatch.setattr(rt, "run_graph", boom)
    for read in (lambda: y.numpy(), lambda: y.tolist(), lambda: y * 3, runba.realize):
        with pytest.raises(KeyboardInterrupt):
            read(y) if read is runba.realize else read()
    monkeypatch.undo()
    # the graph is still pending: the next read runs it (no NaN placeholder handed out)
    z = y * 3  # an op on one of its values, outside fuse: runs it, then records z
    np.testing.assert_array_equal(z.numpy(), x.numpy() * 2 * 3)
    np.testing.assert_array_equal(y.numpy(), x.numpy() * 2)


def test_float_to_uint8_cast_wraps_like_eager():
    """numpy and torch convert out-of-range floats to uint8 through int64 (-3.7 -> 253); a
    direct float-to-unsigned conversion in the kernel would saturate to 0."""
    x = runba.tensor([-3.7, 2.2, 300.5, -0.5, 255.9])
    fn = lambda x: (x * 1).to(runba.uint8)  # noqa: E731
    assert runba.fuse(fn)(x).tolist() == fn(x).tolist() == [253, 2, 44, 0, 255]


def test_gradcheck_of_a_fused_function():
    x = runba.randn(3, 4, dtype=runba.float64, requires_grad=True)
    b = runba.randn(4, dtype=runba.float64, requires_grad=True)
    f = runba.fuse(lambda x, b: ((x * b).tanh() + b).exp().sum(-1))
    assert runba.autograd.gradcheck(f, (x, b))


# -- views of lazy values: aliasing, layout and view() errors are eager's


def test_view_of_a_lazy_result_aliases_its_base():
    a, b = randn(3, 4, seed=1), randn(3, 4, seed=2)

    def body(a, b):
        y = a + b
        v = y.t()  # folded into its own kernel output, yet a view of y's value
        v.mul_(0.0)
        w = y[1:].t()
        return y, v, w

    eager = [t.numpy() for t in body(a, b)]
    fused = runba.fuse(body)(a, b)
    for f, e in zip(fused, eager):
        np.testing.assert_array_equal(f.numpy(), e)
    fused[0].add_(1.0)  # after the run too: y, v and w share storage as in eager mode
    np.testing.assert_array_equal(fused[1].numpy(), np.ones((4, 3), np.float32))
    np.testing.assert_array_equal(fused[2].numpy(), np.ones((4, 2), np.float32))

    y = runba.fuse(lambda a, b: a * b)(a, b)
    v = y.t()
    y.zero_()
    np.testing.assert_array_equal(v.numpy(), np.zeros((4, 3), np.float32))


@pytest.mark.parametrize("view", [lambda y: y.t(), lambda y: y[1:], lambda y: y.reshape(-1)])
def test_returning_a_view_of_a_fused_value_computes_it_once(view):
    """A view keeps its base alive, so the value it is folded from is kept and computed
    anyway; the folded copy of it was a second kernel whose output was thrown away."""
    x = randn(6, 8)
    f = runba.fuse(lambda x: view(x + 1.0))
    with Delta() as d:
        got = f(x).numpy()
    assert d.launches == 1
    np.testing.assert_array_equal(got, view(x + 1.0).numpy())


def test_a_folded_view_and_a_plain_node_of_the_same_ops_do_not_share_a_plan():
    """``y.t()`` of a kept y is folded into add(a.t(), b.t()), which is not written (the
    runtime hands out a view of y); ``c + d`` over arrays of the same rank has the same ops.
    Sharing one plan left the plain result with no value (``numpy()`` gave None)."""

    def body(a, b, c, d, transpose):
        y = a + b
        return y, (y.t() if transpose else c + d)

    f = runba.fuse(body)
    args = randn(3, 4, seed=1), randn(3, 4, seed=2), randn(4, 2, seed=3), randn(4, 2, seed=4)
    for transpose in (True, False, True):
        for got, want in zip(f(*args, transpose), body(*args, transpose)):
            np.testing.assert_array_equal(got.numpy(), want.numpy())


def _layouts(x):
    y = x * 2.0  # a kernel output
    r = x.sum(1, keepdim=True) * x  # a row kernel's output
    return [y, y.t(), y[:, 1:], y.unsqueeze(0), r, r.t(), r[1:], y.t().t()]


def test_layout_of_lazy_values_is_eagers_without_running_the_graph():
    x = randn(3, 4, seed=3)
    eager = [t.is_contiguous() for t in _layouts(x)]
    lazy = runba.fuse(_layouts)(x)
    assert [t.is_contiguous() for t in lazy] == eager
    assert all(t._lazy is not None for t in lazy)  # nothing was realized to answer
    y = lazy[0]
    assert y.contiguous() is y  # a contiguous lazy value is its own contiguous()
    assert lazy[1].contiguous() is not lazy[1]


@pytest.mark.parametrize("pick", [1, 5], ids=["folded_view", "view_step"])
def test_view_of_a_strided_lazy_value_raises_at_the_call(pick):
    x = randn(3, 4, seed=4)
    with pytest.raises(RuntimeError, match="view size is not compatible") as eager:
        _layouts(x)[pick].view(12)
    lazy = runba.fuse(_layouts)(x)
    with pytest.raises(RuntimeError, match="view size is not compatible") as fused:
        lazy[pick].view(12)
    assert str(fused.value) == str(eager.value)
    # the graph is intact: its other values still read, and a legal view works
    np.testing.assert_allclose(lazy[0].numpy(), 2 * x.numpy(), rtol=1e-6)
    assert lazy[3].view(12).shape == (12,)


@pytest.mark.parametrize("row_kernel", [False, True])
def test_in_place_write_through_a_lazy_view_reaches_the_gradient(row_kernel):
    def body(w):
        y = w.sum(1, keepdim=True) * w if row_kernel else w * 2.0
        y[0].mul_(3.0)
        return y.sum()

    results = []
    for fn in (body, runba.fuse(body)):
        w = runba.ones(2, 3, requires_grad=True)
        loss = fn(w)
        loss.backward()
        results.append((loss.item(), w.grad.numpy()))
    assert results[1][0] == results[0][0]
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-6)


def test_zero_d_integer_results_under_output_poisoning(monkeypatch):
    """RUNBA_POISON_OUTPUTS fills fresh buffers by bytes; a 0-d int64 buffer cannot be viewed
    as bytes directly (numpy refuses to change a 0-d array's itemsize): it raised for any
    fused 0-d integer result, BatchNorm's num_batches_tracked.add_(1) included."""
    monkeypatch.setenv("RUNBA_POISON_OUTPUTS", "1")
    assert runba.fuse(lambda t: t * 2 + 1)(runba.tensor(3)).item() == 7
    bn = runba.fuse(nn.BatchNorm2d(3)).train()
    bn(runba.randn(4, 3, 2, 2)).detach().numpy()
    assert bn.num_batches_tracked.item() == 1
