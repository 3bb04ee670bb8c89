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
import itertools
import threading
import weakref

import numpy as np

from runba._state import STATE
from runba.ops import registry

__all__ = [
    "Graph",
    "LazyNode",
    "current_graph",
    "describe_key",
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
    than one after ``detach``). ``index`` is the position in the graph. ``sid`` is the
    interned id of the node's entry in :func:`structural_key` (even; +1 when kept):
    everything in it is known at recording, so realizing only adds one bit per node.
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
        "sid",
        "view_of",
    )

    def __init__(self, op, inputs, attrs, dtype, compute, shape, graph, index, sid):
        self.op = op
        self.inputs = inputs
        self.attrs = attrs
        self.dtype = dtype
        self.compute = compute
        self.shape = shape
        self.refs = []
        self.graph = graph
        self.index = index
        self.sid = sid
        # (root node, ((view op, attrs), ...)) when fold.fold_view computes this view of
        # root's value itself: the value handed out is then a numpy view of root's (aliasing)
        self.view_of = None

    def alive(self) -> bool:
        """Is a tensor showing this value still referenced?"""
        for r in self.refs:
            if r() is not None:
                return True
        return False

    def __repr__(self):
        return f"<lazy {self.op.name} {self.dtype.name}{list(self.shape)} #{self.index}>"


# Node entries of structural keys, interned: entry -> id and back (for key_diff). Plan keys
# are then tuples of ints, cheap to hash and compare on every realization. Ids are never
# reused (a cleared table only makes later graphs miss once), so a key never changes meaning.
_SIDS: dict = {}
_ENTRIES: dict = {}
_MAX_SIDS = 1 << 16
_next_sid = itertools.count()


def _sid(entry: tuple) -> int:
    sid = _SIDS.get(entry)
    if sid is None:
        if len(_SIDS) >= _MAX_SIDS:
            _SIDS.clear()
            _ENTRIES.clear()
        sid = _SIDS[entry] = 2 * next(_next_sid)
        _ENTRIES[sid] = entry
    return sid


def describe_key(key: tuple):
    """A structural key spelled out, one ``(op, attrs, dtype, compute, mask, kept, inputs)``
    per node (inputs: node indices, ``("a", dtype code, mask)`` for arrays, ``("s", type)``
    for scalars); None when an entry was dropped from the intern table."""
    out = []
    for k in key:
        e = _ENTRIES.get(k & ~1)
        if e is None:
            return None
        out.append(e[:5] + (bool(k & 1), e[5]))
    return tuple(out)


_FILL = {}


# (shape, numpy dtype) -> placeholder: read-only and viewing immutable bytes, so one array
# serves every lazy tensor of that shape (bounded: sizes vary)
_PLACEHOLDERS: dict = {}
_MAX_PLACEHOLDERS = 4096


def placeholder(shape: tuple, dtype) -> np.ndarray:
    """A read-only zero-strided array standing in for a lazy value (see the module doc)."""
    npdt = dtype.np
    key = (shape, npdt)
    arr = _PLACEHOLDERS.get(key)
    if arr is not None:
        return arr
    base = _FILL.get(npdt)
    if base is None:
        fill = np.nan if npdt.kind == "f" else 0
        # bytes are immutable, so arrays over them are read-only
        base = _FILL[npdt] = np.full((), fill, npdt).tobytes()
    # the ndarray constructor: ~10x cheaper than np.broadcast_to
    arr = np.ndarray(shape, npdt, base, 0, (0,) * len(shape))
    if len(_PLACEHOLDERS) < _MAX_PLACEHOLDERS:
        _PLACEHOLDERS[key] = arr
    return arr


_as_strided = np.lib.stride_tricks.as_strided


def _strided_model(shape, strides, npdt) -> np.ndarray:
    # one element of memory under any shape and strides: only the layout is ever read
    return _as_strided(np.zeros((), npdt), shape, strides, writeable=False)


def _c_model(shape, npdt) -> np.ndarray:
    strides = []
    step = npdt.itemsize
    for n in reversed(shape):
        strides.append(step)
        step *= max(n, 1)
    return _strided_model(tuple(shape), tuple(reversed(strides)), npdt)


def view_model(op, model: np.ndarray, attrs: dict) -> np.ndarray:
    """View op ``op`` applied to a layout model (see :func:`layout_model`)."""
    if op.name == "reshape" and not attrs["view_only"]:
        v = model.view()
        try:
            v.shape = attrs["shape"]
        except AttributeError:  # reshape copies: a fresh C-contiguous value
            return _c_model(attrs["shape"], model.dtype)
        return v
    return op.impl(model, **attrs)  # a view; view() raises eager's error when it can't


def layout_model(node: LazyNode) -> np.ndarray:
    """An array with the shape and strides ``node``'s value will have once realized, over
    one element of memory (never read): kernel outputs are C-contiguous, movement ops are
    numpy views of their input, a folded view (``view_of``) is a view of its root's value.
    Answers ``is_contiguous()`` and ``view()``'s stride check without running the graph."""
    if node.view_of is not None:
        root, chain = node.view_of
        model = layout_model(root)
        for op, attrs in chain:
            model = view_model(op, model, attrs)
        return model
    if node.op.kind == registry.MOVEMENT:
        x = node.inputs[0]
        if isinstance(x, LazyNode):
            model = layout_model(x)
        else:
            model = _strided_model(x.shape, x.strides, x.dtype)
        return view_model(node.op, model, node.attrs)
    return _c_model(node.shape, node.dtype.np)


class Graph:
    """The nodes recorded by one thread since its last realization.

    Lock: another thread may realize this graph (a lazy tensor handed across threads).
    """

    def __init__(self):
        self.nodes: list[LazyNode] = []
        self.lock = threading.RLock()
        self.realized = False
        self.origin = STATE.fuse_origin  # the fused function/module that started it
        self.call = STATE.fuse_call  # which call of it (cache.note_specialisation)
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
        # every recorded op) and its part of the value key. Value keys: nodes and arrays by
        # identity (the graph keeps arrays alive, and a write to one realizes the graph
        # first), scalars by type and value (scalar_value); a clone made for a repeat stands
        # for the node it repeats (same_as), so (x * 2).tanh() twice is one tanh.
        same_as = self.same_as
        ins = []
        vals = []
        for x in inputs:
            if type(x) is LazyNode:
                ins.append(x.index)
                vals.append(same_as.get(x.index, x) if same_as else x)
            elif isinstance(x, np.ndarray):
                ins.append(array_key(x))
                vals.append(id(x))
                self.arrays[id(x)] = x  # concrete storage: realize_readers checks it
            else:
                key = SCALAR_KEYS.get(type(x))
                ins.append(key if key is not None else input_key(x))
                vals.append(scalar_value(x))
        return self.add_keyed(op, inputs, attrs, dtype, compute, shape, attrs_key, tuple(ins), vals)

    def add_keyed(self, op, inputs, attrs, dtype, compute, shape, attrs_key, ins, vals):
        """:meth:`add` after its pass over the inputs: ``ins`` is each input's structural key,
        ``vals`` its part of the value key (concrete arrays already in ``self.arrays``)."""
        kind = op.kind
        key = prior = None
        # only elementwise ops and reductions are shared: a view must alias its own base
        if kind == registry.ELEMENTWISE or kind == registry.REDUCE:
            key = (op, attrs_key, dtype, shape, *vals)
            prior = self.computed.get(key)
            if prior is not None:  # a clone of prior
                op = _late("runba.ops.elementwise", "CLONE")
                inputs, attrs, compute, attrs_key, ins = (prior,), {}, dtype, (), (prior.index,)
        nodes = self.nodes
        mask = _MASKS.get(shape)
        if mask is None:
            mask = ones_mask(shape)
        entry = (op.name, attrs_key, dtype.name, compute.name, mask, ins)
        sid = _SIDS.get(entry)
        if sid is None:
            sid = _sid(entry)
        node = LazyNode(op, inputs, attrs, dtype, compute, shape, self, len(nodes), sid)
        nodes.append(node)
        if prior is not None:
            self.same_as[node.index] = prior  # what consumers of the clone see
        elif key is not None:
            self.computed[key] = node
        return node

    def mark_view_of(self, node: LazyNode, root: LazyNode, chain: tuple) -> None:
        """Record that ``node`` (folded by fold.py) computes a view of ``root``'s value, and
        put that in its structural entry: whether it is a kernel output depends on it
        (schedule._written), so a plain node of the same ops must not share its plan."""
        node.view_of = (root, chain)
        entry = _ENTRIES.get(node.sid)
        if entry is None:  # the intern table was cleared meanwhile (another thread)
            entry = (node.op.name, node.index)
        node.sid = _sid((*entry, ("view of", root.index)))

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
                registry.lazy_graphs[0] -= 1
            if STATE.graph is self:
                STATE.graph = None  # new ops start a new graph, even if this run fails
            if self.nodes:
                try:
                    _late("runba.jit.runtime", "run_graph")(self)
                except BaseException:
                    # still pending: the next read runs it again (and raises again if the
                    # failure is not transient, a KeyboardInterrupt say) - never hands out
                    # the NaN placeholders, and dispatch keeps routing its tensors here
                    self.realized = False
                    with _PENDING_LOCK:
                        _PENDING.add(self)
                        registry.lazy_graphs[0] += 1
                    raise
            self.arrays = {}
            self.computed = {}
            self.same_as = {}

    def __del__(self):
        # unreachable while pending: its thread ended, or its run failed and its tensors
        # died; it no longer counts (dispatch's lazy-input test is skipped again at 0)
        if not self.realized:
            try:
                with _PENDING_LOCK:
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
# Guards _PENDING and registry.lazy_graphs (``+= 1`` is three bytecodes: two threads could
# lose an update and leave the count at 0 with a graph pending). Re-entrant: Graph.__del__
# takes it, and a collection can run it while this thread holds it.
_PENDING_LOCK = threading.RLock()


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
    with _PENDING_LOCK:
        _PENDING.add(g)
        registry.lazy_graphs[0] += 1
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


def array_key(x: np.ndarray) -> tuple:
    """A concrete array's structural key: dtype code and broadcast pattern, never sizes."""
    dt = x.dtype
    code = _DTYPE_STR.get(dt)
    if code is None:
        code = _DTYPE_STR[dt] = dt.str
    return ("a", code, ones_mask(x.shape))


# the structural key of a Python scalar operand, by type (input_key's last case)
SCALAR_KEYS = {t: ("s", t.__name__) for t in (float, int, bool)}


def input_key(x) -> tuple:
    if isinstance(x, LazyNode):
        return x.index
    if isinstance(x, np.ndarray):
        return array_key(x)
    if x is None:
        return ("none",)
    return ("s", type(x).__name__)


def scalar_value(x) -> tuple:
    """A scalar operand's part of a value key: equal only for the same type and value;
    zero floats by repr (-0.0 == 0.0, but 1 / -0.0 is not 1 / 0.0)."""
    t = type(x)
    if t is int or t is bool or (t is float and x):
        return (t, x)
    return (t.__name__, repr(x))


def structural_key(nodes) -> tuple:
    """The whole graph's structure: ops, attrs, dtypes, ranks and broadcast patterns of
    every node and input, and which nodes are kept (a tensor showing them is alive) - never
    sizes, ids or values (DESIGN §4 Caches). Movement ops run as numpy views at run time, so
    their attrs (which carry sizes) are left out; their effect on rank and broadcast pattern
    is in the output mask. Each node's entry was interned when it was recorded
    (``LazyNode.sid``); a kept node's is odd. :func:`describe_key` spells a key out."""
    key = []
    for n in nodes:
        sid = n.sid
        for r in n.refs:  # LazyNode.alive, in line
            if r() is not None:
                sid += 1
                break
        key.append(sid)
    return tuple(key)
