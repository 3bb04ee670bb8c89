"""The op registry: one :class:`OpDef` per primitive, and the one dispatch path.

Every Tensor operation ends in :func:`dispatch`. In eager mode it runs the op's numpy
interpretation now and, when gradients are needed, records an autograd node. When a capture
handler is installed for the current thread (the JIT), the same call is handed to the handler,
which records a lazy node instead of running anything.
"""

from __future__ import annotations

import warnings

import numpy as np

from runba._state import STATE
from runba.dtypes import FLOATING, bool_, get_default_dtype, result_type, scalar_dtype

# op kinds (DESIGN §2)
ELEMENTWISE = "elementwise"
REDUCE = "reduce"
MOVEMENT = "movement"
MATMUL = "matmul"
EXTERN = "extern"

# what the backward rule needs kept
SAVE_NONE = 0
SAVE_INPUTS = 1
SAVE_OUTPUT = 2
SAVE_BOTH = 3

REGISTRY: dict[str, OpDef] = {}

# PyTorch is silent on 1/0, 0/0, log(0) and overflow (IEEE results); numpy warns. Scoped to
# runba's op modules, where the numpy calls run, so user code keeps numpy's behaviour.
for _msg in ("divide by zero", "invalid value", "overflow", "underflow"):
    warnings.filterwarnings(
        "ignore", message=f"{_msg} encountered", category=RuntimeWarning, module=r"runba\.ops\."
    )

# Tensor methods contributed by the ops modules; runba.tensor binds them at import.
METHODS: dict = {}


def tensor_method(*names):
    """Decorator: also expose the function as ``Tensor.<name>`` for each name given
    (default: the function's own name)."""

    def deco(fn):
        for n in names or (fn.__name__,):
            METHODS[n] = fn
        return fn

    return deco


# Bound by runba.tensor / runba.autograd.engine at import time: the registry sits below them
# in the import order, and a function-level import would cost on every dispatch.
Tensor = None
record_node = None
_make = None  # Tensor._make


class OpDef:
    """Everything every layer needs to know about one primitive.

    * ``expr(o, *operands, **attrs)``: the scalar body of an elementwise op, written against an
      ops handler ``o`` (numpy arrays in eager mode; source text for codegen).
    * ``impl(*arrays, **attrs)``: the numpy implementation of a non-elementwise op.
    * ``out_dtype``: elementwise: ``"same"`` (promoted), ``"float"`` (promoted, integers become
      the default float) or ``"bool"``; others: a function ``(in_dtypes, attrs) -> dtype``
      (default: the first input's dtype).
    * ``vjp(ctx, grad)``: the backward rule, written in Tensor ops so it can itself be recorded;
      ``ctx`` exposes ``inputs``, ``out``, ``attrs``, ``needs`` (the needs-grad mask) and
      ``in_shapes``. Returns one gradient (or None) per tensor input.
    * ``saves``: which of inputs/output the vjp reads.
    * ``reads(needs)``: with ``saves`` holding the inputs, which of them the vjp reads for
      that needs-grad mask (a bool per input); only those must not be written in place
      before backward (``x * w`` with a frozen ``w`` never reads ``x``). Default: all.
    * ``view``: the output shares memory (and the version counter) with input 0.
    """

    __slots__ = (
        "name",
        "kind",
        "expr",
        "impl",
        "out_dtype",
        "vjp",
        "saves",
        "reads",
        "view",
        "differentiable",
        "float_args",
        "promote_from",
        "inplace",
    )

    def __init__(
        self,
        name,
        kind,
        *,
        expr=None,
        impl=None,
        out_dtype=None,
        vjp=None,
        saves=SAVE_NONE,
        reads=None,
        view=False,
        differentiable=True,
        float_args=False,
        promote_from=0,
        inplace=False,
    ):
        self.name = name
        self.kind = kind
        self.expr = expr
        self.impl = impl
        self.out_dtype = out_dtype
        self.vjp = vjp
        self.saves = saves
        self.reads = reads
        self.view = view
        self.differentiable = differentiable and vjp is not None
        # compute integer inputs of a non-elementwise op in the default float (mean, softmax)
        self.float_args = float_args
        # operands before this index take no part in promotion (where's condition)
        self.promote_from = promote_from
        # writes into input 0 and returns it (copy_, index_put_); the tensor's grad_fn is
        # rebased onto this op, and input 0 is never a saved value
        self.inplace = inplace

    def __repr__(self):
        return f"<op {self.name} ({self.kind})>"


def register(op: OpDef) -> OpDef:
    if op.name in REGISTRY:
        raise ValueError(f"op {op.name!r} is registered twice")
    if op.kind == ELEMENTWISE and op.expr is None:
        raise ValueError(f"elementwise op {op.name!r} needs an expr")
    if op.kind != ELEMENTWISE and op.impl is None:
        raise ValueError(f"op {op.name!r} needs an impl")
    REGISTRY[op.name] = op
    return op


class NumpyOps:
    """The eager interpretation of elementwise scalar bodies: each name maps to numpy."""

    add = staticmethod(np.add)
    sub = staticmethod(np.subtract)
    mul = staticmethod(np.multiply)
    div = staticmethod(np.true_divide)
    neg = staticmethod(np.negative)
    abs = staticmethod(np.abs)
    sign = staticmethod(np.sign)
    exp = staticmethod(np.exp)
    log = staticmethod(np.log)
    log1p = staticmethod(np.log1p)
    expm1 = staticmethod(np.expm1)
    sqrt = staticmethod(np.sqrt)
    sin = staticmethod(np.sin)
    cos = staticmethod(np.cos)
    tan = staticmethod(np.tan)
    tanh = staticmethod(np.tanh)
    maximum = staticmethod(np.maximum)
    minimum = staticmethod(np.minimum)
    where = staticmethod(np.where)
    eq = staticmethod(np.equal)
    ne = staticmethod(np.not_equal)
    lt = staticmethod(np.less)
    le = staticmethod(np.less_equal)
    gt = staticmethod(np.greater)
    ge = staticmethod(np.greater_equal)
    logical_and = staticmethod(np.logical_and)
    logical_or = staticmethod(np.logical_or)
    logical_xor = staticmethod(np.logical_xor)
    logical_not = staticmethod(np.logical_not)
    isnan = staticmethod(np.isnan)
    isinf = staticmethod(np.isinf)
    floor = staticmethod(np.floor)
    ceil = staticmethod(np.ceil)
    trunc = staticmethod(np.trunc)
    round = staticmethod(np.rint)  # round half to even, like torch.round
    pow = staticmethod(np.power)
    floor_divide = staticmethod(np.floor_divide)
    copy = staticmethod(np.copy)

    @staticmethod
    def relu(x):
        return np.maximum(x, 0)

    @staticmethod
    def remainder(a, b):
        # Python/torch semantics: the result has the sign of the divisor (np.mod does this).
        return np.mod(a, b)

    @staticmethod
    def sigmoid(x):
        # exp(-|x|) never overflows; pick the branch per sign for stability.
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)

    @staticmethod
    def erf(x):
        from runba.kernels.cpu.special import erf_array

        return erf_array(x)

    @staticmethod
    def gelu(x, approximate="none"):
        from runba.kernels.cpu.special import gelu_array

        return gelu_array(x, approximate)

    @staticmethod
    def cast(x, dtype):
        return x.astype(dtype.np)


NUMPY_OPS = NumpyOps()


# Pending lazy graphs in the process (a one-element list the JIT updates). While it is 0 -
# always, in a program that never uses runba.fuse - dispatch skips the lazy-input test.
lazy_graphs = [0]
# The JIT's recorder for ops reached outside a fused function with a lazy input (laziness is
# contagious, DESIGN §4) and for in-place ops while a graph is pending; bound by runba.jit.
lazy_recorder = None


def dispatch(op: OpDef, inputs: tuple, attrs: dict | None = None):
    """Run (or, under capture, record) ``op`` on ``inputs`` (Tensors and Python scalars)."""
    capture = STATE.capture
    if capture is not None:
        return capture.record(op, inputs, attrs or _NO_ATTRS)
    if lazy_graphs[0]:
        if op.inplace:
            return lazy_recorder.record(op, inputs, attrs or _NO_ATTRS)
        for a in inputs:
            if isinstance(a, Tensor) and a._lazy is not None:
                return lazy_recorder.record(op, inputs, attrs or _NO_ATTRS)
    return run_eager(op, inputs, attrs or _NO_ATTRS)


_NO_ATTRS: dict = {}

# Eager speed (DESIGN §3, "Per-op Python cost is a budget"; examples/benchmarks/
# bench_overhead.py measures it). On a 4x4 tensor one numpy ufunc costs ~1 µs, so everything
# below is written for the common case first: every operand a Tensor of one dtype (no
# promotion table, no casts, no temporary lists), attrs passed only when there are any, numpy
# dtype objects compared by identity before equality, views recognised by ``ndarray.base``
# before falling back to ``np.may_share_memory``. The general cases take the same branches
# they always did.
_ndarray = np.ndarray
_asarray = np.asarray
_may_share_memory = np.may_share_memory


def _broadcast_error(op, inputs, err):
    """numpy's broadcast ValueError, restated like PyTorch's with the op and the shapes."""
    shapes = [tuple(a._data.shape) for a in inputs if isinstance(a, Tensor)]
    try:
        np.broadcast_shapes(*shapes)
    except ValueError:
        a, b = shapes[0], shapes[-1]
        for i in range(1, max(len(a), len(b)) + 1):
            sa = a[-i] if i <= len(a) else 1
            sb = b[-i] if i <= len(b) else 1
            if sa != sb and 1 not in (sa, sb):
                dim = max(len(a), len(b)) - i
                return RuntimeError(
                    f"{op.name}: The size of tensor a ({sa}) must match the size of tensor b "
                    f"({sb}) at non-singleton dimension {dim} (shapes {list(a)} and {list(b)})"
                )
        listed = " and ".join(str(list(sh)) for sh in shapes)
        return RuntimeError(f"{op.name}: shapes {listed} cannot be broadcast together")
    return err


def link_view(op: OpDef, attrs: dict, src, out) -> None:
    """Make ``out``, the result of view op ``op`` on ``src``, a view of ``src``'s storage:
    one version counter, one base, and (when a gradient flows) the chain of views from the
    base, so an in-place write into the view reaches the base's gradient (PyTorch's
    CopySlices; see ops/index.write_through_view)."""
    out._version = src._version
    out._base = src if src._base is None else src._base
    if src._rg and STATE.grad_enabled:
        extra = src._extra
        chain = extra.get("view_chain", ()) if extra is not None and src._base is not None else ()
        out._extra = {"view_chain": (*chain, (op, attrs))}


def run_eager(op: OpDef, inputs: tuple, attrs: dict):
    """The eager path: numpy now, plus an autograd node when a gradient is needed."""
    if op.kind == ELEMENTWISE:
        try:
            # --- output/compute dtype: the fast path when every operand is a Tensor of one dtype
            dt = None
            if not op.promote_from:
                n = len(inputs)
                a = inputs[0]
                if isinstance(a, Tensor):
                    dt = a.dtype
                    if n == 2:
                        b = inputs[1]
                        if not isinstance(b, Tensor) or b.dtype is not dt:
                            dt = None
                    elif n != 1:
                        for b in inputs:
                            if not isinstance(b, Tensor) or b.dtype is not dt:
                                dt = None
                                break
            rule = op.out_dtype
            if dt is not None and rule != "cast":
                compute = dt.compute
                if rule == "same":
                    out_dtype = dt
                elif rule == "bool":
                    out_dtype = bool_
                elif dt.category == FLOATING:  # "float"
                    out_dtype = dt
                else:
                    out_dtype = get_default_dtype()
                    compute = out_dtype.compute
                if compute is dt:
                    if not attrs:  # the common call: operands straight through, no arg tuple
                        if n == 2:
                            result = op.expr(NUMPY_OPS, a._data, b._data)
                        elif n == 1:
                            result = op.expr(NUMPY_OPS, a._data)
                        else:
                            result = op.expr(NUMPY_OPS, *[x._data for x in inputs])
                        args = None
                    else:
                        args = [x._data for x in inputs]
                else:
                    cnp = compute.np
                    args = [x._data.astype(cnp) for x in inputs]
            else:
                out_dtype, compute = elementwise_dtypes(op, inputs, attrs)
                cnp = compute.np
                pf = op.promote_from
                args = [x._data for x in inputs[:pf]] if pf else []
                for x in inputs[pf:] if pf else inputs:
                    if isinstance(x, Tensor):
                        d = x._data
                        args.append(d if d.dtype is cnp or d.dtype == cnp else d.astype(cnp))
                    else:
                        args.append(x)
            if args is not None:
                result = op.expr(NUMPY_OPS, *args, **attrs)
        except ValueError as e:
            # numpy's broadcast error names neither the op nor PyTorch's terms
            raise _broadcast_error(op, inputs, e) from None
    else:
        if len(inputs) == 1:
            # one operand (reductions, views, reshapes): no lists
            a = inputs[0]
            if isinstance(a, Tensor):
                d = a._data
                adt = a.dtype
                if op.float_args and adt.category != FLOATING:
                    d = d.astype(get_default_dtype().np)
                elif adt.compute is not adt and op.kind != MOVEMENT:
                    # float16 computes in float32; views must stay views of the storage
                    d = d.astype(adt.compute.np)
            else:
                d = a
                adt = None
            result = op.impl(d, **attrs) if attrs else op.impl(d)
            if adt is None:
                out_dtype = _non_elementwise_dtype(op, inputs, attrs)
            elif op.out_dtype is not None:
                out_dtype = op.out_dtype([adt], attrs)
            elif op.float_args and adt.category != FLOATING:
                out_dtype = get_default_dtype()
            else:
                out_dtype = adt
        else:
            arrays = []
            dtypes = []  # of the tensor operands, for the out_dtype rule
            for a in inputs:
                if isinstance(a, Tensor):
                    d = a._data
                    adt = a.dtype
                    if op.float_args and adt.category != FLOATING:
                        d = d.astype(get_default_dtype().np)
                    elif adt.compute is not adt and not op.inplace:
                        # in-place ops must write into the float16 storage itself
                        d = d.astype(adt.compute.np)
                    arrays.append(d)
                    dtypes.append(adt)
                else:
                    arrays.append(a)
            result = op.impl(*arrays, **attrs) if attrs else op.impl(*arrays)
            rule = op.out_dtype
            if rule is not None:
                out_dtype = rule(dtypes, attrs)
            else:
                out_dtype = dtypes[0]
                if op.float_args and out_dtype.category != FLOATING:
                    out_dtype = get_default_dtype()

    if type(result) is not _ndarray:
        result = _asarray(result)
    onp = out_dtype.np
    rdt = result.dtype
    if rdt is not onp and rdt != onp:
        result = result.astype(onp)

    if op.inplace:
        return _commit_inplace(op, inputs, attrs)
    out = _make(result, out_dtype)
    if op.view:
        # a numpy view's .base is the array owning the memory (collapsed by numpy), so the
        # common case needs no np.may_share_memory (which costs as much as the op)
        base = result.base
        if base is not None:
            src = inputs[0]
            sd = src._data
            if base is sd or base is sd.base or _may_share_memory(result, sd):
                link_view(op, attrs, src, out)

    if op.differentiable and out_dtype.category == FLOATING and STATE.grad_enabled:
        for a in inputs:
            if isinstance(a, Tensor) and a._rg:
                record_node(op, inputs, attrs, out)
                break
    return out


def _commit_inplace(op: OpDef, inputs: tuple, attrs: dict):
    target = inputs[0]
    target._version[0] += 1
    if STATE.grad_enabled and op.differentiable and target.dtype.category == FLOATING:
        if target._rg or any(isinstance(a, Tensor) and a._rg for a in inputs[1:]):
            record_node(op, inputs, attrs, target)
    return target


def check_inplace(target, op_name: str, sources=()):
    """Reject in-place writes PyTorch rejects, before any data changes."""
    if not STATE.grad_enabled:
        return
    involved = target._rg or any(isinstance(s, Tensor) and s._rg for s in sources)
    if not involved:
        return
    if target._rg and target.grad_fn is None:
        raise RuntimeError(
            f"{op_name}: a leaf Variable that requires grad is being used in an in-place "
            f"operation (shape {list(target._data.shape)}); wrap it in runba.no_grad() or "
            "operate on a clone()"
        )
    if target._base is not None and target._base._rg:
        # views made under grad mode are rewritten through their base (write_through_view);
        # one made under no_grad has no record of how it derives from the base
        raise RuntimeError(
            f"{op_name}: a view (shape {list(target._data.shape)}) created in no_grad mode of "
            "a tensor that requires grad is being modified in place with grad mode enabled; "
            "create the view outside no_grad, or clone() it first"
        )


def elementwise_dtypes(op: OpDef, inputs: tuple, attrs: dict):
    """(output dtype, compute dtype) of an elementwise op under PyTorch promotion."""
    rule = op.out_dtype
    if rule == "cast":
        return attrs["dtype"], inputs[0].dtype.compute
    if op.promote_from:
        inputs = inputs[op.promote_from :]
    first = inputs[0]
    dt = first.dtype if isinstance(first, Tensor) else None
    uniform = dt is not None
    if uniform:
        for a in inputs[1:]:
            if isinstance(a, Tensor):
                if a.dtype is not dt:
                    uniform = False
                    break
            elif dt.category != FLOATING and a is not None:
                # a Python scalar only promotes tensors of a lower category: x * 2.0 stays
                # float32 without the promotion table, an int tensor's result needs it
                uniform = False
                break
    if not uniform:
        ops = []
        for a in inputs:
            if isinstance(a, Tensor):
                ops.append((a.dtype, 2 if a._data.ndim else 1))
            elif a is None:
                continue
            else:
                ops.append((scalar_dtype(a), 0))
        dt = result_type(*ops)
    if rule == "float" and dt.category != FLOATING:
        dt = get_default_dtype()
    compute = dt.compute
    if rule == "bool":
        return bool_, compute
    return dt, compute


def _non_elementwise_dtype(op: OpDef, inputs: tuple, attrs: dict):
    rule = op.out_dtype
    dtypes = []
    for a in inputs:
        if isinstance(a, Tensor):
            dtypes.append(a.dtype)
    if rule is None:
        d = dtypes[0]
        if op.float_args and d.category != FLOATING:
            return get_default_dtype()
        return d
    return rule(dtypes, attrs)
