"""Reductions: sum, prod, amax/amin, argmax/argmin, all/any, cumsum as primitives; mean,
var, std, max/min, logsumexp, norm, softmax and log_softmax written in them."""

from __future__ import annotations

import builtins
import math
from collections import namedtuple

import numpy as np

from runba import dtypes as _dt
from runba.ops.registry import (
    EXTERN,
    REDUCE,
    SAVE_BOTH,
    SAVE_NONE,
    OpDef,
    dispatch,
    register,
    tensor_method,
)


def normalize_dims(dim, ndim: int, op: str) -> tuple:
    """``dim`` (None, int or sequence) as a sorted tuple of non-negative axes."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    n = builtins.max(ndim, 1)
    out = []
    for d in dims:
        if not -n <= d < n:
            raise IndexError(
                f"{op}: Dimension out of range (expected to be in range of [{-n}, {n - 1}], "
                f"but got {d})"
            )
        d = d % n
        if d in out:
            raise RuntimeError(f"{op}: dim {d} appears multiple times in the list of dims")
        out.append(d)
    if ndim == 0:
        return ()
    return tuple(sorted(out))


_add_reduce = np.add.reduce
_ALL_DIMS = [tuple(range(n)) for n in range(65)]  # numpy's maximum rank is 64


def _keep_shape(in_shape, dims):
    return tuple(1 if i in dims else s for i, s in enumerate(in_shape))


def _grad_to_input(ctx, g):
    """Reshape a reduced gradient so it broadcasts against the input."""
    shape = ctx.in_meta[0][0]
    dims, keepdim = ctx.attrs["dims"], ctx.attrs["keepdim"]
    if not keepdim and dims:
        g = g.reshape(_keep_shape(shape, dims))
    return g


def _int_to_long(dtypes, attrs):
    d = attrs.get("dtype") or dtypes[0]
    return _dt.int64 if d.category != _dt.FLOATING else d


def _check_nonempty(x, dims, op):
    if x.size == 0 and (not dims or builtins.any(x.shape[d] == 0 for d in dims)):
        raise IndexError(
            f"{op}(): Expected reduction dim to be specified for input.numel() == 0, or the "
            f"reduced dims to be non-empty (input shape {list(x.shape)})"
        )


# ---------------------------------------------------------------------------- primitives
def _sum_vjp(c, g):
    return (_grad_to_input(c, g).expand(c.in_meta[0][0]),)


SUM = register(
    OpDef(
        "sum",
        REDUCE,
        # the ufunc's reduce directly: np.sum's Python wrapper costs more than a small sum
        impl=lambda x, dims, keepdim, dtype=None: _add_reduce(
            x, dims, None if dtype is None else dtype.np, None, keepdim
        ),
        out_dtype=_int_to_long,
        vjp=_sum_vjp,
    )
)


def _prod_vjp(c, g):
    # Handles zeros exactly: with one zero, only that element gets the product of the others.
    x = c.inputs[0]
    dims, keepdim = c.attrs["dims"], c.attrs["keepdim"]
    g = _grad_to_input(c, g)
    is_zero = x == 0
    nonzero_x = _where(is_zero, 1, x)
    prod_nonzero = prod_dims(nonzero_x, dims, True)
    n_zero = sum(is_zero, dims, keepdim=True)
    out = c.out if keepdim else c.out.reshape(_keep_shape(x.shape, dims))
    safe_x = _where(is_zero, 1, x)
    # The "0" entries are products that contain a zero input; writing them with that input
    # (zsum: the sum of the zero inputs, value 0) keeps their derivative, so double backward
    # is right at zeros too. Three or more zeros: every second derivative is 0.
    zsum = sum(_where(is_zero, x, 0), dims, keepdim=True)
    one_zero = _where(is_zero, prod_nonzero, prod_nonzero / safe_x * zsum)
    two_zeros = _where(is_zero, prod_nonzero * (zsum - x), 0)
    gx = _where(
        n_zero == 0,
        out / safe_x,
        _where(n_zero == 1, one_zero, _where(n_zero == 2, two_zeros, 0)),
    )
    return (g * gx,)


PROD = register(
    OpDef(
        "prod",
        REDUCE,
        impl=lambda x, dims, keepdim, dtype=None: np.prod(
            x, axis=dims, keepdims=keepdim, dtype=None if dtype is None else dtype.np
        ),
        out_dtype=_int_to_long,
        vjp=_prod_vjp,
        saves=SAVE_BOTH,
    )
)


def _extreme_vjp(c, g):
    # Ties share the gradient evenly, like torch.amax/amin.
    x = c.inputs[0]
    dims, keepdim = c.attrs["dims"], c.attrs["keepdim"]
    out = c.out if keepdim else c.out.reshape(_keep_shape(x.shape, dims))
    mask = (x == out).to(g.dtype)
    return (_grad_to_input(c, g) * mask / sum(mask, dims, keepdim=True),)


def _amax_impl(x, dims, keepdim):
    _check_nonempty(x, dims, "amax")
    return np.amax(x, axis=dims, keepdims=keepdim)


def _amin_impl(x, dims, keepdim):
    _check_nonempty(x, dims, "amin")
    return np.amin(x, axis=dims, keepdims=keepdim)


AMAX = register(OpDef("amax", REDUCE, impl=_amax_impl, vjp=_extreme_vjp, saves=SAVE_BOTH))
AMIN = register(OpDef("amin", REDUCE, impl=_amin_impl, vjp=_extreme_vjp, saves=SAVE_BOTH))


def _arg_impl(fn, name):
    def impl(x, dim, keepdim):
        _check_nonempty(x, () if dim is None else (dim,), name)
        if dim is None:
            r = fn(x.reshape(-1))
            return np.asarray(r).reshape((1,) * x.ndim) if keepdim else np.asarray(r)
        return fn(x, axis=dim, keepdims=keepdim)

    return impl


_long = lambda dtypes, attrs: _dt.int64  # noqa: E731
_bool = lambda dtypes, attrs: _dt.bool_  # noqa: E731
ARGMAX = register(OpDef("argmax", REDUCE, impl=_arg_impl(np.argmax, "argmax"), out_dtype=_long))
ARGMIN = register(OpDef("argmin", REDUCE, impl=_arg_impl(np.argmin, "argmin"), out_dtype=_long))
ALL = register(
    OpDef(
        "all",
        REDUCE,
        impl=lambda x, dims, keepdim: np.all(x, axis=dims, keepdims=keepdim),
        out_dtype=_bool,
    )
)
ANY = register(
    OpDef(
        "any",
        REDUCE,
        impl=lambda x, dims, keepdim: np.any(x, axis=dims, keepdims=keepdim),
        out_dtype=_bool,
    )
)


def _cumsum_vjp(c, g):
    d = c.attrs["dim"]
    return (cumsum(g.flip(d), d).flip(d),)


CUMSUM = register(
    OpDef(
        "cumsum",
        EXTERN,
        impl=lambda x, dim, dtype=None: np.cumsum(
            x, axis=dim, dtype=None if dtype is None else dtype.np
        ),
        out_dtype=_int_to_long,
        vjp=_cumsum_vjp,
        saves=SAVE_NONE,
    )
)


# ---------------------------------------------------------------------------- functions
def _where(c, a, b):
    from runba.ops.elementwise import where

    return where(c, a, b)


def _all_if_empty(dim):
    """torch's sum/mean/var/std reduce over every dim when given an empty dim list."""
    return None if isinstance(dim, (tuple, list)) and len(dim) == 0 else dim


def _reduce(op, input, dim, keepdim, name, **extra):
    dims = normalize_dims(dim, input.ndim, name)
    return dispatch(op, (input,), {"dims": dims, "keepdim": bool(keepdim), **extra})


@tensor_method()
def sum(input, dim=None, keepdim=False, *, dtype=None):  # noqa: A001 - torch name
    """Sum over ``dim`` (None or (): all; int or tuple), like ``torch.sum``."""
    if dim is None and dtype is None:  # the common full sum: no dim normalisation
        return dispatch(SUM, (input,), {"dims": _ALL_DIMS[input._data.ndim], "keepdim": keepdim})
    dim = _all_if_empty(dim)
    if dtype is not None:
        return _reduce(SUM, input, dim, keepdim, "sum", dtype=_dt.to_dtype(dtype))
    return _reduce(SUM, input, dim, keepdim, "sum")


def prod_dims(input, dims, keepdim=False):
    return dispatch(PROD, (input,), {"dims": dims, "keepdim": keepdim})


@tensor_method()
def prod(input, dim=None, keepdim=False, *, dtype=None):
    """Product over ``dim`` (None: all elements)."""
    if dtype is not None:
        return _reduce(PROD, input, dim, keepdim, "prod", dtype=_dt.to_dtype(dtype))
    return _reduce(PROD, input, dim, keepdim, "prod")


@tensor_method()
def amax(input, dim=(), keepdim=False):
    """Maximum over ``dim`` (default: all); ties share the gradient."""
    return _reduce(AMAX, input, None if dim == () else dim, keepdim, "amax")


@tensor_method()
def amin(input, dim=(), keepdim=False):
    """Minimum over ``dim`` (default: all); ties share the gradient."""
    return _reduce(AMIN, input, None if dim == () else dim, keepdim, "amin")


def _single_dim(dim, ndim, op):
    if dim is None:
        return None
    return normalize_dims(dim, ndim, op)[0] if ndim else None


@tensor_method()
def argmax(input, dim=None, keepdim=False):
    """Index of the (first) maximum, over all elements or along ``dim``."""
    return dispatch(
        ARGMAX, (input,), {"dim": _single_dim(dim, input.ndim, "argmax"), "keepdim": keepdim}
    )


@tensor_method()
def argmin(input, dim=None, keepdim=False):
    """Index of the (first) minimum, over all elements or along ``dim``."""
    return dispatch(
        ARGMIN, (input,), {"dim": _single_dim(dim, input.ndim, "argmin"), "keepdim": keepdim}
    )


@tensor_method()
def all(input, dim=None, keepdim=False):  # noqa: A001
    """True where every element (along ``dim``) is non-zero."""
    return _reduce(ALL, input, dim, keepdim, "all")


@tensor_method()
def any(input, dim=None, keepdim=False):  # noqa: A001
    """True where some element (along ``dim``) is non-zero."""
    return _reduce(ANY, input, dim, keepdim, "any")


@tensor_method()
def cumsum(input, dim, *, dtype=None):
    """Cumulative sum along ``dim``."""
    d = normalize_dims(dim, input.ndim, "cumsum")
    attrs = {"dim": d[0] if d else None}
    if dtype is not None:
        attrs["dtype"] = _dt.to_dtype(dtype)
    if input.ndim == 0:
        return input.reshape(1).cumsum(0).reshape(())
    return dispatch(CUMSUM, (input,), attrs)


def _numel_over(input, dims):
    n = 1
    for d in dims:
        n *= input.shape[d]
    return n


@tensor_method()
def mean(input, dim=None, keepdim=False, *, dtype=None):
    """Arithmetic mean over ``dim``; integer inputs need ``dtype=`` (like torch)."""
    if dtype is not None:
        input = input.to(_dt.to_dtype(dtype))
    if not input.dtype.is_floating_point:
        raise RuntimeError(
            "mean(): could not infer output dtype. Input dtype must be either a floating "
            f"point or complex dtype. Got: {input.dtype.name}"
        )
    dims = normalize_dims(_all_if_empty(dim), input.ndim, "mean")
    n = _numel_over(input, dims)
    return sum(input, dims, keepdim) / n if n else sum(input, dims, keepdim) * math.nan


def _correction(correction, unbiased):
    if correction is not None:
        return correction
    if unbiased is not None:
        return 1 if unbiased else 0
    return 1


@tensor_method()
def var(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Variance with Bessel's ``correction`` (default 1), like ``torch.var``."""
    if isinstance(unbiased, (int, tuple, list)) and not isinstance(unbiased, bool):
        dim, unbiased = unbiased, None  # var(x, 0) is var over dim 0
    corr = _correction(correction, unbiased)
    dims = normalize_dims(_all_if_empty(dim), input.ndim, "var")
    n = _numel_over(input, dims)
    diff = input - mean(input, dims, keepdim=True)
    return sum(diff * diff, dims, keepdim) / builtins.max(n - corr, 0)


@tensor_method()
def std(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Standard deviation: ``sqrt(var(...))``."""
    return var(input, dim, unbiased, keepdim, correction=correction).sqrt()


def var_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return var(input, dim, unbiased, keepdim, correction=correction), mean(input, dim, keepdim)


def std_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return std(input, dim, unbiased, keepdim, correction=correction), mean(input, dim, keepdim)


MaxResult = namedtuple("max", ["values", "indices"])
MinResult = namedtuple("min", ["values", "indices"])


def _extreme(input, dim, keepdim, other, elementwise, full, arg, result_type, name):
    from runba.tensor import Tensor

    if isinstance(dim, Tensor):
        return elementwise(input, dim)
    if other is not None:
        return elementwise(input, other)
    if dim is None:
        return full(input)
    indices = arg(input, dim, keepdim=True)
    from runba.ops.index import gather

    d = normalize_dims(dim, input.ndim, name)
    values = gather(input, d[0], indices) if input.ndim else input.clone()
    if not keepdim and input.ndim:
        values = values.squeeze(d[0])
        indices = indices.squeeze(d[0])
    return result_type(values, indices)


@tensor_method()
def max(input, dim=None, keepdim=False, *, other=None):  # noqa: A001
    """``max(x)``: the maximum; ``max(x, dim)``: (values, indices); ``max(x, y)``: maximum."""
    from runba.ops.elementwise import maximum

    return _extreme(input, dim, keepdim, other, maximum, amax, argmax, MaxResult, "max")


@tensor_method()
def min(input, dim=None, keepdim=False, *, other=None):  # noqa: A001
    """``min(x)``: the minimum; ``min(x, dim)``: (values, indices); ``min(x, y)``: minimum."""
    from runba.ops.elementwise import minimum

    return _extreme(input, dim, keepdim, other, minimum, amin, argmin, MinResult, "min")


@tensor_method()
def logsumexp(input, dim, keepdim=False):
    """``log(sum(exp(x)))`` over ``dim``, computed stably."""
    from runba.ops.elementwise import exp, isinf, log

    dims = normalize_dims(dim, input.ndim, "logsumexp")
    if not input.dtype.is_floating_point:
        input = input.float()  # integers: x - max(x) would wrap (uint8), and exp is float
    if _numel_over(input, dims) == 0:  # log(0) = -inf; amax of nothing would raise
        m = 0
    else:
        m = amax(input, dims, keepdim=True).detach()
        m = _where(isinf(m), 0, m)
    out = log(sum(exp(input - m), dims, keepdim=True)) + m
    return (
        out
        if keepdim
        else out.reshape(tuple(s for i, s in enumerate(input.shape) if i not in dims))
    )


@tensor_method()
def norm(input, p="fro", dim=None, keepdim=False, dtype=None):
    """Vector p-norm over ``dim`` (``"fro"``/2, 1, inf, -inf, 0 or any real p)."""
    from runba.ops.elementwise import abs as rabs

    if dtype is not None:
        input = input.to(_dt.to_dtype(dtype))
    if p == "fro" or p == 2:
        return _norm_root(sum(input * input, dim, keepdim), 2)
    if p == math.inf or p == "inf":
        return amax(rabs(input), () if dim is None else dim, keepdim)
    if p == -math.inf:
        return amin(rabs(input), () if dim is None else dim, keepdim)
    if p == 0:
        return sum((input != 0).to(input.dtype), dim, keepdim)
    if p == 1:
        return sum(rabs(input), dim, keepdim)
    return _norm_root(sum(rabs(input) ** p, dim, keepdim), p)


def _norm_root(s, p):
    """``s ** (1/p)`` with a zero gradient where ``s == 0`` (the norm of a zero vector), like
    torch: the plain root's derivative is infinite there and would give NaN gradients."""
    from runba.ops.elementwise import sqrt

    zero = s == 0
    safe = _where(zero, 1, s)
    root = sqrt(safe) if p == 2 else safe ** (1.0 / p)
    return _where(zero, 0, root)


def _softmax_dim(input, dim, name):
    if dim is None:
        import warnings

        warnings.warn(
            f"Implicit dimension choice for {name} has been deprecated. "
            "Change the call to include dim=X as an argument.",
            stacklevel=3,
        )
        dim = 0 if input.ndim in (0, 1, 3) else 1
    return normalize_dims(dim, input.ndim, name)


def _softmax_shift(input, dims):
    """The (detached) max along ``dims`` for stability; 0 when ``dims`` are empty (amax of
    nothing would raise, and the result is empty anyway)."""
    if input.numel() == 0:
        return 0
    return amax(input, dims, keepdim=True).detach()


@tensor_method()
def softmax(input, dim=None, dtype=None):
    """``exp(x) / sum(exp(x))`` along ``dim``, shifted by the (detached) max for stability."""
    from runba.ops.elementwise import exp

    if dtype is not None:
        input = input.to(_dt.to_dtype(dtype))
    dims = _softmax_dim(input, dim, "softmax")
    e = exp(input - _softmax_shift(input, dims))
    return e / sum(e, dims, keepdim=True)


@tensor_method()
def log_softmax(input, dim=None, dtype=None):
    """``x - logsumexp(x)`` along ``dim``, computed stably."""
    from runba.ops.elementwise import exp, log

    if dtype is not None:
        input = input.to(_dt.to_dtype(dtype))
    dims = _softmax_dim(input, dim, "log_softmax")
    shifted = input - _softmax_shift(input, dims)
    return shifted - log(sum(exp(shifted), dims, keepdim=True))
