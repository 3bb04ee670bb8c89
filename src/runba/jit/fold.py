"""Fold a view of a computed value into its producer's inputs.

A view (reshape, permute, expand, slicing) of a lazy value would make the value's producer
write it to memory, and a second kernel read it back through the view (schedule.py runs views
as numpy steps). When the producer is one elementwise node over concrete arrays (or over
GEMM outputs and views, which are buffers at run time anyway), the view can move below it
instead::

    permute(add(gemm_out, bias))  ->  add(permute(gemm_out), permute(bias))

The views of the arrays are numpy views (strides, no copy), so the consumer of the
view - conv's activation, say - fuses with the ``add`` into one kernel that reads the GEMM
output through the permuted strides. The original node stays in the graph; if nothing else
reads it, it is dead and never computed (schedule.py). Elementwise ops commute with views:
each output element depends only on the input elements at the same index.
"""

from __future__ import annotations

import numpy as np

from runba.jit.graph import LazyNode
from runba.ops import registry

__all__ = ["fold_view"]


def _view_of(op, array: np.ndarray, shape: tuple, attrs: dict):
    """``op`` applied to ``array`` broadcast to ``shape``; None when that would copy."""
    if array.shape == shape:
        # no broadcast needed: a read-only view, as np.broadcast_to gives (~2 µs) but ~7x
        # cheaper; only the strides of size-1 dims may differ, and the runtime drops those
        b = array.view()
        b.flags.writeable = False
    else:
        b = np.broadcast_to(array, shape)
    try:
        v = op.impl(b, **attrs)
    except Exception:  # noqa: BLE001 - e.g. view() of a broadcast input: no fold, no error
        return None
    # a reshape that needs a copy: keep the numpy step (one write, no more). A copy is fresh
    # memory, disjoint from ``array``, so the bounds test suffices (no exact overlap solve)
    if not isinstance(v, np.ndarray) or not np.may_share_memory(v, array):
        return None
    return v


# kinds of lazy nodes whose values are always materialized buffers
_BUFFERS = (registry.MATMUL, registry.MOVEMENT)


def fold_view(graph, op, attrs: dict, src: LazyNode, shape: tuple):
    """The node computing ``op(src)`` (a view op, result ``shape``) by applying the view to
    ``src``'s inputs, or None when ``src`` is not one elementwise node over arrays, scalars,
    and GEMM outputs or views of ``src``'s shape.

    >>> import runba
    >>> f = runba.fuse(lambda a, b: (a + b).permute(1, 0).relu())
    >>> report = runba.jit.explain(f, runba.randn(3, 4), runba.randn(4))
    >>> "numpy permute" in report  # folded: one kernel, no view step
    False
    """
    if src.op.kind != registry.ELEMENTWISE:
        return None
    inputs = []
    for x in src.inputs:
        if isinstance(x, LazyNode):
            # a GEMM's output, or a view of a value, is a buffer at run time whatever
            # happens: its view is a numpy view (a step that costs nothing), so the view
            # still moves below ``src`` (conv's GEMM + bias, then reshape and permute)
            if x.op.kind not in _BUFFERS or x.shape != src.shape:
                return None
            inputs.append(graph.add(op, (x,), attrs, x.dtype, x.compute, tuple(shape)))
            continue
        if isinstance(x, np.ndarray):
            v = _view_of(op, x, src.shape, attrs)
            if v is None:
                return None
            inputs.append(v)
        else:
            inputs.append(x)
    node = graph.add(src.op, tuple(inputs), src.attrs, src.dtype, src.compute, tuple(shape))
    # the tensor showing this node is a view of src's: when src's value is kept too, the
    # runtime hands out a numpy view of it instead, so writes through one show in the other
    root, chain = src.view_of if src.view_of is not None else (src, ())
    graph.mark_view_of(node, root, (*chain, (op, attrs)))
    return node
