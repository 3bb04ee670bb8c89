"""runba.kernels.blas: GEMM in blocks on numba's pool, checked against float64 numpy."""

from __future__ import annotations

import threading

import numba
import numpy as np
import pytest

import runba
from runba.kernels import blas, threads

pytestmark = [
    pytest.mark.skipif(not blas.available(), reason="no cblas GEMM in numpy's BLAS here"),
    pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="one CPU: gemm declines"),
]


def _backends():
    """Every BLAS gemm() can use here; each test runs once per backend (RUNBA_GEMM)."""
    found = []
    if blas._find_mkl() is not None:  # the mkl wheel (pip install runba[mkl])
        found.append("mkl")
    if blas._find_openblas() is not None:
        found.append("openblas")
    return found or [""]


@pytest.fixture(autouse=True, params=_backends())
def backend(request, monkeypatch):
    monkeypatch.setenv("RUNBA_GEMM", request.param)
    assert blas.backend() == (request.param or None)
    return request.param


@pytest.fixture(autouse=True)
def two_threads():
    nb, nblas = numba.get_num_threads(), threads.get_blas_num_threads()
    numba.set_num_threads(2)
    yield
    numba.set_num_threads(nb)
    assert threads.get_blas_num_threads() == nblas  # every test leaves BLAS as it found it


def _layouts(rng, rows, cols, dtype):
    """The same kind of operand as C-order, F-order, a transposed view and a column slice
    of a wider array (leading dimension > cols)."""
    base = rng.standard_normal((rows, cols)).astype(dtype)
    wide = np.zeros((rows, cols + 5), dtype)
    wide[:, 2 : 2 + cols] = base
    return {
        "C": base,
        "F": np.asfortranarray(base),
        "T": np.ascontiguousarray(base.T).T,
        "sliced": wide[:, 2 : 2 + cols],
    }


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "m,k,n",
    [(20, 25, 57600 // 8), (128, 784, 512), (3000, 64, 8), (2, 40000, 9)],  # split N, M, M, N
)
def test_gemm_matches_float64_numpy_for_every_operand_layout(dtype, m, k, n):
    rng = np.random.default_rng(m + n)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    for la, a in _layouts(rng, m, k, dtype).items():
        for lb, b in _layouts(rng, k, n, dtype).items():
            out = np.full((m, n), np.nan, dtype)
            assert blas.gemm(a, b, out), (la, lb)
            ref = a.astype(np.float64) @ b.astype(np.float64)
            err = np.abs(out - ref).max() / np.abs(ref).max()
            assert err < tol, (la, lb, err)


def test_operands_blas_cannot_read_are_copied_first():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((64, 192)).astype(np.float32)[::-1, ::2]  # negative, 2-step strides
    b = np.broadcast_to(rng.standard_normal((1, 70)).astype(np.float32), (96, 70))  # stride 0
    out = np.empty((64, 70), np.float32)
    assert blas.gemm(a, b, out)
    np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    "case",
    ["small", "int", "mixed", "out not contiguous", "3-D", "one thread", "RUNBA_GEMM=numpy"],
)
def test_gemm_declines_and_writes_nothing(case, monkeypatch):
    a, b = np.ones((128, 256), np.float32), np.ones((256, 512), np.float32)
    out = np.full((128, 512), 7.0, np.float32)
    if case == "small":
        a, b, out = a[:8, :8], b[:8, :8], out[:8, :8].copy()
    elif case == "int":
        a, b, out = a.astype(np.int64), b.astype(np.int64), out.astype(np.int64)
    elif case == "mixed":
        b = b.astype(np.float64)
    elif case == "out not contiguous":
        out = np.full((512, 128), 7.0, np.float32).T
    elif case == "3-D":
        a = a[None]
    elif case == "one thread":
        numba.set_num_threads(1)
    else:
        monkeypatch.setenv("RUNBA_GEMM", "numpy")
        assert blas.backend() is None
    before = out.copy()
    assert not blas.gemm(a, b, out)
    np.testing.assert_array_equal(out, before)


def test_concurrent_calls_from_two_python_threads_are_correct_and_restore_blas_threads():
    rng = np.random.default_rng(2)
    pairs = [
        (rng.standard_normal((96, 300)).astype(np.float32), rng.standard_normal((300, 800)))
        for _ in range(2)
    ]
    pairs = [(a, b.astype(np.float32)) for a, b in pairs]
    results, errors = {}, []

    def work(i):
        try:
            a, b = pairs[i]
            numba.set_num_threads(2)  # numba's count is per thread
            for _ in range(20):
                out = np.empty((96, 800), np.float32)
                assert blas.gemm(a, b, out)
            results[i] = out
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors
    for i, (a, b) in enumerate(pairs):
        np.testing.assert_allclose(results[i], a.astype(np.float64) @ b, rtol=1e-4, atol=1e-3)


def test_runba_matmul_uses_it_and_leaves_no_blas_pool_spinning():
    """A 2-D runba matmul runs here (kernels after it keep every thread); one with
    broadcast batch dims still goes to np.matmul and is noted as possibly waking OpenBLAS's
    pool."""
    threads._pool_used_at[0] = -1e9
    x, w = runba.randn(128, 784), runba.randn(784, 512)
    y = x @ w
    np.testing.assert_allclose(
        y.numpy(), x.numpy().astype(np.float64) @ w.numpy(), rtol=1e-4, atol=1e-3
    )
    assert not threads.blas_pool_spinning()
    xb, wb = runba.randn(4, 128, 784), runba.randn(1, 784, 512)
    (xb @ wb).numpy()
    assert threads.blas_pool_spinning()
    with threads.if_blas_spinning():  # right after: the policy applies
        assert numba.get_num_threads() == threads.epilogue_num_threads()


@pytest.mark.parametrize("nb", [1, 3, 16])
def test_batched_gemm_with_per_item_and_shared_b(nb):
    """(B, M, K) @ (B, K, N) with transposed items (attention's q @ k^T), and @ (K, N)
    shared by every item; few items are split into blocks, many run one chunk each."""
    rng = np.random.default_rng(nb)
    q = rng.standard_normal((nb, 96, 64)).astype(np.float32)
    k = rng.standard_normal((nb, 120, 64)).astype(np.float32)
    w = rng.standard_normal((64, 200)).astype(np.float32)
    for a, b in ((q, k.transpose(0, 2, 1)), (q, w), (q[:, ::2], k.transpose(0, 2, 1))):
        out = np.full(a.shape[:1] + (a.shape[1], b.shape[-1]), np.nan, np.float32)
        assert blas.gemm(a, b, out)
        ref = np.matmul(a.astype(np.float64), b.astype(np.float64))
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_runba_batched_matmul_matches_numpy_with_4d_and_broadcast_batches():
    rng = np.random.default_rng(5)
    q = rng.standard_normal((2, 4, 64, 32)).astype(np.float32)
    k = rng.standard_normal((2, 4, 64, 32)).astype(np.float32)
    x, y = runba.tensor(q), runba.tensor(k)
    got = (x @ y.transpose(-1, -2)).numpy()
    np.testing.assert_allclose(got, q @ k.swapaxes(-1, -2), rtol=1e-4, atol=1e-4)
    got = (x @ runba.tensor(k[:1]).transpose(-1, -2)).numpy()  # broadcast batch: np.matmul
    np.testing.assert_allclose(got, q @ k[:1].swapaxes(-1, -2), rtol=1e-4, atol=1e-4)


def test_runba_gemm_selects_the_backend_and_declines_an_absent_one(monkeypatch):
    monkeypatch.setenv("RUNBA_GEMM", "mkl")
    has_mkl = blas._find_mkl() is not None
    assert blas.available() == has_mkl
    a, b = np.ones((128, 256), np.float32), np.ones((256, 512), np.float32)
    out = np.zeros((128, 512), np.float32)
    assert blas.gemm(a, b, out) == has_mkl
    assert float(out[5, 7]) == (256.0 if has_mkl else 0.0)


@numba.njit(parallel=True)
def _blocks_kernel(
    fn, iw, ta, tb, m, n, k, alpha, a, lda, a_row, b, ldb, b_col, c, c_row, c_col, nch, cols
):
    # what the JIT's GEMM-epilogue kernels do per chunk, without the epilogue
    pa, pb, pc = np.int64(a.ctypes.data), np.int64(b.ctypes.data), np.int64(c.ctypes.data)
    for ch in numba.prange(nch):
        if cols:
            lo = ch * n // nch
            hi = (ch + 1) * n // nch
            if hi > lo:
                blas.call_gemm(
                    fn, iw, ta, tb, m, hi - lo, k, alpha, pa, lda, pb + lo * b_col, ldb,
                    pc + lo * c_col, n,
                )  # fmt: skip
        else:
            lo = ch * m // nch
            hi = (ch + 1) * m // nch
            if hi > lo:
                blas.call_gemm(
                    fn, iw, ta, tb, hi - lo, n, k, alpha, pa + lo * a_row, lda, pb, ldb,
                    pc + lo * c_row, n,
                )  # fmt: skip


@pytest.mark.parametrize("cols", [False, True], ids=["row blocks", "column blocks"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocked_gemm_drives_call_gemm_on_blocks_of_rows_or_columns(dtype, cols):
    rng = np.random.default_rng(7)
    m, k, n = 96, 130, 70
    for la, a in _layouts(rng, m, k, dtype).items():
        for lb, b in _layouts(rng, k, n, dtype).items():
            out = np.full((m, n), np.nan, dtype)
            blocks = blas.blocked_gemm(a, b, out)
            assert blocks is not None, (la, lb)
            with blocks:
                _blocks_kernel(*blocks.args, 3, cols)
            ref = a.astype(np.float64) @ b.astype(np.float64)
            tol = 2e-5 if dtype == np.float32 else 1e-12
            assert np.abs(out - ref).max() / np.abs(ref).max() < tol, (la, lb)
    one_row = np.ones((1, 4096), dtype)
    assert (
        blas.blocked_gemm(one_row, np.ones((4096, 512), dtype), np.empty((1, 512), dtype)) is None
    )


def test_an_mkl_runtime_another_package_loaded_is_left_alone(monkeypatch):
    """numpy built on MKL (conda) has its runtime loaded already: runba must not switch its
    threading layer, so it does not use it."""
    calls = []
    monkeypatch.setattr(blas.glob, "glob", lambda pattern: ["/somewhere/lib/libmkl_rt.so.2"])
    monkeypatch.setattr(blas.threads, "_open_loaded", lambda path: calls.append(path) or object())
    assert blas._load_mkl() is None
    assert calls == ["/somewhere/lib/libmkl_rt.so.2"]
