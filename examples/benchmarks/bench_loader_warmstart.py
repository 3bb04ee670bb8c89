"""Warm start of the kernel loader: compile 10 small kernels cold, then load them in a new process.

Run: ``python examples/benchmarks/bench_loader_warmstart.py [--kernels 10] [--json out.json]``

A cold child process compiles ``--kernels`` distinct elementwise kernels through
``runba.kernels.loader.load_kernel`` into a fresh cache dir; a second child process (same
``RUNBA_CACHE_DIR``) loads and runs them. Each child reports the seconds from "runba imported"
to "every kernel has run once" and ``cache_info().compiles``. Target (DESIGN §4 Caches): warm
<= 0.5 s with 0 compiles.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

CHILD = r"""
import json, sys, time
if sys.argv[3] == "1":
    sys.modules["scipy"] = None  # what a venv without scipy sees
import numpy as np
import numba
from runba.kernels import loader
t0 = time.perf_counter()
OPS = ["a[i] + b[i]", "a[i] * b[i]", "a[i] - b[i]", "a[i] * b[i] + a[i]", "a[i] * np.float32(0.5)",
       "max(a[i], b[i])", "min(a[i], b[i])", "abs(a[i] - b[i])", "a[i] * a[i] + b[i]",
       "(a[i] + b[i]) * np.float32(0.25)", "a[i] / (b[i] + np.float32(1))", "a[i] * b[i] * b[i]"]
n = int(sys.argv[1]); parallel_every = int(sys.argv[2])
x = np.linspace(0, 1, 1000, dtype=np.float32); o = np.empty_like(x)
t_first = None
for k in range(n):
    expr = OPS[k % len(OPS)] + (f" + np.float32({k // len(OPS)})" if k >= len(OPS) else "")
    par = parallel_every > 0 and k % parallel_every == 0
    loop = "prange" if par else "range"
    src = ("import numpy as np\nfrom numba import prange\n\n"
           f"def E_k{k}_f32(a, b, out):\n"
           f"    for i in {loop}(a.shape[0]):\n        out[i] = {expr}\n")
    fn = loader.load_kernel(src, f"E_k{k}_f32", parallel=par)
    fn(x, x, o)
    if t_first is None:
        t_first = time.perf_counter() - t0
dt = time.perf_counter() - t0
info = loader.cache_info()
print(json.dumps({"seconds": dt, "first_kernel_seconds": t_first, "compiles": info.compiles,
                  "disk_hits": info.disk_hits, "compile_seconds": info.compile_seconds}))
"""


def run_child(cache: str, n: int, parallel_every: int, hide_scipy: bool = False) -> dict:
    env = dict(os.environ, RUNBA_CACHE_DIR=cache)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(n), str(parallel_every), str(int(hide_scipy))],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernels", type=int, default=10)
    ap.add_argument(
        "--parallel-every",
        type=int,
        default=0,
        help="make every k-th kernel a prange kernel (0: all serial)",
    )
    ap.add_argument("--warm-runs", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    k, pe = args.kernels, args.parallel_every
    with tempfile.TemporaryDirectory(prefix="runba-warm-") as cache:
        cold = run_child(cache, k, pe)
        warm = [run_child(cache, k, pe) for _ in range(args.warm_runs)]
        warm_ns = [run_child(cache, k, pe, hide_scipy=True) for _ in range(args.warm_runs)]

    def med(runs, key):
        return float(sorted(r[key] for r in runs)[len(runs) // 2])

    rows = [
        ("cold", cold["seconds"], cold["first_kernel_seconds"], cold["compiles"]),
        (
            "warm",
            med(warm, "seconds"),
            med(warm, "first_kernel_seconds"),
            max(w["compiles"] for w in warm),
        ),
        (
            "warm, no scipy",
            med(warm_ns, "seconds"),
            med(warm_ns, "first_kernel_seconds"),
            max(w["compiles"] for w in warm_ns),
        ),
    ]
    print(
        f"# {k} kernels ({f'every {pe}-th parallel' if pe else 'serial'}), seconds after "
        f"import, python {platform.python_version()}, {platform.processor() or platform.machine()}"
    )
    print("# first kernel includes numba's one-time target init (the loader keeps numba's BLAS")
    print("# probe from importing scipy.linalg); 'no scipy' hides scipy. warm = median")
    print(f"{'process':<16} {'total s':>8} {'1st kernel s':>13} {'rest s':>7} {'compiles':>9}")
    for name, tot, first, c in rows:
        print(f"{name:<16} {tot:8.3f} {first:13.3f} {tot - first:7.3f} {c:9d}")
    ok = rows[1][1] <= 0.5 and rows[1][3] == 0
    print(f"target warm <= 0.5 s and 0 compiles: {'met' if ok else 'MISSED'}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {"cold": cold, "warm": warm, "warm_no_scipy": warm_ns, "kernels": k}, fh, indent=1
            )


if __name__ == "__main__":
    main()
