"""2-D pooling kernels over planes (float32 and float64), as cached njit kernels.

Every kernel sees its input as ``(P, H, W)`` planes, ``P = N * C`` (a free reshape of a
contiguous NCHW array), and ``prange``s over planes: a plane's iterations read and write that
plane only, so overlapping windows inside a plane (which share pixels in the backward) are
accumulated serially by one thread and never race.

* Max pooling: :func:`max_pool2d` writes the window maxima only (no index array at all: what
  inference and the forward need); :func:`max_pool2d_with_indices` writes the maxima and the
  argmax in the same pass, :func:`max_pool2d_indices` returns just the argmax (PyTorch's rule:
  the first maximum, NaN wins; indices are flat ``ih * W + iw`` offsets into the plane, like
  ``return_indices=True``). The backward is :func:`plane_scatter_add` at the argmax, and
  :func:`plane_gather` of the indices gives the values back (the scatter's adjoint). Both
  max kernels are branch-free (see the comment above them).
* Average pooling (plain and adaptive) is one pair of kernels over explicit windows: per output
  row ``oh`` the input rows ``[hs[oh], he[oh])``, per column ``[ws[ow], we[ow])``, divided by
  ``div[oh, ow]``. The caller computes the bounds and divisors (stride/padding/ceil_mode,
  count_include_pad, divisor_override, adaptive bins) in numpy, so one compiled kernel per
  dtype serves every pooling variant and every shape.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from runba.kernels.cpu.conv import _ZERO, _valid  # _valid: output range inside the input
from runba.kernels.loader import PARALLEL_THRESHOLD, njit_cached
from runba.kernels.threads import if_blas_spinning, pool_num_threads

__all__ = [
    "avg_pool2d_backward",
    "avg_pool2d_forward",
    "max_pool2d",
    "max_pool2d_indices",
    "max_pool2d_with_indices",
    "plane_gather",
    "plane_scatter_add",
]


# ------------------------------------------------------------------------------ max pooling
# Branch-free window maxima. The old kernel tested ``if not found or v > m or v != v`` per
# element: on random data that branch mispredicts about every other element (5.6 ms for the
# seed CNN's 64x20x24x24 pool). Here every element updates
#
#     m  = v if v > m else m       the maximum of the non-NaN values (vmaxss / vmaxps)
#     mi = q if v > m else mi      its index (cmov / blend on the same compare)
#     ni = q if v != v else ni     the index of the last NaN (cmovp / blend)
#
# and a NaN, if the window had one, replaces the result at the end. The NaN is tracked apart
# on purpose: ``m = v if (v > m) | (v != v) else m`` is a select on an or-ed condition, which
# LLVM turns into a branch wherever the loop is not vectorised (the planes' rows are short:
# 12 outputs in the seed CNN, below a 32-wide vector body) - a mispredicted branch per element
# again (measured 2.6 ms vs 0.5 ms for the indices).
#
# Two loops: the common 2x2 window with stride 2 (no dilation) over the output columns whose
# window is inside the input, with the four taps unrolled so LLVM vectorises across output
# columns (deinterleaving loads); and a generic per-output loop over the window's valid taps
# for everything else (other windows, and the columns/rows whose window reaches into the
# padding), scalar but branch-free.
#
# Semantics are PyTorch's: row-major window order, the first maximum wins among equals
# (strict ``>``), a NaN always wins (so the last NaN, and the value is NaN), padding never
# wins (it is never read). A window entirely in the padding (possible only with dilation) gives
# -inf at flat index 0.
_U1 = np.uint64(1)
_U2 = np.uint64(2)


@njit(inline="always")
def _vmax(v, m, nn):
    # (maximum of the non-NaN values so far, last NaN so far)
    return (v if v > m else m), (v if v != v else nn)


@njit(inline="always")
def _amax(v, q, m, mi, ni):
    # (maximum of the non-NaN values so far, its index, index of the last NaN so far)
    gt = v > m
    return (v if gt else m), (q if gt else mi), (q if v != v else ni)


@njit(inline="always")
def _win_max(xf, xb, h0, ilo, ihi, dh, w, w0, jlo, jhi, dw):
    # one window, its valid rows [ilo, ihi) and columns [jlo, jhi), tap by tap
    m = xf.dtype.type(-np.inf)
    nn = xf.dtype.type(0)
    for i in range(ilo, ihi):
        r = xb + (h0 + i * dh) * w + w0
        for j in range(jlo, jhi):
            m, nn = _vmax(xf[np.uint64(r + j * dw)], m, nn)
    return nn if nn != nn else m


@njit(inline="always")
def _win_argmax(xf, xb, h0, ilo, ihi, dh, w, w0, jlo, jhi, dw):
    m = xf.dtype.type(-np.inf)
    # the first valid tap stays unless something is larger, so an all -inf window points at
    # its first element, like PyTorch
    mi = (h0 + ilo * dh) * w + w0 + jlo * dw if ilo < ihi and jlo < jhi else 0
    ni = np.int64(-1)
    for i in range(ilo, ihi):
        r = (h0 + i * dh) * w + w0
        for j in range(jlo, jhi):
            q = r + j * dw
            m, mi, ni = _amax(xf[np.uint64(xb + q)], q, m, mi, ni)
    if ni >= 0:
        return xf[np.uint64(xb + ni)], ni
    return m, mi


@njit(inline="always")
def _col_ranges(ow_n, kw, sw, pw, dw, w):
    # per output column, its window's valid taps [jlo, jhi)
    jlo = np.empty(ow_n, np.int64)
    jhi = np.empty(ow_n, np.int64)
    for ow in range(ow_n):
        jlo[ow], jhi[ow] = _valid(ow * sw - pw, dw, kw, w)
    return jlo, jhi


@njit_cached
def _max_planes(xf, of, p0, p1, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh_n, ow_n):
    """Values only: ``of`` (planes * OH * OW) gets each window's maximum."""
    u = np.uint64
    ninf = xf.dtype.type(-np.inf)
    zero = xf.dtype.type(0)
    jlo, jhi = _col_ranges(ow_n, kw, sw, pw, dw, w)
    fast = kh == 2 and kw == 2 and sw == 2 and dh == 1 and dw == 1
    # output columns whose 2-wide window lies inside the input
    wlo, whi = _valid(-pw, 2, ow_n, w - 1) if fast else (ow_n, ow_n)
    for p in range(p0, p1):
        xb = p * h * w
        for oh in range(oh_n):
            ob = (p * oh_n + oh) * ow_n
            h0 = oh * sh - ph
            ilo, ihi = _valid(h0, dh, kh, h)
            lo, hi = (wlo, whi) if ihi - ilo == 2 else (ow_n, ow_n)
            if lo < hi:
                r0 = u(xb + h0 * w + lo * 2 - pw)
                r1 = r0 + u(w)
                o = u(ob + lo)
                for k in range(u(hi - lo)):
                    m, nn = _vmax(xf[r0 + _U2 * k], ninf, zero)
                    m, nn = _vmax(xf[r0 + _U2 * k + _U1], m, nn)
                    m, nn = _vmax(xf[r1 + _U2 * k], m, nn)
                    m, nn = _vmax(xf[r1 + _U2 * k + _U1], m, nn)
                    of[o + k] = nn if nn != nn else m
            # every other column (all of them unless the fast loop ran): tap by tap
            for ow in range(lo):
                of[u(ob + ow)] = _win_max(
                    xf, xb, h0, ilo, ihi, dh, w, ow * sw - pw, jlo[ow], jhi[ow], dw
                )
            for ow in range(hi, ow_n):
                of[u(ob + ow)] = _win_max(
                    xf, xb, h0, ilo, ihi, dh, w, ow * sw - pw, jlo[ow], jhi[ow], dw
                )


@njit_cached
def _argmax_planes(xf, of, idf, p0, p1, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh_n, ow_n):
    """Values and int64 argmax offsets ``ih * W + iw`` in one pass."""
    u = np.uint64
    ninf = xf.dtype.type(-np.inf)
    jlo, jhi = _col_ranges(ow_n, kw, sw, pw, dw, w)
    fast = kh == 2 and kw == 2 and sw == 2 and dh == 1 and dw == 1
    wlo, whi = _valid(-pw, 2, ow_n, w - 1) if fast else (ow_n, ow_n)
    for p in range(p0, p1):
        xb = p * h * w
        for oh in range(oh_n):
            ob = (p * oh_n + oh) * ow_n
            h0 = oh * sh - ph
            ilo, ihi = _valid(h0, dh, kh, h)
            lo, hi = (wlo, whi) if ihi - ilo == 2 else (ow_n, ow_n)
            if lo < hi:
                q0 = h0 * w + lo * 2 - pw  # offset of the first window's first tap
                r0 = u(xb + q0)
                r1 = r0 + u(w)
                o = u(ob + lo)
                for k in range(u(hi - lo)):
                    q = q0 + 2 * np.int64(k)
                    m, mi, ni = _amax(xf[r0 + _U2 * k], q, ninf, q, np.int64(-1))
                    m, mi, ni = _amax(xf[r0 + _U2 * k + _U1], q + 1, m, mi, ni)
                    m, mi, ni = _amax(xf[r1 + _U2 * k], q + w, m, mi, ni)
                    m, mi, ni = _amax(xf[r1 + _U2 * k + _U1], q + w + 1, m, mi, ni)
                    nan = ni >= 0
                    of[o + k] = xf[u(xb + ni)] if nan else m
                    idf[o + k] = ni if nan else mi
            for ow in range(lo):
                of[u(ob + ow)], idf[u(ob + ow)] = _win_argmax(
                    xf, xb, h0, ilo, ihi, dh, w, ow * sw - pw, jlo[ow], jhi[ow], dw
                )
            for ow in range(hi, ow_n):
                of[u(ob + ow)], idf[u(ob + ow)] = _win_argmax(
                    xf, xb, h0, ilo, ihi, dh, w, ow * sw - pw, jlo[ow], jhi[ow], dw
                )


@njit_cached(parallel=True)
def _max_pool(x, out, kh, kw, sh, sw, ph, pw, dh, dw, chunks):
    planes, h, w = x.shape
    oh_n, ow_n = out.shape[1], out.shape[2]
    xf = x.reshape(-1)
    of = out.reshape(-1)
    if out.size * kh * kw < PARALLEL_THRESHOLD:
        _max_planes(xf, of, _ZERO, planes, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh_n, ow_n)
        return
    chunks = min(planes, chunks)
    for c in prange(chunks):
        p0 = c * planes // chunks
        p1 = (c + 1) * planes // chunks
        _max_planes(xf, of, p0, p1, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh_n, ow_n)


@njit_cached(parallel=True)
def _argmax_pool(x, out, idx, kh, kw, sh, sw, ph, pw, dh, dw, chunks):
    planes, h, w = x.shape
    oh_n, ow_n = out.shape[1], out.shape[2]
    xf = x.reshape(-1)
    of = out.reshape(-1)
    idf = idx.reshape(-1)
    if out.size * kh * kw < PARALLEL_THRESHOLD:
        _argmax_planes(xf, of, idf, _ZERO, planes, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh_n, ow_n)
        return
    chunks = min(planes, chunks)
    for c in prange(chunks):
        p0 = c * planes // chunks
        p1 = (c + 1) * planes // chunks
        _argmax_planes(xf, of, idf, p0, p1, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh_n, ow_n)


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
            _gather_plane(x, idx, out, np.int64(p))  # prange's index is unsigned


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
            _scatter_plane(g, idx, out, np.int64(p))  # prange's index is unsigned


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
            _avg_plane(x, out, np.int64(p), hs, he, ws, we, div)  # prange's index is unsigned


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
            _avg_back_plane(g, dx, np.int64(p), hs, he, ws, we, div)  # prange index: unsigned


# ------------------------------------------------------------------------------ wrappers
def _planes(a, ndim, name):
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name}: expected float32 or float64, got {a.dtype}")
    a = np.ascontiguousarray(a)
    return a.reshape((-1,) + a.shape[a.ndim - ndim + 1 :]) if a.ndim != ndim else a


def _chunks() -> int:
    # a few chunks per thread balance uneven planes; read at call time (set_num_threads)
    return 4 * pool_num_threads()


def _max_pool_args(x, out_size, name):
    lead = x.shape[:-2]
    xp = _planes(x, 3, name)
    return lead, xp, (xp.shape[0],) + tuple(out_size)


def max_pool2d(x, kernel_size, stride, padding, dilation, out_size):
    """Window maxima of ``x`` (..., H, W) -> (..., *out_size); no indices are computed.

    >>> x = np.array([[[1.0, 5.0], [3.0, 2.0]]])
    >>> max_pool2d(x, (2, 2), (2, 2), (0, 0), (1, 1), (1, 1)).tolist()
    [[[5.0]]]
    """
    lead, xp, shape = _max_pool_args(x, out_size, "max_pool2d")
    out = np.empty(shape, xp.dtype)
    if out.size:
        with if_blas_spinning():  # OpenBLAS workers may still spin
            _max_pool(xp, out, *kernel_size, *stride, *padding, *dilation, _chunks())
    return out.reshape(lead + tuple(out_size))


def max_pool2d_with_indices(x, kernel_size, stride, padding, dilation, out_size):
    """(window maxima, int64 argmax offsets ``ih * W + iw``) of ``x`` (..., H, W), one pass.

    >>> x = np.array([[[1.0, 5.0], [3.0, 2.0]]])
    >>> v, i = max_pool2d_with_indices(x, (2, 2), (2, 2), (0, 0), (1, 1), (1, 1))
    >>> v.tolist(), i.tolist()
    ([[[5.0]]], [[[1]]])
    """
    lead, xp, shape = _max_pool_args(x, out_size, "max_pool2d")
    out = np.empty(shape, xp.dtype)
    idx = np.empty(shape, np.int64)
    if out.size:
        with if_blas_spinning():  # OpenBLAS workers may still spin
            _argmax_pool(xp, out, idx, *kernel_size, *stride, *padding, *dilation, _chunks())
    full = lead + tuple(out_size)
    return out.reshape(full), idx.reshape(full)


def max_pool2d_indices(x, kernel_size, stride, padding, dilation, out_size):
    """int64 argmax offsets (``ih * W + iw``) of each pooling window of ``x`` (..., H, W).

    >>> x = np.array([[[1.0, 5.0], [3.0, 2.0]]])
    >>> max_pool2d_indices(x, (2, 2), (2, 2), (0, 0), (1, 1), (1, 1)).tolist()
    [[[1]]]
    """
    return max_pool2d_with_indices(x, kernel_size, stride, padding, dilation, out_size)[1]


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
        with if_blas_spinning():  # OpenBLAS workers may still spin
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
            with if_blas_spinning():  # OpenBLAS workers may still spin
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
            with if_blas_spinning():  # OpenBLAS workers may still spin
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
            with if_blas_spinning():  # OpenBLAS workers may still spin
                _avg_pool_bwd(gp, dx, hs, he, ws, we, div)
    return dx.reshape(lead + tuple(in_hw))
