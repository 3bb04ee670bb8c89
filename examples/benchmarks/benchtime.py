"""Timing shared by the benchmark scripts: variants timed side by side, in rounds.

Each variant runs ``per_round`` timed calls in a block, after two untimed calls, and the
blocks of all variants alternate for ``rounds`` rounds:

* blocks, not single interleaved calls: runba's (numba omp) and torch's OpenMP pools spin for
  a while after a parallel region, and the caches hold the previous variant's arrays, so the
  first call after a switch pays for the other library (measured here: a prange copy read
  1.35 ms interleaved and 0.60 ms in blocks; torch's Linear 3.1 ms and 0.37 ms);
* alternating rounds: drift on a shared machine hits every variant alike.
"""

from __future__ import annotations

import time

import numpy as np

__all__ = ["time_rounds", "median_min"]


def time_rounds(fns: dict, rounds: int = 4, per_round: int = 5) -> dict[str, list[float]]:
    """Seconds of every timed call of each variant in ``fns`` (name -> zero-arg callable).

    >>> sorted(time_rounds({"a": lambda: None}, rounds=2, per_round=3)) == ["a"]
    True
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            fn()
            fn()
            for _ in range(per_round):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return times


def median_min(times: dict[str, list[float]]) -> dict[str, tuple[float, float]]:
    """(median, min) seconds of each variant's calls."""
    return {name: (float(np.median(v)), float(np.min(v))) for name, v in times.items()}
