"""runba.kernels.loader: disk cache, flags in the key, robustness, concurrent processes.

Compile time dominates (~0.2 s serial, ~0.6 s parallel per kernel), so the whole module uses
two kernel sources and copies one compiled cache directory instead of recompiling it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import stat
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numba
import numpy as np
import pytest

from runba.kernels import loader
from runba.kernels.loader import KernelCacheWarning

# prange + get_thread_id: a parallel build writes thread ids > 0, a serial build only 0s,
# which shows which build actually ran.
TID_SRC = textwrap.dedent(
    """
    import numpy as np
    from numba import get_thread_id, prange


    def K_tid_f32(a, out, tid):
        for i in prange(a.shape[0]):
            out[i] = a[i] * np.float32(2) + np.float32(1)
            tid[i] = get_thread_id()
    """
)
SCALE_SRC = textwrap.dedent(
    """
    import numpy as np

    from runba.kernels.loader import kernel


    @kernel
    def E_scale_add_f32(a, out):
        for i in range(a.shape[0]):
            out[i] = a[i] * np.float32(3) - np.float32(1)
    """
)

CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    import numpy as np
    import numba
    from runba.kernels import loader

    src, go = sys.argv[1], sys.argv[2]
    if go:  # rendezvous so both processes compile at the same moment
        open(go + "." + str(os.getpid()), "w").close()
        while not os.path.exists(go):
            time.sleep(0.005)
    a = np.arange(1000, dtype=np.float32)
    res = {}
    for parallel in (False, True) if not go else (False,):
        k = loader.load_kernel(src, "K_tid_f32", parallel=parallel)
        out = np.empty_like(a); tid = np.zeros(a.shape, np.int64)
        k(a, out, tid)
        res[str(parallel)] = {
            "ok": bool(np.array_equal(out, a * 2 + 1)),
            "max_tid": int(tid.max()),
            "targetoption": bool(k.targetoptions.get("parallel")),
            "file": os.path.basename(k.py_func.__code__.co_filename),
        }
    info = loader.cache_info()
    res["compiles"], res["disk_hits"] = info.compiles, info.disk_hits
    print(json.dumps(res))
    """
)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh cache root via RUNBA_CACHE_DIR, with the in-memory cache and counters reset."""
    root = tmp_path / "cache"
    monkeypatch.setenv("RUNBA_CACHE_DIR", str(root))
    loader.set_cache_dir(None)
    loader.clear_cache(disk=False)
    # re-hash kernels/*.py now: child processes hash them too, and other work may have edited
    # them since this process first did (the key would differ and the test would compile)
    loader._env_hash = None
    yield root
    loader.clear_cache(disk=False)


def _run_scale():
    k = loader.load_kernel(SCALE_SRC, "E_scale_add_f32")
    a = np.linspace(-2, 2, 257, dtype=np.float32)
    out = np.empty_like(a)
    k(a, out)
    np.testing.assert_array_equal(out, a * np.float32(3) - np.float32(1))
    return k


def _cache_warnings(rec):
    return [w for w in rec if issubclass(w.category, KernelCacheWarning)]


def _child(cache_root, src, go="", wait=True):
    env = dict(os.environ, RUNBA_CACHE_DIR=str(cache_root))
    p = subprocess.Popen(
        [sys.executable, "-c", CHILD, src, go],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if not wait:
        return p
    return _result(p)


def _result(p):
    out, err = p.communicate(timeout=240)
    assert p.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


# --------------------------------------------------------------------------- basics
def test_memory_hit_returns_same_dispatcher(cache):
    k1 = _run_scale()
    k2 = loader.load_kernel(SCALE_SRC, "E_scale_add_f32")
    assert k1 is k2
    info = loader.cache_info()
    assert (info.memory_hits, info.compiles, info.misses) == (1, 1, 1)
    assert info.compile_seconds > 0
    assert info.hits == 1


def test_layout_and_permissions(cache):
    k = _run_scale()
    vdir = cache / loader.CODEGEN_VERSION
    path = Path(k.py_func.__code__.co_filename)
    assert path.parent == vdir and path.name.startswith("fk_") and path.suffix == ".py"
    assert path == loader.kernel_path(SCALE_SRC, "E_scale_add_f32")
    assert path.read_text().endswith(SCALE_SRC)
    assert list(vdir.glob(path.stem + ".*.nbi")) and list(vdir.glob(path.stem + ".*.nbc"))
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert stat.S_IMODE(vdir.stat().st_mode) == 0o700
    assert not list(vdir.glob(".tmp*")), "temp files must not be left behind"


def test_flags_change_the_file_name(cache):
    base = loader.kernel_path(SCALE_SRC, "E_scale_add_f32")
    others = {
        loader.kernel_path(SCALE_SRC, "E_scale_add_f32", parallel=True),
        loader.kernel_path(SCALE_SRC, "E_scale_add_f32", flags={"fastmath": False}),
        loader.kernel_path(SCALE_SRC, "E_scale_add_f32", flags={"boundscheck": True}),
        loader.kernel_path(SCALE_SRC + "\n", "E_scale_add_f32"),
    }
    assert base not in others and len(others) == 4


def test_missing_function_raises_and_leaves_no_module(cache):
    before = set(sys.modules)
    with pytest.raises(ValueError, match="does not define 'nope'"):
        loader.load_kernel(SCALE_SRC, "nope")
    assert set(sys.modules) == before


def test_clear_cache_removes_disk_and_counters(cache):
    _run_scale()
    assert (cache / loader.CODEGEN_VERSION).is_dir()
    loader.clear_cache()
    assert not (cache / loader.CODEGEN_VERSION).exists()
    assert loader.cache_info() == loader.CacheInfo()


def test_set_cache_dir_overrides_env(cache, tmp_path):
    other = tmp_path / "other"
    loader.set_cache_dir(other)
    try:
        assert loader.cache_dir() == other
    finally:
        loader.set_cache_dir(None)
    assert loader.cache_dir() == cache


# --------------------------------------------------------------------------- across processes
def test_cold_then_warm_process_and_parallel_flag_in_key(cache):
    cold = _child(cache, TID_SRC)
    warm = _child(cache, TID_SRC)
    assert cold["compiles"] == 2 and cold["disk_hits"] == 0
    assert warm["compiles"] == 0 and warm["disk_hits"] == 2
    for res in (cold, warm):
        ser, par = res["False"], res["True"]
        assert ser["ok"] and par["ok"]
        assert ser["file"] != par["file"]
        assert not ser["targetoption"] and par["targetoption"]
        # the serial request never ran a parallel build, and the parallel one really is one
        assert ser["max_tid"] == 0
        if numba.config.NUMBA_NUM_THREADS > 1:
            assert par["max_tid"] >= 1
    # and in this process, a serial request after the parallel entries exist is still serial
    k = loader.load_kernel(TID_SRC, "K_tid_f32")
    a = np.ones(1000, np.float32)
    out, tid = np.empty_like(a), np.zeros(1000, np.int64)
    k(a, out, tid)
    assert tid.max() == 0 and loader.cache_info().compiles == 0


def test_two_processes_compile_the_same_kernel_at_once(cache, tmp_path):
    go = str(tmp_path / "go")
    procs = [_child(cache, TID_SRC, go=go, wait=False) for _ in range(2)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("go.*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    Path(go).touch()
    results = [_result(p) for p in procs]
    for res in results:
        assert res["False"]["ok"]
    assert sum(r["compiles"] for r in results) >= 1
    # what they left behind is a valid cache
    with warnings.catch_warnings():
        warnings.simplefilter("error", KernelCacheWarning)
        k = loader.load_kernel(TID_SRC, "K_tid_f32")
        a = np.ones(10, np.float32)
        out, tid = np.empty_like(a), np.zeros(10, np.int64)
        k(a, out, tid)
    np.testing.assert_array_equal(out, 3)
    assert loader.cache_info().compiles == 0


# --------------------------------------------------------------------------- corruption
@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    """A cache directory holding the compiled SCALE kernel (compiled once for the module)."""
    root = tmp_path_factory.mktemp("golden")
    loader.set_cache_dir(root)
    try:
        loader.clear_cache(disk=False)
        _run_scale()
        loader.clear_cache(disk=False)
    finally:
        loader.set_cache_dir(None)
    return root


def _corrupt(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(random.Random(f"{path.suffix}{how}").randbytes(max(64, len(data))))


@pytest.mark.parametrize("how", ["empty", "truncated", "random"])
@pytest.mark.parametrize("suffix", [".py", ".nbi", ".nbc"])
def test_corrupt_file_is_a_miss_plus_one_warning(cache, golden, suffix, how):
    shutil.copytree(golden, cache)
    vdir = cache / loader.CODEGEN_VERSION
    (target,) = list(vdir.glob(f"fk_*{suffix}"))
    _corrupt(target, how)

    with pytest.warns(KernelCacheWarning) as rec:
        _run_scale()
    assert len(_cache_warnings(rec)) == 1, [str(w.message) for w in rec]
    # a damaged source file is repaired and the machine code still loads; a damaged numba
    # file is dropped and the kernel recompiled
    assert loader.cache_info().compiles == (0 if suffix == ".py" else 1)

    # the entry healed: the next fresh load is a clean disk hit
    loader.clear_cache(disk=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", KernelCacheWarning)
        _run_scale()
    info = loader.cache_info()
    assert (info.compiles, info.disk_hits) == (0, 1)


def test_foreign_data_file_is_rejected(cache, golden):
    # a perfectly valid .nbc of another kernel must not be run in place of this one
    shutil.copytree(golden, cache)
    vdir = cache / loader.CODEGEN_VERSION
    src5 = SCALE_SRC.replace("float32(3)", "float32(5)")
    a = np.ones(4, np.float32)
    out = np.empty_like(a)
    k = loader.load_kernel(src5, "E_scale_add_f32")
    k(a, out)  # compile + save ours
    ours = Path(k.py_func.__code__.co_filename).stem
    (theirs,) = [p for p in vdir.glob("fk_*.nbc") if not p.name.startswith(ours)]
    (mine,) = vdir.glob(f"{ours}.*.nbc")
    shutil.copyfile(theirs, mine)
    loader.clear_cache(disk=False)
    _run_scale()  # the other kernel's module is live, so its code would rebuild fine
    k = loader.load_kernel(src5, "E_scale_add_f32")
    with pytest.warns(KernelCacheWarning, match="belongs to") as rec:
        k(a, out)
    assert len(_cache_warnings(rec)) == 1
    np.testing.assert_array_equal(out, 4)


def test_data_file_of_another_signature_is_rejected(cache):
    """Two signatures of one kernel (a C-contiguous and a strided input) have two data files;
    numba writes index and data apart, so an index entry can point at the other one. Code
    built for a contiguous array run on a strided one read the wrong elements, silently."""
    a = np.linspace(-2, 2, 32, dtype=np.float32)
    strided = np.linspace(-2, 2, 64, dtype=np.float32)[::2]
    k = loader.load_kernel(SCALE_SRC, "E_scale_add_f32")
    k(a, np.empty_like(a))
    k(strided, np.empty_like(strided))  # a second signature: 'A' layout
    vdir = cache / loader.CODEGEN_VERSION
    one, two = sorted(vdir.glob("fk_*.1.nbc")), sorted(vdir.glob("fk_*.2.nbc"))
    assert len(one) == len(two) == 1
    swap = one[0].with_suffix(".swap")
    one[0].rename(swap)
    two[0].rename(one[0])
    swap.rename(two[0])
    loader.clear_cache(disk=False)
    k = loader.load_kernel(SCALE_SRC, "E_scale_add_f32")
    out = np.empty_like(strided)
    with pytest.warns(KernelCacheWarning, match="compiled for") as rec:
        k(strided, out)
    assert len(_cache_warnings(rec)) == 1
    np.testing.assert_allclose(out, strided * np.float32(3) - np.float32(1), rtol=1e-6)


# --------------------------------------------------------------------------- unusable dirs
def _assert_in_memory_compile(rec):
    assert len(_cache_warnings(rec)) == 1, [str(w.message) for w in rec]
    assert loader.cache_info().compiles == 1


def test_cache_path_is_a_file(cache):
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text("not a directory")
    with pytest.warns(KernelCacheWarning, match="unusable") as rec:
        _run_scale()
    _assert_in_memory_compile(rec)
    assert cache.read_text() == "not a directory"


def test_cache_parent_is_a_file(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("RUNBA_CACHE_DIR", str(blocker / "sub"))
    loader.clear_cache(disk=False)
    try:
        with pytest.warns(KernelCacheWarning, match="unusable") as rec:
            _run_scale()
        _assert_in_memory_compile(rec)
    finally:
        loader.clear_cache(disk=False)


def test_source_publish_permission_error(cache, monkeypatch):
    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(loader.os, "replace", deny)
    with pytest.warns(KernelCacheWarning, match="could not write") as rec:
        _run_scale()
    _assert_in_memory_compile(rec)


def test_numba_save_permission_error(cache, monkeypatch):
    from numba.core import caching

    def deny(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(caching.IndexDataCacheFile, "_save_index", deny)
    with pytest.warns(KernelCacheWarning, match="could not write the numba cache") as rec:
        _run_scale()
    _assert_in_memory_compile(rec)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores permissions"
)
def test_read_only_dir(cache):
    cache.mkdir(mode=0o500)
    try:
        with pytest.warns(KernelCacheWarning) as rec:
            _run_scale()
        _assert_in_memory_compile(rec)
    finally:
        cache.chmod(0o700)


# --------------------------------------------------------------------------- prange bodies
# A row softmax shaped like the JIT's row kernels: the max reduction, exp and sum, in a
# prange over row chunks. Compiled in one process and loaded from the cache in another, its
# prange body used to be two different builds (numba links a re-optimized copy into the
# cached object) whose sums rounded 1 ulp apart.
SOFTMAX_SRC = textwrap.dedent(
    """
    import numpy as np
    from numba import prange
    from runba.kernels.mathlib import exp_f32, nan_maximum, prefer_wide_vectors


    def R_softmax_f32(a, b, out, chunks):
        prefer_wide_vectors()
        rows = a.shape[0]
        n = a.shape[1]
        for c in prange(chunks):
            prefer_wide_vectors()
            w = np.empty(n, np.float32)
            for r in range(c * rows // chunks, (c + 1) * rows // chunks):
                m = np.float32(-np.inf)
                for j in range(n):
                    v = a[r, j] + b[j]
                    w[j] = v
                    m = nan_maximum(m, v)
                s = np.float32(0)
                for j in range(n):
                    e = exp_f32(w[j] - m)
                    w[j] = e
                    s = s + e
                for j in range(n):
                    out[r, j] = w[j] / s
    """
)
SOFTMAX_CHILD = textwrap.dedent(
    """
    import hashlib, json, sys
    sys.path.insert(0, sys.argv[2])
    from test_loader import SOFTMAX_SRC, _run_softmax
    from runba.kernels import loader

    out = _run_softmax()
    info = loader.cache_info()
    print(json.dumps({"digest": hashlib.sha1(out.tobytes()).hexdigest(),
                      "compiles": info.compiles, "disk_hits": info.disk_hits}))
    """
)


def _run_softmax():
    k = loader.load_kernel(SOFTMAX_SRC, "R_softmax_f32", parallel=True)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((512, 1024), dtype=np.float32)
    b = rng.standard_normal(1024, dtype=np.float32)
    out = np.empty_like(a)
    k(a, b, out, 2)
    z = np.exp((a + b).astype(np.float64) - (a + b).max(axis=1, keepdims=True))
    np.testing.assert_allclose(out, z / z.sum(axis=1, keepdims=True), rtol=2e-6, atol=1e-9)
    return out


def test_compiling_and_loading_processes_compute_the_same_bits(cache):
    def child():
        env = dict(os.environ, RUNBA_CACHE_DIR=str(cache))
        r = subprocess.run(
            [sys.executable, "-c", SOFTMAX_CHILD, "", str(Path(__file__).parent)],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout.strip().splitlines()[-1])

    cold, warm = child(), child()
    assert (cold["compiles"], warm["compiles"], warm["disk_hits"]) == (1, 0, 1)
    assert cold["digest"] == warm["digest"]


def test_prange_body_already_here_is_reused_and_a_clash_recompiles(cache):
    import hashlib

    before = set(loader._parfor_bodies)
    ref = _run_softmax()
    assert loader.cache_info().compiles == 1
    bodies = set(loader._parfor_bodies) - before  # this kernel's prange body symbols
    assert bodies
    # the same entry loaded again in this process: its bodies are here already
    loader.clear_cache(disk=False)
    np.testing.assert_array_equal(_run_softmax(), ref)
    assert (loader.cache_info().compiles, loader.cache_info().disk_hits) == (0, 1)
    # a cached body whose symbol names other code in this process is not run: recompiled
    saved = dict(loader._parfor_bodies)
    try:
        for s in bodies:
            loader._parfor_bodies[s] = hashlib.sha1(b"other code").hexdigest()
        loader.clear_cache(disk=False)
        with warnings.catch_warnings():
            warnings.simplefilter("error", KernelCacheWarning)
            np.testing.assert_array_equal(_run_softmax(), ref)
        assert (loader.cache_info().compiles, loader.cache_info().disk_hits) == (1, 0)
    finally:
        loader._parfor_bodies.update(saved)


# --------------------------------------------------------------------------- hand-written kernels
def _hand_written(a, out):
    for i in range(a.shape[0]):
        out[i] = a[i] + np.float32(0.5)


def test_njit_cached_lands_in_runba_cache_and_reloads(cache):
    a = np.arange(5, dtype=np.float32)
    out = np.empty_like(a)
    k = loader.njit_cached(_hand_written)
    k(a, out)
    np.testing.assert_array_equal(out, a + 0.5)
    where = loader.numba_cache_dir(__file__)
    assert where.is_relative_to(cache / loader.CODEGEN_VERSION / "numba")
    assert list(where.glob("test_loader._hand_written-*.nbi"))
    assert loader.cache_info().compiles == 1

    k2 = loader.njit_cached(_hand_written)  # a fresh dispatcher, as in a new process
    k2(a, out)
    info = loader.cache_info()
    assert (info.compiles, info.disk_hits) == (1, 1)

    # other flags, other files (numba's own key would not tell them apart)
    assert loader.njit_cached(parallel=True)(_hand_written)._cache._tag != k._cache._tag
    assert k.targetoptions["error_model"] == "numpy" and k.targetoptions["nogil"]


def test_reference_bias_gelu_both_size_branches(cache):
    from runba.kernels.cpu.bias_gelu import bias_gelu

    rng = np.random.default_rng(0)
    for rows in (3, 2 * loader.PARALLEL_THRESHOLD // 64):  # serial branch, prange branch
        x = rng.standard_normal((rows, 64), dtype=np.float32) * 4
        b = rng.standard_normal(64, dtype=np.float32)
        h = x.astype(np.float64) + b
        ref = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h * h * h)))
        np.testing.assert_allclose(bias_gelu(x, b), ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError):
        bias_gelu(x.astype(np.float64), b)


def test_integer_power_kernels_link(tmp_path):
    """``x ** n`` with an integer n lowers to compiler-rt's __powisf2/__powidf2, which llvmlite
    does not link: without the loader providing them, numba aborts the whole process. In a
    subprocess, so a regression fails this test instead of killing the test worker."""
    code = textwrap.dedent(
        """
        import runba

        i32 = runba.tensor([1, 2, 3], dtype=runba.int32)
        f = runba.tensor([1.0, 2.0, 3.0])
        print(*runba.fuse(lambda x: x ** 2)(i32).tolist())
        print(*runba.fuse(lambda x, n: 1.5 ** n + x ** n.float())(f, i32.long()).tolist())
        """
    )
    env = dict(os.environ, RUNBA_CACHE_DIR=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["1", "4", "9", "2.5", "6.25", "30.375"], r.stdout


def test_first_kernel_does_not_import_scipy_linalg_but_numba_blas_still_works(tmp_path):
    """numba's BLAS probe at target init imports scipy.linalg (0.25 s per process); the loader
    skips that import, and a user kernel calling ``np.dot`` still gets the real BLAS."""
    pytest.importorskip("scipy")
    code = textwrap.dedent(
        """
        import sys
        import numba
        import numpy as np
        import runba

        y = runba.fuse(lambda x: (x * 2).exp())(runba.ones(4)).numpy()
        assert np.allclose(y, np.exp(2.0)), y
        print("scipy.linalg" in sys.modules)

        @numba.njit
        def dot(a, b):
            return np.dot(a, b)

        print(dot(np.arange(3.0), np.arange(3.0)), "scipy.linalg" in sys.modules)
        """
    )
    env = dict(os.environ, RUNBA_CACHE_DIR=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["False", "5.0", "True"], r.stdout
