"""``Parameter``: a leaf Tensor that a :class:`~runba.nn.Module` registers as learnable."""

from __future__ import annotations

from runba.tensor import Tensor

__all__ = ["Parameter", "Buffer"]


class Parameter(Tensor):
    """A Tensor that is a module parameter: assigning one to a Module attribute registers it.

    It shares storage (and the version counter) with ``data`` and is a leaf that requires
    grad by default. Operations on a Parameter return plain Tensors.

    >>> import runba
    >>> from runba import nn
    >>> p = nn.Parameter(runba.zeros(2))
    >>> p.requires_grad, p.is_leaf
    (True, True)
    >>> p
    Parameter containing:
    tensor([0., 0.], requires_grad=True)
    """

    __slots__ = ()

    def __new__(cls, data: Tensor | None = None, requires_grad: bool = True):
        if data is None:
            from runba.creation import empty

            data = empty(0)
        if not isinstance(data, Tensor):
            raise TypeError(
                f"Parameter(): data must be a runba.Tensor, got {type(data).__name__} "
                "(wrap it with runba.tensor(...) first)"
            )
        if requires_grad and not data.dtype.is_floating_point:
            raise RuntimeError(
                f"Only Tensors of floating point dtype can require gradients "
                f"(Parameter got dtype {data.dtype!r}); pass requires_grad=False"
            )
        if data._lazy is not None:
            data._realize()
        p = object.__new__(cls)
        p._data = data._data
        p.dtype = data.dtype
        p._version = data._version
        p._rg = bool(requires_grad)
        p.grad = None
        p.grad_fn = None
        p._base = None
        p._extra = None
        p._lazy = None
        return p

    def __init__(self, data=None, requires_grad=True):
        pass  # everything happens in __new__ (Tensor.__init__ refuses direct construction)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    __str__ = __repr__

    def __deepcopy__(self, memo):
        from runba.ops.elementwise import clone

        if id(self) in memo:
            return memo[id(self)]
        p = Parameter(clone(self.detach()), self._rg)
        memo[id(self)] = p
        return p


class Buffer:
    """Marks a tensor to register as a buffer when assigned to a Module attribute.

    ``self.stats = nn.Buffer(runba.zeros(3))`` is ``self.register_buffer("stats", ...)``.
    """

    __slots__ = ("data", "persistent")

    def __init__(self, data: Tensor, *, persistent: bool = True):
        self.data = data
        self.persistent = persistent
