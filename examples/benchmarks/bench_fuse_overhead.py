"""Per-call overhead of ``runba.fuse``: the Python cost around the kernels.

Run: ``python examples/benchmarks/bench_fuse_overhead.py [--repeats 2000] [--json f]``

A fused call records one lazy node per op, then realizes the graph: plan lookup, buffers,
kernel launch, hand-back. On tiny tensors the kernels cost next to nothing, so what is timed
here is that Python work. Rows (microseconds, medians of ``--repeats`` calls):

* ``chain``: the 25-op elementwise chain of bench_fusion.py on 16 float32 values, split into
  recording (the call) and realization (``.numpy()``), beside the same code run eagerly;
* ``linear``: ``relu(Linear(784, 512)(x))`` at batch 4, no grad: recording and
  realization, the GEMM-epilogue kernel's own time (timed inside the runtime) taken out.

Ratios measured in one run are what count; absolute times drift on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_fusion import chain25, kernel_timer  # noqa: E402

import runba  # noqa: E402
import runba.nn.functional as F  # noqa: E402
from runba import nn  # noqa: E402


def split(fn, x, repeats, spent):
    """Median microseconds of recording (``fn(x)``), realization (``.numpy()``) less the
    kernel launches inside it, and the launches."""
    rec, real, kern = [], [], []
    with runba.no_grad():
        for _ in range(20):
            fn(x).numpy()
        for _ in range(repeats):
            spent.clear()
            t0 = time.perf_counter()
            y = fn(x)
            t1 = time.perf_counter()
            y.numpy()
            t2 = time.perf_counter()
            rec.append(t1 - t0)
            real.append(t2 - t1 - sum(spent))
            kern.append(sum(spent))
    return [float(np.median(v)) * 1e6 for v in (rec, real, kern)]


def eager_us(fn, x, repeats):
    with runba.no_grad():
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn(x).numpy()
            ts.append(time.perf_counter() - t)
    return float(np.median(ts)) * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2000)
    ap.add_argument("--json", help="write the results to this file")
    args = ap.parse_args()
    spent, _ = kernel_timer()
    results = {}

    x = runba.randn(16)
    rec, real, kern = split(runba.fuse(chain25), x, args.repeats, spent)
    results["chain"] = {
        "record": rec,
        "record per op": rec / 25,
        "realize": real,
        "kernel launch": kern,
        "eager": eager_us(chain25, x, args.repeats),
    }

    lin = nn.Linear(784, 512)
    xl = runba.randn(4, 784)
    rec, real, kern = split(runba.fuse(lambda v: F.relu(lin(v))), xl, args.repeats, spent)
    results["linear"] = {
        "record": rec,
        "realize": real,
        "kernel launch": kern,
        "eager": eager_us(lambda v: F.relu(lin(v)), xl, args.repeats),
    }

    print(f"# runba.fuse per-call overhead, median of {args.repeats} calls (µs)")
    for case, row in results.items():
        print(f"\n{case}")
        for k, v in row.items():
            print(f"  {k:16s} {v:8.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
