"""Matrix products: ``matmul`` (a BLAS call through numpy) and ``einsum`` are primitives;
mm, bmm, dot, outer, mv are checked wrappers around matmul."""

from __future__ import annotations

import re

import numpy as np

from runba import dtypes as _dt
from runba._state import STATE
from runba.kernels import blas, threads
from runba.ops.registry import (
    EXTERN,
    MATMUL,
    SAVE_INPUTS,
    OpDef,
    dispatch,
    register,
    tensor_method,
)


def _matmul_vjp(c, g):
    a, b = c.inputs
    ga = gb = None
    if a.ndim == 1 and b.ndim == 1:  # dot product: g is 0-dim
        return (g * b if c.needs[0] else None, g * a if c.needs[1] else None)
    a2 = a.unsqueeze(0) if a.ndim == 1 else a
    b2 = b.unsqueeze(-1) if b.ndim == 1 else b
    g2 = g
    if a.ndim == 1:
        g2 = g2.unsqueeze(-2)
    if b.ndim == 1:
        g2 = g2.unsqueeze(-1)
    if c.needs[0]:
        ga = matmul(g2, b2.mT)
        if a.ndim == 1:
            ga = ga.squeeze(-2)
    if c.needs[1]:
        gb = matmul(a2.mT, g2)
        if b.ndim == 1:
            gb = gb.squeeze(-1)
    # broadcast batch dims are summed away by the engine's sum_to
    return ga, gb


def _promoted(dtypes, attrs):
    d = dtypes[0]
    for x in dtypes[1:]:
        d = _dt.promote_types(d, x)
    return d


def _gemm(a, b):
    """``a @ b`` through kernels.blas for 2-D operands and for batches whose batch dims
    match (or a 2-D ``b``), else None."""
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    if a.ndim == 2 and b.ndim == 2:
        out = np.empty((m, n), a.dtype)
        return out if blas.gemm(a, b, out) else None
    batch = a.shape[:-2]
    if b.ndim > 2 and b.shape[:-2] != batch:
        return None  # broadcast batch dims: np.matmul
    out = np.empty(batch + (m, n), a.dtype)
    a3 = a.reshape(-1, m, k)  # a view where the batch dims merge, else a copy
    b3 = b if b.ndim == 2 else b.reshape(-1, k, n)
    return out if blas.gemm(a3, b3, out.reshape(-1, m, n)) else None


def _matmul_impl(a, b):
    if a.dtype != b.dtype:
        t = np.result_type(a, b)
        a, b = a.astype(t), b.astype(t)
    big = a.size * (b.shape[-1] if b.ndim > 1 else 1) >= blas.MIN_WORK  # multiply-adds
    if big and a.ndim >= 2 and b.ndim >= 2:
        # runba's GEMM: numpy's BLAS on blocks in numba's thread pool, so no OpenBLAS worker
        # spins afterwards and the kernels after it keep every thread (kernels/blas.py)
        out = _gemm(a, b)
        if out is not None:
            return out
    out = np.matmul(a, b)
    if big:
        threads.note_blas_pool_use()  # OpenBLAS may have woken its pool
    return out


MATMUL_OP = register(
    OpDef(
        "matmul",
        MATMUL,
        impl=_matmul_impl,
        out_dtype=_promoted,
        vjp=_matmul_vjp,
        saves=SAVE_INPUTS,
        reads=lambda needs: (needs[1], needs[0]),  # each gradient reads the other operand
    )
)


def _shape_str(t):
    return "x".join(str(s) for s in t.shape) if t.ndim else "scalar"


def _check_matmul(a, b, op):
    # the common, valid call in a few tuple reads; everything else takes the full check
    sa, sb = a._data.shape, b._data.shape
    if (
        sa
        and sb
        and a.dtype is b.dtype
        and (len(sa) <= 2 or len(sb) <= 2)
        and sa[-1] == (sb[0] if len(sb) == 1 else sb[-2])
    ):
        return
    if a.ndim == 0 or b.ndim == 0:
        raise RuntimeError(
            f"{op}: both arguments need at least 1 dimension, but got {a.ndim}D and {b.ndim}D "
            "tensors"
        )
    k_a = a.shape[-1]
    k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if k_a != k_b:
        if a.ndim <= 2 and b.ndim <= 2:
            raise RuntimeError(
                f"{op}: mat1 and mat2 shapes cannot be multiplied ({_shape_str(a)} and "
                f"{_shape_str(b)}): inner dimensions {k_a} and {k_b} differ"
            )
        raise RuntimeError(
            f"{op}: shapes {list(a.shape)} and {list(b.shape)} cannot be multiplied: inner "
            f"dimensions {k_a} and {k_b} differ"
        )
    if a.ndim > 2 and b.ndim > 2:
        try:
            np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise RuntimeError(
                f"{op}: batch dimensions {list(a.shape[:-2])} and {list(b.shape[:-2])} of "
                f"shapes {list(a.shape)} and {list(b.shape)} cannot be broadcast"
            ) from None
    if a.dtype is not b.dtype:
        raise RuntimeError(
            f"{op}: expected both operands to have the same dtype, but got {a.dtype.name} and "
            f"{b.dtype.name} (shapes {list(a.shape)} and {list(b.shape)})"
        )


@tensor_method()
def matmul(input, other):
    """Matrix product with numpy/torch broadcasting rules for 1-D and batched operands.

    >>> import runba
    >>> (runba.ones(2, 3) @ runba.ones(3, 4)).shape
    runba.Size([2, 4])
    """
    _check_matmul(input, other, "matmul")
    return dispatch(MATMUL_OP, (input, other))


def linear(input, weight, bias=None):
    """``input @ weight.T + bias`` (``F.linear``). Inside ``runba.fuse`` the recorder may
    take the whole call at once (``Recorder.linear``: the GEMM node and the bias add, as
    these ops would record them); otherwise, and in eager mode, it is those ops.

    >>> import runba
    >>> linear(runba.ones(2, 3), runba.ones(4, 3), runba.zeros(4)).tolist()[0]
    [3.0, 3.0, 3.0, 3.0]
    """
    capture = STATE.capture
    if capture is not None:
        # an optional part of the capture handler's seam (``record`` is the required one)
        one_call = getattr(capture, "linear", None)
        out = one_call(input, weight, bias) if one_call is not None else None
        if out is not None:
            return out
    out = matmul(input, weight.t())
    return out if bias is None else out + bias


@tensor_method()
def mm(input, mat2):
    """2-D matrix product (no broadcasting)."""
    if input.ndim != 2 or mat2.ndim != 2:
        raise RuntimeError(f"mm: expected 2-D tensors, got {input.ndim}D and {mat2.ndim}D")
    return matmul(input, mat2)


@tensor_method()
def bmm(input, mat2):
    """Batched 3-D matrix product with equal batch sizes."""
    if input.ndim != 3 or mat2.ndim != 3:
        raise RuntimeError(f"bmm: expected 3-D tensors, got {input.ndim}D and {mat2.ndim}D")
    if input.shape[0] != mat2.shape[0]:
        raise RuntimeError(f"bmm: batch sizes differ: {list(input.shape)} and {list(mat2.shape)}")
    return matmul(input, mat2)


@tensor_method()
def mv(input, vec):
    if input.ndim != 2 or vec.ndim != 1:
        raise RuntimeError(f"mv: expected a matrix and a vector, got {input.ndim}D and {vec.ndim}D")
    return matmul(input, vec)


@tensor_method()
def dot(input, other):
    """Inner product of two 1-D tensors of equal length."""
    if input.ndim != 1 or other.ndim != 1:
        raise RuntimeError(f"1D tensors expected, but got {input.ndim}D and {other.ndim}D tensors")
    if input.shape[0] != other.shape[0]:
        raise RuntimeError(
            f"inconsistent tensor size, expected tensor [{input.shape[0]}] and src "
            f"[{other.shape[0]}] to have the same number of elements, but got "
            f"{input.shape[0]} and {other.shape[0]} elements respectively"
        )
    return matmul(input, other)


inner = dot


@tensor_method("outer", "ger")
def outer(input, vec2):
    """Outer product of two 1-D tensors."""
    if input.ndim != 1 or vec2.ndim != 1:
        raise RuntimeError(f"outer: expected 1-D tensors, got {input.ndim}D and {vec2.ndim}D")
    return input.unsqueeze(1) * vec2.unsqueeze(0)


# ---------------------------------------------------------------------------- einsum
def _parse_einsum(equation, shapes):
    eq = equation.replace(" ", "")
    if "." in eq:
        raise NotImplementedError("einsum: ellipsis ('...') is not supported yet")
    if "->" in eq:
        lhs, out = eq.split("->")
    else:
        lhs = eq
        letters = lhs.replace(",", "")
        out = "".join(sorted(ch for ch in set(letters) if letters.count(ch) == 1))
    ins = lhs.split(",")
    if len(ins) != len(shapes):
        raise RuntimeError(
            f"einsum(): {len(ins)} operands in the equation {equation!r} but {len(shapes)} "
            "tensors given"
        )
    sizes = {}
    for sub, shape in zip(ins, shapes):
        if not re.fullmatch("[a-zA-Z]*", sub) or len(sub) != len(shape):
            raise RuntimeError(
                f"einsum(): the subscript {sub!r} does not match an operand of shape "
                f"{list(shape)} in {equation!r}"
            )
        for ch, s in zip(sub, shape):
            if sizes.setdefault(ch, s) != s and s != 1 and sizes[ch] != 1:
                raise RuntimeError(
                    f"einsum(): subscript {ch!r} has size {s} for one operand and {sizes[ch]} "
                    f"for another in {equation!r}"
                )
    return tuple(ins), out


def _einsum_vjp(c, g):
    ins, out = c.attrs["inputs"], c.attrs["output"]
    grads = []
    for i, sub in enumerate(ins):
        if not c.needs[i]:
            grads.append(None)
            continue
        if len(set(sub)) != len(sub):
            raise NotImplementedError(
                f"einsum backward: repeated subscript in operand {sub!r} is not supported"
            )
        others = [(s, t) for j, (s, t) in enumerate(zip(ins, c.inputs)) if j != i]
        avail = set(out).union(*[set(s) for s, _ in others])
        kept = "".join(ch for ch in sub if ch in avail)
        eq = ",".join([out] + [s for s, _ in others]) + "->" + kept
        gi = einsum(eq, g, *[t for _, t in others])
        if kept != sub:  # letters summed only within this operand: broadcast back
            shape = c.in_meta[i][0]
            view = tuple(shape[k] if ch in avail else 1 for k, ch in enumerate(sub))
            gi = gi.reshape(view).expand(shape)
        grads.append(gi)
    return tuple(grads)


EINSUM = register(
    OpDef(
        "einsum",
        EXTERN,
        impl=lambda *xs, inputs, output: np.einsum(
            ",".join(inputs) + "->" + output, *xs, optimize=len(xs) > 2
        ),
        out_dtype=_promoted,
        vjp=_einsum_vjp,
        saves=SAVE_INPUTS,
    )
)


def einsum(equation, *operands):
    """Einstein summation (``"ij,jk->ik"``, ``"bij,bjk->bik"``, ``"i,i->"``, ...).

    >>> import runba
    >>> runba.einsum("ij,jk->ik", runba.ones(2, 3), runba.ones(3, 4)).shape
    runba.Size([2, 4])
    """
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    ins, out = _parse_einsum(equation, [t.shape for t in operands])
    return dispatch(EINSUM, tuple(operands), {"inputs": ins, "output": out})
