"""The op registry and the functions built on it.

``registry`` holds one :class:`~runba.ops.registry.OpDef` per primitive; the modules below
declare them (elementwise, reduce, movement, index, linalg) next to the public functions that
dispatch to them. Importing this package binds the functions as Tensor methods.
"""

from runba.ops import conv, elementwise, index, inplace, linalg, movement, reduce, registry
from runba.ops.registry import REGISTRY, dispatch

__all__ = ["REGISTRY", "dispatch", "conv", "elementwise", "index", "linalg", "movement", "reduce"]


def bind_tensor_methods(Tensor):  # noqa: N803
    """Install every ``@tensor_method`` function and the Python operators on Tensor."""
    for name, fn in registry.METHODS.items():
        setattr(Tensor, name, fn)
    inplace.bind_operators(Tensor)
