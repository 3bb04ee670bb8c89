"""``runba.autograd.Function``: custom ops with a hand-written backward.

>>> import runba
>>> class Square(runba.autograd.Function):
...     @staticmethod
...     def forward(ctx, x):
...         ctx.save_for_backward(x)
...         return x * x
...     @staticmethod
...     def backward(ctx, g):
...         (x,) = ctx.saved_tensors
...         return 2 * x * g
>>> x = runba.tensor([3.0], requires_grad=True)
>>> Square.apply(x).backward()
>>> x.grad
tensor([6.])
"""

from __future__ import annotations

from runba._state import STATE
from runba.autograd.engine import Node, _acc_node
from runba.ops import registry
from runba.ops.registry import EXTERN, SAVE_NONE, OpDef

__all__ = ["Function", "FunctionCtx"]


class FunctionCtx:
    """The ``ctx`` passed to ``forward`` and ``backward``."""

    def __init__(self):
        self._saved = ()
        self._versions = ()
        self.needs_input_grad = ()
        self._freed = False
        self._fn_name = "Function"  # the Function subclass, for error messages

    def save_for_backward(self, *tensors):
        self._saved = tensors
        self._versions = tuple(t._version[0] if t is not None else None for t in tensors)

    @property
    def saved_tensors(self):
        if self._freed:
            from runba.autograd.engine import _FREED_MSG

            raise RuntimeError(_FREED_MSG)
        for t, v in zip(self._saved, self._versions):
            if t is not None and t._version[0] != v:
                raise RuntimeError(
                    "one of the variables needed for gradient computation has been modified "
                    f"by an inplace operation: [{t.dtype.name} tensor of shape "
                    f"{list(t.shape)}], saved by {self._fn_name}.forward "
                    f"({self._fn_name}Backward), is at version {t._version[0]}; expected "
                    f"version {v} instead. Hint: avoid the in-place operation, or clone() the "
                    "tensor before it."
                )
        return self._saved

    def mark_non_differentiable(self, *tensors):
        pass

    def set_materialize_grads(self, value: bool):
        pass


def _function_vjp(node, g):
    cls, ctx = node.attrs["cls"], node.attrs["ctx"]
    grads = cls.backward(ctx, g)
    if not isinstance(grads, tuple):
        grads = (grads,)
    n_in = len(node.next)
    if len(grads) != n_in:
        raise RuntimeError(
            f"function {cls.__name__}.backward returned an incorrect number of gradients "
            f"(expected {n_in}, got {len(grads)})"
        )
    return grads


_FUNCTION_OP = OpDef("function", EXTERN, impl=lambda *a: None, vjp=_function_vjp, saves=SAVE_NONE)


class _FunctionNode(Node):
    __slots__ = ()

    def name(self) -> str:
        return f"{self.attrs['cls'].__name__}Backward"

    def release(self):
        super().release()
        self.attrs["ctx"]._freed = True


class Function:
    """Base class for custom differentiable ops: define ``forward(ctx, *args)`` and
    ``backward(ctx, *grads)`` as static methods and call ``apply``."""

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args):
        Tensor = registry.Tensor
        ctx = FunctionCtx()
        ctx._fn_name = cls.__name__
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a._rg for a in args)
        prev = STATE.grad_enabled
        STATE.grad_enabled = False
        try:
            out = cls.forward(ctx, *args)
        finally:
            STATE.grad_enabled = prev
        if not (prev and any(ctx.needs_input_grad)):
            return out
        if not isinstance(out, Tensor):
            raise NotImplementedError(
                f"{cls.__name__}.forward must return a single Tensor when inputs require grad "
                f"(got {type(out).__name__}); multiple outputs are not supported yet"
            )
        if out._base is not None or any(out is a for a in args):
            out = out.detach()  # the result gets its own grad_fn, never an input's
        next_edges = tuple(
            (a.grad_fn if a.grad_fn is not None else _acc_node(a)) if need else None
            for a, need in zip(args, ctx.needs_input_grad)
        )
        meta = tuple((a._data.shape, a.dtype) if isinstance(a, Tensor) else None for a in args)
        node = _FunctionNode(
            _FUNCTION_OP, {"cls": cls, "ctx": ctx}, next_edges, ctx.needs_input_grad, meta
        )
        out.grad_fn = node
        out._rg = True
        return out
