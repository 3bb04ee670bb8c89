"""The lazy IR: nodes recorded inside ``runba.fuse`` and the per-thread pending graph.

A lazy tensor is an ordinary :class:`runba.Tensor` whose ``_lazy`` slot holds a
:class:`LazyNode` and whose ``_data`` is a *placeholder*: a read-only, zero-strided array of
the right shape and dtype (so ``shape``, ``ndim``, ``numel`` and ``dtype`` work unchanged),
filled with NaN for floating dtypes so that a code path that forgot to realize shows NaN in
the fused-vs-eager tests instead of plausible numbers. Value reads realize the graph first.

A node's inputs are other nodes of the same graph, numpy arrays (the storage of concrete
tensors, captured when the op was recorded) or Python scalars (runtime kernel arguments,
never baked into code). Nodes are kept in recording order, which is a topological order.

The graph is realized as a whole: every node whose tensor is still referenced (by the user
or by an autograd node) gets a value; the rest are intermediates the scheduler may fuse away.

A graph reads the concrete arrays it captured when it runs, so a write into one of them must
realize it first (eager mode read the old values at the op): :func:`realize_readers`, called
before in-place ops and before ``numpy()`` hands out a writable view. A realization that
fails leaves the graph pending: the next read runs it again (never a NaN placeholder).
"""

from __future__ import annotations

import importlib
import threading
import weakref

import numpy as np

from runba._state import STATE
from runba.ops import registry

__all__ = [
    "Graph",
    "LazyNode",
    "current_graph",
    "placeholder",
    "realize_readers",
    "structural_key",
]

# Nodes in one graph before it is realized on its own (a loop that never reads a value
# would otherwise grow the graph without bound).
MAX_PENDING_NODES = 20_000


class LazyNode:
    """One recorded op: ``op(*inputs, **attrs)`` with a known ``dtype`` and ``shape``.

    ``compute`` is the dtype elementwise bodies are evaluated in (PyTorch promotion; the
    registry's rule). ``refs`` are weak references to the tensors showing this value (more
    than one after ``detach``). ``index`` is the position in the graph. ``items`` is the
    node's entry in :func:`structural_key` when dropped and when kept: everything in it is
    known at recording, so realizing only picks one per node.
    """

    __slots__ = (
        "op",
        "inputs",
        "attrs",
        "dtype",
        "compute",
        "shape",
        "refs",
        "index",
        "graph",
        "items",
        "ref_key",
    )

    def __init__(self, op, inputs, attrs, dtype, compute, shape, graph, index, attrs_key, ins):
        self.op = op
        self.inputs = inputs
        self.attrs = attrs
        self.dtype = dtype
        self.compute = compute
        self.shape = shape
        self.refs = []
        self.graph = graph
        self.index = index
        self.ref_key = ("n", index)  # input_key of this node in its consumers' entries
        # attrs_key and ins (input_key of each input) come from Graph.add, which needs them
        # for the value key too
        head = (op.name, attrs_key, dtype.name, compute.name, ones_mask(shape))
        self.items = (head + (False, ins), head + (True, ins))

    def alive(self) -> bool:
        """Is a tensor showing this value still referenced?"""
        for r in self.refs:
            if r() is not None:
                return True
        return False

    def __repr__(self):
        return f"<lazy {self.op.name} {self.dtype.name}{list(self.shape)} #{self.index}>"


_FILL = {}


def placeholder(shape: tuple, dtype) -> np.ndarray:
    """A read-only zero-strided array standing in for a lazy value (see the module doc)."""
    npdt = dtype.np
    base = _FILL.get(npdt)
    if base is None:
        fill = np.nan if npdt.kind == "f" else 0
        # bytes are immutable, so arrays over them are read-only
        base = _FILL[npdt] = np.full((), fill, npdt).tobytes()
    # the ndarray constructor: ~10x cheaper than np.broadcast_to on this hot path
    return np.ndarray(shape, npdt, base, 0, (0,) * len(shape))


class Graph:
    """The nodes recorded by one thread since its last realization.

    Lock: another thread may realize this graph (a lazy tensor handed across threads).
    """

    def __init__(self):
        self.nodes: list[LazyNode] = []
        self.lock = threading.RLock()
        self.realized = False
        self.origin = STATE.fuse_origin  # the fused function/module that started it
        # the concrete storage the nodes read, by id (add() keeps it; realize_readers reads)
        self.arrays: dict[int, np.ndarray] = {}
        # hash-consing: value key -> the node computing it (see add)
        self.computed: dict[tuple, LazyNode] = {}
        self.same_as: dict[int, LazyNode] = {}  # clone index -> the node it repeats

    def add(self, op, inputs, attrs, dtype, compute, shape) -> LazyNode:
        """The node for ``op(*inputs, **attrs)``. An elementwise op or reduction this graph
        already computes (same op, attrs and inputs: the same nodes, the same array objects,
        equal scalars) is not computed twice: the new node is a ``clone`` of the earlier
        one - a second store in the same kernel when both results are kept, nothing when
        the new one is dead - so each tensor still owns its storage, as in eager mode."""
        kind = op.kind
        # Movement ops run as numpy views at run time: their attrs (sizes) stay out of keys
        attrs_key = () if kind == registry.MOVEMENT or not attrs else _freeze(attrs)
        # one pass: each input's structural key (input_key's cases, in line: this runs for
        # every recorded op) and its part of the value key. Value keys: arrays by identity (the
        # graph keeps them alive, and a write to one realizes the graph first), scalars by
        # type and repr (-0.0 is not 0.0); a clone made for a repeat stands for the node it
        # repeats (same_as), so (x * 2).tanh() twice is one tanh.
        same_as = self.same_as
        ins = []
        vals = []
        for x in inputs:
            if isinstance(x, LazyNode):
                k = x.ref_key
                ins.append(k)
                vals.append(same_as[x.index].ref_key if same_as and x.index in same_as else k)
            elif isinstance(x, np.ndarray):
                ins.append(_array_key(x))
                vals.append(("a", id(x)))
                self.arrays[id(x)] = x  # concrete storage: realize_readers checks it
            else:
                ins.append(input_key(x))
                vals.append((type(x).__name__, repr(x)))
        ins = tuple(ins)
        # only elementwise ops and reductions are shared: a view must alias its own base
        if kind == registry.ELEMENTWISE or kind == registry.REDUCE:
            key = (op, attrs_key, dtype, shape, tuple(vals))
            prior = self.computed.get(key)
            if prior is not None:
                clone = self._new(
                    _late("runba.ops.elementwise", "CLONE"),
                    (prior,),
                    {},
                    dtype,
                    dtype,
                    shape,
                    (),
                    (prior.ref_key,),
                )
                same_as[clone.index] = prior  # what consumers of the clone see
                return clone
            node = self._new(op, inputs, attrs, dtype, compute, shape, attrs_key, ins)
            self.computed[key] = node
            return node
        return self._new(op, inputs, attrs, dtype, compute, shape, attrs_key, ins)

    def _new(self, op, inputs, attrs, dtype, compute, shape, attrs_key, ins) -> LazyNode:
        nodes = self.nodes
        node = LazyNode(op, inputs, attrs, dtype, compute, shape, self, len(nodes), attrs_key, ins)
        nodes.append(node)
        return node

    def attach(self, node: LazyNode, tensor) -> None:
        """Make ``tensor`` show ``node``'s value (lazy placeholder storage until realized)."""
        tensor._lazy = node
        node.refs.append(weakref.ref(tensor))

    def realize(self) -> None:
        """Run the graph: every referenced lazy tensor becomes concrete."""
        with self.lock:
            if self.realized:
                return
            self.realized = True
            with _PENDING_LOCK:
                _PENDING.discard(self)
            if STATE.graph is self:
                STATE.graph = None  # new ops start a new graph, even if this run fails
            registry.lazy_graphs[0] -= 1
            if self.nodes:
                try:
                    _late("runba.jit.runtime", "run_graph")(self)
                except BaseException:
                    # still pending: the next read runs it again (and raises again if the
                    # failure is not transient, a KeyboardInterrupt say) - never hands out
                    # the NaN placeholders, and dispatch keeps routing its tensors here
                    self.realized = False
                    registry.lazy_graphs[0] += 1
                    with _PENDING_LOCK:
                        _PENDING.add(self)
                    raise
            self.arrays = {}
            self.computed = {}
            self.same_as = {}

    def __del__(self):
        # unreachable while pending: its thread ended, or its run failed and its tensors
        # died; it no longer counts (dispatch's lazy-input test is skipped again at 0)
        if not self.realized:
            try:
                registry.lazy_graphs[0] -= 1
            except Exception:  # noqa: BLE001 - interpreter shutdown: modules torn down
                pass

    def reads(self, array: np.ndarray) -> bool:
        """May a node read memory overlapping ``array``? (bounds only: conservative)"""
        for a in list(self.arrays.values()):
            if np.may_share_memory(a, array):
                return True
        return False


_LATE: dict = {}


def _late(module: str, name: str):
    """``module.name``, imported on first use and kept: runtime imports this module, ops'
    elementwise table is not loaded yet when it is, and an import statement costs ~0.6 µs
    on every call (every realization, every repeated value)."""
    mod = _LATE.get(module)
    if mod is None:
        mod = _LATE[module] = importlib.import_module(module)
    return getattr(mod, name)  # looked up each time: tests may patch it


# Every thread's pending graphs (weakly: a graph nobody can read any more needs no run).
_PENDING: weakref.WeakSet = weakref.WeakSet()
_PENDING_LOCK = threading.Lock()


def realize_readers(array: np.ndarray) -> None:
    """Realize each pending graph, of any thread, that reads memory overlapping ``array``:
    called before ``array`` is written, so the graph sees the values eager mode read."""
    if not registry.lazy_graphs[0]:
        return
    with _PENDING_LOCK:
        pending = list(_PENDING)
    for g in pending:
        if not g.realized and g.reads(array):
            g.realize()


def current_graph() -> Graph:
    """This thread's pending graph, created on first use (and realized when it grows past
    :data:`MAX_PENDING_NODES`)."""
    g = STATE.graph
    if g is not None and not g.realized:
        if len(g.nodes) < MAX_PENDING_NODES:
            return g
        g.realize()
    g = STATE.graph = Graph()
    registry.lazy_graphs[0] += 1
    with _PENDING_LOCK:
        _PENDING.add(g)
    return g


_PLAIN = frozenset({bool, int, float, str, type(None)})


def _freeze(value):
    """A hashable, process-independent rendering of an attribute value."""
    if type(value) is dict:
        # an op's attrs: a few plain values or tuples, so skip the generic walk per value
        items = [(k, v if type(v) in _PLAIN else _freeze(v)) for k, v in value.items()]
        items.sort()  # keys are unique: only they are compared
        return tuple(items)
    if isinstance(value, (tuple, list)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (bool, int, float, str, type(None))):
        return value
    if isinstance(value, slice):
        return ("slice", value.start, value.stop, value.step)
    name = getattr(value, "name", None)  # runba dtypes
    return name if isinstance(name, str) else repr(value)


# shape -> ones_mask(shape): the same few shapes recur every call (bounded: sizes vary)
_MASKS: dict = {}
_MAX_MASKS = 4096


def ones_mask(shape) -> tuple:
    """Rank and broadcast pattern of a shape, without its sizes: True where a dim is 1."""
    mask = _MASKS.get(shape)
    if mask is None:
        mask = tuple([s == 1 for s in shape])
        if len(_MASKS) < _MAX_MASKS:
            _MASKS[shape] = mask
    return mask


# numpy dtype -> dtype.str (a computed property, ~5x a dict lookup)
_DTYPE_STR: dict = {}


def _array_key(x: np.ndarray) -> tuple:
    """A concrete array's structural key: dtype code and broadcast pattern, never sizes."""
    dt = x.dtype
    code = _DTYPE_STR.get(dt)
    if code is None:
        code = _DTYPE_STR[dt] = dt.str
    return ("a", code, ones_mask(x.shape))


def input_key(x) -> tuple:
    if isinstance(x, LazyNode):
        return x.ref_key
    if isinstance(x, np.ndarray):
        return _array_key(x)
    if x is None:
        return ("none",)
    return ("s", type(x).__name__)


def structural_key(nodes, kept) -> tuple:
    """The whole graph's structure: ops, attrs, dtypes, ranks and broadcast patterns of
    every node and input, and which nodes are kept - never sizes, ids or values (DESIGN §4
    Caches). Movement ops run as numpy views at run time, so their attrs (which carry
    sizes) are left out; their effect on rank and broadcast pattern is in the output mask.
    Each node's entry was built when it was recorded (``LazyNode.items``)."""
    return tuple([n.items[k] for n, k in zip(nodes, kept)])
