"""Every elementwise registry op the JIT lowers: fused == eager, per dtype.

Compile time dominates (one numba kernel costs about a second), so the cheap ops of one
family and dtype run as *one* fused function: ``c = x.clone()`` makes a lazy value every op
reads, so all of them land in one kernel (one compile) with one output per op. Each output
is compared with eager separately and a failure names the ops; when the whole kernel fails,
the ops are re-run one by one to name the culprits. The mathlib functions (exp, log, tanh,
...) are the exception in float32: inlined together they compile slower than one kernel
each, so they run one op per kernel.

Inputs are small, non-contiguous (transposed) and broadcast (a [5] row against [3, 5]).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from jitutil import flat, values

import runba
from runba.jit.capture import _expr_lowerable
from runba.ops.registry import REGISTRY

MATHLIB = ["exp", "log", "log1p", "expm1", "tanh", "sigmoid", "erf", "gelu"]  # kernels.mathlib
UNARY_FLOAT = ["sqrt", "sin", "cos", "tan"]  # float results, libm / LLVM intrinsics
UNARY_SAME = ["neg", "abs", "sign", "floor", "ceil", "round", "trunc", "relu", "clone"]
UNARY_BOOL = ["isnan", "isinf", "logical_not"]
ARITH = ["add", "sub", "mul", "div", "pow", "maximum", "minimum", "remainder", "floor_divide"]
COMPARE = ["eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor"]
SELECT = ["where", "cast"]
FAMILIES = {
    "unary": UNARY_FLOAT + UNARY_SAME + UNARY_BOOL,
    "mathlib": MATHLIB,
    "arith": ARITH,
    "compare": COMPARE,
    "select": SELECT,
}
POSITIVE = {"log", "sqrt", "log1p"}  # read |x| (their NaN domain is checked separately)

DTYPES = {
    "float32": runba.float32,
    "float64": runba.float64,
    "int64": runba.int64,
    "bool": runba.bool,
}
# eager rejects these like PyTorch (numpy: "boolean negative/subtract is not supported")
EAGER_REJECTS = {("bool", "neg"), ("bool", "sub")}
TOL = {"float32": (2e-6, 1e-6), "float64": (1e-12, 1e-13)}


def _data(dtype: str, shape, seed: int, positive=False):
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.random(shape) > 0.5
    if dtype == "int64":
        a = rng.integers(1, 5, shape)
        return a if positive else a * rng.choice([-1, 1], shape)
    a = rng.uniform(-2.0, 2.0, shape)
    a[np.abs(a) < 0.05] = 0.5  # keep floor/round/sign away from their jumps
    return a.astype(dtype)


def inputs(dtype: str):
    """a: [3, 5] non-contiguous; b: [5], broadcast along rows; bp: [5], positive (powers);
    cond: [3, 1] bool."""
    a = runba.tensor(_data(dtype, (5, 3), 0)).T
    b = runba.tensor(_data(dtype, (5,), 1))
    bp = runba.tensor(_data(dtype, (5,), 1, positive=True))
    if dtype != "bool":
        bp = bp.abs()
    cond = runba.tensor(np.random.default_rng(2).random((3, 1)) > 0.5)
    assert not a.is_contiguous()
    return a, b, bp, cond


def _unary(op, c, dtype):
    x = c.abs() if op in POSITIVE and dtype != "bool" else c
    if op == "gelu":  # exact form; the fuzzer draws the tanh form
        return runba.nn.functional.gelu(x)
    return getattr(runba, op)(x)


def _arith(op, c, b, bp, dtype):
    if op == "pow":  # integer powers need exponents >= 0; fractional ones a base >= 0
        return [runba.pow(c.abs(), bp), c**2]
    out = [getattr(runba, op)(c, b)]
    if dtype != "bool":  # and a Python scalar operand: a run-time kernel argument
        s = 3 if dtype == "int64" else 0.75
        out.append(getattr(runba, op)(c, s))
    return out


def _compare(op, c, b, dtype):
    out = [getattr(runba, op)(c, b)]
    if op in ("lt", "ge"):  # the broadcast operand first
        out.append(getattr(runba, op)(b, c))
    return out


def _select(op, c, b, cond, dtype):
    if op == "where":
        s = 2 if dtype in ("int64", "bool") else -1.5
        if dtype == "bool":
            s = False
        return [runba.where(cond, c, b), runba.where(c > b, c, s), runba.where(cond, s, c)]
    return [c.to(d) for name, d in DTYPES.items() if name != dtype] + [c.to(runba.int32)]


def program(family: str, ops: list[str], dtype: str):
    """The fused function computing every op of ``family`` on one lazy ``clone``."""

    def fn(a, b, bp, cond):
        c = a.clone()  # lazy: every op below reads it, so they share one kernel
        out = []
        for op in ops:
            if family in ("unary", "mathlib"):
                r = [_unary(op, c, dtype)]
            elif family == "arith":
                r = _arith(op, c, b, bp, dtype)
            elif family == "compare":
                r = _compare(op, c, b, dtype)
            else:
                r = _select(op, c, b, cond, dtype)
            out.append(r)
        return out

    return fn


def _compare_outputs(ops, got, want):
    bad = []
    for op, g_list, w_list in zip(ops, got, want):
        for k, (g, w) in enumerate(zip(g_list, w_list)):
            if g.dtype != w.dtype or g.shape != w.shape:
                bad.append(f"{op}[{k}]: fused {g.dtype}{g.shape}, eager {w.dtype}{w.shape}")
                continue
            if g.dtype.kind == "f":  # mathlib is within a few ulps of numpy
                rtol, atol = TOL[g.dtype.name]
                ok = np.allclose(g, w, rtol=rtol, atol=atol, equal_nan=True)
            else:
                ok = np.array_equal(g, w)
            if not ok:
                bad.append(f"{op}[{k}]:\n  fused {g.tolist()}\n  eager {w.tolist()}")
    return bad


def _grouped(out):
    return [values(r) for r in out]


def check_family(family: str, dtype: str, args=None, ops=None):
    if ops is None:
        ops = [op for op in FAMILIES[family] if (dtype, op) not in EAGER_REJECTS]
    args = args if args is not None else inputs(dtype)
    fn = program(family, ops, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = _grouped(fn(*args))
        try:
            out = runba.fuse(fn)(*args)
            assert any(t._lazy is not None for t in flat(out)), "nothing was recorded lazily"
            got = _grouped(out)
        except Exception as exc:  # name the ops that break the kernel
            culprits = []
            for op in ops:
                try:
                    _grouped(runba.fuse(program(family, [op], dtype))(*args))
                except Exception as e:
                    culprits.append(f"{op}: {type(e).__name__}: {e}")
            raise AssertionError(f"{family}/{dtype} failed ({exc}); per op: {culprits}") from exc
    bad = _compare_outputs(ops, got, want)
    assert not bad, f"{family}/{dtype}: fused != eager for\n" + "\n".join(bad)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("family", ["unary", "arith", "compare", "select"])
def test_family_fused_matches_eager(family, dtype):
    check_family(family, dtype)


def test_mathlib_float64_fused_matches_eager():
    check_family("mathlib", "float64")


# float32 compute: one kernel per op (see the module doc). Integer and bool inputs are cast
# to float32 first, by the same generic code for every op: a few ops show that path.
_MATHLIB_CASES = [(op, "float32") for op in MATHLIB]
_MATHLIB_CASES += [("exp", "int64"), ("log", "int64"), ("erf", "int64"), ("sigmoid", "bool")]


@pytest.mark.parametrize("op,dtype", _MATHLIB_CASES, ids=[f"{o}-{d}" for o, d in _MATHLIB_CASES])
def test_mathlib_op_fused_matches_eager(op, dtype):
    check_family("mathlib", dtype, ops=[op])


SPECIAL = [np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-45, -1e-45, 1e-38, 88.5, 89.0, -87.0]
SPECIAL += [-104.0, -110.0, 1e30, -1e30, 0.5, -1.0, 1.0, 20.0, -20.0, 9.0, 1e-8, -1e-8, 15.0]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_special_values(dtype):
    """inf, nan, signed zeros, denormals, overflow and underflow edges - through the same
    kernels as the families above (same layouts: a transposed [5, 6] and a [6] row)."""
    vals = np.array(SPECIAL + [3.0] * (30 - len(SPECIAL)), dtype)
    a = runba.tensor(vals.reshape(6, 5)).T
    b = runba.tensor(np.array([np.inf, np.nan, -0.0, 0.0, 1e-45, -3.0], dtype))
    cond = runba.tensor(np.ones((5, 1), bool))
    args = (a, b, b.abs(), cond)
    for family in ("unary", "compare", "arith"):
        check_family(family, dtype, args)
    if dtype == "float64":
        check_family("mathlib", dtype, args)
    else:
        for op in MATHLIB:
            check_family("mathlib", dtype, args, ops=[op])


def test_mixed_dtype_promotion():
    x32 = runba.tensor(_data("float32", (5, 3), 0)).T
    xi = runba.tensor(_data("int64", (5, 3), 2)).T
    x64 = runba.tensor(_data("float64", (5,), 1))
    xb = runba.tensor(_data("bool", (5,), 3))

    def fn(x32, xi, x64, xb):
        c = x32.clone()
        ci = xi.clone()
        return [
            c + x64,  # float64
            c * xi,  # float32
            c > xi,
            c + 2,  # an int scalar: stays float32
            c - xb,
            (c * 2).to(runba.int64) + xi,
            ci * 0.5,  # int tensor, float scalar: float32
            ci + xb,  # int64
            ci / xi,  # true division of ints: float32
            ci * x64,  # float64
            ci.logical_and(xb),
        ]

    want = values(fn(x32, xi, x64, xb))
    got = values(runba.fuse(fn)(x32, xi, x64, xb))
    for k, (g, w) in enumerate(zip(got, want)):
        assert g.dtype == w.dtype, f"output {k}: fused {g.dtype}, eager {w.dtype}"
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7, err_msg=f"output {k}")


def test_every_lowerable_elementwise_op_is_tested():
    """The table above covers the registry: a new elementwise op must join a family."""
    tested = {op for ops in FAMILIES.values() for op in ops}
    elementwise = {n for n, op in REGISTRY.items() if op.kind == "elementwise"}
    assert tested <= elementwise, tested - elementwise
    missing = sorted(elementwise - tested)
    assert not missing, f"elementwise ops without a fused-vs-eager row: {missing}"
    for name in tested:
        op = REGISTRY[name]
        nargs = 3 if name == "where" else (2 if name in ARITH + COMPARE else 1)
        attrs = {"dtype": runba.float32} if name == "cast" else {}
        assert _expr_lowerable(op, nargs, attrs), f"{name} has no fused lowering"


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # eager's 1 / 0
@pytest.mark.parametrize("n", [6, 6 * 4096], ids=["serial", "parallel"])
def test_division_by_a_square_root_keeps_ieee_special_values(n):
    # the kernels' fastmath flags once allowed LLVM to turn y / sqrt(x) into an approximate
    # rsqrt plus a Newton step: NaN at 0 and inf, -inf for denormals
    base = np.array([0.0, -0.0, np.inf, 1e-45, 1e-40, 4.0], np.float32)
    x = runba.tensor(np.tile(base, n // 6))
    y = runba.tensor(np.tile(np.float32([1.0, 2.0, 3.0, -1.0, 1.0, 2.0]), n // 6))
    for fn in (lambda x, y: x.rsqrt(), lambda x, y: y / x.sqrt(), lambda x, y: y / (x.sqrt() * 2)):
        want = fn(x, y).numpy()
        got = runba.fuse(fn)(x, y).numpy()
        np.testing.assert_array_equal(got, want)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_power_one_half_is_a_square_root_like_numpy_and_torch(dtype):
    # libm's pow(-inf, 0.5) is +inf; numpy's scalar power and torch give sqrt's NaN
    x = runba.tensor(np.array([-np.inf, -4.0, -0.0, 0.0, 2.0, np.inf, np.nan], dtype))
    for fn in (lambda x: x**0.5, lambda x: (x * 1.0) ** 0.5 + x**1.5):
        want = fn(x).numpy()
        got = runba.fuse(fn)(x).numpy()
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
