"""bias + GELU(tanh) over a (4096, 1024) float32 array: runba reference kernel vs numpy vs copy.

Run: ``python examples/benchmarks/bench_bias_gelu.py [--threads 2] [--repeats 20] [--json f]``

Rows (one process, side by side, median of ``--repeats``):

* ``prange copy``: ``out[i, j] = x[i, j]`` with ``prange`` over rows - the bandwidth reference;
* ``runba bias_gelu_f32``: ``runba.kernels.cpu.bias_gelu`` (one pass, mathlib's gelu inlined);
* ``numpy op-by-op``: what a competent numpy user writes (``h*h*h``, float32, in place);
* ``torch`` (only when installed): ``gelu(x + b, approximate="tanh")``.

Targets (DESIGN §6): runba <= 1.3x the prange copy, >= 15x numpy op-by-op at 2 threads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numba
import numpy as np
from benchtime import median_min, time_rounds
from numba import njit, prange

from runba.kernels import threads
from runba.kernels.cpu.bias_gelu import bias_gelu_f32
from runba.kernels.loader import DEFAULT_FLAGS, cache_info

C0 = np.float32(np.sqrt(2.0 / np.pi))
C1 = np.float32(0.044715 * np.sqrt(2.0 / np.pi))


@njit(
    parallel=True,
    **{k: v if not isinstance(v, frozenset) else set(v) for k, v in DEFAULT_FLAGS.items()},
)
def prange_copy(x, out):
    for i in prange(x.shape[0]):
        for j in range(x.shape[1]):
            out[i, j] = x[i, j]


def numpy_bias_gelu(x, b, out, t):
    """0.5*h*(1 + tanh(c0*h + c1*h*h*h)) with h = x + b, two float32 buffers, in place."""
    h = np.add(x, b, out=out)
    np.multiply(h, h, out=t)
    t *= h
    t *= C1
    t += C0 * h  # one temporary; avoids a third buffer
    np.tanh(t, out=t)
    t += np.float32(1.0)
    t *= h
    np.multiply(t, np.float32(0.5), out=out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--cols", type=int, default=1024)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    threads.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.rows, args.cols), dtype=np.float32)
    b = rng.standard_normal(args.cols, dtype=np.float32)
    out = np.empty_like(x)
    tmp = np.empty_like(x)

    t0 = time.perf_counter()
    bias_gelu_f32(x, b, out)
    first_call = time.perf_counter() - t0
    info = cache_info()

    h = (x + b).astype(np.float64)
    ref = 0.5 * h * (1.0 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h * h * h)))
    err_runba = float(np.abs(out - ref).max())
    err_numpy = float(np.abs(numpy_bias_gelu(x, b, np.empty_like(x), tmp) - ref).max())

    fns = {
        "prange copy": lambda: prange_copy(x, out),
        "runba bias_gelu_f32": lambda: bias_gelu_f32(x, b, out),
        "numpy op-by-op": lambda: numpy_bias_gelu(x, b, out, tmp),
    }
    try:
        import torch

        torch.set_num_threads(args.threads)
        tx, tb = torch.from_numpy(x), torch.from_numpy(b)
        tg = torch.nn.functional.gelu
        fns["torch gelu(x+b)"] = lambda: tg(tx + tb, approximate="tanh")
    except ImportError:
        pass
    rows = median_min(time_rounds(fns, rounds=4, per_round=max(1, -(-args.repeats // 4))))

    print(
        f"# bias+GELU(tanh) {args.rows}x{args.cols} float32, {args.threads} threads "
        f"({threads.ensure_threading_layer()}), numba {numba.__version__}, numpy {np.__version__}, "
        f"{platform.processor() or platform.machine()}, load avg {os.getloadavg()[0]:.2f}"
    )
    print(
        f"# first call {first_call:.2f} s "
        f"({'compiled' if info.compiles else 'loaded from disk cache'}); "
        f"max abs err vs float64: runba {err_runba:.2e}, numpy {err_numpy:.2e}"
    )
    print(f"# ratios from medians (min in brackets); {args.repeats} calls each, in 4 rounds")
    print(f"{'variant':<22} {'median ms':>10} {'min ms':>8} {'vs copy':>14} {'numpy/x':>14}")
    cm, cn = rows["prange copy"]
    nm, nn = rows["numpy op-by-op"]
    for name, (m, n) in rows.items():
        print(
            f"{name:<22} {m * 1e3:10.3f} {n * 1e3:8.3f} {m / cm:7.2f} [{n / cn:4.2f}] "
            f"{nm / m:7.1f} [{nn / n:4.1f}]"
        )
    rm, rn = rows["runba bias_gelu_f32"]
    ok_copy, ok_np = rm <= 1.3 * cm, nm >= 15 * rm
    print(
        f"target runba <= 1.3x copy: {'met' if ok_copy else 'MISSED'} ({rm / cm:.2f}x); "
        f">= 15x numpy: {'met' if ok_np else 'MISSED'} ({nm / rm:.1f}x)"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {"threads": args.threads, "median_min_s": rows, "err": err_runba}, fh, indent=1
            )


if __name__ == "__main__":
    main()
