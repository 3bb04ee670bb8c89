"""Calibrate ``runba.kernels.loader.PARALLEL_THRESHOLD``: serial loop vs ``prange`` by size.

Run: ``python examples/benchmarks/calibrate_parallel_threshold.py [--threads 2] [--repeats 200]``

For two float32 elementwise kernels (``a + b`` and ``a * b + a``) compiled through the loader
with ``parallel=True`` (omp layer), times the serial ``range`` loop against the ``prange`` loop
at sizes 1K..4M - both inside a parallel build, as in the size-branch pattern - plus a plain
serial build for reference, and prints the per-size ratio and the crossover: the smallest
size from which ``prange`` wins (geometric mean over the kernels) at every larger size.
The variants are timed interleaved (round robin) so a noisy neighbour hurts all equally; the
minimum of ``--repeats`` estimates the undisturbed cost, the median is printed next to it.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings

import numba
import numpy as np

from runba.kernels import loader, threads

SRC = {
    "add": ("a, b, out", "a[i] + b[i]"),
    "mul_add": ("a, b, out", "a[i] * b[i] + a[i]"),
}


def build(kind: str, loop: str, parallel: bool):
    args, expr = SRC[kind]
    name = f"E_{kind}_f32"
    src = (
        "import numpy as np\nfrom numba import prange\n\n"
        f"def {name}({args}):\n    for i in {loop}(out.shape[0]):\n        out[i] = {expr}\n"
    )
    return loader.load_kernel(src, name, parallel=parallel)


def time_round_robin(fns, args, repeats):
    for f in fns:
        f(*args)
    ts = np.zeros((len(fns), repeats))
    for r in range(repeats):
        for k, f in enumerate(fns):
            t0 = time.perf_counter()
            f(*args)
            ts[k, r] = time.perf_counter() - t0
    return ts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    threads.set_num_threads(args.threads)
    # the "range inside a parallel build" variant has nothing to parallelise, on purpose
    warnings.simplefilter("ignore", numba.NumbaPerformanceWarning)

    sizes = [1 << k for k in range(10, 23)]  # 1K .. 4M
    result = {}
    print(
        f"# serial vs prange, {args.threads} threads ({threads.ensure_threading_layer()}), "
        f"numba {numba.__version__}, {platform.processor() or platform.machine()}"
    )
    for kind in SRC:
        fns = [build(kind, "range", False), build(kind, "range", True), build(kind, "prange", True)]
        print(
            f"\n{kind:<8} {'n':>8} {'serial build':>13} {'range in par':>13} {'prange us':>10}"
            f" {'range/prange':>13} {'(median)':>9}"
        )
        rows = []
        for n in sizes:
            rng = np.random.default_rng(n)
            a, b = rng.random(n, np.float32), rng.random(n, np.float32)
            out = np.empty_like(a)
            reps = max(10, min(args.repeats, int(args.repeats * 65536 / n) + 10))
            ts = time_round_robin(fns, (a, b, out), reps)
            mn, md = ts.min(axis=1), np.median(ts, axis=1)
            r_min, r_med = mn[1] / mn[2], md[1] / md[2]
            rows.append(
                {
                    "n": n,
                    "serial_s": mn[0],
                    "range_par_s": mn[1],
                    "prange_s": mn[2],
                    "ratio_min": r_min,
                    "ratio_median": r_med,
                }
            )
            print(
                f"{'':<8} {n:8d} {mn[0] * 1e6:11.1f}us {mn[1] * 1e6:11.1f}us {mn[2] * 1e6:8.1f}us"
                f" {r_min:13.2f} {r_med:9.2f}"
            )
        result[kind] = rows
    geo = [
        float(np.exp(np.mean([np.log(result[k][i]["ratio_min"]) for k in SRC])))
        for i in range(len(sizes))
    ]
    cross = next((sizes[i] for i in range(len(sizes)) if all(g > 1.0 for g in geo[i:])), None)
    print("\ngeomean range/prange: " + ", ".join(f"{n}:{g:.2f}" for n, g in zip(sizes, geo)))
    print(
        f"crossover (prange wins from here on): {cross}; "
        f"loader.PARALLEL_THRESHOLD = {loader.PARALLEL_THRESHOLD}"
    )
    result = {"per_kernel": result, "geomean": geo, "crossover": cross}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"threads": args.threads, **result}, fh, indent=1)


if __name__ == "__main__":
    main()
