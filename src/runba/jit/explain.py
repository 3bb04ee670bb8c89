"""``runba.jit.explain``: what one fused call does - its groups, kernels and cuts, and why
each boundary is where it is."""

from __future__ import annotations

from runba.jit import codegen, runtime
from runba.jit.capture import capturing, is_enabled, realize
from runba.jit.schedule import KernelGroup
from runba.ops.registry import MATMUL

__all__ = ["explain"]


def _describe_plan(lines, n_graph, graph, plan, kept):
    nodes = graph.nodes
    kernels = [s for s in plan.steps if isinstance(s, KernelGroup)]
    lines.append(
        f"graph {n_graph}: {len(nodes)} nodes -> {len(kernels)} kernel(s), "
        f"{len(plan.steps) - len(kernels)} numpy step(s)"
    )
    for s in plan.steps:
        if isinstance(s, KernelGroup):
            ops = " ".join(f"{nodes[i].op.name}#{i}" for i in s.nodes)
            full = runtime._full_shape(s, nodes)
            kind = "pointwise kernel"
            if s.reductions:
                kind = "column kernel" if s.lead else "row kernel"
            outs = ", ".join(f"#{i}{'' if kept[i] else ' (read later)'}" for i in s.outputs)
            where = f"over {list(full)}"
            if s.perm is not None:  # an interior reduction: reduced axes moved last
                where += f" (axes in order {list(s.perm)})"
            lines.append(f"  {kind} {codegen.kernel_name(s, nodes)} {where}")
            lines.append(f"    ops: {ops}")
            lines.append(f"    writes: {outs}")
            lines.append(f"    boundary: {s.reason}")
        else:
            n = nodes[s.node]
            kind = "gemm" if n.op.kind == MATMUL else "numpy"
            lines.append(f"  {kind} {n.op.name}#{s.node} -> {list(n.shape)}: {s.reason}")


def explain(fn, *args, **kwargs) -> str:
    """Run ``fn(*args, **kwargs)`` once under fusion and describe what ran.

    ``fn`` is a module or a function, fused or not. Returns the report (a string): every
    graph realized during the call with its kernels (ops, full shape, outputs, why the group
    starts there) and every op that ran eagerly inside the graph (a cut) with the reason.

    >>> import runba
    >>> print(runba.jit.explain(lambda x: (x * 2).exp().sum(-1), runba.ones(4, 8)))
    ... # doctest: +ELLIPSIS
    explain <lambda>: 1 graph(s), 1 kernel(s), 0 cut(s)
    graph 1: 3 nodes -> 1 kernel(s), 0 numpy step(s)
      row kernel R_mul_exp_sum_f32 over [4, 8]
    ...
    """
    realize()  # earlier work is not part of this call
    events = []

    def listen(kind, *payload):
        if kind == "plan":
            graph, plan, kept = payload
            lines = []
            _describe_plan(lines, sum(e[0] == "plan" for e in events) + 1, graph, plan, kept)
            events.append(
                ("plan", lines, len([s for s in plan.steps if isinstance(s, KernelGroup)]))
            )
        elif kind == "gemm":  # the last plan's matmul step and next kernel ran as one
            mm, _, name = payload
            events[-1][1].append(
                f"  ran as one kernel {name}: matmul#{mm}'s GEMM, then the kernel after it, "
                "on each block of its rows (or columns)"
            )
        else:
            op_name, reason = payload
            events.append(("cut", [f"eager {op_name}: {reason}"], 0))

    runtime.listeners.append(listen)
    try:
        with capturing():
            out = fn(*args, **kwargs)
        realize()
    finally:
        runtime.listeners.remove(listen)
    del out
    name = getattr(fn, "__name__", type(fn).__name__)
    n_plans = sum(e[0] == "plan" for e in events)
    n_kernels = sum(e[2] for e in events)
    n_cuts = sum(e[0] == "cut" for e in events)
    lines = [f"explain {name}: {n_plans} graph(s), {n_kernels} kernel(s), {n_cuts} cut(s)"]
    if not is_enabled():
        lines.append("note: RUNBA_JIT=0, so fused calls run eagerly; this is what fusion would do")
    for _, ls, _ in events:
        lines.extend(ls)
    return "\n".join(lines)
