"""CPU njit kernels."""
