"""Elementwise primitives (one registry entry each) and composites written in them.

Each primitive's ``expr`` is a scalar body over an ops handler ``o``; its ``vjp`` is written in
runba ops, so backward is itself made of registry ops. Composites (gelu, silu, softplus,
clamp, lerp, ...) are plain functions over primitives and get their gradients for free.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from runba import dtypes as _dt
from runba.ops.registry import (
    ELEMENTWISE,
    SAVE_BOTH,
    SAVE_INPUTS,
    SAVE_NONE,
    SAVE_OUTPUT,
    OpDef,
    dispatch,
    register,
    tensor_method,
)


def _op(name, expr, out_dtype="same", vjp=None, saves=SAVE_NONE, **kw):
    return register(
        OpDef(name, ELEMENTWISE, expr=expr, out_dtype=out_dtype, vjp=vjp, saves=saves, **kw)
    )


def _zero_grad(ctx, g):
    return tuple(g * 0 if need else None for need in ctx.needs)


# ---------------------------------------------------------------------------- primitives
# unary, float result
EXP = _op("exp", lambda o, x: o.exp(x), "float", lambda c, g: (g * c.out,), SAVE_OUTPUT)
LOG = _op("log", lambda o, x: o.log(x), "float", lambda c, g: (g / c.inputs[0],), SAVE_INPUTS)
LOG1P = _op(
    "log1p", lambda o, x: o.log1p(x), "float", lambda c, g: (g / (c.inputs[0] + 1),), SAVE_INPUTS
)
EXPM1 = _op("expm1", lambda o, x: o.expm1(x), "float", lambda c, g: (g * (c.out + 1),), SAVE_OUTPUT)
SQRT = _op("sqrt", lambda o, x: o.sqrt(x), "float", lambda c, g: (g / (c.out * 2),), SAVE_OUTPUT)
SIN = _op("sin", lambda o, x: o.sin(x), "float", lambda c, g: (g * cos(c.inputs[0]),), SAVE_INPUTS)
COS = _op("cos", lambda o, x: o.cos(x), "float", lambda c, g: (-g * sin(c.inputs[0]),), SAVE_INPUTS)
TAN = _op(
    "tan", lambda o, x: o.tan(x), "float", lambda c, g: (g * (c.out * c.out + 1),), SAVE_OUTPUT
)
TANH = _op(
    "tanh", lambda o, x: o.tanh(x), "float", lambda c, g: (g * (1 - c.out * c.out),), SAVE_OUTPUT
)
# Primitive rather than 1/(1+exp(-x)): the composite overflows exp for large negative x.
SIGMOID = _op(
    "sigmoid",
    lambda o, x: o.sigmoid(x),
    "float",
    lambda c, g: (g * c.out * (1 - c.out),),
    SAVE_OUTPUT,
)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
ERF = _op(
    "erf",
    lambda o, x: o.erf(x),
    "float",
    lambda c, g: (g * _TWO_OVER_SQRT_PI * exp(-(c.inputs[0] * c.inputs[0])),),
    SAVE_INPUTS,
)

# unary, same dtype
NEG = _op("neg", lambda o, x: o.neg(x), "same", lambda c, g: (-g,))
ABS = _op("abs", lambda o, x: o.abs(x), "same", lambda c, g: (g * sign(c.inputs[0]),), SAVE_INPUTS)
SIGN = _op("sign", lambda o, x: o.sign(x), "same", _zero_grad)
FLOOR = _op("floor", lambda o, x: o.floor(x), "same", _zero_grad)
CEIL = _op("ceil", lambda o, x: o.ceil(x), "same", _zero_grad)
ROUND = _op("round", lambda o, x: o.round(x), "same", _zero_grad)
TRUNC = _op("trunc", lambda o, x: o.trunc(x), "same", _zero_grad)
# Primitive for eager speed: the most common activation would otherwise be two dispatches.
RELU = _op("relu", lambda o, x: o.relu(x), "same", lambda c, g: (g * (c.out > 0),), SAVE_OUTPUT)
# order "K" keeps the layout (torch's preserve_format); contiguous() asks for "C"
CLONE = _op("clone", lambda o, x, order="K": o.copy(x, order=order), "same", lambda c, g: (g,))
CAST = _op("cast", lambda o, x, dtype: o.cast(x, dtype), "cast", lambda c, g: (g,))

# unary predicates
ISNAN = _op("isnan", lambda o, x: o.isnan(x), "bool")
ISINF = _op("isinf", lambda o, x: o.isinf(x), "bool")
LOGICAL_NOT = _op("logical_not", lambda o, x: o.logical_not(x), "bool")

# binary arithmetic
ADD = _op("add", lambda o, a, b: o.add(a, b), "same", lambda c, g: (g, g))
SUB = _op("sub", lambda o, a, b: o.sub(a, b), "same", lambda c, g: (g, -g))
MUL = _op(
    "mul",
    lambda o, a, b: o.mul(a, b),
    "same",
    lambda c, g: (
        g * c.inputs[1] if c.needs[0] else None,
        g * c.inputs[0] if c.needs[1] else None,
    ),
    SAVE_INPUTS,
    reads=lambda needs: (needs[1], needs[0]),  # each gradient reads the other operand
)
DIV = _op(
    "div",
    lambda o, a, b: o.div(a, b),
    "float",
    lambda c, g: (
        g / c.inputs[1] if c.needs[0] else None,
        -g * c.out / c.inputs[1] if c.needs[1] else None,
    ),
    SAVE_BOTH,
    reads=lambda needs: (False, True),  # the numerator never: out stands in for it
)


def _pow_vjp(c, g):
    a, b = c.inputs
    ga = gb = None
    if c.needs[0]:
        if isinstance(b, numbers.Number):
            ga = g * b * a ** (b - 1) if b != 0 else g * 0
        else:
            # 0 where b == 0 (d/da a^0), not 0 * 0**-1 = NaN at a == 0: PyTorch's choice
            ga = g * where(b == 0, 0.0, b * a ** (b - 1))
    if c.needs[1]:
        # d/db a^b = a^b log a; defined as 0 where a == 0 and b >= 0 (PyTorch's choice)
        if isinstance(a, numbers.Number):
            # math.log keeps full precision (log() of a Python number is a float32 tensor)
            # and does not raise for a <= 0: log(0) = -inf, log(a < 0) = nan, like torch
            if a == 0:  # log 0 = -inf, masked to 0 where b >= 0 (no 0 * inf NaN computed)
                gb = g * c.out * where(b >= 0, 0.0, -math.inf)
            else:
                gb = g * c.out * (math.log(a) if a > 0 else math.nan)
        else:
            gb = g * c.out * log(where(a == 0, 1, a))
            gb = where((a == 0) & (b >= 0), 0, gb)
    return ga, gb


POW = _op("pow", lambda o, a, b: o.pow(a, b), "same", _pow_vjp, SAVE_BOTH)


def _minmax_vjp(c, g):
    # PyTorch splits the gradient evenly between equal operands.
    a, b = c.inputs
    ga = gb = None
    if c.needs[0]:
        ga = g * (where(a == b, 0.5, 0) + where(a == c.out, 1, 0) * (a != b))
    if c.needs[1]:
        gb = g * (where(a == b, 0.5, 0) + where(b == c.out, 1, 0) * (a != b))
    return ga, gb


MAXIMUM = _op("maximum", lambda o, a, b: o.maximum(a, b), "same", _minmax_vjp, SAVE_BOTH)
MINIMUM = _op("minimum", lambda o, a, b: o.minimum(a, b), "same", _minmax_vjp, SAVE_BOTH)
REMAINDER = _op(
    "remainder",
    lambda o, a, b: o.remainder(a, b),
    "same",
    lambda c, g: (
        g if c.needs[0] else None,
        -g * floor_divide(c.inputs[0], c.inputs[1]) if c.needs[1] else None,
    ),
    SAVE_INPUTS,
)
FLOOR_DIVIDE = _op("floor_divide", lambda o, a, b: o.floor_divide(a, b), "same")

# comparisons and logic
EQ = _op("eq", lambda o, a, b: o.eq(a, b), "bool")
NE = _op("ne", lambda o, a, b: o.ne(a, b), "bool")
LT = _op("lt", lambda o, a, b: o.lt(a, b), "bool")
LE = _op("le", lambda o, a, b: o.le(a, b), "bool")
GT = _op("gt", lambda o, a, b: o.gt(a, b), "bool")
GE = _op("ge", lambda o, a, b: o.ge(a, b), "bool")
LOGICAL_AND = _op("logical_and", lambda o, a, b: o.logical_and(a, b), "bool")
LOGICAL_OR = _op("logical_or", lambda o, a, b: o.logical_or(a, b), "bool")
LOGICAL_XOR = _op("logical_xor", lambda o, a, b: o.logical_xor(a, b), "bool")

WHERE = _op(
    "where",
    lambda o, cond, a, b: o.where(cond, a, b),
    "same",
    lambda c, g: (
        None,
        where(c.inputs[0], g, 0) if c.needs[1] else None,
        where(c.inputs[0], 0, g) if c.needs[2] else None,
    ),
    SAVE_INPUTS,
    promote_from=1,
)


# ---------------------------------------------------------------------------- functions
def _unary(op, name):
    def fn(input):
        return dispatch(op, (input,))

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Elementwise ``{name}`` (registry primitive)."
    tensor_method(name)(fn)
    return fn


exp = _unary(EXP, "exp")
log = _unary(LOG, "log")
log1p = _unary(LOG1P, "log1p")
expm1 = _unary(EXPM1, "expm1")
sqrt = _unary(SQRT, "sqrt")
sin = _unary(SIN, "sin")
cos = _unary(COS, "cos")
tan = _unary(TAN, "tan")
tanh = _unary(TANH, "tanh")
sigmoid = _unary(SIGMOID, "sigmoid")
erf = _unary(ERF, "erf")


# Argument checks run here, before dispatch, so eager and fused (recorded) calls raise the
# same errors: a fused kernel would compute what numpy's eager loop rejects.
_BOOL_NEG = (
    "Negation, the `-` operator, on a bool tensor is not supported. If you are trying to "
    "invert a mask, use the `~` or `logical_not()` operator instead."
)
_BOOL_SUB = (
    "Subtraction, the `-` operator, with two bool tensors is not supported. Use the `^` or "
    "`logical_xor()` operator instead."
)
_NEG_INT_POW = "Integers to negative integer powers are not allowed."
# These checks are on the eager hot path: identity tests only on the common path.
_BOOL = _dt.bool_
_NP_BOOL = np.dtype(bool)
_INT_SCALARS = frozenset(
    {int, np.int8, np.int16, np.int32, np.int64, np.longlong, np.intc}
    | {np.uint8, np.uint16, np.uint32, np.uint64, np.ulonglong, np.uintc}
)


def _is_bool(x) -> bool:
    """A bool tensor or a Python/numpy bool (an operand that promotes as bool)."""
    d = getattr(x, "dtype", None)
    return d is _BOOL or d is _NP_BOOL or x is True or x is False


@tensor_method()
def neg(input):
    """``-input`` (a bool tensor is rejected, like PyTorch: use ``~`` / ``logical_not``)."""
    if getattr(input, "dtype", None) is _BOOL:
        raise TypeError(_BOOL_NEG)
    return dispatch(NEG, (input,))


negative = neg
abs = _unary(ABS, "abs")  # noqa: A001 - torch name
absolute = abs
_sign = _unary(SIGN, "sign")


@tensor_method()
def sign(input):
    """-1, 0 or 1 by the sign of each element (bool stays bool: numpy has no bool sign)."""
    if input.dtype is _dt.bool_:
        return clone(input)
    return _sign(input)


floor = _unary(FLOOR, "floor")
ceil = _unary(CEIL, "ceil")
trunc = _unary(TRUNC, "trunc")
fix = trunc
relu = _unary(RELU, "relu")
isnan = _unary(ISNAN, "isnan")
isinf = _unary(ISINF, "isinf")
logical_not = _unary(LOGICAL_NOT, "logical_not")
tensor_method("negative")(neg)
tensor_method("absolute")(abs)
tensor_method("fix")(trunc)


@tensor_method()
def round(input, decimals: int = 0):  # noqa: A001 - torch name
    """Round half to even; ``decimals`` scales by 10**decimals first (like torch.round)."""
    if decimals == 0:
        return dispatch(ROUND, (input,))
    scale = 10.0**decimals
    return dispatch(ROUND, (input * scale,)) / scale


@tensor_method()
def clone(input, *, memory_format=None):
    """A copy with its own storage; gradients flow back to ``input``."""
    return dispatch(CLONE, (input,))


def cast(input, dtype):
    """Convert to ``dtype`` (``Tensor.to(dtype)``); gradients are cast back."""
    return dispatch(CAST, (input,), {"dtype": dtype})


def _binary(op, name):
    def fn(input, other):
        return dispatch(op, (input, other))

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Elementwise ``{name}`` with broadcasting and type promotion."
    tensor_method(name)(fn)
    return fn


mul = _binary(MUL, "mul")
multiply = mul
maximum = _binary(MAXIMUM, "maximum")
minimum = _binary(MINIMUM, "minimum")
remainder = _binary(REMAINDER, "remainder")
floor_divide = _binary(FLOOR_DIVIDE, "floor_divide")
eq = _binary(EQ, "eq")
ne = _binary(NE, "ne")
lt = _binary(LT, "lt")
le = _binary(LE, "le")
gt = _binary(GT, "gt")
ge = _binary(GE, "ge")
logical_and = _binary(LOGICAL_AND, "logical_and")
logical_or = _binary(LOGICAL_OR, "logical_or")
logical_xor = _binary(LOGICAL_XOR, "logical_xor")
for _alias, _fn in (
    ("multiply", mul),
    ("greater", gt),
    ("greater_equal", ge),
    ("less", lt),
    ("less_equal", le),
    ("not_equal", ne),
):
    tensor_method(_alias)(_fn)
greater, greater_equal, less, less_equal, not_equal = gt, ge, lt, le, ne


@tensor_method()
def add(input, other, *, alpha=1):
    """``input + alpha * other``."""
    if alpha != 1:
        other = other * alpha
    return dispatch(ADD, (input, other))


@tensor_method()
def sub(input, other, *, alpha=1):
    """``input - alpha * other`` (two bool operands are rejected, like PyTorch)."""
    if alpha != 1:
        other = other * alpha
    d = getattr(input, "dtype", None)
    if (d is _BOOL or d is _NP_BOOL or input is True or input is False) and _is_bool(other):
        raise TypeError(_BOOL_SUB)
    return dispatch(SUB, (input, other))


subtract = sub
tensor_method("subtract")(sub)


@tensor_method()
def div(input, other, *, rounding_mode=None):
    """True division; ``rounding_mode`` "trunc" or "floor" like torch.div."""
    if rounding_mode is None:
        return dispatch(DIV, (input, other))
    if rounding_mode == "floor":
        return floor_divide(input, other)
    if rounding_mode == "trunc":
        q = trunc(dispatch(DIV, (input, other)))
        want = _result_dtype(input, other)
        return q if q.dtype is want else q.to(want)
    raise ValueError(
        "div expected rounding_mode to be one of None, 'trunc', or 'floor' "
        f"but found '{rounding_mode}'"
    )


divide = true_divide = div
tensor_method("divide", "true_divide")(div)


def _result_dtype(*operands):
    from runba.ops.registry import elementwise_dtypes

    return elementwise_dtypes(ADD, operands, {})[0]


@tensor_method()
def pow(input, exponent):  # noqa: A001 - torch name
    """``input ** exponent`` elementwise (an integer tensor to a negative integer power is
    rejected, like numpy and PyTorch; a tensor exponent is checked by the eager loop)."""
    if exponent.__class__ in _INT_SCALARS and exponent < 0:
        dt = getattr(input, "dtype", None)
        if dt is not None and dt.category != _dt.FLOATING and dt is not _dt.uint8:
            # (uint8: numpy rejects the scalar itself, out of range; fused cuts to eager)
            raise ValueError(_NEG_INT_POW)
    return dispatch(POW, (input, exponent))


def where(condition, input=None, other=None):
    """``input`` where ``condition`` holds, else ``other`` (tensors or scalars)."""
    if input is None and other is None:
        from runba.ops.index import nonzero

        return nonzero(condition, as_tuple=True)
    from runba.tensor import Tensor

    if not isinstance(condition, Tensor):
        from runba.creation import tensor

        condition = tensor(condition, dtype=_dt.bool_)
    elif condition.dtype is not _dt.bool_:
        condition = condition.to(_dt.bool_)
    return dispatch(WHERE, (condition, input, other))


@tensor_method("where")
def _where_method(self, condition, other):
    """``x.where(condition, y)``: torch's method form, ``where(condition, x, y)``."""
    return where(condition, self, other)


# ---------------------------------------------------------------------------- composites
LN2 = math.log(2.0)


@tensor_method()
def exp2(input):
    """``2 ** input``."""
    return exp(_as_float(input) * LN2)


@tensor_method()
def log2(input):
    return log(input) / LN2


@tensor_method()
def log10(input):
    return log(input) / math.log(10.0)


@tensor_method()
def rsqrt(input):
    """``1 / sqrt(input)``."""
    return 1 / sqrt(input)


@tensor_method()
def reciprocal(input):
    return 1 / _as_float(input)


@tensor_method()
def square(input):
    return input * input


def _as_float(x):
    return x if x.dtype.is_floating_point else x.to(_dt.get_default_dtype())


@tensor_method()
def leaky_relu(input, negative_slope: float = 0.01):
    """``x`` for x > 0, else ``negative_slope * x``."""
    return where(input > 0, input, input * negative_slope)


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)


def _gelu_vjp(c, g):
    x = c.inputs[0]
    if c.attrs["approximate"] == "tanh":
        # d/dx 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3)
        x2 = x * x
        t = tanh((x + x2 * x * 0.044715) * _SQRT_2_OVER_PI)
        du = (x2 * (3 * 0.044715) + 1) * _SQRT_2_OVER_PI
        return (g * (0.5 * (t + 1) + x * 0.5 * (1 - t * t) * du),)
    # d/dx x Phi(x) = Phi(x) + x phi(x)
    cdf = 0.5 * (erf(x * _INV_SQRT_2) + 1)
    pdf = exp(x * x * -0.5) * _INV_SQRT_2PI
    return (g * (cdf + x * pdf),)


_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
# A primitive, not the textbook composite: fused and eager both run mathlib's one-division
# gelu (x * sigmoid(2u)), 10x faster than the composite's 8 numpy passes.
GELU = _op(
    "gelu",
    lambda o, x, approximate="none": o.gelu(x, approximate),
    "float",
    _gelu_vjp,
    SAVE_INPUTS,
)


def gelu(input, approximate: str = "none"):
    """GELU: exact ``x * Phi(x)`` or the tanh approximation (``approximate="tanh"``).

    >>> import runba
    >>> gelu(runba.tensor([0.0, 1.0]), approximate="tanh")
    tensor([0.0000, 0.8412])
    """
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return dispatch(GELU, (input,), {"approximate": approximate})


def silu(input):
    """``x * sigmoid(x)`` (swish)."""
    return input * sigmoid(input)


def softplus(input, beta: float = 1.0, threshold: float = 20.0):
    """``log(1 + exp(beta x)) / beta``, linear above ``threshold`` (like torch)."""
    scaled = input * beta
    # exp of the clamped value never overflows; the where picks x where it is linear.
    soft = log1p(exp(minimum(scaled, threshold))) / beta
    return where(scaled > threshold, input, soft)


@tensor_method("clamp", "clip")
def clamp(input, min=None, max=None):  # noqa: A002 - torch names
    """Clamp into ``[min, max]``; the gradient is 1 inside the closed interval (like torch)."""
    if min is None and max is None:
        raise RuntimeError("clamp: At least one of 'min' or 'max' must not be None")
    out = input
    if min is not None:
        out = where(out < min, min, out)
    if max is not None:
        out = where(out > max, max, out)
    if out is input:
        out = clone(input)
    return out


clip = clamp


@tensor_method()
def clamp_min(input, min):  # noqa: A002
    return clamp(input, min=min)


@tensor_method()
def clamp_max(input, max):  # noqa: A002
    return clamp(input, max=max)


@tensor_method()
def lerp(input, end, weight):
    """``input + weight * (end - input)``."""
    return input + (end - input) * weight


@tensor_method()
def nan_to_num(input, nan: float = 0.0, posinf=None, neginf=None):
    """Replace NaN with ``nan`` and ±inf with the given values (default: dtype's extremes)."""
    if not input.dtype.is_floating_point:
        return clone(input)
    info = np.finfo(input.dtype.np)
    posinf = float(info.max) if posinf is None else posinf
    neginf = float(info.min) if neginf is None else neginf
    out = where(isnan(input), nan, input)
    out = where(out == math.inf, posinf, out)
    return where(out == -math.inf, neginf, out)


@tensor_method()
def xlogy(input, other):
    return where(input == 0, 0, input * log(other))
