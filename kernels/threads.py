"""Threading policy: numba's OpenMP layer and run-time control of the BLAS thread pool.

* numba's threading layer is ``omp`` (``workqueue`` aborts when two Python threads launch
  parallel kernels at once). Importing this module selects it if numba's threads have not
  started and ``NUMBA_THREADING_LAYER`` is not set; :func:`ensure_threading_layer` starts them
  and falls back to ``tbb`` then ``workqueue`` (with a warning) when ``omp`` cannot load.
* OpenBLAS (numpy 2 wheels bundle ``scipy-openblas64``) is controlled through ``ctypes`` on the
  library numpy already loaded, so runba needs no ``threadpoolctl`` at run time.

Fork safety: GNU OpenMP is not fork-safe. ``os.fork()`` (``multiprocessing``'s default
``fork`` start method on Linux) in a process that has already run a parallel kernel makes the
child abort ("fork() called from a process already using GNU OpenMP") or hang. Worker processes
must use ``spawn`` or ``forkserver``::

    import multiprocessing as mp
    ctx = mp.get_context("forkserver")  # or "spawn"
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import sys
import threading
import time
import warnings

import numba
from numba.np.ufunc import parallel as _numba_parallel

__all__ = [
    "after_blas",
    "blas_library_info",
    "blas_threads",
    "cpu_count",
    "ensure_threading_layer",
    "epilogue_num_threads",
    "get_blas_num_threads",
    "get_num_threads",
    "blas_pool_spinning",
    "if_blas_spinning",
    "note_blas_pool_use",
    "set_blas_num_threads",
    "set_num_threads",
]

_lock = threading.Lock()
_LAYERS = ("omp", "tbb", "workqueue")


# --------------------------------------------------------------------------- numba layer
def _layer_started() -> str | None:
    try:
        return numba.threading_layer()
    except ValueError:  # "Threading layer is not initialized."
        return None


def _select_omp() -> None:
    # Only a default: an explicit NUMBA_THREADING_LAYER from the user wins.
    if "NUMBA_THREADING_LAYER" not in os.environ and _layer_started() is None:
        numba.config.THREADING_LAYER = "omp"


_select_omp()


def ensure_threading_layer() -> str:
    """Start numba's thread pool (omp preferred) if needed and return the layer's name.

    The loader calls it before any kernel is compiled or loaded from disk, so a missing OpenMP
    runtime degrades to tbb/workqueue with a ``RuntimeWarning`` instead of failing at the
    first call (and cached code never runs in a process whose pool has not started).

    >>> ensure_threading_layer()  # doctest: +SKIP
    'omp'
    """
    layer = _layer_started()
    if layer is not None:
        return layer
    with _lock:
        layer = _layer_started()
        if layer is not None:
            return layer
        if "NUMBA_THREADING_LAYER" in os.environ:
            numba.get_num_threads()  # launches with the user's choice; errors are theirs
            return numba.threading_layer()
        errors = []
        for name in _LAYERS:
            numba.config.THREADING_LAYER = name
            try:
                numba.get_num_threads()  # launches the pool
            except (ValueError, ImportError, OSError) as exc:
                errors.append(f"{name}: {str(exc).splitlines()[0]}")
                continue
            if name != "omp":
                why = "; ".join(errors)
                msg = f"numba's 'omp' threading layer is unavailable ({why}); using {name!r}"
                if name == "workqueue":
                    msg += " - parallel kernels must not be called from two threads at once"
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
            return numba.threading_layer()
        raise RuntimeError("no numba threading layer could be loaded: " + "; ".join(errors))


# --------------------------------------------------------------------------- BLAS
class _BlasLib:
    __slots__ = ("path", "api", "_set", "_get")

    def __init__(self, path, api, set_fn, get_fn):
        self.path, self.api, self._set, self._get = path, api, set_fn, get_fn

    def get(self) -> int:
        return int(self._get())

    def set(self, n: int) -> None:
        self._set(int(n))


# (setter, getter) pairs, most specific first. scipy-openblas prefixes every symbol and the
# 64-bit-integer build adds a ``64_`` suffix; MKL's runtime uses its own names.
_SYMBOLS = (
    ("openblas", "scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("openblas", "scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
    ("openblas", "openblas_set_num_threads64_", "openblas_get_num_threads64_"),
    ("openblas", "openblas_set_num_threads", "openblas_get_num_threads"),
    ("mkl", "MKL_Set_Num_Threads", "MKL_Get_Max_Threads"),
)

_blas_libs: list[_BlasLib] | None = None


def _loaded_library_paths() -> list[str]:
    """Shared libraries mapped into this process (Linux: /proc/self/maps; macOS: dyld)."""
    paths: list[str] = []
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/self/maps") as fh:
                for line in fh:
                    parts = line.split(None, 5)
                    if len(parts) == 6 and parts[5].startswith("/"):
                        p = parts[5].strip()
                        if p not in paths:
                            paths.append(p)
        except OSError:
            pass
    elif sys.platform == "darwin":
        try:
            libc = ctypes.CDLL(None)
            libc._dyld_get_image_name.restype = ctypes.c_char_p
            for i in range(libc._dyld_image_count()):
                paths.append(libc._dyld_get_image_name(i).decode())
        except (OSError, AttributeError):
            pass
    return paths


def _numpy_bundled_paths() -> list[str]:
    """BLAS libraries shipped inside the numpy wheel (numpy.libs / .dylibs)."""
    import numpy

    here = os.path.dirname(numpy.__file__)
    pats = [os.path.join(here, "..", "numpy.libs", "*"), os.path.join(here, ".dylibs", "*")]
    return [os.path.realpath(p) for pat in pats for p in sorted(glob.glob(pat))]


def _open_loaded(path: str):
    # RTLD_NOLOAD: only take a handle on a library that is already mapped; never load a
    # second BLAS that nothing uses.
    mode = getattr(os, "RTLD_NOLOAD", 0) | getattr(os, "RTLD_LAZY", 1)
    if sys.platform == "win32":
        mode = 0
    try:
        return ctypes.CDLL(path, mode=mode)
    except OSError:
        return None


def _find_blas() -> list[_BlasLib]:
    global _blas_libs
    if _blas_libs is not None:
        return _blas_libs
    import numpy  # noqa: F401  (loads numpy's BLAS)

    found: list[_BlasLib] = []
    seen: set[str] = set()
    for path in _numpy_bundled_paths() + _loaded_library_paths():
        base = os.path.basename(path).lower()
        if "blas" not in base and "mkl_rt" not in base:
            continue
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        lib = _open_loaded(real)
        if lib is None:
            continue
        for api, set_name, get_name in _SYMBOLS:
            set_fn = getattr(lib, set_name, None)
            get_fn = getattr(lib, get_name, None)
            if set_fn is None or get_fn is None:
                continue
            set_fn.argtypes, set_fn.restype = [ctypes.c_int], None
            get_fn.argtypes, get_fn.restype = [], ctypes.c_int
            found.append(_BlasLib(real, api, set_fn, get_fn))
            break
    _blas_libs = found
    return found


def blas_library_info() -> list[dict]:
    """The BLAS libraries runba controls: ``[{"path", "api", "num_threads"}]`` (maybe empty).

    >>> blas_library_info()  # doctest: +SKIP
    [{'path': '.../libscipy_openblas64_-32a4b2a6.so', 'api': 'openblas', 'num_threads': 2}]
    """
    return [{"path": b.path, "api": b.api, "num_threads": b.get()} for b in _find_blas()]


def get_blas_num_threads() -> int | None:
    """Threads of numpy's BLAS, or ``None`` when no controllable BLAS was found.

    >>> get_blas_num_threads()  # doctest: +SKIP
    2
    """
    libs = _find_blas()
    return libs[0].get() if libs else None


def set_blas_num_threads(n: int) -> int | None:
    """Set every controllable BLAS pool to ``n`` threads; return the previous count (or None).

    >>> prev = set_blas_num_threads(1)  # doctest: +SKIP
    """
    if n < 1:
        raise ValueError(f"number of threads must be >= 1, got {n}")
    libs = _find_blas()
    prev = libs[0].get() if libs else None
    for lib in libs:
        lib.set(n)
    return prev


@contextlib.contextmanager
def blas_threads(n: int):
    """Run the block with BLAS limited to ``n`` threads, then restore the previous count.

    >>> import numpy as np
    >>> with blas_threads(1):
    ...     c = np.ones((64, 64), np.float32) @ np.ones((64, 64), np.float32)
    """
    prev = set_blas_num_threads(n)
    try:
        yield
    finally:
        if prev is not None:
            set_blas_num_threads(prev)


# --------------------------------------------------------------------------- policy
def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def epilogue_num_threads() -> int:
    """numba threads for a parallel kernel launched right after a multi-threaded BLAS call.

    OpenBLAS workers keep spinning for up to ~0.1 s after a call returns (its
    ``THREAD_TIMEOUT``, read when numpy loads the library), so only the cores they leave free
    are useful: ``cpus - (blas_threads - 1)`` (the calling thread is not spinning - it runs
    the epilogue), at least 1, at most numba's current count. ``bench_threads.py`` measured
    this against the default (both pools on every core): see docs/kernels.md.

    >>> epilogue_num_threads()  # doctest: +SKIP
    1
    """
    ensure_threading_layer()
    blas = get_blas_num_threads() or 1
    return max(1, min(numba.get_num_threads(), cpu_count() - (blas - 1)))


# When runba last ran numpy's multi-threaded BLAS (np.matmul on a product big enough to
# thread), and how long OpenBLAS workers keep spinning after a call (its THREAD_TIMEOUT).
BLAS_SPIN_SECONDS = 0.1
_pool_used_at = [-1e9]


def note_blas_pool_use() -> None:
    """Record that numpy's BLAS just ran a call that may have woken its thread pool."""
    _pool_used_at[0] = time.perf_counter()


def blas_pool_spinning() -> bool:
    """Whether a call noted by :func:`note_blas_pool_use` was less than
    ``BLAS_SPIN_SECONDS`` ago (its workers may still spin). runba's own GEMM
    (``kernels.blas``) runs in numba's pool and never wakes them."""
    return time.perf_counter() - _pool_used_at[0] < BLAS_SPIN_SECONDS


@contextlib.contextmanager
def if_blas_spinning():
    """:func:`after_blas` when :func:`blas_pool_spinning`, else nothing: the kernels after a
    GEMM keep every thread unless numpy's BLAS pool ran one recently."""
    if blas_pool_spinning():
        with after_blas():
            yield
    else:
        yield


@contextlib.contextmanager
def after_blas():
    """Run the block's numba kernels on :func:`epilogue_num_threads` threads (this thread only).

    The JIT wraps the epilogue kernel of a GEMM in it::

        np.matmul(a, b, out=c)
        with after_blas():
            epilogue(c, bias, out)
    """
    n = epilogue_num_threads()
    prev = numba.get_num_threads()
    if n == prev:
        yield
        return
    numba.set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(prev)


# --------------------------------------------------------------------------- both
def set_num_threads(n: int) -> None:
    """Use ``n`` threads for numba parallel kernels and for BLAS.

    numba's count is per calling thread and capped at ``numba.config.NUMBA_NUM_THREADS``;
    the BLAS count is process-wide.

    >>> set_num_threads(2)  # doctest: +SKIP
    >>> get_num_threads()  # doctest: +SKIP
    2
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"number of threads must be >= 1, got {n}")
    ensure_threading_layer()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    set_blas_num_threads(n)


def pool_num_threads() -> int:
    """``numba.get_num_threads()`` for hot paths: once numba's pool is up, read the count
    directly. numba's own function takes a multiprocessing lock and a thread lock on every
    call to check that the pool is launched (~1.5 µs, several times that right after a
    kernel has evicted the caches); the check is only needed until the pool exists.

    >>> pool_num_threads() >= 1
    True
    """
    if _numba_parallel._is_initialized:
        n = _numba_parallel._get_num_threads()
        if n > 0:
            return n
    return numba.get_num_threads()  # launches the pool (or raises numba's error)


def get_num_threads() -> int:
    """Threads numba parallel kernels use from this thread.

    >>> get_num_threads()  # doctest: +SKIP
    2
    """
    ensure_threading_layer()
    return numba.get_num_threads()
