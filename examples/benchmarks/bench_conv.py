"""conv2d and max_pool2d forward / forward+backward at the seed-CNN shapes: runba vs torch.

Run: ``python examples/benchmarks/bench_conv.py [--threads 2] [--repeats 20] [--json f]``

Shapes (float32, batch 64, the classic MNIST CNN of issue 4):

* ``conv1``: input (64, 1, 28, 28), weight (20, 1, 5, 5) + bias; the input needs no grad;
* ``pool1``: max_pool2d 2 over (64, 20, 24, 24);
* ``conv2``: input (64, 20, 12, 12) (needs grad), weight (40, 20, 5, 5) + bias;
* ``pool2``: max_pool2d 2 over (64, 40, 8, 8).

Each row is the median of ``--repeats`` runs after a warm-up (which compiles or loads the
kernels). ``fwd+bwd`` runs the forward and ``backward`` with a fixed upstream gradient. torch
rows appear when torch is installed; the ratio column is runba / torch (< 1 is faster).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numba
import numpy as np

import runba
import runba.ops.conv as C
from runba.kernels import threads


def median_time(fn, repeats):
    fn()
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def cases(rng):
    f = np.float32
    x1 = rng.standard_normal((64, 1, 28, 28), dtype=f)
    w1 = rng.standard_normal((20, 1, 5, 5), dtype=f) * f(0.2)
    b1 = rng.standard_normal(20, dtype=f)
    p1 = rng.standard_normal((64, 20, 24, 24), dtype=f)
    x2 = rng.standard_normal((64, 20, 12, 12), dtype=f)
    w2 = rng.standard_normal((40, 20, 5, 5), dtype=f) * f(0.05)
    b2 = rng.standard_normal(40, dtype=f)
    p2 = rng.standard_normal((64, 40, 8, 8), dtype=f)
    return {
        "conv1 1->20 5x5 28x28": ("conv", x1, w1, b1, False),
        "maxpool2 20x24x24": ("pool", p1),
        "conv2 20->40 5x5 12x12": ("conv", x2, w2, b2, True),
        "maxpool2 40x8x8": ("pool", p2),
    }


def runba_fns(case):
    if case[0] == "conv":
        _, x, w, b, x_grad = case
        xt = runba.from_numpy(x).requires_grad_(x_grad)
        wt = runba.from_numpy(w).requires_grad_()
        bt = runba.from_numpy(b).requires_grad_()
        leaves = [t for t in (xt, wt, bt) if t.requires_grad]

        def fwd():
            with runba.no_grad():
                return C.conv2d(xt, wt, bt)

        def out():
            return C.conv2d(xt, wt, bt)
    else:
        xt = runba.from_numpy(case[1]).requires_grad_()
        leaves = [xt]

        def fwd():
            with runba.no_grad():
                return C.max_pool2d(xt, 2)

        def out():
            return C.max_pool2d(xt, 2)

    g = runba.from_numpy(np.ones(tuple(fwd().shape), np.float32))

    def fwd_bwd():
        for t in leaves:
            t.grad = None
        out().backward(g)

    return fwd, fwd_bwd


def torch_fns(case, torch):
    F = torch.nn.functional
    if case[0] == "conv":
        _, x, w, b, x_grad = case
        xt = torch.from_numpy(x).requires_grad_(x_grad)
        wt = torch.from_numpy(w).requires_grad_()
        bt = torch.from_numpy(b).requires_grad_()
        leaves = [t for t in (xt, wt, bt) if t.requires_grad]

        def out():
            return F.conv2d(xt, wt, bt)
    else:
        xt = torch.from_numpy(case[1]).requires_grad_()
        leaves = [xt]

        def out():
            return F.max_pool2d(xt, 2)

    def fwd():
        with torch.no_grad():
            return out()

    g = torch.ones(fwd().shape)

    def fwd_bwd():
        for t in leaves:
            t.grad = None
        out().backward(g)

    return fwd, fwd_bwd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    threads.set_num_threads(args.threads)
    try:
        threads.set_blas_num_threads(args.threads)
    except Exception:  # no controllable BLAS: leave its default
        pass
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None

    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    all_cases = cases(rng)
    for case in all_cases.values():  # first calls: compile or load the kernels
        runba_fns(case)[1]()
    first = time.perf_counter() - t0

    results = {}
    for name, case in all_cases.items():
        rf, rfb = runba_fns(case)
        row = {"runba fwd": median_time(rf, args.repeats)}
        row["runba fwd+bwd"] = median_time(rfb, args.repeats)
        if torch is not None:
            tf, tfb = torch_fns(case, torch)
            row["torch fwd"] = median_time(tf, args.repeats)
            row["torch fwd+bwd"] = median_time(tfb, args.repeats)
        results[name] = row

    print(
        f"# conv/pool float32, batch 64, {args.threads} threads "
        f"({threads.ensure_threading_layer()}), numba {numba.__version__}, numpy {np.__version__}"
        f"{', torch ' + torch.__version__ if torch is not None else ''}, "
        f"{platform.processor() or platform.machine()}"
    )
    print(f"# first calls (compile or disk-cache load of the kernels): {first:.2f} s")
    hdr = f"{'case':<24} {'runba fwd':>10} {'torch fwd':>10} {'ratio':>6}"
    hdr += f" {'runba f+b':>10} {'torch f+b':>10} {'ratio':>6}"
    print(hdr + "   (ms, medians)")
    tot = {"runba fwd+bwd": 0.0, "torch fwd+bwd": 0.0}
    for name, row in results.items():
        tf, tfb = row.get("torch fwd", float("nan")), row.get("torch fwd+bwd", float("nan"))
        for k in tot:
            tot[k] += row.get(k, float("nan"))
        print(
            f"{name:<24} {row['runba fwd'] * 1e3:10.3f} {tf * 1e3:10.3f} "
            f"{row['runba fwd'] / tf:6.2f} {row['runba fwd+bwd'] * 1e3:10.3f} {tfb * 1e3:10.3f} "
            f"{row['runba fwd+bwd'] / tfb:6.2f}"
        )
    print(
        f"{'total fwd+bwd':<24} {'':>10} {'':>10} {'':>6} {tot['runba fwd+bwd'] * 1e3:10.3f} "
        f"{tot['torch fwd+bwd'] * 1e3:10.3f} {tot['runba fwd+bwd'] / tot['torch fwd+bwd']:6.2f}"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {"threads": args.threads, "median_s": results, "first_s": first}, fh, indent=1
            )


if __name__ == "__main__":
    main()
