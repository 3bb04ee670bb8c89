"""Reference kernel: ``out = gelu_tanh(x + bias)`` over rows (a GEMM epilogue).

It shows the conventions every CPU kernel follows (docs/kernels.md):

* compiled through :func:`runba.kernels.loader.njit_cached` (project flags, runba disk cache,
  flags in the cache file names);
* ONE function with a size branch: a serial loop below ``PARALLEL_THRESHOLD`` elements, a
  ``prange`` loop above, so no size ever compiles a second variant;
* ``prange`` over rows only: every iteration writes its own row of ``out`` (disjoint);
* float32 throughout: constants live in ``mathlib`` as ``np.float32``; the vectorisable
  ``gelu_tanh_f32`` helper is inlined (libm ``tanh`` would not vectorise).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from runba.kernels.loader import PARALLEL_THRESHOLD, njit_cached
from runba.kernels.mathlib import gelu_tanh_f32

__all__ = ["bias_gelu", "bias_gelu_f32"]


@njit(inline="always")
def _row(x, bias, out, i):
    for j in range(x.shape[1]):
        out[i, j] = gelu_tanh_f32(x[i, j] + bias[j])


@njit_cached(parallel=True)
def bias_gelu_f32(x, bias, out):
    """``out[i, j] = gelu_tanh(x[i, j] + bias[j])`` for 2-D float32 ``x``/``out``, 1-D ``bias``.

    >>> x = np.zeros((2, 3), np.float32); out = np.empty_like(x)
    >>> bias_gelu_f32(x, np.ones(3, np.float32), out); [round(float(v), 4) for v in out[0]]
    [0.8412, 0.8412, 0.8412]
    """
    n = x.shape[0]
    if n * x.shape[1] < PARALLEL_THRESHOLD:  # fork/join would cost more than it saves
        for i in range(n):
            _row(x, bias, out, i)
    else:
        for i in prange(n):
            _row(x, bias, out, i)


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
