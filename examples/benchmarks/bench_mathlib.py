"""Benchmark runba.kernels.mathlib against numpy's float32 ufuncs and libm inside Numba.

For each function, on 4M float32 inputs in a realistic range, prints the median time of
numpy's ufunc (or the usual numpy expression where there is no ufunc), the mathlib helper in
a serial Numba loop and in a ``prange`` loop (2 threads), the same loop calling libm
(``math.*``), the serial speedup over numpy and the max error in float32 ulps.

    python examples/benchmarks/bench_mathlib.py [--n 4000000] [--repeat 7] [--json out.json]
"""

import argparse
import json
import math
import platform
import time

import numba
import numpy as np

from runba.kernels import mathlib as ml

FM = set(ml.FASTMATH)
F32 = np.float32


def map_kernel(f, parallel):
    """A fused-kernel-like loop: one helper applied to every element, at runba's vector
    width (``mathlib.prefer_wide_vectors``, as generated kernels)."""
    if parallel:

        @numba.njit(error_model="numpy", fastmath=FM, parallel=True)
        def k(a, out):
            for i in numba.prange(a.size):
                ml.prefer_wide_vectors()
                out[i] = f(a[i])

    else:

        @numba.njit(error_model="numpy", fastmath=FM)
        def k(a, out):
            ml.prefer_wide_vectors()
            for i in range(a.size):
                out[i] = f(a[i])

    return k


# libm versions of each function, as a naive kernel would write them.
@numba.njit(inline="always")
def _libm_sigmoid(x):
    return F32(1.0) / (F32(1.0) + math.exp(-x))


@numba.njit(inline="always")
def _libm_gelu_tanh(x):
    return F32(0.5) * x * (F32(1.0) + math.tanh(F32(0.7978845608) * (x + F32(0.044715) * x**3)))


@numba.njit(inline="always")
def _libm_gelu_erf(x):
    return F32(0.5) * x * (F32(1.0) + math.erf(x * F32(0.7071067811865476)))


@numba.njit
def _erf64(a, out):
    for i in range(a.size):
        out[i] = math.erf(a[i])


@numba.njit
def _erfc64(a, out):
    for i in range(a.size):
        out[i] = math.erfc(a[i])


def _call(k, x):
    out = np.empty_like(x)
    k(x, out)
    return out


def _sigmoid64(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0, e) / (1.0 + e)


def _np_sigmoid(x, out):
    np.negative(x, out=out)
    np.exp(out, out=out)
    out += F32(1.0)
    np.reciprocal(out, out=out)


def _np_gelu_tanh(x, out):
    t = x * x
    t *= F32(0.044715)
    t += F32(1.0)
    t *= x
    t *= F32(0.7978845608)
    np.tanh(t, out=t)
    t += F32(1.0)
    np.multiply(x, t, out=out)
    out *= F32(0.5)


# name: (input range (lo, hi, log-uniform?), numpy baseline or None, libm helper, f64 reference)
CASES = {
    "exp": (
        (-80.0, 80.0, False),
        np.exp,
        numba.njit(inline="always")(lambda x: math.exp(x)),
        np.exp,
    ),
    "exp2": (
        (-120.0, 120.0, False),
        np.exp2,
        numba.njit(inline="always")(lambda x: math.pow(F32(2.0), x)),
        np.exp2,
    ),
    "expm1": (
        (-10.0, 10.0, False),
        np.expm1,
        numba.njit(inline="always")(lambda x: math.expm1(x)),
        np.expm1,
    ),
    "log": ((1e-6, 1e6, True), np.log, numba.njit(inline="always")(lambda x: math.log(x)), np.log),
    "log2": (
        (1e-6, 1e6, True),
        np.log2,
        numba.njit(inline="always")(lambda x: math.log2(x)),
        np.log2,
    ),
    "log1p": (
        (-0.9, 100.0, False),
        np.log1p,
        numba.njit(inline="always")(lambda x: math.log1p(x)),
        np.log1p,
    ),
    "tanh": (
        (-10.0, 10.0, False),
        np.tanh,
        numba.njit(inline="always")(lambda x: math.tanh(x)),
        np.tanh,
    ),
    "sigmoid": ((-20.0, 20.0, False), _np_sigmoid, _libm_sigmoid, _sigmoid64),
    "erf": (
        (-5.0, 5.0, False),
        None,
        numba.njit(inline="always")(lambda x: math.erf(x)),
        lambda x: _call(_erf64, x),
    ),
    "gelu_tanh": (
        (-8.0, 8.0, False),
        _np_gelu_tanh,
        _libm_gelu_tanh,
        lambda x: x * _sigmoid64(1.5957691216057308 * (x + 0.044715 * x**3)),
    ),
    "gelu_erf": (
        (-8.0, 8.0, False),
        None,
        _libm_gelu_erf,
        lambda x: 0.5 * x * _call(_erfc64, -x / math.sqrt(2.0)),
    ),
}


def timeit(fn, repeat):
    fn()  # warm-up: compile, page in the output
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)) * 1e3


def max_ulp(y, ref):
    with np.errstate(over="ignore", invalid="ignore"):
        r32 = ref.astype(F32)
        ok = np.isfinite(r32)
        err = np.abs(y.astype(np.float64) - ref) / np.spacing(np.abs(r32)).astype(np.float64)
    return float(err[ok].max())


def bench_one(name, x, repeat):
    """Time one function on inputs x; returns the result row."""
    _, np_fn, libm_fn, ref_fn = CASES[name]
    out = np.empty_like(x)
    helper = getattr(ml, name + "_f32")
    ser = map_kernel(helper, False)
    par = map_kernel(helper, True)
    lib = map_kernel(libm_fn, False)
    t_np = timeit(lambda: np_fn(x, out), repeat) if np_fn is not None else float("nan")
    t_ser = timeit(lambda: ser(x, out), repeat)
    ref = ref_fn(x.astype(np.float64))
    err_all = max_ulp(out, ref)
    # gelu is ill-conditioned for x < -1 (results < 0.16 decaying to ~0); report the
    # well-conditioned part in the table and the whole range in the JSON.
    keep = x >= F32(-1.0) if name.startswith("gelu") else slice(None)
    err = max_ulp(out[keep], ref[keep])
    t_par = timeit(lambda: par(x, out), repeat)
    t_lib = timeit(lambda: lib(x, out), repeat)
    base = t_np if np_fn is not None else t_lib
    return dict(
        function=name,
        numpy_ms=t_np,
        serial_ms=t_ser,
        prange_ms=t_par,
        libm_ms=t_lib,
        speedup=base / t_ser,
        speedup_vs="numpy" if np_fn is not None else "libm",
        max_ulp=err,
        max_ulp_all=err_all,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4_000_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--only", nargs="*", help="subset of functions")
    args = ap.parse_args()
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    rng = np.random.default_rng(0)
    rows = []
    cols = ("function", "numpy ms", "serial ms", "prange ms", "libm ms", "speedup", "max ulp")
    hdr = f"{cols[0]:10s} " + " ".join(f"{c:>9s}" for c in cols[1:])
    print(f"n={args.n} float32, median of {args.repeat}, prange threads={numba.get_num_threads()}")
    print(hdr)
    print("-" * len(hdr))
    for name, ((lo, hi, logu), np_fn, _, _) in CASES.items():
        if args.only and name not in args.only:
            continue
        if logu:
            x = np.exp(rng.uniform(math.log(lo), math.log(hi), args.n)).astype(F32)
        else:
            x = rng.uniform(lo, hi, args.n).astype(F32)
        r = bench_one(name, x, args.repeat)
        rows.append(r)
        sp = f"{r['speedup']:.2f}x" + ("" if np_fn is not None else "*")
        tail = f"  (all x: {r['max_ulp_all']:.1f})" if name.startswith("gelu") else ""
        times = " ".join(f"{r[k]:9.2f}" for k in ("numpy_ms", "serial_ms", "prange_ms", "libm_ms"))
        print(f"{name:10s} {times} {sp:>9s} {r['max_ulp']:9.2f}{tail}")
    print("* no numpy ufunc: speedup is vs libm in numba.")
    print("sigmoid and gelu_tanh 'numpy' = the usual numpy expression with out= buffers.")
    print(f"gelu max ulp is over x >= -1; numba threading layer: {numba.threading_layer()}")
    if args.json:
        meta = dict(
            n=args.n,
            repeat=args.repeat,
            threads=numba.get_num_threads(),
            threading_layer=numba.threading_layer(),
            numpy=np.__version__,
            numba=numba.__version__,
            machine=platform.machine(),
            processor=platform.processor(),
        )
        with open(args.json, "w") as fh:
            json.dump(dict(meta=meta, results=rows), fh, indent=2)


if __name__ == "__main__":
    main()
