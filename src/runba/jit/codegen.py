"""Codegen: render one kernel group as Python source for numba (the CPU target).

The scalar body of every node comes from its registry ``expr``, evaluated with
:class:`SourceOps` - an ops handler whose methods return source text instead of numpy arrays
(the eager path evaluates the same ``expr`` with numpy). Transcendentals use
``runba.kernels.mathlib`` (vectorisable float32 code; libm does not vectorise without SVML).

A kernel's loop nest is fixed by the group's *layout*: which axes of the full shape survive
(size-1 axes are dropped), which are merged (adjacent axes that every array is contiguous
across), and which axes each array has (a broadcast array lacks some). Sizes are arguments:
one kernel serves every batch size. The outer axes are flattened into rows; a row is either a
vectorisable inner loop (pointwise) or, with reductions, one serial pass per reduction and a
final pass writing the full-size outputs (the row kernel). Without outer axes, the first
inner axis is cut into chunks: a parallel pass per reduction writes per-chunk partials, which
are combined serially - ``prange`` never writes a shared accumulator. Each kernel branches on
size: serial loops below ``PARALLEL_THRESHOLD`` elements, ``prange`` above.
"""

from __future__ import annotations

import re

import numpy as np

from runba.jit.graph import LazyNode
from runba.jit.schedule import FULL, ROW
from runba.kernels.loader import PARALLEL_THRESHOLD

__all__ = ["ArrayArg", "Layout", "SourceOps", "kernel_name", "render"]

_MATHLIB = ("exp", "log", "log1p", "expm1", "tanh", "sigmoid", "erf", "gelu")


def np_type(dtype) -> str:
    """The numba-visible constructor of a runba dtype: ``np.float32``, ``np.bool_``..."""
    name = dtype.np.name
    return "np.bool_" if name == "bool" else f"np.{name}"


class SourceOps:
    """The source-text interpretation of elementwise scalar bodies (see registry.NumpyOps).

    Operands are variable names or small expressions; every method returns an expression.
    ``dtype`` is the node's compute dtype (constants are typed with it: a bare ``0.0`` would
    promote a float32 kernel to float64).
    """

    def __init__(self, dtype, imports: set):
        self.dtype = dtype
        self.t = np_type(dtype)
        self.imports = imports
        self.is_float = dtype.np.kind == "f"

    def _const(self, v):
        return f"{self.t}({v})"

    def _math(self, name, x):
        suffix = {"float32": "_f32", "float64": "_f64"}.get(self.dtype.np.name)
        if suffix is None:
            return f"np.{name}({x})"
        fn = name + suffix
        self.imports.add(fn)
        return f"{fn}({x})"

    # arithmetic
    def add(self, a, b):
        return f"({a} + {b})"

    def sub(self, a, b):
        return f"({a} - {b})"

    def mul(self, a, b):
        return f"({a} * {b})"

    def div(self, a, b):
        return f"({a} / {b})"

    def neg(self, a):
        return f"(-{a})"

    def abs(self, a):
        return f"abs({a})"

    def sign(self, a):
        kind = self.dtype.np.kind
        if kind == "b":  # bool stays bool (eager: numpy has no bool sign)
            return a
        if kind == "u":  # numba's np.sign reads unsigned as signed: sign(uint8 200) = 255
            return f"{self.t}({a} != 0)"
        return f"np.sign({a})"

    def pow(self, a, b):
        if self.is_float:
            # numpy's scalar power and torch take x ** 0.5 as sqrt(x): NaN at -inf (libm's
            # pow gives +inf there), -0.0 at -0.0
            return f"(np.sqrt({a}) if {b} == {self._const(0.5)} else {a} ** {b})"
        return f"({a} ** {b})"

    def floor_divide(self, a, b):
        if self.dtype.np.kind == "i":
            # numba gives 0 for INT_MIN // -1 (at its own width: int64); numpy wraps to
            # INT_MIN, which is -a. x // 0 and INT_MIN % -1 are 0 in both (error_model numpy).
            return f"({self.t}(-{a}) if {b} == -1 else {a} // {b})"
        return f"({a} // {b})"

    def remainder(self, a, b):
        return f"({a} % {b})"  # Python's sign rule (of the divisor), like numpy and torch

    def maximum(self, a, b):
        if self.is_float:  # NaN propagates from either side, like np.maximum
            return _nan_minmax("amax", a, b, self.dtype, self.imports)
        return f"({a} if {a} >= {b} else {b})"

    def minimum(self, a, b):
        if self.is_float:
            return _nan_minmax("amin", a, b, self.dtype, self.imports)
        return f"({a} if {a} <= {b} else {b})"

    def relu(self, a):
        z = self._const(0)
        return f"({z} if {a} <= {z} else {a})"  # NaN stays NaN

    # transcendental
    def exp(self, a):
        return self._math("exp", a)

    def log(self, a):
        return self._math("log", a)

    def log1p(self, a):
        return self._math("log1p", a)

    def expm1(self, a):
        return self._math("expm1", a)

    def tanh(self, a):
        return self._math("tanh", a)

    def sigmoid(self, a):
        return self._math("sigmoid", a)

    def erf(self, a):
        return self._math("erf", a)

    def gelu(self, a, approximate="none"):
        return self._math("gelu_tanh" if approximate == "tanh" else "gelu_erf", a)

    def sqrt(self, a):
        return f"np.sqrt({a})"

    def sin(self, a):
        return f"np.sin({a})"

    def cos(self, a):
        return f"np.cos({a})"

    def tan(self, a):
        return f"np.tan({a})"

    def floor(self, a):
        return f"np.floor({a})" if self.is_float else a

    def ceil(self, a):
        return f"np.ceil({a})" if self.is_float else a

    def trunc(self, a):
        return f"np.trunc({a})" if self.is_float else a

    def round(self, a):
        return f"np.rint({a})" if self.is_float else a

    # comparisons and logic
    def eq(self, a, b):
        return f"({a} == {b})"

    def ne(self, a, b):
        return f"({a} != {b})"

    def lt(self, a, b):
        return f"({a} < {b})"

    def le(self, a, b):
        return f"({a} <= {b})"

    def gt(self, a, b):
        return f"({a} > {b})"

    def ge(self, a, b):
        return f"({a} >= {b})"

    def logical_and(self, a, b):
        return f"(({a} != 0) & ({b} != 0))"

    def logical_or(self, a, b):
        return f"(({a} != 0) | ({b} != 0))"

    def logical_xor(self, a, b):
        return f"(({a} != 0) ^ ({b} != 0))"

    def logical_not(self, a):
        return f"({a} == 0)"

    def isnan(self, a):
        return f"({a} != {a})" if self.is_float else "False"

    def isinf(self, a):
        return f"(abs({a}) == np.inf)" if self.is_float else "False"

    def where(self, c, a, b):
        return f"({a} if {c} else {b})"

    # conversions
    def copy(self, a, order="K"):
        return a

    def cast(self, a, dtype):
        if dtype.np.name == "bool":
            return f"({a} != 0)"
        if dtype.np.kind == "u" and self.is_float:
            # numpy (and torch) wrap out-of-range floats through int64: -3.7 -> 253 for
            # uint8; LLVM's direct float-to-unsigned conversion would saturate to 0
            return f"{np_type(dtype)}(np.int64({a}))"
        return f"{np_type(dtype)}({a})"


# ----------------------------------------------------------------------------- layout
class ArrayArg:
    """One array a kernel reads: ``ref`` is ``("in", node, pos)`` (an input array of a
    node: a concrete tensor's storage) or ``("node", i)`` (a value computed by an earlier
    step); ``dims`` the axes of the full shape it has (after alignment: a broadcast array
    lacks the axes it is broadcast along); ``role`` the context that reads it (FULL: per
    element, aligned to the full shape; ROW: per row, aligned to the row shape)."""

    __slots__ = ("ref", "dims", "role")

    def __init__(self, ref, dims, role):
        self.ref = ref
        self.dims = dims
        self.role = role

    def __repr__(self):
        return f"ArrayArg({self.ref}, {self.dims}, {self.role})"


class Layout:
    """The loop nest of one group call: ``axes`` (tuples of full-shape axes merged into one
    loop; outer first), ``n_outer`` of them are flattened into rows, the rest are inner loops;
    ``arg_axes[k]`` / ``out_axes[k]`` the loop indices each array is indexed with.

    ``strided[k]`` (args, then outputs; None: every array is C-contiguous) is None for an
    array indexed as usual and, for a non-contiguous one, which of its axes take a stride
    argument (False: the axis has unit stride). Such an array arrives as a flat buffer and
    is indexed ``a[np.uintp(i0 * a_s0 + i1)]``: numba cannot vectorise its own indexing of
    a non-contiguous ('A' layout) array (a permuted 3-D row pass: 1.9 ms vs 0.36 ms).
    """

    __slots__ = ("axes", "n_outer", "arg_axes", "out_axes", "strided")

    def __init__(self, axes, n_outer, arg_axes, out_axes, strided=None):
        self.axes = axes
        self.n_outer = n_outer
        self.arg_axes = arg_axes
        self.out_axes = out_axes
        self.strided = strided

    def key(self):
        return (self.axes, self.n_outer, self.arg_axes, self.out_axes, self.strided)

    def with_strided(self, strided):
        """This layout with ``strided`` set (the runtime decides it from the arrays)."""
        return Layout(self.axes, self.n_outer, self.arg_axes, self.out_axes, strided)


def kernel_name(group, nodes) -> str:
    """``E_add_tanh_mul_f32`` (pointwise) or ``R_amax_sub_exp_sum_f32`` (with reductions)."""
    names = []
    for i in group.nodes:
        n = nodes[i].op.name
        if n not in names:
            names.append(n)
    shown = names[:5] + ([f"{len(names) - 5}more"] if len(names) > 5 else [])
    dt = nodes[group.outputs[0]].dtype.np.name if group.outputs else "x"
    short = {"float32": "f32", "float64": "f64", "int64": "i64", "int32": "i32", "bool": "b8"}
    prefix = "R" if group.reductions else "E"
    return f"{prefix}_{'_'.join(shown)}_{short.get(dt, dt)}"


# ----------------------------------------------------------------------------- render
_INIT = {"sum": "0", "prod": "1", "amax": "-np.inf", "amin": "np.inf", "any": "0", "all": "1"}


def _nan_minmax(op_name, a, b, dtype, imports):
    """Float max/min as mathlib's llvm.maximum/minimum intrinsics: NaN propagates (numpy's
    rule) and, unlike a compare-and-select, a loop-carried max vectorises (16x on a row)."""
    fn = "nan_maximum" if op_name == "amax" else "nan_minimum"
    imports.add(fn)
    t = np_type(dtype)
    return f"{fn}({t}({a}), {t}({b}))"


def _update(op_name, acc, v, dtype, imports):
    """The accumulator update of reduction ``op_name`` with ``v`` (source text)."""
    if op_name in ("amax", "amin") and dtype.np.kind == "f":
        return _nan_minmax(op_name, acc, v, dtype, imports)
    if op_name == "any":  # bitwise, not `or`: no branch, so the loop vectorises
        return f"{acc} | ({v} != 0)"
    if op_name == "all":
        return f"{acc} & ({v} != 0)"
    if op_name == "sum":
        return f"{acc} + {v}"
    if op_name == "prod":
        return f"{acc} * {v}"
    if op_name == "amax":
        return f"{v} if {v} > {acc} else {acc}"
    return f"{v} if {v} < {acc} else {acc}"


# numpy kind -> the itemsize numba's arithmetic widens it to (bool: any int is wider)
_WIDENED = {"i": 8, "u": 8, "b": 2}


class _Emitter:
    def __init__(self, group, nodes, args, layout, scalar_of):
        self.group = group
        self.nodes = nodes
        self.args = args
        self.layout = layout
        self.scalar_of = scalar_of  # (node, pos) -> scalar argument name
        self.arg_of = {(a.ref, a.role): k for k, a in enumerate(args)}
        self.imports: set = set()
        # loop index variable of each layout axis
        self.var = {ax: f"i{ax}" for ax in range(len(layout.axes))}
        # Value names follow the group's own order, not graph positions: the same group
        # anywhere in any graph renders the same source (one compile, one disk entry).
        self.local = {i: k for k, i in enumerate(group.nodes)}
        # array name -> its stride spec (Layout.strided), for the non-contiguous ones
        names = [f"a{k}" for k in range(len(args))] + [f"o{k}" for k in range(len(group.outputs))]
        self.strided = {n: spec for n, spec in zip(names, layout.strided or ()) if spec is not None}
        # Row kernels: values computed in one pass and read again in a later pass are kept in
        # a per-row scratch buffer w<k> instead of being recomputed (softmax's exp).
        self.stash: dict = {}  # node -> pass that computes and stores it
        self.stash_index = ""
        self.pass_id = 0
        self.emitted: dict = {}  # pass -> nodes computed in that pass
        # Scalar affine chains (see _affine_chain): coefficients combined once, before the
        # loops, in f<k> variables (prologue lines; expression -> name)
        self.prologue: list = []
        self.coefs: dict = {}
        self.uses: dict = {}  # node -> operand slots of this group's nodes that read it
        for i in group.nodes:
            for x in nodes[i].inputs:
                if isinstance(x, LazyNode):
                    self.uses[x.index] = self.uses.get(x.index, 0) + 1
        self.kept = set(group.outputs) | set(group.reductions)

    def name(self, i, kind="v"):
        return f"{kind}{self.local[i]}"

    def access(self, name, axes):
        if not axes:
            return f"{name}[0]"
        spec = self.strided.get(name)
        if spec is not None:  # a flat buffer: unsigned offsets, so no wraparound select
            terms = [
                f"np.uintp({self.var[a]}) * {name}_s{j}" if has else f"np.uintp({self.var[a]})"
                for j, (a, has) in enumerate(zip(axes, spec))
            ]
            return f"{name}[{' + '.join(terms)}]"
        return f"{name}[{', '.join(self.var[a] for a in axes)}]"

    def value(self, node_i, pos, ctx_role, memo, lines, indent):
        """Expression for input ``pos`` of node ``node_i``."""
        x = self.nodes[node_i].inputs[pos]
        if isinstance(x, LazyNode) and self.group.roles.get(x.index) is not None:
            return self.emit(x.index, memo, lines, indent)
        if isinstance(x, LazyNode) or isinstance(x, np.ndarray):  # numpy scalars: scalars
            ref = ("node", x.index) if isinstance(x, LazyNode) else ("in", node_i, pos)
            k = self.arg_of[(ref, ctx_role)]
            return self.access(f"a{k}", self.layout.arg_axes[k])
        if x is None:
            return "None"
        return self.scalar_of[(node_i, pos)]

    def emit(self, i, memo, lines, indent):
        for scope in memo:
            if i in scope:
                return scope[i]
        node = self.nodes[i]
        role = self.group.roles[i]
        compute = node.compute
        body = self._affine_chain(i, memo, lines, indent)
        if body is None:
            pf = node.op.promote_from
            operands = []
            for pos, x in enumerate(node.inputs):
                v = self.value(i, pos, role, memo, lines, indent)
                if pos >= pf and x is not None:
                    vdt = _dtype_of(x, compute)
                    if vdt is not compute and vdt != compute:
                        v = SourceOps(compute, self.imports).cast(v, compute)
                operands.append(v)
            body = node.op.expr(SourceOps(compute, self.imports), *operands, **node.attrs)
        if node.dtype != compute and node.dtype.np.name != "bool":
            body = f"{np_type(node.dtype)}({body})"
        elif node.dtype == compute and _WIDENED.get(compute.np.kind, 0) > compute.np.itemsize:
            # numba computes narrow ints in int64/uint64 and bools as ints: wrap the value to
            # its dtype here, as eager's numpy result is, before another op reads it
            body = f"{np_type(node.dtype)}({body})"
        name = self.name(i)
        lines.append(" " * indent + f"{name} = {body}")
        if self.stash.get(i) == self.pass_id:
            lines.append(" " * indent + f"{self.name(i, 'w')}[{self.stash_index}] = {name}")
        self.emitted.setdefault(self.pass_id, set()).add(i)
        memo[-1][i] = name
        return name

    def pass_scope(self, memo, pass_id):
        """Memo for a new inner-loop pass: stashed values of earlier passes are loads."""
        self.pass_id = pass_id
        seeded = {
            i: f"{self.name(i, 'w')}[{self.stash_index}]"
            for i, p in self.stash.items()
            if p < pass_id
        }
        return memo + [seeded]

    # -- scalar affine chains: ``((v * a + b) - c) * d`` is ``v * A + B`` with A = a * d and
    # B = (b - c) * d computed once before the loops. Each op of such a chain costs a vector
    # instruction per element; the folded chain costs one FMA (the 5-tanh chain's stages
    # join two: 7% faster). Reassociation the kernels' ``reassoc`` flag allows anyway;
    # |A| or |B| can overflow where the chain step by step would not (docs/numerics.md).

    def _affine_step(self, i):
        """``(pos, kind)`` when node ``i`` is ``v * s``, ``v + s``, ``v - s`` or ``s - v``
        (kind "mul", "add", "sub", "rsub") on a float value or array ``v`` (operand ``pos``)
        and a scalar argument ``s``, all in one dtype; else None."""
        node = self.nodes[i]
        name = node.op.name
        if name not in _AFFINE_OPS or node.attrs or len(node.inputs) != 2:
            return None
        compute = node.compute
        if node.dtype is not compute or compute.np.kind != "f":
            return None
        for pos in (0, 1):
            x = node.inputs[pos]
            if isinstance(x, LazyNode):
                role = self.group.roles.get(x.index)
                ok = x.dtype is compute and (role is None or role == self.group.roles[i])
            else:
                ok = isinstance(x, np.ndarray) and x.dtype == compute.np
            if ok and (i, 1 - pos) in self.scalar_of:
                return pos, "rsub" if name == "sub" and pos == 1 else name
        return None

    def _absorbable(self, j, memo):
        """Node ``j``'s affine step when it may be folded into its one consumer (read once,
        not written, not stashed, not computed yet in this pass); else None."""
        if j in self.kept or j in self.stash or self.uses.get(j, 0) != 1:
            return None
        if any(j in scope for scope in memo):
            return None
        return self._affine_step(j)

    def _coef(self, a, op, b, compute):
        """Prologue variable holding ``a op b`` (either may be None: 1 for "*", 0 else)."""
        if op == "*":
            if a is None or b is None:
                return b if a is None else a
        elif op == "neg":
            expr = f"-{a}" if a is not None else SourceOps(compute, self.imports)._const(-1.0)
            return self._named(expr)
        elif a is None:
            return b if op == "+" else self._named(f"-{b}")
        elif b is None:
            return a
        return self._named(f"{a} {op} {b}")

    def _named(self, expr):
        name = self.coefs.get(expr)
        if name is None:
            name = self.coefs[expr] = f"f{len(self.coefs)}"
            self.prologue.append(f"    {name} = {expr}")
        return name

    def _affine_chain(self, i, memo, lines, indent):
        """Node ``i`` as ``v * A + B`` when it ends a chain of at least two affine steps
        whose inner steps are absorbable; else None."""
        step = self._affine_step(i)
        if step is None:
            return None
        chain = [(i, *step)]
        while True:
            j, pos, _ = chain[-1]
            x = self.nodes[j].inputs[pos]
            inner = self._absorbable(x.index, memo) if isinstance(x, LazyNode) else None
            if inner is None:
                break
            chain.append((x.index, *inner))
        if len(chain) < 2:
            return None
        compute = self.nodes[i].compute
        j, pos, _ = chain[-1]
        v = self.value(j, pos, self.group.roles[j], memo, lines, indent)
        a = b = None  # v * a + b, None meaning 1 and 0
        for j, pos, kind in reversed(chain):
            s = self.scalar_of[(j, 1 - pos)]
            if kind == "mul":
                a, b = self._coef(a, "*", s, compute), (b and self._coef(b, "*", s, compute))
            elif kind == "add":
                b = self._coef(b, "+", s, compute)
            elif kind == "sub":
                b = self._coef(b, "-", s, compute)
            else:  # s - (v * a + b) = v * (-a) + (s - b)
                a = self._coef(a, "neg", None, compute)
                b = self._coef(s, "-", b, compute)
        term = v if a is None else f"{v} * {a}"
        return term if b is None else f"({term} + {b})"


# elementwise ops an affine chain is made of (_Emitter._affine_step)
_AFFINE_OPS = frozenset(("mul", "add", "sub"))


def _dtype_of(x, compute):
    if isinstance(x, LazyNode):
        return x.dtype
    if isinstance(x, np.ndarray):
        from runba.dtypes import from_numpy_dtype

        return from_numpy_dtype(x.dtype)
    return compute  # scalars are passed already in the compute dtype


_LOCAL = re.compile(
    r"\b(v\d+|w\d+|i\d+|k\d+|p\d+|t\d+|q|acc|lo|hi|glo|ghi|rlo|rhi|by_cols|c|nch|tb|te)\b"
)


def _chunk_loop(lines, ind, ax, lo, hi) -> int:
    """Open a loop of axis ``ax`` over the chunk [lo, hi); return the body's indent.

    k runs from 0 and the index is ``uintp(lo + k)``: numba then knows the index is not
    negative and emits no wraparound select, which otherwise keeps LLVM from vectorising the
    loop (measured 1.25x on a tiled tanh chain). Only array subscripts use ``i<ax>`` (uint64
    mixed with int64 arithmetic would promote to float64 in numba)."""
    lines.append(" " * ind + f"for k{ax} in range({hi} - {lo}):")
    lines.append(" " * (ind + 4) + f"i{ax} = np.uintp({lo} + k{ax})")
    return ind + 4


_PRANGE = re.compile(r"^( *)for \w+ in prange\(.*\):$")


def _prefer_wide_vectors(body):
    """``body`` with mathlib's ``prefer_wide_vectors()`` first in the function and first in
    every ``prange`` body (numba outlines each into a function of its own), so LLVM may use
    the host's full vector width (AVX-512) in all of them."""
    out = ["    prefer_wide_vectors()"]
    for line in body:
        out.append(line)
        m = _PRANGE.match(line)
        if m:
            out.append(f"{m.group(1)}    prefer_wide_vectors()")
    return out


def _parallel_names(lines, suffix="_"):
    """The parallel branch with its own local names: numba's parfor pass rejects a prange
    body that reuses variables of the serial branch (UnsupportedRewriteError). A second
    parallel branch takes another ``suffix``."""
    return [_LOCAL.sub(rf"\1{suffix}", line) for line in lines]


# Relative cost of recomputing one node in a later pass (a scratch store + load costs ~2).
_HEAVY = {"div": 4, "sqrt": 4, "pow": 8, "sin": 8, "cos": 8, "tan": 8, **dict.fromkeys(_MATHLIB, 8)}
_STASH_MIN_COST = 4
# Flat pointwise kernels with this many transcendentals run one loop per transcendental over
# tiles of _TILE elements (1 KiB of float32 per stage value: L1-resident). Measured on the
# Xeon, bench_fusion's 5-tanh chain on 1M float32, 2 threads: tiles of 128-256 0.75 ms,
# 512 0.79, 1024 0.83-0.87 (scratch timing; likely 4 KiB aliasing between stage buffers).
_TILE_MIN_HEAVY = 3
_TILE = 256
# Column kernels (leading-axis reductions) split their rows into chunks with per-chunk
# partials of every kept position when each chunk gets at least this many rows; with fewer
# (a sum over the 2 of (4096, 2, 1024)) they split the kept positions instead.
COLUMN_MIN_ROWS = 4


def _recompute_cost(i, group, nodes, red_set, stash):
    """Ops a later pass would redo to recompute node ``i`` (its FULL-role subtree)."""
    cost, todo, seen = 0, [i], set()
    while todo:
        j = todo.pop()
        if j in seen or j in red_set or (j != i and j in stash):
            continue
        seen.add(j)
        if group.roles.get(j) != FULL:
            continue
        cost += _HEAVY.get(nodes[j].op.name, 1)
        todo.extend(x.index for x in nodes[j].inputs if isinstance(x, LazyNode))
    return cost


def _stages(group, nodes, layout):
    """The transcendental nodes of ``group`` when it renders as a staged chain over tiles
    (one loop per stage, see ``_TILE``), else None."""
    if group.reductions or layout.n_outer != 0 or len(layout.axes) != 1:
        return None
    heavy = [i for i in group.nodes if nodes[i].op.name in _MATHLIB]
    return heavy if len(heavy) >= _TILE_MIN_HEAVY else None


def gemm_structure(group, nodes, layout):
    """How ``group`` with ``layout`` can run inside the row blocks of a GEMM that computes
    one of its inputs (the GEMM's output C, read over the group's whole shape, which is C's
    (M, N)): ``"flat"`` (one merged pointwise loop: rows [lo, hi) of C are elements
    [lo * N, hi * N)), ``"rows"`` (one outer axis, C's rows: a row kernel or a pointwise
    kernel with a broadcast operand), or None (column kernels, staged chains, other
    layouts: the GEMM runs first, then the kernel)."""
    if group.perm is not None or group.lead or _stages(group, nodes, layout) is not None:
        return None
    n_axes = len(layout.axes)
    if layout.n_outer == 0 and n_axes == 1 and not group.reductions:
        return "flat"
    if layout.n_outer == 1 and n_axes == 2 and layout.axes[0] == (0,):
        return "rows"
    return None


#: The trailing parameters of a GEMM-epilogue kernel: ``blas.BlockedGemm.args``, in order.
GEMM_PARAMS = (
    "g_fn",
    "g_iw",
    "g_ta",
    "g_tb",
    "g_m",
    "g_n",
    "g_k",
    "g_alpha",
    "g_a",
    "g_lda",
    "g_ar",
    "g_b",
    "g_ldb",
    "g_bc",
    "g_c",
    "g_cr",
    "g_cc",
)


def render(
    group, nodes, args, scalars, layout, target: str = "cpu", gemm: bool = False, scalar_array=False
):
    """Source and function name of the kernel for ``group`` with ``layout``.

    ``args`` are the group's :class:`ArrayArg` inputs (each with ``role``), ``scalars`` the
    ``(node, pos)`` of its scalar operands. The kernel's parameters are the loop sizes,
    then ``a0..`` (inputs), ``s0..`` (scalars; with ``scalar_array`` one array ``s`` of
    them, all of one type: one argument for numba to type instead of many), ``o0..``
    (outputs, ``group.outputs`` order)
    and ``chunks``, the parallel chunk count (passed in: reading numba's thread count inside
    a kernel makes it uncacheable).

    With ``gemm`` (``gemm_structure`` must allow it) the kernel also computes the GEMM
    whose output C the group reads: each ``prange`` chunk calls BLAS for its block of C's
    rows (``GEMM_PARAMS``, after ``chunks``), then runs the group on those rows while they
    are in cache; a pointwise group on a C wider than tall takes blocks of C's columns
    instead. There is no serial branch: such a GEMM is big enough for every thread.
    """
    if target != "cpu":
        raise NotImplementedError(f"codegen target {target!r} (only 'cpu' exists)")
    scalar_of = {ref: f"s{k}" for k, ref in enumerate(scalars)}
    m = layout.n_outer
    n_inner = len(layout.axes) - m
    red_set = set(group.reductions)
    structure = None
    if gemm:
        structure = gemm_structure(group, nodes, layout)
        if structure is None:
            raise ValueError("render(gemm=True) for a group gemm_structure() rejects")
    elif (stages := _stages(group, nodes, layout)) is not None:
        # A long flat chain of transcendentals: one loop per transcendental over L1-sized
        # tiles. Inlined into one loop body, five tanh ran 2x slower than five loops (the
        # body outgrows the 16 vector registers and spills).
        em = _Emitter(group, nodes, args, layout, scalar_of)
        em.stash = {i: p for p, i in enumerate(stages)}
        em.stash_index = f"k{m}"
        return _render(
            em, group, nodes, args, scalars, layout, stages=stages, scalar_array=scalar_array
        )
    stash: dict = {}
    # Row kernels with one inner axis keep expensive cross-pass values in scratch rows:
    # render, find values a later pass recomputes, stash the latest one, render again.
    while True:
        em = _Emitter(group, nodes, args, layout, scalar_of)
        em.stash = dict(stash)
        em.stash_index = f"i{m}"
        src, name = _render(
            em, group, nodes, args, scalars, layout, gemm=structure, scalar_array=scalar_array
        )
        if m < 1 or n_inner != 1 or not group.reductions or group.lead:
            return src, name
        best = None
        for q, later in em.emitted.items():
            for p, earlier in em.emitted.items():
                if p >= q:
                    continue
                for i in earlier & later:
                    if i in stash:
                        continue
                    if _recompute_cost(i, group, nodes, red_set, stash) < _STASH_MIN_COST:
                        continue
                    if best is None or i > best[0]:
                        best = (i, p)
        if best is None:
            return src, name
        stash[best[0]] = best[1]


def _render(em, group, nodes, args, scalars, layout, stages=None, gemm=None, scalar_array=False):
    name = kernel_name(group, nodes)
    if gemm:
        name = "G_matmul_" + name[2:]
    n_axes = len(layout.axes)
    m = layout.n_outer
    sizes = [f"n{a}" for a in range(n_axes)]
    params = sizes + [f"a{k}" for k in range(len(args))]
    params += ["s"] if scalar_array else [f"s{k}" for k in range(len(scalars))]
    params += [f"o{k}" for k in range(len(group.outputs))]
    for n, spec in em.strided.items():  # stride arguments, in array order
        params += [f"{n}_s{j}" for j, has in enumerate(spec) if has]
    params += ["chunks"]
    if gemm:
        params += list(GEMM_PARAMS)

    outer_axes = list(range(m))
    inner_axes = list(range(m, n_axes))
    row_outs = [(k, i) for k, i in enumerate(group.outputs) if group.roles[i] == ROW]
    full_outs = [(k, i) for k, i in enumerate(group.outputs) if group.roles[i] == FULL]
    reds = group.reductions
    red_set = set(reds)
    row_nodes = [i for i in group.nodes if group.roles[i] == ROW and i not in red_set]

    def deps_done(i, done):
        for x in nodes[i].inputs:
            if isinstance(x, LazyNode) and group.roles.get(x.index) == ROW:
                if x.index in red_set and x.index not in done:
                    return False
                if x.index not in red_set and not deps_done(x.index, done):
                    return False
        return True

    def row_prologue(lines, ind, memo, done, emitted):
        for i in row_nodes:
            if i not in emitted and deps_done(i, done):
                em.emit(i, memo, lines, ind)
                emitted.add(i)

    def inner_loops(lines, ind, lo_hi=None, parallel=False):
        """Open the inner loops; the first inner axis may run over a chunk [lo, hi), or
        (``parallel``) be a ``prange``."""
        for k, ax in enumerate(inner_axes):
            if k == 0 and lo_hi is not None:
                ind = _chunk_loop(lines, ind, ax, *lo_hi)
            else:
                loop = "prange" if k == 0 and parallel else "range"
                lines.append(" " * ind + f"for i{ax} in {loop}(n{ax}):")
                ind += 4
        return ind

    def full_pass(lines, ind, memo, lo_hi=None):
        ind2 = inner_loops(lines, ind, lo_hi)
        memo2 = em.pass_scope(memo, len(reds))
        for k, i in full_outs:
            v = em.emit(i, memo2, lines, ind2)
            lines.append(" " * ind2 + f"{em.access(f'o{k}', layout.out_axes[k])} = {v}")

    def reduce_pass(lines, ind, memo, r, acc, pass_id, lo_hi=None):
        node = nodes[r]
        t = np_type(node.dtype)
        lines.append(" " * ind + f"{acc} = {t}({_INIT[node.op.name]})")
        ind2 = inner_loops(lines, ind, lo_hi)
        memo2 = em.pass_scope(memo, pass_id)
        v = em.value(r, 0, FULL, memo2, lines, ind2)
        lines.append(
            " " * ind2 + f"{acc} = {_update(node.op.name, acc, v, node.dtype, em.imports)}"
        )

    def row_indices(lines, ind):
        """The outer axes' indices from the row number q. Each quotient gets its own name:
        reassigning one that started as the prange index is "Overwrite of parallel loop
        index" to numba."""
        prev = "q"
        for ax in reversed(outer_axes[1:]):
            lines.append(" " * ind + f"i{ax} = {prev} % n{ax}")
            lines.append(" " * ind + f"t{ax} = {prev} // n{ax}")
            prev = f"t{ax}"
        if outer_axes:
            lines.append(" " * ind + f"i0 = {prev}")

    def row_body(lines, ind):
        """One row (m >= 1): indices from q, then stages, row outputs, the full pass."""
        row_indices(lines, ind)
        memo = [{}]
        done, emitted = set(), set()
        row_prologue(lines, ind, memo, done, emitted)
        for p, r in enumerate(reds):
            acc = em.name(r)
            reduce_pass(lines, ind, memo, r, acc, p)
            memo[0][r] = acc
            done.add(r)
            row_prologue(lines, ind, memo, done, emitted)
        for k, i in row_outs:
            v = em.emit(i, memo, lines, ind)
            lines.append(" " * ind + f"{em.access(f'o{k}', layout.out_axes[k])} = {v}")
        if full_outs:
            full_pass(lines, ind, memo)

    def scratch(lines, ind):
        for i in sorted(em.stash, key=em.local.get):
            t = np_type(nodes[i].dtype)
            lines.append(" " * ind + f"{em.name(i, 'w')} = np.empty(n{m}, {t})")

    def tiled(lines, ind, parallel):
        """Flat pointwise chain in stages: per chunk, per tile, one loop per stage root
        (its value stored in a tile-sized scratch), then the loop writing the outputs."""
        loop = "prange" if parallel else "range"
        lines.append(" " * ind + (f"nch = max(min(n{m}, chunks), 1)" if parallel else "nch = 1"))
        lines.append(" " * ind + f"for c in {loop}(nch):")
        ind1 = ind + 4
        lines.append(" " * ind1 + f"lo = c * n{m} // nch")
        lines.append(" " * ind1 + f"hi = (c + 1) * n{m} // nch")
        for i in stages:
            lines.append(
                " " * ind1 + f"{em.name(i, 'w')} = np.empty({_TILE}, {np_type(nodes[i].dtype)})"
            )
        lines.append(" " * ind1 + f"for tb in range(lo, hi, {_TILE}):")
        ind2 = ind1 + 4
        lines.append(" " * ind2 + f"te = min(tb + {_TILE}, hi)")
        for p, i in enumerate(stages):
            em.emit(i, em.pass_scope([{}], p), lines, _chunk_loop(lines, ind2, m, "tb", "te"))
        ind3 = _chunk_loop(lines, ind2, m, "tb", "te")
        memo = em.pass_scope([{}], len(stages))
        for k, i in full_outs:
            v = em.emit(i, memo, lines, ind3)
            lines.append(" " * ind3 + f"{em.access(f'o{k}', layout.out_axes[k])} = {v}")

    def chunked(lines, ind, parallel):
        """No outer axes (one row): chunks of the first inner axis."""
        loop = "prange" if parallel else "range"
        lines.append(" " * ind + (f"nch = max(min(n{m}, chunks), 1)" if parallel else "nch = 1"))
        first = f"n{m}"
        lohi = ("lo", "hi")
        memo = [{}]
        done, emitted = set(), set()
        row_prologue(lines, ind, memo, done, emitted)
        for p, r in enumerate(reds):
            t = np_type(nodes[r].dtype)
            acc, part = em.name(r), em.name(r, "p")
            lines.append(" " * ind + f"{part} = np.empty(nch, {t})")
            lines.append(" " * ind + f"for c in {loop}(nch):")
            lines.append(" " * (ind + 4) + f"lo = c * {first} // nch")
            lines.append(" " * (ind + 4) + f"hi = (c + 1) * {first} // nch")
            reduce_pass(lines, ind + 4, memo, r, "acc", p, lohi)
            lines.append(" " * (ind + 4) + f"{part}[c] = acc")
            lines.append(" " * ind + f"{acc} = {t}({_INIT[nodes[r].op.name]})")
            lines.append(" " * ind + "for c in range(nch):")
            combine = _update(nodes[r].op.name, acc, f"{part}[c]", nodes[r].dtype, em.imports)
            lines.append(" " * (ind + 4) + f"{acc} = {combine}")
            memo[0][r] = acc
            done.add(r)
            row_prologue(lines, ind, memo, done, emitted)
        for k, i in row_outs:
            v = em.emit(i, memo, lines, ind)
            lines.append(" " * ind + f"{em.access(f'o{k}', layout.out_axes[k])} = {v}")
        if full_outs:
            lines.append(" " * ind + f"for c in {loop}(nch):")
            lines.append(" " * (ind + 4) + f"lo = c * {first} // nch")
            lines.append(" " * (ind + 4) + f"hi = (c + 1) * {first} // nch")
            full_pass(lines, ind + 4, memo, lohi)

    def accumulate(lines, ind, idx):
        """A column kernel's pass body at one element: each reduction's value into its
        accumulator ``<p>[idx]``, and the FULL outputs written."""
        memo = em.pass_scope([{}], 0)
        for r in reds:
            part = f"{em.name(r, 'p')}[{idx}]"
            v = em.value(r, 0, FULL, memo, lines, ind)
            update = _update(nodes[r].op.name, part, v, nodes[r].dtype, em.imports)
            lines.append(" " * ind + f"{part} = {update}")
        for k, i in full_outs:
            v = em.emit(i, memo, lines, ind)
            lines.append(" " * ind + f"{em.access(f'o{k}', layout.out_axes[k])} = {v}")

    def column(lines, ind, parallel):
        """Leading-axis reductions: chunks of rows (the reduced axes) accumulate partials of
        every kept position; a combine over the chunks gives the reductions and the row-role
        values after them. FULL outputs are written on the way. In parallel, with fewer
        than COLUMN_MIN_ROWS rows per chunk, the kept positions are split instead
        (:func:`column_by_kept`): partials would cost more traffic than the pass."""
        rows = " * ".join(f"n{a}" for a in outer_axes) if outer_axes else "1"
        lines.append(" " * ind + f"rows = {rows}")
        if parallel and inner_axes:
            lines.append(" " * ind + f"if rows < {COLUMN_MIN_ROWS} * chunks:")
            column_by_kept(lines, ind + 4)
            lines.append(" " * ind + "else:")
            ind += 4
        column_by_rows(lines, ind, parallel)

    def column_by_kept(lines, ind):
        """Chunks of the first kept axis in parallel; each runs every row into accumulators
        of its kept positions (no partials, no combine). One kept axis: the accumulators are
        the chunk's span of it; more: the positions of the other kept axes, per index of
        the first."""
        first, rest = inner_axes[0], inner_axes[1:]
        lines.append(" " * ind + f"nch = max(min(n{first}, chunks), 1)")
        lines.append(" " * ind + "for c in prange(nch):")
        ind1 = ind + 4
        lines.append(" " * ind1 + f"lo = c * n{first} // nch")
        lines.append(" " * ind1 + f"hi = (c + 1) * n{first} // nch")
        if rest:
            size = " * ".join(f"n{a}" for a in rest)
            flat = f"i{rest[0]}"
            for a in rest[1:]:
                flat = f"({flat}) * n{a} + i{a}"
        else:
            size, flat = "hi - lo", f"k{first}"
        for r in reds:
            lines.append(
                " " * ind1 + f"{em.name(r, 'p')} = np.empty({size}, {np_type(nodes[r].dtype)})"
            )

        def kept_loops(ind):
            for a in rest:
                lines.append(" " * ind + f"for i{a} in range(n{a}):")
                ind += 4
            return ind

        if rest:
            lines.append(" " * ind1 + f"for i{first} in range(lo, hi):")
            ind1 += 4
            open_kept = kept_loops
        else:

            def open_kept(ind):
                return _chunk_loop(lines, ind, first, "lo", "hi")

        ind2 = open_kept(ind1)
        for r in reds:
            init = f"{np_type(nodes[r].dtype)}({_INIT[nodes[r].op.name]})"
            lines.append(" " * ind2 + f"{em.name(r, 'p')}[{flat}] = {init}")
        lines.append(" " * ind1 + "for q in range(rows):")
        row_indices(lines, ind1 + 4)
        ind2 = open_kept(ind1 + 4)
        accumulate(lines, ind2, flat)
        ind2 = open_kept(ind1)
        memo = [{}]
        for r in reds:
            lines.append(" " * ind2 + f"{em.name(r)} = {em.name(r, 'p')}[{flat}]")
            memo[0][r] = em.name(r)
        for k, i in row_outs:
            v = em.emit(i, memo, lines, ind2)
            lines.append(" " * ind2 + f"{em.access(f'o{k}', layout.out_axes[k])} = {v}")

    def column_by_rows(lines, ind, parallel):
        loop = "prange" if parallel else "range"
        lines.append(" " * ind + ("nch = max(min(rows, chunks), 1)" if parallel else "nch = 1"))
        idx = ", ".join(["c"] + [f"i{a}" for a in inner_axes])
        part_shape = ", ".join(["nch"] + [f"n{a}" for a in inner_axes])
        for r in reds:
            t = np_type(nodes[r].dtype)
            lines.append(" " * ind + f"{em.name(r, 'p')} = np.empty(({part_shape},), {t})")
        lines.append(" " * ind + f"for c in {loop}(nch):")
        ind1 = ind + 4
        ind2 = inner_loops(lines, ind1)
        for r in reds:
            t = np_type(nodes[r].dtype)
            init = _INIT[nodes[r].op.name]
            lines.append(" " * ind2 + f"{em.name(r, 'p')}[{idx}] = {t}({init})")
        lines.append(" " * ind1 + "for q in range(c * rows // nch, (c + 1) * rows // nch):")
        ind1 += 4
        row_indices(lines, ind1)
        ind2 = inner_loops(lines, ind1)
        accumulate(lines, ind2, idx)
        # combine: over chunks in chunk order (deterministic), kept positions in parallel
        # (with many of them and few reduced rows - (4096, 2, 1024) summed over axis 1 -
        # a serial combine cost as much as the pass itself)
        ind2 = inner_loops(lines, ind, parallel=parallel)
        memo = [{}]
        for r in reds:
            t = np_type(nodes[r].dtype)
            acc = em.name(r)
            lines.append(" " * ind2 + f"{acc} = {t}({_INIT[nodes[r].op.name]})")
            lines.append(" " * ind2 + "for c in range(nch):")
            part = f"{em.name(r, 'p')}[{idx}]"
            lines.append(
                " " * (ind2 + 4)
                + f"{acc} = {_update(nodes[r].op.name, acc, part, nodes[r].dtype, em.imports)}"
            )
            memo[0][r] = acc
        for k, i in row_outs:
            v = em.emit(i, memo, lines, ind2)
            lines.append(" " * ind2 + f"{em.access(f'o{k}', layout.out_axes[k])} = {v}")

    def gemm_rows(lines, ind, parallel=True):
        """The ``prange`` (``range`` when not ``parallel``) over blocks [glo, ghi) of C's
        rows; each chunk: its rows by BLAS on this thread, then the group on them."""
        lines.append(" " * ind + "nch = max(min(g_m, chunks), 1)")
        lines.append(" " * ind + f"for c in {'prange' if parallel else 'range'}(nch):")
        ind1 = ind + 4
        lines.append(" " * ind1 + "glo = c * g_m // nch")
        lines.append(" " * ind1 + "ghi = (c + 1) * g_m // nch")
        lines.append(" " * ind1 + "if ghi > glo:")
        lines.append(
            " " * (ind1 + 4) + "call_gemm(g_fn, g_iw, g_ta, g_tb, ghi - glo, g_n, g_k, g_alpha, "
            "g_pa + glo * g_ar, g_lda, g_pb, g_ldb, g_pc + glo * g_cr, g_n)"
        )
        if gemm == "flat":
            lines.append(" " * ind1 + "lo = glo * g_n")
            lines.append(" " * ind1 + "hi = ghi * g_n")
            full_pass(lines, ind1, [{}], ("lo", "hi"))
        else:  # rows: the row kernel's loop over C's rows of this chunk
            scratch(lines, ind1)
            lines.append(" " * ind1 + "for q in range(glo, ghi):")
            row_body(lines, ind1 + 4)

    def gemm_blocks(lines, ind):
        """A pointwise group: each chunk computes a block of C by BLAS, then the group on
        it, row by row - blocks of C's columns when C is wider than tall (each thread then
        packs only its part of B: 2-8% faster than row blocks for 128x784 @ 784x512, MKL,
        2 threads), else blocks of rows. One ``prange`` serves both, so the kernel has one
        parallel body to compile, not two (~0.4 s less per kernel, cold)."""
        sp = " " * ind
        lines.append(sp + "by_cols = g_n >= g_m")
        lines.append(sp + "nch = max(min(g_n if by_cols else g_m, chunks), 1)")
        lines.append(sp + "for c in prange(nch):")
        ind1 = ind + 4
        sp1 = " " * ind1
        sp2 = " " * (ind1 + 4)
        lines.append(sp1 + "if by_cols:")
        lines.append(sp2 + "rlo = 0")
        lines.append(sp2 + "rhi = g_m")
        lines.append(sp2 + "glo = c * g_n // nch")
        lines.append(sp2 + "ghi = (c + 1) * g_n // nch")
        lines.append(sp1 + "else:")
        lines.append(sp2 + "rlo = c * g_m // nch")
        lines.append(sp2 + "rhi = (c + 1) * g_m // nch")
        lines.append(sp2 + "glo = 0")
        lines.append(sp2 + "ghi = g_n")
        lines.append(sp1 + "if rhi > rlo and ghi > glo:")
        lines.append(
            sp2 + "call_gemm(g_fn, g_iw, g_ta, g_tb, rhi - rlo, ghi - glo, g_k, g_alpha, "
            "g_pa + rlo * g_ar, g_lda, g_pb + glo * g_bc, g_ldb, "
            "g_pc + rlo * g_cr + glo * g_cc, g_n)"
        )
        if gemm == "flat":
            # a row block is one contiguous range of C: one pass over it
            lines.append(sp1 + "if not by_cols:")
            lines.append(sp2 + "lo = rlo * g_n")
            lines.append(sp2 + "hi = rhi * g_n")
            full_pass(lines, ind1 + 4, [{}], ("lo", "hi"))
            lines.append(sp1 + "else:")
            lines.append(sp2 + "for q in range(g_m):")
            ind3 = ind1 + 8
            lines.append(" " * ind3 + "lo = q * g_n + glo")
            lines.append(" " * ind3 + "hi = q * g_n + ghi")
            full_pass(lines, ind3, [{}], ("lo", "hi"))
        else:
            lines.append(sp1 + "for q in range(rlo, rhi):")
            row_indices(lines, ind1 + 4)
            full_pass(lines, ind1 + 4, [{}], ("glo", "ghi"))

    def gemm_epilogue(lines, ind):
        # the operands' addresses, read from the arrays by the kernel (cheaper than in Python)
        for x in "abc":
            lines.append(" " * ind + f"g_p{x} = np.int64(g_{x}.ctypes.data)")
        # one chunk (a product below blas.MIN_WORK, or one thread): BLAS once, then the
        # group, with no parallel region - the same kernel serves every size
        lines.append(" " * ind + "if chunks <= 1:")
        gemm_rows(lines, ind + 4, parallel=False)
        # a group that needs whole rows (reductions, per-row values) takes row blocks; a
        # pointwise one takes column blocks when C is wider than tall
        blocks: list[str] = []
        if reds or row_outs or row_nodes or em.stash:
            gemm_rows(blocks, ind + 4)
        else:
            gemm_blocks(blocks, ind + 4)
        lines.append(" " * ind + "else:")
        lines.extend(_parallel_names(blocks))

    body: list[str] = []
    total = " * ".join(sizes) if sizes else "1"

    def size_branch(render_loops):
        """The serial rendering below PARALLEL_THRESHOLD elements, the prange one above."""
        body.append(f"    if {total} < {PARALLEL_THRESHOLD}:")
        render_loops(body, 8, False)
        body.append("    else:")
        par = []
        render_loops(par, 8, True)
        body.extend(_parallel_names(par))

    if gemm:
        gemm_epilogue(body, 4)
    elif stages:
        size_branch(tiled)
    elif group.lead and (outer_axes or inner_axes):
        size_branch(column)
    elif m >= 1:
        rows = " * ".join(f"n{a}" for a in outer_axes)
        body.append(f"    rows = {rows}")
        body.append(f"    if {total} < {PARALLEL_THRESHOLD}:")
        scratch(body, 8)
        body.append("        for q in range(rows):")
        row_body(body, 12)
        body.append("    else:")
        # rows in chunks, so that each chunk allocates its scratch rows once
        par = ["        nch = max(min(rows, chunks), 1)", "        for c in prange(nch):"]
        scratch(par, 12)
        par.append("            for q in range(c * rows // nch, (c + 1) * rows // nch):")
        row_body(par, 16)
        body.extend(_parallel_names(par))
    elif inner_axes:
        size_branch(chunked)
    else:  # every axis has size 1: one element
        memo = [{}]
        for r in reds:
            v = em.value(r, 0, FULL, memo, body, 4)
            body.append(f"    {em.name(r)} = {np_type(nodes[r].dtype)}({v})")
            memo[0][r] = em.name(r)
        for k, i in enumerate(group.outputs):
            v = em.emit(i, memo, body, 4)
            body.append(f"    {em.access(f'o{k}', layout.out_axes[k])} = {v}")

    unpack = [f"    s{k} = s[{k}]" for k in range(len(scalars))] if scalar_array else []
    body = _prefer_wide_vectors(unpack + em.prologue + body)
    em.imports.add("prefer_wide_vectors")
    head = ["import numpy as np", "from numba import prange"]
    if gemm:
        head.append("from runba.kernels.blas import call_gemm")
    if em.imports:
        head.append(f"from runba.kernels.mathlib import {', '.join(sorted(em.imports))}")
    src = "\n".join(head) + "\n\n\n" + f"def {name}({', '.join(params)}):\n" + "\n".join(body)
    return src + "\n", name
