"""CUDA kernels (numba.cuda); imported lazily."""
