"""Hand-written Numba kernels, installed as ``runba.kernels``.

This package imports nothing from ``runba``: generated kernels and hand-written ones both
import ``runba.kernels.mathlib`` and ``runba.kernels.loader`` only.
"""
