"""Tensor creation: from data, filled, ranges and random draws."""

from __future__ import annotations

import numbers

import numpy as np

from runba import dtypes as _dt
from runba.random import default_generator
from runba.tensor import Tensor, _check_device

__all__ = [
    "tensor",
    "as_tensor",
    "from_numpy",
    "zeros",
    "ones",
    "full",
    "empty",
    "zeros_like",
    "ones_like",
    "full_like",
    "empty_like",
    "rand_like",
    "randn_like",
    "arange",
    "linspace",
    "eye",
    "rand",
    "randn",
    "randint",
    "randperm",
    "normal",
]


def _infer_dtype(data) -> _dt.dtype:
    """PyTorch's inference: bools -> bool, ints -> int64, any float -> default float; a
    numpy scalar keeps its own dtype."""
    if isinstance(data, np.generic):
        return _dt.from_numpy_dtype(data.dtype, "tensor")
    if isinstance(data, (list, tuple)):
        typed, rest = _split_elements(data, [], [])
        if typed:
            # numpy scalars and arrays in a sequence keep their dtype, promoted with the
            # Python numbers' (PyTorch: [np.float64(1), 2] is float64, [np.int32(1), 2] int64)
            d = _dt.from_numpy_dtype(typed[0], "tensor")
            for t in typed[1:]:
                d = _dt.promote_types(d, _dt.from_numpy_dtype(t, "tensor"))
            if rest:
                d = _dt.promote_types(d, _infer_dtype(rest))
            return d
    arr = np.asarray(data)
    kind = arr.dtype.kind
    if kind == "b":
        return _dt.bool_
    if kind in "iu":
        return _dt.int64 if kind == "i" or arr.dtype != np.uint8 else _dt.uint8
    if kind == "f":
        return _dt.get_default_dtype()
    raise TypeError(f"tensor(): could not infer a dtype from data of numpy kind {arr.dtype}")


def _split_elements(data, typed: list, plain: list) -> tuple[list, list]:
    """The leaves of nested lists/tuples ``data``: the dtypes of its numpy scalars and
    arrays (``typed``), and its plain Python values (``plain``)."""
    for x in data:
        if isinstance(x, (list, tuple)):
            _split_elements(x, typed, plain)
        elif isinstance(x, (np.generic, np.ndarray)):
            typed.append(x.dtype)
        else:
            plain.append(x)
    return typed, plain


def _flatten_tensors(data):
    if isinstance(data, Tensor):
        if data._lazy is not None:
            data._realize()
        return data._data
    if isinstance(data, (list, tuple)):
        return [_flatten_tensors(d) for d in data]
    return data


def _finish(arr, dtype, requires_grad, device, op):
    if device is not None:
        _check_device(device, op)
    t = Tensor._make(arr, dtype)
    if requires_grad:
        t.requires_grad_(True)
    return t


def tensor(data, *, dtype=None, device=None, requires_grad=False, pin_memory=False) -> Tensor:
    """A new tensor copying ``data`` (nested lists, numbers, numpy arrays, tensors).

    >>> tensor([[1, 2], [3, 4]]).dtype
    runba.int64
    >>> tensor([1.0, 2.0], requires_grad=True)
    tensor([1., 2.], requires_grad=True)
    """
    if isinstance(data, Tensor):
        if data._lazy is not None:
            data._realize()
        src = data._data
        d = data.dtype if dtype is None else _dt.to_dtype(dtype, "tensor")
        arr = np.array(src, dtype=d.np, copy=True)
        return _finish(arr, d, requires_grad, device, "tensor")
    if isinstance(data, np.ndarray):
        d = _dt.from_numpy_dtype(data.dtype, "tensor") if dtype is None else _dt.to_dtype(dtype)
        return _finish(np.array(data, dtype=d.np, copy=True), d, requires_grad, device, "tensor")
    data = _flatten_tensors(data)
    try:
        d = _infer_dtype(data) if dtype is None else _dt.to_dtype(dtype, "tensor")
        arr = np.array(data, dtype=d.np)
    except ValueError as e:
        raise ValueError(f"tensor(): could not build a tensor from the data: {e}") from None
    return _finish(arr, d, requires_grad, device, "tensor")


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """Like :func:`tensor` but shares memory with a numpy array or tensor when it can."""
    if isinstance(data, Tensor):
        return data if dtype is None else data.to(_dt.to_dtype(dtype))
    if isinstance(data, np.ndarray):
        d = _dt.from_numpy_dtype(data.dtype, "as_tensor") if dtype is None else _dt.to_dtype(dtype)
        return _finish(np.asarray(data, dtype=d.np), d, False, device, "as_tensor")
    return tensor(data, dtype=dtype, device=device)


def from_numpy(ndarray: np.ndarray) -> Tensor:
    """A tensor sharing memory with ``ndarray`` (writes are seen by both)."""
    if not isinstance(ndarray, np.ndarray):
        raise TypeError(f"from_numpy: expected np.ndarray (got {type(ndarray).__name__})")
    d = _dt.from_numpy_dtype(ndarray.dtype, "from_numpy")
    return Tensor._make(ndarray, d)


def _size(size):
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    for s in size:
        if not isinstance(s, (numbers.Integral,)):
            raise TypeError(f"size must contain ints, got {size!r}")
        if s < 0:
            raise RuntimeError(f"Trying to create tensor with negative dimension {s}: {list(size)}")
    return tuple(int(s) for s in size)


def _dtype_or_default(dtype):
    return _dt.get_default_dtype() if dtype is None else _dt.to_dtype(dtype)


def zeros(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    d = _dtype_or_default(dtype)
    return _finish(np.zeros(_size(size), dtype=d.np), d, requires_grad, device, "zeros")


def ones(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    d = _dtype_or_default(dtype)
    return _finish(np.ones(_size(size), dtype=d.np), d, requires_grad, device, "ones")


def empty(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    d = _dtype_or_default(dtype)
    return _finish(np.empty(_size(size), dtype=d.np), d, requires_grad, device, "empty")


def full(size, fill_value, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A tensor of ``size`` filled with ``fill_value`` (dtype inferred from the value)."""
    d = _dt.scalar_dtype(fill_value) if dtype is None else _dt.to_dtype(dtype)
    return _finish(
        np.full(_size((size,)), fill_value, dtype=d.np), d, requires_grad, device, "full"
    )


def _like(t, dtype):
    return t.dtype if dtype is None else _dt.to_dtype(dtype)


def zeros_like(input, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    return zeros(input.shape, dtype=_like(input, dtype), device=device, requires_grad=requires_grad)


def ones_like(input, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    return ones(input.shape, dtype=_like(input, dtype), device=device, requires_grad=requires_grad)


def empty_like(input, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    return empty(input.shape, dtype=_like(input, dtype), device=device, requires_grad=requires_grad)


def full_like(input, fill_value, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    return full(
        input.shape,
        fill_value,
        dtype=_like(input, dtype),
        device=device,
        requires_grad=requires_grad,
    )


def arange(start, end=None, step=1, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Values ``start, start+step, ...`` below ``end``; int64 unless a bound is a float."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise RuntimeError("arange: step must be nonzero")
    if dtype is None:
        is_float = any(
            isinstance(v, float) or (isinstance(v, Tensor) and v.is_floating_point())
            for v in (start, end, step)
        )
        d = _dt.get_default_dtype() if is_float else _dt.int64
    else:
        d = _dt.to_dtype(dtype)
    n = max(int(np.ceil((float(end) - float(start)) / float(step))), 0)
    arr = (
        (np.arange(n, dtype=np.float64) * float(step) + float(start))
        if d.is_floating_point
        else (np.arange(n, dtype=np.int64) * int(step) + int(start))
    )
    return _finish(arr.astype(d.np), d, requires_grad, device, "arange")


def linspace(start, end, steps, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    d = _dtype_or_default(dtype)
    arr = np.linspace(float(start), float(end), int(steps), dtype=np.float64).astype(d.np)
    return _finish(arr, d, requires_grad, device, "linspace")


def eye(n, m=None, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    d = _dtype_or_default(dtype)
    return _finish(np.eye(n, n if m is None else m, dtype=d.np), d, requires_grad, device, "eye")


def _gen(generator):
    return default_generator if generator is None else generator


def _float_only(d, op):
    if not d.is_floating_point:
        raise RuntimeError(f"{op}: expected a floating point dtype, got {d!r}")
    return d


def rand(*size, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Uniform ``[0, 1)`` from the Philox stream."""
    d = _float_only(_dtype_or_default(dtype), "rand")
    arr = _gen(generator).uniform(_size(size), d.np)
    return _finish(arr, d, requires_grad, device, "rand")


def randn(*size, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Standard normal from the Philox stream."""
    d = _float_only(_dtype_or_default(dtype), "randn")
    arr = _gen(generator).normal(_size(size), d.np)
    return _finish(arr, d, requires_grad, device, "randn")


def randint(
    low, high=None, size=None, *, generator=None, dtype=None, device=None, requires_grad=False
) -> Tensor:
    """Uniform integers in ``[low, high)`` (``randint(high, size)`` form too)."""
    if size is None:
        low, high, size = 0, low, high
    if size is None:
        raise TypeError("randint() missing required argument 'size'")
    d = _dt.int64 if dtype is None else _dt.to_dtype(dtype)
    arr = _gen(generator).integers(int(low), int(high), _size((size,))).astype(d.np)
    return _finish(arr, d, requires_grad, device, "randint")


def randperm(n, *, generator=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A random permutation of ``0 .. n-1``."""
    d = _dt.int64 if dtype is None else _dt.to_dtype(dtype)
    keys = _gen(generator).random_bits(2 * n).astype(np.uint64)
    keys = (keys[0::2] << np.uint64(32)) | keys[1::2]
    return _finish(
        np.argsort(keys, kind="stable").astype(d.np), d, requires_grad, device, "randperm"
    )


def rand_like(input, *, dtype=None, generator=None) -> Tensor:
    return rand(input.shape, dtype=_like(input, dtype), generator=generator)


def randn_like(input, *, dtype=None, generator=None) -> Tensor:
    return randn(input.shape, dtype=_like(input, dtype), generator=generator)


def normal(mean=0.0, std=1.0, size=None, *, generator=None, dtype=None) -> Tensor:
    """Normal draws with the given ``mean`` and ``std`` (numbers or tensors)."""
    if size is None:
        shape = next((m.shape for m in (mean, std) if isinstance(m, Tensor)), ())
    else:
        shape = _size((size,))
    return randn(shape, generator=generator, dtype=dtype) * std + mean


# -- Tensor.new_*: a new tensor with this one's dtype unless ``dtype`` says otherwise
def _new_zeros(self, *size, dtype=None, device=None, requires_grad=False) -> Tensor:
    """``zeros(*size)`` of this tensor's dtype by default.

    >>> tensor([1, 2]).new_zeros(2, 3).dtype
    runba.int64
    """
    return zeros(*size, dtype=_like(self, dtype), device=device, requires_grad=requires_grad)


def _new_ones(self, *size, dtype=None, device=None, requires_grad=False) -> Tensor:
    """``ones(*size)`` of this tensor's dtype by default."""
    return ones(*size, dtype=_like(self, dtype), device=device, requires_grad=requires_grad)


def _new_empty(self, *size, dtype=None, device=None, requires_grad=False) -> Tensor:
    """``empty(*size)`` of this tensor's dtype by default."""
    return empty(*size, dtype=_like(self, dtype), device=device, requires_grad=requires_grad)


def _new_full(self, size, fill_value, *, dtype=None, device=None, requires_grad=False):
    """``full(size, fill_value)`` of this tensor's dtype by default (not the value's)."""
    d = _like(self, dtype)
    return full(size, fill_value, dtype=d, device=device, requires_grad=requires_grad)


def _new_tensor(self, data, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    """``tensor(data)`` (a copy) of this tensor's dtype by default."""
    d = _like(self, dtype)
    return tensor(data, dtype=d, device=device, requires_grad=requires_grad)


Tensor.new_zeros = _new_zeros
Tensor.new_ones = _new_ones
Tensor.new_empty = _new_empty
Tensor.new_full = _new_full
Tensor.new_tensor = _new_tensor
