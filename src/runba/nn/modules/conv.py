"""``Conv2d`` (the op itself is ``runba.ops.conv.conv2d``, imported when first called)."""

from __future__ import annotations

import math

import runba
from runba.nn import init
from runba.nn.module import Module, module_error
from runba.nn.parameter import Parameter

__all__ = ["Conv2d"]


def _pair(v, name: str) -> tuple:
    if isinstance(v, int):
        return (v, v)
    t = tuple(v)
    if len(t) != 2 or not all(isinstance(i, int) for i in t):
        raise ValueError(f"Conv2d: {name} must be an int or a pair of ints, got {v!r}")
    return t


class Conv2d(Module):
    """2-D convolution over (N, C_in, H, W) or unbatched (C_in, H, W) inputs.

    ``weight`` is ``(out_channels, in_channels // groups, kH, kW)``; initialised like
    PyTorch (kaiming_uniform ``a=sqrt(5)``, bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
    ``fan_in = in_channels // groups * kH * kW``). ``padding`` is an int, a pair, ``"valid"``
    or ``"same"`` (stride 1 only); ``padding_mode`` must be ``"zeros"``.

    >>> from runba import nn
    >>> nn.Conv2d(1, 20, 5)
    Conv2d(1, 20, kernel_size=(5, 5), stride=(1, 1))
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device=None,
        dtype=None,
    ):
        super().__init__()
        if groups <= 0:
            raise ValueError("groups must be a positive integer")
        if in_channels % groups != 0:
            raise ValueError("in_channels must be divisible by groups")
        if out_channels % groups != 0:
            raise ValueError("out_channels must be divisible by groups")
        if padding_mode != "zeros":
            raise NotImplementedError(
                f"Conv2d: padding_mode={padding_mode!r} is not supported yet (only 'zeros'); "
                "pad explicitly with F.pad(x, pad, mode=...) and use padding=0"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.dilation = _pair(dilation, "dilation")
        if isinstance(padding, str):
            if padding not in ("valid", "same"):
                raise ValueError(
                    f"Invalid padding string {padding!r}, should be one of {{'valid', 'same'}}"
                )
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError("padding='same' is not supported for strided convolutions")
            self.padding = padding
        else:
            self.padding = _pair(padding, "padding")
        self.groups = groups
        self.padding_mode = padding_mode
        self.weight = Parameter(
            runba.empty(
                out_channels, in_channels // groups, *self.kernel_size, dtype=dtype, device=device
            )
        )
        if bias:
            self.bias = Parameter(runba.empty(out_channels, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            if fan_in != 0:
                bound = 1 / math.sqrt(fan_in)
                init.uniform_(self.bias, -bound, bound)

    def forward(self, input):
        from runba.ops import conv

        ndim = input.ndim
        if ndim not in (3, 4):
            raise module_error(
                self,
                f"expected 3D (unbatched) or 4D (batched) input, got {ndim}D input of shape "
                f"{list(input.shape)}",
            )
        if input.shape[-3] != self.in_channels:
            raise module_error(
                self,
                f"expected input with {self.in_channels} channels (dim {ndim - 3}, "
                f"in_channels={self.in_channels}, groups={self.groups}), got shape "
                f"{list(input.shape)}",
            )
        x = input if ndim == 4 else input.unsqueeze(0)
        out = conv.conv2d(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )
        return out if ndim == 4 else out.squeeze(0)

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s
