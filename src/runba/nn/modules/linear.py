"""``Linear`` and ``Identity``."""

from __future__ import annotations

import math

import runba
from runba.nn import functional as F
from runba.nn import init
from runba.nn.module import Module, module_error
from runba.nn.parameter import Parameter

__all__ = ["Linear", "Identity"]


class Identity(Module):
    """Returns its input unchanged (any constructor arguments are ignored).

    >>> import runba
    >>> from runba import nn
    >>> x = runba.ones(2)
    >>> nn.Identity(54, unused="x")(x) is x
    True
    """

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class Linear(Module):
    """``y = x @ weight.T + bias`` over the last dim.

    ``weight`` is ``(out_features, in_features)``, initialised like PyTorch (kaiming_uniform
    with ``a=sqrt(5)``, i.e. U(-1/sqrt(in), 1/sqrt(in))); ``bias`` is U(-1/sqrt(in), 1/sqrt(in)).

    >>> import runba
    >>> from runba import nn
    >>> fc = nn.Linear(784, 10)
    >>> fc
    Linear(in_features=784, out_features=10, bias=True)
    >>> fc(runba.randn(32, 784)).shape
    runba.Size([32, 10])
    """

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None
    ):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(runba.empty(out_features, in_features, dtype=dtype, device=device))
        if bias:
            self.bias = Parameter(runba.empty(out_features, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input):
        shape = input.shape
        if not shape or shape[-1] != self.in_features:
            raise module_error(
                self,
                f"expected input with last dimension {self.in_features}, got shape {list(shape)}",
            )
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )
