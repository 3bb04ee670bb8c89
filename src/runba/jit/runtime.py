"""Runtime: realize a graph - find or build its plan, bind buffers, launch, hand out values.

Per realization: compute the structural key (graph.structural_key), look the plan up
(cache.get_plan) or schedule one; then, step by step, allocate the outputs (always fresh:
a tensor handed to the user never aliases a buffer a later step reuses), pick the group's
layout from the arrays actually passed (which axes merge depends on their strides), fetch or
compile that layout's kernel and launch it. Finally every referenced lazy tensor gets its
value and stops being lazy.
"""

from __future__ import annotations

import ctypes
import math
import threading
import time
import weakref

import numpy as np

from runba import _malloc
from runba.jit import cache, codegen
from runba.jit.graph import LazyNode, structural_key
from runba.jit.schedule import FULL, KernelGroup, NumpyStep, schedule
from runba.kernels import blas, env, loader, threads
from runba.ops.registry import MATMUL

__all__ = ["run_graph"]

# Called with ("plan", graph, plan, kept) on every realization, ("cut", op name, reason)
# for every op run eagerly under capture and ("gemm", matmul node, group index, kernel name)
# when a GEMM and the kernel after it ran as one, while runba.jit.explain is running.
listeners: list = []


class KernelError(RuntimeError):
    """A generated kernel failed to compile or run (names the user's ops and the file)."""


# ----------------------------------------------------------------------------- plan
class GroupBinding:
    """What a group's kernel reads and writes, structurally: its array arguments (with
    alignment), scalar operands, the surviving axes of the full shape and the axes of each
    output. Built once per plan."""

    __slots__ = (
        "group",
        "args",
        "offsets",
        "scalars",
        "axes_all",
        "outer_limit",
        "out_dims",
        "refs",
        "scalar_types",
        "scalar_type",
        "contiguous",
        "arg_perm",
        "out_perm",
        "gemm_layout",
        "epilogue_in_c",
    )

    def __init__(self, group, nodes):
        self.group = group
        # (layout, launcher) once seen with every array C-contiguous (_run_group); the
        # layout of a run inside a GEMM's row blocks, likewise (_run_gemm_group)
        self.contiguous = None
        self.gemm_layout = None
        self.epilogue_in_c = None  # _run_gemm_group: may the output overwrite C? (per plan)
        full = _kernel_shape(group, nodes)
        r = len(full)
        perm = group.perm
        # Interior reductions (group.perm): the kernel works on the full shape permuted so the
        # reduced axes come last. Arrays aligned to the full shape (or to its keepdim row
        # shape) are bound as rank-r views transposed by perm: arg_perm[k] / out_perm[k] is
        # the rank they are first expanded to (leading 1s), None where no transpose applies
        # (non-keepdim row values already list the kept axes in kernel order).
        self.arg_perm = []
        self.out_perm = []
        self.axes_all = tuple(d for d in range(r) if full[d] != 1)
        # axes below this index are outer (rows); pointwise kernels decide per layout. A
        # column kernel's outer axes are the reduced leading ones.
        if group.lead:
            self.outer_limit = group.rdims
        else:
            self.outer_limit = r - group.rdims if group.rdims else r
        self.args = []
        self.offsets = []  # per arg: full-shape axis of the array's axis 0
        self.scalars = []
        seen = set()
        for i in group.nodes:
            node = nodes[i]
            ctx = FULL if i in group.reductions else group.roles[i]
            for pos, x in enumerate(node.inputs):
                if isinstance(x, LazyNode) and group.roles.get(x.index) is not None:
                    continue
                if isinstance(x, LazyNode) or isinstance(x, np.ndarray):
                    ref = ("node", x.index) if isinstance(x, LazyNode) else ("in", i, pos)
                    if (ref, ctx) in seen:
                        continue
                    seen.add((ref, ctx))
                    align = r if ctx == FULL else len(node.shape)
                    off = align - len(x.shape)
                    if group.lead and ctx != FULL and len(node.shape) < r:
                        off += group.rdims  # non-keepdim column values: the trailing axes
                    shape = x.shape
                    if perm is not None and align == r:
                        shape = _permuted((1,) * off + tuple(shape), perm)
                        off = 0
                        self.arg_perm.append(r)
                    else:
                        self.arg_perm.append(None)
                    dims = tuple(off + d for d, s in enumerate(shape) if s != 1)
                    self.args.append(codegen.ArrayArg(ref, dims, ctx))
                    self.offsets.append(off)
                elif x is not None:
                    self.scalars.append((i, pos))
        self.refs = [a.ref for a in self.args]
        # the type each scalar operand is passed as (compute dtypes are in the plan's key)
        self.scalar_types = [(i, pos, _scalar_type(nodes[i], pos)) for i, pos in self.scalars]
        # the one type every scalar is passed as, if there is one: converted in one call
        types = {t for _, _, t in self.scalar_types}
        self.scalar_type = types.pop() if len(types) == 1 else None
        self.out_dims = []
        for i in group.outputs:
            self.out_perm.append(r if perm is not None and len(nodes[i].shape) == r else None)
            if group.roles[i] == FULL:
                self.out_dims.append(self.axes_all)
            elif group.lead:
                self.out_dims.append(tuple(d for d in self.axes_all if d >= group.rdims))
            else:
                self.out_dims.append(tuple(d for d in self.axes_all if d < r - group.rdims))


def _full_shape(group, nodes):
    """The group's full shape, in the graph's axis order."""
    i, pos = group.full_ref
    return nodes[i].shape if pos is None else nodes[i].inputs[pos].shape


def _permuted(shape, perm):
    return tuple(shape[d] for d in perm)


def _kernel_shape(group, nodes):
    """The full shape in the kernel's axis order (permuted for interior reductions)."""
    full = _full_shape(group, nodes)
    return full if group.perm is None else _permuted(full, group.perm)


def _to_kernel_axes(arr, rank, perm):
    """``arr`` (aligned to the trailing axes of a rank-``rank`` shape) as the rank-``rank``
    view transposed by ``perm``; unchanged when ``rank`` is None."""
    if rank is None:
        return arr
    if arr.ndim < rank:
        arr = arr.reshape((1,) * (rank - arr.ndim) + arr.shape)
    return arr.transpose(perm)


def _build_plan(nodes, kept, siblings=True):
    plan = schedule(nodes, kept, siblings)
    plan.bindings = {
        s.index: GroupBinding(s, nodes) for s in plan.steps if isinstance(s, KernelGroup)
    }
    return plan


# ----------------------------------------------------------------------------- layout
def _compact(a: np.ndarray, dims_sizes) -> np.ndarray:
    """``a`` without its size-1 axes (a view), or shape (1,) when nothing is left."""
    if not dims_sizes:
        return a.reshape(1)
    return a.reshape(dims_sizes)


def _layout(b: GroupBinding, arg_compact, out_compact=None):
    """Merge adjacent surviving axes of the same class where every array allows it
    (outputs are C-contiguous in kernel order, except the transposed outputs of a permuted
    group: ``out_compact`` has them, and their strides are checked too)."""
    axes = b.axes_all
    groups = []
    for d in axes:
        if groups:
            prev = groups[-1][-1]
            same_class = (prev < b.outer_limit) == (d < b.outer_limit)
            ok = same_class
            if ok:
                for a, arr in zip(b.args, arg_compact):
                    ina, inb = prev in a.dims, d in a.dims
                    if ina != inb:
                        ok = False
                        break
                    if ina:
                        p = a.dims.index(prev)
                        if arr.strides[p] != arr.strides[p + 1] * arr.shape[p + 1]:
                            ok = False
                            break
                if ok:
                    for k, od in enumerate(b.out_dims):
                        if (prev in od) != (d in od):
                            ok = False
                            break
                        if out_compact is not None and prev in od:
                            arr, p = out_compact[k], od.index(prev)
                            if arr.strides[p] != arr.strides[p + 1] * arr.shape[p + 1]:
                                ok = False
                                break
            if ok:
                groups[-1].append(d)
                continue
        groups.append([d])
    merged = tuple(tuple(g) for g in groups)
    if b.group.rdims:
        n_outer = sum(1 for g in merged if g[0] < b.outer_limit)
    else:
        n_outer = max(len(merged) - 1, 0)  # pointwise: the last axis is the inner loop

    def axes_of(dims):
        return tuple(k for k, g in enumerate(merged) if g[0] in dims)

    arg_axes = tuple(axes_of(a.dims) for a in b.args)
    out_axes = tuple(axes_of(od) for od in b.out_dims)
    return codegen.Layout(merged, n_outer, arg_axes, out_axes)


def _merged_view(arr, axes, sizes):
    """``arr`` (compact or C-contiguous) as the loop nest sees it: one axis per merged loop
    it is indexed with (``axes``), shape (1,) when none."""
    if not axes:
        return arr.reshape(1)
    if len(axes) == 1 and arr.ndim == 1:
        return arr  # one loop over its one (non-1) axis: already that shape
    return arr.reshape([sizes[k] for k in axes])


# ----------------------------------------------------------------------------- buffers
# Kernel outputs of POOL_MIN_BYTES or more come from a pool of freed blocks. A fresh large
# block is a fresh mmap that page-faults on first write: a 16 MiB output cost 3 ms of faults
# on top of a 2 ms kernel. A block returns to the pool when the last array viewing it dies
# (its ctypes owner is what every numpy view keeps alive), so a value handed to the user is
# never reused while anything can still see it (DESIGN §4: no aliasing of user-held results).
# Where runba tuned glibc (runba/_malloc.py), malloc itself reuses freed blocks below its
# mmap threshold, for ~0.3 µs instead of the pool's ~3 (a ctypes owner and a finalizer per
# buffer): the pool starts there.
POOL_MIN_BYTES = _malloc.MMAP_THRESHOLD if _malloc.ALLOCATOR_TUNED else 1 << 20
POOL_MAX_BYTES = 512 << 20
_pool: dict[int, list] = {}  # nbytes -> free blocks (uint8 arrays)
_pool_bytes = [0]
# Re-entrant, and nothing that allocates a container runs under it: an allocation can start
# a garbage collection, which can free another pooled array held in a reference cycle, whose
# finalizer calls _give_back again on this thread.
_pool_lock = threading.RLock()


def _give_back(block) -> None:
    nbytes = block.nbytes
    fresh = []  # a first block of this size's list, allocated before the lock is taken
    with _pool_lock:
        if _pool_bytes[0] + nbytes <= POOL_MAX_BYTES:
            _pool.setdefault(nbytes, fresh).append(block)
            _pool_bytes[0] += nbytes


# RUNBA_POISON_OUTPUTS=1 (the test suite sets it): every fresh buffer starts as NaN (a
# byte pattern for other dtypes), so a kernel that leaves an element unwritten fails its
# comparison instead of passing on memory a previous run left behind. Read per graph.
_poison = [False]


def _poisoned(buf: np.ndarray) -> np.ndarray:
    if buf.dtype.kind in "fc":
        buf.fill(np.nan)
    else:
        buf.reshape(-1).view(np.uint8).fill(0xA5)  # (a 0-d array cannot change itemsize)
    return buf


def _new_buffer(shape, npdt) -> np.ndarray:
    if _poison[0]:
        return _poisoned(_pooled_buffer(shape, npdt))
    return _pooled_buffer(shape, npdt)


def _pooled_buffer(shape, npdt) -> np.ndarray:
    nbytes = math.prod(shape) * npdt.itemsize
    if nbytes < POOL_MIN_BYTES:
        return np.empty(shape, npdt)
    with _pool_lock:
        free = _pool.get(nbytes)
        block = free.pop() if free else None
        if block is not None:
            _pool_bytes[0] -= nbytes
    if block is None:
        block = np.empty(nbytes, np.uint8)
    owner = (ctypes.c_byte * nbytes).from_address(block.ctypes.data)
    weakref.finalize(owner, _give_back, block)
    return np.frombuffer(owner, npdt).reshape(shape)


def clear_buffer_pool() -> None:
    with _pool_lock:
        _pool.clear()
        _pool_bytes[0] = 0


cache.on_clear.append(clear_buffer_pool)


# ----------------------------------------------------------------------------- run
def _scalar_type(node, pos):
    """What a scalar operand is converted to: the compute dtype, or bool for operands
    before ``promote_from`` (``where``'s condition)."""
    if pos >= node.op.promote_from:
        return node.compute.np.type
    return np.bool_


def _launcher(plan, step, nodes, b, layout):
    key = (step.index, layout.key())
    launcher = plan.launchers.get(key)
    if launcher is None:
        src, name = codegen.render(
            step, nodes, b.args, b.scalars, layout, scalar_array=b.scalar_type is not None
        )
        cache.debug(4, f"source of {name}:\n{src}")
        launcher = (loader.load_kernel(src, name, parallel="prange(" in src), src, name)
        plan.launchers[key] = launcher
    return launcher


def _bound_arrays(b, nodes, values):
    """The arrays a group reads, in argument order: earlier steps' values and inputs."""
    return [values[r[1]] if r[0] == "node" else nodes[r[1]].inputs[r[2]] for r in b.refs]


def _loop_sizes(layout, full):
    """The size of each merged loop of ``layout`` over the full shape ``full``."""
    return [full[g[0]] if len(g) == 1 else math.prod([full[d] for d in g]) for g in layout.axes]


def _in_place_view(arr, shape):
    """``arr.reshape(shape)`` that raises instead of copying: a kernel writes through it."""
    v = arr.view()
    v.shape = shape
    return v


def _run_permuted_group(plan, step, nodes, values, nthreads, level, b):
    """A group over permuted axes (an interior reduction): arrays and outputs are bound as
    transposed views, and the layout also checks the outputs' strides."""
    perm = step.perm
    full = _kernel_shape(step, nodes)
    arrays = [
        _compact(_to_kernel_axes(arr, rank, perm), [full[d] for d in a.dims])
        for a, rank, arr in zip(b.args, b.arg_perm, _bound_arrays(b, nodes, values))
    ]
    outs = []
    for i, od, rank in zip(step.outputs, b.out_dims, b.out_perm):
        node = nodes[i]
        buf = _new_buffer(node.shape, node.dtype.np)
        values[i] = buf
        # dropping size-1 axes is always a view here; raise rather than write to a copy
        outs.append(_in_place_view(_to_kernel_axes(buf, rank, perm), [full[d] for d in od] or [1]))
    layout = _layout(b, arrays, outs)
    sizes = _loop_sizes(layout, full)
    args = [_merged_view(arr, ax, sizes) for arr, ax in zip(arrays, layout.arg_axes)]
    outs = [
        _in_place_view(o, [sizes[k] for k in ax] or [1]) for o, ax in zip(outs, layout.out_axes)
    ]
    spec, flat, strides = _strided(args + outs)
    if spec is not None:
        layout = layout.with_strided(spec)
    kernel, src, name = _launcher(plan, step, nodes, b, layout)
    na = len(args)
    _launch(
        step, nodes, kernel, src, name, sizes, flat[:na], b, flat[na:], strides, 4 * nthreads, level
    )


def _strided(views):
    """``(spec, arrays, stride args)`` for the merged views a kernel is about to get: a view
    that is not C-contiguous (a permuted, transposed or sliced input; a permuted group's
    output) and has non-negative strides is passed as the flat buffer from its first element
    to its last, with element strides (none for a unit inner stride): ``Layout.strided``.
    ``spec`` is None when every view is C-contiguous."""
    specs, arrays, strides = [], [], []
    for v in views:
        isz = v.itemsize
        st = v.strides
        if v.flags.c_contiguous or v.size == 0 or any([x < 0 or x % isz for x in st]):
            specs.append(None)
            arrays.append(v)
            continue
        el = [x // isz for x in st]
        span = 1 + sum([(n - 1) * e for n, e in zip(v.shape, el)])
        arrays.append(
            np.lib.stride_tricks.as_strided(v, (span,), (isz,), writeable=v.flags.writeable)
        )
        spec = tuple([not (j == v.ndim - 1 and e == 1) for j, e in enumerate(el)])
        specs.append(spec)
        strides += [np.uintp(e) for e, has in zip(el, spec) if has]
    if all(x is None for x in specs):
        return None, list(views), []
    return tuple(specs), arrays, strides


def _launch(step, nodes, kernel, src, name, sizes, args, b, outs, strides, chunks, level, tail=()):
    """Call ``kernel``: loop sizes, arrays, scalars, outputs, stride arguments, the chunk
    count, then ``tail`` (a GEMM-epilogue kernel's BLAS arguments)."""
    for a in args:
        if not a.flags.writeable:  # read-only inputs: one kernel signature for both
            args = [loader.writable_alias(x) for x in args]
            break
    t = b.scalar_type
    if t is not None:
        # one array of t (the kernel's ``s``): each element converted as t(x) converts,
        # ~5x cheaper than t(x) one by one, and one argument for the dispatcher to type
        scalars = (np.array([nodes[i].inputs[pos] for i, pos in b.scalars], t),)
    else:
        scalars = [t(nodes[i].inputs[pos]) for i, pos, t in b.scalar_types]
    t0 = time.perf_counter()
    try:
        kernel(*sizes, *args, *scalars, *outs, *strides, chunks, *tail)
    except Exception as e:  # numba typing/lowering errors never reach the user raw
        raise _kernel_error(e, step, nodes, name, src) from e
    cache.count_launch()
    if level >= 2:
        ms = (time.perf_counter() - t0) * 1e3
        cache.debug(2, f"launch {name} sizes={sizes} {ms:.3f} ms")


def _run_group(plan, step, nodes, values, nthreads, level):
    b = plan.bindings[step.index]
    if step.perm is not None:
        _run_permuted_group(plan, step, nodes, values, nthreads, level, b)
        return
    full = _full_shape(step, nodes)
    arrays = _bound_arrays(b, nodes, values)
    # When every array is C-contiguous each merge _layout checks holds whatever the sizes,
    # so the layout (and its kernel) found the first time serves every later such call.
    contiguous = all([a.flags.c_contiguous for a in arrays])
    if contiguous and b.contiguous is not None:
        layout, launcher = b.contiguous
    else:
        arrays = [
            _compact(arr, [arr.shape[d - off] for d in a.dims])
            for a, off, arr in zip(b.args, b.offsets, arrays)
        ]
        layout = _layout(b, arrays)
        launcher = None
    sizes = _loop_sizes(layout, full)
    args = [_merged_view(arr, ax, sizes) for arr, ax in zip(arrays, layout.arg_axes)]
    strides = []
    if launcher is None:
        spec, args, strides = _strided(args)  # outputs below are fresh, C-contiguous
        if spec is not None:
            layout = layout.with_strided(spec + (None,) * len(step.outputs))
        launcher = _launcher(plan, step, nodes, b, layout)
        if contiguous:
            b.contiguous = (layout, launcher)
    kernel, src, name = launcher
    outs = _new_outputs(step, nodes, values, layout, sizes)
    _launch(step, nodes, kernel, src, name, sizes, args, b, outs, strides, 4 * nthreads, level)


def _new_outputs(step, nodes, values, layout, sizes):
    """Fresh buffers for the group's outputs (into ``values``), as the kernel's views."""
    outs = []
    for i, ax in zip(step.outputs, layout.out_axes):
        node = nodes[i]
        buf = _new_buffer(node.shape, node.dtype.np)
        values[i] = buf
        outs.append(_merged_view(buf, ax, sizes))
    return outs


def _kernel_error(e, step, nodes, name, src):
    ops = ", ".join(
        f"{nodes[i].op.name}{list(nodes[i].shape)}:{nodes[i].dtype.name}" for i in step.nodes
    )
    path = loader.kernel_path(src, name, parallel=True)
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return KernelError(
        f"fused kernel {name} failed for ops [{ops}]: {type(e).__name__}: {first} "
        f"(generated source: {path}; RUNBA_JIT=0 runs these ops eagerly)"
    )


def _run_numpy(step, nodes, values):
    node = nodes[step.node]
    args = []
    for x in node.inputs:
        args.append(values[x.index] if isinstance(x, LazyNode) else x)
    out = node.op.impl(*args, **node.attrs)
    if not isinstance(out, np.ndarray):
        out = np.asarray(out)
    if out.dtype != node.dtype.np:
        out = out.astype(node.dtype.np)
    values[step.node] = out


def _gemm_launcher(plan, step, nodes, b, layout):
    key = (step.index, layout.key(), "gemm")
    launcher = plan.launchers.get(key)
    if launcher is None:
        src, name = codegen.render(
            step,
            nodes,
            b.args,
            b.scalars,
            layout,
            gemm=True,
            scalar_array=b.scalar_type is not None,
        )
        cache.debug(4, f"source of {name}:\n{src}")
        launcher = (loader.load_kernel(src, name, parallel=True), src, name)
        plan.launchers[key] = launcher
    return launcher


def _run_gemm_group(plan, mm_step, step, nodes, values, nthreads, level) -> bool:
    """Run matmul ``mm_step`` and group ``step`` (the next step) as one kernel: each
    ``prange`` chunk computes a block of C's rows (or columns) by BLAS, then the group on
    it.
    False (nothing run) where that does not apply: the group does not read C over its
    whole shape, arrays are not C-contiguous, the layout has no row structure
    (codegen.gemm_structure), or runba's GEMM declines (kernels.blas.blocked_gemm)."""
    mm = nodes[mm_step.node]
    b = plan.bindings[step.index]
    if b.gemm_layout is False or step.perm is not None or step.lead:
        return False
    ref = ("node", mm.index)
    if _full_shape(step, nodes) != mm.shape or not any(
        a.ref == ref and a.role == FULL for a in b.args
    ):
        return False
    c = _new_buffer(mm.shape, mm.dtype.np)
    values[mm.index] = c  # _bound_arrays reads it; unwritten until the kernel runs
    arrays = _bound_arrays(b, nodes, values)
    layout = blocks = None
    if all([a.flags.c_contiguous for a in arrays]):
        layout = b.gemm_layout
        if layout is None:  # every array is C-contiguous: the verdict serves later calls
            compact = [
                _compact(arr, [arr.shape[d - off] for d in a.dims])
                for a, off, arr in zip(b.args, b.offsets, arrays)
            ]
            layout = _layout(b, compact)
            if codegen.gemm_structure(step, nodes, layout) is None:
                layout = False
            b.gemm_layout = layout
    if layout:
        a_in, b_in = [values[x.index] if isinstance(x, LazyNode) else x for x in mm.inputs]
        blocks = blas.blocked_gemm(a_in, b_in, c)
    if blocks is None:
        values[mm.index] = None  # the matmul step computes it (_run_numpy)
        return False
    sizes = _loop_sizes(layout, mm.shape)
    args = [_merged_view(arr, ax, sizes) for arr, ax in zip(arrays, layout.arg_axes)]
    kernel, src, name = _gemm_launcher(plan, step, nodes, b, layout)
    in_c = b.epilogue_in_c
    if in_c is None:
        in_c = b.epilogue_in_c = _epilogue_in_c(plan, mm_step, step, nodes, b)
    if in_c:
        # each element of C is read once, then the result is stored at the same position:
        # no output buffer to fill, and 1 C-sized array less through the caches per call
        values[step.outputs[0]] = c
        outs = [_merged_view(c, layout.out_axes[0], sizes)]
    else:
        outs = _new_outputs(step, nodes, values, layout, sizes)
    # one chunk per thread, a BLAS block each; one chunk (the kernel's serial branch) below
    # MIN_WORK, where a parallel region costs more than it saves, or with one thread
    m, k = mm.inputs[0].shape
    chunks = nthreads if m * mm.shape[1] * k >= blas.MIN_WORK else 1
    with blocks:
        _launch(
            step, nodes, kernel, src, name, sizes, args, b, outs, [], chunks, level, blocks.args
        )
    if listeners:
        for fn in listeners:
            fn("gemm", mm.index, step.index, name)
    return True


def _epilogue_in_c(plan, mm_step, step, nodes, b) -> bool:
    """Whether GEMM-epilogue group ``step`` may write its output over C, the GEMM's result:
    a pointwise group (no reduction) with one output of C's shape and dtype, reading C only
    at the element it writes (role FULL), where C is scratch: no live tensor shows it and no
    later step reads it. Fixed per plan (the plan's key says what is kept)."""
    mm = nodes[mm_step.node]
    if step.reductions or len(step.outputs) != 1 or mm.index in plan.kept:
        return False
    out = nodes[step.outputs[0]]
    if out.shape != mm.shape or out.dtype is not mm.dtype:
        return False
    ref = ("node", mm.index)
    if any(a.ref == ref and a.role != FULL for a in b.args):
        return False
    later = plan.steps[plan.steps.index(step) + 1 :]
    for s in later:
        if isinstance(s, NumpyStep):
            if any(x is mm for x in nodes[s.node].inputs):
                return False
        elif ref in plan.bindings[s.index].refs:
            return False
    return True


def _run_plan(plan, nodes, values, level) -> None:
    """Run the plan's steps: by its runner once one is built (runner.py), else step by step;
    a step-by-step run may build the runner for the next calls. Per-launch debug output
    (``RUNBA_DEBUG=2``) and explain's listeners take the step-by-step path."""
    nthreads = threads.pool_num_threads()  # per thread; after_blas may have changed it
    fn = plan.runner
    if fn and level < 2 and not listeners:
        fn(nodes, values, nthreads)
        return
    _run_steps(plan, nodes, values, nthreads, level)
    if fn is None and not listeners:
        plan.runner = _late_runner().build(plan, nodes)


def _late_runner():
    from runba.jit import runner  # imports this module

    return runner


def _run_gemm_pair(plan, mm_step, step, nodes, values, nthreads) -> None:
    """A matmul step and the group after it, as _run_steps runs them (for plan runners)."""
    if not _run_gemm_group(plan, mm_step, step, nodes, values, nthreads, 0):
        _run_numpy(mm_step, nodes, values)
        _run_group(plan, step, nodes, values, nthreads, 0)


def _run_steps(plan, nodes, values, nthreads, level) -> None:
    steps = plan.steps
    skip = False
    for k, step in enumerate(steps):
        if skip:  # the group a GEMM step ran
            skip = False
            continue
        if isinstance(step, NumpyStep):
            if nodes[step.node].op.kind == MATMUL and k + 1 < len(steps):
                nxt = steps[k + 1]
                if isinstance(nxt, KernelGroup) and _run_gemm_group(
                    plan, step, nxt, nodes, values, nthreads, level
                ):
                    skip = True
                    continue
            _run_numpy(step, nodes, values)
        else:
            _run_group(plan, step, nodes, values, nthreads, level)


def _aliased_view(node, values, key, own):
    """A folded view's value (fold.py): the view of its root's value when the root is kept,
    as eager mode's view aliases its base; else the kernel's own output ``own``."""
    root, chain = node.view_of
    v = values[root.index]
    if v is None or not key[root.index] & 1:
        return own
    for op, attrs in chain:
        v = op.impl(v, **attrs)
    return v


def _unguarded_plan(key, nodes, kept):
    """The plan for a graph whose structure's plan relies on two shapes being equal that
    are not here (schedule.Plan.guards): made without joins by shape, cached under its own
    key (``key`` + -1, never a node entry)."""
    key = (*key, -1)
    plan = cache.get_plan(key)
    if plan is None:
        plan = _build_plan(nodes, kept, siblings=False)
        cache.put_plan(key, plan)
        cache.debug(
            3, f"new plan (sizes differ where the cached plan joins by shape): {len(nodes)} nodes"
        )
    return plan


def run_graph(graph) -> None:
    # a copy: when another thread runs this graph, its owner may still be appending a node
    # (capture._lost_to_another_thread records that op again, in a new graph)
    nodes = graph.nodes[:]
    level = cache.debug_level()  # os.environ is slow to read: once per graph
    _poison[0] = env.get("RUNBA_POISON_OUTPUTS", "0") not in ("", "0")
    key = structural_key(nodes)  # a kept node's entry is odd
    plan = cache.get_plan(key)
    if plan is None or listeners:
        kept = [bool(k & 1) for k in key]
    if plan is None:
        reason = cache.miss_reason(key)
        t0 = time.perf_counter()
        plan = _build_plan(nodes, kept)
        cache.put_plan(key, plan)
        cache.note_specialisation(graph.origin, key, reason, graph.call)
        cache.debug(
            3,
            f"new plan ({reason}): {len(nodes)} nodes -> {len(plan.steps)} steps "
            f"in {(time.perf_counter() - t0) * 1e3:.2f} ms",
        )
    if plan.guards:
        for i, (j, pos) in plan.guards:
            if nodes[i].shape != (nodes[j].shape if pos is None else nodes[j].inputs[pos].shape):
                plan = _unguarded_plan(key, nodes, [bool(k & 1) for k in key])
                break
    if listeners:
        for fn in listeners:
            fn("plan", graph, plan, kept)
    values: list = [None] * len(nodes)
    # Right after numpy's multi-threaded BLAS ran (broadcast batch dims, or no BLAS runba
    # can call itself: kernels/blas.py), OpenBLAS's workers still spin and would fight a
    # full-width parallel kernel: run on the cores they leave (threads.after_blas).
    # runba's own GEMM runs in numba's pool, so its epilogue keeps every thread.
    if threads.blas_pool_spinning():
        with threads.after_blas():
            _run_plan(plan, nodes, values, level)
    else:
        _run_plan(plan, nodes, values, level)
    if level >= 1:
        n_kernels = sum([isinstance(s, KernelGroup) for s in plan.steps])
        cache.debug(1, f"realized {len(nodes)} nodes: {n_kernels} kernels, {len(plan.steps)} steps")
    # hand the kept values out (a plan is per key, so it knows which nodes are kept); the
    # other nodes die once this frame, graph.nodes and the graph's value-key tables (cleared
    # by Graph.realize) drop them, freeing buffers and captured arrays
    for i in plan.kept:
        n = nodes[i]
        v = values[i]
        if n.view_of is not None:
            v = _aliased_view(n, values, key, v)
        for r in n.refs:
            t = r()
            if t is not None and t._lazy is n:
                t._data = v
                t._lazy = None
        n.refs = []
    graph.nodes = []
