"""dtypes and PyTorch's type-promotion rules.

A :class:`dtype` wraps a numpy dtype. float16 is a storage type: ops compute it in float32
and cast the result back, so kernels never see float16.

Promotion follows PyTorch: operands are ranked by priority (tensors with dims > zero-dim
tensors > Python scalars); a lower-priority operand only changes the result when it is of a
higher *category* (bool < integer < floating), in which case a Python float means the
default dtype (float32).

>>> import runba
>>> (runba.tensor([1, 2], dtype=runba.int32) + 2.5).dtype
runba.float32
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "dtype",
    "float16",
    "float32",
    "float64",
    "int32",
    "int64",
    "uint8",
    "bool_",
    "half",
    "float",
    "double",
    "int",
    "long",
    "promote_types",
    "result_type",
    "from_numpy_dtype",
    "get_default_dtype",
    "set_default_dtype",
]

BOOL, INTEGER, FLOATING = 0, 1, 2


class dtype:  # noqa: N801 - mirrors torch.dtype
    """A tensor element type (``runba.float32`` ...)."""

    __slots__ = ("name", "np", "category", "rank", "itemsize", "compute")

    def __init__(self, name: str, np_dtype, category: int, rank: int):
        self.name = name
        self.np = np.dtype(np_dtype)
        self.category = category
        self.rank = rank  # position in the promotion lattice
        self.itemsize = self.np.itemsize
        self.compute = self  # float16 overrides this to float32 below

    @property
    def is_floating_point(self) -> bool:
        return self.category == FLOATING

    @property
    def is_signed(self) -> bool:
        return self.name not in ("uint8", "bool")

    def __repr__(self) -> str:
        return f"runba.{self.name}"

    def __reduce__(self):
        return (_by_name, (self.name,))


bool_ = dtype("bool", np.bool_, BOOL, 0)
uint8 = dtype("uint8", np.uint8, INTEGER, 1)
int32 = dtype("int32", np.int32, INTEGER, 2)
int64 = dtype("int64", np.int64, INTEGER, 3)
float16 = dtype("float16", np.float16, FLOATING, 4)
float32 = dtype("float32", np.float32, FLOATING, 5)
float64 = dtype("float64", np.float64, FLOATING, 6)
float16.compute = float32

# PyTorch aliases
half, float, double, int, long = float16, float32, float64, int32, int64  # noqa: A001

ALL_DTYPES = (bool_, uint8, int32, int64, float16, float32, float64)
_BY_NP = {d.np: d for d in ALL_DTYPES}
_BY_NAME = {d.name: d for d in ALL_DTYPES}
_BY_RANK = sorted(ALL_DTYPES, key=lambda d: d.rank)

_default_float = float32


def _by_name(name: str) -> dtype:
    return _BY_NAME[name]


def get_default_dtype() -> dtype:
    """The dtype of Python floats and of float tensors created without a dtype."""
    return _default_float


def set_default_dtype(d: dtype) -> None:
    """Set the default floating dtype (float32 or float64), like ``torch.set_default_dtype``."""
    global _default_float
    if not isinstance(d, dtype) or d.category != FLOATING:
        raise TypeError(f"set_default_dtype: only floating-point dtypes are supported, got {d!r}")
    _default_float = d


def from_numpy_dtype(np_dtype, op: str = "from_numpy") -> dtype:
    """The runba dtype for a numpy dtype; unsupported ones raise a clear TypeError."""
    d = _BY_NP.get(np.dtype(np_dtype))
    if d is None:
        supported = ", ".join(x.name for x in ALL_DTYPES)
        raise TypeError(
            f"{op}: numpy dtype {np.dtype(np_dtype)} is not supported by runba "
            f"(supported: {supported})"
        )
    return d


def to_dtype(d, op: str = "dtype") -> dtype:
    """Accept a runba dtype, a numpy dtype/type or a dtype name."""
    if isinstance(d, dtype):
        return d
    if isinstance(d, str) and d in _BY_NAME:
        return _BY_NAME[d]
    if d is builtins_float:
        return _default_float
    if d is builtins_int:
        return int64
    if d is builtins_bool:
        return bool_
    try:
        return from_numpy_dtype(d, op)
    except TypeError:
        raise
    except Exception:
        raise TypeError(f"{op}: {d!r} is not a dtype") from None


import builtins as _builtins  # noqa: E402

builtins_float, builtins_int, builtins_bool = _builtins.float, _builtins.int, _builtins.bool


def promote_types(a: dtype, b: dtype) -> dtype:
    """The smallest dtype both ``a`` and ``b`` convert to (``torch.promote_types``)."""
    return a if a.rank >= b.rank else b


def scalar_dtype(value) -> dtype:
    """The dtype a Python scalar stands for in promotion (float -> default float)."""
    if isinstance(value, builtins_bool):
        return bool_
    if isinstance(value, builtins_int):
        return int64
    return _default_float


def _combine(higher: dtype | None, lower: dtype | None) -> dtype | None:
    # A lower-priority operand matters only when it is of a higher category.
    if higher is None:
        return lower
    if lower is None:
        return higher
    if higher.category == FLOATING:
        return higher
    if lower.category > higher.category:
        return promote_types(higher, lower)
    return higher


def result_type(*operands) -> dtype:
    """PyTorch's ``result_type`` over tensors and Python scalars.

    Each operand is a ``(dtype, priority)`` pair: priority 2 for a tensor with dims, 1 for a
    zero-dim tensor, 0 for a Python scalar.
    """
    by_priority: list[dtype | None] = [None, None, None]
    for d, priority in operands:
        cur = by_priority[priority]
        by_priority[priority] = d if cur is None else promote_types(cur, d)
    return _combine(by_priority[2], _combine(by_priority[1], by_priority[0]))
