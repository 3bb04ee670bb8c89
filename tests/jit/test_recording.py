"""Recording: the recorder's fast path for common elementwise calls records exactly what the
general path records, and the graph's structural key stays readable and bounded.
"""

from __future__ import annotations

import numpy as np
import pytest
from jitutil import assert_fused_matches, needs_gemm, randn

import runba
from runba.jit import capture, graph, runtime


def _mixed(x, y, b, d, i):
    a = (x * 1.5 + 0.25).tanh() - y  # float32 tensors and Python scalars: fast path
    c = 1 - a * b  # scalar first (reflected) and a broadcast bias: fast path
    m = (a > 0.1) & (c <= 2)  # bool results: fast path
    e = d * 2 + d.sum()  # float64: fast path; the reduction: general path
    f = i * 3 + 1  # integer tensors: general path
    g = x * np.float32(2) + x.double()  # a numpy scalar, mixed dtypes: general path
    return a, c, m, e, f, g


def _args():
    return (
        randn(4, 6),
        randn(4, 6, seed=1),
        randn(6, seed=2),
        randn(5, dtype=np.float64, seed=3),
        runba.tensor(np.arange(6).reshape(2, 3)),
    )


def _keys_and_values(fn, args):
    keys = []

    def listen(kind, *info):
        if kind == "plan":
            keys.append(graph.structural_key(info[0].nodes))

    runtime.listeners.append(listen)
    try:
        out = runba.fuse(fn)(*args)
        vals = [t.numpy().copy() for t in out]
    finally:
        runtime.listeners.remove(listen)
    return keys, vals


def test_fast_path_records_what_the_general_path_records(monkeypatch):
    """Both fast paths (``_record_on_lazy`` for a lazy float operand and a scalar,
    ``_record_fast`` for other all-float calls) give the structural keys and values the
    general path gives, and a repeat of a fast-recorded op is found (one tanh below)."""
    args = _args()
    fast = []
    record_fast, on_lazy = capture._record_fast, capture._record_on_lazy

    def counting(op, inputs, attrs):
        out = record_fast(op, inputs, attrs)
        fast.append(out is not None)
        return out

    def counting_lazy(op, inputs):
        out = on_lazy(op, inputs)
        fast.append(out is not capture._GENERAL)
        return out

    monkeypatch.setattr(capture, "_record_fast", counting)
    monkeypatch.setattr(capture, "_record_on_lazy", counting_lazy)
    keys, vals = _keys_and_values(_mixed, args)
    assert any(fast) and not all(fast), fast  # both paths ran
    monkeypatch.setattr(capture, "_record_fast", lambda op, inputs, attrs: None)
    monkeypatch.setattr(capture, "_record_on_lazy", lambda op, inputs: capture._GENERAL)
    general_keys, general_vals = _keys_and_values(_mixed, args)
    assert keys == general_keys
    for v, w in zip(vals, general_vals):
        np.testing.assert_array_equal(v, w)
    assert_fused_matches(_mixed, *args)


def test_a_repeat_of_an_op_recorded_on_a_lazy_operand_is_one_node():
    x = randn(4, 6)

    def fn(x):
        y = x * 2.0
        return y.tanh() + 1.5, y.tanh() + 1.5, (y > 0.5) + 0, (y > 0.5) + 0

    report = runba.jit.explain(fn, x)
    (ops,) = [ln.strip() for ln in report.splitlines() if ln.strip().startswith("ops:")]
    assert ops.count("tanh#") == 1 and ops.count("gt#") == 1, report
    assert_fused_matches(fn, x)


def test_fast_path_with_gradients_matches_eager():
    x0, w0 = randn(3, 5), randn(5, seed=1)

    def fn(x, w):
        return ((x * w + 0.5).sigmoid() * 2 - x).sum()

    grads = []
    for run in (fn, runba.fuse(fn)):
        x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
        run(x, w).backward()
        grads.append((x.grad.numpy(), w.grad.numpy()))
    for g, want in zip(grads[1], grads[0]):
        np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-6)


def test_graph_that_fills_up_mid_function_matches_eager(monkeypatch):
    """A graph at MAX_PENDING_NODES is realized before the next op takes its operands (they
    used to be nodes of the graph just run: an IndexError when the next graph ran)."""
    monkeypatch.setattr(graph, "MAX_PENDING_NODES", 7)

    def chain(x):
        for _ in range(6):
            x = (x * 1.5).tanh()
        return x

    assert_fused_matches(chain, randn(5))


def test_new_plan_reason_names_the_changed_field(monkeypatch, capsys):
    runba.jit.clear_cache()  # the plans below are new; the reason diffs against the last key
    f = runba.fuse(lambda x: x * 3.0)
    f(randn(4)).numpy()
    monkeypatch.setenv("RUNBA_DEBUG", "3")
    f(randn(4, dtype=np.float64)).numpy()
    err = capsys.readouterr().err
    assert "node 0 (mul): dtype changed ('float32' -> 'float64')" in err, err


# -- F.linear inside fuse: one call records the GEMM node and the bias add (Recorder.linear)
_ONE_CALL_LINEAR = capture.Recorder.linear


def _linear_keys_and_values(fn, args, monkeypatch, one_call: bool):
    """Structural keys and values of ``fn`` fused, with Recorder.linear as is (``one_call``)
    or disabled (every F.linear records op by op); also how often it recorded."""
    took = []

    def counting(self, *a):
        out = _ONE_CALL_LINEAR(self, *a) if one_call else None
        took.append(out is not None)
        return out

    monkeypatch.setattr(capture.Recorder, "linear", counting)
    keys, vals = _keys_and_values(fn, args)
    return keys, vals, took


@needs_gemm
def test_linear_records_in_one_call_what_the_ops_record(monkeypatch):
    """F.linear's one-call recording gives the structural keys and values that
    ``input.matmul(weight.t()) + bias`` gives op by op: concrete and lazy inputs, no bias, a
    strided weight, float64."""
    args = (
        randn(6, 7),
        randn(9, 7, seed=1),
        randn(9, seed=2),
        randn(9, 7, dtype=np.float64, seed=3),
        randn(9, dtype=np.float64, seed=4),
        randn(12, 9, seed=5),
    )

    def fn(x, w, b, w64, b64, w2):
        import runba.nn.functional as F

        y = F.linear(x, w, b).relu()
        z = F.linear(y * 2, w2[::3], None)  # lazy input, no bias, a strided weight view
        d = F.linear(x.double() + 0, w64, b64).tanh()  # float64, lazy input
        return y, z, d

    keys, vals, took = _linear_keys_and_values(fn, args, monkeypatch, one_call=True)
    assert took == [True, True, True]
    op_keys, op_vals, _ = _linear_keys_and_values(fn, args, monkeypatch, one_call=False)
    assert keys == op_keys
    for v, w in zip(vals, op_vals):
        np.testing.assert_array_equal(v, w)
    assert_fused_matches(fn, *args, rtol=1e-5, atol=1e-5)


def _linear_fallbacks():
    """(name, fn, args, requires_grad): F.linear calls the one-call recording leaves to the
    op-by-op path."""
    import runba.nn.functional as F

    x, w, b = randn(6, 7), randn(9, 7, seed=1), randn(9, seed=2)
    return [
        ("3-D input", lambda x, w, b: F.linear(x, w, b), (randn(2, 7, 7), w, b), False),
        ("lazy weight", lambda x, w, b: F.linear(x, w * 2, b), (x, w, b), False),
        ("lazy bias", lambda x, w, b: F.linear(x, w, b + 1), (x, w, b), False),
        ("broadcast bias", lambda x, w, b: F.linear(x, w, b[:1]), (x, w, b), False),
        ("empty batch", lambda x, w, b: F.linear(x[:0], w, b), (x, w, b), False),
        ("1-D input", lambda x, w, b: F.linear(x[0], w, b), (x, w, b), False),
        ("a gradient to record", lambda x, w, b: F.linear(x, w, b).relu(), (x, w, b), True),
    ]


@pytest.mark.parametrize("case", range(len(_linear_fallbacks())))
def test_linear_outside_the_one_call_cases_records_op_by_op(case, monkeypatch):
    name, fn, args, rg = _linear_fallbacks()[case]
    took = []

    def counting(self, *a):
        out = _ONE_CALL_LINEAR(self, *a)
        took.append(out is not None)
        return out

    monkeypatch.setattr(capture.Recorder, "linear", counting)
    if not rg:
        assert_fused_matches(fn, *args, rtol=1e-5, atol=1e-5, lazy=False)
    else:
        grads = []
        for run in (fn, runba.fuse(fn)):
            leaves = [a.clone().requires_grad_() for a in args]
            run(*leaves).sum().backward()
            grads.append([a.grad.numpy() for a in leaves])
        for g, want in zip(grads[1], grads[0]):
            np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-5)
    assert took and not any(took), name


@pytest.mark.parametrize(
    "x_shape,w_shape,b_shape,w_dtype",
    [
        ((6, 7), (9, 8), (9,), np.float32),  # inner sizes differ
        ((6, 7), (9, 7), (9,), np.float64),  # dtypes differ
        ((6, 7), (9, 7), (5,), np.float32),  # bias of the wrong size
    ],
)
def test_linear_errors_inside_fuse_are_eagers(x_shape, w_shape, b_shape, w_dtype):
    import runba.nn.functional as F

    args = (randn(*x_shape), randn(*w_shape, dtype=w_dtype, seed=1), randn(*b_shape, seed=2))
    errors = []
    for run in (F.linear, runba.fuse(F.linear)):
        with pytest.raises(Exception) as e:
            run(*args).numpy()
        errors.append((type(e.value), str(e.value)))
    assert errors[1] == errors[0]


def test_linear_on_a_graph_that_fills_up_reads_the_realized_input(monkeypatch):
    """F.linear's input is the last node of a full graph: the one-call recording realizes
    that graph first and must read the input's value, not its placeholder."""
    import runba.nn.functional as F

    monkeypatch.setattr(graph, "MAX_PENDING_NODES", 2)

    def fn(x, w, b):
        for _ in range(3):
            x = (x * 1.5).tanh()
            x = F.linear(x, w, b)
        return x

    assert_fused_matches(fn, randn(5, 6), randn(6, 6, seed=1), randn(6, seed=2), rtol=1e-5)
