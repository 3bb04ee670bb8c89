"""Special functions numpy lacks, as small cached njit loops (eager path)."""

import math

import numpy as np
from numba import prange

from runba.kernels import mathlib
from runba.kernels.loader import PARALLEL_THRESHOLD, njit_cached


@njit_cached
def _erf_loop(x, out):
    for i in range(x.size):
        out[i] = math.erf(x[i])


def erf_array(x: np.ndarray) -> np.ndarray:
    """Elementwise error function of a float32/float64 array (libm accuracy).

    >>> erf_array(np.array([0.0, 1.0]))
    array([0.        , 0.84270079])
    """
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(flat)
    _erf_loop(flat, out)
    return out.reshape(x.shape)


# GELU: the same mathlib helpers the fused kernels call, so eager and fused agree to the bit.
def _gelu_loop(fn):
    def loop(x, out):
        mathlib.prefer_wide_vectors()
        n = x.size
        if n < PARALLEL_THRESHOLD:  # fork/join would cost more than it saves
            for i in range(n):
                out[i] = fn(x[i])
        else:
            for i in prange(n):
                mathlib.prefer_wide_vectors()
                out[i] = fn(x[i])

    return njit_cached(parallel=True)(loop)


_GELU_LOOPS = {
    ("tanh", np.dtype(np.float32)): _gelu_loop(mathlib.gelu_tanh_f32),
    ("tanh", np.dtype(np.float64)): _gelu_loop(mathlib.gelu_tanh_f64),
    ("none", np.dtype(np.float32)): _gelu_loop(mathlib.gelu_erf_f32),
    ("none", np.dtype(np.float64)): _gelu_loop(mathlib.gelu_erf_f64),
}


def gelu_array(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    """GELU of a float32/float64 array: exact (``"none"``) or the tanh approximation.

    >>> gelu_array(np.array([0.0, 1.0], np.float32), "tanh")
    array([0.       , 0.841192], dtype=float32)
    """
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(flat)
    _GELU_LOOPS[approximate, flat.dtype](flat, out)
    return out.reshape(x.shape)
