"""Schedule: cut a realized graph into steps - fused kernels, numpy views, numpy reductions.

The plan is structural: it names nodes by their index in the graph and never holds sizes,
so one plan serves every graph with the same structural key (graph.structural_key). The
rules (DESIGN §4 Fusion rules), each with a kernel-count test in tests/jit/:

* elementwise chains, with broadcasting, fuse into one loop nest over their common shape;
  a node that reads only inputs joins the latest kernel over its shape (siblings);
* dead values (not held by anyone, not read by a live node) are not computed;
* elementwise producers fuse into a reduction over trailing axes (``sum(x * y)``; all axes
  is the special case of one row);
* reduce-then-broadcast-back over the same trailing axes - softmax, log_softmax,
  layer_norm, cross_entropy - is one *row kernel*: a parallel loop over rows, a serial pass
  over the row's elements per reduction, then a pass writing the full-size outputs;
* views (reshape, permute, expand, slicing) never become kernels: they run as numpy views on
  the producer's buffer, which is therefore materialized (a cut);
* reductions over leading axes (bias gradients, BatchNorm statistics) are a *column
  kernel*: chunks of rows in parallel, each accumulating partials of the kept positions,
  then a combine, kept positions in parallel (which also computes the row-role consumers,
  ``sum / n``); with few rows per chunk the kernel splits the kept positions instead;
* reductions over interior axes that include the last axis (BatchNorm's ``(0, 2, 3)`` of
  NCHW) are row kernels over the full shape *permuted* so the reduced axes come last
  (``KernelGroup.perm``; the runtime passes every array as the matching transposed view);
  those that keep the last axis (a mean over the T of (B, T, D)) are column kernels over
  the shape permuted so the reduced axes lead: the inner loop stays on the last axis;
* a group stops growing at :data:`MAX_GROUP_NODES` nodes or :data:`MAX_GROUP_ARRAYS` arrays.

A 2-D float matmul is a step of its own (a :class:`NumpyStep` by type): the runtime computes
it in blocks of rows, and when the next step is a kernel that reads it over its own shape
(the epilogue: bias, activation, a row softmax) that kernel runs on each block in the same
``prange`` chunk (runtime.py, codegen.py). Conv and the other extern ops never reach the
schedule: the recorder ran them eagerly (capture.py), so their elementwise consumers form
the epilogue kernel here.
"""

from __future__ import annotations

import numpy as np

from runba.jit.graph import LazyNode
from runba.ops import registry

__all__ = ["KernelGroup", "NumpyStep", "Plan", "schedule"]

MAX_GROUP_NODES = 32
MAX_GROUP_ARRAYS = 16

#: explain's line for a matmul step
GEMM_REASON = (
    "BLAS GEMM in blocks of rows or columns; the next kernel, if it reads it, runs on each block"
)

FULL = "full"  # a value per element of the group's full shape
ROW = "row"  # a value per row (reduced over the group's trailing axes)


class NumpyStep:
    """A node computed by its numpy implementation: views, and unfused reductions."""

    __slots__ = ("index", "node", "reason")

    def __init__(self, index: int, node: int, reason: str):
        self.index = index
        self.node = node
        self.reason = reason


class KernelGroup:
    """Nodes that become one kernel.

    ``rank`` is the rank of the full shape and ``full_ref`` where to read it at run time
    (``(node, None)``: that node's shape; ``(node, pos)``: the shape of its input ``pos``).
    ``rdims`` is the number of trailing axes the reductions reduce (0: a pointwise kernel),
    or with ``lead`` the number of leading axes (a column kernel: per-chunk partials of the
    kept trailing positions, then a combine).
    ``perm`` (None, or a permutation of the full shape's axes) makes an interior reduction
    a row kernel (kept axes, then reduced ones) or, with ``lead``, a column kernel (reduced
    axes, then kept ones: the last axis is kept): shapes, roles and node attributes stay in
    the graph's own axis order; the runtime binds every array transposed by ``perm``, so the
    kernel sees its ``rdims`` reduced axes trailing (or leading).
    ``roles[i]`` is FULL or ROW per node, ``reductions`` the reduce nodes (in order),
    ``outputs`` the nodes the kernel writes (kept by the user or autograd, or read by a later
    step), ``reason`` why the group starts where it does.
    """

    __slots__ = (
        "index",
        "nodes",
        "roles",
        "rank",
        "rdims",
        "full_ref",
        "reductions",
        "outputs",
        "reason",
        "arrays",
        "lead",
        "perm",
    )

    def __init__(self, index: int, rank: int, rdims: int, full_ref: tuple, reason: str):
        self.index = index
        self.lead = False  # True: the reductions reduce the *leading* rdims axes
        self.perm = None  # interior reductions: the kernel's axis order (see above)
        self.nodes: list[int] = []
        self.roles: dict[int, str] = {}
        self.rank = rank
        self.rdims = rdims
        self.full_ref = full_ref
        self.reductions: list[int] = []
        self.outputs: list[int] = []
        self.reason = reason
        self.arrays = 0  # distinct input arrays so far (an upper bound)


class Plan:
    """The steps of one graph structure, in execution order; ``launchers`` caches the
    compiled kernel per (group index, layout variant), filled by the runtime."""

    __slots__ = ("steps", "launchers", "bindings", "guards", "kept", "runner", "runner_tries")

    def __init__(self, steps, guards=(), kept=()):
        self.steps = steps
        # the generated function that runs the steps once their layouts are known
        # (runner.build): None until built, False when no step gains from one
        self.runner = None
        self.runner_tries = 0
        # the indices of the nodes a live tensor shows (odd entries of the key): the only
        # values a run hands out
        self.kept = kept
        self.launchers: dict = {}
        self.bindings: dict = {}  # group index -> runtime.GroupBinding
        # (i, (j, pos)): node i's shape equalled that of node j (pos None) or of node j's
        # input pos when this plan was made, and the plan relies on it (a node joined a
        # kernel by shape: a sibling, or a broadcast against the kernel's row values); a
        # graph of the same structure where they differ takes another plan
        # (runtime.run_graph)
        self.guards = guards


class _Builder:
    def __init__(self, nodes, kept, siblings=True):
        self.nodes = nodes
        self.kept = kept
        self.siblings = siblings  # may a node join a kernel it shares only a shape with?
        self.guards: list = []
        self.steps: list = []
        self.step_of: list = [None] * len(nodes)
        self.full_shape: dict[int, tuple] = {}  # group index -> full shape (this graph)
        self.red: dict[int, set] = {}  # group index -> reduction node indices

    # -- helpers
    def _new_group(self, shape, rdims, full_ref, reason):
        g = KernelGroup(len(self.steps), len(shape), rdims, full_ref, reason)
        self.steps.append(g)
        self.full_shape[g.index] = tuple(shape)
        return g

    def _deps_ok(self, g, node) -> bool:
        """Joining ``g`` must not create a cycle: every other producer ran before ``g``."""
        for x in node.inputs:
            if isinstance(x, LazyNode):
                s = self.step_of[x.index]
                if s is not g and s.index > g.index:
                    return False
        return True

    def _row_shapes(self, g):
        full = self.full_shape[g.index]
        r, k = len(full), g.rdims
        if g.perm is not None:  # reduced axes permuted first (a column kernel) or last
            reduced = set(g.perm[:k] if g.lead else g.perm[r - k :])
            keep = tuple(1 if d in reduced else s for d, s in enumerate(full))
            return keep, tuple(s for d, s in enumerate(full) if d not in reduced)
        if g.lead:
            return (1,) * k + full[k:], full[k:]  # keepdim, not keepdim
        return full[: r - k] + (1,) * k, full[: r - k]

    def _role(self, g, node):
        """The role ``node`` would have in ``g`` (None: it cannot join)."""
        full = self.full_shape[g.index]
        shape = node.shape
        if shape == full:
            role = FULL
        elif g.rdims and shape in self._row_shapes(g):
            role = ROW
        else:
            return None
        keep, _ = self._row_shapes(g)
        for x in node.inputs:
            if not isinstance(x, LazyNode) or self.step_of[x.index] is not g:
                continue
            xrole = g.roles[x.index]
            if role == ROW and (xrole != ROW or x.shape != shape):
                return None
            if role == FULL and xrole == ROW and (g.lead or x.shape != keep):
                # a non-keepdim row value would broadcast along the wrong axes; a column
                # kernel has no pass after its combine
                return None
        return role

    def _full_by_size(self, g, node) -> bool:
        """Whether ``node`` has ``g``'s full shape only by its sizes: no input of it is a
        FULL value of ``g`` (a FULL input has the full shape in every graph of this
        structure, and so has a result broadcast with it)."""
        for x in node.inputs:
            if isinstance(x, LazyNode) and self.step_of[x.index] is g and g.roles[x.index] == FULL:
                return False
        return True

    def _new_arrays(self, g, node) -> int:
        """Arrays ``node`` would add to ``g``'s kernel arguments (an upper bound)."""
        return sum(
            1
            for x in node.inputs
            if isinstance(x, np.ndarray)
            or (isinstance(x, LazyNode) and self.step_of[x.index] is not g)
        )

    def _fits(self, g, node) -> bool:
        if len(g.nodes) >= MAX_GROUP_NODES:
            return False
        return g.arrays + self._new_arrays(g, node) + 1 <= MAX_GROUP_ARRAYS

    def _add(self, g, node, role):
        g.arrays += self._new_arrays(g, node)
        g.nodes.append(node.index)
        g.roles[node.index] = role
        self.step_of[node.index] = g

    def _numpy(self, node, reason):
        s = NumpyStep(len(self.steps), node.index, reason)
        self.steps.append(s)
        self.step_of[node.index] = s

    def _groups_of_inputs(self, node):
        seen = []
        for x in node.inputs:
            if isinstance(x, LazyNode):
                s = self.step_of[x.index]
                if isinstance(s, KernelGroup) and s not in seen:
                    seen.append(s)
        return sorted(seen, key=lambda s: -s.index)  # the latest group first

    # -- the rules
    def _sibling(self, node):
        """The latest kernel group over ``node``'s shape: a node that reads only inputs and
        scalars joins it instead of starting a kernel of its own (``(t < 0) | (t >= n)``).
        Equal sizes are not part of the structural key, so the plan keeps a guard: the node
        and a FULL member of the group must have equal shapes wherever the plan is reused."""
        if not self.siblings:
            return []
        for s in reversed(self.steps):
            if isinstance(s, KernelGroup) and self.full_shape[s.index] == node.shape:
                member = next((i for i in s.nodes if s.roles[i] == FULL), None)
                if member is None:
                    return []
                self.guards.append((node.index, (member, None)))
                return [s]
        return []

    def elementwise(self, node):
        producers = self._groups_of_inputs(node) or self._sibling(node)
        for g in producers:
            role = self._role(g, node)
            if role is None or not self._deps_ok(g, node):
                continue
            if not self._fits(g, node):
                break
            if role == FULL and self._full_by_size(g, node):
                # y - x.mean(-1, keepdim=True): y's sizes on the reduced axes are free in
                # the structure, so its shape equals the kernel's only in this graph
                if not self.siblings:
                    continue
                self.guards.append((node.index, g.full_ref))
            self._add(g, node, role)
            return
        if not producers:
            reason = "start"
        elif not self._groups_of_inputs(node):
            reason = "reads only inputs; the kernel over its shape cannot take it"
        elif all(len(g.nodes) >= MAX_GROUP_NODES for g in producers):
            reason = f"group size limit ({MAX_GROUP_NODES} nodes)"
        else:
            reason = "shape differs from producers"
        g = self._new_group(node.shape, 0, (node.index, None), reason)
        self._add(g, node, FULL)

    def reduce(self, node):
        src = node.inputs[0]
        src_shape = src.shape
        r = len(src_shape)
        dims = tuple(sorted(node.attrs["dims"]))
        k = len(dims)
        lead = 0 < k < r and dims == tuple(range(k))
        perm = None
        if k and dims != tuple(range(r - k, r)) and not lead:
            kept = tuple(d for d in range(r) if d not in dims)
            if dims[-1] != r - 1:
                # the last axis is kept: a column kernel over the axes permuted so the
                # reduced ones lead (its inner loop stays on the contiguous last axis)
                perm = dims + kept
                lead = True
            else:
                perm = kept + dims
        if k == 0:
            self._numpy(node, f"reduction over no axes of a rank-{r} tensor")
            return
        if isinstance(src, LazyNode):
            g = self.step_of[src.index]
            if (
                isinstance(g, KernelGroup)
                and g.roles[src.index] == FULL
                and (g.rdims == 0 or (g.rdims == k and g.lead == lead and g.perm == perm))
                and self.full_shape[g.index] == src_shape
                and self._deps_ok(g, node)
                and self._fits(g, node)
                and not (lead and self._reads_rows(g, src.index))
            ):
                g.rdims = k
                g.lead = lead
                g.perm = perm
                self._add(g, node, ROW)
                g.reductions.append(node.index)
                return
        reason = (
            "reduction of an input array"
            if not isinstance(src, LazyNode)
            else "reduction input is not fusable with its producer"
        )
        g = self._new_group(src_shape, k, (node.index, 0), reason)
        g.lead = lead
        g.perm = perm
        self._add(g, node, ROW)
        g.reductions.append(node.index)

    def _reads_rows(self, g, i) -> bool:
        """Whether FULL node ``i`` of ``g`` depends on a row value of ``g`` (a column kernel
        computes its FULL values in one pass, before any combine)."""
        todo = [i]
        while todo:
            j = todo.pop()
            if g.roles.get(j) == ROW:
                return True
            todo.extend(
                x.index
                for x in self.nodes[j].inputs
                if isinstance(x, LazyNode) and self.step_of[x.index] is g
            )
        return False

    def _written(self, i) -> bool:
        """Is kept node ``i`` a kernel output? Not a folded view whose root is kept too: the
        runtime hands out a view of the root's value for it (runtime._aliased_view), and a
        view keeps its base alive, so ``(x + 1).t()`` returned would else be computed twice."""
        if not self.kept[i]:
            return False
        view_of = self.nodes[i].view_of
        return view_of is None or not self.kept[view_of[0].index]

    def finish(self):
        consumers_outside = set()
        for n in self.nodes:
            s = self.step_of[n.index]
            if s is None:  # dead
                continue
            for x in n.inputs:
                if isinstance(x, LazyNode) and self.step_of[x.index] is not s:
                    consumers_outside.add(x.index)
                if isinstance(x, LazyNode) and not isinstance(s, KernelGroup):
                    consumers_outside.add(x.index)
        for s in self.steps:
            if isinstance(s, KernelGroup):
                s.outputs = [i for i in s.nodes if self._written(i) or i in consumers_outside]
        # groups that write nothing (every value dead) are dropped
        steps = [s for s in self.steps if not isinstance(s, KernelGroup) or s.outputs]
        return Plan(steps, tuple(self.guards), tuple([i for i, k in enumerate(self.kept) if k]))


def schedule(nodes, kept, siblings=True) -> Plan:
    """Group ``nodes`` (a graph in recording order) into steps; ``kept[i]``: node i's value
    must be produced. ``siblings=False``: no node joins a kernel by its shape alone (the plan
    for graphs where a guarded equality of sizes does not hold, see :class:`Plan`)."""
    b = _Builder(nodes, kept, siblings)
    # Dead values (nobody holds them, nothing live reads them) get no step at all.
    live = list(kept)
    for node in reversed(nodes):
        if live[node.index]:
            for x in node.inputs:
                if isinstance(x, LazyNode):
                    live[x.index] = True
    for node in nodes:
        if not live[node.index]:
            continue
        kind = node.op.kind
        if kind == registry.MOVEMENT:
            b._numpy(node, f"view ({node.op.name}) of a computed value: its producer is written")
        elif kind == registry.MATMUL:
            b._numpy(node, GEMM_REASON)
        elif kind == registry.REDUCE:
            b.reduce(node)
        else:
            b.elementwise(node)
    return b.finish()
