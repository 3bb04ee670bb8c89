"""In-place variants (``add_``, ``mul_``, ``clamp_``, ``x += y`` ...) built on ``copy_``.

``x.op_(...)`` computes ``op(x, ...)`` and copies the result into ``x`` with the registry's
in-place ``copy_``, which bumps the version counter and rebases ``x.grad_fn``. When autograd is
recording, the out-of-place op reads a snapshot of ``x``: its saved inputs must not be the
buffer about to be overwritten.
"""

from __future__ import annotations

from runba import dtypes as _dt
from runba.ops import elementwise as ew
from runba.ops import index, reduce
from runba.ops.registry import check_inplace, tensor_method


def _commit(target, result, name):
    if result._data.shape != target._data.shape:
        raise RuntimeError(
            f"{name}: output with shape {list(target.shape)} doesn't match the broadcast shape "
            f"{list(result.shape)}"
        )
    if result.dtype.category > target.dtype.category:
        raise RuntimeError(
            f"{name}: result type {result.dtype.name} can't be cast to the desired output type "
            f"{target.dtype.name}"
        )
    return index.copy_(target, result, _op_name=name)


def _inplace(fn, name):
    def method(self, *args, **kwargs):
        from runba.tensor import Tensor

        sources = [a for a in args if isinstance(a, Tensor)]
        if index.tracked_view_chain(self) is None:
            check_inplace(self, name, sources)
        src = ew.clone(self) if index.records_inplace(self, sources) else self
        return _commit(self, fn(src, *args, **kwargs), name)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"In-place version of ``{fn.__name__}``."
    tensor_method(name)(method)
    return method


_INPLACE = {
    "add_": ew.add,
    "sub_": ew.sub,
    "subtract_": ew.sub,
    "mul_": ew.mul,
    "multiply_": ew.mul,
    "div_": ew.div,
    "divide_": ew.div,
    "true_divide_": ew.div,
    "pow_": ew.pow,
    "remainder_": ew.remainder,
    "floor_divide_": ew.floor_divide,
    "neg_": ew.neg,
    "abs_": ew.abs,
    "sign_": ew.sign,
    "exp_": ew.exp,
    "log_": ew.log,
    "log1p_": ew.log1p,
    "expm1_": ew.expm1,
    "sqrt_": ew.sqrt,
    "rsqrt_": ew.rsqrt,
    "sin_": ew.sin,
    "cos_": ew.cos,
    "tan_": ew.tan,
    "tanh_": ew.tanh,
    "sigmoid_": ew.sigmoid,
    "relu_": ew.relu,
    "erf_": ew.erf,
    "floor_": ew.floor,
    "ceil_": ew.ceil,
    "round_": ew.round,
    "trunc_": ew.trunc,
    "clamp_": ew.clamp,
    "clip_": ew.clamp,
    "clamp_min_": ew.clamp_min,
    "clamp_max_": ew.clamp_max,
    "lerp_": ew.lerp,
    "maximum_": ew.maximum,
    "minimum_": ew.minimum,
    "nan_to_num_": ew.nan_to_num,
    "leaky_relu_": ew.leaky_relu,
    "square_": ew.square,
    "reciprocal_": ew.reciprocal,
    "masked_fill_": index.masked_fill,
    "cumsum_": reduce.cumsum,
    "tril_": index.tril,
    "triu_": index.triu,
}
for _name, _fn in _INPLACE.items():
    _inplace(_fn, _name)


@tensor_method()
def fill_(self, value):
    """Fill with ``value`` (a number or a 0-dim tensor)."""
    check_inplace(self, "fill_", (value,))
    return index.copy_(self, value)


@tensor_method()
def zero_(self):
    """Fill with zeros."""
    check_inplace(self, "zero_")
    return index.copy_(self, 0)


@tensor_method()
def uniform_(self, a: float = 0.0, b: float = 1.0, *, generator=None):
    """Fill with U[a, b) draws from the Philox stream."""
    from runba.creation import rand

    draw = rand(self.shape, dtype=self.dtype, generator=generator)
    return fill_(self, draw * (b - a) + a)


@tensor_method()
def normal_(self, mean: float = 0.0, std: float = 1.0, *, generator=None):
    """Fill with N(mean, std^2) draws from the Philox stream."""
    from runba.creation import randn

    draw = randn(self.shape, dtype=self.dtype, generator=generator)
    return fill_(self, draw * std + mean)


@tensor_method()
def bernoulli_(self, p: float = 0.5, *, generator=None):
    from runba.creation import rand

    return fill_(self, (rand(self.shape, generator=generator) < p).to(self.dtype))


@tensor_method()
def random_(self, low: int = 0, high: int | None = None, *, generator=None):
    from runba.creation import randint

    if high is None:
        low, high = 0, low if low else 2**24
    return fill_(self, randint(low, high, self.shape, generator=generator).to(self.dtype))


def _operator(fn, reflected=False):
    if reflected:
        return lambda self, other: fn(other, self)
    return fn  # fn(self, other) itself: no extra frame on every operator


def _logical_or_bitwise(logical, name):
    def op(a, b):
        from runba.tensor import Tensor

        for t in (a, b):
            if isinstance(t, Tensor) and t.dtype is not _dt.bool_:
                raise TypeError(
                    f"{name}: bitwise operations on {t.dtype.name} tensors are not supported "
                    "(only bool tensors)"
                )
        return logical(a, b)

    return op


def bind_operators(Tensor):  # noqa: N803
    """Python operators for Tensor, each a registry-backed function."""
    from runba.ops import linalg
    from runba.ops import movement as mv

    ops = {
        "__add__": _operator(ew.add),
        "__radd__": _operator(ew.add, True),
        "__sub__": _operator(ew.sub),
        "__rsub__": _operator(ew.sub, True),
        "__mul__": _operator(ew.mul),
        "__rmul__": _operator(ew.mul, True),
        "__truediv__": _operator(ew.div),
        "__rtruediv__": _operator(ew.div, True),
        "__floordiv__": _operator(ew.floor_divide),
        "__rfloordiv__": _operator(ew.floor_divide, True),
        "__mod__": _operator(ew.remainder),
        "__rmod__": _operator(ew.remainder, True),
        "__pow__": _operator(ew.pow),
        "__rpow__": _operator(ew.pow, True),
        "__matmul__": _operator(linalg.matmul),
        "__rmatmul__": _operator(linalg.matmul, True),
        "__eq__": _operator(ew.eq),
        "__ne__": _operator(ew.ne),
        "__lt__": _operator(ew.lt),
        "__le__": _operator(ew.le),
        "__gt__": _operator(ew.gt),
        "__ge__": _operator(ew.ge),
        "__and__": _operator(_logical_or_bitwise(ew.logical_and, "and")),
        "__rand__": _operator(_logical_or_bitwise(ew.logical_and, "and"), True),
        "__or__": _operator(_logical_or_bitwise(ew.logical_or, "or")),
        "__ror__": _operator(_logical_or_bitwise(ew.logical_or, "or"), True),
        "__xor__": _operator(_logical_or_bitwise(ew.logical_xor, "xor")),
        "__rxor__": _operator(_logical_or_bitwise(ew.logical_xor, "xor"), True),
        "__neg__": ew.neg,
        "__pos__": lambda self: self,
        "__abs__": ew.abs,
        "__invert__": lambda self: _logical_or_bitwise(lambda a, b: ew.logical_not(a), "invert")(
            self, None
        ),
        "__getitem__": index.getitem,
        "__setitem__": index.setitem,
        "__iadd__": Tensor.add_,
        "__isub__": Tensor.sub_,
        "__imul__": Tensor.mul_,
        "__itruediv__": Tensor.div_,
        "__ifloordiv__": Tensor.floor_divide_,
        "__imod__": Tensor.remainder_,
        "__ipow__": Tensor.pow_,
    }
    for name, fn in ops.items():
        setattr(Tensor, name, fn)
    Tensor.T = property(mv.T)
    Tensor.mT = property(mv.mT)
    Tensor.H = property(mv.T)
