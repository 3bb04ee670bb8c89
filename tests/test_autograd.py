"""Autograd: the tape, the engine, grad modes, hooks, custom Functions and gradcheck.

References are written by hand (closed-form derivatives), never by asking runba.
"""

from __future__ import annotations

import math
import threading
import weakref

import numpy as np
import pytest

import runba
from runba.autograd import Function, GradcheckError, gradcheck


def t64(values, requires_grad=True):
    return runba.tensor(values, dtype=runba.float64, requires_grad=requires_grad)


def np_of(t):
    return t.detach().numpy()


# ---------------------------------------------------------------------------- backward
def test_scalar_backward_simple_graph():
    x = t64([1.0, -2.0, 3.0])
    w = t64([0.5, 4.0, -1.0])
    y = (x * w + x.exp()).sum()
    y.backward()
    xv, wv = np.array([1.0, -2.0, 3.0]), np.array([0.5, 4.0, -1.0])
    np.testing.assert_allclose(np_of(x.grad), wv + np.exp(xv), rtol=1e-12)
    np.testing.assert_allclose(np_of(w.grad), xv, rtol=1e-12)


def test_backward_with_gradient_argument():
    x = t64([1.0, 2.0, 3.0])
    y = x * x
    y.backward(runba.tensor([1.0, 0.5, -1.0], dtype=runba.float64))
    np.testing.assert_allclose(np_of(x.grad), [2.0, 2.0, -6.0])


def test_backward_gradient_shape_mismatch_raises():
    x = t64([1.0, 2.0])
    with pytest.raises(RuntimeError, match=r"Mismatch in shape.*\[3\].*\[2\]"):
        (x * 2).backward(runba.ones(3, dtype=runba.float64))


def test_non_scalar_backward_without_gradient_raises():
    x = t64([1.0, 2.0])
    with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar"):
        (x * 2).backward()


def test_backward_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        runba.ones(2).sum().backward()


def test_one_element_non_scalar_backward_is_allowed():
    x = t64([3.0])
    (x * x).backward()
    np.testing.assert_allclose(np_of(x.grad), [6.0])


def test_backward_twice_without_retain_graph_raises():
    x = t64([1.0, 2.0])
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()


def test_retain_graph_allows_second_backward_and_accumulates():
    x = t64([1.0, 2.0])
    y = (x * x * x).sum()
    y.backward(retain_graph=True)
    np.testing.assert_allclose(np_of(x.grad), [3.0, 12.0])
    y.backward()
    np.testing.assert_allclose(np_of(x.grad), [6.0, 24.0])


def test_accumulation_across_backward_calls_and_reset():
    x = t64([1.0, 2.0])
    for k in range(1, 4):
        (x * 5).sum().backward()
        np.testing.assert_allclose(np_of(x.grad), [5.0 * k, 5.0 * k])
    x.grad = None
    (x * 2).sum().backward()
    np.testing.assert_allclose(np_of(x.grad), [2.0, 2.0])


def test_diamond_graph_accumulates_within_one_backward():
    x = t64([2.0])
    a = x * 3
    b = x.exp()
    y = (a * b + a + x).sum()  # d/dx = 3e^x + 3x e^x + 3 + 1
    y.backward()
    np.testing.assert_allclose(np_of(x.grad), [3 * np.exp(2) + 6 * np.exp(2) + 4], rtol=1e-12)


def test_same_tensor_used_twice_in_one_op():
    x = t64([3.0, -1.0])
    (x * x).sum().backward()
    np.testing.assert_allclose(np_of(x.grad), [6.0, -2.0])


def test_grads_of_different_leaves_do_not_alias():
    x = runba.tensor([1.0, 2.0], requires_grad=True)
    w = runba.tensor([3.0, 4.0], requires_grad=True)
    (x + w).sum().backward()
    x.grad[0] = 100.0
    assert w.grad.tolist() == [1.0, 1.0]
    x.grad.add_(1.0)
    assert w.grad.tolist() == [1.0, 1.0]


def test_user_gradient_is_not_adopted_as_grad():
    x = runba.tensor([1.0, 2.0], requires_grad=True)
    g = runba.tensor([1.0, 1.0])
    (x + 0).backward(g)
    g[0] = 7.0
    assert x.grad.tolist() == [1.0, 1.0]
    x.backward(g)  # a leaf as root: the gradient goes straight to AccumulateGrad
    g[1] = 9.0
    assert x.grad.tolist() == [8.0, 2.0]


def test_backward_inputs_argument_limits_accumulation():
    x = t64([1.0, 2.0])
    w = t64([3.0, 4.0])
    (x * w).sum().backward(inputs=[x])
    np.testing.assert_allclose(np_of(x.grad), [3.0, 4.0])
    assert w.grad is None


def test_only_tensors_that_require_grad_get_grads():
    x = t64([1.0, 2.0])
    c = t64([5.0, 6.0], requires_grad=False)
    (x * c).sum().backward()
    assert c.grad is None
    np.testing.assert_allclose(np_of(x.grad), [5.0, 6.0])


def test_long_chain_is_iterative():
    x = runba.tensor([1.0], dtype=runba.float64, requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.backward()
    np.testing.assert_allclose(np_of(x.grad), [1.0001**10_000], rtol=1e-9)


def test_long_chain_of_mixed_ops_autograd_grad():
    x = runba.tensor([0.5], dtype=runba.float64, requires_grad=True)
    y = x
    for _ in range(5_000):
        y = (y + 0.001).tanh()
    (g,) = runba.autograd.grad(y.sum(), x)
    # reference by the chain rule, in plain numpy
    v, d = 0.5, 1.0
    for _ in range(5_000):
        v = np.tanh(v + 0.001)
        d *= 1 - v * v
    np.testing.assert_allclose(np_of(g), [d], rtol=1e-9)


# ---------------------------------------------------------------------------- broadcasting
@pytest.mark.parametrize(
    "sa,sb",
    [((3, 1), (1, 4)), ((2, 3, 4), (4,)), ((2, 1, 4), (3, 1)), ((1,), (5, 2)), ((), (2, 3))],
)
def test_broadcast_gradients_unbroadcast(sa, sb):
    rng = np.random.default_rng(0)
    av, bv = rng.standard_normal(sa), rng.standard_normal(sb)
    a, b = t64(av), t64(bv)
    out_shape = np.broadcast_shapes(sa, sb)
    gv = rng.standard_normal(out_shape)
    (a * b).backward(runba.tensor(gv))
    assert a.grad.shape == sa and b.grad.shape == sb
    # reference: sum the broadcast product's gradient back to each shape
    ga = np.broadcast_to(gv * bv, out_shape)
    gb = np.broadcast_to(gv * av, out_shape)
    np.testing.assert_allclose(np_of(a.grad), _sum_to(ga, sa), rtol=1e-12)
    np.testing.assert_allclose(np_of(b.grad), _sum_to(gb, sb), rtol=1e-12)


def _sum_to(g, shape):
    lead = g.ndim - len(shape)
    g = g.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True).reshape(shape)


def test_expand_gradient_sums():
    x = t64([1.0, 2.0])
    x.expand(3, 2).sum().backward()
    np.testing.assert_allclose(np_of(x.grad), [3.0, 3.0])


# ---------------------------------------------------------------------------- dtypes
def test_grad_dtype_matches_input_dtype_under_promotion():
    x = runba.tensor([1.0, 2.0], dtype=runba.float64, requires_grad=True)
    w = runba.tensor([3.0, 4.0], dtype=runba.float32, requires_grad=True)
    y = x * w
    assert y.dtype is runba.float64
    y.sum().backward()
    assert x.grad.dtype is runba.float64
    assert w.grad.dtype is runba.float32
    np.testing.assert_allclose(w.grad.numpy(), [1.0, 2.0])


def test_float16_leaf_gets_float16_grad():
    h = runba.tensor([1.0, 2.0], dtype=runba.float16, requires_grad=True)
    (h * h).sum().backward()
    assert h.grad.dtype is runba.float16
    assert h.grad.tolist() == [2.0, 4.0]


def test_cast_gradient_is_cast_back():
    x = runba.tensor([1.5, 2.5], requires_grad=True)
    (x.double() * 2).sum().backward()
    assert x.grad.dtype is runba.float32
    assert x.grad.tolist() == [2.0, 2.0]


def test_requires_grad_on_integer_tensor_raises():
    with pytest.raises(RuntimeError, match="floating point"):
        runba.tensor([1, 2], requires_grad=True)
    with pytest.raises(RuntimeError, match="floating point"):
        runba.tensor([1, 2]).requires_grad_()


def test_integer_result_does_not_require_grad():
    x = t64([1.5, -2.5])
    assert not x.argmax().requires_grad
    assert not (x > 0).requires_grad
    assert x.sum().requires_grad


# ---------------------------------------------------------------------------- higher order
def test_second_derivative_of_cube():
    x = t64([1.0, 2.0, -3.0])
    (g,) = runba.autograd.grad((x**3).sum(), x, create_graph=True)
    np.testing.assert_allclose(np_of(g), 3 * np.array([1.0, 4.0, 9.0]))
    assert g.requires_grad and g.grad_fn is not None
    (h,) = runba.autograd.grad(g.sum(), x)
    np.testing.assert_allclose(np_of(h), 6 * np.array([1.0, 2.0, -3.0]))


def test_third_derivative_of_cube():
    x = t64([2.0])
    (g,) = runba.autograd.grad(x**3, x, create_graph=True)
    (h,) = runba.autograd.grad(g, x, create_graph=True)
    (k,) = runba.autograd.grad(h, x)
    np.testing.assert_allclose(np_of(k), [6.0])


def test_second_derivative_of_tanh():
    xv = np.array([-1.3, 0.0, 0.5, 2.0])
    x = t64(xv)
    (g,) = runba.autograd.grad(x.tanh().sum(), x, create_graph=True)
    (h,) = runba.autograd.grad(g.sum(), x)
    t = np.tanh(xv)
    np.testing.assert_allclose(np_of(g), 1 - t * t, rtol=1e-12)
    np.testing.assert_allclose(np_of(h), -2 * t * (1 - t * t), rtol=1e-10, atol=1e-15)


def test_second_derivative_of_sin_times_exp():
    xv = np.array([0.3, -1.2])
    x = t64(xv)
    (g,) = runba.autograd.grad((x.sin() * x.exp()).sum(), x, create_graph=True)
    (h,) = runba.autograd.grad(g.sum(), x)
    np.testing.assert_allclose(np_of(h), 2 * np.cos(xv) * np.exp(xv), rtol=1e-10)


def test_backward_create_graph_gives_differentiable_grad():
    x = t64([1.0, 2.0])
    (x**3).sum().backward(create_graph=True)
    gx = x.grad
    assert gx.grad_fn is not None
    np.testing.assert_allclose(np_of(gx), [3.0, 12.0])
    x.grad = None
    gx.sum().backward()
    np.testing.assert_allclose(np_of(x.grad), [6.0, 12.0])


def test_hessian_vector_product():
    # f = sum(x_i^2 x_j) over i, j  -> H = 2 (diag(sum x) + x 1^T + 1 x^T)
    xv = np.array([0.5, -1.0, 2.0])
    v = np.array([1.0, 2.0, -1.0])
    x = t64(xv)
    f = (x * x).sum() * x.sum()
    (g,) = runba.autograd.grad(f, x, create_graph=True)
    (hv,) = runba.autograd.grad((g * runba.tensor(v)).sum(), x)
    n = len(xv)
    hess = 2 * (np.eye(n) * xv.sum() + np.outer(xv, np.ones(n)) + np.outer(np.ones(n), xv))
    np.testing.assert_allclose(np_of(hv), hess @ v, rtol=1e-12)


# ---------------------------------------------------------------------------- autograd.grad
def test_autograd_grad_does_not_touch_dot_grad():
    x = t64([1.0, 2.0])
    (g,) = runba.autograd.grad((x * x).sum(), x)
    np.testing.assert_allclose(np_of(g), [2.0, 4.0])
    assert x.grad is None
    assert not g.requires_grad


def test_autograd_grad_multiple_inputs_and_outputs():
    x = t64([1.0, 2.0])
    w = t64([3.0, -1.0])
    gx, gw = runba.autograd.grad([(x * w).sum(), x.sum()], [x, w])
    np.testing.assert_allclose(np_of(gx), [4.0, 0.0])
    np.testing.assert_allclose(np_of(gw), [1.0, 2.0])


def test_autograd_grad_allow_unused():
    x = t64([1.0, 2.0])
    w = t64([3.0, 4.0])
    with pytest.raises(RuntimeError, match="allow_unused=True"):
        runba.autograd.grad((x * 2).sum(), [x, w])
    gx, gw = runba.autograd.grad((x * 2).sum(), [x, w], allow_unused=True)
    assert gw is None
    np.testing.assert_allclose(np_of(gx), [2.0, 2.0])
    gx, gw = runba.autograd.grad((x * 2).sum(), [x, w], materialize_grads=True)
    np.testing.assert_allclose(np_of(gw), [0.0, 0.0])


def test_autograd_grad_input_not_requiring_grad_raises():
    x = t64([1.0, 2.0])
    with pytest.raises(RuntimeError, match="does not require grad"):
        runba.autograd.grad((x * 2).sum(), runba.ones(2))


def test_autograd_grad_wrt_non_leaf():
    x = t64([1.0, 2.0])
    y = x * 3
    z = (y * y).sum()
    (gy,) = runba.autograd.grad(z, y)
    np.testing.assert_allclose(np_of(gy), [6.0, 12.0])


def test_autograd_grad_with_grad_outputs():
    x = t64([1.0, 2.0])
    (g,) = runba.autograd.grad(x * x, x, runba.tensor([2.0, -1.0], dtype=runba.float64))
    np.testing.assert_allclose(np_of(g), [4.0, -4.0])


# ---------------------------------------------------------------------------- leaves / retain
def test_leaf_and_non_leaf():
    x = t64([1.0, 2.0])
    y = x * 2
    assert x.is_leaf and x.grad_fn is None
    assert not y.is_leaf and y.grad_fn is not None
    assert runba.ones(2).is_leaf
    assert (runba.ones(2) * 2).is_leaf  # no grad required: a leaf
    y.sum().backward()
    assert y.grad is None  # non-leaf grads are not kept
    np.testing.assert_allclose(np_of(x.grad), [2.0, 2.0])


def test_grad_fn_names_and_next_functions():
    x = t64([1.0, 2.0])
    y = (x * 2).sum()
    assert y.grad_fn.name() == "SumBackward0"
    ((mul_node, _),) = y.grad_fn.next_functions
    assert mul_node.name() == "MulBackward0"
    assert mul_node.next_functions[0][0].name() == "AccumulateGrad"
    assert mul_node.next_functions[0][0].variable is x


def test_requires_grad_false_on_non_leaf_raises():
    y = t64([1.0]) * 2
    with pytest.raises(RuntimeError, match="leaf variables"):
        y.requires_grad_(False)


def test_retain_grad_keeps_non_leaf_grad():
    x = t64([1.0, 2.0])
    y = x * 3
    y.retain_grad()
    assert y.retains_grad
    z = (y * y).sum()
    z.backward()
    np.testing.assert_allclose(np_of(y.grad), [6.0, 12.0])
    np.testing.assert_allclose(np_of(x.grad), [18.0, 36.0])


def test_retain_grad_accumulates_with_retain_graph():
    x = t64([1.0])
    y = x * 2
    y.retain_grad()
    z = (y * y).sum()
    z.backward(retain_graph=True)
    z.backward()
    np.testing.assert_allclose(np_of(y.grad), [8.0])


def test_retain_grad_without_requires_grad_raises():
    with pytest.raises(RuntimeError, match="requires_grad=False"):
        runba.ones(2).retain_grad()


def test_detach_shares_storage_and_stops_grad():
    x = t64([1.0, 2.0])
    d = (x * 2).detach()
    assert not d.requires_grad and d.grad_fn is None
    y = x * 1
    dy = y.detach()
    dy[0] = 5.0  # shares storage with y
    assert y.tolist()[0] == 5.0
    x2 = t64([1.0, 2.0])
    (x2 * d).sum().backward()
    np.testing.assert_allclose(np_of(x2.grad), [2.0, 4.0])


# ---------------------------------------------------------------------------- hooks
def test_leaf_hook_modifies_grad_and_remove():
    x = t64([1.0, 2.0])
    seen = []

    def hook(g):
        seen.append(np_of(g).copy())
        return g * 10

    h = x.register_hook(hook)
    (x * x).sum().backward()
    np.testing.assert_allclose(np_of(x.grad), [20.0, 40.0])
    np.testing.assert_allclose(seen[0], [2.0, 4.0])
    h.remove()
    x.grad = None
    (x * x).sum().backward()
    np.testing.assert_allclose(np_of(x.grad), [2.0, 4.0])
    assert len(seen) == 1


def test_non_leaf_hook_modifies_upstream_gradient():
    x = t64([1.0, 2.0])
    y = x * 3
    y.register_hook(lambda g: g * 2)
    (y * y).sum().backward()  # dz/dy = 2y = [6, 12]; hook doubles; dy/dx = 3
    np.testing.assert_allclose(np_of(x.grad), [36.0, 72.0])


def test_non_leaf_hook_returning_none_observes_only():
    x = t64([1.0, 2.0])
    y = x * 3
    seen = []
    y.register_hook(lambda g: seen.append(np_of(g).copy()))
    y.sum().backward()
    np.testing.assert_allclose(seen[0], [1.0, 1.0])
    np.testing.assert_allclose(np_of(x.grad), [3.0, 3.0])


def test_non_leaf_hook_remove_and_multiple_hooks_in_order():
    x = t64([1.0])
    y = x * 1
    calls = []
    h1 = y.register_hook(lambda g: calls.append("a") or g + 1)
    y.register_hook(lambda g: calls.append("b") or g * 10)
    y.sum().backward(retain_graph=True)
    assert calls == ["a", "b"]
    np.testing.assert_allclose(np_of(x.grad), [20.0])
    h1.remove()
    x.grad = None
    y.sum().backward()
    np.testing.assert_allclose(np_of(x.grad), [10.0])


def test_hook_with_retain_grad_sees_hooked_value():
    x = t64([1.0, 2.0])
    y = x * 3
    y.register_hook(lambda g: g * 2)
    y.retain_grad()
    (y * y).sum().backward()
    np.testing.assert_allclose(np_of(y.grad), [12.0, 24.0])


def test_gradient_seen_by_a_hook_is_not_mutated_by_later_accumulation():
    x = t64([1.0, 1.0])
    seen = []
    x.register_hook(lambda g: seen.append(g))  # keeps the tensor, no copy
    (x * 3).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(np_of(seen[0]), [3.0, 3.0])
    np.testing.assert_allclose(np_of(x.grad), [6.0, 6.0])
    y_seen = []
    w = t64([1.0, 1.0])
    y = w + 0  # add's vjp hands the incoming gradient straight on
    y.register_hook(lambda g: y_seen.append(g))
    (y * 2).sum().backward()
    (w * 5).sum().backward()
    np.testing.assert_allclose(np_of(y_seen[0]), [2.0, 2.0])
    np.testing.assert_allclose(np_of(w.grad), [7.0, 7.0])


def test_hook_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="doesn't require gradient"):
        runba.ones(2).register_hook(lambda g: g)


# ---------------------------------------------------------------------------- grad modes
def test_no_grad_context():
    x = t64([1.0])
    with runba.no_grad():
        y = x * 2
        assert not runba.is_grad_enabled()
    assert runba.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None


def test_enable_grad_inside_no_grad():
    x = t64([1.0])
    with runba.no_grad():
        with runba.enable_grad():
            y = x * 2
        z = x * 2
    assert y.requires_grad and not z.requires_grad


def test_set_grad_enabled_context_and_function_form():
    x = t64([1.0])
    with runba.set_grad_enabled(False):
        assert not (x * 2).requires_grad
        with runba.set_grad_enabled(True):
            assert (x * 2).requires_grad
    assert runba.is_grad_enabled()
    try:
        runba.set_grad_enabled(False)  # takes effect immediately, like torch
        assert not runba.is_grad_enabled()
        assert not (x * 2).requires_grad
    finally:
        runba.set_grad_enabled(True)
    assert runba.is_grad_enabled()


def test_grad_mode_restored_after_exception():
    with pytest.raises(ValueError):
        with runba.no_grad():
            raise ValueError
    assert runba.is_grad_enabled()


def test_no_grad_and_enable_grad_as_decorators():
    x = t64([1.0])

    @runba.no_grad()
    def f(t):
        return t * 2

    @runba.no_grad
    def f_bare(t):
        return t * 2

    @runba.enable_grad()
    def g(t):
        return t * 2

    @runba.enable_grad
    def g_bare(t):
        return t * 2

    assert f.__name__ == "f"
    assert not f(x).requires_grad and not f_bare(x).requires_grad
    assert runba.is_grad_enabled()
    with runba.no_grad():
        assert g(x).requires_grad and g_bare(x).requires_grad
        assert not runba.is_grad_enabled()


def test_set_grad_enabled_as_decorator_does_not_leak():
    x = t64([1.0])

    @runba.set_grad_enabled(False)
    def f(t):
        return t * 2

    assert runba.is_grad_enabled(), "decorating must not switch grad mode off"
    assert not f(x).requires_grad
    assert runba.is_grad_enabled()


def test_recursive_decorated_function_restores_mode():
    @runba.no_grad()
    def f(n):
        assert not runba.is_grad_enabled()
        return 0 if n == 0 else f(n - 1)

    f(5)
    assert runba.is_grad_enabled()


def test_inference_mode():
    x = t64([1.0])
    with runba.inference_mode():
        assert not (x * 2).requires_grad
    with runba.inference_mode(False):
        assert (x * 2).requires_grad


def test_grad_mode_is_per_thread():
    x = t64([1.0, 2.0])
    inside, release = threading.Event(), threading.Event()
    seen = {}

    def worker():
        with runba.no_grad():
            seen["thread_mode"] = runba.is_grad_enabled()
            seen["thread_rg"] = (x * 2).requires_grad
            inside.set()
            release.wait(5)

    th = threading.Thread(target=worker)
    th.start()
    try:
        assert inside.wait(5)
        # the worker sits inside no_grad; the main thread still records
        assert runba.is_grad_enabled()
        y = (x * 3).sum()
        assert y.requires_grad
        y.backward()
    finally:
        release.set()
        th.join()
    assert seen == {"thread_mode": False, "thread_rg": False}
    np.testing.assert_allclose(np_of(x.grad), [3.0, 3.0])


def test_new_thread_starts_with_grad_enabled_even_under_main_no_grad():
    seen = {}

    def worker():
        seen["mode"] = runba.is_grad_enabled()

    with runba.no_grad():
        th = threading.Thread(target=worker)
        th.start()
        th.join()
    assert seen["mode"] is True


def test_in_place_update_of_leaf_under_no_grad():
    w = t64([1.0, 2.0])
    (w * w).sum().backward()
    with runba.no_grad():
        w -= 0.5 * w.grad  # an SGD step
    assert w.is_leaf and w.requires_grad
    np.testing.assert_allclose(np_of(w), [0.0, 0.0])


def test_in_place_on_leaf_requiring_grad_raises():
    x = t64([1.0, 2.0])
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        x.add_(1.0)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        x[0] = 3.0


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_pow_with_a_tensor_exponent_at_zero_to_the_zero_has_gradient_zero():
    # d/da a**b at b == 0 is 0 (PyTorch), not 0 * 0**-1 = NaN; x**x at 0 likewise
    a = t64([0.0, 0.0, 2.0])
    b = t64([0.0, 1.0, 3.0], False)
    (a**b).sum().backward()
    np.testing.assert_array_equal(np_of(a.grad), [0.0, 1.0, 12.0])
    x = t64([0.0, 2.0])
    (x**x).sum().backward()
    np.testing.assert_allclose(np_of(x.grad), [0.0, 4.0 * (math.log(2.0) + 1.0)])


# ---------------------------------------------------------------------------- version counters
def test_in_place_change_of_saved_input_raises_naming_op():
    x = t64([1.0, 2.0])
    a = x * 1
    b = a * a  # mul saves a
    a.add_(1.0)
    with pytest.raises(RuntimeError, match=r"modified by an inplace operation.*'mul'.*version 1"):
        b.sum().backward()


def test_in_place_change_of_saved_output_raises():
    x = t64([1.0, 2.0])
    y = x.exp()  # exp saves its output
    z = y.sum()
    y.mul_(2.0)
    with pytest.raises(RuntimeError, match=r"inplace operation.*'exp'"):
        z.backward()


def test_in_place_change_of_unsaved_tensor_is_fine():
    x = t64([1.0, 2.0])
    a = x * 1
    b = a.exp()  # saves the output b, not a
    a.mul_(2.0)
    b.sum().backward()
    np.testing.assert_allclose(np_of(x.grad), np.exp([1.0, 2.0]))


_READS_ONE_SIDE = {
    # op on a (needs grad) and a constant: its gradient does not read a, so a may change
    "mul": (lambda a: a * t64([2.0, 3.0], False), [2.0, 3.0]),
    "rmul_scalar": (lambda a: 3 * a, [3.0, 3.0]),
    "div": (lambda a: a / t64([2.0, 4.0], False), [0.5, 0.25]),
    "matmul": (lambda a: a.unsqueeze(0) @ runba.ones(2, 2, dtype=runba.float64), [2.0, 2.0]),
    "linear": (
        lambda a: runba.nn.functional.linear(a.unsqueeze(0), runba.ones(3, 2, dtype=runba.float64)),
        [3.0, 3.0],
    ),
    "index": (lambda a: a[runba.tensor([1, 1])], [0.0, 2.0]),
    "mask": (lambda a: a[runba.tensor([True, False])], [1.0, 0.0]),
    "index_select": (lambda a: a.index_select(0, runba.tensor([1])), [0.0, 1.0]),
    "gather": (lambda a: a.gather(0, runba.tensor([1])), [0.0, 1.0]),
}


@pytest.mark.parametrize("name", list(_READS_ONE_SIDE))
def test_in_place_change_of_an_input_the_gradient_does_not_read_is_fine(name):
    # PyTorch saves x for x * w only when w needs a gradient: x[m] = x[m] * k works
    fn, grad = _READS_ONE_SIDE[name]
    x = t64([1.0, 2.0])
    a = x * 1
    y = fn(a)
    a.add_(1.0)
    y.sum().backward()
    np.testing.assert_allclose(np_of(x.grad), grad)


@pytest.mark.parametrize(
    "fn",
    [lambda a, w: a * w, lambda a, w: w / a, lambda a, w: a.unsqueeze(0) @ w.unsqueeze(1)],
    ids=["mul", "div", "matmul"],
)
def test_in_place_change_of_an_input_the_gradient_reads_still_raises(fn):
    x = t64([1.0, 2.0])
    w = t64([3.0, 4.0])
    a = x * 1
    y = fn(a, w)  # w's gradient (mul, matmul) or a's own (div) reads a
    a.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_masked_update_of_a_non_leaf_like_pytorch():
    x = t64([1.0, -2.0, 3.0, -4.0])
    b = x * 1
    m = b < 0
    b[m] = b[m] * 0.5
    b.sum().backward()
    np.testing.assert_allclose(np_of(x.grad), [1.0, 0.5, 1.0, 0.5])


def test_in_place_through_a_view_bumps_shared_version():
    x = t64([[1.0, 2.0], [3.0, 4.0]])
    a = x * 1
    b = a * a
    with runba.no_grad():
        a[0].mul_(3.0)  # writes through a view of a
    with pytest.raises(RuntimeError, match="inplace operation"):
        b.sum().backward()


# ---------------------------------------------------------------------------- in-place / setitem
def test_setitem_on_non_leaf_records_copy_slices():
    x = t64([1.0, 2.0, 3.0])
    w = t64([5.0])
    y = x * 2
    y[0:1] = w * 3
    (y * y).sum().backward()
    # y = [3w, 2x1, 2x2]; d/dx = [0, 8 x1, 8 x2]; d/dw = 2 * 3w * 3 = 18 w
    np.testing.assert_allclose(np_of(x.grad), [0.0, 16.0, 24.0])
    np.testing.assert_allclose(np_of(w.grad), [90.0])


def test_setitem_with_scalar_and_tensor_index():
    x = t64([1.0, 2.0, 3.0, 4.0])
    y = x * 1
    y[runba.tensor([0, 2])] = 0.0
    (y * runba.tensor([1.0, 2.0, 3.0, 4.0], dtype=runba.float64)).sum().backward()
    np.testing.assert_allclose(np_of(x.grad), [0.0, 2.0, 0.0, 4.0])


def test_setitem_bool_mask_on_non_leaf():
    x = t64([-1.0, 2.0, -3.0])
    y = x * 2
    y[y < 0] = 0.0
    y.sum().backward()
    np.testing.assert_allclose(np_of(x.grad), [0.0, 2.0, 0.0])
    np.testing.assert_allclose(np_of(y), [0.0, 4.0, 0.0])


def test_setitem_on_view_of_non_leaf():
    x = t64([[1.0, 2.0], [3.0, 4.0]])
    y = x * 2
    row = y[0]
    row[1] = 0.0
    y.sum().backward()
    np.testing.assert_allclose(np_of(x.grad), [[2.0, 0.0], [2.0, 2.0]])


@pytest.mark.parametrize(
    "name,inplace,reference",
    [
        ("mul_", lambda y, x: y.mul_(x), lambda xv: 2 * 2 * xv),  # y = 2x * x
        ("add_", lambda y, x: y.add_(x * x), lambda xv: 2 + 2 * xv),
        ("exp_", lambda y, x: y.exp_(), lambda xv: 2 * np.exp(2 * xv)),
        ("tanh_", lambda y, x: y.tanh_(), lambda xv: 2 * (1 - np.tanh(2 * xv) ** 2)),
        ("sigmoid_", lambda y, x: y.sigmoid_(), lambda xv: _dsig(2 * xv) * 2),
        ("relu_", lambda y, x: y.relu_(), lambda xv: 2.0 * (xv > 0)),
        ("iadd", lambda y, x: y.__iadd__(1.0), lambda xv: np.full_like(xv, 2.0)),
        ("imul", lambda y, x: y.__imul__(x), lambda xv: 4 * xv),
        ("pow_", lambda y, x: y.pow_(3), lambda xv: 24 * xv**2),
        ("clamp_", lambda y, x: y.clamp_(-1.0, 1.0), lambda xv: 2.0 * (np.abs(2 * xv) < 1)),
    ],
)
def test_in_place_ops_on_non_leaf_give_correct_gradients(name, inplace, reference):
    xv = np.array([-0.7, 0.2, 0.4, 1.3])
    x = t64(xv)
    y = x * 2
    out = inplace(y, x)
    assert out is y
    assert y._version_count >= 1
    y.sum().backward()
    np.testing.assert_allclose(np_of(x.grad), reference(xv), rtol=1e-10, err_msg=name)


def _dsig(v):
    s = 1 / (1 + np.exp(-v))
    return s * (1 - s)


def test_chained_in_place_ops_on_non_leaf():
    xv = np.array([0.5, -1.5])
    x = t64(xv)
    y = x * 1
    y.mul_(3.0).add_(1.0).mul_(x).sub_(x.exp())  # y = (3x + 1) x - e^x
    y.sum().backward()
    np.testing.assert_allclose(np_of(y), (3 * xv + 1) * xv - np.exp(xv), rtol=1e-12)
    np.testing.assert_allclose(np_of(x.grad), 6 * xv + 1 - np.exp(xv), rtol=1e-12)


# ---------------------------------------------------------------------------- Function
class MulFn(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        ctx.seen_needs = ctx.needs_input_grad
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        ga = g * b if ctx.needs_input_grad[0] else None
        gb = g * a if ctx.needs_input_grad[1] else None
        return ga, gb


class Cube(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * x * x * g


def test_function_forward_backward_and_needs_input_grad():
    a = t64([1.0, 2.0])
    b = t64([3.0, 4.0], requires_grad=False)
    out = MulFn.apply(a, b)
    assert out.requires_grad and out.grad_fn.name() == "MulFnBackward"
    ctx = out.grad_fn.attrs["ctx"]
    assert ctx.seen_needs == (True, False)
    out.sum().backward()
    np.testing.assert_allclose(np_of(a.grad), [3.0, 4.0])
    assert b.grad is None


def test_function_forward_runs_without_recording():
    class Probe(Function):
        @staticmethod
        def forward(ctx, x):
            inner = x * 2
            ctx.inner_rg = inner.requires_grad
            return inner

        @staticmethod
        def backward(ctx, g):
            return g * 2

    x = t64([1.0])
    y = Probe.apply(x)
    assert not y.grad_fn.attrs["ctx"].inner_rg
    y.backward()
    np.testing.assert_allclose(np_of(x.grad), [2.0])


def test_function_without_grad_inputs_is_plain():
    out = MulFn.apply(runba.ones(2), runba.ones(2))
    assert not out.requires_grad and out.grad_fn is None
    with runba.no_grad():
        assert not MulFn.apply(t64([1.0]), t64([2.0])).requires_grad


def test_function_in_a_graph_and_gradcheck():
    a = runba.randn(3, dtype=runba.float64, requires_grad=True)
    b = runba.randn(3, dtype=runba.float64, requires_grad=True)
    assert gradcheck(lambda p, q: MulFn.apply(p.tanh(), q) * 2, (a, b))
    assert gradcheck(Cube.apply, (a,))


def test_function_double_backward():
    x = t64([2.0])
    (g,) = runba.autograd.grad(Cube.apply(x), x, create_graph=True)
    np.testing.assert_allclose(np_of(g), [12.0])
    (h,) = runba.autograd.grad(g, x)
    np.testing.assert_allclose(np_of(h), [12.0])


def test_function_saved_tensor_modified_in_place_raises():
    x = t64([1.0, 2.0])
    a = x * 1
    y = Cube.apply(a)
    a.add_(1.0)
    with pytest.raises(RuntimeError, match=r"inplace operation.*Cube"):
        y.sum().backward()


def test_function_backward_twice_raises():
    x = t64([1.0])
    y = Cube.apply(x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_function_wrong_number_of_grads_raises():
    class Bad(Function):
        @staticmethod
        def forward(ctx, a, b):
            return a * b

        @staticmethod
        def backward(ctx, g):
            return g

    a = t64([1.0])
    with pytest.raises(RuntimeError, match="incorrect number of gradients"):
        Bad.apply(a, a).sum().backward()


def test_function_returning_its_input_gets_own_node():
    class Ident(Function):
        @staticmethod
        def forward(ctx, x):
            return x

        @staticmethod
        def backward(ctx, g):
            return g * 5

    x = t64([1.0])
    y = Ident.apply(x)
    assert x.is_leaf and x.grad_fn is None
    y.backward()
    np.testing.assert_allclose(np_of(x.grad), [5.0])


# ---------------------------------------------------------------------------- gradcheck
class WrongSquare(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * x * g  # wrong: should be 2 x g


def test_gradcheck_passes_for_correct_gradients():
    x = runba.randn(2, 3, dtype=runba.float64, requires_grad=True)
    y = runba.randn(3, 2, dtype=runba.float64, requires_grad=True)
    assert gradcheck(lambda a, b: (a @ b).tanh(), (x, y))
    assert gradcheck(lambda a: a.exp().sum(1), (x,), fast_mode=True)


def test_gradcheck_catches_wrong_gradient():
    x = runba.tensor([0.5, -1.0, 2.0], dtype=runba.float64, requires_grad=True)
    with pytest.raises(GradcheckError, match="Jacobian mismatch"):
        gradcheck(WrongSquare.apply, (x,))
    assert gradcheck(WrongSquare.apply, (x,), raise_exception=False) is False


def test_gradcheck_fast_mode_catches_wrong_gradient():
    x = runba.randn(40, dtype=runba.float64, requires_grad=True)
    with pytest.raises(GradcheckError, match="random direction"):
        gradcheck(WrongSquare.apply, (x,), fast_mode=True)


def test_gradcheck_catches_wrong_gradient_of_one_input_among_several():
    class HalfWrong(Function):
        @staticmethod
        def forward(ctx, a, b):
            ctx.save_for_backward(a, b)
            return a * b

        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            return g * b, g * b  # second is wrong

    a = runba.tensor([1.0, 2.0], dtype=runba.float64, requires_grad=True)
    b = runba.tensor([3.0, -4.0], dtype=runba.float64, requires_grad=True)
    with pytest.raises(GradcheckError, match="input 1"):
        gradcheck(HalfWrong.apply, (a, b))


def test_gradcheck_leaves_inputs_unchanged():
    x = runba.tensor([0.5, -1.0], dtype=runba.float64, requires_grad=True)
    before = np_of(x).copy()
    gradcheck(lambda t: (t * t).sum(), (x,))
    np.testing.assert_array_equal(np_of(x), before)
    assert x.grad is None


def test_gradcheck_needs_an_input_requiring_grad():
    with pytest.raises(ValueError):
        gradcheck(lambda t: t * 2, (runba.ones(2, dtype=runba.float64),))


def test_gradcheck_of_a_function_that_takes_gradients():
    # second order: gradcheck the map x -> d/dx sum(x^3) = 3x^2 (Hessian diag 6x)
    x = runba.tensor([0.5, -1.2, 2.0], dtype=runba.float64, requires_grad=True)

    def first_derivative(t):
        (g,) = runba.autograd.grad((t**3).sum(), t, create_graph=True)
        return g

    assert runba.autograd.gradcheck(first_derivative, (x,))


def test_graph_of_a_training_step_is_freed_without_the_garbage_collector():
    """Saved outputs must not form out -> grad_fn -> out cycles: those keep every activation
    alive until gc runs, and the step page-faults its buffers back in."""
    import gc

    from runba import nn

    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3), nn.Sigmoid())
    x = runba.randn(4, 6)
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        y = model(x).exp().relu().sqrt()
        probe = weakref.ref(y.grad_fn)
        y.sum().backward()
        del y
        assert probe() is None, "the backward graph survived its last reference"
        y = model(x).exp()
        probe = weakref.ref(y.grad_fn)
        del y  # never backwarded: must still be freed by reference counting alone
        assert probe() is None
    finally:
        if was_enabled:
            gc.enable()


def test_saved_output_sees_in_place_writes_and_version_check_still_fires():
    x = runba.randn(3, requires_grad=True)
    y = x.exp()
    y.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_assigning_grad_checks_type_shape_and_dtype_like_pytorch():
    x = runba.zeros(3, requires_grad=True)
    x.grad = runba.ones(3)
    np.testing.assert_array_equal(x.grad.numpy(), np.ones(3))
    x.grad = None
    assert x.grad is None
    with pytest.raises(RuntimeError, match="different size"):
        x.grad = runba.zeros(4)
    with pytest.raises(RuntimeError, match="different type"):
        x.grad = runba.zeros(3, dtype=runba.float64)
    with pytest.raises(TypeError, match="Tensor or None"):
        x.grad = 0.0
    assert x.grad is None  # a refused assignment changes nothing
