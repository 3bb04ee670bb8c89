"""Capture: ``runba.fuse`` and the recorder that turns registry ops into lazy nodes.

Inside a fused function (``STATE.capture`` is the :data:`RECORDER`) every op reaching
``registry.dispatch`` comes here, and so does any op outside one that has a lazy input
(laziness is contagious, DESIGN §4). The recorder decides per op:

* elementwise ops, the fusable reductions (sum, amax, amin, prod over floats) and views of
  lazy tensors become lazy nodes: shape and dtype are known now, the value later;
* so does a 2-D float matmul where runba's GEMM exists: at realization its step computes
  the GEMM in blocks of rows, and the kernel of its elementwise consumers (bias, activation)
  runs on each block inside the same ``prange`` chunk, while the block is in cache;
* views of concrete tensors run now (they cost nothing and keep numpy's aliasing);
* everything else - batched or integer matmul, conv's im2col, pooling, gather/scatter,
  in-place writes, float16 operands or results - is a *cut*: the pending graph is realized
  and the op runs eagerly inside it, its result a concrete tensor that later lazy nodes
  read. ``explain`` lists the cuts. So are the cases where eager's result or error depends
  on operand *values* a kernel would not check: integer ``pow`` with a tensor exponent
  (eager rejects negative exponents) and Python integers outside the compute dtype's range
  (numpy's rules).

Eager semantics are the contract, errors included: argument checks run before
``registry.dispatch`` (the same code for both modes), or the op is a cut and eager raises.

Pending graphs read concrete tensors' storage when they run, not when they were recorded, so
every write into that storage first realizes the graphs (any thread's) that read it: in-place
ops (a cut) and ``numpy()`` / ``__array__`` handing out a writable view
(``Recorder.before_write``). Writes through an array obtained *before* the recording
(``from_numpy``'s source, an older ``numpy()`` result) are invisible to runba: the graph
sees them.

Autograd nodes are recorded for lazy results exactly as in eager mode; the tensors they save
stay referenced, so realization materializes them, and ``backward()`` realizes first.
"""

from __future__ import annotations

import functools
import itertools
import weakref

import numpy as np

from runba._state import STATE
from runba.dtypes import FLOATING, INTEGER, bool_, float32, float64
from runba.jit import graph as _graph
from runba.jit import runtime
from runba.jit.fold import fold_view
from runba.jit.graph import _PLACEHOLDERS, SCALAR_KEYS, scalar_value
from runba.kernels import blas, env
from runba.ops import registry

__all__ = ["RECORDER", "fuse", "is_enabled", "realize"]

_FUSABLE_REDUCTIONS = frozenset({"sum", "amax", "amin", "prod"})
# any / all: bool results from inputs of any dtype (x != 0, so NaN counts as true)
_FUSABLE_TESTS = frozenset({"any", "all"})


def is_enabled() -> bool:
    """False when ``RUNBA_JIT=0``: fused functions then run eagerly (to compare)."""
    return env.get("RUNBA_JIT", "1").strip() not in ("0", "false", "off", "no")


class _Probe:
    """An ops handler that accepts every name the codegen can lower (see codegen.SourceOps)."""

    def __getattr__(self, name):
        from runba.jit.codegen import SourceOps

        if not hasattr(SourceOps, name):
            raise AttributeError(name)
        return lambda *a, **k: None


_LOWERABLE: dict[str, bool] = {}


def _expr_lowerable(op, nargs: int, attrs: dict) -> bool:
    ok = _LOWERABLE.get(op.name)
    if ok is None:
        try:
            op.expr(_Probe(), *([None] * nargs), **attrs)
            ok = True
        except AttributeError:
            ok = False
        _LOWERABLE[op.name] = ok
    return ok


def _graph_of(t):
    node = t._lazy
    return node.graph if node is not None else None


class Recorder:
    """The capture handler (``record(op, inputs, attrs)``, the registry's seam)."""

    is_jit = True  # backward() pauses it (backward runs eagerly for now)

    def record(self, op, inputs, attrs):
        if not attrs:
            fast = _FAST.get(op)
            if fast is None:
                fast = _FAST[op] = _fast_op(op, len(inputs))
            if fast:
                out = _record_on_lazy(op, inputs)
                if out is not _GENERAL:
                    return out
                out = _record_fast(op, inputs, attrs)
                if out is not None:
                    return out
        Tensor = registry.Tensor
        graph = STATE.graph
        if graph is not None and len(graph.nodes) >= _graph.MAX_PENDING_NODES:
            # full: run it now, so the operands below are concrete, not nodes of a graph
            # that current_graph() would realize after they were taken
            graph.realize()
            graph = None
        lazy_in = False
        operand = None  # why the first unfit operand cannot reach a kernel (one pass)
        for a in inputs:
            if isinstance(a, Tensor):
                node = a._lazy
                if node is not None:
                    if node.graph is not graph:
                        node.graph.realize()  # another thread's graph: now concrete
                    else:
                        lazy_in = True
                if operand is None:
                    dt = a.dtype
                    if dt.compute is not dt:
                        operand = f"{dt.name} operand: kernels never see {dt.name}"
                    elif a._data.size == 0:
                        operand = "empty tensor"
        if not lazy_in and STATE.capture is None and not op.inplace:
            # reached outside a fused function for a lazy operand of another thread's graph,
            # realized just above: nothing is lazy any more, so the op runs as eager mode
            # would (backward() in a second thread reads the forward's saved values so);
            # in-place ops still take _cut, which realizes the graphs reading their target
            return registry.run_eager(op, inputs, attrs)
        reason = self._cut_reason(op, inputs, attrs, operand)
        if reason is not None:
            return self._cut(op, inputs, attrs, reason)
        if op.kind == registry.MOVEMENT and not lazy_in:
            return registry.run_eager(op, inputs, attrs)
        return self._lazy(op, inputs, attrs)

    # -- why an op cannot become a lazy node (None: it can); ``operand``: record()'s verdict
    def _cut_reason(self, op, inputs, attrs, operand):
        kind = op.kind
        if op.inplace:
            return "in-place write: realizes the graph, then writes eagerly"
        if operand is not None:
            return operand
        if kind == registry.ELEMENTWISE:
            if not _expr_lowerable(op, len(inputs), attrs):
                return "no fused lowering for this elementwise op"
            return None
        if kind == registry.REDUCE:
            if op.name in _FUSABLE_TESTS:
                return None
            if op.name not in _FUSABLE_REDUCTIONS:
                return "reduction without a fused lowering"
            if attrs.get("dtype") is not None or inputs[0].dtype.category != FLOATING:
                return "integer reduction"
            return None
        if kind == registry.MOVEMENT:
            return None
        if kind == registry.MATMUL:
            if _gemm_node_ok(inputs):
                return None
            return "matmul runs on BLAS; its elementwise consumers fuse into one epilogue"
        return f"{op.name} is an extern op (hand-written kernel or numpy)"

    def _cut(self, op, inputs, attrs, reason):
        for fn in runtime.listeners:
            fn("cut", op.name, reason)
        g = STATE.graph
        if g is not None and not g.realized:
            g.realize()
        if op.inplace:
            # other threads' pending graphs that read the target must see its old values
            _graph.realize_readers(inputs[0]._data)
        # the inputs are concrete now; run the op as eager mode would
        prev = STATE.capture
        STATE.capture = None
        try:
            return registry.run_eager(op, inputs, attrs)
        finally:
            STATE.capture = prev

    def linear(self, input, weight, bias):
        """``F.linear`` recorded in one call: the matmul node and the bias add, with the same
        nodes, keys and plan that ``input.matmul(weight.t()) + bias`` records op by op, but
        no eager transpose, no intermediate tensor and one pass of checks (~30 µs less per
        fused call of a Linear layer after a GEMM, measured on Linear 784->512). None where
        that does not hold - a gradient to record, a weight or bias that is lazy, an input
        not 2-D or in another graph, other dtypes or shapes, empty tensors, no GEMM - and
        the caller then records op by op (which raises eager's errors)."""
        Tensor = registry.Tensor
        if not (
            isinstance(input, Tensor)
            and isinstance(weight, Tensor)
            and (bias is None or isinstance(bias, Tensor))
        ):
            return None
        if STATE.grad_enabled and (input._rg or weight._rg or (bias is not None and bias._rg)):
            return None
        dt = input.dtype
        x, w = input._data, weight._data  # x: a placeholder when input is lazy (shape only)
        if (
            weight._lazy is not None
            or weight.dtype is not dt
            or dt not in _GEMM_DTYPES
            or x.ndim != 2
            or w.ndim != 2
            or x.shape[1] != w.shape[1]
            or not x.size
            or not w.size
        ):
            return None
        n = w.shape[0]
        if bias is not None:
            b = bias._data
            if bias._lazy is not None or bias.dtype is not dt or b.shape != (n,):
                return None
        if not blas.available():
            return None
        graph = _graph.current_graph()  # a full one is realized first: input may be concrete now
        node = input._lazy
        if node is not None and node.graph is not graph:
            return None  # another thread's graph: the general path realizes it
        wt = w.T  # what weight.t() would hold
        graph.arrays[id(wt)] = wt
        if node is None:
            x = input._data
            graph.arrays[id(x)] = x
            x_in, x_key = x, _graph.array_key(x)
        else:
            x_in, x_key = node, node.index
        shape = (x.shape[0], n)
        late = _graph._late
        matmul = late("runba.ops.linalg", "MATMUL_OP")
        ins = (x_key, _graph.array_key(wt))
        mm = graph.add_keyed(matmul, (x_in, wt), _NO_ATTRS, dt, dt, shape, (), ins, ())
        if bias is not None:
            graph.arrays[id(b)] = b
            same_as = graph.same_as
            v = same_as.get(mm.index, mm) if same_as else mm
            ins = (mm.index, _graph.array_key(b))
            add = late("runba.ops.elementwise", "ADD")
            mm = graph.add_keyed(add, (mm, b), _NO_ATTRS, dt, dt, shape, (), ins, (v, id(b)))
        return _lazy_result(graph, mm, dt)

    def before_write(self, tensor) -> None:
        """``tensor``'s storage is about to be handed out for writing (``numpy()``): realize
        every pending graph that reads it first, as eager mode would have read it by now."""
        _graph.realize_readers(tensor._data)

    def _lazy(self, op, inputs, attrs):
        Tensor = registry.Tensor
        kind = op.kind
        # one pass over the operands: the node's inputs, their shapes, whether one needs grad
        node_inputs = []
        shapes = []
        rg = False
        for a in inputs:
            if isinstance(a, Tensor):
                node = a._lazy
                node_inputs.append(node if node is not None else a._data)
                shapes.append(a._data.shape)
                rg = rg or a._rg
            else:
                node_inputs.append(a)
        if kind == registry.ELEMENTWISE:
            out_dtype, compute = registry.elementwise_dtypes(op, inputs, attrs)
            reason = _result_cut_reason(op, inputs, out_dtype, compute)
            if reason is not None:
                return self._cut(op, inputs, attrs, reason)
            shape = shapes[0] if shapes else ()
            for s in shapes:
                if s != shape:
                    shape = _broadcast_shapes(op, inputs, shapes)
                    break
        else:
            src = inputs[0]
            out_dtype = registry._non_elementwise_dtype(op, inputs, attrs)
            if out_dtype.compute is not out_dtype:
                return self._cut(op, inputs, attrs, _half_reason(out_dtype))
            compute = out_dtype
            if kind == registry.REDUCE:
                shape = _reduced_shape(src._data.shape, attrs["dims"], attrs["keepdim"])
            elif kind == registry.MATMUL:
                shape = (shapes[0][0], shapes[1][1])  # 2-D @ 2-D (_gemm_node_ok)
            else:
                node = src._lazy
                if (
                    op.name == "reshape"
                    and attrs["view_only"]
                    and node is not None
                    and (node.view_of is not None or node.op.kind == registry.MOVEMENT)
                ):
                    # a strided lazy value: view() raises eager's error here, at the call,
                    # not when the graph runs
                    _graph.view_model(op, _graph.layout_model(node), attrs)
                rule = _VIEW_SHAPES.get(op.name)
                if rule is not None:
                    shape = rule(src._data.shape, attrs)
                else:
                    # the view of the placeholder (zero-strided, so never a copy) has the
                    # output shape
                    shape = op.impl(src._data, **attrs).shape
        g = _graph.current_graph()
        for x in node_inputs:
            if type(x) is _graph.LazyNode and x.graph is not g:
                # another thread began running the operands' graph since they were read
                # (current_graph() started a new one): wait for it, then take the values
                with x.graph.lock:
                    pass
                return self.record(op, inputs, attrs)
        node = None
        if kind == registry.MOVEMENT and isinstance(node_inputs[0], _graph.LazyNode):
            node = fold_view(g, op, attrs, node_inputs[0], shape)  # view -> input strides
        if node is None:
            node = g.add(op, tuple(node_inputs), attrs, out_dtype, compute, tuple(shape))
        out = registry._make(_graph.placeholder(node.shape, out_dtype), out_dtype)
        g.attach(node, out)
        if g.realized and _lost_to_another_thread(g, node, out):
            return self.record(op, inputs, attrs)
        if op.view:
            registry.link_view(op, attrs, inputs[0], out)
        if rg and op.differentiable and out_dtype.category == FLOATING and STATE.grad_enabled:
            registry.record_node(op, inputs, attrs, out)
        return out


# op -> may it take _record_fast (an elementwise op with a fused lowering, no attrs, all
# operands promoted, out_dtype "same", "float" or "bool")
_FAST: dict = {}


def _fast_op(op, nargs: int) -> bool:
    return (
        op.kind == registry.ELEMENTWISE
        and not op.inplace
        and not op.promote_from
        and op.out_dtype in ("same", "float", "bool")
        and _expr_lowerable(op, nargs, {})
    )


_ref = weakref.ref
_LazyNode = _graph.LazyNode
_MASKS = _graph._MASKS
_SIDS = _graph._SIDS
_NO_ATTRS = registry._NO_ATTRS


def _record_fast(op, inputs, attrs):
    """``Recorder.record`` for the common elementwise call, or None to take the general
    path: no pending graph of this thread, or one with room; every tensor operand of one
    float32/float64 dtype, non-empty, concrete or lazy in that graph; the other operands
    Python scalars (a scalar never promotes a float tensor). The checks and results are the
    general path's for exactly these operands, and one pass builds the node's keys
    (``Graph.add``'s loop)."""
    graph = STATE.graph
    if graph is None:
        same_as = None  # a lazy operand is then another graph's: the general path
    elif graph.realized or len(graph.nodes) >= _graph.MAX_PENDING_NODES:
        return None
    else:
        same_as = graph.same_as
    Tensor = registry.Tensor
    dt = None
    shape = None
    broadcast = False
    rg = False
    node_inputs = []
    ins = []
    vals = []
    arrays = None
    for a in inputs:
        if isinstance(a, Tensor):
            d = a._data
            if a.dtype is not dt:
                if dt is not None:
                    return None
                dt = a.dtype
            if not d.size:
                return None
            node = a._lazy
            if node is None:
                node_inputs.append(d)
                ins.append(_graph.array_key(d))
                vals.append(id(d))
                arrays = [d] if arrays is None else arrays + [d]
            elif node.graph is graph:
                node_inputs.append(node)
                i = node.index
                ins.append(i)
                vals.append(same_as.get(i, node) if same_as else node)
            else:
                return None  # another thread's graph: the general path realizes it
            s = d.shape
            if shape is None:
                shape = s
            elif s != shape:
                broadcast = True
            if a._rg:
                rg = True
        else:
            t = type(a)
            key = SCALAR_KEYS.get(t)
            if key is None or (t is int and not -_FLOAT_INT_MAX <= a <= _FLOAT_INT_MAX):
                return None  # (a huge int: the general path cuts, eager raises)
            node_inputs.append(a)
            ins.append(key)
            vals.append((t, a) if a or t is not float else scalar_value(a))  # scalar_value
    if dt is None or dt.category != FLOATING or dt.compute is not dt:
        return None
    if broadcast:
        shape = _broadcast_shapes(
            op, inputs, [a._data.shape for a in inputs if isinstance(a, Tensor)]
        )
    out_dtype = bool_ if op.out_dtype == "bool" else dt
    if graph is None:
        graph = _graph.current_graph()
    if arrays is not None:
        for d in arrays:
            graph.arrays[id(d)] = d
    node = graph.add_keyed(
        op, tuple(node_inputs), attrs, out_dtype, dt, shape, (), tuple(ins), vals
    )
    out = _lazy_result(graph, node, out_dtype)
    if out is not None and rg and op.differentiable and out_dtype is dt and STATE.grad_enabled:
        registry.record_node(op, inputs, attrs, out)
    return out


# _record_on_lazy's "not mine": the caller goes on with _record_fast (None would mean
# "the general path of Recorder.record")
_GENERAL = object()


def _record_on_lazy(op, inputs):
    """The recorder's most common call in one frame (~0.4 µs less per op than going through
    ``_record_fast``, ``Graph.add_keyed`` and ``_lazy_result``): an elementwise op whose
    first operand is a float tensor lazy in this thread's pending graph (not requiring
    grad) and whose second operand, if any, is a Python scalar. It builds the node's value
    key and structural entry exactly as ``Graph.add_keyed`` does. ``_GENERAL`` for any
    other call, and for a repeat of an op the graph already computes (``add_keyed`` makes
    the clone)."""
    a = inputs[0]
    node = getattr(a, "_lazy", None)
    if node is None:
        return _GENERAL
    graph = node.graph
    if graph is not STATE.graph or graph.realized or a._rg:
        return _GENERAL
    nodes = graph.nodes
    dt = a.dtype
    data = a._data  # a's placeholder: the result's shape (and dtype unless it compares)
    if (
        len(nodes) >= _graph.MAX_PENDING_NODES
        or dt.category != FLOATING
        or dt.compute is not dt
        or not data.size
    ):
        return _GENERAL
    i = node.index
    same_as = graph.same_as
    v = same_as.get(i, node) if same_as else node
    shape = node.shape
    out_dtype = bool_ if op.out_dtype == "bool" else dt
    if len(inputs) == 1:
        node_inputs, ins = (node,), (i,)
        key = (op, (), out_dtype, shape, v)
    else:
        b = inputs[1]
        t = type(b)
        skey = SCALAR_KEYS.get(t)
        if skey is None or (t is int and not -_FLOAT_INT_MAX <= b <= _FLOAT_INT_MAX):
            return _GENERAL
        node_inputs, ins = (node, b), (i, skey)
        key = (op, (), out_dtype, shape, v, (t, b) if b or t is not float else scalar_value(b))
    computed = graph.computed
    if key in computed:
        return _GENERAL
    if out_dtype is not dt:
        data = _PLACEHOLDERS.get((shape, out_dtype.np))
        if data is None:
            data = _graph.placeholder(shape, out_dtype)
    mask = _MASKS.get(shape)
    if mask is None:
        mask = _graph.ones_mask(shape)
    entry = (op.name, (), out_dtype.name, dt.name, mask, ins)
    sid = _SIDS.get(entry)
    if sid is None:
        sid = _graph._sid(entry)
    new = _LazyNode(op, node_inputs, _NO_ATTRS, out_dtype, dt, shape, graph, len(nodes), sid)
    nodes.append(new)
    computed[key] = new
    out = registry._make(data, out_dtype)
    out._lazy = new
    new.refs.append(_ref(out))
    if graph.realized and _lost_to_another_thread(graph, new, out):
        return _GENERAL  # recorded again, in a new graph
    return out


def _lazy_result(graph, node, out_dtype, data=None):
    """The tensor showing ``node``'s value (on placeholder ``data``, found when not given),
    or None when another thread ran ``graph`` while the node was added (the general path
    then records the op again)."""
    if data is None:
        data = _PLACEHOLDERS.get((node.shape, out_dtype.np))
        if data is None:
            data = _graph.placeholder(node.shape, out_dtype)
    out = registry._make(data, out_dtype)
    out._lazy = node  # graph.attach, in line
    node.refs.append(_ref(out))
    if graph.realized and _lost_to_another_thread(graph, node, out):
        return None
    return out


def _lost_to_another_thread(graph, node, out) -> bool:
    """Called when ``graph`` was found realized right after ``node`` was added and ``out``
    attached: another thread read one of its values meanwhile (nodes are appended without
    the graph's lock; a lock per op would cost more than the rest of the check). Waits for
    that run to end; True when it did not compute ``node`` (it saw the node before ``out``
    kept it alive, or not at all), so the op must be recorded again in a new graph."""
    with graph.lock:
        pass
    return out._lazy is node


def _gemm_node_ok(inputs) -> bool:
    """Whether a matmul becomes a lazy node: 2-D @ 2-D float32/float64 of one dtype, where
    runba's own GEMM exists. Its step then computes the GEMM in blocks of rows, each block
    followed by its elementwise consumers in the same ``prange`` chunk (runtime.py); other
    matmuls (batched, integer, mixed) run eagerly: a cut."""
    a, b = inputs
    dt = a.dtype
    if a.ndim != 2 or b.ndim != 2 or b.dtype is not dt or dt not in _GEMM_DTYPES:
        return False
    return blas.available()


_GEMM_DTYPES = (float32, float64)


# View ops whose output shape follows from the input shape and attrs (the movement
# functions validated them): cheaper than running op.impl on the placeholder.
_VIEW_SHAPES = {
    "reshape": lambda shape, attrs: attrs["shape"],
    "expand": lambda shape, attrs: attrs["shape"],
    "permute": lambda shape, attrs: tuple([shape[d] for d in attrs["dims"]]),
}


def _half_reason(dtype) -> str:
    return f"{dtype.name} result: kernels never see {dtype.name}"


_IINFO: dict = {}
# the largest Python int that float() converts (anything past it raises OverflowError)
_FLOAT_INT_MAX = int(np.finfo(np.float64).max)


def _result_cut_reason(op, inputs, out_dtype, compute):
    """Why an elementwise op with fusable operands still runs eagerly, judged on its result
    and compute dtypes and its scalar operands (None: it fuses)."""
    if out_dtype.compute is not out_dtype:
        return _half_reason(out_dtype)  # float16 is a storage type (DESIGN §3)
    if compute.category != INTEGER:
        for a in inputs:
            if type(a) is int and not -_FLOAT_INT_MAX <= a <= _FLOAT_INT_MAX:
                # float(a) overflows: eager raises numpy's OverflowError at this op
                return f"Python integer of {a.bit_length()} bits does not convert to float"
        return None
    # a kernel receives Python scalars converted to the compute dtype; numpy compares (and
    # rejects arithmetic with) integers outside its range by their value
    info = _IINFO.get(compute)
    if info is None:
        info = _IINFO[compute] = np.iinfo(compute.np)
    for a in inputs[op.promote_from :]:
        if isinstance(a, (int, np.integer)) and not info.min <= a <= info.max:
            return f"Python integer {a} outside the range of {compute.name}: numpy's semantics"
    if op.name == "pow" and isinstance(inputs[1], registry.Tensor):
        # eager rejects negative exponents by value (a negative Python scalar exponent is
        # rejected by pow() before dispatch)
        return "integer pow with a tensor exponent: eager checks for negative exponents"
    return None


def _broadcast_shapes(op, inputs, shapes) -> tuple:
    """numpy's broadcast of ``shapes``; two of them in Python (np.broadcast_shapes costs
    ~2 µs), anything else, and every error, by numpy (the error names op and shapes)."""
    if len(shapes) == 2:
        a, b = shapes
        if len(a) < len(b):
            a, b = b, a
        out = list(a)
        off = len(a) - len(b)
        for i, s in enumerate(b):
            t = out[off + i]
            if s == t or s == 1:
                continue
            if t != 1:
                break  # incompatible: numpy raises below
            out[off + i] = s
        else:
            return tuple(out)
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError as e:
        raise registry._broadcast_error(op, inputs, e) from None


def _reduced_shape(shape, dims, keepdim):
    if keepdim:
        return tuple(1 if i in dims else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in dims)


RECORDER = Recorder()


def realize(*tensors) -> None:
    """Run everything recorded so far in this thread (``runba.realize()``); with tensors,
    also realize the graphs they belong to (another thread's, say).

    >>> import runba
    >>> y = runba.fuse(lambda x: x * 2)(runba.ones(2))
    >>> runba.realize(); y._lazy is None
    True
    """
    for t in tensors:
        g = _graph_of(t)
        if g is not None:
            g.realize()
    g = STATE.graph
    if g is not None:
        g.realize()


# numbers calls of fused functions and modules (STATE.fuse_call; next() is atomic)
_calls = itertools.count(1)


def _adopt_pending_graph(origin, prev_origin) -> None:
    """A fused call (``origin``) begins: this thread's pending graph counts for it when it
    has no owner yet, or when the call is outermost (``prev_origin`` None) - a pending graph
    counts for the outermost fused call that records into it last: ``head(encoder(x), n)``
    is head's graph, whose structure varies with n (cache.note_specialisation)."""
    g = STATE.graph
    if g is not None and (g.origin is None or (prev_origin is None and g.origin is not origin)):
        g.origin = origin
        g.call = STATE.fuse_call


class _Capturing:
    """Context: record ops of this thread into its pending graph, on behalf of ``origin``
    (the fused function or module: the owner of the graphs for the specialisation count)."""

    __slots__ = ("prev", "prev_origin", "origin")

    def __init__(self, origin=None):
        self.origin = origin

    def __enter__(self):
        self.prev = STATE.capture
        self.prev_origin = STATE.fuse_origin
        STATE.capture = RECORDER
        if self.origin is not None:
            if self.prev_origin is not self.origin:  # a new call, not a nested entry
                STATE.fuse_call = next(_calls)
            STATE.fuse_origin = self.origin
            _adopt_pending_graph(self.origin, self.prev_origin)

    def __exit__(self, *exc):
        STATE.capture = self.prev
        STATE.fuse_origin = self.prev_origin
        return False


def capturing(origin=None):
    return _Capturing(origin)


def fuse(obj=None):
    """Run ``obj`` (an ``nn.Module`` instance or class, or a function) fused.

    Every call runs the Python code (any control flow; sizes may change per call) and
    records lazy nodes; reading a value, ``backward()``, ``optimizer.step()`` or
    ``runba.realize()`` runs them as fused Numba kernels, compiled once per graph structure
    and cached in memory and on disk. A module is marked and returned as is (its
    ``state_dict`` keys do not change); a function gets a wrapper. ``RUNBA_JIT=0`` turns
    fusion off (fused code then runs eagerly).

    >>> import runba
    >>> import runba.nn.functional as F
    >>> @runba.fuse
    ... def block(x, w, b):
    ...     return F.gelu(x @ w + b, approximate="tanh").softmax(-1)
    >>> block(runba.ones(2, 3), runba.ones(3, 4), runba.zeros(4)).sum().item()
    2.0
    """
    if obj is None:
        return fuse
    from runba.nn.module import Module

    if isinstance(obj, Module) or (isinstance(obj, type) and issubclass(obj, Module)):
        if isinstance(obj, Module):
            object.__setattr__(obj, "_runba_fused", True)  # not a submodule or parameter
        else:
            obj._runba_fused = True
        return obj
    if not callable(obj):
        raise TypeError(f"runba.fuse: expected a module or a callable, got {type(obj).__name__}")

    @functools.wraps(obj)
    def fused(*args, **kwargs):
        if not is_enabled():
            return obj(*args, **kwargs)
        # capturing(fused) without the context object (~0.5 µs a call)
        prev, prev_origin = STATE.capture, STATE.fuse_origin
        STATE.capture = RECORDER
        if prev_origin is not fused:  # a new call, not a recursive one
            STATE.fuse_call = next(_calls)
        STATE.fuse_origin = fused
        _adopt_pending_graph(fused, prev_origin)
        try:
            return obj(*args, **kwargs)
        finally:
            STATE.capture = prev
            STATE.fuse_origin = prev_origin

    fused.__runba_fused__ = obj
    return fused
