"""Reference kernel: ``out = gelu_tanh(x + bias)`` over rows (a GEMM epilogue).

It shows the conventions every CPU kernel follows (docs/kernels.md):

* compiled through :func:`runba.kernels.loader.njit_cached` (project flags, runba disk cache,
  flags in the cache file names);
* ONE function with a size branch: a serial loop below ``PARALLEL_THRESHOLD`` elements, a
  ``prange`` loop above, so no size ever compiles a second variant;
* ``prange`` over rows only: every iteration writes its own row of ``out`` (disjoint);
* float32 throughout: constants live in ``mathlib`` as ``np.float32``; the vectorisable
  gelu helpers are inlined (libm ``tanh`` would not vectorise);
* long loop bodies split into L1-sized tiles with one loop per stage (see ``_rows``).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from runba.kernels.loader import PARALLEL_THRESHOLD, njit_cached
from runba.kernels.mathlib import gelu_tanh_finish_f32, gelu_tanh_reduce_f32

__all__ = ["bias_gelu", "bias_gelu_f32"]


# GELU runs in two loops per tile of a row (mathlib's reduce / finish halves), with the
# three intermediate values in L1-resident scratch: each loop body keeps its constants in
# the 16 AVX2 registers, where the one-loop body reloaded them every iteration (1.2x).
_TILE = 1024
# Rows are split into at most this many chunks, each allocating its scratch once.
_MAX_CHUNKS = 256


@njit(inline="always")
def _rows(x, bias, out, lo, hi):
    m = x.shape[1]
    r = np.empty(min(m, _TILE), np.float32)
    s = np.empty(min(m, _TILE), np.float32)
    for i in range(lo, hi):
        for jb in range(0, m, _TILE):
            nj = min(_TILE, m - jb)
            # Views, so every loop index runs from 0: numba then knows no index is negative
            # and emits no wraparound select (with one, the loops do not vectorise; 3x).
            xv, bv, ov = x[i, jb : jb + nj], bias[jb : jb + nj], out[i, jb : jb + nj]
            for k in range(nj):
                xc, rk, sk = gelu_tanh_reduce_f32(xv[k] + bv[k])
                ov[k] = xc  # out doubles as the scratch for the clamped input
                r[k] = rk
                s[k] = sk
            for k in range(nj):
                ov[k] = gelu_tanh_finish_f32(ov[k], r[k], s[k])


@njit_cached(parallel=True)
def bias_gelu_f32(x, bias, out):
    """``out[i, j] = gelu_tanh(x[i, j] + bias[j])`` for 2-D float32 ``x``/``out``, 1-D ``bias``.

    ``out`` may be ``x`` itself (each element is read before it is written).

    >>> x = np.zeros((2, 3), np.float32); out = np.empty_like(x)
    >>> bias_gelu_f32(x, np.ones(3, np.float32), out); [round(float(v), 4) for v in out[0]]
    [0.8412, 0.8412, 0.8412]
    """
    n = x.shape[0]
    if n * x.shape[1] < PARALLEL_THRESHOLD:  # fork/join would cost more than it saves
        _rows(x, bias, out, 0, n)
    else:
        nch = min(n, _MAX_CHUNKS)
        for c in prange(nch):
            _rows(x, bias, out, c * n // nch, (c + 1) * n // nch)


def bias_gelu(x: np.ndarray, bias: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """GELU(tanh) of ``x + bias`` for float32 ``x`` of shape (..., m) and ``bias`` of shape (m,).

    >>> bias_gelu(np.zeros((4, 2), np.float32), np.zeros(2, np.float32)).tolist()[0]
    [0.0, 0.0]
    """
    if x.dtype != np.float32 or bias.dtype != np.float32:
        raise TypeError(f"bias_gelu expects float32, got x {x.dtype}, bias {bias.dtype}")
    if bias.ndim != 1 or x.shape[-1:] != bias.shape:
        raise ValueError(f"bias shape {bias.shape} does not match x shape {x.shape}")
    x2 = x.reshape(-1, x.shape[-1]) if x.ndim != 2 else x
    if out is None:
        out = np.empty(x.shape, np.float32)
    bias_gelu_f32(x2, bias, out.reshape(x2.shape))
    return out
