"""im2col / col2im for NCHW convolution (float32 and float64), as cached njit kernels.

Layout (chosen so every GEMM of a convolution is ONE BLAS call over the whole batch):

    x     (N, C, H, W)                       C-contiguous input
    cols  (C * kh * kw, N, OH * OW)          row ``(c * kh + i) * kw + j``, column ``(n, oh, ow)``

The rows are channel-major, so with ``groups`` the rows of group ``g`` are the contiguous block
``cols[g * K_g:(g + 1) * K_g]`` and ``cols.reshape(G, K_g, N * L)`` is a view: the forward is
``W.reshape(G, Cout_g, K_g) @ cols_g`` (one batched matmul over groups), the weight gradient
``gT_g @ cols_g^T`` with an inner dimension of ``N * OH * OW`` (one big GEMM, not N small ones),
and the input gradient is ``col2im(W_g^T @ gT_g)``.

Padding is given as (top, left) plus the output size: asymmetric padding ("same" with an even
kernel pads one more at the bottom/right, like PyTorch) needs nothing else, positions outside
the input read as 0.

Loops: per (plane, kernel tap ``(i, j)``) the output rows ``[hlo, hhi)`` and columns
``[lo, hi)`` whose input lies inside the image are computed once; the padding is written as
zero runs (whole rows above/below, a few columns left/right) and the copy (im2col) or
accumulate (col2im) loop over ``[lo, hi)`` has no bounds test. The arrays are indexed as flat
views with unsigned offsets (numba's wraparound select on signed indices keeps LLVM from
vectorising), and a stride-1 row is copied in blocks of 8 (the seed CNN's rows are 8 and 24
long, below the 32-element vector body of a plain loop). Measured on the seed CNN's second
layer (2-core EPYC, medians; docs/kernels.md): im2col 3.35 -> 1.80 ms, col2im 5.83 -> 1.47
ms, where a numpy copy of its 8 MB ``cols`` takes 0.7-0.8 ms.

Parallelism: ``prange`` over chunks of the ``N * C`` (image, channel) planes, taken in
channel-major order (``t = c * N + n``: consecutive planes write/read the same ``kh*kw`` rows of
``cols``, one image block after another - a few long streams). im2col's plane ``(n, c)``
writes rows ``c*kh*kw ...`` at column block ``n`` only; col2im's plane writes ``dx[n, c]``
only, so iterations never write the same element. Below ``PARALLEL_THRESHOLD`` elements the
same serial helper runs in one call (fork/join would cost more than it saves); one compiled
kernel per dtype serves every shape and both branches. The per-plane bodies are separate
(non-inlined) njit functions: inlined into the ``parallel=True`` kernel they took ~3x longer to
compile.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from runba.kernels.loader import PARALLEL_THRESHOLD, njit_cached
from runba.kernels.threads import if_blas_spinning, pool_num_threads

# The first plane of a serial call (conv's and pool's plane helpers): a literal 0 there
# would type as Literal[int](0) and compile the helper a second time (~0.7 s each, cold)
# next to the prange branch's int64 build.
_ZERO = np.int64(0)

__all__ = ["col2im", "conv_out_size", "im2col"]


_U0 = np.uint64(0)
_U8 = np.uint64(8)


@njit(inline="always")
def _valid(start, step, n_out, size):
    """``[lo, hi)``: the outputs ``o < n_out`` whose input ``start + o * step`` is in
    ``[0, size)`` (``step >= 1``, so they are one contiguous range)."""
    lo = 0
    while lo < n_out and start + lo * step < 0:
        lo += 1
    hi = n_out
    while hi > lo and start + (hi - 1) * step >= size:
        hi -= 1
    return lo, hi


@njit(inline="always")
def _zero(a, at, m):
    for k in range(m):
        a[at + k] = 0


@njit(inline="always")
def _copy(dst, d, src, s, m):
    # blocks of 8 as straight-line code: LLVM merges the 8 consecutive copies into one 8-wide
    # load and store (checked in the asm), where a plain loop (vector body of 32) leaves an
    # 8- or 24-long row scalar. (This does not work for col2im's ``+=``: merging arithmetic
    # needs the SLP vectoriser, which numba turns off.)
    k = _U0
    while k + _U8 <= m:
        a0 = src[s + k]
        a1 = src[s + k + np.uint64(1)]
        a2 = src[s + k + np.uint64(2)]
        a3 = src[s + k + np.uint64(3)]
        a4 = src[s + k + np.uint64(4)]
        a5 = src[s + k + np.uint64(5)]
        a6 = src[s + k + np.uint64(6)]
        a7 = src[s + k + np.uint64(7)]
        dst[d + k] = a0
        dst[d + k + np.uint64(1)] = a1
        dst[d + k + np.uint64(2)] = a2
        dst[d + k + np.uint64(3)] = a3
        dst[d + k + np.uint64(4)] = a4
        dst[d + k + np.uint64(5)] = a5
        dst[d + k + np.uint64(6)] = a6
        dst[d + k + np.uint64(7)] = a7
        k += _U8
    while k < m:
        dst[d + k] = src[s + k]
        k += np.uint64(1)


# The kernels index flat views with unsigned offsets: numba wraps negative signed indices
# (a select per access), which keeps LLVM from seeing consecutive addresses and leaves the
# copy loops scalar (measured 2-4x slower). Every offset below is >= 0 by construction.
@njit_cached
def _im2col_planes(xf, cf, t0, t1, n_n, c_n, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh_n, ow_n):
    u = np.uint64
    ll = oh_n * ow_n
    owu = u(ow_n)
    for t in range(t0, t1):
        # channel-major order: consecutive planes write the same kh*kw rows of cols one
        # image block after the other (a few long write streams instead of C*kh*kw short ones)
        c = t // n_n
        n = t - c * n_n
        xb = (n * c_n + c) * h * w
        for i in range(kh):
            hlo, hhi = _valid(i * dh - ph, sh, oh_n, h)  # output rows inside the input
            for j in range(kw):
                row = (c * kh + i) * kw + j
                off = j * dw - pw
                lo, hi = _valid(off, sw, ow_n, w)  # output columns inside the input
                d0 = u((row * n_n + n) * ll)
                # rows of the padding: one zero run above, one below
                _zero(cf, d0, u(hlo * ow_n))
                _zero(cf, d0 + u(hhi * ow_n), u((oh_n - hhi) * ow_n))
                if hi <= lo or hhi <= hlo:
                    _zero(cf, d0 + u(hlo * ow_n), u(max(hhi - hlo, 0) * ow_n))
                    continue
                m = u(hi - lo)
                d = d0 + u(hlo * ow_n + lo)
                s = u(xb + (hlo * sh - ph + i * dh) * w + off + lo * sw)
                sstep = u(sh * w)
                lou = u(lo)
                tail = u(ow_n - hi)
                swu = u(sw)
                for _ in range(hlo, hhi):
                    _zero(cf, d - lou, lou)  # left padding columns
                    if sw == 1:
                        _copy(cf, d, xf, s, m)
                    else:
                        for k in range(m):
                            cf[d + k] = xf[s + k * swu]
                    _zero(cf, d + m, tail)  # right padding columns
                    d += owu
                    s += sstep


@njit_cached
def _col2im_planes(cf, df, t0, t1, n_n, c_n, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh_n, ow_n):
    u = np.uint64
    ll = oh_n * ow_n
    owu = u(ow_n)
    for t in range(t0, t1):
        c = t // n_n
        n = t - c * n_n
        xb = (n * c_n + c) * h * w
        _zero(df, u(xb), u(h * w))
        for i in range(kh):
            hlo, hhi = _valid(i * dh - ph, sh, oh_n, h)
            for j in range(kw):
                row = (c * kh + i) * kw + j
                off = j * dw - pw
                lo, hi = _valid(off, sw, ow_n, w)  # no bounds test in the accumulate loop
                if hi <= lo:
                    continue
                m = u(hi - lo)
                s = u((row * n_n + n) * ll + hlo * ow_n + lo)
                d = u(xb + (hlo * sh - ph + i * dh) * w + off + lo * sw)
                dstep = u(sh * w)
                swu = u(sw)
                for _ in range(hlo, hhi):
                    if sw == 1:
                        for k in range(m):
                            df[d + k] += cf[s + k]
                    else:
                        for k in range(m):
                            df[d + k * swu] += cf[s + k]
                    s += owu
                    d += dstep


@njit_cached(parallel=True)
def _im2col(x, cols, kh, kw, sh, sw, ph, pw, dh, dw, oh_n, ow_n, chunks):
    n_n, c_n, h, w = x.shape
    xf = x.reshape(-1)
    cf = cols.reshape(-1)
    planes = n_n * c_n
    if cols.size < PARALLEL_THRESHOLD:
        _im2col_planes(
            xf, cf, _ZERO, planes, n_n, c_n, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh_n, ow_n
        )
        return
    chunks = min(planes, chunks)
    for k in prange(chunks):
        t0 = k * planes // chunks
        t1 = (k + 1) * planes // chunks
        _im2col_planes(xf, cf, t0, t1, n_n, c_n, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh_n, ow_n)


@njit_cached(parallel=True)
def _col2im(cols, dx, kh, kw, sh, sw, ph, pw, dh, dw, oh_n, ow_n, chunks):
    n_n, c_n, h, w = dx.shape
    cf = cols.reshape(-1)
    df = dx.reshape(-1)
    planes = n_n * c_n
    if cols.size < PARALLEL_THRESHOLD:
        _col2im_planes(
            cf, df, _ZERO, planes, n_n, c_n, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh_n, ow_n
        )
        return
    chunks = min(planes, chunks)
    for k in prange(chunks):
        t0 = k * planes // chunks
        t1 = (k + 1) * planes // chunks
        _col2im_planes(cf, df, t0, t1, n_n, c_n, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh_n, ow_n)


def _chunks() -> int:
    # a few chunks per thread balance uneven planes; read at call time (set_num_threads)
    return 4 * pool_num_threads()


def conv_out_size(size: int, k: int, stride: int, pad_total: int, dilation: int) -> int:
    """Output length of a convolution along one axis (``pad_total`` = both sides).

    >>> conv_out_size(28, 5, 1, 0, 1)
    24
    """
    return (size + pad_total - dilation * (k - 1) - 1) // stride + 1


def _check(x, name):
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name}: expected float32 or float64, got {x.dtype}")


def _check_out(out, shape, dtype, name):
    # the kernels write through a flat view
    if out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(
            f"{name}: out must be a C-contiguous {np.dtype(dtype).name} array of shape {shape}, "
            f"got {out.dtype.name} {out.shape}"
        )


def im2col(x, kernel_size, stride, padding, dilation, out_size, out=None):
    """Unfold NCHW ``x`` into ``cols`` of shape ``(C*kh*kw, N, OH*OW)`` (see module doc).

    ``padding`` is (top, left); ``out_size`` is (OH, OW), which fixes the bottom/right padding.

    >>> x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    >>> im2col(x, (2, 2), (2, 2), (0, 0), (1, 1), (2, 2))[:, 0].tolist()
    [[0.0, 2.0, 8.0, 10.0], [1.0, 3.0, 9.0, 11.0], [4.0, 6.0, 12.0, 14.0], [5.0, 7.0, 13.0, 15.0]]
    """
    _check(x, "im2col")
    x = np.ascontiguousarray(x)
    n, c = x.shape[:2]
    kh, kw = kernel_size
    oh, ow = out_size
    if out is None:
        out = np.empty((c * kh * kw, n, oh * ow), x.dtype)
    _check_out(out, (c * kh * kw, n, oh * ow), x.dtype, "im2col")
    if out.size:
        with if_blas_spinning():  # OpenBLAS workers may still spin
            _im2col(x, out, kh, kw, *stride, *padding, *dilation, oh, ow, _chunks())
    return out


def col2im(cols, input_shape, kernel_size, stride, padding, dilation, out_size, out=None):
    """The adjoint of :func:`im2col`: sum ``cols`` back into an NCHW array of ``input_shape``.

    >>> cols = np.ones((4, 1, 4))
    >>> col2im(cols, (1, 1, 3, 3), (2, 2), (1, 1), (0, 0), (1, 1), (2, 2))[0, 0].tolist()
    [[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]
    """
    _check(cols, "col2im")
    cols = np.ascontiguousarray(cols)
    kh, kw = kernel_size
    oh, ow = out_size
    if out is None:
        out = np.empty(input_shape, cols.dtype)
    _check_out(out, tuple(input_shape), cols.dtype, "col2im")
    if out.size:
        if cols.size == 0:
            out[...] = 0
        else:
            with if_blas_spinning():  # OpenBLAS workers may still spin
                _col2im(cols, out, kh, kw, *stride, *padding, *dilation, oh, ow, _chunks())
    return out
