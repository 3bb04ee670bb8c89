"""Vectorisable float32 transcendental functions for Numba kernels.

The pip llvmlite has no SVML, so ``math.exp``/``math.tanh`` inside a Numba loop become scalar
libm calls that LLVM cannot vectorise (``tanh`` measured ~8x slower than numpy's ufunc). The
helpers here are plain arithmetic, integer bit tricks and selects, so a loop that calls them
vectorises to AVX2/AVX-512 code.

Every helper is ``@njit(inline="always")``: Numba inlines it at IR level into the calling
kernel, which then applies *its own* ``fastmath`` and ``error_model`` flags. The code is
written to stay accurate under the project flags ``{"contract", "afn", "reassoc", "nsz"}``
as well as under strict IEEE (the tests check both):

* no algorithm relies on a rounding error surviving reassociation (no Fast2Sum). The one
  place that needs exact float steps, exp's range reduction (round by adding 1.5 * 2**23,
  subtract it back, Cody-Waite), is emitted by intrinsics whose instructions carry their own
  ``contract`` flag: Numba's fast-math pass only flags *unflagged* instructions, so these
  never get ``reassoc`` and LLVM cannot fold ``(y + M) - M`` back to ``y``;
* exponents are built with integer bit operations (no float<->int conversions);
* ``nnan``/``ninf`` are never assumed; NaN mostly flows through the arithmetic (clamps are
  written as NaN-preserving min/max), and the rest is handled with explicit selects.

Speed on AVX2 is bound by the number of vector instructions (the two FMA ports are the
busiest), so the common path avoids compares and blends: exp's fix-ups for overflow and
denormal results are folded into a two-step scaling instead of being selected.

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
    "gelu_tanh_reduce_f32",
    "gelu_tanh_finish_f32",
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
    "nan_maximum",
    "nan_minimum",
    "prefer_wide_vectors",
    "VECTOR_WIDTH",
]

#: The fastmath flags generated kernels use (and the helpers are compiled with).
#: ``nnan``/``ninf`` are deliberately absent so ``x != x`` and ``x == inf`` keep working;
#: ``arcp`` too (it lets ``y / sqrt(x)`` become an approximate rsqrt: see loader.py).
FASTMATH = frozenset({"contract", "afn", "reassoc", "nsz"})

_helper = numba.njit(inline="always", error_model="numpy", fastmath=set(FASTMATH))

f32 = np.float32

# ---------------------------------------------------------------------------------------
# Bit-level intrinsics. All operate on i32 so they vectorise 8-wide on AVX2 (Numba's own
# integer typing would widen to int64, and AVX2 has no 64-bit arithmetic right shift).
# ---------------------------------------------------------------------------------------

_I32 = ir.IntType(32)
_F32 = ir.FloatType()


def _strict(instr):
    """Give ``instr`` a fast-math flag of its own (``contract``, which still allows FMA
    fusion): Numba's fast-math pass skips flagged instructions, so it never gets ``reassoc``."""
    instr.flags.append("contract")
    return instr


@intrinsic
def _exact_sub(typingctx, a, b):
    """``a - b`` that LLVM may not reassociate, so ``(y + C) - C`` stays a rounding of y:
    ``_exact_sub(y + _SHIFT, _SHIFT)`` is ``np.rint(y)`` for |y| < 2**22."""
    if a != types.float32 or b != types.float32:
        return None

    def codegen(context, builder, sig, args):
        return _strict(builder.fsub(args[0], args[1]))

    return types.float32(types.float32, types.float32), codegen


@intrinsic
def _fma(typingctx, a, b, c):
    """``a * b + c`` rounded once (``llvm.fma``: one vfmadd, vectorised like any op). LLVM
    fuses a product into an add by itself only when the product has no other use."""
    if not (a == b == c == types.float32):
        return None

    def codegen(context, builder, sig, args):
        fn = builder.module.declare_intrinsic("llvm.fma", [_F32], ir.FunctionType(_F32, [_F32] * 3))
        return builder.call(fn, args)

    return types.float32(types.float32, types.float32, types.float32), codegen


@intrinsic
def _cw_reduce(typingctx, x, n):
    """Cody-Waite ``r = (x - n * _LN2_HI) - n * _LN2_LO``, |r| <= ~ln2/2 for n = rint(x/ln2).

    Not reassociable: LLVM would factor it into ``x - n * (_LN2_HI + _LN2_LO)`` and lose the
    exactness of the split.
    """
    if x != types.float32 or n != types.float32:
        return None

    def codegen(context, builder, sig, args):
        x, n = args
        hi = _strict(builder.fmul(n, ir.Constant(_F32, float(_LN2_HI))))
        r = _strict(builder.fsub(x, hi))
        lo = _strict(builder.fmul(n, ir.Constant(_F32, float(_LN2_LO))))
        return _strict(builder.fsub(r, lo))

    return types.float32(types.float32, types.float32), codegen


@intrinsic
def _pow2_shifted(typingctx, t):
    """``2.0**n`` from ``t = y + _SHIFT``, n = rint(y) in [-126, 127]: the low mantissa bits
    of t hold n + 127, and a left shift by 23 moves them into the exponent field (the rest of
    t's bits fall off the top)."""
    if t != types.float32:
        return None

    def codegen(context, builder, sig, args):
        bits = builder.shl(builder.bitcast(args[0], _I32), ir.Constant(_I32, 23))
        return builder.bitcast(bits, _F32)

    return types.float32(types.float32), codegen


@intrinsic
def _scale_shifted2(typingctx, p, t):
    """``p * 2.0**n`` for p in [0.7, 1.42] and ``t = y + _SHIFT2``, n = rint(y) in [-150, 128].

    Computed as ``(p * 2**n1) * 2**n2`` with n1 = floor(n / 2), n2 = n - n1, both powers
    normal: the first product is exact, so the second rounds once, which gives IEEE overflow
    to inf and correctly rounded denormal results with no compare or blend. The low 9 bits of
    t hold v = n + 254, so n1 + 127 = v >> 1 and n2 + 127 = v - (v >> 1).
    """
    if p != types.float32 or t != types.float32:
        return None

    def codegen(context, builder, sig, args):
        p, t = args
        v = builder.bitcast(t, _I32)
        h = builder.lshr(v, ir.Constant(_I32, 1))
        s23 = ir.Constant(_I32, 23)
        a = builder.bitcast(builder.shl(h, s23), _F32)
        b = builder.bitcast(builder.shl(builder.sub(v, h), s23), _F32)
        # Not reassociable: 2**n1 * 2**n2 first would round (or flush) twice.
        return _strict(builder.fmul(_strict(builder.fmul(p, a)), b))

    return types.float32(types.float32, types.float32), codegen


@intrinsic
def _freeze(typingctx, x):
    """``x`` unchanged (LLVM ``freeze``), but opaque to InstCombine: between the two halves of
    a clamp it stops LLVM from merging them into compare + max + blend (one vminps and one
    vmaxps instead)."""
    if x != types.float32:
        return None

    def codegen(context, builder, sig, args):
        instr = ir.Instruction(builder.block, _F32, "freeze", [args[0]])
        builder._insert(instr)  # IRBuilder has no freeze() method
        return instr

    return types.float32(types.float32), codegen


@intrinsic
def _sign_set(typingctx, x):
    """Whether the sign bit of ``x`` is set (x < 0, -0.0, NaN with sign). A select on it
    compiles to one vblendvps keyed on x itself, with no compare."""
    if x != types.float32:
        return None

    def codegen(context, builder, sig, args):
        return builder.icmp_signed("<", builder.bitcast(args[0], _I32), ir.Constant(_I32, 0))

    return types.boolean(types.float32), codegen


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


def _vector_width() -> int:
    """Vector width (bits) LLVM may use in runba kernels: ``$RUNBA_VECTOR_WIDTH`` (256 or
    512), else 512 where the host has AVX-512F and 256 elsewhere.

    LLVM's own default on AVX-512 CPUs is 256 (older Xeons lowered their clock for 512-bit
    code). Measured here (Xeon with AVX-512, one thread, float32 loops): mathlib exp 0.33 ->
    0.20 ns per element at 512, tanh 0.41 -> 0.33, gelu_tanh 0.32 -> 0.27.
    """
    import os

    from llvmlite import binding

    env = os.environ.get("RUNBA_VECTOR_WIDTH", "").strip()
    if env in ("256", "512"):
        return int(env)
    if env:
        import warnings

        warnings.warn(
            f"RUNBA_VECTOR_WIDTH={env!r} is not 256 or 512; using the host default",
            RuntimeWarning,
            stacklevel=2,
        )
    try:
        features = binding.get_host_cpu_features()
    except RuntimeError:  # no feature query on this platform
        return 256
    return 512 if features.get("avx512f") else 256


#: Bits per vector register runba kernels are compiled for (see :func:`prefer_wide_vectors`).
#: Part of every kernel cache key (the loader's environment fingerprint).
VECTOR_WIDTH = _vector_width()


@intrinsic
def prefer_wide_vectors(typingctx):
    """Let LLVM vectorise the function that calls this at :data:`VECTOR_WIDTH` bits.

    A statement with no run-time code: it sets the LLVM function attributes
    ``prefer-vector-width`` and ``min-legal-vector-width`` on the function being compiled (for
    a ``prange`` loop, call it inside the body: numba outlines the body into a function of
    its own). With ``VECTOR_WIDTH == 256`` it does nothing.
    """

    def codegen(context, builder, sig, args):
        if VECTOR_WIDTH > 256:
            attrs = builder.function.attributes
            # llvmlite's attribute set validates only LLVM's keyword attributes; a string
            # attribute added to the underlying set is printed verbatim into the IR
            for name in ("prefer-vector-width", "min-legal-vector-width"):
                set.add(attrs, f'"{name}"="{VECTOR_WIDTH}"')
        return context.get_dummy_value()

    return types.void(), codegen


def _nan_minmax(llvm_name, doc):
    """An intrinsic for ``llvm.maximum``/``llvm.minimum`` on float32 or float64: NaN from
    either side propagates (np.maximum's rule), and unlike a compare-and-select written in
    Python, LLVM vectorises it as a loop-carried reduction (a row max: 1.1 -> 0.07 ns per
    element). Other types return None, so callers keep the plain select for integers."""

    @intrinsic
    def minmax(typingctx, a, b):
        if a != b or a not in (types.float32, types.float64):
            return None

        def codegen(context, builder, sig, args):
            ty = args[0].type
            fn = builder.module.declare_intrinsic(llvm_name, [ty], ir.FunctionType(ty, [ty, ty]))
            return builder.call(fn, args)

        return a(a, a), codegen

    minmax.__doc__ = doc
    return minmax


nan_maximum = _nan_minmax(
    "llvm.maximum", "``np.maximum(a, b)`` for two float32 or two float64 scalars."
)
nan_minimum = _nan_minmax(
    "llvm.minimum", "``np.minimum(a, b)`` for two float32 or two float64 scalars."
)


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
# 1.5 * 2**23 + 127: for |y| < 2**22, y + _SHIFT rounds y to the nearest integer n (ties to
# even, like np.rint) and leaves n + 127, the biased exponent of 2**n, in the low mantissa
# bits. _SHIFT2 leaves n + 254 instead, for the two-step scaling of _scale_shifted2.
_SHIFT = f32(12583039.0)
_SHIFT2 = f32(12583166.0)

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

# tanh: e**2x - 1 = 2**w - 1 with w = 2x log2(e) = n + r, |r| <= 1/2:
# 2**r - 1 = r * Q(r), Q of degree 5 fitted for relative error (2.1e-8 with float32
# coefficients): accurate as r -> 0, where tanh needs it.
_TANH_W = f32(2.0 * 1.4426950408889634)
_EXP2M1_Q0 = f32(0.6931471824645996)
_EXP2M1_Q1 = f32(0.24022649228572845)
_EXP2M1_Q2 = f32(0.05550357326865196)
_EXP2M1_Q3 = f32(0.009618237614631653)
_EXP2M1_Q4 = f32(0.0013390735257416964)
_EXP2M1_Q5 = f32(0.00015403507859446108)

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
# gelu_tanh = x / (1 + 2**w), w = -log2(e) * 2z = x * (A + B x**2): 2 sqrt(2/pi) and
# 2 sqrt(2/pi) 0.044715, times -log2(e), so w feeds 2**w with no ln2 reduction.
_GELU_A = f32(-1.5957691216057308 * 1.4426950408889634)
_GELU_B = f32(-0.07135481627260025 * 1.4426950408889634)
# 2**r = 1 + r * Q(r), |r| <= 1/2, one degree below _EXP2_Q; rel. error 1.1e-7 (0.9 ulp).
# Enough for gelu, whose result damps the error of 2**w by 2**w / (1 + 2**w) <= 1, and one
# fewer coefficient keeps the whole gelu body in the 16 AVX2 registers.
_GELU_Q0 = f32(0.6931470036506653)
_GELU_Q1 = f32(0.24022242426872253)
_GELU_Q2 = f32(0.05550733581185341)
_GELU_Q3 = f32(0.009671512991189957)
_GELU_Q4 = f32(0.0013264723820611835)


# ---------------------------------------------------------------------------------------
# Internal building blocks
# ---------------------------------------------------------------------------------------


@_helper
def _clamp(x, lo, hi):
    """``x`` clamped to [lo, hi]; NaN passes through. ``c if x > c else x`` is exactly x86
    ``minps(c, x)``, which returns its second operand when one is NaN (likewise maxps)."""
    xc = _freeze(hi if x > hi else x)
    return lo if xc < lo else xc


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
def _exp_mid(x):
    """e**x for x in [-87, 88] (no over/underflow; NaN gives NaN)."""
    t = x * _LOG2E + _SHIFT
    r = _cw_reduce(x, _exact_sub(t, _SHIFT))
    return _exp_poly(r) * _pow2_shifted(t)


@_helper
def _exp_clamped(x):
    """e**x for x in [-104, 89] or NaN, with IEEE overflow to inf and correctly rounded
    denormal results (like numpy): no compares or blends."""
    t = x * _LOG2E + _SHIFT2
    r = _cw_reduce(x, _exact_sub(t, _SHIFT2))
    return _scale_shifted2(_exp_poly(r), t)


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
    # Beyond the clamp exp overflows to inf / rounds to 0 (n stays in [-150, 128]).
    return _exp_clamped(_clamp(x, f32(-104.0), f32(89.0)))


@_helper
def exp2_f32(x):
    """2**x in float32 (measured max error 1.2 ulp).

    >>> float(exp2_f32(np.float32(-3.0)))
    0.125
    """
    x = f32(x)
    xc = _clamp(x, f32(-150.5), f32(128.5))
    t = xc + _SHIFT2
    r = _exact_sub(xc, _exact_sub(t, _SHIFT2))  # xc - rint(xc), exact
    q = _EXP2_Q5
    q = q * r + _EXP2_Q4
    q = q * r + _EXP2_Q3
    q = q * r + _EXP2_Q2
    q = q * r + _EXP2_Q1
    q = q * r + _EXP2_Q0
    return _scale_shifted2(f32(1.0) + r * q, t)


@_helper
def expm1_f32(x):
    """e**x - 1 in float32, accurate for tiny x (measured max error 1.7 ulp).

    >>> float(expm1_f32(np.float32(1e-10)))
    1.000000013351432e-10
    """
    x = f32(x)
    xc = _clamp(x, f32(-30.0), f32(89.0))  # expm1(-30) rounds to -1
    t = xc * _LOG2E + _SHIFT
    n = _exact_sub(t, _SHIFT)
    em1 = _expm1_poly(_cw_reduce(xc, n))
    big = n > f32(127.0)
    em1 = em1 + em1 + f32(1.0) if big else em1  # 2 e**r - 1, so n can drop by one
    s = _pow2_shifted(_exact_sub(t, f32(1.0)) if big else t)
    res = em1 * s + (s - f32(1.0))
    return em1 if n == f32(0.0) else res  # keeps tiny results exact (and -0.0); NaN: res


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
    """Hyperbolic tangent in float32 (max error 3.81 ulp, every float32 in [-9.6, 9.6]
    checked); tanh(±inf) = ±1. The sign of a zero is not kept: tanh(-0.0) = +0.0 (fused
    kernels compile with ``nsz``, which allows the same).

    One branch for every x: with m = e**2x - 1 (``expm1``), tanh x = m / (m + 2), and m is
    built like gelu's 2**w: w = 2x log2(e) rounded by the magic add (no Cody-Waite), so
    ``m = (2**n - 1) + 2**n (2**r - 1)`` with ``2**r - 1 = r Q(r)`` accurate as r -> 0 (n = 0
    for |x| < 0.17: no cancellation near zero). The form holds for either sign (x < 0 gives
    m in (-1, 0] and m + 2 in (1, 2]), so x is only clamped: no abs, no sign restored by
    bits, two vector operations fewer than the |x| form (the 5-tanh chain kernel 7% faster).

    >>> float(tanh_f32(np.float32(0.5)))
    0.46211716532707214
    """
    x = f32(x)
    # tanh rounds to ±1 beyond |x| = 9.01; the clamp keeps 2**n normal (vminps, vmaxps;
    # NaN fails both compares and flows through every step)
    xc = f32(9.5) if x > f32(9.5) else x
    xc = f32(-9.5) if xc < f32(-9.5) else xc
    # w = xc * _TANH_W is never rounded on its own: t rounds w to an integer n in one FMA,
    # and r = w - n is a second FMA (one instruction fewer, and r exact where w - n is)
    t = _fma(xc, _TANH_W, _SHIFT)
    r = _fma(xc, _TANH_W, -_exact_sub(t, _SHIFT))
    s = _pow2_shifted(t)
    q = _EXP2M1_Q5
    q = q * r + _EXP2M1_Q4
    q = q * r + _EXP2M1_Q3
    q = q * r + _EXP2M1_Q2
    q = q * r + _EXP2M1_Q1
    q = q * r + _EXP2M1_Q0
    m = (s - f32(1.0)) + s * (r * q)  # 2**n - 1 is exact
    return m / (m + f32(2.0))


@_helper
def sigmoid_f32(x):
    """Logistic sigmoid 1 / (1 + e**-x) in float32 (measured 2.6 ulp), denormal results
    included; sigmoid(-inf) = 0, sigmoid(inf) = 1.

    >>> float(sigmoid_f32(np.float32(0.0)))
    0.5
    """
    x = f32(x)
    # e**-|x| never overflows (one-sided clamp); for x < 0 use e**x / (1 + e**x) so tiny
    # results stay exact. NaN flows through e.
    y = -abs(x)
    e = _exp_clamped(f32(-104.0) if y < f32(-104.0) else y)
    num = e if _sign_set(x) else f32(1.0)  # -0.0 takes e = 1: same result
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
def gelu_tanh_reduce_f32(x):
    """First half of :func:`gelu_tanh_f32`: ``(xc, r, s)`` with ``2**w = (1 + r Q(r)) * s``.

    Kernels that run GELU over long rows can store the three values in L1-sized scratch
    tiles and finish in a second loop (:func:`gelu_tanh_finish_f32`): two short loop bodies
    keep their constants in registers, where one long body reloads them every iteration
    (measured 1.2x faster on AVX2). ``gelu_tanh_f32(x)`` is
    ``gelu_tanh_finish_f32(*gelu_tanh_reduce_f32(x))``.
    """
    x = f32(x)
    # gelu(-inf) = -0: clamping x keeps -inf / inf = NaN out (one vmaxps; NaN passes).
    xc = f32(-20.0) if x < f32(-20.0) else x
    w = xc * (_GELU_A + _GELU_B * (xc * xc))
    # n = rint(w) in [-127, 128] needs no select: n = 128 puts 255 in the exponent field,
    # so s = inf and the result -0 (x < -10, true |result| < 2e-37); n = -127 gives s = 0
    # and the result x (x > 10, where gelu rounds to x).
    wc = _clamp(w, f32(-127.0), f32(128.0))
    t = wc + _SHIFT
    return xc, wc - _exact_sub(t, _SHIFT), _pow2_shifted(t)


@_helper
def gelu_tanh_finish_f32(xc, r, s):
    """Second half of :func:`gelu_tanh_f32` (see :func:`gelu_tanh_reduce_f32`)."""
    q = _GELU_Q4
    q = q * r + _GELU_Q3
    q = q * r + _GELU_Q2
    q = q * r + _GELU_Q1
    q = q * r + _GELU_Q0
    return xc / (f32(1.0) + (f32(1.0) + r * q) * s)


@_helper
def gelu_tanh_f32(x):
    """GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x**3))).

    Computed as x * sigmoid(2z) = x / (1 + 2**w) with w = -2z log2(e), which has no
    cancellation for negative x; log2(e) is folded into the polynomial in x, so 2**w needs
    only a rounding of w, no Cody-Waite reduction, and no compare or blend anywhere.
    For x < -10 (|result| < 2e-37) the result is -0.0; numpy's op-by-op formula and torch
    already give -0.0 from x < -5.

    >>> float(gelu_tanh_f32(np.float32(1.0)))
    0.8411920070648193
    """
    xc, r, s = gelu_tanh_reduce_f32(x)
    return gelu_tanh_finish_f32(xc, r, s)


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
