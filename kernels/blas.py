"""GEMM on numba's thread pool: numpy's own BLAS, single-threaded, on blocks in a ``prange``.

OpenBLAS runs its own pthread pool, and its workers keep spinning for ~0.1 s after every
call. Parallel numba kernels launched in that window fight them for the cores (3x slower on
the seed CNN), so every kernel after a GEMM had to run on one thread (``threads.after_blas``).
Here the GEMM itself runs in numba's pool instead: ``C = A @ B`` is cut into column blocks
(row blocks when C is taller than wide), and each ``prange`` chunk calls ``cblas_?gemm`` on its
block with BLAS set to one thread, so no BLAS worker ever wakes. Measured on the 2-core Xeon
(ms, numpy's own 2-thread call in brackets): 20x25 @ 25x57600 0.41 (0.55-0.82),
40x500 @ 500x6400 1.43-1.52 (1.48-1.60), 128x784 @ 784x512 0.46 (0.45-0.48),
100x2560 @ 2560x100 0.31 (0.35-0.43).

Two BLAS libraries can serve the blocks. Intel MKL, where the ``mkl`` wheel is installed
(``pip install runba[mkl]``): its runtime is loaded from the environment's ``lib`` folder and
switched to its sequential layer, so it has no thread pool at all; it is 1.4x faster than
OpenBLAS at ``128x784 @ 784x512`` on the Xeon, and it is what PyTorch's CPU build uses.
Otherwise numpy's own OpenBLAS, set to one thread while a GEMM runs. ``RUNBA_GEMM`` picks
one (``mkl``, ``openblas``) or turns both off (``numpy``).

The ``cblas_?gemm`` address is a run-time argument called through :func:`_call_gemm`, not a
constant baked into the machine code, so the kernel is disk-cached like any other; the BLAS
integer width (MKL's LP64 interface takes int32, scipy-openblas64 int64) is the type of an
argument, so each width is its own specialisation. Where no BLAS is found (numpy built
against Accelerate, say), :func:`gemm` returns False and callers use ``np.matmul``.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
import threading

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic

from runba.kernels import env, threads
from runba.kernels.loader import njit_cached, writable_alias

__all__ = [
    "MIN_WORK",
    "BlockedGemm",
    "available",
    "backend",
    "blocked_gemm",
    "call_gemm",
    "gemm",
]

#: ``M * N * K`` below which :func:`gemm` declines: a single BLAS call is cheaper than a
#: parallel region, and OpenBLAS keeps such small products on the calling thread anyway.
MIN_WORK = 1 << 18

_NO_TRANS, _TRANS = 111, 112  # CBLAS_TRANSPOSE
_ROW_MAJOR = 101

# cblas symbol names, most specific first: scipy-openblas prefixes every symbol, and its
# 64-bit-integer build adds a ``64_`` suffix (then the integer arguments are int64).
_GEMM_NAMES = {
    np.dtype(np.float32): (
        "scipy_cblas_sgemm64_",
        "scipy_cblas_sgemm",
        "cblas_sgemm64_",
        "cblas_sgemm",
    ),
    np.dtype(np.float64): (
        "scipy_cblas_dgemm64_",
        "scipy_cblas_dgemm",
        "cblas_dgemm64_",
        "cblas_dgemm",
    ),
}


_ONE = {dt: dt.type(1) for dt in _GEMM_NAMES}  # alpha = 1 in each dtype


class _Gemm:
    """A BLAS found: its name, ``addr[dtype]`` of cblas_?gemm, a zero of its integer type
    (passed to the kernel, which types the call by it) and its thread control, if any."""

    def __init__(self, name, lib, addr, int_bits):
        self.name = name  # "mkl" or "openblas"
        self.lib = lib  # threads._BlasLib (get()/set() of its pool size), or None: no pool
        self.addr = addr
        self.int_zero = np.int64(0) if int_bits == 64 else np.int32(0)


_found: dict = {}
_lock = threading.Lock()
_active = [0, None]  # calls in progress, BLAS thread count to restore when the last ends

_MKL_SEQUENTIAL = 1  # MKL_THREADING_SEQUENTIAL


def _find_openblas():
    for lib in threads._find_blas():
        if lib.api != "openblas":
            continue
        handle = threads._open_loaded(lib.path)
        if handle is None:
            continue
        addr, bits = {}, set()
        for dt, names in _GEMM_NAMES.items():
            for name in names:
                fn = getattr(handle, name, None)
                if fn is not None:
                    addr[dt] = ctypes.cast(fn, ctypes.c_void_p).value
                    bits.add(64 if name.endswith("64_") else 32)
                    break
        if len(addr) == len(_GEMM_NAMES) and len(bits) == 1:
            return _Gemm("openblas", lib, addr, bits.pop())
    return None


_mkl: list = []  # the one answer of _find_mkl, once looked for


def _find_mkl():
    """MKL's runtime from the ``mkl`` wheel, on its sequential layer (LP64: int32), or None.

    Looked for once per process. A runtime some other package has already loaded (numpy
    built against MKL, say) is left alone: switching its layer would make that package's
    own calls single-threaded.
    """
    if not _mkl:
        _mkl.append(_load_mkl())
    return _mkl[0]


def _load_mkl():
    for path in sorted(glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.so*"))):
        if threads._open_loaded(path) is not None:
            continue  # someone else's MKL
        try:
            lib = ctypes.CDLL(path)
            set_layer = lib.MKL_Set_Threading_Layer
            addr = {
                np.dtype(np.float32): ctypes.cast(lib.cblas_sgemm, ctypes.c_void_p).value,
                np.dtype(np.float64): ctypes.cast(lib.cblas_dgemm, ctypes.c_void_p).value,
            }
        except (OSError, AttributeError):
            continue
        set_layer.argtypes, set_layer.restype = [ctypes.c_int], ctypes.c_int
        if set_layer(_MKL_SEQUENTIAL) == _MKL_SEQUENTIAL:
            return _Gemm("mkl", None, addr, 32)
    return None


def _choice() -> str:
    return env.get("RUNBA_GEMM", "").strip().lower()


def _find():
    """The BLAS :func:`gemm` uses now (``RUNBA_GEMM``: MKL first, then OpenBLAS), or None."""
    choice = _choice()
    if choice == "numpy":
        return None
    if choice not in _found:
        if choice == "mkl":
            _found[choice] = _find_mkl()
        elif choice == "openblas":
            _found[choice] = _find_openblas()
        else:
            _found[choice] = _find_mkl() or _find_openblas()
    return _found[choice]


def available() -> bool:
    """Whether :func:`gemm` can run (a cblas GEMM was found and ``RUNBA_GEMM`` allows it)."""
    return _find() is not None


def backend() -> str | None:
    """Name of the BLAS :func:`gemm` calls (``"mkl"``, ``"openblas"``), or None.

    >>> backend() in ("mkl", "openblas", None)
    True
    """
    g = _find()
    return g.name if g is not None else None


@intrinsic
def _call_gemm(typingctx, fn, iw, ta, tb, m, n, k, alpha, a, lda, b, ldb, c, ldc):
    """``cblas_?gemm(RowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, 0, c, ldc)`` through
    the function address ``fn``; addresses and sizes are int64 (truncated to the BLAS integer
    when ``iw``, a zero of that type, is int32), alpha float32/float64."""
    ints = (fn, ta, tb, m, n, k, a, lda, b, ldb, c, ldc)
    if any(t != types.int64 for t in ints) or alpha not in (types.float32, types.float64):
        return None
    if iw not in (types.int32, types.int64):
        return None
    width = iw.bitwidth

    def codegen(context, builder, sig, args):
        fn, _, ta, tb, m, n, k, alpha, a, lda, b, ldb, c, ldc = args
        i32, blasint, ptr = ir.IntType(32), ir.IntType(width), ir.IntType(8).as_pointer()
        ft = alpha.type
        fnty = ir.FunctionType(
            ir.VoidType(),
            [
                i32,
                i32,
                i32,
                blasint,
                blasint,
                blasint,
                ft,
                ptr,
                blasint,
                ptr,
                blasint,
                ft,
                ptr,
                blasint,
            ],
        )

        def i(v):
            return v if width == 64 else builder.trunc(v, blasint)

        def p(v):
            return builder.inttoptr(v, ptr)

        builder.call(
            builder.inttoptr(fn, fnty.as_pointer()),
            [
                ir.Constant(i32, _ROW_MAJOR),
                builder.trunc(ta, i32),
                builder.trunc(tb, i32),
                i(m),
                i(n),
                i(k),
                alpha,
                p(a),
                i(lda),
                p(b),
                i(ldb),
                ir.Constant(ft, 0.0),
                p(c),
                i(ldc),
            ],
        )
        return context.get_dummy_value()

    return types.void(fn, iw, *ints[1:6], alpha, *ints[6:]), codegen


@njit_cached(parallel=True)
def _gemm_blocks(
    fn,
    iw,
    m,
    n,
    k,
    alpha,
    a,
    lda,
    ta,
    b,
    ldb,
    tb,
    c,
    ldc,
    itemsize,
    split_n,
    nch,
    nb,
    abs_,
    bbs,
    cbs,
):
    """For each of ``nb`` batch items (byte strides abs_, bbs, cbs; bbs = 0: one B for all),
    C (m x n, row-major, leading dim ldc) = A @ B in ``nch`` blocks of C's columns
    (``split_n``) or rows; one ``prange`` chunk per (item, block). a, b, c are addresses."""
    for t in prange(nb * nch):
        bi, ch = t // nch, t % nch
        a0, b0, c0 = a + bi * abs_, b + bi * bbs, c + bi * cbs
        if split_n:
            lo, hi = ch * n // nch, (ch + 1) * n // nch
            if hi > lo:
                bo = lo * (ldb if tb == _TRANS else 1) * itemsize
                _call_gemm(
                    fn,
                    iw,
                    ta,
                    tb,
                    m,
                    hi - lo,
                    k,
                    alpha,
                    a0,
                    lda,
                    b0 + bo,
                    ldb,
                    c0 + lo * itemsize,
                    ldc,
                )
        else:
            lo, hi = ch * m // nch, (ch + 1) * m // nch
            if hi > lo:
                ao = lo * (1 if ta == _TRANS else lda) * itemsize
                co = lo * ldc * itemsize
                _call_gemm(
                    fn, iw, ta, tb, hi - lo, n, k, alpha, a0 + ao, lda, b0, ldb, c0 + co, ldc
                )


def _operand(x: np.ndarray):
    """(leading dimension, transpose flag) of a 2-D operand BLAS can read in place, or None
    (negative, zero or non-unit strides in both axes: the caller copies it)."""
    s = x.itemsize
    r, c = x.shape
    s0, s1 = x.strides
    if (s1 == s or c == 1) and s0 % s == 0:
        ld = s0 // s if r > 1 else max(c, 1)
        if ld >= max(c, 1):
            return ld, _NO_TRANS
    if (s0 == s or r == 1) and s1 % s == 0:
        ld = s1 // s if c > 1 else max(r, 1)
        if ld >= max(r, 1):
            return ld, _TRANS
    return None


def _enter(g: _Gemm) -> None:
    # BLAS at one thread for as long as any gemm() runs (two Python threads may overlap)
    if g.lib is None:
        return
    with _lock:
        if _active[0] == 0:
            _active[1] = g.lib.get()
            if _active[1] != 1:
                g.lib.set(1)
        _active[0] += 1


def _leave(g: _Gemm) -> None:
    if g.lib is None:
        return
    with _lock:
        _active[0] -= 1
        if _active[0] == 0 and _active[1] not in (None, 1):
            g.lib.set(_active[1])


#: The intrinsic itself, for generated kernels that compute a block of C's rows or columns by
#: GEMM and then their epilogue in the same ``prange`` chunk (jit/codegen.py):
#: ``call_gemm(fn, iw, ta, tb, m, n, k, alpha, a, lda, b, ldb, c, ldc)``, addresses as int64.
call_gemm = _call_gemm


class BlockedGemm:
    """A 2-D ``out = a @ b`` prepared for a kernel whose ``prange`` chunks each compute a
    block of ``out``'s rows, or of its columns, by :data:`call_gemm`. ``args`` are, in order,
    ``fn, iw, ta, tb, m, n, k, alpha, a, lda, a_row, b, ldb, b_col, c, c_row, c_col``: BLAS's
    arguments for the whole product (C's leading dimension is n; ``a``, ``b``, ``c`` are the
    arrays, whose address the kernel takes: ``np.int64(a.ctypes.data)``, ~1 µs cheaper each
    than numpy's ``ctypes.data`` in Python), plus the bytes from one row of A to the next
    (``a_row``), one column of B (``b_col``), one row and one column of C. Rows [lo, hi)
    read A from ``address(a) + lo * a_row``; columns [lo, hi) read B from
    ``address(b) + lo * b_col``. Use it inside ``with blocks:``, which holds BLAS at one thread
    meanwhile; it keeps any operand copy alive."""

    __slots__ = ("args", "_gemm", "_keep")

    def __init__(self, args, g, keep):
        self.args = args
        self._gemm = g
        self._keep = keep

    def __enter__(self):
        _enter(self._gemm)
        return self

    def __exit__(self, *exc):
        _leave(self._gemm)
        return False


def _prepared(x):
    """``x`` (2-D, or a batch of 2-D items with one layout), copied when BLAS cannot read it
    in place, and the ``_operand`` of it (of its first item): (leading dimension, transpose)."""
    op = _operand(x if x.ndim == 2 else x[0])
    if op is None:
        x = np.ascontiguousarray(x)
        op = _operand(x if x.ndim == 2 else x[0])
    return x, op


def blocked_gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> BlockedGemm | None:
    """:class:`BlockedGemm` for ``out = a @ b`` (2-D float32/float64, one dtype, ``out``
    C-contiguous, at least 2 rows), or None (no BLAS found, other dtypes or shapes). It does
    not decline small products: the caller picks the number of blocks (one below
    :data:`MIN_WORK` or with one thread), so one kernel serves every size.

    >>> a, b = np.ones((64, 64), np.float32), np.ones((64, 4096), np.float32)
    >>> blocks = blocked_gemm(a, b, np.empty((64, 4096), np.float32))
    >>> blocks is None or len(blocks.args) == 17
    True
    """
    dt = a.dtype
    if dt not in _GEMM_NAMES or b.dtype != dt or out.dtype != dt:
        return None
    if a.ndim != 2 or b.ndim != 2 or not out.flags.c_contiguous:
        return None
    m, k = a.shape
    n = b.shape[1]
    if b.shape[0] != k or out.shape != (m, n) or m < 2:
        return None
    g = _find()
    if g is None:
        return None
    a, (lda, ta) = _prepared(a)
    b, (ldb, tb) = _prepared(b)
    size = dt.itemsize
    a_row = (1 if ta == _TRANS else lda) * size
    b_col = (ldb if tb == _TRANS else 1) * size
    # a read-only operand goes in as a writable alias (the kernel only reads it): one kernel
    # signature for both; ``keep`` holds the arrays themselves
    pa, pb = writable_alias(a), writable_alias(b)
    args = (g.addr[dt], g.int_zero, ta, tb, m, n, k, _ONE[dt], pa, lda, a_row, pb, ldb, b_col)
    return BlockedGemm(args + (out, n * size, size), g, (a, b))


def gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> bool:
    """``out[...] = a @ b`` for float32 or float64 operands of one dtype: ``a`` (M, K) or a
    batch (B, M, K), ``b`` (K, N) or (B, K, N), ``out`` C-contiguous (M, N) or (B, M, N).
    Returns False (nothing written) when it does not apply: no BLAS found, other dtypes or
    shapes, ``B * M * N * K < MIN_WORK``, one numba thread.

    >>> a, b = np.ones((64, 64), np.float32), np.ones((64, 4096), np.float32)
    >>> out = np.empty((64, 4096), np.float32)
    >>> gemm(a, b, out) in (True, False) and (not gemm(a, b, out) or float(out[0, 0]) == 64.0)
    True
    """
    dt = a.dtype
    if dt not in _GEMM_NAMES or b.dtype != dt or out.dtype != dt:
        return False
    if a.ndim == 2 and b.ndim == 2:
        nb = 1
    elif a.ndim == 3 and b.ndim in (2, 3) and (b.ndim == 2 or b.shape[0] == a.shape[0]):
        nb = a.shape[0]
    else:
        return False
    m, k = a.shape[-2:]
    n = b.shape[-1]
    want = (m, n) if a.ndim == 2 else (nb, m, n)
    if b.shape[-2] != k or out.shape != want or not out.flags.c_contiguous:
        return False
    nthreads = threads.pool_num_threads()
    if nb * m * n * k < MIN_WORK or nthreads < 2:
        return False
    g = _find()
    if g is None:
        return False
    a, opa = _prepared(a)
    b, opb = _prepared(b)
    split_n = n >= m
    # many batch items: one chunk each; a few: split each one too
    nch = min(-(-nthreads // nb), n if split_n else m)
    abs_ = a.strides[0] if a.ndim == 3 else 0
    bbs = b.strides[0] if b.ndim == 3 else 0
    cbs = out.strides[0] if out.ndim == 3 else 0
    _enter(g)
    try:
        _gemm_blocks(
            g.addr[dt],
            g.int_zero,
            m,
            n,
            k,
            dt.type(1),
            a.ctypes.data,
            opa[0],
            opa[1],
            b.ctypes.data,
            opb[0],
            opb[1],
            out.ctypes.data,
            n,
            dt.itemsize,
            split_n,
            nch,
            nb,
            abs_,
            bbs,
            cbs,
        )
    finally:
        _leave(g)
    return True
