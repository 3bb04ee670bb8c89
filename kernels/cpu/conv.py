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

Parallelism: ``prange`` over chunks of the ``N * C`` (image, channel) planes. im2col's plane
``(n, c)`` writes rows ``c*kh*kw ...`` at column block ``n`` only; col2im's plane writes
``dx[n, c]`` only, so iterations never write the same element. Below ``PARALLEL_THRESHOLD`` elements
the same serial helper runs in one call (fork/join would cost more than it saves); one compiled
kernel per dtype serves every shape and both branches. The per-plane bodies are separate
(non-inlined) njit functions: inlined into the ``parallel=True`` kernel they took ~3x longer to
compile.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from runba.kernels.loader import PARALLEL_THRESHOLD, njit_cached
from runba.kernels.threads import after_blas

__all__ = ["col2im", "conv_out_size", "im2col"]


@njit_cached
def _im2col_planes(x, cols, t0, t1, kh, kw, sh, sw, ph, pw, dh, dw, oh_n, ow_n):
    # Plain per-element bounds tests: measured faster than hoisting the valid column range
    # into three loops, which LLVM vectorises with versioning overhead for these short rows.
    c_n = x.shape[1]
    h = x.shape[2]
    w = x.shape[3]
    for t in range(t0, t1):
        n = t // c_n
        c = t - n * c_n
        for i in range(kh):
            for j in range(kw):
                row = (c * kh + i) * kw + j
                off = j * dw - pw
                for oh in range(oh_n):
                    ih = oh * sh - ph + i * dh
                    base = oh * ow_n
                    if ih < 0 or ih >= h:
                        for ow in range(ow_n):
                            cols[row, n, base + ow] = 0
                    else:
                        for ow in range(ow_n):
                            iw = ow * sw + off
                            if iw >= 0 and iw < w:
                                cols[row, n, base + ow] = x[n, c, ih, iw]
                            else:
                                cols[row, n, base + ow] = 0


@njit_cached
def _col2im_planes(cols, dx, t0, t1, kh, kw, sh, sw, ph, pw, dh, dw, oh_n, ow_n):
    c_n = dx.shape[1]
    h = dx.shape[2]
    w = dx.shape[3]
    for t in range(t0, t1):
        n = t // c_n
        c = t - n * c_n
        for ih in range(h):
            for iw in range(w):
                dx[n, c, ih, iw] = 0
        for i in range(kh):
            for j in range(kw):
                row = (c * kh + i) * kw + j
                off = j * dw - pw
                # valid output columns [lo, hi): no bounds test in the accumulate loop
                # (measured 2-3x faster here, unlike im2col)
                lo = 0
                while lo < ow_n and lo * sw + off < 0:
                    lo += 1
                hi = ow_n
                while hi > lo and (hi - 1) * sw + off >= w:
                    hi -= 1
                for oh in range(oh_n):
                    ih = oh * sh - ph + i * dh
                    if ih < 0 or ih >= h:
                        continue
                    base = oh * ow_n
                    for ow in range(lo, hi):
                        dx[n, c, ih, ow * sw + off] += cols[row, n, base + ow]


@njit_cached(parallel=True)
def _im2col(x, cols, kh, kw, sh, sw, ph, pw, dh, dw, oh_n, ow_n, chunks):
    planes = x.shape[0] * x.shape[1]
    if cols.size < PARALLEL_THRESHOLD:
        _im2col_planes(x, cols, 0, planes, kh, kw, sh, sw, ph, pw, dh, dw, oh_n, ow_n)
        return
    chunks = min(planes, chunks)
    for k in prange(chunks):
        t0 = k * planes // chunks
        t1 = (k + 1) * planes // chunks
        _im2col_planes(x, cols, t0, t1, kh, kw, sh, sw, ph, pw, dh, dw, oh_n, ow_n)


@njit_cached(parallel=True)
def _col2im(cols, dx, kh, kw, sh, sw, ph, pw, dh, dw, oh_n, ow_n, chunks):
    planes = dx.shape[0] * dx.shape[1]
    if cols.size < PARALLEL_THRESHOLD:
        _col2im_planes(cols, dx, 0, planes, kh, kw, sh, sw, ph, pw, dh, dw, oh_n, ow_n)
        return
    chunks = min(planes, chunks)
    for k in prange(chunks):
        t0 = k * planes // chunks
        t1 = (k + 1) * planes // chunks
        _col2im_planes(cols, dx, t0, t1, kh, kw, sh, sw, ph, pw, dh, dw, oh_n, ow_n)


def _chunks() -> int:
    # a few chunks per thread balance uneven planes; read at call time (set_num_threads)
    return 4 * numba.get_num_threads()


def conv_out_size(size: int, k: int, stride: int, pad_total: int, dilation: int) -> int:
    """Output length of a convolution along one axis (``pad_total`` = both sides).

    >>> conv_out_size(28, 5, 1, 0, 1)
    24
    """
    return (size + pad_total - dilation * (k - 1) - 1) // stride + 1


def _check(x, name):
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name}: expected float32 or float64, got {x.dtype}")


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
    if out.size:
        with after_blas():  # OpenBLAS workers may still be spinning
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
    if out.size:
        if cols.size == 0:
            out[...] = 0
        else:
            with after_blas():  # OpenBLAS workers may still be spinning
                _col2im(cols, out, kh, kw, *stride, *padding, *dilation, oh, ow, _chunks())
    return out
