"""Hypothesis properties: broadcasting, reshape and reductions, on contiguous and
permuted-stride (non-contiguous) inputs, against plain numpy."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, mutually_broadcastable_shapes

import runba

SETTINGS = settings(max_examples=50, deadline=None)


@st.composite
def tensors(draw, shape, dtype=runba.float64):
    """A runba tensor of ``shape`` whose memory layout is a random permutation of the dims
    (so most draws are non-contiguous), and the same values as a plain numpy array."""
    perm = draw(st.permutations(range(len(shape))))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    stored_shape = tuple(shape[p] for p in perm)
    stored = rng.standard_normal(stored_shape).astype(dtype.np)
    inv = np.argsort(perm)
    t = runba.from_numpy(stored).permute(*[int(i) for i in inv]) if shape else runba.tensor(stored)
    expected = np.transpose(stored, inv) if shape else stored
    assert t.shape == shape
    return t, np.array(expected)


def _sum_to(g, shape):
    lead = g.ndim - len(shape)
    g = g.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True).reshape(shape)


# ---------------------------------------------------------------------------- broadcasting
BINARY = {
    "add": (lambda a, b: a + b, np.add),
    "sub": (lambda a, b: a - b, np.subtract),
    "mul": (lambda a, b: a * b, np.multiply),
    "maximum": (runba.maximum, np.maximum),
}


@SETTINGS
@given(
    data=st.data(),
    shapes=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=4),
    op=st.sampled_from(sorted(BINARY)),
)
def test_broadcasting_matches_numpy(data, shapes, op):
    sa, sb = shapes.input_shapes
    (a, av), (b, bv) = data.draw(tensors(sa)), data.draw(tensors(sb))
    fn, ref = BINARY[op]
    out = fn(a, b)
    assert out.shape == np.broadcast_shapes(sa, sb) == shapes.result_shape
    np.testing.assert_allclose(out.numpy(), ref(av, bv), rtol=1e-15, atol=0)


@SETTINGS
@given(
    data=st.data(),
    shapes=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=4),
)
def test_broadcasting_gradients_have_input_shapes(data, shapes):
    sa, sb = shapes.input_shapes
    (a, av), (b, bv) = data.draw(tensors(sa)), data.draw(tensors(sb))
    a.requires_grad_()
    b.requires_grad_()
    out_shape = np.broadcast_shapes(sa, sb)
    gv = np.random.default_rng(0).standard_normal(out_shape)
    (a * b + a).backward(runba.tensor(gv))
    assert a.grad.shape == sa and b.grad.shape == sb
    np.testing.assert_allclose(a.grad.numpy(), _sum_to(gv * bv + gv, sa), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(b.grad.numpy(), _sum_to(gv * av, sb), rtol=1e-12, atol=1e-12)


@SETTINGS
@given(
    data=st.data(),
    shapes=mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=3),
)
def test_where_broadcasts_three_ways(data, shapes):
    sc, sa, sb = shapes.input_shapes
    (c, cv), (a, av), (b, bv) = (data.draw(tensors(s)) for s in (sc, sa, sb))
    out = runba.where(c > 0, a, b)
    assert out.shape == shapes.result_shape
    np.testing.assert_array_equal(out.numpy(), np.where(cv > 0, av, bv))


@SETTINGS
@given(data=st.data(), shape=array_shapes(min_dims=0, max_dims=3, max_side=4))
def test_expand_matches_broadcast_to(data, shape):
    # expand to a random compatible target: grow size-1 dims and add leading dims
    t, v = data.draw(tensors(shape))
    lead = data.draw(st.lists(st.integers(1, 3), max_size=2))
    target = tuple(lead) + tuple(data.draw(st.integers(1, 3)) if s == 1 else s for s in shape)
    e = t.expand(*target) if target else t.expand(())
    np.testing.assert_array_equal(e.numpy(), np.broadcast_to(v, target))
    assert e._version is t._version  # a view


# ---------------------------------------------------------------------------- reshape
def _factorizations(n, max_dims):
    """Strategy for shapes whose product is n (n >= 1)."""

    @st.composite
    def build(draw):
        dims, rest = [], n
        for _ in range(draw(st.integers(0, max_dims - 1))):
            d = draw(st.sampled_from([d for d in range(1, rest + 1) if rest % d == 0]))
            dims.append(d)
            rest //= d
        dims.append(rest)
        return tuple(draw(st.permutations(dims)))

    return build()


@SETTINGS
@given(data=st.data(), shape=array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=4))
def test_reshape_element_order_and_round_trip(data, shape):
    t, v = data.draw(tensors(shape))
    n = v.size
    target = data.draw(_factorizations(n, 4))
    spec = list(target)
    if spec and data.draw(st.booleans()):
        spec[data.draw(st.integers(0, len(spec) - 1))] = -1
    r = t.reshape(*spec) if spec else t.reshape(())
    assert r.shape == target
    np.testing.assert_array_equal(r.numpy(), v.reshape(target))  # C order, like numpy
    np.testing.assert_array_equal(r.reshape(shape).numpy(), v)
    np.testing.assert_array_equal(t.flatten().numpy(), v.reshape(-1))


@SETTINGS
@given(data=st.data(), shape=array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4))
def test_view_on_contiguous_shares_storage(data, shape):
    v = np.random.default_rng(data.draw(st.integers(0, 1000))).standard_normal(shape)
    t = runba.from_numpy(v)
    target = data.draw(_factorizations(v.size, 4))
    w = t.view(*target)
    assert w._version is t._version
    np.testing.assert_array_equal(w.numpy(), v.reshape(target))
    w.view(-1)[0] = 123.0
    assert v.reshape(-1)[0] == 123.0


@SETTINGS
@given(data=st.data(), shape=array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4))
def test_reshape_gradient_is_reshaped_back(data, shape):
    t, v = data.draw(tensors(shape))
    t.requires_grad_()
    target = data.draw(_factorizations(v.size, 3))
    w = np.random.default_rng(1).standard_normal(target)
    (t.reshape(*target) * runba.tensor(w)).sum().backward()
    assert t.grad.shape == shape
    np.testing.assert_array_equal(t.grad.numpy(), w.reshape(shape))


# ---------------------------------------------------------------------------- reductions
@st.composite
def reduction_args(draw):
    shape = draw(array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4))
    nd = len(shape)
    kind = draw(st.sampled_from(["none", "int", "tuple"]))
    if kind == "none":
        dim = None
    elif kind == "int":
        dim = draw(st.integers(-nd, nd - 1))
    else:
        dims = draw(st.lists(st.integers(0, nd - 1), min_size=1, max_size=nd, unique=True))
        # mix positive and negative spellings of the same dims
        dim = tuple(d - nd if draw(st.booleans()) else d for d in dims)
    return shape, dim, draw(st.booleans())


REDUCTIONS = {
    "sum": (lambda t, d, k: t.sum(d, keepdim=k) if d is not None else t.sum(), np.sum),
    "mean": (lambda t, d, k: t.mean(d, keepdim=k) if d is not None else t.mean(), np.mean),
    "amax": (lambda t, d, k: t.amax(d, keepdim=k) if d is not None else t.amax(), np.amax),
}


@SETTINGS
@given(data=st.data(), args=reduction_args(), op=st.sampled_from(sorted(REDUCTIONS)))
def test_reductions_match_numpy(data, args, op):
    shape, dim, keepdim = args
    t, v = data.draw(tensors(shape))
    fn, ref = REDUCTIONS[op]
    out = fn(t, dim, keepdim)
    keep = keepdim if dim is not None else False
    expected = ref(v, axis=dim, keepdims=keep)
    assert out.shape == np.shape(expected)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)


@SETTINGS
@given(data=st.data(), args=reduction_args(), op=st.sampled_from(sorted(REDUCTIONS)))
def test_reduction_gradients(data, args, op):
    shape, dim, keepdim = args
    t, v = data.draw(tensors(shape))
    t.requires_grad_()
    fn, _ = REDUCTIONS[op]
    out = fn(t, dim, keepdim)
    g = np.random.default_rng(2).standard_normal(out.shape)
    out.backward(runba.tensor(g))
    assert t.grad.shape == shape
    axes = tuple(range(len(shape))) if dim is None else dim
    axes = (axes,) if isinstance(axes, int) else axes
    axes = tuple(sorted(a % len(shape) for a in axes))
    gk = g if (keepdim and dim is not None) else np.expand_dims(g, axes)
    if op == "sum":
        expected = np.broadcast_to(gk, shape)
    elif op == "mean":
        count = int(np.prod([shape[a] for a in axes]))
        expected = np.broadcast_to(gk, shape) / count
    else:  # amax: continuous random values have no ties; the max gets the gradient
        mx = np.amax(v, axis=axes, keepdims=True)
        expected = np.where(v == mx, np.broadcast_to(gk, shape), 0.0)
    np.testing.assert_allclose(t.grad.numpy(), expected, rtol=1e-12, atol=1e-12)


@SETTINGS
@given(data=st.data(), args=reduction_args())
def test_keepdim_result_broadcasts_back(data, args):
    shape, dim, _ = args
    t, v = data.draw(tensors(shape))
    centered = t - t.mean(dim, keepdim=True) if dim is not None else t - t.mean()
    assert centered.shape == shape
    ref = v - (v.mean(axis=dim, keepdims=True) if dim is not None else v.mean())
    np.testing.assert_allclose(centered.numpy(), ref, rtol=1e-12, atol=1e-12)


@SETTINGS
@given(data=st.data(), shape=array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4))
def test_float32_sum_close_to_float64(data, shape):
    t, v = data.draw(tensors(shape, runba.float32))
    out = t.sum()
    assert out.dtype is runba.float32
    np.testing.assert_allclose(out.item(), v.astype(np.float64).sum(), rtol=1e-5, atol=1e-5)
