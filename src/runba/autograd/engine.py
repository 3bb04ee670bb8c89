"""The tape and the backward engine.

Each differentiable result holds a :class:`Node` (``tensor.grad_fn``): the op, its attrs, the
values its vjp needs, and one edge per input (the input's own node, the
:class:`AccumulateGrad` of a leaf, or None). Every node has exactly one output, so the
gradient flowing into a node is one tensor.

:func:`run_backward` walks the graph iteratively (no recursion: a 10,000-op chain is fine):
count each node's consumers, start at the roots, run a node once all its consumers have sent
their gradient, un-broadcast (``sum_to``) and cast centrally, accumulate with ``+``.
"""

from __future__ import annotations

import weakref

from runba._state import STATE
from runba.ops import registry
from runba.ops.registry import SAVE_INPUTS, SAVE_NONE, SAVE_OUTPUT

__all__ = ["Node", "AccumulateGrad", "record_node", "backward", "grad", "run_backward"]

_FREED_MSG = (
    "Trying to backward through the graph a second time (or directly access saved tensors "
    "after they have already been freed). Saved intermediate values of the graph are freed "
    "when you call .backward() or autograd.grad(). Specify retain_graph=True if you need to "
    "backward through the graph a second time or if you need to access saved tensors after "
    "calling backward."
)


def _camel(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in name.strip("_").split("_"))


class Node:
    """One recorded op. Its attributes are the ``ctx`` a vjp receives."""

    __slots__ = (
        "op",
        "attrs",
        "next",
        "needs",
        "in_meta",
        "inputs",
        "saved_out",
        "versions",
        "hooks",
        "retained",
        "released",
        "__weakref__",
    )

    def __init__(self, op, attrs, next_edges, needs, in_meta):
        self.op = op
        self.attrs = attrs
        self.next = next_edges
        self.needs = needs
        self.in_meta = in_meta  # per input: (shape, dtype) for tensors, None for scalars
        self.inputs = None
        self.saved_out = None
        self.versions = None
        self.hooks = None
        self.retained = None
        self.released = False

    @property
    def in_shapes(self):
        return tuple(m[0] if m is not None else None for m in self.in_meta)

    def name(self) -> str:
        return f"{_camel(self.op.name)}Backward0"

    def __repr__(self):
        return f"<{self.name()} object>"

    @property
    def out(self):
        """The op's saved output. It is stored as an alias without ``grad_fn`` so that
        ``out.grad_fn -> node -> out`` is no reference cycle (cycles keep activations alive
        until the garbage collector runs). Under ``create_graph`` the vjp gets an alias whose
        ``grad_fn`` is this node, so second-order gradients flow through it."""
        t = self.saved_out
        if t is None or not STATE.grad_enabled or t._lazy is not None:
            return t
        a = registry.Tensor._make(t._data, t.dtype)
        a._version = t._version
        a._base = t._base
        a.grad_fn = self
        a._rg = True
        return a

    @property
    def next_functions(self):
        return tuple((n, 0) for n in self.next)

    def check_saved(self):
        """Raise if a saved tensor was modified in place since it was saved."""
        if self.released and self.op.saves != SAVE_NONE:
            raise RuntimeError(_FREED_MSG)
        if self.versions is None:
            return
        for t, v in self.versions:
            if t._version[0] != v:
                raise RuntimeError(
                    "one of the variables needed for gradient computation has been modified "
                    f"by an inplace operation: [{t.dtype.name} tensor of shape "
                    f"{list(t._data.shape)}], saved by op '{self.op.name}' ({self.name()}), "
                    f"is at version {t._version[0]}; expected version {v} instead. Hint: "
                    "avoid the in-place operation, or clone() the tensor before it."
                )

    def release(self):
        self.inputs = None
        self.saved_out = None
        self.versions = None
        self.released = True


class AccumulateGrad:
    """The sink for a leaf tensor: runs its hooks and accumulates into ``.grad``."""

    __slots__ = ("variable", "__weakref__")
    next = ()

    def __init__(self, variable):
        self.variable = variable

    def name(self) -> str:
        return "AccumulateGrad"

    def __repr__(self):
        return "<AccumulateGrad object>"


def _acc_node(leaf) -> AccumulateGrad:
    extra = leaf._extra
    if extra is None:
        extra = leaf._extra = {}
    ref = extra.get("acc")
    node = ref() if ref is not None else None
    if node is None:
        node = AccumulateGrad(leaf)
        extra["acc"] = weakref.ref(node)
    return node


def record_node(op, inputs, attrs, out) -> None:
    """Attach a grad node for ``out = op(*inputs)`` (called by dispatch in grad mode)."""
    # Hot path (DESIGN §3 "per-op Python cost is a budget"): one and two tensor operands
    # build the edge/needs/meta tuples directly; other arities take the general loop.
    Tensor = registry.Tensor
    n = len(inputs)
    a = inputs[0]
    if n <= 2 and isinstance(a, Tensor) and (n == 1 or isinstance(inputs[1], Tensor)):
        if a._rg:
            ea = a.grad_fn
            if ea is None:
                ea = _acc_node(a)
        else:
            ea = None
        ma = (a._data.shape, a.dtype)
        if n == 1:
            next_edges, needs, meta = (ea,), (ea is not None,), (ma,)
        else:
            b = inputs[1]
            if b._rg:
                eb = b.grad_fn
                if eb is None:
                    eb = _acc_node(b)
            else:
                eb = None
            next_edges = (ea, eb)
            needs = (ea is not None, eb is not None)
            meta = (ma, (b._data.shape, b.dtype))
    else:
        edges_l = []
        needs_l = []
        meta_l = []
        for a in inputs:
            if isinstance(a, Tensor):
                meta_l.append((a._data.shape, a.dtype))
                if a._rg:
                    edges_l.append(a.grad_fn if a.grad_fn is not None else _acc_node(a))
                    needs_l.append(True)
                    continue
            else:
                meta_l.append(None)
            edges_l.append(None)
            needs_l.append(False)
        next_edges, needs, meta = tuple(edges_l), tuple(needs_l), tuple(meta_l)
    node = Node(op, attrs, next_edges, needs, meta)
    saves = op.saves
    if saves:
        versions = []
        if saves & SAVE_INPUTS:
            node.inputs = inputs
            # an in-place op's target is overwritten: its vjp must not read it
            read = op.reads(needs) if op.reads is not None else None
            for i, a in enumerate(inputs):
                if (i == 0 and op.inplace) or (read is not None and not read[i]):
                    continue  # not read by this vjp: may be written before backward
                if isinstance(a, Tensor):
                    versions.append((a, a._version[0]))
        if saves & SAVE_OUTPUT:
            saved = out
            if out._lazy is None:  # a lazy output's value arrives later, in `out` itself
                saved = registry.Tensor._make(out._data, out.dtype)
                saved._version = out._version  # shared: in-place writes to out are seen
                saved._base = out._base
            node.saved_out = saved
            versions.append((saved, out._version[0]))
        node.versions = versions
    out.grad_fn = node
    out._rg = True


registry.record_node = record_node


def _sum_to(g, shape):
    """Un-broadcast ``g`` to ``shape`` by summing the broadcast dimensions."""
    from runba.ops.reduce import sum as rsum

    gshape = g._data.shape
    lead = len(gshape) - len(shape)
    dims = tuple(range(lead)) + tuple(
        i + lead for i, s in enumerate(shape) if s == 1 and gshape[i + lead] != 1
    )
    if dims:
        g = rsum(g, dims, keepdim=True)
    if lead:
        g = g.reshape(shape)
    return g


def run_backward(roots, root_grads, retain_graph, create_graph, capture=None, accumulate=True):
    """Propagate ``root_grads`` from ``roots`` (nodes) through the graph.

    ``capture`` maps node -> list of result slots (``autograd.grad``); with
    ``accumulate=False`` leaves' ``.grad`` is left alone.

    ``backward()`` is a realization point of the JIT: pending lazy values (the saved tensors
    among them) are computed first, and the backward ops then run eagerly (fusing them is
    the next JIT issue), even when called inside a fused function.
    """
    prev = STATE.capture
    jit_capture = getattr(prev, "is_jit", False)
    if not registry.lazy_graphs[0] and not jit_capture:
        return _run_backward(roots, root_grads, retain_graph, create_graph, capture, accumulate)
    from runba.jit.capture import realize

    realize(*[g for g in root_grads if isinstance(g, registry.Tensor)])
    if jit_capture:
        STATE.capture = None
    try:
        return _run_backward(roots, root_grads, retain_graph, create_graph, capture, accumulate)
    finally:
        STATE.capture = prev


def _run_backward(roots, root_grads, retain_graph, create_graph, capture, accumulate):
    # consumer counts over the reachable graph
    deps: dict = {}
    stack = list(roots)
    seen = set(roots)
    while stack:
        node = stack.pop()
        for nx in node.next:
            if nx is not None:
                deps[nx] = deps.get(nx, 0) + 1
                if nx not in seen:
                    seen.add(nx)
                    stack.append(nx)

    buffers: dict = {}
    shared_ids = set()  # gradients that must not be adopted as a leaf's .grad without a copy
    for node, g in zip(roots, root_grads):
        if node in buffers:
            buffers[node] = buffers[node] + g
        else:
            buffers[node] = g
            shared_ids.add(id(g))
    ready = [n for n in dict.fromkeys(roots) if deps.get(n, 0) == 0]
    results = {} if capture is not None else None
    sent_ids = set()

    prev_mode = STATE.grad_enabled
    STATE.grad_enabled = create_graph
    try:
        while ready:
            node = ready.pop()
            g = buffers.pop(node, None)
            if type(node) is AccumulateGrad:
                if g is not None:
                    leaf = node.variable
                    extra = leaf._extra
                    if extra is not None and extra.get("hooks"):
                        g = _run_hooks(extra["hooks"], g)
                        # a hook may keep the tensor it saw: never adopt it as .grad,
                        # which later backward calls accumulate into in place
                        shared_ids.add(id(g))
                    if capture is not None and node in capture:
                        results[node] = g
                    if accumulate:
                        _accumulate(leaf, g, create_graph, id(g) in shared_ids)
                continue
            grads = None
            if g is not None:
                if node.hooks:
                    g = _run_hooks(node.hooks, g)
                    shared_ids.add(id(g))
                if node.retained is not None:
                    t = node.retained()
                    if t is not None and accumulate:
                        _accumulate(t, g, create_graph, True)
                if capture is not None and node in capture:
                    results[node] = g
                node.check_saved()
                grads = node.op.vjp(node, g)
                if not retain_graph:
                    node.release()
            for i, nx in enumerate(node.next):
                if nx is None:
                    continue
                gi = grads[i] if grads is not None else None
                if gi is not None:
                    shape, dtype = node.in_meta[i]
                    if gi._data.shape != shape:
                        gi = _sum_to(gi, shape)
                    if gi.dtype is not dtype:
                        gi = gi.to(dtype)
                    prev = buffers.get(nx)
                    if prev is None:
                        buffers[nx] = gi
                        if id(gi) in sent_ids:
                            shared_ids.add(id(gi))
                        sent_ids.add(id(gi))
                    else:
                        buffers[nx] = prev + gi
                deps[nx] -= 1
                if deps[nx] == 0:
                    ready.append(nx)
    finally:
        STATE.grad_enabled = prev_mode
    return results


def _run_hooks(hooks, g):
    for hook in list(hooks):
        r = hook(g)
        if r is not None:
            g = r
    return g


def _accumulate(t, g, create_graph, shared):
    if g._lazy is not None and not create_graph:
        g._realize()  # a fused backward's value: concrete before its storage is taken
    if t.grad is None:
        if create_graph:
            t.grad = g
        else:
            data = g._data
            if shared or data.base is not None or not data.flags.writeable:
                data = data.copy()
            t.grad = registry.Tensor._make(data, g.dtype)
    elif create_graph:
        t.grad = t.grad + g
    else:
        if registry.lazy_graphs[0]:
            # a pending graph (another thread's: backward() ran this thread's) may read
            # the old gradient: it runs first, as eager mode would have read it by now
            registry.lazy_recorder.before_write(t.grad)
        t.grad._data += g._data
        t.grad._version[0] += 1


def _root_grad(t, g, i):
    Tensor = registry.Tensor
    if not t._rg:
        raise RuntimeError(
            f"element {i} of tensors does not require grad and does not have a grad_fn"
        )
    if g is None:
        if t._data.size != 1:
            raise RuntimeError(
                f"grad can be implicitly created only for scalar outputs (got a tensor of "
                f"shape {list(t._data.shape)}); pass gradient= to backward()"
            )
        from runba.creation import ones_like

        return ones_like(t)
    if not isinstance(g, Tensor):
        from runba.creation import tensor

        g = tensor(g, dtype=t.dtype)
    if g._data.shape != t._data.shape:
        raise RuntimeError(
            f"Mismatch in shape: grad_output[{i}] has a shape of {list(g._data.shape)} and "
            f"output[{i}] has a shape of {list(t._data.shape)}."
        )
    return g


def _node_of(t):
    return t.grad_fn if t.grad_fn is not None else _acc_node(t)


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """``runba.autograd.backward``: accumulate gradients of ``tensors`` into leaves."""
    Tensor = registry.Tensor
    if isinstance(tensors, Tensor):
        tensors = (tensors,)
    if grad_tensors is None or isinstance(grad_tensors, Tensor):
        grad_tensors = (grad_tensors,) * len(tensors) if grad_tensors is None else (grad_tensors,)
    if retain_graph is None:
        retain_graph = create_graph
    roots = [_node_of(t) for t in tensors]
    grads = [_root_grad(t, g, i) for i, (t, g) in enumerate(zip(tensors, grad_tensors))]
    if inputs is not None:
        if isinstance(inputs, Tensor):
            inputs = (inputs,)
        res = grad(tensors, inputs, grads, retain_graph, create_graph, allow_unused=True)
        for t, gi in zip(inputs, res):
            if gi is not None:
                _accumulate(t, gi, create_graph, True)
        return
    run_backward(roots, grads, retain_graph, create_graph)


def grad(
    outputs,
    inputs,
    grad_outputs=None,
    retain_graph=None,
    create_graph=False,
    allow_unused=None,
    materialize_grads=False,
):
    """Gradients of ``outputs`` with respect to ``inputs``, without touching ``.grad``.

    >>> import runba
    >>> x = runba.tensor([3.0], requires_grad=True)
    >>> (gx,) = runba.autograd.grad((x * x).sum(), x)
    >>> gx
    tensor([6.])
    """
    Tensor = registry.Tensor
    if isinstance(outputs, Tensor):
        outputs = (outputs,)
    single = isinstance(inputs, Tensor)
    if single:
        inputs = (inputs,)
    inputs = tuple(inputs)
    if grad_outputs is None or isinstance(grad_outputs, Tensor):
        grad_outputs = (grad_outputs,) * len(outputs) if grad_outputs is None else (grad_outputs,)
    if retain_graph is None:
        retain_graph = create_graph
    for i, t in enumerate(inputs):
        if not t._rg:
            raise RuntimeError(
                f"One of the differentiated Tensors (input {i}) does not require grad"
            )
    roots = [_node_of(t) for t in outputs]
    grads = [_root_grad(t, g, i) for i, (t, g) in enumerate(zip(outputs, grad_outputs))]
    targets = [_node_of(t) for t in inputs]
    results = run_backward(
        roots, grads, retain_graph, create_graph, capture=set(targets), accumulate=False
    )
    out = []
    for i, (t, node) in enumerate(zip(inputs, targets)):
        g = results.get(node)
        if g is None:
            if materialize_grads:
                from runba.creation import zeros_like

                g = zeros_like(t)
            elif not allow_unused:
                raise RuntimeError(
                    f"One of the differentiated Tensors (input {i}) appears to not have been "
                    "used in the graph. Set allow_unused=True if this is the desired behavior."
                )
        elif not create_graph:
            g = g.detach()
        out.append(g)
    return tuple(out)
