"""Plan runners: a plan's launch sequence as one generated Python function.

The generic runtime (runtime._run_steps) re-derives on every call what a plan's steps need:
which arrays each kernel reads, how its loops merge, which launcher serves the layout, how
the GEMM's operands are laid out. Once a run has found those for every step (the layout of
a group whose arrays are C-contiguous holds for every later such call, whatever the sizes),
:func:`build` writes them into straight-line source - one block per step, its bindings,
loop sizes, views and kernel as constants - and compiles it. A runner call then costs what a
call must: reading the shapes and scalars of this call's nodes, fresh output buffers, the
kernel launches (fused Linear 784->512+ReLU: ~20 µs less per call than the generic path).

Every fast block is guarded by what its constants assume (C-contiguous, writable arrays;
the GEMM's full shape); where a guard fails, that step runs through the generic runtime
function instead, so a runner is never less general than ``_run_steps``. Permuted groups
and numpy steps always take the generic functions. ``RUNBA_DEBUG=4`` prints each runner's
source.
"""

from __future__ import annotations

import numpy as np

from runba.jit import cache
from runba.jit import runtime as rt
from runba.jit.graph import LazyNode
from runba.jit.schedule import FULL, KernelGroup, NumpyStep
from runba.kernels import blas
from runba.ops.registry import MATMUL

__all__ = ["build"]

# Runs of a plan whose steps still miss a layout (their arrays were not C-contiguous yet)
# before the runner is built anyway, with those steps left to the generic path.
MAX_TRIES = 3


class _Source:
    """Lines of the runner being written, and the constants its namespace binds."""

    def __init__(self):
        self.lines = ["def run(nodes, values, nthreads):", "    nf = 0"]
        # functions are looked up on their modules at each call, as the generic path does
        # (one attribute read each): a test or a debugging session may patch them
        self.ns = {"rt": rt, "blas": blas, "cache": cache, "_np_array": np.array}

    def const(self, name: str, value) -> str:
        self.ns[name] = value
        return name

    def add(self, indent: int, *lines: str) -> None:
        self.lines.extend("    " * indent + ln for ln in lines)

    def text(self) -> str:
        return "\n".join([*self.lines, "    cache.count_launch(nf)", ""])


def _array_expr(ref) -> str:
    """The expression of a bound array: an earlier step's value or a node's input array."""
    return f"values[{ref[1]}]" if ref[0] == "node" else f"nodes[{ref[1]}].inputs[{ref[2]}]"


def _full_expr(group) -> str:
    i, pos = group.full_ref
    return f"nodes[{i}].shape" if pos is None else f"nodes[{i}].inputs[{pos}].shape"


def _sizes(src: _Source, indent: int, layout, k: int) -> list[str]:
    """Lines binding ``s{k}_{j}``, the size of each merged loop (runtime._loop_sizes)."""
    names = []
    for j, g in enumerate(layout.axes):
        name = f"s{k}_{j}"
        src.add(indent, f"{name} = " + " * ".join(f"full[{d}]" for d in g))
        names.append(name)
    return names


def _view(expr: str, ndim: int, axes, sizes) -> str:
    """``expr`` as the kernel's merged view (runtime._merged_view, with the rank known)."""
    if not axes:
        return f"{expr}.reshape(1)"
    if len(axes) == 1:
        return expr if ndim == 1 else f"{expr}.reshape({sizes[axes[0]]})"
    return f"{expr}.reshape(({', '.join(sizes[a] for a in axes)}))"


def _ref_ndim(ref, nodes) -> int:
    if ref[0] == "node":
        return len(nodes[ref[1]].shape)
    return np.ndim(nodes[ref[1]].inputs[ref[2]])


def _scalars(src: _Source, b, k: int) -> list[str]:
    """The kernel's scalar arguments, as runtime._launch converts them."""
    if b.scalar_type is not None:
        t = src.const(f"T{k}", b.scalar_type)
        items = ", ".join(f"nodes[{i}].inputs[{pos}]" for i, pos in b.scalars)
        return [f"_np_array([{items}], {t})"]
    out = []
    for j, (i, pos, t) in enumerate(b.scalar_types):
        out.append(f"{src.const(f'T{k}_{j}', t)}(nodes[{i}].inputs[{pos}])")
    return out


def _guard(exprs) -> str:
    checks = [f"{a}.flags.c_contiguous and {a}.flags.writeable" for a in exprs]
    return " and ".join(checks) or "True"


def _launch_lines(src, indent, k, step, launcher, call_args, tail="") -> None:
    kernel, ksrc, name = launcher
    src.const(f"K{k}", kernel)
    src.const(f"STEP{k}", step)
    src.const(f"SRC{k}", ksrc)
    src.const(f"NAME{k}", name)
    src.add(
        indent,
        "try:",
        f"    K{k}({', '.join(call_args)}{tail})",
        "except Exception as e:  # numba's errors never reach the user raw",
        f"    raise rt._kernel_error(e, STEP{k}, nodes, NAME{k}, SRC{k}) from e",
        "nf += 1",
    )


def _group_block(src: _Source, k: int, step, b, nodes) -> None:
    """A pointwise, row or column kernel (not permuted) on C-contiguous arrays
    (runtime._run_group's contiguous case, then runtime._launch)."""
    layout, launcher = b.contiguous
    src.const(f"STEP{k}", step)
    arrays = [f"a{k}_{j}" for j in range(len(b.refs))]
    src.add(1, f"# step {step.index}: {launcher[2]}")
    for name, ref in zip(arrays, b.refs):
        src.add(1, f"{name} = {_array_expr(ref)}")
    src.add(1, f"if {_guard(arrays)}:")
    src.add(2, f"full = {_full_expr(step)}")
    sizes = _sizes(src, 2, layout, k)
    args = [
        _view(a, _ref_ndim(ref, nodes), ax, sizes)
        for a, ref, ax in zip(arrays, b.refs, layout.arg_axes)
    ]
    outs = []
    for j, (i, ax) in enumerate(zip(step.outputs, layout.out_axes)):
        dt = src.const(f"DT{k}_{j}", nodes[i].dtype.np)
        src.add(2, f"o{k}_{j} = values[{i}] = rt._new_buffer(nodes[{i}].shape, {dt})")
        outs.append(_view(f"o{k}_{j}", len(nodes[i].shape), ax, sizes))
    call = [*sizes, *args, *_scalars(src, b, k), *outs, "4 * nthreads"]
    _launch_lines(src, 2, k, step, launcher, call)
    src.add(1, "else:", f"    rt._run_group(_plan, STEP{k}, nodes, values, nthreads, 0)")


def _gemm_block(src: _Source, k: int, mm_step, step, b, launcher, nodes) -> None:
    """A GEMM and the group after it as one kernel (runtime._run_gemm_group's case with a
    known layout); the generic pair where a guard fails or the GEMM declines."""
    mm = nodes[mm_step.node]
    layout = b.gemm_layout
    src.const(f"MM{k}", mm_step)
    src.const(f"STEP{k}", step)
    dt = src.const(f"DT{k}", mm.dtype.np)
    operands = [f"values[{x.index}]" if isinstance(x, LazyNode) else None for x in mm.inputs]
    operands = [e or f"mm.inputs[{p}]" for p, e in enumerate(operands)]
    src.add(1, f"# steps {mm_step.index}, {step.index}: GEMM + {launcher[2]}")
    src.add(1, f"mm = nodes[{mm.index}]", "done = False", f"full = {_full_expr(step)}")
    src.add(1, "if full == mm.shape:")
    src.add(2, f"c = values[{mm.index}] = rt._new_buffer(mm.shape, {dt})")
    arrays = [f"a{k}_{j}" for j in range(len(b.refs))]
    for name, ref in zip(arrays, b.refs):
        src.add(2, f"{name} = {_array_expr(ref)}")
    # C itself is fresh: only the other arrays need the guard
    src.add(2, f"if {_guard([a for a, r in zip(arrays, b.refs) if r != ('node', mm.index)])}:")
    src.add(3, f"blocks = blas.blocked_gemm({operands[0]}, {operands[1]}, c)")
    src.add(3, "if blocks is not None:")
    sizes = _sizes(src, 4, layout, k)
    args = [
        _view(a, _ref_ndim(ref, nodes), ax, sizes)
        for a, ref, ax in zip(arrays, b.refs, layout.arg_axes)
    ]
    outs = []
    if b.epilogue_in_c:  # the output is written over C (runtime._epilogue_in_c)
        src.add(4, f"values[{step.outputs[0]}] = c")
        outs.append(_view("c", len(mm.shape), layout.out_axes[0], sizes))
    else:
        for j, (i, ax) in enumerate(zip(step.outputs, layout.out_axes)):
            odt = src.const(f"DT{k}_{j}", nodes[i].dtype.np)
            src.add(4, f"o{k}_{j} = values[{i}] = rt._new_buffer(nodes[{i}].shape, {odt})")
            outs.append(_view(f"o{k}_{j}", len(nodes[i].shape), ax, sizes))
    src.add(4, "m, kk = mm.inputs[0].shape")
    src.add(4, "chunks = nthreads if m * mm.shape[1] * kk >= blas.MIN_WORK else 1")
    src.add(4, "with blocks:")
    call = [*sizes, *args, *_scalars(src, b, k), *outs, "chunks"]
    _launch_lines(src, 5, k, step, launcher, call, tail=", *blocks.args")
    src.add(4, "done = True")
    src.add(2, "if not done:", f"    values[{mm.index}] = None")
    pair = f"rt._run_gemm_pair(_plan, MM{k}, STEP{k}, nodes, values, nthreads)"
    src.add(1, "if not done:", f"    {pair}")


def _gemm_fast(plan, mm_step, step, b):
    """The launcher of GEMM-epilogue group ``step`` when its run inside the GEMM's blocks is
    settled (layout and in-C verdict known), None while not yet seen, False when it never
    runs so (runtime._run_gemm_group's structural conditions)."""
    ref = ("node", mm_step.node)
    if b.gemm_layout is False or step.perm is not None or step.lead:
        return False
    if not any(a.ref == ref and a.role == FULL for a in b.args):
        return False
    if not b.gemm_layout or b.epilogue_in_c is None:
        return None
    return plan.launchers.get((step.index, b.gemm_layout.key(), "gemm"))


def build(plan, nodes):
    """The runner of ``plan`` (``run(nodes, values, nthreads)``, the kernels it launched
    itself counted in the cache's statistics), built
    from the layouts its runs so far have found; None while a step still lacks one (up to
    :data:`MAX_TRIES` runs), False when no step can take a fast block."""
    plan.runner_tries += 1
    src = _Source()
    steps = plan.steps
    fast = pending = 0
    k = 0
    while k < len(steps):
        step = steps[k]
        if isinstance(step, NumpyStep):
            nxt = steps[k + 1] if k + 1 < len(steps) else None
            if nodes[step.node].op.kind == MATMUL and isinstance(nxt, KernelGroup):
                b = plan.bindings[nxt.index]
                launcher = _gemm_fast(plan, step, nxt, b)
                if launcher:
                    _gemm_block(src, k, step, nxt, b, launcher, nodes)
                    fast += 1
                else:
                    pending += launcher is None
                    src.const(f"MM{k}", step)
                    src.const(f"STEP{k}", nxt)
                    src.add(1, f"rt._run_gemm_pair(_plan, MM{k}, STEP{k}, nodes, values, nthreads)")
                k += 2
                continue
            src.const(f"S{k}", step)
            src.add(1, f"rt._run_numpy(S{k}, nodes, values)")
        else:
            b = plan.bindings[step.index]
            if step.perm is None and b.contiguous is not None:
                _group_block(src, k, step, b, nodes)
                fast += 1
            else:
                pending += step.perm is None
                src.const(f"STEP{k}", step)
                src.add(1, f"rt._run_group(_plan, STEP{k}, nodes, values, nthreads, 0)")
        k += 1
    if pending and plan.runner_tries < MAX_TRIES:
        return None
    if not fast:
        return False
    text = src.text()
    src.ns["_plan"] = plan
    cache.debug(4, f"plan runner ({len(steps)} steps, {fast} fast):\n{text}")
    exec(compile(text, f"<runba plan runner {plan.runner_tries}>", "exec"), src.ns)
    return src.ns["run"]
