"""Normalisation layers: ``BatchNorm1d``, ``BatchNorm2d``, ``LayerNorm``."""

from __future__ import annotations

import runba
from runba.nn import functional as F
from runba.nn import init
from runba.nn.module import Module, module_error
from runba.nn.parameter import Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d", "LayerNorm"]


class _BatchNorm(Module):
    _dims_ok: tuple = ()
    _dims_text = ""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device=None,
        dtype=None,
        *,
        bias: bool = True,
    ):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = Parameter(runba.empty(num_features, dtype=dtype, device=device))
            if bias:
                self.bias = Parameter(runba.empty(num_features, dtype=dtype, device=device))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", runba.zeros(num_features, dtype=dtype))
            self.register_buffer("running_var", runba.ones(num_features, dtype=dtype))
            self.register_buffer("num_batches_tracked", runba.tensor(0, dtype=runba.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            with runba.no_grad():
                self.running_mean.zero_()
                self.running_var.fill_(1)
                self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            if self.bias is not None:
                init.zeros_(self.bias)

    def forward(self, input):
        if input.ndim not in self._dims_ok:
            raise module_error(
                self,
                f"expected {self._dims_text} input (got {input.ndim}D input of shape "
                f"{list(input.shape)})",
                ValueError,
            )
        if input.shape[1] != self.num_features:
            raise module_error(
                self,
                f"expected input with {self.num_features} channels (dim 1), got shape "
                f"{list(input.shape)}",
            )
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            nbt = self.num_batches_tracked
            if nbt is not None:
                with runba.no_grad():
                    nbt.add_(1)
                factor = 1.0 / nbt.item() if self.momentum is None else self.momentum
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats
        return F.batch_norm(
            input,
            self.running_mean if track else None,
            self.running_var if track else None,
            self.weight,
            self.bias,
            use_batch,
            factor,
            self.eps,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, bias={self.bias is not None}, "
            f"track_running_stats={self.track_running_stats}"
        )


class BatchNorm1d(_BatchNorm):
    """Batch normalisation over (N, C) or (N, C, L) inputs, per channel C.

    Training normalises with the batch's biased variance and updates ``running_mean`` /
    ``running_var`` (unbiased) with ``momentum`` (``None``: cumulative average) and counts
    ``num_batches_tracked``; eval mode normalises with the running statistics.

    >>> import runba
    >>> from runba import nn
    >>> bn = nn.BatchNorm1d(3)
    >>> y = bn(runba.randn(8, 3))
    >>> int(bn.num_batches_tracked)
    1
    """

    _dims_ok = (2, 3)
    _dims_text = "2D or 3D"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation over (N, C, H, W) inputs, per channel C (see ``BatchNorm1d``).

    >>> from runba import nn
    >>> nn.BatchNorm2d(20)
    BatchNorm2d(20, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)
    """

    _dims_ok = (4,)
    _dims_text = "4D"


class LayerNorm(Module):
    """Normalise over the trailing ``normalized_shape`` dims, then scale and shift.

    >>> import runba
    >>> from runba import nn
    >>> ln = nn.LayerNorm(4)
    >>> ln
    LayerNorm((4,), eps=1e-05, elementwise_affine=True, bias=True)
    >>> ln(runba.randn(2, 4)).shape
    runba.Size([2, 4])
    """

    def __init__(
        self,
        normalized_shape,
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if isinstance(normalized_shape, int):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(runba.ones(self.normalized_shape, dtype=dtype, device=device))
            if bias:
                self.bias = Parameter(
                    runba.zeros(self.normalized_shape, dtype=dtype, device=device)
                )
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def reset_parameters(self) -> None:
        if self.elementwise_affine:
            init.ones_(self.weight)
            if self.bias is not None:
                init.zeros_(self.bias)

    def forward(self, input):
        k = len(self.normalized_shape)
        if input.ndim < k or tuple(input.shape[input.ndim - k :]) != self.normalized_shape:
            raise module_error(
                self,
                f"expected input with shape [*, {', '.join(map(str, self.normalized_shape))}], "
                f"got shape {list(input.shape)}",
            )
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (
            f"{self.normalized_shape}, eps={self.eps}, "
            f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}"
        )
