"""runba.kernels.threads: omp layer, BLAS thread control via ctypes (checked with threadpoolctl)."""

from __future__ import annotations

import os

import numba
import numpy as np
import pytest

from runba.kernels import threads

threadpoolctl = pytest.importorskip("threadpoolctl")


def _tpc_blas_threads():
    """Threads of numpy's BLAS as threadpoolctl sees them (the independent reference)."""
    # Only the libraries runba controls: a worker that imported torch or scipy also holds
    # their own BLAS copies, which runba leaves alone.
    ours = {lib["path"] for lib in threads.blas_library_info()}
    info = [
        i
        for i in threadpoolctl.threadpool_info()
        if i["user_api"] == "blas" and os.path.realpath(i["filepath"]) in ours
    ]
    assert info, "numpy has no BLAS that threadpoolctl can see"
    return {i["filepath"]: i["num_threads"] for i in info}


@pytest.fixture
def restore_threads():
    blas = threads.get_blas_num_threads()
    nb = numba.get_num_threads()
    yield
    if blas is not None:
        threads.set_blas_num_threads(blas)
    numba.set_num_threads(nb)


@pytest.mark.skipif(
    "NUMBA_THREADING_LAYER" in os.environ, reason="the user chose a threading layer"
)
def test_threading_layer_is_omp():
    assert threads.ensure_threading_layer() == "omp"
    assert numba.threading_layer() == "omp"


def test_finds_numpy_blas():
    libs = threads.blas_library_info()
    assert libs, "numpy's BLAS was not found"
    tpc = _tpc_blas_threads()
    assert {os.path.realpath(p) for p in tpc} & {lib["path"] for lib in libs}


def test_set_blas_threads_is_seen_by_threadpoolctl(restore_threads):
    prev = threads.set_blas_num_threads(1)
    assert prev is not None and prev >= 1
    assert set(_tpc_blas_threads().values()) == {1}
    assert threads.get_blas_num_threads() == 1
    # still computes
    a = np.ones((64, 64), np.float32)
    np.testing.assert_array_equal(a @ a, np.full((64, 64), 64, np.float32))


def test_blas_threads_context_restores(restore_threads):
    threads.set_blas_num_threads(2)
    with threads.blas_threads(1):
        assert set(_tpc_blas_threads().values()) == {1}
    assert threads.get_blas_num_threads() == 2


def test_blas_threads_context_restores_on_error(restore_threads):
    threads.set_blas_num_threads(2)
    with pytest.raises(RuntimeError), threads.blas_threads(1):
        raise RuntimeError("boom")
    assert threads.get_blas_num_threads() == 2


def test_set_num_threads_sets_both(restore_threads):
    threads.set_num_threads(1)
    assert threads.get_num_threads() == 1 == numba.get_num_threads()
    assert threads.get_blas_num_threads() == 1
    n = numba.config.NUMBA_NUM_THREADS
    threads.set_num_threads(n + 3)  # numba is capped, BLAS takes the number
    assert threads.get_num_threads() == n


@pytest.mark.parametrize("bad", [0, -1])
def test_rejects_nonpositive(bad):
    with pytest.raises(ValueError):
        threads.set_num_threads(bad)
    with pytest.raises(ValueError):
        threads.set_blas_num_threads(bad)


def test_after_blas_limits_numba_threads_and_restores(restore_threads):
    n = numba.config.NUMBA_NUM_THREADS
    threads.set_num_threads(n)
    expect = max(1, min(n, threads.cpu_count() - (threads.get_blas_num_threads() - 1)))
    assert threads.epilogue_num_threads() == expect
    with threads.after_blas():
        assert numba.get_num_threads() == expect
    assert numba.get_num_threads() == n
    with threads.blas_threads(1):  # a single-threaded BLAS leaves every core to numba
        assert threads.epilogue_num_threads() == min(n, threads.cpu_count())


def test_falls_back_with_a_warning_when_omp_is_missing():
    import subprocess
    import sys

    code = (
        "import sys, warnings\n"
        "sys.modules['numba.np.ufunc.omppool'] = None  # as if the OpenMP runtime were absent\n"
        "from runba.kernels import threads\n"
        "with warnings.catch_warnings(record=True) as rec:\n"
        "    warnings.simplefilter('always')\n"
        "    layer = threads.ensure_threading_layer()\n"
        "print(layer, sum('omp' in str(w.message) for w in rec))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0] in ("tbb", "workqueue") and out[1] == "1"
