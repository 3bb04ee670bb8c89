"""Per-op eager overhead: microseconds per op on 4x4 float32 tensors.

Run: ``python examples/benchmarks/bench_overhead.py [--repeats 7] [--json out.json]``

At 4x4 the arithmetic is free, so what is measured is the Python cost of one op: dispatch,
dtype inference, Tensor construction and, with ``requires_grad``, recording the graph node
(DESIGN §3: "Per-op Python cost is a budget"). Each row is timed for runba eager, plain numpy
(the floor: one ufunc call on the same arrays) and torch eager when torch is importable
(``pip install torch==2.13.0``, CPU build; never a runba dependency). "grad" rows time the
forward only, i.e. building the graph; the last row is a full forward+backward of
``(x*y).sum()`` with the leaves' ``.grad`` reset to None each step (torch's
``zero_grad(set_to_none=True)``).

Reported: the median over ``--repeats`` (>= 7) runs of a timeit loop sized to ~20 ms, the
libraries' runs interleaved so background load hits all columns alike, and the runba/torch
ratio (target: <= 2). Threads are pinned to one (OMP/OpenBLAS/MKL via the
environment before numpy loads, ``torch.set_num_threads(1)``): at 4x4 a thread pool only adds
noise. Ratios measured side by side in one run are what count; absolute times drift.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import timeit  # noqa: E402

import numpy as np  # noqa: E402

import runba  # noqa: E402

try:
    import torch  # noqa: E402
except ImportError:  # torch is optional: its columns are left out
    torch = None


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def calibrate(fn, target_s: float) -> int:
    """Loop count for which one timeit repeat of ``fn`` takes about ``target_s``."""
    timer = timeit.Timer(fn)
    number = 1
    while True:
        t = timer.timeit(number)
        if t >= target_s / 4 or number >= 1 << 22:
            break
        number *= 4
    return max(1, int(number * target_s / max(t, 1e-9)))


def time_us(fns: dict, repeats: int, target_s: float = 0.02) -> dict:
    """Median microseconds per call for each of ``fns`` (name -> callable).

    The libraries' repeats are interleaved (runba, numpy, torch, runba, ...) so that load from
    elsewhere on the machine hits every column alike and the ratios stay meaningful.
    """
    timers = {k: (timeit.Timer(f), calibrate(f, target_s)) for k, f in fns.items()}
    samples = {k: [] for k in fns}
    for _ in range(repeats):
        for k, (timer, number) in timers.items():
            samples[k].append(timer.timeit(number) / number)
    return {k: statistics.median(v) * 1e6 for k, v in samples.items()}


# (name, fn(lib, x, y) building one op); lib is the module (runba / torch / numpy)
OPS = [
    ("add", lambda x, y: x + y),
    ("mul", lambda x, y: x * y),
    ("relu", None),  # library-specific, below
    ("sum", lambda x, y: x.sum()),
    ("matmul", lambda x, y: x @ y),
    ("x[1]", lambda x, y: x[1]),
    ("x[:, 1:3]", lambda x, y: x[:, 1:3]),
]


def _relu_fn(lib):
    if lib == "numpy":
        return lambda x, y: np.maximum(x, 0)
    return lambda x, y: x.relu()


def make_inputs(lib, requires_grad):
    a = np.random.default_rng(0).standard_normal((4, 4), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((4, 4), dtype=np.float32)
    if lib == "numpy":
        return a, b
    if lib == "runba":
        x = runba.tensor(a, requires_grad=requires_grad)
        y = runba.tensor(b, requires_grad=requires_grad)
    else:
        x = torch.tensor(a, requires_grad=requires_grad)
        y = torch.tensor(b, requires_grad=requires_grad)
    return x, y


def op_callable(lib, fn, requires_grad):
    x, y = make_inputs(lib, requires_grad)
    if fn is None:
        fn = _relu_fn(lib)
    fn(x, y)  # warm up (and fail loudly before timing)
    return lambda: fn(x, y)


def fwd_bwd_callable(lib):
    x, y = make_inputs(lib, True)

    def step():
        x.grad = None
        y.grad = None
        (x * y).sum().backward()

    step()
    return step


def run(repeats: int):
    libs = ["runba", "numpy"] + (["torch"] if torch is not None else [])
    rows = []
    for requires_grad in (False, True):
        for name, fn in OPS:
            # numpy has no graph to build: its column is left empty on the grad rows
            fns = {
                lib: op_callable(lib, fn, requires_grad)
                for lib in libs
                if not (lib == "numpy" and requires_grad)
            }
            row = {"op": name, "requires_grad": requires_grad, "numpy": None}
            row.update(time_us(fns, repeats))
            rows.append(row)
    fns = {lib: fwd_bwd_callable(lib) for lib in libs if lib != "numpy"}
    row = {"op": "fwd+bwd (x*y).sum()", "requires_grad": True, "numpy": None}
    row.update(time_us(fns, repeats))
    rows.append(row)
    for row in rows:
        t = row.get("torch")
        row["ratio_runba_torch"] = row["runba"] / t if t else None
    return rows


def print_table(rows, have_torch):
    cols = ["op", "grad", "runba µs", "numpy µs"]
    if have_torch:
        cols += ["torch µs", "runba/torch"]
    widths = [22, 5, 9, 9, 9, 11]

    def line(cells):
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        )

    def f(v, fmt="{:.2f}"):
        return "-" if v is None else fmt.format(v)

    print(line(cols))
    print(line(["-" * w for w in widths[: len(cols)]]))
    for r in rows:
        cells = [r["op"], "yes" if r["requires_grad"] else "no", f(r["runba"]), f(r["numpy"])]
        if have_torch:
            cells += [f(r["torch"]), f(r["ratio_runba_torch"], "{:.2f}x")]
        print(line(cells))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=9, help="timeit repeats (median; >= 7)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = p.parse_args(argv)
    repeats = max(7, args.repeats)
    if torch is not None:
        torch.set_num_threads(1)

    info = {
        "cpu": cpu_name(),
        "python": platform.python_version(),
        "runba": getattr(runba, "__version__", "?"),
        "numpy": np.__version__,
        "torch": torch.__version__ if torch is not None else None,
        "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
        "shape": [4, 4],
        "dtype": "float32",
        "repeats": repeats,
        "statistic": "median",
    }
    print(
        f"CPU: {info['cpu']}\npython {info['python']}  runba {info['runba']}  "
        f"numpy {info['numpy']}  torch {info['torch'] or 'not installed'}  (1 thread)\n"
        f"microseconds per op on 4x4 float32, median of {repeats} timeit repeats\n"
    )
    rows = run(repeats)
    print_table(rows, torch is not None)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": info, "rows": rows}, f, indent=2)
        print(f"\nwrote {args.json}")
    return rows


if __name__ == "__main__":
    sys.exit(main() and 0)
