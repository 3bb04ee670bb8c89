"""Thread policy: a BLAS matmul followed by a parallel numba epilogue, repeatedly.

Run: ``python examples/benchmarks/bench_threads.py [--threads 2] [--rounds 40] [--json f]``

Each step is ``np.matmul(A, B, out=C)`` with A (512, 512) and B (512, 1024) float32, then the
reference ``bias_gelu_f32`` epilogue (a ``prange`` kernel, omp layer) over C. OpenBLAS's
workers spin for up to ~0.1 s after a call and numba's OpenMP workers spin after a region, so
back to back the two pools steal each other's cores. Policies (in-process ones interleaved in
rounds of 3 steps so machine noise hits them alike; medians over all steps):

* ``default`` (before): nothing set, BLAS and numba both on ``--threads`` threads;
* ``after_blas`` (after, runba's policy): the epilogue runs inside ``threads.after_blas()``,
  i.e. on ``cpus - (blas_threads - 1)`` numba threads (1 on a 2-core box);
* ``blas=1``: BLAS on one thread, numba parallel;
* ``OMP_WAIT_POLICY=PASSIVE`` (own process; must be set before OpenMP starts): numba's workers
  sleep right after a region. Measured to make every small ``prange`` region ~10 us slower
  (see calibrate_parallel_threshold.py), so it is reported, not used.
``alone`` times each half with both pools asleep (0.25 s apart, longer than OpenBLAS's spin):
their sum is the no-fight cost.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time

import numba
import numpy as np

from runba.kernels import threads
from runba.kernels.cpu.bias_gelu import bias_gelu_f32


def make_data():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((512, 512), dtype=np.float32)
    b = rng.standard_normal((512, 1024), dtype=np.float32)
    bias = rng.standard_normal(1024, dtype=np.float32)
    c = np.empty((512, 1024), np.float32)
    return a, b, bias, c, np.empty_like(c)


def step(data, policy: str):
    a, b, bias, c, out = data
    t0 = time.perf_counter()
    np.matmul(a, b, out=c)
    t1 = time.perf_counter()
    with threads.after_blas() if policy == "after_blas" else contextlib.nullcontext():
        bias_gelu_f32(c, bias, out)
    t2 = time.perf_counter()
    return t2 - t0, t1 - t0, t2 - t1


def measure(policies, rounds: int, n: int) -> dict:
    data = make_data()
    res = {p: [] for p in policies}
    for p in policies:
        for _ in range(3):
            step(data, p)
    for _ in range(rounds):
        for p in policies:
            threads.set_blas_num_threads(1 if p == "blas=1" else n)
            for _ in range(3):
                res[p].append(step(data, p))
    threads.set_blas_num_threads(n)
    rows = {}
    for p, ts in res.items():
        x = np.array(ts) * 1e3
        rows[p] = {
            "median_ms": float(np.median(x[:, 0])),
            "min_ms": float(x[:, 0].min()),
            "matmul_ms": float(np.median(x[:, 1])),
            "epilogue_ms": float(np.median(x[:, 2])),
        }
    return rows


def measure_alone(rounds: int) -> dict:
    a, b, bias, c, out = make_data()
    mm, ep = [], []
    for _ in range(rounds):
        time.sleep(0.25)
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        mm.append(time.perf_counter() - t0)
        time.sleep(0.25)
        t0 = time.perf_counter()
        bias_gelu_f32(c, bias, out)
        ep.append(time.perf_counter() - t0)
    return {"matmul_ms": float(np.median(mm)) * 1e3, "epilogue_ms": float(np.median(ep)) * 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    n = args.threads
    threads.set_num_threads(n)
    if args.child:
        print(json.dumps(measure(["default"], args.rounds, n)["default"]))
        return

    rows = measure(["default", "after_blas", "blas=1"], args.rounds, n)
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    cmd = [sys.executable, __file__, "--child", "--threads", str(n), "--rounds", str(args.rounds)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    rows["OMP_WAIT_POLICY=PASSIVE"] = json.loads(out.strip().splitlines()[-1])
    alone = measure_alone(min(args.rounds, 10))

    blas = threads.blas_library_info()
    print(
        f"# matmul (512x512 @ 512x1024 f32) + bias_gelu epilogue, {n} threads, "
        f"{threads.cpu_count()} cpus, layer {threads.ensure_threading_layer()}, "
        f"BLAS {blas[0]['api'] if blas else 'none'}, numba {numba.__version__}, "
        f"numpy {np.__version__}, {platform.processor() or platform.machine()}, "
        f"load avg {os.getloadavg()[0]:.2f}"
    )
    print(f"{'policy':<26} {'step med ms':>11} {'step min ms':>11} {'matmul':>8} {'epilogue':>9}")
    for name, r in rows.items():
        print(
            f"{name:<26} {r['median_ms']:11.3f} {r['min_ms']:11.3f} {r['matmul_ms']:8.3f} "
            f"{r['epilogue_ms']:9.3f}"
        )
    tot = alone["matmul_ms"] + alone["epilogue_ms"]
    print(
        f"{'alone (no fight)':<26} {tot:11.3f} {'':>11} {alone['matmul_ms']:8.3f} "
        f"{alone['epilogue_ms']:9.3f}"
    )
    before, after = rows["default"]["median_ms"], rows["after_blas"]["median_ms"]
    print(
        f"before (default) {before:.3f} ms -> after (after_blas) {after:.3f} ms: "
        f"{before / after:.2f}x"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"threads": n, "rows": rows, "alone": alone}, fh, indent=1)


if __name__ == "__main__":
    main()
