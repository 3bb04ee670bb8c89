"""2-D pooling kernels over planes (float32 and float64), as cached njit kernels.

Every kernel sees its input as ``(P, H, W)`` planes, ``P = N * C`` (a free reshape of a
contiguous NCHW array), and ``prange``s over planes: a plane's iterations read and write that
plane only, so overlapping windows inside a plane (which share pixels in the backward) are
accumulated serially by one thread and never race.

* Max pooling: :func:`max_pool2d_indices` finds the argmax of each window (PyTorch's rule: the
  first maximum, NaN wins; indices are flat ``ih * W + iw`` offsets into the plane, like
  ``return_indices=True``). The values are then :func:`plane_gather` of those indices, and the
  backward is :func:`plane_scatter_add` (the gather's adjoint) — three small kernels, and the
  backward needs only the int64 indices kept, not the input.
* Average pooling (plain and adaptive) is one pair of kernels over explicit windows: per output
  row ``oh`` the input rows ``[hs[oh], he[oh])``, per column ``[ws[ow], we[ow])``, divided by
  ``div[oh, ow]``. The caller computes the bounds and divisors (stride/padding/ceil_mode,
  count_include_pad, divisor_override, adaptive bins) in numpy, so one compiled kernel per
  dtype serves every pooling variant and every shape.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from runba.kernels.loader import PARALLEL_THRESHOLD, njit_cached
from runba.kernels.threads import after_blas

__all__ = [
    "avg_pool2d_backward",
    "avg_pool2d_forward",
    "max_pool2d_indices",
    "plane_gather",
    "plane_scatter_add",
]


# ------------------------------------------------------------------------------ max pooling
@njit_cached
def _max_plane(x, idx, p, kh, kw, sh, sw, ph, pw, dh, dw):
    h = x.shape[1]
    w = x.shape[2]
    oh_n = idx.shape[1]
    ow_n = idx.shape[2]
    for oh in range(oh_n):
        h0 = oh * sh - ph
        for ow in range(ow_n):
            w0 = ow * sw - pw
            found = False
            m = x[p, 0, 0]
            mi = 0
            for i in range(kh):
                ih = h0 + i * dh
                if ih < 0 or ih >= h:
                    continue
                for j in range(kw):
                    iw = w0 + j * dw
                    if iw < 0 or iw >= w:
                        continue
                    v = x[p, ih, iw]
                    # PyTorch: the first maximum wins, a NaN always replaces
                    if not found or v > m or v != v:
                        m = v
                        mi = ih * w + iw
                        found = True
            idx[p, oh, ow] = mi


@njit_cached(parallel=True)
def _max_pool_indices(x, idx, kh, kw, sh, sw, ph, pw, dh, dw):
    planes = x.shape[0]
    if idx.size * kh * kw < PARALLEL_THRESHOLD:
        for p in range(planes):
            _max_plane(x, idx, p, kh, kw, sh, sw, ph, pw, dh, dw)
    else:
        for p in prange(planes):
            _max_plane(x, idx, p, kh, kw, sh, sw, ph, pw, dh, dw)


@njit_cached
def _gather_plane(x, idx, out, p):
    for k in range(idx.shape[1]):
        out[p, k] = x[p, idx[p, k]]


@njit_cached(parallel=True)
def _plane_gather(x, idx, out):
    if idx.size < PARALLEL_THRESHOLD:
        for p in range(x.shape[0]):
            _gather_plane(x, idx, out, p)
    else:
        for p in prange(x.shape[0]):
            _gather_plane(x, idx, out, p)


@njit_cached
def _scatter_plane(g, idx, out, p):
    for k in range(out.shape[1]):
        out[p, k] = 0
    for k in range(idx.shape[1]):
        out[p, idx[p, k]] += g[p, k]


@njit_cached(parallel=True)
def _plane_scatter_add(g, idx, out):
    if out.size < PARALLEL_THRESHOLD:
        for p in range(out.shape[0]):
            _scatter_plane(g, idx, out, p)
    else:
        for p in prange(out.shape[0]):
            _scatter_plane(g, idx, out, p)


# ------------------------------------------------------------------------------ avg pooling
@njit_cached
def _avg_plane(x, out, p, hs, he, ws, we, div):
    for oh in range(out.shape[1]):
        for ow in range(out.shape[2]):
            s = x.dtype.type(0)
            for ih in range(hs[oh], he[oh]):
                for iw in range(ws[ow], we[ow]):
                    s += x[p, ih, iw]
            out[p, oh, ow] = s / div[oh, ow]


@njit_cached(parallel=True)
def _avg_pool_fwd(x, out, hs, he, ws, we, div):
    if x.size < PARALLEL_THRESHOLD:
        for p in range(x.shape[0]):
            _avg_plane(x, out, p, hs, he, ws, we, div)
    else:
        for p in prange(x.shape[0]):
            _avg_plane(x, out, p, hs, he, ws, we, div)


@njit_cached
def _avg_back_plane(g, dx, p, hs, he, ws, we, div):
    for ih in range(dx.shape[1]):
        for iw in range(dx.shape[2]):
            dx[p, ih, iw] = 0
    for oh in range(g.shape[1]):
        for ow in range(g.shape[2]):
            v = g[p, oh, ow] / div[oh, ow]
            for ih in range(hs[oh], he[oh]):
                for iw in range(ws[ow], we[ow]):
                    dx[p, ih, iw] += v


@njit_cached(parallel=True)
def _avg_pool_bwd(g, dx, hs, he, ws, we, div):
    if dx.size < PARALLEL_THRESHOLD:
        for p in range(dx.shape[0]):
            _avg_back_plane(g, dx, p, hs, he, ws, we, div)
    else:
        for p in prange(dx.shape[0]):
            _avg_back_plane(g, dx, p, hs, he, ws, we, div)


# ------------------------------------------------------------------------------ wrappers
def _planes(a, ndim, name):
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name}: expected float32 or float64, got {a.dtype}")
    a = np.ascontiguousarray(a)
    return a.reshape((-1,) + a.shape[a.ndim - ndim + 1 :]) if a.ndim != ndim else a


def max_pool2d_indices(x, kernel_size, stride, padding, dilation, out_size):
    """int64 argmax offsets (``ih * W + iw``) of each pooling window of ``x`` (..., H, W).

    >>> x = np.array([[[1.0, 5.0], [3.0, 2.0]]])
    >>> max_pool2d_indices(x, (2, 2), (2, 2), (0, 0), (1, 1), (1, 1)).tolist()
    [[[1]]]
    """
    lead = x.shape[:-2]
    xp = _planes(x, 3, "max_pool2d")
    idx = np.empty((xp.shape[0],) + tuple(out_size), np.int64)
    if idx.size:
        with after_blas():  # OpenBLAS workers may still be spinning
            _max_pool_indices(xp, idx, *kernel_size, *stride, *padding, *dilation)
    return idx.reshape(lead + tuple(out_size))


def plane_gather(x, idx):
    """``out[..., k] = x[..., idx[..., k]]`` per plane: ``x`` (..., H, W), ``idx`` (..., OH, OW)
    of flat offsets; returns (..., OH, OW).

    >>> plane_gather(np.array([[[1.0, 5.0], [3.0, 2.0]]]), np.array([[[1, 2]]])).tolist()
    [[[5.0, 3.0]]]
    """
    lead, out_hw = idx.shape[:-2], idx.shape[-2:]
    xp = _planes(x, 3, "plane_gather")
    xp = xp.reshape(xp.shape[0], -1)
    ip = np.ascontiguousarray(idx, np.int64).reshape(xp.shape[0], -1)
    out = np.empty(ip.shape, x.dtype)
    if out.size:
        with after_blas():  # OpenBLAS workers may still be spinning
            _plane_gather(xp, ip, out)
    return out.reshape(lead + out_hw)


def plane_scatter_add(g, idx, in_hw):
    """The adjoint of :func:`plane_gather`: zeros of (..., *in_hw) with ``g`` added at ``idx``.

    >>> plane_scatter_add(np.array([[[1.0, 2.0]]]), np.array([[[1, 1]]]), (2, 2)).tolist()
    [[[0.0, 3.0], [0.0, 0.0]]]
    """
    lead = idx.shape[:-2]
    gp = _planes(g, 3, "plane_scatter_add")
    gp = gp.reshape(gp.shape[0], -1)
    ip = np.ascontiguousarray(idx, np.int64).reshape(gp.shape[0], -1)
    out = np.empty((gp.shape[0], in_hw[0] * in_hw[1]), g.dtype)
    if out.size:
        if ip.size == 0:
            out[...] = 0
        else:
            with after_blas():  # OpenBLAS workers may still be spinning
                _plane_scatter_add(gp, ip, out)
    return out.reshape(lead + tuple(in_hw))


def _bounds(windows):
    hs, he, ws, we, div = windows
    i64 = np.int64
    return (
        np.ascontiguousarray(hs, i64),
        np.ascontiguousarray(he, i64),
        np.ascontiguousarray(ws, i64),
        np.ascontiguousarray(we, i64),
    ), div


def avg_pool2d_forward(x, windows):
    """Window means of ``x`` (..., H, W). ``windows = (hs, he, ws, we, div)``: per output row
    the input rows ``[hs[oh], he[oh])``, per column ``[ws[ow], we[ow])``, and the (OH, OW)
    divisors.

    >>> x = np.arange(4.0).reshape(1, 2, 2)
    >>> avg_pool2d_forward(x, ([0], [2], [0], [2], np.array([[4.0]]))).tolist()
    [[[1.5]]]
    """
    (hs, he, ws, we), div = _bounds(windows)
    lead = x.shape[:-2]
    xp = _planes(x, 3, "avg_pool2d")
    div = np.ascontiguousarray(div, x.dtype)
    out = np.empty((xp.shape[0], len(hs), len(ws)), x.dtype)
    if out.size:
        if xp.size == 0:
            out[...] = 0
        else:
            with after_blas():  # OpenBLAS workers may still be spinning
                _avg_pool_fwd(xp, out, hs, he, ws, we, div)
    return out.reshape(lead + out.shape[1:])


def avg_pool2d_backward(g, windows, in_hw):
    """The adjoint of :func:`avg_pool2d_forward` for input planes of size ``in_hw``.

    >>> avg_pool2d_backward(np.ones((1, 1, 1)), ([0], [2], [0], [2], np.array([[4.0]])),
    ...                     (2, 2)).tolist()
    [[[0.25, 0.25], [0.25, 0.25]]]
    """
    (hs, he, ws, we), div = _bounds(windows)
    lead = g.shape[:-2]
    gp = _planes(g, 3, "avg_pool2d_backward")
    div = np.ascontiguousarray(div, g.dtype)
    dx = np.empty((gp.shape[0],) + tuple(in_hw), g.dtype)
    if dx.size:
        if gp.size == 0:
            dx[...] = 0
        else:
            with after_blas():  # OpenBLAS workers may still be spinning
                _avg_pool_bwd(gp, dx, hs, he, ws, we, div)
    return dx.reshape(lead + tuple(in_hw))
