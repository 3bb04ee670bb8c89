"""The fusion JIT: record lazily inside ``runba.fuse``, fuse, compile with numba, cache.

Pipeline (one module per stage)::

    capture.py   registry ops -> lazy nodes (graph.py), cuts at extern ops
    schedule.py  graph -> plan: fusion groups, views, numpy steps
    codegen.py   group + layout -> Python source for numba
    runtime.py   plan -> buffers, kernel launches, values for the lazy tensors
    cache.py     plan cache, counters, debug output (the loader caches the kernels)
    explain.py   what a fused call does, and why each boundary is where it is

See docs/fusion.md (users) and docs/architecture.md (contributors).
"""

from runba.jit.cache import RecompileWarning, cache_info, clear_cache
from runba.jit.capture import RECORDER, fuse, is_enabled, realize
from runba.jit.explain import explain
from runba.jit.runtime import KernelError
from runba.ops import registry as _registry

_registry.lazy_recorder = RECORDER

__all__ = [
    "KernelError",
    "RecompileWarning",
    "cache_info",
    "clear_cache",
    "explain",
    "fuse",
    "is_enabled",
    "realize",
]
