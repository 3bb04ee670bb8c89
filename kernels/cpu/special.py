"""Special functions numpy lacks, as small cached njit loops (eager path)."""

import math

import numpy as np

from runba.kernels.loader import njit_cached


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
