"""conv2d and 2-D pooling: forward vs independent numpy references, float64 gradchecks
(first and second order), unbatched input, error messages, optional torch cross-check."""

import math

import numpy as np
import pytest

import runba
import runba.ops.conv as C  # until runba.ops imports it
from runba._state import STATE
from runba.autograd import gradcheck
from runba.ops.registry import run_eager

RNG = np.random.default_rng(1234)


def t(a, rg=False):
    return runba.tensor(np.asarray(a), requires_grad=rg)


# ------------------------------------------------------------------ numpy references
def ref_conv2d(x, w, b=None, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    """Direct definition: zero-pad, then sum over kernel taps of strided slices (einsum)."""
    n, c, h, wd = x.shape
    cout, cg, kh, kw = w.shape
    pt, pb, pl, pr = pads
    xp = np.zeros((n, c, h + pt + pb, wd + pl + pr), x.dtype)
    xp[:, :, pt : pt + h, pl : pl + wd] = x
    sh, sw = stride
    dh, dw = dilation
    oh = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    ow = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, cout, oh, ow), np.float64)
    og = cout // groups
    for g in range(groups):
        xs = xp[:, g * cg : (g + 1) * cg].astype(np.float64)
        ws = w[g * og : (g + 1) * og].astype(np.float64)
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dh : i * dh + sh * (oh - 1) + 1 : sh,
                           j * dw : j * dw + sw * (ow - 1) + 1 : sw]  # fmt: skip
                out[:, g * og : (g + 1) * og] += np.einsum("nchw,oc->nohw", patch, ws[:, :, i, j])
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    return out


def ref_out_size(size, k, s, p, d, ceil):
    eff = d * (k - 1) + 1
    num = size + 2 * p - eff
    o = (math.ceil(num / s) if ceil else num // s) + 1
    if ceil and (o - 1) * s >= size + p:
        o -= 1
    return o


def ref_max_pool2d(x, k, s, p, d=(1, 1), ceil=False):
    n, c, h, w = x.shape
    oh = ref_out_size(h, k[0], s[0], p[0], d[0], ceil)
    ow = ref_out_size(w, k[1], s[1], p[1], d[1], ceil)
    out = np.full((n, c, oh, ow), -np.inf)
    idx = np.zeros((n, c, oh, ow), np.int64)
    for a in range(oh):
        for b in range(ow):
            best = None
            for i in range(k[0]):
                for j in range(k[1]):
                    hh, ww = a * s[0] - p[0] + i * d[0], b * s[1] - p[1] + j * d[1]
                    if 0 <= hh < h and 0 <= ww < w:
                        v = x[:, :, hh, ww]
                        if best is None:
                            best = v.copy()
                            idx[:, :, a, b] = hh * w + ww
                        else:
                            take = v > best
                            best = np.where(take, v, best)
                            idx[:, :, a, b] = np.where(take, hh * w + ww, idx[:, :, a, b])
            out[:, :, a, b] = best
    return out, idx


def ref_avg_pool2d(x, k, s, p, ceil=False, include_pad=True, divisor=None):
    n, c, h, w = x.shape
    oh = ref_out_size(h, k[0], s[0], p[0], 1, ceil)
    ow = ref_out_size(w, k[1], s[1], p[1], 1, ceil)
    out = np.zeros((n, c, oh, ow))
    for a in range(oh):
        for b in range(ow):
            h0, w0 = a * s[0] - p[0], b * s[1] - p[1]
            h1, w1 = min(h0 + k[0], h + p[0]), min(w0 + k[1], w + p[1])
            padded_count = (h1 - h0) * (w1 - w0)
            h0c, w0c, h1c, w1c = max(h0, 0), max(w0, 0), min(h1, h), min(w1, w)
            total = x[:, :, h0c:h1c, w0c:w1c].sum(axis=(2, 3))
            if divisor:
                den = divisor
            elif include_pad:
                den = padded_count
            else:
                den = (h1c - h0c) * (w1c - w0c)
            out[:, :, a, b] = total / den
    return out


def ref_adaptive_avg(x, out_hw):
    n, c, h, w = x.shape
    oh, ow = out_hw
    out = np.zeros((n, c, oh, ow))
    for a in range(oh):
        h0, h1 = (a * h) // oh, -((-(a + 1) * h) // oh)
        for b in range(ow):
            w0, w1 = (b * w) // ow, -((-(b + 1) * w) // ow)
            out[:, :, a, b] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return out


# ------------------------------------------------------------------ conv2d forward
CONV_CASES = [
    # x shape, w shape, kwargs, reference pads (t, b, l, r)
    ((2, 3, 7, 6), (4, 3, 3, 3), {}, (0, 0, 0, 0)),
    ((2, 3, 7, 6), (4, 3, 3, 2), {"stride": 2, "padding": 1}, (1, 1, 1, 1)),
    (
        (1, 4, 9, 8),
        (6, 2, 3, 3),
        {"stride": (2, 1), "padding": (2, 1), "dilation": (2, 3), "groups": 2},
        (2, 2, 1, 1),
    ),  # fmt: skip
    ((2, 4, 6, 7), (4, 1, 3, 3), {"groups": 4, "padding": "same"}, (1, 1, 1, 1)),
    ((2, 2, 6, 7), (3, 2, 4, 2), {"padding": "same", "dilation": (1, 2)}, (1, 2, 1, 1)),
    ((2, 2, 5, 5), (3, 2, 5, 5), {"padding": "valid"}, (0, 0, 0, 0)),
    ((3, 1, 28, 28), (5, 1, 5, 5), {}, (0, 0, 0, 0)),  # seed CNN layer 1 (parallel path)
]


def _ref_kwargs(kw, w_shape):
    stride = kw.get("stride", 1)
    dil = kw.get("dilation", 1)
    stride = (stride, stride) if isinstance(stride, int) else stride
    dil = (dil, dil) if isinstance(dil, int) else dil
    return {"stride": stride, "dilation": dil, "groups": kw.get("groups", 1)}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("xs,ws,kw,pads", CONV_CASES)
def test_conv2d_forward(xs, ws, kw, pads, dtype):
    x = RNG.standard_normal(xs).astype(dtype)
    w = RNG.standard_normal(ws).astype(dtype)
    b = RNG.standard_normal(ws[0]).astype(dtype)
    ref = ref_conv2d(x, w, b, pads=pads, **_ref_kwargs(kw, ws))
    out = C.conv2d(t(x), t(w), t(b), **kw)
    assert out.dtype is (runba.float64 if dtype == np.float64 else runba.float32)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(out.numpy(), ref, rtol=tol, atol=tol * 10)
    nob = C.conv2d(t(x), t(w), None, **kw)
    np.testing.assert_allclose(nob.numpy(), ref - b.reshape(1, -1, 1, 1), rtol=tol, atol=tol * 10)


def test_conv2d_large_batch_parallel_path():
    # big enough for the prange branches of im2col and col2im
    x = RNG.standard_normal((8, 6, 24, 24))
    w = RNG.standard_normal((5, 6, 3, 3))
    xt, wt = t(x, True), t(w, True)
    out = C.conv2d(xt, wt, stride=1, padding=1)
    np.testing.assert_allclose(out.detach().numpy(), ref_conv2d(x, w, pads=(1,) * 4), atol=1e-10)
    g = RNG.standard_normal(out.shape)
    out.backward(t(g))
    # adjoint identities: <g, conv(dx, w)> = <dx, gx>, <g, conv(x, dw)> = <dw, gw>
    dx, dw = RNG.standard_normal(x.shape), RNG.standard_normal(w.shape)
    lhs = (g * ref_conv2d(dx, w, pads=(1,) * 4)).sum()
    np.testing.assert_allclose(lhs, (dx * xt.grad.numpy()).sum(), rtol=1e-10)
    lhs = (g * ref_conv2d(x, dw, pads=(1,) * 4)).sum()
    np.testing.assert_allclose(lhs, (dw * wt.grad.numpy()).sum(), rtol=1e-10)


def test_conv2d_unbatched():
    x = RNG.standard_normal((3, 6, 5))
    w = RNG.standard_normal((2, 3, 3, 3))
    out = C.conv2d(t(x), t(w), padding=1)
    assert out.shape == (2, 6, 5)
    np.testing.assert_allclose(out.numpy(), ref_conv2d(x[None], w, pads=(1,) * 4)[0], atol=1e-12)


# ------------------------------------------------------------------ conv2d gradients
GRAD_CASES = [
    ((2, 2, 5, 4), (3, 2, 3, 2), {}),
    ((1, 2, 6, 5), (2, 2, 3, 3), {"stride": 2, "padding": 1}),
    (
        (1, 4, 7, 6),
        (4, 2, 2, 3),
        {"stride": (1, 2), "padding": (1, 2), "dilation": (2, 1), "groups": 2},
    ),  # fmt: skip
    ((2, 2, 5, 6), (2, 2, 2, 3), {"padding": "same"}),
    ((1, 3, 5, 5), (3, 1, 3, 3), {"groups": 3, "dilation": 2, "padding": "same"}),
]


@pytest.mark.parametrize("xs,ws,kw", GRAD_CASES)
def test_conv2d_gradcheck(xs, ws, kw):
    x = t(RNG.standard_normal(xs), True)
    w = t(RNG.standard_normal(ws), True)
    b = t(RNG.standard_normal(ws[0]), True)
    assert gradcheck(lambda x, w, b: C.conv2d(x, w, b, **kw), (x, w, b))


def test_conv2d_gradcheck_partial_needs():
    x = t(RNG.standard_normal((1, 2, 5, 5)), True)
    w = t(RNG.standard_normal((2, 2, 3, 3)))
    assert gradcheck(lambda x: C.conv2d(x, w, stride=2), (x,))
    x2 = t(RNG.standard_normal((1, 2, 5, 5)))
    w2 = t(RNG.standard_normal((2, 2, 3, 3)), True)
    assert gradcheck(lambda w: C.conv2d(x2, w, padding=1), (w2,))


def test_conv2d_second_order():
    # the backward ops are registry ops with their own vjps: gradients of gradients
    x = t(RNG.standard_normal((1, 2, 5, 4)), True)
    w = t(RNG.standard_normal((2, 1, 3, 2)), True)

    def first_grads(x, w):
        with runba.enable_grad():  # gradcheck evaluates its function under no_grad
            y = C.conv2d(x, w, stride=(2, 1), padding=1, groups=2)
            gx, gw = runba.autograd.grad((y * y).sum(), (x, w), create_graph=True)
            return (gx * gx).sum() + (gw * gw * gw).sum()

    assert gradcheck(first_grads, (x, w))


# ------------------------------------------------------------------ pooling
MAX_CASES = [
    ((2, 3, 8, 8), 2, {}),
    ((1, 2, 9, 7), 3, {"stride": 2, "padding": 1}),
    ((1, 2, 9, 7), 3, {"stride": 2, "padding": 1, "ceil_mode": True}),
    ((2, 1, 10, 9), (3, 2), {"stride": (2, 1), "padding": (1, 1), "dilation": (2, 3)}),
    ((1, 2, 5, 6), (2, 3), {"stride": (3, 2), "ceil_mode": True}),
]


def _pool_params(k, kw):
    k = (k, k) if isinstance(k, int) else k
    s = kw.get("stride", k)
    s = (s, s) if isinstance(s, int) else s
    p = kw.get("padding", 0)
    p = (p, p) if isinstance(p, int) else p
    d = kw.get("dilation", 1)
    d = (d, d) if isinstance(d, int) else d
    return k, s, p, d


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("xs,k,kw", MAX_CASES)
def test_max_pool2d_forward(xs, k, kw, dtype):
    x = RNG.standard_normal(xs).astype(dtype)
    kk, s, p, d = _pool_params(k, kw)
    ref, ref_idx = ref_max_pool2d(x, kk, s, p, d, kw.get("ceil_mode", False))
    out, idx = C.max_pool2d(t(x), k, return_indices=True, **kw)
    np.testing.assert_array_equal(out.numpy(), ref.astype(dtype))
    np.testing.assert_array_equal(idx.numpy(), ref_idx)
    assert idx.dtype is runba.int64


def test_max_pool2d_ties_nan_and_unbatched():
    x = np.zeros((1, 4, 4))
    x[0, 1, 1] = np.nan
    out, idx = C.max_pool2d(t(x), 2, return_indices=True)
    assert out.shape == (1, 2, 2)
    assert np.isnan(out.numpy()[0, 0, 0]) and idx.numpy()[0, 0, 0] == 5
    assert idx.numpy()[0, 0, 1] == 2 and idx.numpy()[0, 1, 0] == 8  # first maximum wins


@pytest.mark.parametrize("xs,k,kw", MAX_CASES[:4])
def test_max_pool2d_gradcheck(xs, k, kw):
    # distinct values: no ties, so finite differences see a smooth function
    x = RNG.permutation(np.prod(xs)).reshape(xs).astype(np.float64) / 7.0
    assert gradcheck(lambda x: C.max_pool2d(x, k, **kw), (t(x, True),))


def test_max_pool2d_overlapping_windows_accumulate():
    x = t(np.array([[[[0.0, 0.0, 0.0], [0.0, 9.0, 0.0], [0.0, 0.0, 0.0]]]]), True)
    C.max_pool2d(x, 2, stride=1).sum().backward()
    assert x.grad.numpy()[0, 0, 1, 1] == 4.0 and x.grad.numpy().sum() == 4.0


class _OpSpy:
    """Records the registry ops dispatched (forward and backward) and runs them eagerly: the
    registry's capture seam used as a spy (as in tests/test_ops.py)."""

    def __init__(self):
        self.seen = []

    def record(self, op, inputs, attrs):
        self.seen.append(op.name)
        return run_eager(op, inputs, attrs)

    def __enter__(self):
        self._prev, STATE.capture = STATE.capture, self
        return self

    def __exit__(self, *exc):
        STATE.capture = self._prev


def test_max_pool2d_inference_computes_no_indices():
    x = RNG.standard_normal((2, 3, 8, 8))
    ref, _ = ref_max_pool2d(x, (2, 2), (2, 2), (0, 0))
    with runba.no_grad(), _OpSpy() as spy:
        out = C.max_pool2d(t(x, True), 2)
    assert spy.seen == ["max_pool2d"]
    np.testing.assert_array_equal(out.numpy(), ref)
    with _OpSpy() as spy:  # grad enabled, but the input needs none
        C.max_pool2d(t(x), 2)
    assert spy.seen == ["max_pool2d"]


def test_max_pool2d_backward_recomputes_argmax():
    x = t(RNG.standard_normal((2, 3, 8, 8)), True)
    with _OpSpy() as spy:
        y = C.max_pool2d(x, 2)
        assert spy.seen == ["max_pool2d"]  # the forward keeps no indices either
        y.backward(t(np.ones(y.shape)))
    assert "max_pool2d_indices" in spy.seen and "plane_scatter_add" in spy.seen
    _, idx = ref_max_pool2d(x.detach().numpy(), (2, 2), (2, 2), (0, 0))
    want = np.zeros((6, 64))
    for pl, ii in enumerate(idx.reshape(6, -1)):
        want[pl, ii] += 1.0
    np.testing.assert_array_equal(x.grad.numpy(), want.reshape(x.shape))


def test_max_pool2d_gradient_at_ties_and_nan():
    # equal maxima: the first (row-major) gets the gradient; NaN windows: the last NaN
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 2:, 2:] = [[1.0, np.nan], [np.nan, 1.0]]
    for dtype in (np.float64, np.float32):
        xt = t(x.astype(dtype), True)
        y = C.max_pool2d(xt, 2)
        np.testing.assert_array_equal(np.isnan(y.detach().numpy()), [[[[0, 0], [0, 1]]]])
        y.backward(t(np.array([[[[1.0, 2.0], [3.0, 4.0]]]], dtype)))
        want = np.zeros((4, 4))
        want[0, 0], want[0, 2], want[2, 0], want[3, 2] = 1.0, 2.0, 3.0, 4.0
        np.testing.assert_array_equal(xt.grad.numpy()[0, 0], want)
        assert xt.grad.dtype is y.dtype


def test_max_pool2d_values_equal_with_and_without_indices():
    x = RNG.standard_normal((3, 4, 11, 13)).astype(np.float32)
    x[0, 1, 4, 4] = np.nan
    for k, kw in [(2, {}), (3, {"stride": 2, "padding": 1, "ceil_mode": True}), ((2, 3), {})]:
        plain = C.max_pool2d(t(x), k, **kw).numpy()
        out, idx = C.max_pool2d(t(x), k, return_indices=True, **kw)
        np.testing.assert_array_equal(plain, out.numpy())


AVG_CASES = [
    ((2, 3, 8, 8), 2, {}),
    ((1, 2, 9, 7), 3, {"stride": 2, "padding": 1}),
    ((1, 2, 9, 7), 3, {"stride": 2, "padding": 1, "count_include_pad": False}),
    ((1, 2, 9, 7), 3, {"stride": 2, "padding": 1, "ceil_mode": True}),
    ((1, 2, 8, 7), 3, {"stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False}),
    ((1, 2, 6, 7), (3, 2), {"stride": (2, 3), "padding": (1, 1), "divisor_override": 5}),
    ((1, 1, 5, 5), 2, {"stride": 2, "ceil_mode": True}),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("xs,k,kw", AVG_CASES)
def test_avg_pool2d_forward(xs, k, kw, dtype):
    x = RNG.standard_normal(xs).astype(dtype)
    kk, s, p, _ = _pool_params(k, kw)
    ref = ref_avg_pool2d(
        x.astype(np.float64), kk, s, p, kw.get("ceil_mode", False),
        kw.get("count_include_pad", True), kw.get("divisor_override"),
    )  # fmt: skip
    out = C.avg_pool2d(t(x), k, **kw)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(out.numpy(), ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("xs,k,kw", AVG_CASES)
def test_avg_pool2d_gradcheck(xs, k, kw):
    x = t(RNG.standard_normal(xs), True)
    assert gradcheck(lambda x: C.avg_pool2d(x, k, **kw), (x,))


@pytest.mark.parametrize("out_size", [1, (3, 2), (5, None), (7, 9), (4, 6), (9, 1)])
def test_adaptive_avg_pool2d(out_size):
    x = RNG.standard_normal((2, 3, 7, 9))
    oh, ow = (out_size, out_size) if isinstance(out_size, int) else out_size
    ow = 9 if ow is None else ow
    out = C.adaptive_avg_pool2d(t(x), out_size)
    np.testing.assert_allclose(out.numpy(), ref_adaptive_avg(x, (oh, ow)), atol=1e-12)
    out32 = C.adaptive_avg_pool2d(t(x.astype(np.float32)), out_size)
    np.testing.assert_allclose(out32.numpy(), ref_adaptive_avg(x, (oh, ow)), atol=1e-5)
    small = t(RNG.standard_normal((1, 2, 7, 9)), True)
    assert gradcheck(lambda x: C.adaptive_avg_pool2d(x, out_size), (small,))


def test_pool_second_order():
    x = t(RNG.standard_normal((1, 1, 6, 5)), True)

    def f(x):
        with runba.enable_grad():  # gradcheck evaluates its function under no_grad
            y = C.avg_pool2d(x, 3, stride=2, padding=1) + C.adaptive_avg_pool2d(x, (2, 3)).sum()
            m = C.max_pool2d(x * x, 2, ceil_mode=True)
            (g,) = runba.autograd.grad((y * y).sum() + (m * m).sum(), (x,), create_graph=True)
            return g

    assert gradcheck(f, (x,))


def test_pools_unbatched():
    x = RNG.standard_normal((2, 6, 6))
    assert C.max_pool2d(t(x), 2).shape == (2, 3, 3)
    assert C.avg_pool2d(t(x), 3, stride=3).shape == (2, 2, 2)
    assert C.adaptive_avg_pool2d(t(x), (1, 1)).shape == (2, 1, 1)


# ------------------------------------------------------------------ errors
def _raises(match, fn):
    with pytest.raises((RuntimeError, ValueError, TypeError), match=match):
        fn()


def test_conv2d_errors():
    w = t(np.zeros((16, 3, 5, 5), np.float32))
    x = t(np.zeros((8, 1, 28, 28), np.float32))
    _raises(
        r"conv2d: expected input with 3 channels \(weight \[16, 3, 5, 5\], groups=1\), got input "
        r"of shape \[8, 1, 28, 28\]",
        lambda: C.conv2d(x, w),
    )
    _raises(r"conv2d: expected 3D \(unbatched\) or 4D .* shape \[28, 28\]",
            lambda: C.conv2d(t(np.zeros((28, 28), np.float32)), w))  # fmt: skip
    _raises(r"conv2d: expected a 4D weight", lambda: C.conv2d(x, t(np.zeros((3, 5), np.float32))))
    _raises(
        r"conv2d: kernel size .*greater than the padded input size \(4x4",
        lambda: C.conv2d(t(np.zeros((1, 3, 4, 4), np.float32)), w),
    )
    _raises(
        r"conv2d: out_channels \(16.*divisible by groups=3",
        lambda: C.conv2d(t(np.zeros((1, 9, 8, 8), np.float32)), w, groups=3),
    )
    _raises(
        r"expected input with 6 channels \(weight \[16, 3, 5, 5\], groups=2\)",
        lambda: C.conv2d(
            t(np.zeros((1, 5, 8, 8), np.float32)), t(np.zeros((16, 3, 5, 5), np.float32)), groups=2
        ),  # noqa: E501
    )
    _raises(r"padding='same' is not supported for strided",
            lambda: C.conv2d(t(np.zeros((1, 3, 8, 8), np.float32)), w, stride=2, padding="same"))  # fmt: skip  # noqa: E501
    _raises(r"invalid padding string 'full'",
            lambda: C.conv2d(t(np.zeros((1, 3, 8, 8), np.float32)), w, padding="full"))  # fmt: skip  # noqa: E501
    _raises(r"expected bias of shape \[16\]",
            lambda: C.conv2d(t(np.zeros((1, 3, 8, 8), np.float32)), w, t(np.zeros(3, np.float32))))  # fmt: skip  # noqa: E501
    _raises(r"input type \(float64\) and weight type \(float32\)",
            lambda: C.conv2d(t(np.zeros((1, 3, 8, 8))), w))  # fmt: skip


def test_pool_errors():
    x = t(np.zeros((1, 1, 4, 4)))
    _raises(r"max_pool2d: expected 3D \(unbatched\) or 4D", lambda: C.max_pool2d(t(np.zeros(4)), 2))
    _raises(r"pad should be at most half of effective kernel size",
            lambda: C.max_pool2d(x, 2, padding=2))  # fmt: skip
    _raises(r"avg_pool2d: pad should be at most half of kernel size",
            lambda: C.avg_pool2d(x, 2, padding=2))  # fmt: skip
    _raises(r"output size 0x0 is too small", lambda: C.max_pool2d(x, 5))
    _raises(r"divisor must be not zero", lambda: C.avg_pool2d(x, 2, divisor_override=0))


# ------------------------------------------------------------------ optional torch check
def test_against_torch_if_installed():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = RNG.standard_normal((2, 4, 11, 10)).astype(np.float32)
    w = RNG.standard_normal((6, 2, 3, 3)).astype(np.float32)
    b = RNG.standard_normal(6).astype(np.float32)
    g = RNG.standard_normal((2, 6, 6, 3)).astype(np.float32)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    to = F.conv2d(tx, tw, tb, stride=2, padding=(1, 0), dilation=(1, 2), groups=2)
    to.backward(torch.tensor(g))
    rx, rw, rb = (t(a, True) for a in (x, w, b))
    ro = C.conv2d(rx, rw, rb, stride=2, padding=(1, 0), dilation=(1, 2), groups=2)
    ro.backward(t(g))
    np.testing.assert_allclose(ro.detach().numpy(), to.detach().numpy(), rtol=1e-4, atol=1e-4)
    for r, tt in ((rx, tx), (rw, tw), (rb, tb)):
        np.testing.assert_allclose(r.grad.numpy(), tt.grad.numpy(), rtol=1e-4, atol=1e-4)
    xp = torch.tensor(x)
    o, i = F.max_pool2d(xp, 3, 2, 1, ceil_mode=True, return_indices=True)
    ro, ri = C.max_pool2d(t(x), 3, 2, 1, ceil_mode=True, return_indices=True)
    np.testing.assert_array_equal(ro.numpy(), o.numpy())
    np.testing.assert_array_equal(ri.numpy(), i.numpy())
    o = F.avg_pool2d(xp, 3, 2, 1, ceil_mode=True, count_include_pad=False)
    np.testing.assert_allclose(
        C.avg_pool2d(t(x), 3, 2, 1, ceil_mode=True, count_include_pad=False).numpy(),
        o.numpy(), rtol=1e-6, atol=1e-6,
    )  # fmt: skip
    o = F.adaptive_avg_pool2d(xp, (4, 3))
    np.testing.assert_allclose(C.adaptive_avg_pool2d(t(x), (4, 3)).numpy(), o.numpy(), atol=1e-6)


def test_max_pool2d_against_torch_if_installed():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(5)
    cases = [
        (2, {}),
        (3, {"stride": 2, "padding": 1}),
        (3, {"stride": 1, "padding": 1, "ceil_mode": True}),
        ((2, 3), {"stride": (1, 2), "dilation": (2, 1), "padding": (1, 1)}),
        ((3, 2), {"stride": (3, 2), "ceil_mode": True}),
    ]
    for kind in ("normal", "ties", "special"):
        if kind == "normal":
            x = rng.standard_normal((2, 3, 13, 14))
        elif kind == "ties":
            x = rng.integers(-2, 3, (2, 3, 13, 14)).astype(np.float64)
        else:
            x = rng.choice([-np.inf, np.inf, np.nan, 0.0, 1.0, -1.0], (2, 3, 13, 14))
        for dtype in (np.float32, np.float64):
            xx = x.astype(dtype)
            for k, kw in cases:
                tx = torch.tensor(xx, requires_grad=True)
                to, ti = F.max_pool2d(tx, k, return_indices=True, **kw)
                g = rng.standard_normal(to.shape).astype(dtype)
                to.backward(torch.tensor(g))
                rx = t(xx, True)
                ro = C.max_pool2d(rx, k, **kw)
                ro.backward(t(g))
                np.testing.assert_array_equal(ro.detach().numpy(), to.detach().numpy())
                np.testing.assert_array_equal(rx.grad.numpy(), tx.grad.numpy())
                with runba.no_grad():
                    np.testing.assert_array_equal(
                        C.max_pool2d(t(xx), k, **kw).numpy(), to.detach().numpy()
                    )
                ri = C.max_pool2d(t(xx), k, return_indices=True, **kw)[1]
                np.testing.assert_array_equal(ri.numpy(), ti.numpy())


def test_seed_cnn_layers_against_torch_if_installed():
    # the benchmark's shapes (examples/mnist_cnn.py), float32, forward and every gradient
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 1, 28, 28)).astype(np.float32)
    w1 = (rng.standard_normal((20, 1, 5, 5)) * 0.2).astype(np.float32)
    b1 = rng.standard_normal(20).astype(np.float32)
    w2 = (rng.standard_normal((40, 20, 5, 5)) * 0.05).astype(np.float32)
    b2 = rng.standard_normal(40).astype(np.float32)
    g = rng.standard_normal((4, 40, 8, 8)).astype(np.float32)

    def net(lib_conv, lib_pool, relu, x, w1, b1, w2, b2):
        h = lib_pool(relu(lib_conv(x, w1, b1)), 2)
        return relu(lib_conv(h, w2, b2))

    tt = [torch.tensor(a, requires_grad=True) for a in (x, w1, b1, w2, b2)]
    to = net(F.conv2d, F.max_pool2d, torch.relu, *tt)
    to.backward(torch.tensor(g))
    rt = [t(a, True) for a in (x, w1, b1, w2, b2)]
    ro = net(C.conv2d, C.max_pool2d, runba.relu, *rt)
    ro.backward(t(g))
    np.testing.assert_allclose(ro.detach().numpy(), to.detach().numpy(), rtol=1e-4, atol=1e-4)
    for r, tg in zip(rt, tt):
        np.testing.assert_allclose(r.grad.numpy(), tg.grad.numpy(), rtol=1e-3, atol=1e-3)
