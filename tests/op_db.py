"""The op-sample table (our OpInfo, DESIGN §5).

Each :class:`Sample` names the op it checks, a runba call, an *independent* reference written
in plain numpy / ``math`` (never the registry's ``expr``/``impl``: a test comparing an
implementation with itself cannot fail) and the input arrays. ``tests/test_ops.py`` turns
every sample into forward checks (float64 tight, float32 loose, non-contiguous inputs),
gradient checks (float64 central differences) and coverage meta-tests.

Conventions:

* ``inputs`` are numpy arrays; each becomes one positional tensor argument of ``fn`` and one
  positional array argument of ``ref``. Float arrays are cast to the dtype under test (float64
  or float32); integer and bool arrays keep their dtype. Python scalars and other attributes
  are closed over in ``fn``/``ref``.
* ``ref`` receives float inputs as float64 (after the cast to the dtype under test, so the only
  difference the float32 check sees is runba computing in float32).
* ``fn`` may return a Tensor or a (nested) tuple/list of Tensors; ``ref`` the same structure
  of arrays.
* The expected output dtype is inferred from the reference (float -> the float dtype under
  test, bool -> bool, integer -> int64) unless ``out_dtype`` says otherwise.
* ``op`` is the public op name (the meta-test key); ``covers`` lists the registry primitives a
  sample exercises beyond ``op`` itself; the meta-test checks at run time that it really does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import runba
from runba.ops import conv as C
from runba.ops import elementwise as E
from runba.ops import index as IX
from runba.ops import linalg as L
from runba.ops import movement as M
from runba.ops import reduce as R

# ------------------------------------------------------------------------------ the sample


@dataclass
class Sample:
    op: str
    name: str
    fn: Callable
    ref: Callable
    inputs: tuple
    grad: bool = True  # gradcheck in float64
    grad_args: tuple | None = None  # input positions that get requires_grad (default: floats)
    f32: bool = True  # run the float32 forward check
    noncontig: bool = True  # run the non-contiguous forward (+ gradient) check
    out_dtype: Any = None  # runba dtype, tuple of them, or callable(float dtype) -> dtype(s)
    rtol: float | None = None  # float64 tolerances (default 1e-12 / 1e-12)
    atol: float | None = None
    rtol32: float | None = None  # float32 tolerances (default 2e-5 / 1e-5)
    atol32: float | None = None
    fast: bool = False  # gradcheck along random directions (big inputs)
    covers: tuple = ()  # registry primitives exercised besides ``op``
    prim: str | None = None  # the registry primitive that implements ``op`` here, if not op
    # hand-written derivative: dref(*arrays) -> gradient of sum(output) w.r.t. each input in
    # grad_positions (checked tightly, where gradcheck's finite differences are loose)
    dref: Callable | None = None
    torch: Any = None  # optional torch cross-check: callable(torch, *tensors) -> result
    extra: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.op}-{self.name}"

    def float_positions(self):
        return tuple(i for i, a in enumerate(self.inputs) if a.dtype.kind == "f")

    def grad_positions(self):
        return self.float_positions() if self.grad_args is None else self.grad_args

    @property
    def has_float_input(self) -> bool:
        return bool(self.float_positions())


SAMPLES: list[Sample] = []


_MODULE_ALIASES = {
    "runba.ops.conv": "C",
    "runba.ops.elementwise": "E",
    "runba.ops.reduce": "R",
    "runba.ops.index": "IX",
    "runba.ops.movement": "M",
    "runba.ops.linalg": "L",
}


def _late_bound(fn):
    """``E.exp`` given directly becomes ``lambda *a: E.exp(*a)`` looked up at call time, so
    the optional torch cross-check can point the module aliases at torch."""
    alias = _MODULE_ALIASES.get(getattr(fn, "__module__", None))
    if alias is None or getattr(globals()[alias], fn.__name__, None) is not fn:
        return fn
    return lambda *a, _m=alias, _n=fn.__name__, **k: getattr(globals()[_m], _n)(*a, **k)


def add(op, name, fn, ref, *inputs, **kw) -> Sample:
    fn = _late_bound(fn)
    s = Sample(op, name, fn, ref, tuple(np.asarray(a) for a in inputs), **kw)
    if any(t.id == s.id for t in SAMPLES):
        raise ValueError(f"duplicate sample id {s.id}")
    SAMPLES.append(s)
    return s


# ------------------------------------------------------------------------------ inputs
_rng = np.random.default_rng(20240611)


def U(*shape, lo=-2.0, hi=2.0):
    """Uniform float64 values."""
    return np.asarray(_rng.uniform(lo, hi, shape))


def P(*shape, lo=0.5, hi=2.0):
    """Positive float64 values."""
    return U(*shape, lo=lo, hi=hi)


def away(*shape, points=(0.0,), gap=0.15, lo=-2.0, hi=2.0, period=None):
    """Uniform values at least ``gap`` away from ``points`` (and from every point shifted by a
    multiple of ``period``): inputs for gradient checks of functions with kinks or jumps."""
    x = U(*shape, lo=lo, hi=hi)
    pts = np.asarray(points, dtype=np.float64)

    def dist(v):
        diff = v[..., None] - pts
        if period is not None:
            diff = (diff + period / 2) % period - period / 2
        return np.abs(diff).min(-1)

    for _ in range(200):
        bad = dist(x) < gap
        if not bad.any():
            return x
        x[bad] = _rng.uniform(lo, hi, int(bad.sum()))
    raise AssertionError("could not draw inputs away from the given points")


def distinct(*shape, lo=-2.0, hi=2.0, gap=0.05):
    """Values with no two closer than ``gap``: no ties for max/min/argmax."""
    n = int(np.prod(shape))
    grid = np.arange(n) * gap * 2 + lo
    vals = _rng.permutation(grid) + _rng.uniform(0, gap / 2, n)
    return vals.reshape(shape)


def ints(*shape, lo=0, hi=5, dtype=np.int64):
    return np.asarray(_rng.integers(lo, hi, shape), dtype=dtype)


def bools(*shape, p=0.5):
    return np.asarray(_rng.random(shape) < p)


def A(values, dtype=None):
    """An array from literal values: float64 unless ``dtype`` is given (bool lists stay bool)."""
    arr = np.asarray(values)
    if dtype is None:
        dtype = bool if arr.dtype == bool else np.float64
    return np.asarray(arr, dtype=dtype)


# ------------------------------------------------------------------------------ references
_erf = np.vectorize(math.erf, otypes=[np.float64])


def ref_sigmoid(x):
    def one(v):
        if v >= 0:
            return 1.0 / (1.0 + math.exp(-v))
        e = math.exp(v)
        return e / (1.0 + e)

    return np.vectorize(one, otypes=[np.float64])(x)


def ref_softmax(x, dim):
    m = np.max(x, axis=dim, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=dim, keepdims=True)


def ref_log_softmax(x, dim):
    m = np.max(x, axis=dim, keepdims=True)
    return x - m - np.log(np.sum(np.exp(x - m), axis=dim, keepdims=True))


def ref_logsumexp(x, dim, keepdim=False):
    m = np.max(x, axis=dim, keepdims=True)
    m = np.where(np.isinf(m), 0.0, m)
    out = np.log(np.sum(np.exp(x - m), axis=dim, keepdims=True)) + m
    return out if keepdim else np.squeeze(out, axis=dim)


def ref_var(x, dim=None, correction=1, keepdim=False):
    n = x.size if dim is None else int(np.prod([x.shape[d] for d in np.atleast_1d(dim)]))
    mu = np.mean(x, axis=dim, keepdims=True)
    s = np.sum((x - mu) ** 2, axis=dim, keepdims=keepdim)
    return s / max(n - correction, 0)


def ref_remainder(a, b):
    # PyTorch's documented definition: a - b * floor(a / b)
    return a - b * np.floor(a / b)


def ref_gelu(x):
    return x * 0.5 * (1.0 + _erf(x / math.sqrt(2.0)))


def ref_gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def ref_softplus(x, beta=1.0, threshold=20.0):
    bx = beta * x
    soft = np.log1p(np.exp(np.minimum(bx, threshold))) / beta
    return np.where(bx > threshold, x, soft)


def ref_norm(x, p, dim=None, keepdim=False):
    a = np.abs(x)
    if p == math.inf:
        return np.max(a, axis=dim, keepdims=keepdim)
    if p == -math.inf:
        return np.min(a, axis=dim, keepdims=keepdim)
    if p == 0:
        return np.sum(a != 0, axis=dim, keepdims=keepdim).astype(x.dtype)
    return np.sum(a**p, axis=dim, keepdims=keepdim) ** (1.0 / p)


def ref_gather(x, dim, index):
    out = np.empty(index.shape, dtype=x.dtype)
    for pos in np.ndindex(*index.shape):
        src = list(pos)
        src[dim] = index[pos]
        out[pos] = x[tuple(src)]
    return out


def ref_scatter_add(x, dim, index, src):
    out = x.copy()
    for pos in np.ndindex(*index.shape):
        dst = list(pos)
        dst[dim] = index[pos]
        out[tuple(dst)] += src[pos]
    return out


def ref_tri(x, diagonal, lower):
    r, c = np.indices(x.shape[-2:])
    keep = (c - r <= diagonal) if lower else (c - r >= diagonal)
    return np.where(keep, x, 0).astype(x.dtype)


def ref_roll(x, shifts, dims):
    if dims is None:
        return ref_roll(x.reshape(-1), shifts, 0).reshape(x.shape)
    shifts = (shifts,) if isinstance(shifts, int) else shifts
    dims = (dims,) if isinstance(dims, int) else dims
    out = x
    for s, d in zip(shifts, dims):
        n = out.shape[d]
        idx = [(i - s) % n for i in range(n)]
        out = np.take(out, idx, axis=d)
    return out


def ref_one_hot(x, n):
    out = np.zeros(x.shape + (n,), dtype=np.int64)
    for pos in np.ndindex(*x.shape):
        out[pos + (x[pos],)] = 1
    return out


def ref_matmul(a, b):
    """Explicit loops over (broadcast) batches: independent of np.matmul's BLAS path."""
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    a3 = np.broadcast_to(a2, batch + a2.shape[-2:])
    b3 = np.broadcast_to(b2, batch + b2.shape[-2:])
    out = np.zeros(batch + (a2.shape[-2], b2.shape[-1]))
    for bi in np.ndindex(*batch):
        for i in range(a2.shape[-2]):
            for j in range(b2.shape[-1]):
                out[bi + (i, j)] = math.fsum(a3[bi + (i,)] * b3[bi + (slice(None), j)])
    if a.ndim == 1:
        out = out[..., 0, :]
    if b.ndim == 1:
        out = out[..., 0]
    return out


def F64(t):
    return runba.float64


# ------------------------------------------------------------------------------ elementwise
def _dgelu(x):
    return 0.5 * (1.0 + _erf(x / math.sqrt(2.0))) + x * np.exp(-0.5 * x * x) / math.sqrt(
        2 * math.pi
    )


def _dgelu_tanh(x):
    k = math.sqrt(2.0 / math.pi)
    u = k * (x + 0.044715 * x**3)
    t = np.tanh(u)
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x)


# d/dx of the unary elementwise ops, written by hand
DERIVATIVES = {
    "neg": lambda x: -np.ones_like(x),
    "abs": np.sign,
    "sign": np.zeros_like,
    "exp": np.exp,
    "exp2": lambda x: np.exp2(x) * math.log(2.0),
    "log": lambda x: 1.0 / x,
    "log2": lambda x: 1.0 / (x * math.log(2.0)),
    "log10": lambda x: 1.0 / (x * math.log(10.0)),
    "log1p": lambda x: 1.0 / (1.0 + x),
    "expm1": np.exp,
    "sqrt": lambda x: 0.5 / np.sqrt(x),
    "rsqrt": lambda x: -0.5 * x**-1.5,
    "reciprocal": lambda x: -1.0 / (x * x),
    "square": lambda x: 2.0 * x,
    "sin": np.cos,
    "cos": lambda x: -np.sin(x),
    "tan": lambda x: 1.0 / np.cos(x) ** 2,
    "tanh": lambda x: 1.0 / np.cosh(x) ** 2,
    "sigmoid": lambda x: ref_sigmoid(x) * ref_sigmoid(-x),
    "erf": lambda x: 2.0 / math.sqrt(math.pi) * np.exp(-x * x),
    "relu": lambda x: (x > 0).astype(np.float64),
    "leaky_relu": lambda x: np.where(x > 0, 1.0, 0.01),
    "gelu": _dgelu,
    "silu": lambda x: ref_sigmoid(x) * (1 + x * ref_sigmoid(-x)),
    "softplus": lambda x: np.where(x > 20, 1.0, ref_sigmoid(x)),
    "floor": np.zeros_like,
    "ceil": np.zeros_like,
    "round": np.zeros_like,
    "trunc": np.zeros_like,
}


def unary(op, fn, ref, gen=U, *, grad=True, shapes=None, method=None, **kw):
    """Samples on a 2-D, 0-dim, size-0 and size-1 input, plus the Tensor-method form."""
    shapes = shapes or {"2d": (3, 4), "0d": (), "empty": (2, 0), "size1": (1, 3)}
    d = DERIVATIVES.get(op)
    for name, shape in shapes.items():
        add(op, name, fn, ref, gen(*shape), grad=grad, dref=d and (lambda x, d=d: (d(x),)), **kw)
    if method is not None:
        add(op, "method", lambda x: getattr(x, method)(), ref, gen(2, 3), grad=grad, **kw)


unary("neg", E.neg, np.negative, method="neg")
add("neg", "operator", lambda x: -x, np.negative, U(4))
add("neg", "int32", E.neg, np.negative, ints(5, lo=-5, hi=5, dtype=np.int32), out_dtype=runba.int32)
unary("abs", E.abs, np.abs, away, method="abs")
add("abs", "operator", lambda x: abs(x), np.abs, away(4))
add("abs", "int", E.abs, np.abs, ints(5, lo=-5, hi=5))
unary("sign", E.sign, np.sign, away, method="sign")
add("sign", "bool", E.sign, lambda x: x, bools(5), prim="clone")
add("sign", "zeros", E.sign, np.sign, A([-1.5, 0.0, 2.0, -0.0]), grad=False)
unary("exp", E.exp, np.exp, method="exp")
add("exp", "large", E.exp, np.exp, A([-800.0, -30.0, 0.0, 30.0, 80.0]), grad=False, f32=False)
add("exp", "int", E.exp, np.exp, ints(5, lo=-3, hi=3), out_dtype=runba.float32)
unary("exp2", E.exp2, np.exp2, method="exp2", rtol=1e-11)
add("exp2", "int", E.exp2, np.exp2, ints(5, lo=-3, hi=3), out_dtype=runba.float32)
unary("log", E.log, np.log, P, method="log")
add("log", "edge", E.log, np.log, A([0.0, 1.0, math.inf]), grad=False)
add("log", "int", E.log, np.log, ints(4, lo=1, hi=9), out_dtype=runba.float32)
unary("log2", E.log2, np.log2, P, method="log2", rtol=1e-11, atol=1e-14)
unary("log10", E.log10, np.log10, P, method="log10", rtol=1e-11, atol=1e-14)
unary("log1p", E.log1p, np.log1p, P, method="log1p")
add("log1p", "tiny", E.log1p, np.log1p, A([1e-18, -1e-12, 1e-8]))
unary("expm1", E.expm1, np.expm1, method="expm1")
add("expm1", "tiny", E.expm1, np.expm1, A([1e-18, -1e-12, 1e-8]))
unary("sqrt", E.sqrt, np.sqrt, P, method="sqrt")
add("sqrt", "int", E.sqrt, np.sqrt, ints(4, lo=0, hi=9), out_dtype=runba.float32)
unary("rsqrt", E.rsqrt, lambda x: 1.0 / np.sqrt(x), P, method="rsqrt")
unary("reciprocal", E.reciprocal, lambda x: 1.0 / x, P, method="reciprocal")
add(
    "reciprocal",
    "int",
    E.reciprocal,
    lambda x: 1.0 / x,
    A([1, 2, -4], np.int64),
    out_dtype=runba.float32,
)
unary("square", E.square, lambda x: x * x, method="square")
add("square", "int", E.square, lambda x: x * x, ints(4, lo=-3, hi=3))
unary("sin", E.sin, np.sin, method="sin")
unary("cos", E.cos, np.cos, method="cos")
unary("tan", E.tan, np.tan, lambda *s: U(*s, lo=-1.2, hi=1.2), method="tan")
unary("tanh", E.tanh, np.tanh, method="tanh")
add("tanh", "large", E.tanh, np.tanh, A([-1000.0, -20.0, 20.0, 1000.0]))
unary("sigmoid", E.sigmoid, ref_sigmoid, method="sigmoid")
add(
    "sigmoid",
    "large",
    E.sigmoid,
    ref_sigmoid,
    A([-1000.0, -745.0, -40.0, 40.0, 1000.0]),
    atol=0.0,
    rtol=1e-12,
)
add("sigmoid", "int", E.sigmoid, ref_sigmoid, ints(4, lo=-3, hi=3), out_dtype=runba.float32)
unary("erf", E.erf, _erf, method="erf")
add("erf", "tails", E.erf, _erf, A([-6.0, -3.0, 1e-10, 3.0, 6.0]))
add("erf", "int", E.erf, _erf, ints(4, lo=-2, hi=3), out_dtype=runba.float32)
unary("relu", E.relu, lambda x: np.where(x > 0, x, 0.0), away, method="relu")
add("relu", "int", E.relu, lambda x: np.maximum(x, 0), ints(6, lo=-3, hi=3))
unary("leaky_relu", E.leaky_relu, lambda x: np.where(x > 0, x, 0.01 * x), away)
add(
    "leaky_relu",
    "slope",
    lambda x: E.leaky_relu(x, 0.2),
    lambda x: np.where(x > 0, x, 0.2 * x),
    away(3, 4),
)
unary("gelu", E.gelu, ref_gelu, rtol=1e-11, atol=1e-15)
add(
    "gelu",
    "tanh",
    lambda x: E.gelu(x, approximate="tanh"),
    ref_gelu_tanh,
    U(3, 4),
    rtol=1e-11,
    atol=1e-15,
    dref=lambda x: (_dgelu_tanh(x),),
)
add("gelu", "tanh-0d", lambda x: E.gelu(x, approximate="tanh"), ref_gelu_tanh, U(), rtol=1e-11)
add("gelu", "large", E.gelu, ref_gelu, A([-40.0, -8.0, 8.0, 40.0]), rtol=1e-11, atol=1e-15)
unary("silu", E.silu, lambda x: x * ref_sigmoid(x))
add(
    "silu",
    "large",
    E.silu,
    lambda x: x * ref_sigmoid(x),
    A([-900.0, -50.0, 50.0, 900.0]),
    grad=False,
)
unary("softplus", E.softplus, ref_softplus)
add(
    "softplus",
    "beta-threshold",
    lambda x: E.softplus(x, beta=2.0, threshold=3.0),
    lambda x: ref_softplus(x, 2.0, 3.0),
    away(3, 4, points=(1.5,), lo=-3, hi=3),
)
add("softplus", "large", E.softplus, ref_softplus, A([-800.0, -30.0, 25.0, 800.0]))
unary("floor", E.floor, np.floor, lambda *s: away(*s, period=1.0, points=(0.0,)), method="floor")
unary("ceil", E.ceil, np.ceil, lambda *s: away(*s, period=1.0, points=(0.0,)), method="ceil")
unary("trunc", E.trunc, np.trunc, lambda *s: away(*s, period=1.0, points=(0.0,)), method="trunc")
unary("round", E.round, np.round, lambda *s: away(*s, period=1.0, points=(0.5,)), method="round")
add("round", "half-even", E.round, np.round, A([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5]), grad=False)
add(
    "round",
    "decimals",
    lambda x: E.round(x, decimals=2),
    lambda x: np.round(x * 100) / 100,
    A([1.234, -5.6789, 0.005, 2.0]),
    grad=False,
)
for _op, _ref in (("floor", np.floor), ("ceil", np.ceil), ("round", np.round), ("trunc", np.trunc)):
    add(_op, "int", getattr(E, _op), _ref, ints(5, lo=-4, hi=4))
add("isnan", "mixed", E.isnan, np.isnan, A([0.0, math.nan, math.inf, -math.inf, 1.0]), grad=False)
add("isnan", "method", lambda x: x.isnan(), np.isnan, A([[math.nan, 1.0]]), grad=False)
add("isnan", "int", E.isnan, np.isnan, ints(3), grad=False)
add("isinf", "mixed", E.isinf, np.isinf, A([0.0, math.nan, math.inf, -math.inf, 1.0]), grad=False)
add("isinf", "empty", E.isinf, np.isinf, U(0, 2), grad=False)
_nonfinite = A([[0.5, math.nan, math.inf], [-math.inf, -2.0, 3.0]])
add(
    "nan_to_num",
    "explicit",
    lambda x: E.nan_to_num(x, nan=1.5, posinf=9.0, neginf=-9.0),
    lambda x: np.nan_to_num(x, nan=1.5, posinf=9.0, neginf=-9.0),
    _nonfinite,
    grad=False,
)
add("nan_to_num", "default64", E.nan_to_num, np.nan_to_num, _nonfinite, grad=False, f32=False)
add("nan_to_num", "finite-grad", E.nan_to_num, lambda x: x, U(3, 4))
add(
    "nan_to_num",
    "method",
    lambda x: x.nan_to_num(nan=-1.0, posinf=2.0, neginf=-2.0),
    lambda x: np.nan_to_num(x, nan=-1.0, posinf=2.0, neginf=-2.0),
    _nonfinite,
    grad=False,
)

# ----- binary elementwise: shapes, broadcasting, scalars, reflected forms
BINARY_SHAPES = {
    "same": ((3, 4), (3, 4)),
    "bcast": ((3, 1), (1, 4)),
    "bcast-rank": ((2, 3, 4), (4,)),
    "0d-tensor": ((3,), ()),
    "empty": ((0, 4), (1, 4)),
    "size1": ((1,), (1,)),
}


# d(sum a op b)/da, d/db written by hand (same-shape samples)
BINARY_DERIVATIVES = {
    "add": lambda a, b: (np.ones_like(a), np.ones_like(b)),
    "sub": lambda a, b: (np.ones_like(a), -np.ones_like(b)),
    "mul": lambda a, b: (b, a),
    "div": lambda a, b: (1.0 / b, -a / (b * b)),
    "pow": lambda a, b: (b * a ** (b - 1), a**b * np.log(a)),
    "maximum": lambda a, b: ((a > b).astype(np.float64), (b > a).astype(np.float64)),
    "minimum": lambda a, b: ((a < b).astype(np.float64), (b < a).astype(np.float64)),
}


def binary(op, fn, ref, gen_a=U, gen_b=U, *, shapes=None, **kw):
    for name, (sa, sb) in (shapes or BINARY_SHAPES).items():
        d = BINARY_DERIVATIVES.get(op) if sa == sb else None
        add(op, name, fn, ref, gen_a(*sa), gen_b(*sb), dref=d, **kw)


binary("add", E.add, np.add)
binary("add", lambda a, b: a + b, np.add, shapes={"operator": ((2, 3), (3,))})
add("add", "alpha", lambda a, b: E.add(a, b, alpha=2.5), lambda a, b: a + 2.5 * b, U(3), U(3))
add("add", "scalar", lambda a: a + 1.5, lambda a: a + 1.5, U(3, 2))
add("add", "reflected", lambda a: 1.5 + a, lambda a: 1.5 + a, U(3, 2))
add("add", "int+int", E.add, np.add, ints(3), ints(3))
add("add", "method", lambda a, b: a.add(b), np.add, U(2, 2), U(2))
binary("sub", E.sub, np.subtract)
add("sub", "operator", lambda a, b: a - b, np.subtract, U(2, 3), U(3))
add("sub", "alpha", lambda a, b: E.sub(a, b, alpha=0.5), lambda a, b: a - 0.5 * b, U(3), U(3))
add("sub", "reflected", lambda a: 2 - a, lambda a: 2 - a, U(3, 2))
add("sub", "scalar", lambda a: a - 2, lambda a: a - 2, U(3, 2))
binary("mul", E.mul, np.multiply)
add("mul", "operator", lambda a, b: a * b, np.multiply, U(2, 3), U(2, 1))
add("mul", "reflected", lambda a: 3 * a, lambda a: 3 * a, U(3, 2))
add("mul", "bool*float", lambda m, a: m * a, lambda m, a: m * a, bools(3, 2), U(3, 2))
binary("div", E.div, np.divide, U, lambda *s: away(*s, points=(0.0,), gap=0.3))
add("div", "operator", lambda a, b: a / b, np.divide, U(2, 3), P(3))
add("div", "reflected", lambda a: 2 / a, lambda a: 2 / a, P(3, 2))
add("div", "scalar", lambda a: a / 4, lambda a: a / 4, U(3, 2))
add(
    "div",
    "int/int",
    E.div,
    np.divide,
    ints(4, lo=-5, hi=5),
    ints(4, lo=1, hi=4),
    out_dtype=runba.float32,
    rtol=1e-6,
)
add(
    "div",
    "trunc",
    lambda a, b: E.div(a, b, rounding_mode="trunc"),
    lambda a, b: np.trunc(a / b),
    U(3, 4, lo=-5, hi=5),
    P(3, 4),
    grad=False,
    atol=1e-15,
    rtol=0,
)
add(
    "div",
    "floor",
    lambda a, b: E.div(a, b, rounding_mode="floor"),
    lambda a, b: np.floor(a / b),
    U(3, 4, lo=-5, hi=5),
    P(3, 4),
    grad=False,
    prim="floor_divide",
)
add(
    "div",
    "trunc-int",
    lambda a, b: E.div(a, b, rounding_mode="trunc"),
    lambda a, b: np.trunc(a / b).astype(np.int64),
    ints(6, lo=-7, hi=7),
    A([2, -2, 3, -3, 4, 5], np.int64),
)
add(
    "floor_divide",
    "operator",
    lambda a, b: a // b,
    lambda a, b: np.floor(a / b),
    U(3, 4, lo=-5, hi=5),
    P(3, 4),
    grad=False,
)
add(
    "floor_divide",
    "int",
    E.floor_divide,
    lambda a, b: np.floor(a / b).astype(np.int64),
    ints(6, lo=-7, hi=7),
    A([2, -2, 3, -3, 4, 5], np.int64),
)
add("floor_divide", "reflected", lambda a: 7 // a, lambda a: np.floor(7 / a), P(4), grad=False)
binary(
    "remainder",
    E.remainder,
    ref_remainder,
    lambda *s: U(*s, lo=-5, hi=5),
    lambda *s: away(*s, points=(0.0,), gap=0.5),
    grad=False,
    rtol=1e-12,
    atol=1e-12,
)
_rem_a = A([[-5.3, -1.1, 0.7], [2.45, 4.9, -3.6]])
_rem_b = A([[1.5, -1.5, 2.0], [-0.8, 1.3, 2.2]])
add("remainder", "grad", E.remainder, ref_remainder, _rem_a, _rem_b, atol=1e-12)
add("remainder", "operator", lambda a: a % 1.5, lambda a: ref_remainder(a, 1.5), _rem_a)
add("remainder", "reflected", lambda b: 5 % b, lambda b: ref_remainder(5.0, b), _rem_b)
add(
    "remainder",
    "int",
    E.remainder,
    lambda a, b: a - b * np.floor_divide(a, b),
    ints(6, lo=-7, hi=7),
    A([2, -2, 3, -3, 4, 5], np.int64),
)
binary("pow", E.pow, np.power, P, U)
add("pow", "square", lambda a: a**2, lambda a: a * a, U(3, 4))
add("pow", "cube-neg-base", lambda a: E.pow(a, 3), lambda a: a * a * a, U(3, 4, lo=-2, hi=-0.5))
add("pow", "sqrt", lambda a: a**0.5, np.sqrt, P(3, 4))
add("pow", "neg-frac", lambda a: a**-1.5, lambda a: 1 / (a * np.sqrt(a)), P(3, 4), rtol=1e-11)
add("pow", "zero-exp", lambda a: a**0, np.ones_like, U(3))
add(
    "pow",
    "reflected",
    lambda a: 2**a,
    np.exp2,
    U(3, 4),
    rtol=1e-11,
    dref=lambda a: (np.exp2(a) * math.log(2.0),),
)
add(
    "pow",
    "reflected-zero-base",
    lambda a: 0**a,
    lambda a: np.zeros_like(a),
    P(3, 4),
    dref=lambda a: (np.zeros_like(a),),
)
add(
    "pow",
    "reflected-float",
    lambda a: 1.5**a,
    lambda a: np.exp(a * math.log(1.5)),
    U(3, 4),
    rtol=1e-11,
)
add("pow", "method", lambda a, b: a.pow(b), np.power, P(2, 3), U(3))
add("pow", "int", lambda a: a**2, lambda a: a * a, ints(5, lo=-4, hi=4))
add("pow", "int-float-exp", lambda a: a**0.5, np.sqrt, ints(4, lo=0, hi=9), out_dtype=runba.float32)
binary("maximum", E.maximum, np.maximum, distinct, distinct)
binary("minimum", E.minimum, np.minimum, distinct, distinct)
add("maximum", "ties", E.maximum, np.maximum, A([1.0, 2.0, -3.0]), A([1.0, 0.5, -3.0]))
add("minimum", "ties", E.minimum, np.minimum, A([1.0, 2.0, -3.0]), A([1.0, 0.5, -3.0]))
add("maximum", "nan", E.maximum, np.maximum, A([math.nan, 1.0]), A([0.0, math.nan]), grad=False)
add("maximum", "int", E.maximum, np.maximum, ints(5), ints(5))

# where / clamp / lerp
add("where", "same", E.where, np.where, bools(3, 4), U(3, 4), U(3, 4))
add("where", "bcast", E.where, np.where, bools(3, 1), U(1, 4), U(3, 4))
add(
    "where",
    "scalar-other",
    lambda c, a: E.where(c, a, 0.0),
    lambda c, a: np.where(c, a, 0.0),
    bools(3, 4),
    U(3, 4),
)
add(
    "where",
    "scalar-input",
    lambda c, b: E.where(c, -1.0, b),
    lambda c, b: np.where(c, -1.0, b),
    bools(2, 3),
    U(2, 3),
)
add(
    "where",
    "method",
    lambda a, c, b: a.where(c, b),
    lambda a, c, b: np.where(c, a, b),
    U(3, 4),
    bools(3, 4),
    U(4),
)
add("where", "empty", E.where, np.where, bools(0, 2), U(0, 2), U(1, 2))
add(
    "where",
    "int-cond",
    lambda c, a, b: E.where(c > 0, a, b),
    lambda c, a, b: np.where(c > 0, a, b),
    ints(3, lo=-1, hi=2),
    U(3),
    U(3),
)
add(
    "where",
    "nonzero-form",
    lambda c: E.where(c),
    lambda c: np.nonzero(c),
    bools(3, 4),
    grad=False,
    prim="nonzero",
)
_clampable = away(3, 4, points=(-0.5, 0.5))
add(
    "clamp",
    "both",
    lambda x: E.clamp(x, -0.5, 0.5),
    lambda x: np.minimum(np.maximum(x, -0.5), 0.5),
    _clampable,
)
add("clamp", "min", lambda x: E.clamp(x, min=-0.5), lambda x: np.maximum(x, -0.5), _clampable)
add("clamp", "max", lambda x: x.clamp(max=0.5), lambda x: np.minimum(x, 0.5), _clampable)
add(
    "clamp",
    "tensor-bounds",
    lambda x, lo, hi: E.clamp(x, lo, hi),
    lambda x, lo, hi: np.minimum(np.maximum(x, lo), hi),
    A([-2.0, -0.3, 0.2, 1.7]),
    A([-1.0, -1.0, 0.0, 0.0]),
    A([1.0, 1.0, 1.0, 1.0]),
)
add(
    "clamp",
    "min-above-max",
    lambda x: E.clamp(x, 0.5, -0.5),
    lambda x: np.full_like(x, -0.5),
    _clampable,
)
add("clamp", "int", lambda x: E.clamp(x, 0, 3), lambda x: np.clip(x, 0, 3), ints(6, lo=-3, hi=6))
add(
    "clamp",
    "int-float-bound",
    lambda x: E.clamp(x, 0.5),
    lambda x: np.maximum(x, 0.5),
    ints(6, lo=-3, hi=6),
    out_dtype=runba.float32,
)
add(
    "clamp_min",
    "basic",
    lambda x: x.clamp_min(0.5),
    lambda x: np.maximum(x, 0.5),
    _clampable,
    prim="where",
)
add(
    "clamp_max",
    "basic",
    lambda x: x.clamp_max(-0.5),
    lambda x: np.minimum(x, -0.5),
    _clampable,
    prim="where",
)
add("clip", "alias", lambda x: E.clip(x, -0.5, 0.5), lambda x: np.clip(x, -0.5, 0.5), _clampable)
add("clip", "method", lambda x: x.clip(-0.5, 0.5), lambda x: np.clip(x, -0.5, 0.5), _clampable)
add(
    "lerp",
    "scalar-weight",
    lambda a, b: E.lerp(a, b, 0.3),
    lambda a, b: a + 0.3 * (b - a),
    U(3, 4),
    U(3, 4),
)
add("lerp", "tensor-weight", E.lerp, lambda a, b, w: a + w * (b - a), U(3, 4), U(4), U(3, 1))
add(
    "lerp",
    "method",
    lambda a, b: a.lerp(b, 0.75),
    lambda a, b: a + 0.75 * (b - a),
    U(2, 2),
    U(2, 2),
)

# comparisons (incl. scalars, reflected) and logic
for _op, _fn, _ref in (
    ("eq", E.eq, np.equal),
    ("ne", E.ne, np.not_equal),
    ("lt", E.lt, np.less),
    ("le", E.le, np.less_equal),
    ("gt", E.gt, np.greater),
    ("ge", E.ge, np.greater_equal),
):
    _fn = _late_bound(_fn)
    _a = ints(3, 4, lo=0, hi=3).astype(np.float64)
    add(_op, "same", _fn, _ref, _a, ints(3, 4, lo=0, hi=3).astype(np.float64), grad=False)
    add(_op, "bcast", _fn, _ref, _a, A([0.0, 1.0, 2.0, 1.0]), grad=False)
    add(_op, "int", _fn, _ref, ints(5, lo=0, hi=3), ints(5, lo=0, hi=3), grad=False)
    add(
        _op,
        "int-vs-float-scalar",
        lambda a, f=_fn: f(a, 1.5),
        lambda a, r=_ref: r(a, 1.5),
        ints(5, lo=0, hi=3),
        grad=False,
    )
add(
    "eq",
    "operator",
    lambda a, b: a == b,
    np.equal,
    A([1.0, 2.0, 3.0]),
    A([1.0, 0.0, 3.0]),
    grad=False,
)
add("ne", "operator", lambda a: a != 2, lambda a: a != 2, A([1.0, 2.0, 3.0]), grad=False)
add("lt", "operator", lambda a, b: a < b, np.less, U(3, 4), U(4), grad=False)
add("le", "operator", lambda a: a <= 0.5, lambda a: a <= 0.5, A([0.0, 0.5, 1.0]), grad=False)
add(
    "gt",
    "reflected",
    lambda a: 0.5 > a,
    lambda a: 0.5 > a,
    A([0.0, 0.5, 1.0]),
    grad=False,
    prim="lt",
)
add(
    "ge",
    "reflected",
    lambda a: 0.5 >= a,
    lambda a: 0.5 >= a,
    A([0.0, 0.5, 1.0]),
    grad=False,
    prim="le",
)
_b1, _b2 = bools(3, 4), bools(3, 4)
for _op, _ref, _sym in (
    ("logical_and", np.logical_and, "&"),
    ("logical_or", np.logical_or, "|"),
    ("logical_xor", np.logical_xor, "^"),
):
    _fn = _late_bound(getattr(E, _op))
    add(_op, "bool", _fn, _ref, _b1, _b2, grad=False)
    add(_op, "float", _fn, _ref, A([0.0, 1.5, -2.0, 0.0]), A([0.0, 0.0, 3.0, 1.0]), grad=False)
    add(_op, "bcast", _fn, _ref, bools(3, 1), bools(4), grad=False)
    add(
        _op,
        "method",
        lambda a, b, n=_op: getattr(a, n)(b),
        _ref,
        _b1,
        ints(3, 4, lo=0, hi=2),
        grad=False,
    )
add("logical_and", "operator", lambda a, b: a & b, np.logical_and, _b1, _b2, grad=False)
add("logical_or", "operator", lambda a, b: a | b, np.logical_or, _b1, _b2, grad=False)
add("logical_xor", "operator", lambda a, b: a ^ b, np.logical_xor, _b1, _b2, grad=False)
add("logical_and", "reflected", lambda a: True & a, lambda a: True & a, _b1, grad=False)
add("logical_or", "reflected", lambda a: False | a, lambda a: False | a, _b1, grad=False)
add("logical_xor", "reflected", lambda a: True ^ a, lambda a: True ^ a, _b1, grad=False)
add("logical_not", "bool", E.logical_not, np.logical_not, _b1, grad=False)
add("logical_not", "float", E.logical_not, np.logical_not, A([0.0, 2.0, -0.0]), grad=False)
add("logical_not", "operator", lambda a: ~a, np.logical_not, _b1, grad=False)
add(
    "logical_not",
    "method",
    lambda a: a.logical_not(),
    np.logical_not,
    ints(4, lo=0, hi=2),
    grad=False,
)


# ----- in-place forms: each works on a clone (a leaf that requires grad can't be written)
def _inplace(method, *args, **kwargs):
    def fn(x, *rest):
        y = x.clone()
        r = getattr(y, method)(*rest, *args, **kwargs)
        assert r is y, f"{method} must return self"
        return y

    return fn


# binary in-place methods: (method, reference, generator of self, generator of other)
for _m, _ref, _ga, _gb in (
    ("add_", np.add, U, U),
    ("sub_", np.subtract, U, U),
    ("subtract_", np.subtract, U, U),
    ("mul_", np.multiply, U, U),
    ("multiply_", np.multiply, U, U),
    ("div_", np.divide, U, P),
    ("divide_", np.divide, U, P),
    ("true_divide_", np.divide, U, P),
    ("pow_", np.power, P, U),
    ("maximum_", np.maximum, distinct, distinct),
    ("minimum_", np.minimum, distinct, distinct),
    ("remainder_", ref_remainder, lambda *s: _rem_a, lambda *s: _rem_b[1]),
    ("lerp_", lambda x, e: x + 0.25 * (e - x), U, U),
):
    _args = (0.25,) if _m == "lerp_" else ()
    add(_m, "tensor", _inplace(_m, *_args), _ref, _ga(2, 3), _gb(3), covers=("copy_",))
add(
    "floor_divide_",
    "tensor",
    _inplace("floor_divide_"),
    lambda a, b: np.floor(a / b),
    U(3, 4, lo=-5, hi=5),
    P(4),
    grad=False,
)
add("add_", "alpha", _inplace("add_", alpha=-2), lambda x, y: x - 2 * y, U(3), U(3))
add("add_", "scalar", _inplace("add_", 2.5), lambda x: x + 2.5, U(3, 4))
add("add_", "int", _inplace("add_", 2), lambda x: x + 2, ints(3, 4))
add("mul_", "scalar", _inplace("mul_", -3), lambda x: x * -3, U(3, 4))
add("div_", "0d-tensor", _inplace("div_"), np.divide, U(3, 4), P())


def _iop(op):
    def fn(x, y):
        z = x.clone()
        if op == "+":
            z += y
        elif op == "-":
            z -= y
        elif op == "*":
            z *= y
        elif op == "/":
            z /= y
        elif op == "**":
            z **= y
        elif op == "%":
            z %= y
        elif op == "//":
            z //= y
        return z

    return fn


add("add_", "iadd", _iop("+"), np.add, U(3, 4), U(3, 1))
add("sub_", "isub", _iop("-"), np.subtract, U(3, 4), U(4))
add("mul_", "imul", _iop("*"), np.multiply, U(3, 4), U(3, 4))
add("div_", "itruediv", _iop("/"), np.divide, U(3, 4), P(4))
add("pow_", "ipow", _iop("**"), np.power, P(3, 4), U(4))
add("remainder_", "imod", _iop("%"), ref_remainder, _rem_a, _rem_b)
add(
    "floor_divide_",
    "ifloordiv",
    _iop("//"),
    lambda a, b: np.floor(a / b),
    U(3, 4),
    P(4),
    grad=False,
)
add("add_", "iadd-int", _iop("+"), np.add, ints(3, 4), ints(4))
add("mul_", "imul-int-scalar", lambda x: _iop("*")(x, 3), lambda x: x * 3, ints(3, 4))
add(
    "floor_divide_",
    "ifloordiv-int",
    _iop("//"),
    lambda a, b: np.floor_divide(a, b),
    ints(6, lo=-7, hi=7),
    A([2, -2, 3, -3, 4, 5], np.int64),
)

# unary in-place methods
_period1 = lambda *s: away(*s, period=1.0)  # noqa: E731
for _m, _fnr, _gen, _args in (
    ("neg_", np.negative, U, ()),
    ("abs_", np.abs, away, ()),
    ("sign_", np.sign, away, ()),
    ("exp_", np.exp, U, ()),
    ("log_", np.log, P, ()),
    ("log1p_", np.log1p, P, ()),
    ("expm1_", np.expm1, U, ()),
    ("sqrt_", np.sqrt, P, ()),
    ("rsqrt_", lambda x: 1 / np.sqrt(x), P, ()),
    ("sin_", np.sin, U, ()),
    ("cos_", np.cos, U, ()),
    ("tan_", np.tan, lambda *s: U(*s, lo=-1.2, hi=1.2), ()),
    ("tanh_", np.tanh, U, ()),
    ("sigmoid_", ref_sigmoid, U, ()),
    ("relu_", lambda x: np.maximum(x, 0), away, ()),
    ("leaky_relu_", lambda x: np.where(x > 0, x, 0.1 * x), away, (0.1,)),
    ("erf_", _erf, U, ()),
    ("floor_", np.floor, _period1, ()),
    ("ceil_", np.ceil, _period1, ()),
    ("trunc_", np.trunc, _period1, ()),
    ("round_", np.round, lambda *s: away(*s, period=1.0, points=(0.5,)), ()),
    ("reciprocal_", lambda x: 1 / x, P, ()),
    ("square_", np.square, U, ()),
    ("clamp_", lambda x: np.clip(x, -0.5, 0.5), lambda *s: _clampable, (-0.5, 0.5)),
    ("clip_", lambda x: np.clip(x, -0.5, 0.5), lambda *s: _clampable, (-0.5, 0.5)),
    ("clamp_min_", lambda x: np.maximum(x, 0.5), lambda *s: _clampable, (0.5,)),
    ("clamp_max_", lambda x: np.minimum(x, 0.5), lambda *s: _clampable, (0.5,)),
    ("tril_", lambda x: ref_tri(x, 0, True), U, ()),
    ("triu_", lambda x: ref_tri(x, 1, False), U, (1,)),
    ("cumsum_", lambda x: np.cumsum(x, 1), U, (1,)),
):
    add(_m, "basic", _inplace(_m, *_args), _fnr, _gen(3, 4), covers=("copy_",), rtol=1e-11)
add(
    "masked_fill_",
    "basic",
    _inplace("masked_fill_", 7.0),
    lambda x, m: np.where(m, 7.0, x),
    U(3, 4),
    bools(3, 4),
)
add(
    "nan_to_num_",
    "basic",
    _inplace("nan_to_num_", 0.0, 1.0, -1.0),
    lambda x: np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0),
    _nonfinite,
    grad=False,
)
add("fill_", "scalar", lambda x: x.clone().fill_(2.5), lambda x: np.full_like(x, 2.5), U(3, 4))
add(
    "fill_",
    "tensor",
    lambda x, v: x.clone().fill_(v),
    lambda x, v: np.full_like(x, v),
    U(3, 4),
    U(),
)
add("zero_", "basic", lambda x: x.clone().zero_(), np.zeros_like, U(3, 4))
add(
    "copy_",
    "bcast",
    lambda x, s: x.clone().copy_(s),
    lambda x, s: np.broadcast_to(s, x.shape),
    U(3, 4),
    U(4),
)
add(
    "copy_",
    "cast",
    lambda x, s: x.clone().copy_(s),
    lambda x, s: s.astype(x.dtype) + 0 * x,
    U(2, 3),
    ints(2, 3),
)

# ------------------------------------------------------------------------------ reductions
_x34 = U(3, 4)
_x234 = U(2, 3, 4)
for _op, _fn, _ref in (("sum", R.sum, np.sum), ("mean", R.mean, np.mean)):
    _fn = _late_bound(_fn)
    add(_op, "all", _fn, _ref, _x234)
    add(_op, "dim0", lambda x, f=_fn: f(x, 0), lambda x, r=_ref: r(x, 0), _x34)
    add(_op, "dim-neg", lambda x, f=_fn: f(x, -1), lambda x, r=_ref: r(x, -1), _x234)
    add(_op, "dim-tuple", lambda x, f=_fn: f(x, (0, 2)), lambda x, r=_ref: r(x, (0, 2)), _x234)
    add(
        _op,
        "keepdim",
        lambda x, f=_fn: f(x, 1, keepdim=True),
        lambda x, r=_ref: r(x, 1, keepdims=True),
        _x234,
    )
    add(
        _op,
        "keepdim-tuple",
        lambda x, f=_fn: f(x, (-1, 0), True),
        lambda x, r=_ref: r(x, (0, 2), keepdims=True),
        _x234,
    )
    add(_op, "method", lambda x, n=_op: getattr(x, n)(dim=1), lambda x, r=_ref: r(x, 1), _x34)
    add(_op, "0d", _fn, _ref, U())
    add(_op, "size1", lambda x, f=_fn: f(x, 1), lambda x, r=_ref: r(x, 1), U(3, 1))
add("sum", "empty", R.sum, np.sum, U(0, 3))
add("sum", "empty-dim-list", lambda x: R.sum(x, ()), np.sum, _x34)
add("mean", "empty-dim-list", lambda x: x.mean([]), np.mean, _x34)
add(
    "var",
    "empty-dim-list",
    lambda x: R.var(x, ()),
    lambda x: ref_var(x),
    _x34,
    rtol=1e-11,
    extra={"torch_grad": False},
)  # torch 2.13's gradient of var(x, ()) is inf
add("sum", "empty-dim", lambda x: R.sum(x, 0), lambda x: np.sum(x, 0), U(0, 3))
add("sum", "int", R.sum, np.sum, ints(3, 4))
add(
    "sum",
    "int32",
    lambda x: R.sum(x, 1),
    lambda x: np.sum(x, 1),
    ints(3, 4, dtype=np.int32),
    out_dtype=runba.int64,
)
add("sum", "bool", R.sum, np.sum, bools(3, 4))
add(
    "sum",
    "dtype",
    lambda x: R.sum(x, dtype=runba.float64),
    lambda x: np.sum(x),
    ints(3, 4),
    out_dtype=runba.float64,
)
add(
    "sum",
    "noncontig-dims",
    lambda x: R.sum(x.transpose(0, 2), (1,)),
    lambda x: np.sum(x.transpose(2, 1, 0), 1),
    _x234,
)
add("mean", "empty-dim", lambda x: R.mean(x, 1), lambda x: np.mean(x, 1), U(0, 3))
add(
    "mean",
    "int-dtype",
    lambda x: R.mean(x, dtype=runba.float64),
    lambda x: np.mean(x),
    ints(3, 4),
    out_dtype=runba.float64,
)
add("prod", "all", R.prod, np.prod, U(2, 3))
add("prod", "dim", lambda x: R.prod(x, 1), lambda x: np.prod(x, 1), U(3, 4))
add(
    "prod",
    "keepdim",
    lambda x: x.prod(0, keepdim=True),
    lambda x: np.prod(x, 0, keepdims=True),
    U(3, 4),
)
add(
    "prod",
    "one-zero",
    lambda x: R.prod(x, 1),
    lambda x: np.prod(x, 1),
    A([[1.5, 0.0, -2.0], [0.5, 2.0, 3.0]]),
)
add(
    "prod",
    "two-zeros",
    lambda x: R.prod(x, 1),
    lambda x: np.prod(x, 1),
    A([[1.5, 0.0, 0.0], [0.0, 2.0, 3.0]]),
)
add("prod", "all-one-zero", R.prod, np.prod, A([[1.5, 0.0, -2.0], [0.5, 2.0, 3.0]]))
add("prod", "int", R.prod, np.prod, ints(2, 3, lo=1, hi=4))
add("prod", "empty", R.prod, np.prod, U(0, 2))
add("prod", "0d", R.prod, np.prod, U())
for _op, _fn, _sq in (("var", R.var, False), ("std", R.std, True)):
    _fn = _late_bound(_fn)
    _post = np.sqrt if _sq else (lambda v: v)
    add(_op, "all", _fn, lambda x, p=_post: p(ref_var(x)), _x34, rtol=1e-11)
    add(_op, "dim", lambda x, f=_fn: f(x, 1), lambda x, p=_post: p(ref_var(x, 1)), _x34, rtol=1e-11)
    add(
        _op,
        "dim-tuple-keepdim",
        lambda x, f=_fn: f(x, (0, 2), keepdim=True),
        lambda x, p=_post: p(ref_var(x, (0, 2), keepdim=True)),
        _x234,
        rtol=1e-11,
    )
    add(
        _op,
        "correction0",
        lambda x, f=_fn: f(x, 0, correction=0),
        lambda x, p=_post: p(ref_var(x, 0, 0)),
        _x34,
        rtol=1e-11,
    )
    add(
        _op,
        "correction2",
        lambda x, f=_fn: f(x, -1, correction=2),
        lambda x, p=_post: p(ref_var(x, -1, 2)),
        _x234,
        rtol=1e-11,
    )
    add(
        _op,
        "unbiased-false",
        lambda x, f=_fn: f(x, 1, unbiased=False),
        lambda x, p=_post: p(ref_var(x, 1, 0)),
        _x34,
        rtol=1e-11,
    )
    add(
        _op,
        "positional-unbiased",
        lambda x, f=_fn: f(x, 0, False),
        lambda x, p=_post: p(ref_var(x, 0, 0)),
        _x34,
        rtol=1e-11,
    )
    add(
        _op,
        "method",
        lambda x, n=_op: getattr(x, n)(dim=0, keepdim=True),
        lambda x, p=_post: p(ref_var(x, 0, keepdim=True)),
        _x34,
        rtol=1e-11,
    )

add(
    "var_mean",
    "dim",
    lambda x: R.var_mean(x, 1),
    lambda x: (ref_var(x, 1), np.mean(x, 1)),
    _x34,
    rtol=1e-11,
    prim="sum",
)
add(
    "std_mean",
    "all-correction0",
    lambda x: R.std_mean(x, correction=0),
    lambda x: (np.sqrt(ref_var(x, None, 0)), np.mean(x)),
    _x34,
    rtol=1e-11,
    prim="sqrt",
)
add(
    "xlogy",
    "basic",
    lambda x, y: x.xlogy(y),
    lambda x, y: np.where(x == 0, 0.0, x * np.log(y)),
    A([[0.0, 1.5, -2.0], [0.5, 0.0, 3.0]]),
    P(2, 3),
    grad_args=(1,),
    prim="log",
)
_d34 = distinct(3, 4)
_d234 = distinct(2, 3, 4)
for _op, _npf, _nparg in (("max", np.max, np.argmax), ("min", np.min, np.argmin)):
    _fn = _late_bound(getattr(R, _op))
    add(_op, "all", _fn, _npf, _d34)
    add(
        _op,
        "dim",
        lambda x, f=_fn: tuple(f(x, 1)),
        lambda x, a=_nparg, m=_npf: (m(x, 1), a(x, 1)),
        _d34,
    )
    add(
        _op,
        "dim-keepdim",
        lambda x, f=_fn: tuple(f(x, 0, keepdim=True)),
        lambda x, a=_nparg, m=_npf: (m(x, 0, keepdims=True), a(x, 0, keepdims=True)),
        _d234,
    )
    add(
        _op,
        "dim-neg",
        lambda x, n=_op: tuple(getattr(x, n)(dim=-1)),
        lambda x, a=_nparg, m=_npf: (m(x, -1), a(x, -1)),
        _d234,
    )
    add(_op, "binary", _fn, np.maximum if _op == "max" else np.minimum, distinct(3, 4), distinct(4))
    add(_op, "0d-dim", lambda x, f=_fn: tuple(f(x, 0)), lambda x: (x, np.array(0)), U())
    add(_op, "method-all", lambda x, n=_op: getattr(x, n)(), _npf, _d234)
for _op, _npf in (("amax", np.max), ("amin", np.min)):
    _fn = _late_bound(getattr(R, _op))
    add(_op, "all", _fn, _npf, _d34)
    add(_op, "dim", lambda x, f=_fn: f(x, 1), lambda x, m=_npf: m(x, 1), _d34)
    add(_op, "dim-tuple", lambda x, f=_fn: f(x, (0, 2)), lambda x, m=_npf: m(x, (0, 2)), _d234)
    add(
        _op,
        "keepdim",
        lambda x, f=_fn: f(x, -1, keepdim=True),
        lambda x, m=_npf: m(x, -1, keepdims=True),
        _d234,
    )
    add(
        _op,
        "tie-pair",
        lambda x, f=_fn: f(x, 1),
        lambda x, m=_npf: m(x, 1),
        A([[1.0, 3.0, 3.0], [-2.0, -2.0, 5.0]]) * (1 if _op == "amax" else -1),
    )
    add(_op, "int", _fn, _npf, ints(3, 4))
    add(_op, "empty-other-dim", lambda x, f=_fn: f(x, 1), lambda x, m=_npf: m(x, 1), U(0, 3))
for _op, _npf in (("argmax", np.argmax), ("argmin", np.argmin)):
    _fn = _late_bound(getattr(R, _op))
    add(_op, "all", _fn, _npf, _d34, grad=False)
    add(_op, "dim", lambda x, f=_fn: f(x, 1), lambda x, a=_npf: a(x, 1), _d34, grad=False)
    add(
        _op,
        "keepdim",
        lambda x, f=_fn: f(x, 0, keepdim=True),
        lambda x, a=_npf: a(x, 0, keepdims=True),
        _d234,
        grad=False,
    )
    add(
        _op,
        "first-of-ties",
        lambda x, f=_fn: f(x, 1),
        lambda x, a=_npf: a(x, 1),
        A([[1.0, 1.0, 1.0], [0.0, 2.0, 2.0]]),
        grad=False,
    )
    add(_op, "int", _fn, _npf, A([3, 1, 4, 1, 5, 9, 2, 6], np.int64), grad=False)
add("logsumexp", "dim", lambda x: R.logsumexp(x, 1), lambda x: ref_logsumexp(x, 1), _x34)
add(  # integers are summed as floats: x - max(x) must not wrap around in uint8
    "logsumexp",
    "uint8",
    lambda x: R.logsumexp(x, 1),
    lambda x: ref_logsumexp(x.astype(np.float64), 1),
    A([[1, 0, 2], [200, 3, 255]], np.uint8),
    grad=False,
)
add(
    "logsumexp",
    "dim-tuple",
    lambda x: R.logsumexp(x, (0, 2)),
    lambda x: ref_logsumexp(x, (0, 2)),
    _x234,
)
add(
    "logsumexp",
    "keepdim",
    lambda x: x.logsumexp(-1, keepdim=True),
    lambda x: ref_logsumexp(x, -1, True),
    _x234,
)
add(
    "logsumexp",
    "large",
    lambda x: R.logsumexp(x, 1),
    lambda x: ref_logsumexp(x, 1),
    A([[1000.0, 1000.5, 999.0], [-1000.0, -1001.0, -999.5]]),
)
add(
    "logsumexp",
    "neg-inf-row",
    lambda x: R.logsumexp(x, 1),
    lambda x: ref_logsumexp(x, 1),
    A([[-math.inf, -math.inf], [0.0, -math.inf]]),
    grad=False,
)
for _op, _npf in (("all", np.all), ("any", np.any)):
    _fn = _late_bound(getattr(R, _op))
    _b = A([[True, False, True], [True, True, True]], bool)
    add(_op, "all", _fn, _npf, _b, grad=False)
    add(_op, "dim", lambda x, f=_fn: f(x, 1), lambda x, r=_npf: r(x, 1), _b, grad=False)
    add(
        _op,
        "keepdim",
        lambda x, f=_fn: f(x, 0, keepdim=True),
        lambda x, r=_npf: r(x, 0, keepdims=True),
        _b,
        grad=False,
    )
    add(
        _op,
        "float",
        lambda x, f=_fn: f(x, 1),
        lambda x, r=_npf: r(x, 1),
        A([[0.0, 1.0], [2.0, 3.0], [0.0, 0.0]]),
        grad=False,
    )
    add(_op, "empty", _fn, _npf, np.zeros((0, 2), bool), grad=False)
    add(_op, "method", lambda x, n=_op: getattr(x, n)(), _npf, ints(2, 3, lo=0, hi=2), grad=False)
add("cumsum", "dim0", lambda x: R.cumsum(x, 0), lambda x: np.cumsum(x, 0), _x34, rtol=1e-11)
add("cumsum", "dim-neg", lambda x: x.cumsum(-1), lambda x: np.cumsum(x, -1), _x234, rtol=1e-11)
add(
    "cumsum",
    "int",
    lambda x: R.cumsum(x, 0),
    lambda x: np.cumsum(x, 0),
    ints(4, dtype=np.int32),
    out_dtype=runba.int64,
)
add(
    "cumsum",
    "dtype",
    lambda x: R.cumsum(x, 0, dtype=runba.float64),
    lambda x: np.cumsum(x, 0),
    ints(4),
    out_dtype=runba.float64,
)
add("cumsum", "0d", lambda x: R.cumsum(x, 0), lambda x: x, U())
add("cumsum", "empty", lambda x: R.cumsum(x, 1), lambda x: np.cumsum(x, 1), U(2, 0))
_n = U(3, 4)
for _p in (2, 1, 3, math.inf, -math.inf, 0, 0.5):
    _g = _n if _p not in (math.inf, -math.inf) else _d34
    _gen = _g if _p != 0.5 else away(3, 4)
    # p=0 counts non-zeros: torch's result requires grad (zero gradient), runba's does not
    add(
        "norm",
        f"p{_p}",
        lambda x, p=_p: R.norm(x, p),
        lambda x, p=_p: ref_norm(x, p),
        _gen,
        rtol=1e-11,
        grad=_p != 0,
    )
    add(
        "norm",
        f"p{_p}-dim",
        lambda x, p=_p: R.norm(x, p, dim=1),
        lambda x, p=_p: ref_norm(x, p, 1),
        _gen,
        rtol=1e-11,
        grad=_p != 0,
    )
add(
    "norm",
    "zero-vector",
    lambda x: R.norm(x, dim=1),
    lambda x: np.sqrt(np.sum(x * x, 1)),
    A([[0.0, 0.0, 0.0], [3.0, 0.0, 4.0]]),
    dref=lambda x: (np.array([[0.0, 0.0, 0.0], [0.6, 0.0, 0.8]]),),
)
add(
    "norm",
    "p3-zero-vector",
    lambda x: R.norm(x, 3),
    lambda x: np.zeros(()),
    np.zeros((2, 2)),
    dref=lambda x: (np.zeros((2, 2)),),
)
add("norm", "fro", R.norm, lambda x: np.sqrt(np.sum(x * x)), _n, rtol=1e-11)
add(
    "norm",
    "dim-tuple-keepdim",
    lambda x: x.norm(dim=(0, 2), keepdim=True),
    lambda x: ref_norm(x, 2, (0, 2), True),
    _x234,
    rtol=1e-11,
)
add(
    "softmax",
    "dim1",
    lambda x: R.softmax(x, 1),
    lambda x: ref_softmax(x, 1),
    _x34,
    rtol=1e-11,
    atol=1e-15,
    dref=lambda x: (np.zeros_like(x),),
)  # rows sum to 1: d(sum)/dx = 0
add(
    "softmax",
    "dim0",
    lambda x: R.softmax(x, 0),
    lambda x: ref_softmax(x, 0),
    _x234,
    rtol=1e-11,
    atol=1e-15,
)
add(
    "softmax",
    "method",
    lambda x: x.softmax(-1),
    lambda x: ref_softmax(x, -1),
    _x234,
    rtol=1e-11,
    atol=1e-15,
)
add(
    "softmax",
    "large",
    lambda x: R.softmax(x, -1),
    lambda x: ref_softmax(x, -1),
    A([[1000.0, 1001.0, 999.0], [-1000.0, -1002.0, -999.0], [1e4, 0.0, -1e4]]),
    rtol=1e-11,
    atol=1e-15,
)
add(
    "softmax",
    "1d",
    lambda x: R.softmax(x, 0),
    lambda x: ref_softmax(x, 0),
    U(5),
    rtol=1e-11,
    atol=1e-15,
)
add(
    "softmax",
    "empty",
    lambda x: R.softmax(x, 1),
    lambda x: ref_softmax(x, 1) if x.size else x,
    U(0, 3),
)
add(
    "log_softmax",
    "dim1",
    lambda x: R.log_softmax(x, 1),
    lambda x: ref_log_softmax(x, 1),
    _x34,
    rtol=1e-11,
    atol=1e-14,
    dref=lambda x: (1.0 - x.shape[1] * ref_softmax(x, 1),),
)
add(
    "log_softmax",
    "dim0",
    lambda x: x.log_softmax(0),
    lambda x: ref_log_softmax(x, 0),
    _x234,
    rtol=1e-11,
    atol=1e-14,
)
add(
    "log_softmax",
    "large",
    lambda x: R.log_softmax(x, -1),
    lambda x: ref_log_softmax(x, -1),
    A([[1000.0, 1001.0, 999.0], [-1000.0, -1002.0, -999.0], [1e4, 0.0, -1e4]]),
    rtol=1e-11,
    atol=1e-12,
)

add("softmax", "empty-dim", lambda x: R.softmax(x, 1), lambda x: x, U(2, 0))
add("log_softmax", "empty-dim", lambda x: x.log_softmax(-1), lambda x: x, U(3, 0))
add("logsumexp", "empty-dim", lambda x: R.logsumexp(x, 1), lambda x: np.full(2, -np.inf), U(2, 0))

# ------------------------------------------------------------------------------ shape ops
add("view", "basic", lambda x: x.view(4, 3), lambda x: x.reshape(4, 3), _x34, noncontig=False)
add("view", "infer", lambda x: x.view(-1), lambda x: x.reshape(-1), _x234, noncontig=False)
add("view", "tuple", lambda x: x.view((2, 12)), lambda x: x.reshape(2, 12), _x234, noncontig=False)
add("view", "0d", lambda x: x.view(1, 1), lambda x: x.reshape(1, 1), U(), noncontig=False)
add(
    "view",
    "empty",
    lambda x: x.view(3, 0, 2),
    lambda x: x.reshape(3, 0, 2),
    U(0, 6),
    noncontig=False,
)
add(
    "view_as",
    "basic",
    lambda x, y: x.view_as(y),
    lambda x, y: x.reshape(y.shape),
    _x34,
    U(2, 6),
    grad_args=(0,),
    noncontig=False,
    prim="reshape",
)
add(
    "reshape_as",
    "basic",
    lambda x, y: x.reshape_as(y),
    lambda x, y: x.reshape(y.shape),
    _x34,
    U(6, 2),
    grad_args=(0,),
    prim="reshape",
)
add("reshape", "basic", lambda x: M.reshape(x, (4, 3)), lambda x: x.reshape(4, 3), _x34)
add("reshape", "infer", lambda x: x.reshape(2, -1), lambda x: x.reshape(2, -1), _x234)
add("reshape", "to-0d", lambda x: x.reshape(()), lambda x: x.reshape(()), U(1, 1))
add("reshape", "of-transpose", lambda x: x.t().reshape(-1), lambda x: x.T.reshape(-1), _x34)
add("flatten", "all", M.flatten, lambda x: x.reshape(-1), _x234)
add("flatten", "range", lambda x: x.flatten(1), lambda x: x.reshape(2, 12), _x234)
add("flatten", "start-end", lambda x: M.flatten(x, 0, 1), lambda x: x.reshape(6, 4), _x234)
add("flatten", "0d", M.flatten, lambda x: x.reshape(1), U())
add("unflatten", "basic", lambda x: M.unflatten(x, 1, (2, 2)), lambda x: x.reshape(3, 2, 2), _x34)
add(
    "unflatten", "infer", lambda x: x.unflatten(-1, (2, -1)), lambda x: x.reshape(2, 3, 2, 2), _x234
)
add("squeeze", "all", M.squeeze, np.squeeze, U(1, 3, 1, 2))
add("squeeze", "dim", lambda x: x.squeeze(2), lambda x: np.squeeze(x, 2), U(1, 3, 1, 2))
add("squeeze", "non-1-dim", lambda x: x.squeeze(1), lambda x: x, U(1, 3, 1, 2))
add(
    "squeeze",
    "tuple",
    lambda x: M.squeeze(x, (0, -2)),
    lambda x: np.squeeze(x, (0, 2)),
    U(1, 3, 1, 2),
)
add("unsqueeze", "front", lambda x: M.unsqueeze(x, 0), lambda x: x[None], _x34)
add("unsqueeze", "neg", lambda x: x.unsqueeze(-1), lambda x: x[..., None], _x34)
add("unsqueeze", "middle", lambda x: x.unsqueeze(1), lambda x: x[:, None], _x34)
add("unsqueeze", "0d", lambda x: x.unsqueeze(0), lambda x: x.reshape(1), U())
add("permute", "basic", lambda x: M.permute(x, (2, 0, 1)), lambda x: x.transpose(2, 0, 1), _x234)
add("permute", "varargs-neg", lambda x: x.permute(-1, 1, 0), lambda x: x.transpose(2, 1, 0), _x234)
add("transpose", "basic", lambda x: M.transpose(x, 0, 2), lambda x: np.swapaxes(x, 0, 2), _x234)
add("transpose", "neg", lambda x: x.transpose(-1, -2), lambda x: np.swapaxes(x, -1, -2), _x234)
add("t", "2d", M.t, lambda x: x.T, _x34)
add("t", "1d", lambda x: x.t(), lambda x: x, U(4))
add("T", "3d", lambda x: x.T, lambda x: x.transpose(2, 1, 0), _x234)
add("T", "2d", lambda x: x.T, lambda x: x.T, _x34)
add("mT", "3d", lambda x: x.mT, lambda x: np.swapaxes(x, -1, -2), _x234)
add("expand", "basic", lambda x: x.expand(3, 4), lambda x: np.broadcast_to(x, (3, 4)), U(3, 1))
add(
    "expand",
    "new-dims",
    lambda x: x.expand(2, -1, 4),
    lambda x: np.broadcast_to(x, (2, 3, 4)),
    U(3, 1),
)
add("expand", "tuple", lambda x: M.expand(x, (2, 3)), lambda x: np.broadcast_to(x, (2, 3)), U(3))
add("expand", "0d", lambda x: x.expand(2, 2), lambda x: np.broadcast_to(x, (2, 2)), U())
add("expand", "same", lambda x: x.expand(3, 4), lambda x: x, _x34, prim="reshape")
add(
    "broadcast_to",
    "basic",
    lambda x: M.broadcast_to(x, (2, 3, 4)),
    lambda x: np.broadcast_to(x, (2, 3, 4)),
    U(3, 1),
)
add(
    "expand_as",
    "basic",
    lambda x, y: x.expand_as(y),
    lambda x, y: np.broadcast_to(x, y.shape),
    U(1, 4),
    U(3, 4),
    grad_args=(0,),
)
add("repeat", "basic", lambda x: x.repeat(2, 3), lambda x: np.tile(x, (2, 3)), U(2, 2))
add("repeat", "new-dims", lambda x: M.repeat(x, 2, 1, 2), lambda x: np.tile(x, (2, 1, 2)), U(2, 3))
add("repeat", "zero", lambda x: x.repeat(0, 2), lambda x: np.tile(x, (0, 2)), U(2, 3))
add("tile", "short-dims", lambda x: x.tile(2), lambda x: np.tile(x, 2), U(2, 3))
add("tile", "long-dims", lambda x: M.tile(x, (2, 1, 2)), lambda x: np.tile(x, (2, 1, 2)), U(2, 3))
add("flip", "one", lambda x: x.flip(0), lambda x: x[::-1], _x34)
add("flip", "many", lambda x: M.flip(x, (0, 2)), lambda x: x[::-1, :, ::-1], _x234)
add("fliplr", "basic", lambda x: x.fliplr(), np.fliplr, _x34, prim="flip")
add("flipud", "basic", lambda x: x.flipud(), np.flipud, _x34, prim="flip")
add("flip", "neg", lambda x: x.flip(-1), lambda x: x[..., ::-1], _x234)
add("roll", "dim", lambda x: IX.roll(x, 1, 1), lambda x: ref_roll(x, 1, 1), _x34)
add("roll", "neg-shift", lambda x: x.roll(-3, 0), lambda x: ref_roll(x, -3, 0), U(5, 2))
add(
    "roll",
    "multi",
    lambda x: x.roll((1, -1), (0, 2)),
    lambda x: ref_roll(x, (1, -1), (0, 2)),
    _x234,
)
add("roll", "flat", lambda x: x.roll(5), lambda x: ref_roll(x, 5, None), _x34)
add("roll", "full-turn", lambda x: x.roll(4, 1), lambda x: x, _x34)
add("narrow", "basic", lambda x: x.narrow(1, 1, 2), lambda x: x[:, 1:3], _x34)
add("narrow", "neg-start", lambda x: M.narrow(x, 0, -2, 2), lambda x: x[1:3], _x34)
add("narrow", "empty", lambda x: x.narrow(1, 4, 0), lambda x: x[:, 4:4], _x34)
add("split", "int", lambda x: x.split(2, 1), lambda x: (x[:, 0:2], x[:, 2:4]), _x34)
add("split", "uneven", lambda x: M.split(x, 2), lambda x: (x[0:2], x[2:3]), _x34)
add(
    "split",
    "sections",
    lambda x: x.split([1, 3], dim=-1),
    lambda x: (x[..., :1], x[..., 1:]),
    _x234,
)
add("chunk", "even", lambda x: x.chunk(2, 1), lambda x: (x[:, :2], x[:, 2:]), _x34)
add(
    "chunk",
    "uneven",
    lambda x: M.chunk(x, 4, 0),
    lambda x: tuple(x[i : i + 2] for i in (0, 2, 4)),
    U(6, 2),
)
add(
    "chunk",
    "more-than-size",
    lambda x: x.chunk(5),
    lambda x: tuple(x[i : i + 1] for i in range(3)),
    U(3, 2),
)
add("unbind", "dim1", lambda x: x.unbind(1), lambda x: tuple(x[:, i] for i in range(4)), _x34)
add("movedim", "basic", lambda x: M.movedim(x, 0, -1), lambda x: np.moveaxis(x, 0, -1), _x234)
add("contiguous", "transposed", lambda x: x.t().contiguous(), lambda x: x.T, _x34)
add("clone", "basic", E.clone, lambda x: x.copy(), _x34)
add("clone", "int", E.clone, lambda x: x.copy(), ints(3))
add(
    "cast",
    "to-float32",
    lambda x: x.to(runba.float32),
    lambda x: x,
    U(3),
    grad=False,
    out_dtype=runba.float32,
    rtol=1e-7,
)
add(
    "cast",
    "to-int",
    lambda x: x.long(),
    lambda x: np.trunc(x).astype(np.int64),
    U(3, 4, lo=-5, hi=5),
    grad=False,
)
add(
    "cast",
    "bool-to-float",
    lambda x: x.double(),
    lambda x: x.astype(np.float64),
    bools(3),
    out_dtype=runba.float64,
)
add(
    "cast",
    "roundtrip-grad",
    lambda x: x.to(runba.float16).to(runba.float64) * 0 + x,
    lambda x: x,
    U(3),
    f32=False,
)
add(
    "cat",
    "dim0",
    lambda a, b: IX.cat([a, b]),
    lambda a, b: np.concatenate([a, b]),
    U(2, 3),
    U(1, 3),
)
add(
    "cat",
    "dim1",
    lambda a, b, c: IX.cat((a, b, c), 1),
    lambda a, b, c: np.concatenate([a, b, c], 1),
    U(2, 1),
    U(2, 3),
    U(2, 2),
)
add(
    "cat",
    "neg-dim",
    lambda a, b: IX.cat([a, b], -1),
    lambda a, b: np.concatenate([a, b], -1),
    U(2, 2, 1),
    U(2, 2, 2),
)
add(
    "cat",
    "skip-empty-1d",
    lambda a, b: IX.cat([a, b]),
    lambda a, b: b,
    U(0),
    U(2, 3),
    grad_args=(1,),
)
add(
    "cat",
    "with-empty",
    lambda a, b: IX.cat([a, b], 0),
    lambda a, b: np.concatenate([a, b]),
    U(0, 3),
    U(2, 3),
)
add("cat", "single", lambda a: IX.cat([a], 1), lambda a: a, _x34)
add(
    "cat", "int", lambda a, b: IX.cat([a, b]), lambda a, b: np.concatenate([a, b]), ints(2), ints(3)
)
add(
    "hstack",
    "2d",
    lambda a, b: IX.hstack([a, b]),
    lambda a, b: np.hstack([a, b]),
    U(2, 3),
    U(2, 1),
    prim="cat",
)
add(
    "hstack",
    "1d",
    lambda a, b: IX.hstack([a, b]),
    lambda a, b: np.hstack([a, b]),
    U(3),
    U(2),
    prim="cat",
)
add(
    "vstack",
    "mixed",
    lambda a, b: IX.vstack([a, b]),
    lambda a, b: np.vstack([a, b]),
    U(2, 3),
    U(3),
    prim="cat",
)
add("stack", "dim0", lambda a, b: IX.stack([a, b]), lambda a, b: np.stack([a, b]), U(2, 3), U(2, 3))
add(
    "stack",
    "dim-last",
    lambda a, b: IX.stack([a, b], -1),
    lambda a, b: np.stack([a, b], -1),
    U(2, 3),
    U(2, 3),
)
add(
    "stack",
    "0d",
    lambda a, b, c: IX.stack([a, b, c]),
    lambda a, b, c: np.stack([a, b, c]),
    U(),
    U(),
    U(),
)
_gidx = A([[0, 2, 1, 0], [2, 2, 0, 1]], np.int64)
add(
    "gather", "dim0", lambda x, i: IX.gather(x, 0, i), lambda x, i: ref_gather(x, 0, i), _x34, _gidx
)
add(
    "gather",
    "dim1",
    lambda x, i: x.gather(1, i),
    lambda x, i: ref_gather(x, 1, i),
    _x34,
    A([[3, 0], [1, 1], [2, 0]], np.int64),
)
add(
    "gather",
    "smaller-index",
    lambda x, i: x.gather(0, i),
    lambda x, i: ref_gather(x, 0, i),
    _x34,
    A([[2, 0], [1, 1]], np.int64),
)
add(
    "gather",
    "3d",
    lambda x, i: x.gather(-1, i),
    lambda x, i: ref_gather(x, 2, i),
    _x234,
    ints(2, 3, 2, lo=0, hi=4),
)
add(
    "scatter_add",
    "dim0",
    lambda x, i, s: IX.scatter_add(x, 0, i, s),
    lambda x, i, s: ref_scatter_add(x, 0, i, s),
    _x34,
    _gidx,
    U(2, 4),
)
add(
    "scatter_add",
    "dim1",
    lambda x, i, s: x.scatter_add(1, i, s),
    lambda x, i, s: ref_scatter_add(x, 1, i, s),
    _x34,
    A([[3, 3], [1, 0], [2, 2]], np.int64),
    U(3, 2),
)
add(
    "scatter_add",
    "bigger-src",
    lambda x, i, s: x.scatter_add(1, i, s),
    lambda x, i, s: ref_scatter_add(x, 1, i, s),
    _x34,
    A([[0, 0], [1, 3]], np.int64),
    U(3, 3),
)
add(
    "index_select",
    "dim0",
    lambda x, i: IX.index_select(x, 0, i),
    lambda x, i: x[i],
    _x34,
    A([2, 0, 2], np.int64),
)
add(
    "index_select",
    "dim-last",
    lambda x, i: x.index_select(-1, i),
    lambda x, i: x[..., i],
    _x234,
    A([3, 1], np.int64),
)
add(
    "index_select",
    "int32-index",
    lambda x, i: x.index_select(0, i),
    lambda x, i: x[i],
    _x34,
    A([1, 1], np.int32),
)
add(
    "masked_fill",
    "scalar",
    lambda x, m: IX.masked_fill(x, m, -1.0),
    lambda x, m: np.where(m, -1.0, x),
    _x34,
    bools(3, 4),
)
add(
    "masked_fill",
    "bcast-mask",
    lambda x, m: x.masked_fill(m, 0.0),
    lambda x, m: np.where(m, 0.0, x),
    _x34,
    bools(4),
)
add(
    "masked_fill",
    "tensor-value",
    lambda x, m, v: x.masked_fill(m, v),
    lambda x, m, v: np.where(m, v, x),
    _x34,
    bools(3, 4),
    U(),
)
add(
    "masked_fill",
    "-inf",
    lambda x, m: x.masked_fill(m, -math.inf),
    lambda x, m: np.where(m, -math.inf, x),
    _x34,
    bools(3, 4),
    grad=False,
)
add(
    "masked_fill",
    "int",
    lambda x, m: x.masked_fill(m, 7),
    lambda x, m: np.where(m, 7, x),
    ints(3, 4),
    bools(3, 4),
)
for _op, _low in (("tril", True), ("triu", False)):
    _fn = _late_bound(getattr(IX, _op))
    add(_op, "square", _fn, lambda x, lo=_low: ref_tri(x, 0, lo), U(4, 4))
    add(_op, "diag+1", lambda x, f=_fn: f(x, 1), lambda x, lo=_low: ref_tri(x, 1, lo), _x34)
    add(
        _op,
        "diag-2",
        lambda x, n=_op: getattr(x, n)(-2),
        lambda x, lo=_low: ref_tri(x, -2, lo),
        U(4, 3),
    )
    add(_op, "batched", _fn, lambda x, lo=_low: ref_tri(x, 0, lo), _x234)
    add(_op, "bool", _fn, lambda x, lo=_low: ref_tri(x, 0, lo), bools(3, 3))
add(
    "one_hot",
    "explicit",
    lambda x: IX.one_hot(x, 5),
    lambda x: ref_one_hot(x, 5),
    A([0, 3, 1, 4], np.int64),
)
add("one_hot", "inferred", IX.one_hot, lambda x: ref_one_hot(x, 4), A([[0, 3], [1, 1]], np.int64))
add(
    "one_hot",
    "empty",
    lambda x: IX.one_hot(x, 3),
    lambda x: ref_one_hot(x, 3),
    np.zeros((0,), np.int64),
)
add("nonzero", "2d", IX.nonzero, lambda x: np.argwhere(x), A([[0.0, 1.5], [2.0, 0.0]]), grad=False)
add("nonzero", "as-tuple", lambda x: x.nonzero(as_tuple=True), np.nonzero, bools(3, 4), grad=False)
add("nonzero", "empty", IX.nonzero, np.argwhere, np.zeros((2, 2), bool), grad=False)
add("nonzero", "0d", IX.nonzero, lambda x: np.zeros((1, 0), np.int64), A(3.0), grad=False)
add("nonzero", "0d-zero", IX.nonzero, lambda x: np.zeros((0, 0), np.int64), A(0.0), grad=False)
add(
    "nonzero",
    "0d-as-tuple",
    lambda x: x.nonzero(as_tuple=True),
    lambda x: (np.array([0]),),
    A(True),
    grad=False,
)
add(
    "where",
    "nonzero-form-0d",
    lambda c: E.where(c),
    lambda c: (np.array([0]),),
    A(True),
    grad=False,
    prim="nonzero",
)
add("masked_select", "basic", IX.masked_select, lambda x, m: x[m], _x34, bools(3, 4))
add(
    "masked_select",
    "bcast",
    IX.masked_select,
    lambda x, m: np.broadcast_to(x, (3, 4))[m],
    U(4),
    bools(3, 4),
)
add(
    "index_put",
    "functional",
    lambda x, i, v: IX.index_put(x, (i,), v),
    lambda x, i, v: _put(x, (i,), v),
    _x34,
    A([2, 0], np.int64),
    U(2, 4),
)
add(
    "index_put",
    "accumulate",
    lambda x, i, v: x.index_put((i,), v, accumulate=True),
    lambda x, i, v: _put(x, (i,), v, True),
    _x34,
    A([1, 1, 0], np.int64),
    U(3, 4),
)
add(
    "index_put_",
    "inplace",
    lambda x, i, v: x.clone().index_put_((i,), v),
    lambda x, i, v: _put(x, (i,), v),
    _x34,
    A([2, 0], np.int64),
    U(4),
)


def _put(x, idx, v, accumulate=False):
    out = x.copy()
    if accumulate:
        for k, i in enumerate(idx[0]):
            out[i] += v[k]
    else:
        out[idx] = v
    return out


# ------------------------------------------------------------------------------ indexing
def _get(index):
    """getitem sample: ``index`` may contain the marker ``"T"``/``"T1"``... replaced by the
    sample's extra (integer/bool) inputs in order."""

    def fill(args):
        it = iter(args)
        return tuple(next(it) if isinstance(i, str) else i for i in index)

    def ref(x, *idx):
        # torch reads a uint8 (byte) index as a mask; numpy needs bool for that
        return x[fill(tuple(i.astype(bool) if i.dtype == np.uint8 else i for i in idx))]

    return (lambda x, *idx: x[fill(idx)]), ref


for _name, _index, _x, _extra in (
    ("int", (1,), _x34, ()),
    ("neg-int", (-1, -2), _x34, ()),
    ("slice", (slice(1, 3),), _x34, ()),
    ("slice-step", (slice(None), slice(None, None, 2)), _x34, ()),
    ("slice-step3-offset", (slice(1, None, 3),), U(8), ()),
    ("slice-neg-bounds", (slice(-3, -1),), _x34, ()),
    ("slice-out-of-range", (slice(2, 100),), _x34, ()),
    ("slice-empty", (slice(3, 1),), _x34, ()),
    ("none", (None, 1, None), _x34, ()),
    ("ellipsis", (Ellipsis, 1), _x234, ()),
    ("ellipsis-none", (0, Ellipsis, None), _x234, ()),
    ("mixed-basic", (1, slice(None, None, 2), slice(1, 3)), _x234, ()),
    ("int-tensor", ("T",), _x34, (A([2, 0, 2], np.int64),)),
    ("int-tensor-2d", ("T",), _x34, (A([[0, 1], [2, 2]], np.int64),)),
    ("int-tensor-neg", ("T",), _x34, (A([-1, 0], np.int64),)),
    ("int32-tensor", ("T",), _x34, (A([1, 2], np.int32),)),
    ("int-tensor-dim1", (slice(None), "T"), _x34, (A([3, 3, 0], np.int64),)),
    ("two-int-tensors", ("T", "T"), _x34, (A([0, 2, 1], np.int64), A([3, 0, 3], np.int64))),
    ("int-tensors-bcast", ("T", "T"), _x34, (A([[0], [2]], np.int64), A([1, 3], np.int64))),
    (
        "int-tensors-split",
        ("T", slice(None), "T"),
        _x234,
        (A([1, 0], np.int64), A([0, 3], np.int64)),
    ),
    ("slice-then-tensor", (slice(1, None), "T"), _x234, (A([2, 0], np.int64),)),
    ("bool-mask", ("T",), _x34, (bools(3, 4),)),
    ("bool-rows", ("T",), _x34, (A([True, False, True]),)),
    ("bool-dim1", (slice(None), "T"), _x34, (A([False, True, True, False]),)),
    ("bool-empty", ("T",), _x34, (np.zeros((3, 4), bool),)),
    ("uint8-mask", ("T",), _x34, (bools(3, 4).astype(np.uint8),)),
    ("int-tensor-empty", ("T",), _x34, (np.zeros((0,), np.int64),)),
):
    _f, _r = _get(_index)
    add("getitem", _name, _f, _r, _x, *_extra)
add("getitem", "list", lambda x: x[[0, 2]], lambda x: x[[0, 2]], _x34)
add("getitem", "0d-tensor-index", lambda x, i: x[i], lambda x, i: x[i], _x34, A(1, np.int64))
add("getitem", "chain", lambda x: x[1:][:, ::2][0], lambda x: x[1:][:, ::2][0], _x234)
add("getitem", "int-input", lambda x: x[0, 1:, 2], lambda x: x[0, 1:, 2], ints(2, 3, 4))


def _set(index, value_is_input=True, scalar=None):
    def fill(args):
        it = iter(args)
        return tuple(next(it) if isinstance(i, str) else i for i in index)

    def fn(x, *rest):
        y = x.clone()
        if value_is_input:
            v, idx = rest[0], rest[1:]
        else:
            v, idx = scalar, rest
        y[fill(idx)] = v
        return y

    def ref(x, *rest):
        y = x.copy()
        if value_is_input:
            v, idx = rest[0], rest[1:]
        else:
            v, idx = scalar, rest
        y[fill(idx)] = v
        return y

    return fn, ref


for _name, _index, _x, _v, _extra in (
    ("int-scalar", (1,), _x34, 5.0, ()),
    ("int", (1,), _x34, U(4), ()),
    ("slice-step", (slice(None), slice(None, None, 2)), _x34, U(3, 2), ()),
    ("slice-bcast", (slice(0, 2),), _x34, U(4), ()),
    ("none-ellipsis", (Ellipsis, None, 2), _x234, U(2, 3, 1), ()),
    ("ellipsis-scalar", (Ellipsis, 0), _x234, -1.0, ()),
    ("int-tensor", ("T",), _x34, U(2, 4), (A([2, 0], np.int64),)),
    ("int-tensor-scalar", (slice(None), "T"), _x34, 0.0, (A([3, 1], np.int64),)),
    ("two-int-tensors", ("T", "T"), _x34, U(3), (A([0, 2, 1], np.int64), A([3, 0, 3], np.int64))),
    ("bool-mask-scalar", ("T",), _x34, 9.0, (bools(3, 4),)),
    ("bool-mask-values", ("T",), _x34, None, (A([[True, False, True, False]] * 3),)),
    ("bool-rows", ("T",), _x34, U(4), (A([True, False, True]),)),
):
    if _v is None:
        _v = U(6)
    if isinstance(_v, float):
        _f, _r = _set(_index, False, _v)
        add("setitem", _name, _f, _r, _x, *_extra, covers=("index_put_",))
    else:
        _f, _r = _set(_index)
        add("setitem", _name, _f, _r, _x, _v, *_extra, covers=("index_put_",))


def _setitem_through_view(x, v):
    y = x.clone()
    y[1][::2] = v  # y[1] is a view of y: the write must reach y's gradient (CopySlices)
    return y


def _setitem_through_view_ref(x, v):
    y = x.copy()
    y[1, ::2] = v
    return y


add(
    "setitem",
    "through-view",
    _setitem_through_view,
    _setitem_through_view_ref,
    _x34,
    U(2),
    covers=("view_scatter",),
)
add(
    "setitem",
    "int-tensor-int-value",
    lambda x, v: _set((1,))[0](x, v),
    lambda x, v: _set((1,))[1](x, v),
    ints(3, 4),
    ints(4),
)
add(
    "setitem",
    "float-into-int",
    lambda x: _set((0,), False, 2.7)[0](x),
    lambda x: _set((0,), False, 2)[1](x),
    ints(3, 4),
)

# ------------------------------------------------------------------------------ linalg
for _name, _sa, _sb in (
    ("2d@2d", (3, 4), (4, 2)),
    ("1d@2d", (4,), (4, 3)),
    ("2d@1d", (3, 4), (4,)),
    ("1d@1d", (4,), (4,)),
    ("3d@3d", (2, 3, 4), (2, 4, 2)),
    ("bcast-batch", (2, 1, 3, 4), (3, 4, 2)),
    ("3d@2d", (2, 3, 4), (4, 5)),
    ("1d@3d", (4,), (2, 4, 3)),
    ("3d@1d", (2, 3, 4), (4,)),
    ("empty-k", (3, 0), (0, 2)),
    ("empty-m", (0, 4), (4, 2)),
    ("size1", (1, 1), (1, 1)),
):
    add("matmul", _name, L.matmul, ref_matmul, U(*_sa), U(*_sb), rtol=1e-12, atol=1e-13)
add("matmul", "operator", lambda a, b: a @ b, ref_matmul, U(3, 4), U(4, 2), atol=1e-13)
add(
    "matmul",
    "method-transposed",
    lambda a, b: a.t().matmul(b),
    lambda a, b: ref_matmul(a.T, b),
    U(4, 3),
    U(4, 2),
    atol=1e-13,
)
add("matmul", "int", L.matmul, ref_matmul, ints(2, 3), ints(3, 2), out_dtype=runba.int64)
add("mm", "basic", L.mm, ref_matmul, U(3, 4), U(4, 2), atol=1e-13)
add("mm", "method", lambda a, b: a.mm(b), ref_matmul, U(2, 2), U(2, 5), atol=1e-13)
add("bmm", "basic", L.bmm, ref_matmul, U(2, 3, 4), U(2, 4, 2), atol=1e-13)
add("bmm", "method", lambda a, b: a.bmm(b), ref_matmul, U(3, 1, 2), U(3, 2, 2), atol=1e-13)
add("dot", "basic", L.dot, lambda a, b: np.array(math.fsum(a * b)), U(5), U(5), atol=1e-13)
add(
    "dot",
    "method",
    lambda a, b: a.dot(b),
    lambda a, b: np.array(math.fsum(a * b)),
    U(3),
    U(3),
    atol=1e-13,
)
add("dot", "empty", L.dot, lambda a, b: np.array(0.0), U(0), U(0))
add("outer", "basic", L.outer, lambda a, b: a[:, None] * b[None, :], U(3), U(4))
add("outer", "method", lambda a, b: a.outer(b), lambda a, b: a[:, None] * b[None, :], U(2), U(5))
add("mv", "basic", L.mv, ref_matmul, U(3, 4), U(4), atol=1e-13)


def ref_einsum(eq, *xs):
    """A loop over every index assignment: independent of np.einsum."""
    lhs, out = eq.split("->")
    ins = lhs.split(",")
    sizes = {}
    for sub, x in zip(ins, xs):
        for ch, s in zip(sub, x.shape):
            sizes[ch] = s
    letters = sorted(sizes)
    res = np.zeros(tuple(sizes[c] for c in out))
    for vals in np.ndindex(*[sizes[c] for c in letters]):
        env = dict(zip(letters, vals))
        term = 1.0
        for sub, x in zip(ins, xs):
            term = term * x[tuple(env[c] for c in sub)]
        res[tuple(env[c] for c in out)] += term
    return res


for _eq, _shapes, _grad in (
    ("ij,jk->ik", ((3, 4), (4, 2)), True),
    ("bij,bjk->bik", ((2, 3, 4), (2, 4, 2)), True),
    ("i,i->", ((5,), (5,)), True),
    ("i,j->ij", ((3,), (4,)), True),
    ("ij->ji", ((3, 4),), True),
    ("ij->", ((3, 4),), True),
    ("ij->j", ((3, 4),), True),
    ("bhqd,bhkd->bhqk", ((2, 2, 3, 4), (2, 2, 5, 4)), True),
    ("ij,jk,kl->il", ((2, 3), (3, 4), (4, 2)), True),
    ("ii->i", ((3, 3),), False),
    ("ii->", ((3, 3),), False),
):
    add(
        "einsum",
        _eq,
        lambda *xs, e=_eq: L.einsum(e, *xs),
        lambda *xs, e=_eq: ref_einsum(e, *xs),
        *[U(*s) for s in _shapes],
        grad=_grad,
        atol=1e-13,
        fast=len(_shapes) == 3,
    )
add(
    "einsum",
    "implicit",
    lambda a, b: L.einsum("ij,jk", a, b),
    lambda a, b: ref_einsum("ij,jk->ik", a, b),
    U(2, 3),
    U(3, 2),
    atol=1e-13,
)
add(
    "einsum",
    "list-operands",
    lambda a, b: L.einsum("ij,jk->ik", [a, b]),
    lambda a, b: ref_einsum("ij,jk->ik", a, b),
    U(2, 3),
    U(3, 2),
    atol=1e-13,
)


# ------------------------------------------------------------------------------ conv / pool
def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def ref_conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """Direct loops over every output element (math.fsum): independent of im2col + GEMM."""
    (s0, s1), (p0, p1), (d0, d1) = _pair(stride), _pair(padding), _pair(dilation)
    n_, c_, h_, w_ = x.shape
    o_, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p0, p0), (p1, p1)))
    oh = (h_ + 2 * p0 - d0 * (kh - 1) - 1) // s0 + 1
    ow = (w_ + 2 * p1 - d1 * (kw - 1) - 1) // s1 + 1
    out = np.zeros((n_, o_, oh, ow))
    per_group = o_ // groups
    for n, o, i, j in np.ndindex(n_, o_, oh, ow):
        g = o // per_group
        patch = xp[
            n,
            g * cg : (g + 1) * cg,
            i * s0 : i * s0 + d0 * (kh - 1) + 1 : d0,
            j * s1 : j * s1 + d1 * (kw - 1) + 1 : d1,
        ]
        out[n, o, i, j] = math.fsum((patch * w[o]).ravel()) + (0.0 if b is None else b[o])
    return out


def _windows(x, k, stride, padding, fill):
    (k0, k1), (s0, s1), (p0, p1) = _pair(k), _pair(stride or k), _pair(padding)
    n_, c_, h_, w_ = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p0, p0), (p1, p1)), constant_values=fill)
    oh, ow = (h_ + 2 * p0 - k0) // s0 + 1, (w_ + 2 * p1 - k1) // s1 + 1
    for i, j in np.ndindex(oh, ow):
        yield i, j, (oh, ow), (i * s0, j * s1), xp[:, :, i * s0 : i * s0 + k0, j * s1 : j * s1 + k1]


def ref_max_pool2d(x, k, stride=None, padding=0, indices=False):
    out = idx = None
    p0, p1 = _pair(padding)
    for i, j, shape, (r0, c0), win in _windows(x, k, stride, padding, -np.inf):
        if out is None:
            out = np.zeros(x.shape[:2] + shape)
            idx = np.zeros(x.shape[:2] + shape, np.int64)
        flat = win.reshape(win.shape[:2] + (-1,))
        out[:, :, i, j] = flat.max(-1)
        a = flat.argmax(-1)
        rows, cols = r0 + a // win.shape[3] - p0, c0 + a % win.shape[3] - p1
        idx[:, :, i, j] = rows * x.shape[3] + cols  # flat index into the unpadded plane
    return (out, idx) if indices else out


def ref_avg_pool2d(x, k, stride=None, padding=0, count_include_pad=True, divisor=None):
    out = None
    ones = np.ones((1, 1) + x.shape[2:])
    counts = list(_windows(ones, k, stride, padding, 0.0))
    for (i, j, shape, _, win), (*_, cwin) in zip(_windows(x, k, stride, padding, 0.0), counts):
        if out is None:
            out = np.zeros(x.shape[:2] + shape)
        n = divisor or (win.shape[2] * win.shape[3] if count_include_pad else cwin.sum())
        out[:, :, i, j] = win.sum((2, 3)) / n
    return out


def ref_adaptive_avg_pool2d(x, size):
    oh, ow = _pair(size)
    h_, w_ = x.shape[2:]
    out = np.zeros(x.shape[:2] + (oh, ow))
    for i, j in np.ndindex(oh, ow):
        r = slice(i * h_ // oh, -(-(i + 1) * h_ // oh))
        c = slice(j * w_ // ow, -(-(j + 1) * w_ // ow))
        out[:, :, i, j] = x[:, :, r, c].mean((2, 3))
    return out


_img = U(2, 3, 5, 6)
add("conv2d", "basic", C.conv2d, ref_conv2d, _img, U(4, 3, 3, 3), U(4), atol=1e-13)
add(
    "conv2d",
    "no-bias",
    lambda x, w: C.conv2d(x, w),
    ref_conv2d,
    U(1, 2, 4, 4),
    U(3, 2, 2, 2),
    atol=1e-13,
)
add(
    "conv2d",
    "stride-pad-dilation",
    lambda x, w: C.conv2d(x, w, None, stride=(2, 1), padding=(1, 2), dilation=(1, 2)),
    lambda x, w: ref_conv2d(x, w, None, (2, 1), (1, 2), (1, 2)),
    _img,
    U(2, 3, 3, 2),
    atol=1e-13,
)
add(
    "conv2d",
    "groups",
    lambda x, w, b: C.conv2d(x, w, b, padding=1, groups=2),
    lambda x, w, b: ref_conv2d(x, w, b, 1, 1, 1, 2),
    U(2, 4, 4, 4),
    U(6, 2, 3, 3),
    U(6),
    atol=1e-13,
    fast=True,
)
add(
    "conv2d",
    "1x1",
    lambda x, w: C.conv2d(x, w),
    ref_conv2d,
    U(2, 3, 3, 2),
    U(5, 3, 1, 1),
    atol=1e-13,
)
_dimg = distinct(2, 2, 5, 6)
add("max_pool2d", "basic", lambda x: C.max_pool2d(x, 2), lambda x: ref_max_pool2d(x, 2), _dimg)
add(
    "max_pool2d",
    "stride-pad",
    lambda x: C.max_pool2d(x, 3, stride=2, padding=1),
    lambda x: ref_max_pool2d(x, 3, 2, 1),
    _dimg,
)
add(
    "max_pool2d",
    "indices",
    lambda x: C.max_pool2d(x, (2, 3), return_indices=True),
    lambda x: ref_max_pool2d(x, (2, 3), indices=True),
    _dimg,
    prim="max_pool2d_indices",  # return_indices gathers at the indices (no max_pool2d op)
)
add("avg_pool2d", "basic", lambda x: C.avg_pool2d(x, 2), lambda x: ref_avg_pool2d(x, 2), _img)
add(
    "avg_pool2d",
    "pad-include",
    lambda x: C.avg_pool2d(x, 3, stride=2, padding=1),
    lambda x: ref_avg_pool2d(x, 3, 2, 1),
    _img,
)
add(
    "avg_pool2d",
    "pad-exclude",
    lambda x: C.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False),
    lambda x: ref_avg_pool2d(x, 3, 2, 1, False),
    _img,
)
add(
    "avg_pool2d",
    "divisor",
    lambda x: C.avg_pool2d(x, 2, divisor_override=3),
    lambda x: ref_avg_pool2d(x, 2, divisor=3),
    _img,
)
add(
    "adaptive_avg_pool2d",
    "divisible",
    lambda x: C.adaptive_avg_pool2d(x, (1, 3)),
    lambda x: ref_adaptive_avg_pool2d(x, (1, 3)),
    _img,
)
add(
    "adaptive_avg_pool2d",
    "overlapping",
    lambda x: C.adaptive_avg_pool2d(x, 4),
    lambda x: ref_adaptive_avg_pool2d(x, 4),
    _img,
)

# ------------------------------------------------------------------------------ coverage maps
# The public ops issue 2 requires, each of which must have at least one sample whose ``op``
# is that name.
REQUIRED_OPS = tuple(
    """
    neg abs sign exp exp2 log log2 log1p expm1 sqrt rsqrt sin cos tan tanh sigmoid relu
    leaky_relu gelu silu softplus erf pow clamp clip maximum minimum where lerp floor ceil round
    trunc remainder isnan isinf nan_to_num logical_and logical_or logical_xor logical_not
    add sub mul div floor_divide eq ne lt le gt ge
    sum mean prod var std max min amax amin argmax argmin logsumexp all any cumsum norm
    view reshape flatten unflatten squeeze unsqueeze permute transpose t T mT expand expand_as
    repeat tile flip roll narrow split chunk cat stack gather scatter_add index_select
    masked_fill tril triu getitem setitem matmul mm bmm dot outer einsum softmax log_softmax
    one_hot
    """.split()
)

# Registry primitives without a sample of their own name, each mapped to a sample id that
# exercises it (forward or backward). test_ops checks at run time that it really does.
# Tensor methods / public functions deliberately without a table sample, with the reason.
NOT_SAMPLED = {
    "uniform_": "random draws: no independent reference; tested with the Philox generator",
    "normal_": "random draws: no independent reference; tested with the Philox generator",
    "bernoulli_": "random draws: no independent reference; tested with the Philox generator",
    "random_": "random draws: no independent reference; tested with the Philox generator",
}

COVERED_BY = {
    "slice": "getitem-slice-step",
    "slice_backward": "getitem-slice-step",
    "index": "getitem-int-tensor",
    "index_backward": "getitem-two-int-tensors",
    "index_put": "index_put-functional",
    "im2col": "conv2d-basic",
    "col2im": "conv2d-basic",
    "max_pool2d_indices": "max_pool2d-basic",
    "plane_gather": "max_pool2d-indices",
    "plane_scatter_add": "max_pool2d-basic",
    "avg_pool2d_backward": "avg_pool2d-basic",
    "adaptive_avg_pool2d_backward": "adaptive_avg_pool2d-divisible",
    "view_scatter": "setitem-through-view",
}


# ------------------------------------------------------------------------------ promotion
def T(values, dtype):
    return runba.tensor(values, dtype=dtype)


# (id, thunk, expected dtype, expected values): PyTorch's documented rules — category
# bool < integer < float; dimensioned tensors > zero-dim tensors > Python scalars, and a
# lower-priority operand only matters when it is of a higher category; a Python float means
# the default dtype.
PROMOTION = [
    ("int32+float", lambda: T([1, 2], runba.int32) + 2.5, runba.float32, [3.5, 4.5]),
    ("int64+float", lambda: T([1, 2], runba.int64) + 0.5, runba.float32, [1.5, 2.5]),
    ("int32+int", lambda: T([1, 2], runba.int32) + 3, runba.int32, [4, 5]),
    ("int32+int64", lambda: T([1, 2], runba.int32) + T([1, 1], runba.int64), runba.int64, [2, 3]),
    (
        "int32+float32",
        lambda: T([1, 2], runba.int32) + T([0.5, 0.5], runba.float32),
        runba.float32,
        [1.5, 2.5],
    ),
    ("uint8+int32", lambda: T([250], runba.uint8) + T([10], runba.int32), runba.int32, [260]),
    ("uint8+bool", lambda: T([1], runba.uint8) + T([True], runba.bool), runba.uint8, [2]),
    (
        "bool+int-tensor",
        lambda: T([True, False], runba.bool) + T([2, 3], runba.int64),
        runba.int64,
        [3, 3],
    ),
    ("bool+int", lambda: T([True, False], runba.bool) + 1, runba.int64, [2, 1]),
    ("bool+float", lambda: T([True, False], runba.bool) * 1.5, runba.float32, [1.5, 0.0]),
    (
        "bool+bool",
        lambda: T([True, False], runba.bool) + T([True, True], runba.bool),
        runba.bool,
        [True, True],
    ),
    (
        "float32+float64-0d",
        lambda: T([1.0], runba.float32) + T(2.0, runba.float64),
        runba.float32,
        [3.0],
    ),
    (
        "float32+float64",
        lambda: T([1.0], runba.float32) + T([2.0], runba.float64),
        runba.float64,
        [3.0],
    ),
    ("int32+float64-0d", lambda: T([1], runba.int32) + T(0.5, runba.float64), runba.float64, [1.5]),
    ("int32+int64-0d", lambda: T([1], runba.int32) + T(5, runba.int64), runba.int32, [6]),
    ("0d-int64+0d-int32", lambda: T(1, runba.int64) + T(5, runba.int32), runba.int64, 6),
    ("0d-float32+float", lambda: T(1.0, runba.float32) * 2.0, runba.float32, 2.0),
    ("0d-int32+float", lambda: T(1, runba.int32) * 2.5, runba.float32, 2.5),
    (
        "float16+float32-0d",
        lambda: T([1.0], runba.float16) + T(2.0, runba.float32),
        runba.float16,
        [3.0],
    ),
    (
        "float16+float32",
        lambda: T([1.0], runba.float16) + T([2.0], runba.float32),
        runba.float32,
        [3.0],
    ),
    ("float16+float", lambda: T([1.0], runba.float16) * 0.5, runba.float16, [0.5]),
    ("float16+int64", lambda: T([1.0], runba.float16) + T([2], runba.int64), runba.float16, [3.0]),
    ("float64+int", lambda: T([1.0], runba.float64) + 2, runba.float64, [3.0]),
    ("reflected-int-sub", lambda: 2 - T([1, 5], runba.int32), runba.int32, [1, -3]),
    ("reflected-float-div", lambda: 2 / T([1, 4], runba.int64), runba.float32, [2.0, 0.5]),
    ("reflected-int-pow", lambda: 2 ** T([1, 3], runba.int64), runba.int64, [2, 8]),
    ("reflected-float-pow", lambda: 2.0 ** T([1, 3], runba.int64), runba.float32, [2.0, 8.0]),
    ("int-pow-float", lambda: T([4, 9], runba.int64) ** 0.5, runba.float32, [2.0, 3.0]),
    ("int-pow-int", lambda: T([2, 3], runba.int32) ** 2, runba.int32, [4, 9]),
    ("int/int", lambda: T([1, 3], runba.int64) / T([2, 2], runba.int64), runba.float32, [0.5, 1.5]),
    ("int//int", lambda: T([-7, 7], runba.int64) // 2, runba.int64, [-4, 3]),
    ("int%int", lambda: T([-7, 7], runba.int64) % 3, runba.int64, [2, 1]),
    ("int%float", lambda: T([-7, 7], runba.int64) % 2.5, runba.float32, [0.5, 2.0]),
    ("int<float", lambda: T([1, 2], runba.int32) < 1.5, runba.bool, [True, False]),
    (
        "float==int-tensor",
        lambda: T([1.0, 2.5], runba.float32) == T([1, 2], runba.int64),
        runba.bool,
        [True, False],
    ),
    (
        "where-int-float-scalar",
        lambda: E.where(T([True, False], runba.bool), T([1, 2], runba.int64), 2.5),
        runba.float32,
        [1.0, 2.5],
    ),
    (
        "where-float32-float64",
        lambda: E.where(
            T([True, False], runba.bool), T([1.0, 2.0], runba.float32), T([3.0, 4.0], runba.float64)
        ),
        runba.float64,
        [1.0, 4.0],
    ),
    ("where-int-scalars", lambda: E.where(T([True, False], runba.bool), 1, 0), runba.int64, [1, 0]),
    (
        "maximum-int-float",
        lambda: E.maximum(T([1, 5], runba.int32), T([2.5, 0.5], runba.float32)),
        runba.float32,
        [2.5, 5.0],
    ),
    ("exp-int32", lambda: E.exp(T([0, 1], runba.int32)), runba.float32, [1.0, math.e]),
    ("sqrt-bool", lambda: E.sqrt(T([True, False], runba.bool)), runba.float32, [1.0, 0.0]),
    ("sigmoid-int64", lambda: E.sigmoid(T([0], runba.int64)), runba.float32, [0.5]),
    ("exp-float16", lambda: E.exp(T([0.0, 1.0], runba.float16)), runba.float16, [1.0, 2.71875]),
    ("neg-int32", lambda: -T([1, -2], runba.int32), runba.int32, [-1, 2]),
    ("abs-int32", lambda: E.abs(T([1, -2], runba.int32)), runba.int32, [1, 2]),
    ("floor-int", lambda: E.floor(T([1, -2], runba.int64)), runba.int64, [1, -2]),
    (
        "clamp-int-float",
        lambda: E.clamp(T([1, 5], runba.int64), 0.5, 2.5),
        runba.float32,
        [1.0, 2.5],
    ),
    ("sum-int32", lambda: R.sum(T([1, 2], runba.int32)), runba.int64, 3),
    ("sum-bool", lambda: R.sum(T([True, True], runba.bool)), runba.int64, 2),
    ("sum-uint8", lambda: R.sum(T([200, 100], runba.uint8)), runba.int64, 300),
    ("sum-float16", lambda: R.sum(T([1.0, 2.0], runba.float16)), runba.float16, 3.0),
    ("prod-int32", lambda: R.prod(T([3, 4], runba.int32)), runba.int64, 12),
    ("cumsum-bool", lambda: R.cumsum(T([True, True], runba.bool), 0), runba.int64, [1, 2]),
    ("mean-float16", lambda: R.mean(T([1.0, 2.0], runba.float16)), runba.float16, 1.5),
    ("amax-int32", lambda: R.amax(T([1, 7], runba.int32)), runba.int32, 7),
    ("argmax-float", lambda: R.argmax(T([1.0, 7.0], runba.float32)), runba.int64, 1),
    ("all-float", lambda: R.all(T([1.0, 0.0], runba.float32)), runba.bool, False),
    (
        "cat-int32-float32",
        lambda: IX.cat([T([1], runba.int32), T([0.5], runba.float32)]),
        runba.float32,
        [1.0, 0.5],
    ),
    (
        "cat-int32-int64",
        lambda: IX.cat([T([1], runba.int32), T([2], runba.int64)]),
        runba.int64,
        [1, 2],
    ),
    (
        "masked_fill-int-float-value",
        lambda: IX.masked_fill(T([1, 2], runba.int64), T([True, False], runba.bool), 2.7),
        runba.int64,
        [2, 2],
    ),
]


def _iadd_int_float():
    x = T([1, 2], runba.int64)
    x += 1.5


PROMOTION_RAISES = {
    "iadd-int-float-raises": _iadd_int_float,
    "mean-int-raises": lambda: R.mean(T([1, 2], runba.int64)),
}
