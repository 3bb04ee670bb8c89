"""The JIT's caches and observability: plan cache, counters, recompile log, debug output.

Three levels (DESIGN §4 Caches):

* the **plan cache** - whole-graph structural key -> :class:`~runba.jit.schedule.Plan`
  (steps, and the compiled launcher per group and layout): a repeated structure skips
  scheduling, codegen and compilation;
* the loader's **in-memory** dict of compiled kernels, keyed by source + flags (a kernel
  shared by two plans compiles once);
* the loader's **disk cache** (``$RUNBA_CACHE_DIR``): a new process loads machine code.

``RUNBA_DEBUG`` (read at each message) prints to stderr: 1 a line per realized graph,
2 also each kernel launch, 3 also plan building and why a plan missed the cache, 4 also the
generated source.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
import weakref
from collections import OrderedDict
from dataclasses import dataclass

from runba.jit.graph import describe_key
from runba.kernels import env, loader

__all__ = ["JitCacheInfo", "cache_info", "clear_cache", "debug", "debug_level"]

MAX_PLANS = 1024

_lock = threading.Lock()
PLANS: OrderedDict = OrderedDict()
_stats = {"plan_hits": 0, "plan_misses": 0, "graphs": 0, "launches": 0}
_last_key = [None]


def debug_level() -> int:
    try:
        return int(env.get("RUNBA_DEBUG", "0") or 0)
    except ValueError:
        return 0


def debug(level: int, msg: str) -> None:
    if debug_level() >= level:
        print(f"runba.jit: {msg}", file=sys.stderr)


def get_plan(key):
    with _lock:
        plan = PLANS.get(key)
        if plan is not None:
            PLANS.move_to_end(key)
            _stats["plan_hits"] += 1
            _last_key[0] = key  # what the next miss is explained against
        else:
            _stats["plan_misses"] += 1
        _stats["graphs"] += 1
        return plan


def put_plan(key, plan) -> None:
    with _lock:
        PLANS[key] = plan
        if len(PLANS) > MAX_PLANS:
            PLANS.popitem(last=False)


def count_launch(n: int = 1) -> None:
    _stats["launches"] += n


def miss_reason(key) -> str:
    """Why ``key`` missed the plan cache: how it differs from the previous graph's key (the
    usual culprit)."""
    prev, _last_key[0] = _last_key[0], key
    if prev is None:
        return "first graph in this process"
    old, new = describe_key(prev), describe_key(key)
    if old is None or new is None:
        return "a structure not seen recently"
    return key_diff(old, new)


def key_diff(old, new) -> str:
    """A human-readable first difference between two structural keys (spelled out by
    ``graph.describe_key``)."""
    if len(old) != len(new):
        return f"graph size changed ({len(old)} -> {len(new)} nodes)"
    fields = ("op", "attrs", "dtype", "compute dtype", "rank/broadcast pattern", "kept", "inputs")
    for i, (a, b) in enumerate(zip(old, new)):
        if a != b:
            for name, x, y in zip(fields, a, b):
                if x != y:
                    return f"node {i} ({b[0]}): {name} changed ({x!r} -> {y!r})"
    return "same structure (plan evicted)"


@dataclass(frozen=True)
class JitCacheInfo:
    """Counters of the JIT (plans) and of the kernel loader (compiles, disk hits)."""

    plan_hits: int
    plan_misses: int
    graphs: int
    launches: int
    plans_cached: int
    kernels: loader.CacheInfo

    @property
    def compiles(self) -> int:
        return self.kernels.compiles


def cache_info() -> JitCacheInfo:
    """Counters since the process started (or since :func:`clear_cache`).

    >>> import runba
    >>> runba.jit.cache_info().plan_misses >= 0
    True
    """
    with _lock:
        return JitCacheInfo(**_stats, plans_cached=len(PLANS), kernels=loader.cache_info())


# ----------------------------------------------------------------------------- recompiles
#: A fused function or module that has needed more distinct graph structures than this gets
#: one RecompileWarning (like torch.compile's recompile limit): each new structure plans,
#: and may compile, again - usually a sign that something structural changes every call.
SPECIALISATION_LIMIT = 8
_specialisations: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class RecompileWarning(UserWarning):
    """A fused function or module keeps meeting new graph structures."""


def note_specialisation(origin, key, reason: str, call: int = 0) -> None:
    """Count a new plan for ``origin``; warn once when it passes the limit. The structures
    of ``origin``'s first call (number ``call``) are its baseline: a training step realized
    as ten graphs is one specialisation, and only structures that appear in later calls
    count (a new dtype, depth or mode)."""
    if origin is None:
        return
    with _lock:
        try:
            seen = _specialisations.get(origin)
            if seen is None:
                seen = _specialisations[origin] = [call, set(), set()]
        except TypeError:  # not weak-referenceable: not counted
            return
        first, baseline, later = seen
        if len(later) >= SPECIALISATION_LIMIT or key in baseline:
            return  # warned already (stop growing), or seen in the first call
        if call == first:
            baseline.add(key)
            return
        later.add(key)
        n = len(later) + 1  # the first call's structure(s) count as one
    if n == SPECIALISATION_LIMIT + 1:
        name = getattr(origin, "__qualname__", None) or type(origin).__name__
        warnings.warn(
            f"runba.fuse({name}): {n} specialisations (graph structures) so far, each planned "
            f"and possibly compiled anew; the latest because {reason}. Something structural "
            "changes between calls (a dtype, a rank, requires_grad, train/eval, the number of "
            "loop iterations); RUNBA_DEBUG=3 prints the reason for every new plan.",
            RecompileWarning,
            stacklevel=_user_stacklevel(),
        )


def _user_stacklevel() -> int:
    """``warnings.warn``'s stacklevel, from note_specialisation, of the first frame outside
    runba: the user's line that realized the graph."""
    level, frame = 2, sys._getframe(2)  # 1: note_specialisation
    while frame is not None and frame.f_code.co_filename.startswith(_RUNBA_DIRS):
        level += 1
        frame = frame.f_back
    return level


# runba's package and its kernels (a sibling folder in a source checkout)
_RUNBA_DIRS = tuple(
    {
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,
        os.path.dirname(os.path.abspath(loader.__file__)) + os.sep,
    }
)


# Called by clear_cache(memory=True): the runtime's buffer pool registers here.
on_clear: list = []


def clear_cache(*, memory: bool = True, disk: bool = False) -> None:
    """Forget cached plans and compiled kernels (``disk=True`` also deletes the kernel files
    under the cache dir) and reset the counters."""
    with _lock:
        if memory:
            PLANS.clear()
            _specialisations.clear()
            _last_key[0] = None
            for fn in on_clear:
                fn()
        for k in _stats:
            _stats[k] = 0
    loader.clear_cache(memory=memory, disk=disk)
