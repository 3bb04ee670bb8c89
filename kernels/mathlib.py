"""Vectorisable float32 transcendental functions for Numba kernels.

The pip llvmlite has no SVML, so ``math.exp``/``math.tanh`` inside a Numba loop become scalar
libm calls that LLVM cannot vectorise (``tanh`` measured ~8x slower than numpy's ufunc). The
helpers here are plain arithmetic, integer bit tricks and selects, so a loop that calls them
vectorises to AVX2/AVX-512 code.

Every helper is ``@njit(inline="always")``: Numba inlines it at IR level into the calling
kernel, which then applies *its own* ``fastmath`` and ``error_model`` flags. The code is
written to stay accurate under the project flags ``{"contract", "afn", "reassoc", "nsz",
"arcp"}`` as well as under strict IEEE (the tests check both):

* no algorithm relies on a rounding error surviving reassociation (no Fast2Sum, no
  ``(x + M) - M`` rounding tricks); rounding uses ``np.rint`` and exponents are built with
  integer bit operations in :func:`_pow2i`;
* ``nnan``/``ninf`` are never assumed, so NaN/Inf are handled with explicit selects.

Conventions: every float32 constant is ``np.float32(c)`` (a bare ``2.0`` promotes a whole
kernel to float64), branches are written as conditional expressions that LLVM turns into
vector selects, and edge values (NaN, ±Inf, ±0, denormals, overflow, underflow) follow
numpy's float32 ufuncs. Measured error bounds are in ``docs/kernels-mathlib.md``.

Polynomial coefficients were fitted in float64 with a Lawson (iteratively reweighted least
squares) minimax fit on Chebyshev nodes, minimising relative error, then rounded to float32.

float64 variants (``exp_f64`` ...) wrap libm (``math.*``): on the target machines numpy's
float64 ufuncs are not SIMD either, and libm inside Numba measured within ~10% of them.
"""

import math

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

__all__ = [
    "FASTMATH",
    "exp_f32",
    "exp2_f32",
    "expm1_f32",
    "log_f32",
    "log2_f32",
    "log1p_f32",
    "tanh_f32",
    "sigmoid_f32",
    "erf_f32",
    "gelu_tanh_f32",
    "gelu_erf_f32",
    "exp_f64",
    "exp2_f64",
    "expm1_f64",
    "log_f64",
    "log2_f64",
    "log1p_f64",
    "tanh_f64",
    "sigmoid_f64",
    "erf_f64",
    "gelu_tanh_f64",
    "gelu_erf_f64",
]

#: The fastmath flags generated kernels use (and the helpers are compiled with).
#: ``nnan``/``ninf`` are deliberately absent so ``x != x`` and ``x == inf`` keep working.
FASTMATH = frozenset({"contract", "afn", "reassoc", "nsz", "arcp"})

_helper = numba.njit(inline="always", error_model="numpy", fastmath=set(FASTMATH))

f32 = np.float32

# ---------------------------------------------------------------------------------------
# Bit-level intrinsics. All operate on i32 so they vectorise 8-wide on AVX2 (Numba's own
# integer typing would widen to int64, and AVX2 has no 64-bit arithmetic right shift).
# ---------------------------------------------------------------------------------------

_I32 = ir.IntType(32)
_F32 = ir.FloatType()


@intrinsic
def _pow2i(typingctx, n):
    """``2.0**n`` for an integral float32 ``n`` in [-126, 127], built from exponent bits."""
    if n != types.float32:
        return None

    def codegen(context, builder, sig, args):
        k = builder.fptosi(args[0], _I32)
        bits = builder.shl(builder.add(k, ir.Constant(_I32, 127)), ir.Constant(_I32, 23))
        return builder.bitcast(bits, _F32)

    return types.float32(types.float32), codegen


@intrinsic
def _int_as_f32_bits(typingctx, q):
    """The float32 whose bit pattern is the integral float32 ``q`` in [0, 2**23].

    Bit pattern ``q`` is the denormal ``q * 2**-149``; ``q == 2**23`` is the smallest normal.
    """
    if q != types.float32:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(builder.fptosi(args[0], _I32), _F32)

    return types.float32(types.float32), codegen


@intrinsic
def _opaque_int(typingctx, n):
    """The integral float32 ``n`` (|n| < 2**22), recomputed through integer bits.

    LLVM cannot prove the result equals ``n``, so under ``reassoc`` it cannot factor
    ``n * A + n * B`` into ``n * (A + B)``, which would undo Cody-Waite range reduction.
    """
    if n != types.float32:
        return None

    def codegen(context, builder, sig, args):
        # An int round trip; LLVM does not fold sitofp(fptosi(n)) back to n.
        return builder.sitofp(builder.fptosi(args[0], _I32), _F32)

    return types.float32(types.float32), codegen


# log decomposition: x = m * 2**e with m in [sqrt(1/2), sqrt(2)). Subtracting the bits of
# sqrt(1/2) before the shift moves the mantissa window so no compare is needed.
_SQRT_HALF_BITS = 0x3F3504F3


@intrinsic
def _frexp_mant(typingctx, x):
    """Mantissa ``m`` in [sqrt(1/2), sqrt(2)) of a positive normal float32."""
    if x != types.float32:
        return None

    def codegen(context, builder, sig, args):
        t = builder.sub(builder.bitcast(args[0], _I32), ir.Constant(_I32, _SQRT_HALF_BITS))
        m = builder.add(
            builder.and_(t, ir.Constant(_I32, 0x7FFFFF)), ir.Constant(_I32, _SQRT_HALF_BITS)
        )
        return builder.bitcast(m, _F32)

    return types.float32(types.float32), codegen


@intrinsic
def _frexp_exp(typingctx, x):
    """Exponent ``e`` (as float32) matching :func:`_frexp_mant`: ``x == m * 2**e``."""
    if x != types.float32:
        return None

    def codegen(context, builder, sig, args):
        t = builder.sub(builder.bitcast(args[0], _I32), ir.Constant(_I32, _SQRT_HALF_BITS))
        return builder.sitofp(builder.ashr(t, ir.Constant(_I32, 23)), _F32)

    return types.float32(types.float32), codegen


# ---------------------------------------------------------------------------------------
# Constants and minimax coefficients (see module docstring for how they were fitted).
# ---------------------------------------------------------------------------------------

_INF = f32(np.inf)
_NAN = f32(np.nan)
_LOG2E = f32(1.4426950408889634)
# Cody-Waite split of ln2: the high part has 9 significant bits, so n * _LN2_HI is exact
# for |n| < 2**15 and x - n * _LN2_HI is exact near the reduction point.
_LN2_HI = f32(0.693359375)
_LN2_LO = f32(-2.12194440e-4)

# e**r = 1 + r + r**2 * Q(r), |r| <= ln2/2; rel. error 3.8e-9.
_EXP_Q0 = f32(0.4999999403953552)
_EXP_Q1 = f32(0.1666652113199234)
_EXP_Q2 = f32(0.04166838899254799)
_EXP_Q3 = f32(0.008368710987269878)
_EXP_Q4 = f32(0.0013814604608342052)

# expm1(r) = r + r**2 * Q(r), |r| <= ln2/2, weighted for relative error of expm1; 1.7e-8.
_EM1_Q0 = f32(0.4999999701976776)
_EM1_Q1 = f32(0.1666654348373413)
_EM1_Q2 = f32(0.04166720062494278)
_EM1_Q3 = f32(0.008366514928638935)
_EM1_Q4 = f32(0.0013882513158023357)

# 2**r = 1 + r * Q(r), |r| <= 1/2; rel. error 1.6e-8.
_EXP2_Q0 = f32(0.6931471824645996)
_EXP2_Q1 = f32(0.24022647738456726)
_EXP2_Q2 = f32(0.055503323674201965)
_EXP2_Q3 = f32(0.009618437848985195)
_EXP2_Q4 = f32(0.001339887734502554)
_EXP2_Q5 = f32(0.00015353357593994588)

# log1p(f) = f + f**2 * Q(f), f in [sqrt(1/2) - 1, sqrt(2) - 1]; rel. error 4.7e-9.
_LOG_Q0 = f32(-0.49999988079071045)
_LOG_Q1 = f32(0.33333325386047363)
_LOG_Q2 = f32(-0.25001585483551025)
_LOG_Q3 = f32(0.20001985132694244)
_LOG_Q4 = f32(-0.1660904735326767)
_LOG_Q5 = f32(0.14181619882583618)
_LOG_Q6 = f32(-0.13243037462234497)
_LOG_Q7 = f32(0.12905600666999817)
_LOG_Q8 = f32(-0.07623042166233063)

# tanh(x) = x + x**3 * Q(x**2), |x| < 0.55; rel. error 4.4e-9.
_TANH_SMALL = f32(0.55)
_TANH_Q0 = f32(-0.33333316445350647)
_TANH_Q1 = f32(0.13332585990428925)
_TANH_Q2 = f32(-0.05385230481624603)
_TANH_Q3 = f32(0.021071655675768852)
_TANH_Q4 = f32(-0.006274207960814238)

# erf(x) = x + x * (C0 + u * Q(u)), u = x**2, |x| < 0.875, C0 = float32(2/sqrt(pi) - 1):
# splitting off x keeps the rounding of 2/sqrt(pi) out of the result; rel. error 5.3e-8.
_ERF_SMALL = f32(0.875)
_ERF_C0 = f32(0.1283791670955126)
_ERF_Q0 = f32(-0.3761293888092041)
_ERF_Q1 = f32(0.11286203563213348)
_ERF_Q2 = f32(-0.026921438053250313)
_ERF_Q3 = f32(0.005218816455453634)
_ERF_Q4 = f32(-0.00071498699253425)

# erfc(a) = exp(-a**2) * R(t), t = 1 / (1 + a/2), a in [0.875, 10.5]; rel. error 2.7e-8.
_ERFC_R0 = f32(2.7678411242959555e-06)
_ERFC_R1 = f32(0.28200650215148926)
_ERFC_R2 = f32(0.28332486748695374)
_ERFC_R3 = f32(0.23699453473091125)
_ERFC_R4 = f32(0.22619913518428802)
_ERFC_R5 = f32(-0.08286918699741364)
_ERFC_R6 = f32(0.3617627024650574)
_ERFC_R7 = f32(-0.5618184208869934)
_ERFC_R8 = f32(0.3205491304397583)
_ERFC_R9 = f32(-0.06611799448728561)

_SQRT1_2 = f32(0.7071067811865476)
# 2 * sqrt(2/pi) and 2 * sqrt(2/pi) * 0.044715: gelu_tanh = x * sigmoid(x * (A + B x**2)).
_GELU_A = f32(1.5957691216057308)
_GELU_B = f32(0.07135481627260025)


# ---------------------------------------------------------------------------------------
# Internal building blocks
# ---------------------------------------------------------------------------------------


@_helper
def _exp_reduce(x):
    """Cody-Waite reduction x = n*ln2 + r, |r| <= ~ln2/2. Returns (n as float32, r)."""
    n = np.rint(x * _LOG2E)
    r = x - n * _LN2_HI
    r = r - _opaque_int(n) * _LN2_LO
    return n, r


@_helper
def _exp_poly(r):
    """e**r for |r| <= ~0.35."""
    q = _EXP_Q4
    q = q * r + _EXP_Q3
    q = q * r + _EXP_Q2
    q = q * r + _EXP_Q1
    q = q * r + _EXP_Q0
    return f32(1.0) + (r + (r * r) * q)


@_helper
def _expm1_poly(r):
    """e**r - 1 for |r| <= ~0.35, accurate relative to the (small) result."""
    q = _EM1_Q4
    q = q * r + _EM1_Q3
    q = q * r + _EM1_Q2
    q = q * r + _EM1_Q1
    q = q * r + _EM1_Q0
    return r + (r * r) * q


@_helper
def _scale(p, n):
    """p * 2**n for p in [0.7, 1.42] and integral n in [-151, 128], with IEEE overflow to
    inf and correctly rounded denormal results (single rounding, like the hardware)."""
    # n == 128 with p < 1 is still finite: fold one factor of 2 into p (exact).
    big = n > f32(127.0)
    p = p + p if big else p
    n = n - f32(1.0) if big else n
    # Denormal results: p * 2**(n + 149) is the result in units of 2**-149; rounding that
    # to an integer *is* the denormal rounding, and its bit pattern is the denormal.
    tiny = n < f32(-126.0)
    normal = p * _pow2i(f32(0.0) if tiny else n)
    q = np.rint(p * _pow2i(n + f32(149.0) if tiny else f32(0.0)))
    return _int_as_f32_bits(q) if tiny else normal


@_helper
def _exp_mid(x):
    """e**x for x in [-87, 88] (no special values, no over/underflow)."""
    n, r = _exp_reduce(x)
    return _exp_poly(r) * _pow2i(n)


@_helper
def _log1p_poly(f):
    """log(1 + f) for f in [sqrt(1/2) - 1, sqrt(2) - 1]."""
    q = _LOG_Q8
    q = q * f + _LOG_Q7
    q = q * f + _LOG_Q6
    q = q * f + _LOG_Q5
    q = q * f + _LOG_Q4
    q = q * f + _LOG_Q3
    q = q * f + _LOG_Q2
    q = q * f + _LOG_Q1
    q = q * f + _LOG_Q0
    return f + (f * f) * q


@_helper
def _log_decompose(x):
    """For finite x > 0 (denormals included): (e, log1p(f)) with x = 2**e * (1 + f)."""
    sub = x < f32(1.1754943508222875e-38)
    xs = x * f32(8388608.0) if sub else x  # 2**23 makes denormals normal
    e = _frexp_exp(xs)
    e = e - f32(23.0) if sub else e
    return e, _log1p_poly(_frexp_mant(xs) - f32(1.0))


@_helper
def _log_special(x, res):
    """Apply log's edge cases: log(inf)=inf, log(nan)=nan, log(0)=-inf, log(<0)=nan."""
    res = res if x < _INF else x
    return res if x > f32(0.0) else (-_INF if x == f32(0.0) else _NAN)


@_helper
def _erf_small(x):
    """erf(x) for |x| < 0.875."""
    u = x * x
    q = _ERF_Q4
    q = q * u + _ERF_Q3
    q = q * u + _ERF_Q2
    q = q * u + _ERF_Q1
    q = q * u + _ERF_Q0
    return x + x * (_ERF_C0 + u * q)


@_helper
def _erfc_tail_r(a):
    """R(a) = erfc(a) * exp(a**2) for a in [0.875, 10.5]."""
    t = f32(1.0) / (f32(1.0) + f32(0.5) * a)
    r = _ERFC_R9
    r = r * t + _ERFC_R8
    r = r * t + _ERFC_R7
    r = r * t + _ERFC_R6
    r = r * t + _ERFC_R5
    r = r * t + _ERFC_R4
    r = r * t + _ERFC_R3
    r = r * t + _ERFC_R2
    r = r * t + _ERFC_R1
    return r * t + _ERFC_R0


# ---------------------------------------------------------------------------------------
# Public float32 functions
# ---------------------------------------------------------------------------------------


@_helper
def exp_f32(x):
    """e**x in float32 (measured max error 1.3 ulp; denormal results rounded like numpy).

    >>> float(exp_f32(np.float32(1.0)))
    2.7182817459106445
    >>> float(exp_f32(np.float32(100.0))), float(exp_f32(np.float32(-200.0)))
    (inf, 0.0)
    """
    x = f32(x)
    # Clamp so n stays in [-150, 128]; NaN compares false and becomes 89 (fixed at the end).
    xc = x if x < f32(89.0) else f32(89.0)
    xc = xc if xc > f32(-104.0) else f32(-104.0)
    n, r = _exp_reduce(xc)
    res = _scale(_exp_poly(r), n)
    return res if x == x else x


@_helper
def exp2_f32(x):
    """2**x in float32 (measured max error 1.2 ulp).

    >>> float(exp2_f32(np.float32(-3.0)))
    0.125
    """
    x = f32(x)
    xc = x if x < f32(128.5) else f32(128.5)
    xc = xc if xc > f32(-150.5) else f32(-150.5)
    n = np.rint(xc)
    r = xc - n  # exact
    q = _EXP2_Q5
    q = q * r + _EXP2_Q4
    q = q * r + _EXP2_Q3
    q = q * r + _EXP2_Q2
    q = q * r + _EXP2_Q1
    q = q * r + _EXP2_Q0
    res = _scale(f32(1.0) + r * q, n)
    return res if x == x else x


@_helper
def expm1_f32(x):
    """e**x - 1 in float32, accurate for tiny x (measured max error 1.7 ulp).

    >>> float(expm1_f32(np.float32(1e-10)))
    1.000000013351432e-10
    """
    x = f32(x)
    xc = x if x < f32(89.0) else f32(89.0)
    xc = xc if xc > f32(-30.0) else f32(-30.0)  # expm1(-30) rounds to -1
    n, r = _exp_reduce(xc)
    em1 = _expm1_poly(r)
    big = n > f32(127.0)
    em1 = em1 + em1 + f32(1.0) if big else em1  # 2 e**r - 1, so n can drop by one
    n = n - f32(1.0) if big else n
    s = _pow2i(n)
    res = em1 * s + (s - f32(1.0))
    res = em1 if n == f32(0.0) else res  # keeps tiny results exact (and -0.0)
    return res if x == x else x


@_helper
def log_f32(x):
    """Natural log in float32 (measured max error 1.6 ulp); log(0) = -inf, log(x<0) = nan.

    >>> float(log_f32(np.float32(1.0))), float(log_f32(np.float32(0.0)))
    (0.0, -inf)
    """
    x = f32(x)
    e, lp = _log_decompose(x)
    # e * ln2 is split so the large part is exact and added last.
    res = e * _LN2_HI + (lp + e * _LN2_LO)
    return _log_special(x, res)


@_helper
def log2_f32(x):
    """Base-2 log in float32 (measured max error 1.7 ulp).

    >>> float(log2_f32(np.float32(8.0)))
    3.0
    """
    x = f32(x)
    e, lp = _log_decompose(x)
    return _log_special(x, e + lp * _LOG2E)


@_helper
def log1p_f32(x):
    """log(1 + x) in float32, accurate for tiny x (measured 2.5 ulp); log1p(-1) = -inf.

    >>> float(log1p_f32(np.float32(1e-10)))
    1.000000013351432e-10
    """
    x = f32(x)
    # Near 0 the polynomial takes x itself; elsewhere 1 + x loses at most ~1 ulp of result,
    # and no reassociation-fragile error compensation is needed.
    small = _log1p_poly(x)
    u = f32(1.0) + x
    e, lp = _log_decompose(u)
    big = _log_special(u, e * _LN2_HI + (lp + e * _LN2_LO))
    in_small = (x > f32(-0.29289323)) & (x < f32(0.41421357))
    res = small if in_small else big
    return x if x == f32(0.0) else res  # keep -0.0


@_helper
def tanh_f32(x):
    """Hyperbolic tangent in float32 (measured max error 1.5 ulp); tanh(±inf) = ±1.

    >>> float(tanh_f32(np.float32(0.5)))
    0.46211716532707214
    """
    x = f32(x)
    a = abs(x)
    u = x * x
    q = _TANH_Q4
    q = q * u + _TANH_Q3
    q = q * u + _TANH_Q2
    q = q * u + _TANH_Q1
    q = q * u + _TANH_Q0
    small = x + x * (u * q)
    # |x| >= 0.55: tanh = 1 - 2 / (e**2|x| + 1); the result is >= 0.5 so the subtraction
    # loses nothing. tanh rounds to 1 beyond |x| = 9.01, so clamp to keep exp in range.
    ac = a if a < f32(10.0) else f32(10.0)
    t = f32(1.0) - f32(2.0) / (_exp_mid(ac + ac) + f32(1.0))
    big = -t if x < f32(0.0) else t
    res = small if a < _TANH_SMALL else big
    return res if x == x else x


@_helper
def sigmoid_f32(x):
    """Logistic sigmoid 1 / (1 + e**-x) in float32 (measured 2.6 ulp), denormal results
    included; sigmoid(-inf) = 0, sigmoid(inf) = 1.

    >>> float(sigmoid_f32(np.float32(0.0)))
    0.5
    """
    x = f32(x)
    # e**-|x| never overflows; for x < 0 use e**x / (1 + e**x) so tiny results stay exact.
    e = exp_f32(-abs(x))
    num = f32(1.0) if x >= f32(0.0) else e
    return num / (f32(1.0) + e)


@_helper
def erf_f32(x):
    """Error function in float32 (measured max error 2.3 ulp); erf(±inf) = ±1.

    >>> float(erf_f32(np.float32(0.5)))
    0.5204998850822449
    """
    x = f32(x)
    a = abs(x)
    small = _erf_small(x)
    # erf rounds to 1 beyond 3.92; clamping keeps exp in range and inf finite.
    ac = a if a < f32(4.0) else f32(4.0)
    ac = ac if ac > _ERF_SMALL else _ERF_SMALL
    big = f32(1.0) - _exp_mid(-(ac * ac)) * _erfc_tail_r(ac)
    big = -big if x < f32(0.0) else big
    res = small if a < _ERF_SMALL else big
    return res if x == x else x


@_helper
def gelu_tanh_f32(x):
    """GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x**3))).

    Computed as x * sigmoid(2 z), which has no cancellation for negative x. The sigmoid is
    inlined without ``sigmoid_f32``'s denormal path: 2z is clamped to [-87, 87] so one
    ``_exp_mid`` and one division do all the work (1.6x faster, the cost of a GEMM epilogue).
    Below 2z = -87 (x < -10.0, |result| < 2e-37) the result is -0.0; numpy's op-by-op
    formula and torch already give -0.0 from x < -5.

    >>> float(gelu_tanh_f32(np.float32(1.0)))
    0.8411920070648193
    """
    x = f32(x)
    t = x * (_GELU_A + _GELU_B * (x * x))  # 2z
    tc = t if t > f32(-87.0) else f32(-87.0)
    tc = tc if tc < f32(87.0) else f32(87.0)
    s = f32(1.0) / (f32(1.0) + _exp_mid(-tc))
    # NaN compares false and falls through to x * s = NaN; gelu(-inf) = -0, not -inf * 0.
    return f32(-0.0) if t < f32(-87.0) else x * s


@_helper
def gelu_erf_f32(x):
    """GELU, exact form: 0.5 x (1 + erf(x / sqrt(2))).

    For x < 0, 1 + erf(x/sqrt2) is evaluated as erfc(|x|/sqrt2) directly (no cancellation).

    >>> float(gelu_erf_f32(np.float32(1.0)))
    0.8413447141647339
    """
    x = f32(x)
    y = x * _SQRT1_2
    a = abs(y)
    ac = a if a < f32(10.5) else f32(10.5)
    ac = ac if ac > _ERF_SMALL else _ERF_SMALL
    erfc = exp_f32(-(ac * ac)) * _erfc_tail_r(ac)  # erfc(|y|) for |y| >= 0.875
    big = erfc if y < f32(0.0) else f32(2.0) - erfc
    one_plus_erf = f32(1.0) + _erf_small(y) if a < _ERF_SMALL else big
    xm = x if x > f32(-20.0) else f32(-20.0)  # gelu(-inf) = -0, not -inf * 0
    res = f32(0.5) * xm * one_plus_erf
    return res if x == x else x


# ---------------------------------------------------------------------------------------
# float64: libm is as fast as numpy's float64 ufuncs here (neither is SIMD on AVX2).
# ---------------------------------------------------------------------------------------


@_helper
def exp_f64(x):
    """e**x in float64 (libm). ``exp_f64(0.0) == 1.0``."""
    return math.exp(x)


@_helper
def exp2_f64(x):
    """2**x in float64 (libm). ``exp2_f64(3.0) == 8.0``."""
    return math.pow(2.0, x)


@_helper
def expm1_f64(x):
    """e**x - 1 in float64 (libm). ``expm1_f64(0.0) == 0.0``."""
    return math.expm1(x)


@_helper
def log_f64(x):
    """Natural log in float64 (libm); log(0) = -inf, log(x<0) = nan. ``log_f64(1.0) == 0.0``."""
    return math.log(x) if x > 0.0 else (-math.inf if x == 0.0 else math.nan)


@_helper
def log2_f64(x):
    """Base-2 log in float64 (libm). ``log2_f64(8.0) == 3.0``."""
    return math.log2(x) if x > 0.0 else (-math.inf if x == 0.0 else math.nan)


@_helper
def log1p_f64(x):
    """log(1 + x) in float64 (libm); log1p(-1) = -inf. ``log1p_f64(0.0) == 0.0``."""
    return math.log1p(x) if x > -1.0 else (-math.inf if x == -1.0 else math.nan)


@_helper
def tanh_f64(x):
    """Hyperbolic tangent in float64 (libm). ``tanh_f64(0.0) == 0.0``."""
    return math.tanh(x)


@_helper
def sigmoid_f64(x):
    """Logistic sigmoid in float64, exact for tiny results. ``sigmoid_f64(0.0) == 0.5``."""
    e = math.exp(-abs(x))
    return (1.0 if x >= 0.0 else e) / (1.0 + e)


@_helper
def erf_f64(x):
    """Error function in float64 (libm). ``erf_f64(0.0) == 0.0``."""
    return math.erf(x)


@_helper
def gelu_tanh_f64(x):
    """GELU (tanh approximation) in float64 as x * sigmoid(2 z). ``gelu_tanh_f64(0.0) == 0.0``."""
    xm = x if x > -40.0 else -40.0
    return xm * sigmoid_f64(x * (1.5957691216057308 + 0.07135481627260025 * (x * x)))


@_helper
def gelu_erf_f64(x):
    """GELU (erf form) in float64, via erfc for x < 0. ``gelu_erf_f64(0.0) == 0.0``."""
    xm = x if x > -40.0 else -40.0
    return 0.5 * xm * math.erfc(-x * 0.7071067811865476)
