"""runba.kernels.cpu.conv / pool called directly: im2col, col2im and max pooling against
element-by-element float64 references over random geometries (padding, stride, dilation,
asymmetric output sizes, ties, NaN and infinities), in both dtypes and both the serial and the
prange branch. The ops-level tests (tests/test_conv_pool.py) go through the registry."""

import numpy as np
import pytest

from runba.kernels import threads
from runba.kernels.cpu import conv as K
from runba.kernels.cpu import pool as P
from runba.kernels.loader import PARALLEL_THRESHOLD

RNG = np.random.default_rng(20240611)


# ------------------------------------------------------------------ references
def ref_im2col(x, k, s, p, d, o):
    """cols[(c*kh + i)*kw + j, n, oh*OW + ow] = x[n, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw]
    (0 outside the input), one element at a time."""
    n, c, h, w = x.shape
    cols = np.zeros((c * k[0] * k[1], n, o[0] * o[1]), np.float64)
    for ci in range(c):
        for i in range(k[0]):
            for j in range(k[1]):
                row = (ci * k[0] + i) * k[1] + j
                for a in range(o[0]):
                    for b in range(o[1]):
                        ih, iw = a * s[0] - p[0] + i * d[0], b * s[1] - p[1] + j * d[1]
                        if 0 <= ih < h and 0 <= iw < w:
                            cols[row, :, a * o[1] + b] = x[:, ci, ih, iw]
    return cols


def ref_col2im(cols, shape, k, s, p, d, o):
    n, c, h, w = shape
    dx = np.zeros(shape, np.float64)
    for ci in range(c):
        for i in range(k[0]):
            for j in range(k[1]):
                row = (ci * k[0] + i) * k[1] + j
                for a in range(o[0]):
                    for b in range(o[1]):
                        ih, iw = a * s[0] - p[0] + i * d[0], b * s[1] - p[1] + j * d[1]
                        if 0 <= ih < h and 0 <= iw < w:
                            dx[:, ci, ih, iw] += cols[row, :, a * o[1] + b]
    return dx


def ref_max_pool(x, k, s, p, d, o):
    """PyTorch's CPU rule written out: windows in row-major order, ``take if v > m or
    isnan(v)`` (first maximum among equals, last NaN), padding never read; a window with no
    element inside the input gives -inf at index 0."""
    *lead, h, w = x.shape
    xs = x.reshape(-1, h, w)
    out = np.full((xs.shape[0],) + o, -np.inf, np.float64)
    idx = np.zeros((xs.shape[0],) + o, np.int64)
    for pl in range(xs.shape[0]):
        for a in range(o[0]):
            for b in range(o[1]):
                m, mi, seen = -np.inf, 0, False
                for i in range(k[0]):
                    for j in range(k[1]):
                        ih, iw = a * s[0] - p[0] + i * d[0], b * s[1] - p[1] + j * d[1]
                        if 0 <= ih < h and 0 <= iw < w:
                            v = float(xs[pl, ih, iw])
                            if not seen:
                                mi, seen = ih * w + iw, True
                            if v > m or v != v:
                                m, mi = v, ih * w + iw
                out[pl, a, b] = m
                idx[pl, a, b] = mi
    return out.reshape(tuple(lead) + o), idx.reshape(tuple(lead) + o)


def _out(size, k, s, p, d, extra=0):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1 + extra


def _random_conv_geometry(rng):
    while True:
        n, c = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        h, w = int(rng.integers(1, 11)), int(rng.integers(1, 35))
        k = tuple(int(v) for v in rng.integers(1, 5, 2))
        s = tuple(int(v) for v in rng.integers(1, 4, 2))
        d = tuple(int(v) for v in rng.integers(1, 3, 2))
        p = tuple(int(v) for v in rng.integers(0, 4, 2))
        # asymmetric padding: the bottom/right may pad one less (out_size decides)
        o = tuple(
            max(_out(sz, kk, ss, pp, dd) - int(rng.integers(0, 2)), 1)
            for sz, kk, ss, pp, dd in zip((h, w), k, s, p, d)
        )
        if all(_out(sz, kk, ss, pp, dd) >= 1 for sz, kk, ss, pp, dd in zip((h, w), k, s, p, d)):
            return (n, c, h, w), k, s, p, d, o


# ------------------------------------------------------------------ im2col / col2im
@pytest.mark.parametrize("seed", range(6))
def test_im2col_col2im_random_geometries(seed):
    rng = np.random.default_rng(seed)
    for _ in range(25):
        shape, k, s, p, d, o = _random_conv_geometry(rng)
        x = rng.standard_normal(shape)
        ref = ref_im2col(x, k, s, p, d, o)
        for dt in (np.float64, np.float32):
            cols = K.im2col(x.astype(dt), k, s, p, d, o)
            assert cols.dtype == dt and cols.shape == ref.shape
            np.testing.assert_array_equal(cols, ref.astype(dt), err_msg=f"{shape} {k} {s} {p} {d}")
        g = rng.standard_normal(ref.shape)
        want = ref_col2im(g, shape, k, s, p, d, o)
        np.testing.assert_allclose(K.col2im(g, shape, k, s, p, d, o), want, rtol=1e-13, atol=1e-13)
        got32 = K.col2im(g.astype(np.float32), shape, k, s, p, d, o)
        assert got32.dtype == np.float32
        np.testing.assert_allclose(got32, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "shape,k,s,p,d",
    [
        ((64, 1, 28, 28), (5, 5), (1, 1), (0, 0), (1, 1)),  # seed CNN layer 1: rows of 24
        ((8, 20, 12, 12), (5, 5), (1, 1), (0, 0), (1, 1)),  # seed CNN layer 2: rows of 8
        ((6, 6, 17, 30), (3, 3), (1, 1), (1, 1), (1, 1)),  # "same" 3x3: padding columns
        ((16, 8, 33, 31), (3, 4), (2, 3), (1, 2), (2, 1)),  # strided, dilated, padded
    ],
)
def test_im2col_col2im_prange_branch(shape, k, s, p, d):
    # big enough for the prange branch; with BLAS at one thread after_blas() gives numba
    # every core, so the chunks really run concurrently on a multi-core machine
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape)
    o = tuple(_out(sz, kk, ss, pp, dd) for sz, kk, ss, pp, dd in zip(shape[2:], k, s, p, d))
    ref = ref_im2col(x, k, s, p, d, o)
    assert ref.size >= PARALLEL_THRESHOLD
    g = rng.standard_normal(ref.shape)
    want = ref_col2im(g, shape, k, s, p, d, o)
    with threads.blas_threads(1):
        np.testing.assert_array_equal(K.im2col(x, k, s, p, d, o), ref)
        np.testing.assert_array_equal(
            K.im2col(x.astype(np.float32), k, s, p, d, o), ref.astype(np.float32)
        )
        np.testing.assert_allclose(K.col2im(g, shape, k, s, p, d, o), want, rtol=1e-12, atol=1e-12)


def test_im2col_col2im_out_argument():
    x = RNG.standard_normal((2, 3, 6, 5))
    ref = ref_im2col(x, (3, 3), (1, 1), (1, 1), (1, 1), (6, 5))
    out = np.full(ref.shape, np.nan)  # every element is written, padding included
    assert K.im2col(x, (3, 3), (1, 1), (1, 1), (1, 1), (6, 5), out=out) is out
    np.testing.assert_array_equal(out, ref)
    dx = np.full(x.shape, np.nan)
    assert K.col2im(ref, x.shape, (3, 3), (1, 1), (1, 1), (1, 1), (6, 5), out=dx) is dx
    np.testing.assert_allclose(dx, ref_col2im(ref, x.shape, (3, 3), (1, 1), (1, 1), (1, 1), (6, 5)))
    with pytest.raises(ValueError, match="C-contiguous"):
        K.im2col(x, (3, 3), (1, 1), (1, 1), (1, 1), (6, 5), out=np.empty(ref.shape[::-1]).T)
    with pytest.raises(ValueError, match="C-contiguous"):
        K.col2im(ref, x.shape, (3, 3), (1, 1), (1, 1), (1, 1), (6, 5), out=np.empty((2, 3, 6, 4)))


def test_im2col_noncontiguous_input():
    x = RNG.standard_normal((3, 2, 7, 9)).transpose(1, 0, 2, 3)  # (2, 3, 7, 9), not contiguous
    ref = ref_im2col(x, (2, 3), (1, 2), (1, 1), (1, 1), (8, 5))
    np.testing.assert_array_equal(K.im2col(x, (2, 3), (1, 2), (1, 1), (1, 1), (8, 5)), ref)


# ------------------------------------------------------------------ max pooling
def _random_pool_geometry(rng):
    while True:
        lead = tuple(int(v) for v in rng.integers(1, 3, int(rng.integers(1, 3))))
        h, w = int(rng.integers(1, 10)), int(rng.integers(1, 30))
        k = tuple(int(v) for v in rng.integers(1, 4, 2))
        s = tuple(int(v) for v in rng.integers(1, 4, 2))
        d = tuple(int(v) for v in rng.integers(1, 3, 2))
        # PyTorch's limit: padding at most half the (effective) kernel
        p = tuple(min(int(rng.integers(0, 3)), (dd * (kk - 1) + 1) // 2) for kk, dd in zip(k, d))
        # ceil_mode adds a last window that starts inside the input (or its left padding)
        o = tuple(
            _out(
                sz,
                kk,
                ss,
                pp,
                dd,
                int(rng.random() < 0.3 and _out(sz, kk, ss, pp, dd) * ss < sz + pp),
            )
            for sz, kk, ss, pp, dd in zip((h, w), k, s, p, d)
        )
        if min(o) >= 1:
            return lead + (h, w), k, s, p, d, o


def _pool_data(rng, shape, kind):
    if kind == "normal":
        return rng.standard_normal(shape)
    if kind == "ties":
        return rng.integers(-2, 3, shape).astype(np.float64)
    return rng.choice([-np.inf, np.inf, np.nan, 0.0, 1.0, -1.0, -0.0], shape)


@pytest.mark.parametrize("kind", ["normal", "ties", "special"])
@pytest.mark.parametrize("seed", range(3))
def test_max_pool_random_geometries(kind, seed):
    rng = np.random.default_rng(100 * seed + len(kind))
    for _ in range(30):
        shape, k, s, p, d, o = _random_pool_geometry(rng)
        x = _pool_data(rng, shape, kind)
        for dt in (np.float64, np.float32):
            xx = x.astype(dt)
            rv, ri = ref_max_pool(xx, k, s, p, d, o)
            msg = f"{shape} k={k} s={s} p={p} d={d} o={o}"
            v, i = P.max_pool2d_with_indices(xx, k, s, p, d, o)
            assert v.dtype == dt and i.dtype == np.int64 and v.shape == i.shape == rv.shape
            np.testing.assert_array_equal(v, rv.astype(dt), err_msg=msg)
            np.testing.assert_array_equal(i, ri, err_msg=msg)
            np.testing.assert_array_equal(P.max_pool2d_indices(xx, k, s, p, d, o), ri)
            vo = P.max_pool2d(xx, k, s, p, d, o)  # the values-only kernel
            assert vo.dtype == dt
            np.testing.assert_array_equal(vo, rv.astype(dt), err_msg=msg)


def test_max_pool_ties_nan_and_infinities_by_hand():
    x = np.array(
        [
            [-np.inf, -np.inf, 1.0, np.nan, 2.0, np.nan, np.nan, 3.0],
            [-np.inf, -np.inf, 5.0, 5.0, 2.0, 7.0, 7.0, 3.0],
        ]
    )[None]
    v, i = P.max_pool2d_with_indices(x, (1, 2), (1, 2), (0, 0), (1, 1), (2, 4))
    # all -inf: the first element; NaN wins over anything; the last NaN; first of equal maxima
    np.testing.assert_array_equal(v[0], [[-np.inf, np.nan, np.nan, np.nan], [-np.inf, 5, 7, 7]])
    np.testing.assert_array_equal(i[0], [[0, 3, 5, 6], [8, 10, 13, 14]])
    v4, i4 = P.max_pool2d_with_indices(x, (2, 4), (2, 4), (0, 0), (1, 1), (1, 2))
    np.testing.assert_array_equal(i4[0], [[3, 6]])  # row-major order: the last NaN
    assert np.isnan(v4).all()
    np.testing.assert_array_equal(P.max_pool2d(x, (2, 4), (2, 4), (0, 0), (1, 1), (1, 2)), v4)
    # -0.0 and 0.0 are equal: the first one wins, its sign kept
    z = np.array([[[-0.0, 0.0]]])
    vz, iz = P.max_pool2d_with_indices(z, (1, 2), (1, 1), (0, 0), (1, 1), (1, 1))
    assert iz[0, 0, 0] == 0 and np.signbit(vz[0, 0, 0])


def test_max_pool_window_entirely_in_padding():
    # dilation can put every tap of a window into the padding: -inf, index 0
    x = np.array([[[5.0, 7.0]]])
    v, i = P.max_pool2d_with_indices(x, (1, 2), (1, 1), (0, 1), (1, 3), (1, 1))
    assert v[0, 0, 0] == -np.inf and i[0, 0, 0] == 0
    assert P.max_pool2d(x, (1, 2), (1, 1), (0, 1), (1, 3), (1, 1))[0, 0, 0] == -np.inf


@pytest.mark.parametrize(
    "k,s,p,o", [((2, 2), (2, 2), (0, 0), (12, 12)), ((3, 3), (2, 2), (1, 1), (12, 12))]
)
def test_max_pool_prange_branch(k, s, p, o):
    x = RNG.standard_normal((16, 20, 24, 24)).astype(np.float32)
    x[0, 0, 3, 5] = np.nan
    rv, ri = ref_max_pool(x, k, s, p, (1, 1), o)
    assert rv.size * k[0] * k[1] >= PARALLEL_THRESHOLD
    with threads.blas_threads(1):
        v, i = P.max_pool2d_with_indices(x, k, s, p, (1, 1), o)
        vo = P.max_pool2d(x, k, s, p, (1, 1), o)
    np.testing.assert_array_equal(v, rv.astype(np.float32))
    np.testing.assert_array_equal(i, ri)
    np.testing.assert_array_equal(vo, rv.astype(np.float32))


def test_max_pool_noncontiguous_input_and_errors():
    x = RNG.standard_normal((5, 2, 6, 7)).transpose(1, 0, 2, 3)
    rv, ri = ref_max_pool(x, (2, 2), (2, 2), (0, 0), (1, 1), (3, 3))
    np.testing.assert_array_equal(P.max_pool2d(x, (2, 2), (2, 2), (0, 0), (1, 1), (3, 3)), rv)
    np.testing.assert_array_equal(
        P.max_pool2d_indices(x, (2, 2), (2, 2), (0, 0), (1, 1), (3, 3)), ri
    )
    with pytest.raises(TypeError, match="float32 or float64"):
        P.max_pool2d(np.zeros((1, 2, 2), np.int64), (2, 2), (2, 2), (0, 0), (1, 1), (1, 1))


def test_plane_gather_and_scatter_at_max_pool_indices():
    # the backward of max pooling: scatter_add at the argmax is gather's adjoint
    x = RNG.standard_normal((3, 2, 7, 6))
    idx = P.max_pool2d_indices(x, (3, 3), (1, 2), (1, 1), (1, 1), (7, 3))
    rv, _ = ref_max_pool(x, (3, 3), (1, 2), (1, 1), (1, 1), (7, 3))
    np.testing.assert_array_equal(P.plane_gather(x, idx), rv)
    g = RNG.standard_normal(idx.shape)
    dx = P.plane_scatter_add(g, idx, (7, 6))
    want = np.zeros((6, 42))
    for pl, (gg, ii) in enumerate(zip(g.reshape(6, -1), idx.reshape(6, -1))):
        np.add.at(want[pl], ii, gg)
    np.testing.assert_allclose(dx.reshape(6, -1), want, rtol=1e-14)


_ONE_BUILD_CHILD = """
import json
import numpy as np
from runba.kernels import threads
from runba.kernels.cpu import conv as K
from runba.kernels.cpu import pool as P
from runba.kernels.loader import PARALLEL_THRESHOLD
from runba.ops.conv import _avg_windows

rng = np.random.default_rng(0)
for planes in (2, 400):  # serial branch, prange branch
    x = rng.standard_normal((planes, 1, 24, 24)).astype(np.float32)
    assert planes == 2 or x.size >= PARALLEL_THRESHOLD
    cols = K.im2col(x, (3, 3), (1, 1), (1, 1), (1, 1), (24, 24))
    K.col2im(cols, x.shape, (3, 3), (1, 1), (1, 1), (1, 1), (24, 24))
    with threads.blas_threads(1):
        P.max_pool2d(x, (2, 2), (2, 2), (0, 0), (1, 1), (12, 12))
        P.max_pool2d_with_indices(x, (2, 2), (2, 2), (0, 0), (1, 1), (12, 12))
    xp = rng.standard_normal((planes * 16, 24, 24)).astype(np.float32)
    ip = rng.integers(0, 24 * 24, (planes * 16, 12, 12))
    P.plane_scatter_add(P.plane_gather(xp, ip), ip, (24, 24))
    windows = _avg_windows((24, 24), (12, 12), (2, 2), (2, 2), (0, 0), True, None)
    P.avg_pool2d_backward(P.avg_pool2d_forward(x, windows), windows, (24, 24))
helpers = [K._im2col_planes, K._col2im_planes, P._max_planes, P._argmax_planes,
           P._gather_plane, P._scatter_plane, P._avg_plane, P._avg_back_plane]
print(json.dumps({h.__name__: [str(s) for s in h.signatures] for h in helpers}))
"""


def test_plane_helpers_compile_one_build_for_both_size_branches(tmp_path):
    """Each kernel's serial branch and prange branch call its plane helper with int64 plane
    numbers: a literal 0 or prange's unsigned index would compile the helper twice (~0.7 s
    each on a cold start). In a fresh process and cache (a helper loaded with its caller
    from the disk cache never compiles, so it shows no builds): one build each, after both
    branches ran."""
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, RUNBA_CACHE_DIR=str(tmp_path))
    r = subprocess.run(
        [sys.executable, "-c", _ONE_BUILD_CHILD], env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    builds = json.loads(r.stdout.strip().splitlines()[-1])
    for name, sigs in builds.items():
        assert len(sigs) == 1, (name, sigs)
