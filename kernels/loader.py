"""Kernel loader: source text -> compiled, disk-cached numba dispatcher.

Two ways in:

* :func:`load_kernel` takes generated kernel *source* (plain Python with explicit loops) and the
  name of the function to compile. The source is written once to a content-addressed file
  ``<cache>/<CODEGEN_VERSION>/fk_<sha256>.py`` and compiled with the project flags
  (:data:`DEFAULT_FLAGS`); numba's machine code is cached next to it.
* :func:`njit_cached` is the decorator for hand-written kernels in ``runba.kernels.cpu``: the
  same flags, the same cache root, the same robustness.

Layout of the cache root (``$RUNBA_CACHE_DIR``, else ``$XDG_CACHE_HOME/runba`` or
``~/.cache/runba``; created with mode 0700)::

    <root>/<CODEGEN_VERSION>/fk_<sha>.py                      generated source (atomic publish)
    <root>/<CODEGEN_VERSION>/fk_<sha>.<fn>-<line>.py311.nbi   numba index / machine code
    <root>/<CODEGEN_VERSION>/fk_<sha>.<fn>-<line>.py311.1.nbc
    <root>/<CODEGEN_VERSION>/numba/<dir>_<hash>/<mod>.<fn>-<line>_<tag>.py311.nbi
                                                              hand-written kernels

Why not ``numba.config.CACHE_DIR`` / ``NUMBA_CACHE_DIR``: numba reads that value when a
dispatcher's cache object is built (decoration time) and applies it to *every* ``cache=True``
function in the process, including other libraries'. Instead each of our dispatchers gets its
own cache object (:class:`_KernelCache`) whose locator points into the runba root. That object
also (a) puts the compile flags and the kernels-source hash into the file names (numba's own key
ignores ``parallel=`` and the source of inlined helpers such as ``mathlib``), (b) turns any
unreadable cache file into a miss plus one :class:`KernelCacheWarning`, and (c) counts hits,
compiles and compile seconds for :func:`cache_info`.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import glob
import hashlib
import json
import os
import pickle
import sys
import tempfile
import threading
import time
import types
import warnings
from pathlib import Path

import llvmlite
import numba
import numpy as np
from llvmlite import binding as _llvm
from numba.core import caching as _nb_caching
from numba.core.registry import CPUDispatcher

from runba.kernels import mathlib, threads

__all__ = [
    "CODEGEN_VERSION",
    "DEFAULT_FLAGS",
    "PARALLEL_THRESHOLD",
    "CacheInfo",
    "KernelCacheWarning",
    "cache_dir",
    "cache_info",
    "clear_cache",
    "kernel",
    "kernel_path",
    "load_kernel",
    "njit_cached",
    "numba_cache_dir",
    "set_cache_dir",
    "writable_alias",
]


def _provide_powi() -> None:
    """Make ``__powisf2`` / ``__powidf2`` resolvable in numba's JIT.

    LLVM turns ``x ** n`` with an integer ``n`` into ``llvm.powi``, which lowers to these
    compiler-rt helpers; llvmlite links no runtime library, so the first such kernel aborted
    the process ("LLVM ERROR: Symbol not found: __powidf2"). They live in libgcc_s; where it
    is missing, small numba cfuncs stand in (exponentiation by squaring, like compiler-rt).
    """
    import ctypes

    import llvmlite.binding as llvm

    names = ("__powisf2", "__powidf2")
    if all(llvm.address_of_symbol(n) for n in names):
        return
    try:
        lib = ctypes.CDLL("libgcc_s.so.1")
        for n in names:
            llvm.add_symbol(n, ctypes.cast(getattr(lib, n), ctypes.c_void_p).value)
        return
    except (OSError, AttributeError):
        pass

    def powi(a, b):
        r = a * 0 + 1
        m = abs(b)
        while m:
            if m & 1:
                r *= a
            m >>= 1
            a *= a
        return r if b >= 0 else 1 / r

    for n, sig in zip(names, ("float32(float32, int32)", "float64(float64, int32)")):
        llvm.add_symbol(n, numba.cfunc(sig, error_model="numpy")(powi).address)


_provide_powi()


def _skip_numba_blas_import_probe() -> None:
    """Keep numba's target init from importing ``scipy.linalg`` (0.25 s of every process).

    ``numba.np.arraymath`` probes for BLAS when it is imported (``_HAVE_BLAS =
    _check_blas()``), and the probe imports ``scipy.linalg.cython_blas``; numba imports that
    module while it initialises its CPU target, so the first kernel of every process paid for
    scipy, although no runba kernel calls BLAS from numba. During that one probe, "scipy is
    installed" stands in for importing it; every other caller of ``ensure_blas`` (``np.dot``
    and friends, when a user's kernel compiles them) still runs the real import and checks.
    """
    import importlib.util

    try:
        from numba.np import linalg
    except ImportError:
        return
    real = getattr(linalg, "ensure_blas", None)
    if real is None or "numba.np.arraymath" in sys.modules:
        return

    def ensure_blas():
        if sys._getframe(1).f_code.co_name == "_check_blas":  # arraymath's import probe
            linalg.ensure_blas = real  # the probe runs once; later callers get the original
            if importlib.util.find_spec("scipy") is None:
                raise ImportError("scipy 0.16+ is required for linear algebra")
            return
        return real()

    linalg.ensure_blas = ensure_blas


_skip_numba_blas_import_probe()

#: Bump when the renderer or the loader changes what a given source means. It names the
#: directory under the cache root, so old artifacts are simply ignored (``clear_cache`` removes
#: the current directory only).
CODEGEN_VERSION = "v1"

#: Element count at which a kernel switches from its serial loop to its ``prange`` loop.
#: Measured by ``examples/benchmarks/calibrate_parallel_threshold.py`` (2 threads, omp layer,
#: elementwise float32): the crossover came out at 64K (quiet box) and 256K (light background
#: load); 128K sits between, losing at most ~10% either way. Generated kernels render it as a
#: literal; hand-written ones freeze the global at compile time (loader.py is in the key).
PARALLEL_THRESHOLD = 131072

#: The flags every kernel is compiled with (DESIGN §4 Codegen). ``error_model="numpy"`` lets
#: division vectorise; ``fastmath`` leaves out ``nnan``/``ninf`` so ``isnan`` keeps working,
#: and ``arcp``, which let LLVM turn ``y / sqrt(x)`` into an approximate reciprocal square
#: root plus a Newton step: NaN at x = 0 and x = inf, -inf for denormal x.
DEFAULT_FLAGS: dict = {
    "nogil": True,
    "error_model": "numpy",
    "fastmath": frozenset({"contract", "afn", "reassoc", "nsz"}),
}


class KernelCacheWarning(RuntimeWarning):
    """A cache file could not be read or written; the kernel was compiled instead."""


@dataclasses.dataclass(frozen=True)
class CacheInfo:
    """Process-wide kernel cache counters (see :func:`cache_info`).

    ``memory_hits``: :func:`load_kernel` calls served from the in-memory dict.
    ``disk_hits``: compiled signatures loaded from numba's disk cache (no compile).
    ``misses``: signatures not found on disk. ``compiles`` / ``compile_seconds``: compilations
    that ran, and the time they took (LLVM included).
    """

    memory_hits: int = 0
    disk_hits: int = 0
    misses: int = 0
    compiles: int = 0
    compile_seconds: float = 0.0

    @property
    def hits(self) -> int:
        return self.memory_hits + self.disk_hits


# --------------------------------------------------------------------------- state
_lock = threading.RLock()
_counters = {"memory_hits": 0, "disk_hits": 0, "misses": 0, "compiles": 0, "compile_seconds": 0.0}
_memory: dict[str, CPUDispatcher] = {}
_cache_dir_override: str | None = None
_warned: set[str] = set()  # one warning per unusable directory per process
_env_hash: str | None = None


def _count(field: str, amount=1) -> None:
    with _lock:
        _counters[field] += amount


def _warn(msg: str, dedup: str | None = None) -> None:
    if dedup is not None:
        with _lock:
            if dedup in _warned:
                return
            _warned.add(dedup)
    warnings.warn(msg, KernelCacheWarning, stacklevel=3)


# --------------------------------------------------------------------------- cache dir
def set_cache_dir(path: str | os.PathLike | None) -> None:
    """Use ``path`` as the cache root for kernels loaded from now on (``None``: back to the env).

    Kernels already in memory stay there (they are keyed by content, not by directory); call
    ``clear_cache(disk=False)`` to load them again from the new root.

    >>> set_cache_dir("/tmp/runba-cache")  # doctest: +SKIP
    >>> set_cache_dir(None)  # $RUNBA_CACHE_DIR or ~/.cache/runba again  # doctest: +SKIP
    """
    global _cache_dir_override
    _cache_dir_override = None if path is None else os.fspath(path)


def cache_dir() -> Path:
    """The cache root, re-read on every call: ``set_cache_dir`` > ``$RUNBA_CACHE_DIR`` > user dir.

    >>> cache_dir()  # doctest: +SKIP
    PosixPath('/home/me/.cache/runba')
    """
    if _cache_dir_override is not None:
        return Path(_cache_dir_override)
    env = os.environ.get("RUNBA_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~\\AppData\\Local")
        return Path(base) / "runba" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "runba"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "runba"


def _version_dir() -> Path:
    return cache_dir() / CODEGEN_VERSION


def _ensure_dir(path: Path) -> Path | None:
    """Create ``path`` (0700), check it is a writable directory; else ``None`` + one warning."""
    try:
        # The root and everything below it are private (0700); parents above are the user's.
        root = cache_dir()
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        rel = path.relative_to(root).parts if path.is_relative_to(root) else ()
        for i in range(1, len(rel) + 1):
            root.joinpath(*rel[:i]).mkdir(mode=0o700, exist_ok=True)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.is_dir():
            raise NotADirectoryError(str(path))
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(f"not writable: {path}")
        return path
    except OSError as exc:
        _warn(
            f"runba kernel cache directory {str(path)!r} is unusable ({exc}); kernels are "
            "compiled in memory and not cached on disk (set RUNBA_CACHE_DIR to fix)",
            dedup=f"dir:{cache_dir()}",  # one warning per broken root, not per kernel
        )
        return None


# --------------------------------------------------------------------------- keys
def _env_fingerprint() -> str:
    """Hash of everything outside the kernel source that changes generated code.

    The ``.py`` files of the ``runba.kernels`` package (mathlib helpers get inlined, so numba's
    own index, which only stamps the kernel's file, cannot see them changing) and the versions
    of numba, llvmlite, numpy and Python, and mathlib's vector width.
    """
    global _env_hash
    if _env_hash is None:
        h = hashlib.sha256()
        root = Path(__file__).resolve().parent
        for p in sorted(root.rglob("*.py")):
            h.update(p.relative_to(root).as_posix().encode() + b"\0")
            try:
                h.update(p.read_bytes())
            except OSError:
                h.update(b"<unreadable>")
            h.update(b"\0")
        for v in (numba.__version__, llvmlite.__version__, np.__version__, sys.version):
            h.update(v.encode() + b"\0")
        # RUNBA_VECTOR_WIDTH changes the machine code of every kernel that asks for it
        h.update(f"vector_width={mathlib.VECTOR_WIDTH}".encode())
        _env_hash = h.hexdigest()
    return _env_hash


def _normalize_flags(parallel: bool, flags: dict | None) -> dict:
    opts = dict(DEFAULT_FLAGS)
    opts["parallel"] = bool(parallel)
    if flags:
        opts.update(flags)
    # numba accepts only a real ``set`` for fastmath
    return {k: set(v) if isinstance(v, frozenset) else v for k, v in opts.items()}


def _flags_json(opts: dict) -> str:
    def canon(v):
        if isinstance(v, (set, frozenset)):
            return sorted(v)
        return v

    return json.dumps({k: canon(v) for k, v in sorted(opts.items())}, sort_keys=True)


def _kernel_key(source: str, name: str, opts: dict) -> str:
    h = hashlib.sha256()
    for part in (CODEGEN_VERSION, name, _flags_json(opts), _env_fingerprint(), source):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _resolve(source: str, name: str, parallel: bool, flags: dict | None):
    """(numba options, whether to cache on disk, content key)."""
    opts = _normalize_flags(parallel, flags)
    use_disk = bool(opts.pop("cache", True))
    return opts, use_disk, _kernel_key(source, name, {**opts, "cache": use_disk})


def kernel_path(source: str, name: str, *, parallel: bool = False, flags: dict | None = None):
    """The file :func:`load_kernel` writes for these arguments (whether or not it exists).

    >>> kernel_path("def f(x):\\n    return x\\n", "f").name  # doctest: +SKIP
    'fk_3b0c...e1.py'
    """
    key = _resolve(source, name, parallel, flags)[2]
    return _version_dir() / f"fk_{key}.py"


# --------------------------------------------------------------------------- numba cache glue
class _Locator(_nb_caching._CacheLocator):
    """Fixed directory; the source stamp is a hash we supply (the text, not the file)."""

    def __init__(self, path: str, stamp, disambiguator: str):
        self._path = path
        self._stamp = stamp
        self._disambiguator = disambiguator
        self._py_file = path  # numba names it in its "cannot cache" warnings

    def ensure_cache_path(self):
        os.makedirs(self._path, mode=0o700, exist_ok=True)

    def get_cache_path(self):
        return self._path

    def get_source_stamp(self):
        return self._stamp

    def get_disambiguator(self):
        return self._disambiguator

    @classmethod
    def from_function(cls, py_func, py_file):  # pragma: no cover - never auto-selected
        return None


# ``prange`` bodies. numba compiles each into a library of its own (machine code loaded at
# once) and links a second copy, optimized again with the kernel, into the kernel's object
# code. The kernel calls its body by symbol, and the process's first definition of a symbol
# wins: the compiling process runs the first copy, a process that loads the cached object
# the second, and the two can round differently (a reduction reassociated anew: results
# 1 ulp apart). So the cache stores each body's own object and loads it before the kernel:
# every process runs the code the compiling process ran.
#
# The body's symbol is numba's per-process name (an object's address and a counter), so a
# cached body can share it with a different body already in this process; the kernel would
# then call that one. :data:`_parfor_bodies` records, per loaded body symbol, a hash of its
# object code, and a clash makes the entry a miss (recompiled: fresh names).
_PARFOR = "__numba_parfor_gufunc"
_PAYLOAD = "runba-kernel-1"  # a payload from before the body objects fails to unpack
_parfor_bodies: dict[str, str] = {}  # symbol -> sha1 of the object code that defines it


class _ParforClash(Exception):
    """A cached ``prange`` body's symbol names different code already loaded here."""


def _parfor_libraries(library) -> list:
    """The ``prange`` body libraries linked (at any depth) into numba code library
    ``library``, each once."""
    found, seen, todo = {}, set(), [library]
    while todo:
        lib = todo.pop()
        for sub in lib._linking_libraries:
            if id(sub) in seen:
                continue
            seen.add(id(sub))
            if _PARFOR in sub.name:
                found[sub.name] = sub
            todo.append(sub)
    return list(found.values())


def _body_symbols(module) -> list[str]:
    return [f.name for f in module.functions if not f.is_declaration and _PARFOR in f.name]


def _note_compiled_bodies(cres) -> None:
    # bodies compiled here are loaded here: a later load of the same entry must reuse them.
    # numba internals: if they change, a later load of the entry clashes and recompiles.
    with contextlib.suppress(Exception):
        for lib in _parfor_libraries(cres.library):
            digest = hashlib.sha1(lib._get_compiled_object()).hexdigest()
            for sym in _body_symbols(lib._final_module):
                _parfor_bodies.setdefault(sym, digest)


def _load_body(codegen, state) -> None:
    """Load one cached ``prange`` body (numba's serialized library ``state``) into the
    process, unless the same code is already here; :class:`_ParforClash` when its symbol
    names other code."""
    _name, _kind, (obj, bitcode) = state
    digest = hashlib.sha1(obj).hexdigest()
    symbols = _body_symbols(_llvm.parse_bitcode(bitcode))
    engine = codegen._engine
    here = [s for s in symbols if engine.is_symbol_defined(s)]
    if here:
        if all(_parfor_bodies.get(s) == digest for s in here) and len(here) == len(symbols):
            return  # loaded (or compiled) before in this process: the same code
        raise _ParforClash(f"prange body symbol {here[0]} already names other code")
    codegen.unserialize_library(state)  # the engine keeps the code; nothing else refers to it
    for s in symbols:
        _parfor_bodies[s] = digest


class _Impl(_nb_caching.CompileResultCacheImpl):
    # Same as numba's __init__ minus the locator search.
    def __init__(self, py_func, locator: _Locator, modname: str):
        self._lineno = py_func.__code__.co_firstlineno
        self._locator = locator
        fullname = f"{modname}.{py_func.__qualname__}"
        self._filename_base = self.get_filename_base(fullname, getattr(sys, "abiflags", ""))

    def reduce(self, cres):
        bodies = [lib.serialize_using_object_code() for lib in _parfor_libraries(cres.library)]
        return (_PAYLOAD, bodies, super().reduce(cres))

    def rebuild(self, target_context, payload):
        tag, bodies, kernel = payload
        if tag != _PAYLOAD:
            raise ValueError(f"cache payload {tag!r}, wanted {_PAYLOAD!r}")
        codegen = target_context.codegen()
        for state in bodies:
            _load_body(codegen, state)
        return super().rebuild(target_context, kernel)


class _NumbaCache(_nb_caching.Cache):
    # Same as numba's Cache.__init__ with an explicit impl.
    def __init__(self, py_func, impl: _Impl):
        self._name = repr(py_func)
        self._py_func = py_func
        self._impl = impl
        self._cache_path = impl.locator.get_cache_path()
        self._cache_file = _nb_caching.IndexDataCacheFile(
            cache_path=self._cache_path,
            filename_base=impl.filename_base,
            source_stamp=impl.locator.get_source_stamp(),
        )
        self.enable()


class _KernelCache(_nb_caching._Cache):
    """numba cache protocol object attached to each runba dispatcher as ``disp._cache``.

    The numba cache behind it is built lazily at the first compile, so hand-written kernels
    decorated at import time still follow a later ``set_cache_dir``/``RUNBA_CACHE_DIR``.
    """

    def __init__(self, py_func, *, dir_fn, stamp, tag, stem, enabled=True):
        self._py_func = py_func
        self._stem = stem
        self._dir_fn = dir_fn  # () -> Path | None
        self._stamp = stamp
        self._tag = tag
        self._enabled = enabled
        self._inner: _NumbaCache | None = None
        self._inner_dir: Path | None = None
        self._t0: dict = {}

    # -- numba protocol
    @property
    def cache_path(self):
        return None if self._inner is None else self._inner.cache_path

    def enable(self):
        self._enabled = True

    def disable(self):
        self._enabled = False

    def flush(self):
        inner = self._get_inner()
        if inner is not None:
            with contextlib.suppress(Exception):
                inner.flush()

    def load_overload(self, sig, target_context):
        # Start numba's thread pool before loading machine code, serial kernels included:
        # cached code that calls into the threading layer (prange, get_thread_id,
        # set_num_threads) segfaults when loaded into a process whose pool never started,
        # because only compiling it would have started the pool. ~4 ms, once.
        threads.ensure_threading_layer()
        cres = None
        inner = self._get_inner()
        if inner is not None:
            try:
                cres = inner.load_overload(sig, target_context)
                if cres is not None:
                    self._check_foreign(cres, sig)
            except _ParforClash:
                cres = None  # a valid entry this process cannot run: compile anew
            except Exception as exc:  # any unreadable entry is a miss, never a crash
                self._bad_entry(f"{type(exc).__name__}: {exc}")
                cres = None
            if cres is None and self._index_is_corrupt():
                self._bad_entry("unreadable index file")
        if cres is not None:
            _count("disk_hits")
            return cres
        _count("misses")
        self._t0[str(sig)] = time.perf_counter()
        return None

    def save_overload(self, sig, data):
        t0 = self._t0.pop(str(sig), None)
        if t0 is not None:
            _count("compiles")
            _count("compile_seconds", time.perf_counter() - t0)
        _note_compiled_bodies(data)
        inner = self._get_inner()
        if inner is None:
            return
        try:
            inner.save_overload(sig, data)
        except Exception as exc:
            _warn(
                f"could not write the numba cache for {self._py_func.__qualname__} in "
                f"{self._inner_dir} ({type(exc).__name__}: {exc}); it will recompile next run",
                dedup=f"save:{self._inner_dir}",
            )

    # -- helpers
    def _get_inner(self) -> _NumbaCache | None:
        if not self._enabled:
            return None
        try:
            d = self._dir_fn()
        except Exception:
            d = None
        if d is None:
            self._inner = self._inner_dir = None
            return None
        if self._inner is None or self._inner_dir != d:
            f = self._py_func
            loc = _Locator(
                str(d),
                self._stamp,
                f"{f.__code__.co_firstlineno}{'_' if self._tag else ''}{self._tag}",
            )
            self._inner = _NumbaCache(f, _Impl(f, loc, self._stem))
            self._inner_dir = d
        return self._inner

    def _check_foreign(self, cres, sig) -> None:
        # A valid file copied from another kernel would unpickle fine and compute the wrong
        # thing; the function descriptor names the module (with the content hash) and function.
        fd = cres.fndesc
        f = self._py_func
        if fd.modname != f.__module__ or fd.qualname != f.__qualname__:
            raise ValueError(f"cache entry belongs to {fd.modname}.{fd.qualname}")
        # ... and a file of another signature of this kernel (numba's index and data writes
        # are not atomic together) would run code built for other layouts on these arrays
        want = tuple(getattr(sig, "args", sig))
        got = tuple(cres.signature.args)
        if got != want:
            raise ValueError(f"cache entry compiled for {got}, wanted {want}")

    def _index_is_corrupt(self) -> bool:
        # numba silently treats some garbage indexes as "other numba version"; we want to know.
        inner = self._inner
        if inner is None:
            return False
        path = inner._cache_file._index_path
        try:
            with open(path, "rb") as fh:
                version = pickle.load(fh)
                rest = fh.read()
        except FileNotFoundError:
            return False
        except Exception:
            return True
        if not isinstance(version, str):
            return True
        if version != numba.__version__:
            return False  # written by another numba: stale, not corrupt
        try:
            stamp, overloads = pickle.loads(rest)
            return not isinstance(overloads, dict)
        except Exception:
            return True

    def _bad_entry(self, why: str) -> None:
        inner = self._inner
        where = inner._cache_file._index_path if inner is not None else "?"
        _warn(
            f"ignoring unreadable kernel cache entry {where} ({why}); recompiling "
            f"{self._py_func.__qualname__}",
        )
        if inner is None:
            return
        cf = inner._cache_file
        base = cf._index_path[: -len(".nbi")]
        for p in [cf._index_path, *glob.glob(glob.escape(base) + ".*.nbc")]:
            with contextlib.suppress(OSError):
                os.remove(p)


def _attach_cache(disp, py_func, *, dir_fn, stamp, tag, stem, enabled=True):
    disp._cache = _KernelCache(
        py_func,
        dir_fn=dir_fn,
        stamp=stamp,
        tag=tag,
        stem=stem,
        enabled=enabled,
    )
    return disp


# --------------------------------------------------------------------------- generated kernels
def kernel(fn):
    """Placeholder decorator for kernel source handed to :func:`load_kernel` (returns ``fn``).

    It only marks the function; the loader applies the real ``numba.njit`` with the flags.

    >>> @kernel
    ... def E_neg_f32(a, out):
    ...     for i in range(a.shape[0]):
    ...         out[i] = -a[i]
    """
    return fn


def _publish(path: Path, text: str) -> bool:
    """Make ``path`` hold ``text``: atomic (temp file in the same dir, then ``os.replace``)."""
    try:
        existing = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        existing = None
    except (OSError, UnicodeDecodeError):
        existing = "<unreadable>"
    if existing == text:
        return True
    if existing is not None:
        _warn(f"kernel source file {path} was damaged; rewriting it")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-" + path.stem[:20], suffix=".py")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return True


def load_kernel(
    source: str, name: str, *, parallel: bool = False, flags: dict | None = None
) -> CPUDispatcher:
    """Compile function ``name`` defined in ``source`` with the runba flags, cached on disk.

    ``source`` is a complete module: it imports what it uses (``from runba.kernels.mathlib
    import tanh_f32``) and defines ``name`` as a plain function (undecorated, or marked with
    the :func:`kernel` placeholder). ``parallel``
    enables ``prange``; ``flags`` overrides/extends :data:`DEFAULT_FLAGS` (``{"cache": False}``
    keeps the kernel off disk). Every flag is part of the file name, so a serial build is never
    served to a parallel request. Returns the numba dispatcher (compiled lazily on first call;
    a later process loads the machine code instead of compiling).

    >>> src = '''
    ... def E_add_f32(a, b, out):
    ...     for i in range(a.size):
    ...         out[i] = a[i] + b[i]
    ... '''
    >>> k = load_kernel(src, "E_add_f32")
    >>> import numpy as np; x = np.ones(3, np.float32); o = np.empty_like(x)
    >>> k(x, x, o); o.tolist()
    [2.0, 2.0, 2.0]
    """
    opts, use_disk, key = _resolve(source, name, parallel, flags)
    with _lock:
        disp = _memory.get(key)
        if disp is not None:
            _counters["memory_hits"] += 1
            return disp

        modname = f"runba_fk_{key}"
        text = f"# runba kernel {name}  (generated; safe to delete)\n# key {key}\n{source}"
        vdir = _ensure_dir(_version_dir()) if use_disk else None
        path = None
        if vdir is not None:
            path = vdir / f"fk_{key}.py"
            try:
                _publish(path, text)
            except OSError as exc:
                _warn(
                    f"could not write kernel file {path} ({exc}); compiling in memory",
                    dedup=f"dir:{cache_dir()}",
                )
                path = vdir = None

        # Execute the text we hold (not the file: a damaged file cannot change the result).
        # The module is registered before it runs: rebuilding a cached kernel in a later
        # process looks its globals up by module name in sys.modules.
        filename = str(path) if path is not None else f"<runba kernel {name} {key[:12]}>"
        mod = types.ModuleType(modname)
        mod.__file__ = filename
        sys.modules[modname] = mod
        try:
            exec(compile(text, filename, "exec"), mod.__dict__)
            fn = mod.__dict__[name]
        except KeyError:
            del sys.modules[modname]
            raise ValueError(f"kernel source does not define {name!r}") from None
        except BaseException:
            del sys.modules[modname]
            raise
        fn = getattr(fn, "py_func", fn)  # tolerate a source that decorates with njit itself

        disp = numba.njit(**opts)(fn)
        stamp = hashlib.sha256(text.encode()).hexdigest()
        _attach_cache(
            disp,
            fn,
            dir_fn=lambda d=vdir: d,
            stamp=stamp,
            tag="",
            stem=f"fk_{key}",
            enabled=vdir is not None,
        )
        _memory[key] = disp
        return disp


# --------------------------------------------------------------------------- hand-written kernels
def numba_cache_dir(py_file: str | os.PathLike | None = None) -> Path:
    """Where hand-written kernels' numba caches go: ``<root>/<CODEGEN_VERSION>/numba[/<sub>]``.

    >>> numba_cache_dir().name  # doctest: +SKIP
    'numba'
    """
    base = _version_dir() / "numba"
    if py_file is None:
        return base
    parent = os.path.dirname(os.path.abspath(py_file))
    h = hashlib.sha1(parent.encode()).hexdigest()[:16]
    return base / f"{os.path.basename(parent)}_{h}"


def njit_cached(fn=None, *, parallel: bool = False, **flags):
    """``numba.njit`` with the runba flags and the runba disk cache, for hand-written kernels.

    Flags, the kernels-source hash and library versions go into the cache file names, so the
    same function is never served a build made with other flags or an older ``mathlib``.

    >>> @njit_cached(parallel=True)
    ... def scale_f32(x, out):
    ...     for i in numba.prange(x.size):
    ...         out[i] = x[i] * np.float32(2)
    """

    def wrap(f):
        opts = _normalize_flags(parallel, flags)
        opts.pop("cache", None)
        disp = numba.njit(**opts)(f)
        tag = hashlib.sha256((_flags_json(opts) + _env_fingerprint()).encode()).hexdigest()[:16]
        src_file = f.__code__.co_filename

        def dir_fn():
            return _ensure_dir(numba_cache_dir(src_file))

        try:
            # numba's own stamp is a hash of the kernel's file; our tag covers the rest.
            st = hashlib.sha256(Path(src_file).read_bytes()).hexdigest()
        except OSError:
            return disp  # no source file (interactive): plain in-memory njit
        stem = os.path.splitext(os.path.basename(src_file))[0]
        return _attach_cache(disp, f, dir_fn=dir_fn, stamp=st, tag=tag, stem=stem)

    return wrap if fn is None else wrap(fn)


# --------------------------------------------------------------------------- introspection
def writable_alias(x):
    """``x`` itself, or for a read-only array a writable one over the same memory, for a
    kernel argument the kernel only reads: numba types read-only arrays apart, so a
    read-only input (a memory-mapped file, a broadcast view, another library's frozen array)
    would compile the same kernel a second time. The caller keeps ``x`` alive meanwhile.

    >>> ro = np.ones(3); ro.flags.writeable = False
    >>> w = writable_alias(ro)
    >>> bool(w.flags.writeable), w.ctypes.data == ro.ctypes.data
    (True, True)
    """
    if x.flags.writeable:
        return x
    if not x.size:
        return np.empty(x.shape, x.dtype)  # nothing is read
    # the bytes from the lowest address an element occupies to past the highest
    start = x.ctypes.data
    lo = start + sum([(n - 1) * st for n, st in zip(x.shape, x.strides) if st < 0])
    hi = start + sum([(n - 1) * st for n, st in zip(x.shape, x.strides) if st > 0]) + x.itemsize
    memory = (ctypes.c_char * (hi - lo)).from_address(lo)
    return np.ndarray(x.shape, x.dtype, memory, start - lo, x.strides)


def cache_info() -> CacheInfo:
    """Counters since process start (or the last ``clear_cache``).

    >>> info = cache_info(); info.compiles, info.hits  # doctest: +SKIP
    (3, 12)
    """
    with _lock:
        return CacheInfo(**_counters)


def clear_cache(*, memory: bool = True, disk: bool = True) -> None:
    """Forget compiled kernels: the in-memory dict, and the current version dir on disk.

    Also resets the counters. Dispatchers already handed out keep working.

    >>> clear_cache(disk=False)  # doctest: +SKIP
    """
    import shutil

    with _lock:
        if memory:
            for key in _memory:
                sys.modules.pop(f"runba_fk_{key}", None)
            _memory.clear()
            _warned.clear()
        for k in _counters:
            _counters[k] = 0.0 if k == "compile_seconds" else 0
    if disk:
        vdir = _version_dir()
        if vdir.is_dir():
            shutil.rmtree(vdir, ignore_errors=True)
