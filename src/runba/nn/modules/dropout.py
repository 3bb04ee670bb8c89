"""``Dropout``."""

from __future__ import annotations

from runba.nn import functional as F
from runba.nn.module import Module

__all__ = ["Dropout"]


class Dropout(Module):
    """In training mode, zero each element with probability ``p`` and scale the survivors by
    ``1 / (1 - p)``; in eval mode, the identity. The mask is drawn from runba's Philox stream.

    >>> import runba
    >>> from runba import nn
    >>> drop = nn.Dropout(0.5).eval()
    >>> x = runba.ones(4)
    >>> drop(x) is x
    True
    """

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        if p < 0 or p > 1:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.inplace = inplace

    def forward(self, input):
        return F.dropout(input, self.p, self.training, self.inplace)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"
