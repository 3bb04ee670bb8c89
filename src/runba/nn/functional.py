"""Functional forms of the layers and losses, PyTorch's ``torch.nn.functional``.

Everything here is written in runba Tensor ops (so the JIT can record it); numpy is never
used for the math.

>>> import runba
>>> import runba.nn.functional as F
>>> logits = runba.tensor([[2.0, 0.5, -1.0]])
>>> round(F.cross_entropy(logits, runba.tensor([0])).item(), 4)
0.2413
"""

from __future__ import annotations

import math
import warnings

import runba
from runba.autograd import no_grad
from runba.ops import elementwise as _ew
from runba.ops import linalg as _linalg
from runba.ops import reduce as _red
from runba.ops.index import one_hot
from runba.tensor import Tensor

__all__ = [
    "linear",
    "relu",
    "relu6",
    "leaky_relu",
    "elu",
    "hardtanh",
    "gelu",
    "silu",
    "sigmoid",
    "tanh",
    "softplus",
    "logsigmoid",
    "softmax",
    "log_softmax",
    "dropout",
    "batch_norm",
    "layer_norm",
    "one_hot",
    "pad",
    "conv2d",
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "mse_loss",
    "l1_loss",
    "nll_loss",
    "cross_entropy",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
]


# ---------------------------------------------------------------------------- layers
def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``input @ weight.T + bias`` (weight is ``(out_features, in_features)``)."""
    return _linalg.linear(input, weight, bias)


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    return input.relu_() if inplace else input.relu()


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    return hardtanh(input, 0.0, 6.0, inplace)


def hardtanh(
    input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False
) -> Tensor:
    return input.clamp_(min_val, max_val) if inplace else input.clamp(min_val, max_val)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    if inplace:
        return input.leaky_relu_(negative_slope)
    return _ew.leaky_relu(input, negative_slope)


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """``x`` for x > 0, else ``alpha * (exp(x) - 1)``."""
    out = _ew.where(input > 0, input, _ew.expm1(_ew.minimum(input, 0.0)) * alpha)
    return input.copy_(out) if inplace else out


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """Exact GELU ``x * Phi(x)``, or the tanh approximation with ``approximate="tanh"``."""
    return _ew.gelu(input, approximate)


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    out = _ew.silu(input)
    return input.copy_(out) if inplace else out


def sigmoid(input: Tensor) -> Tensor:
    return input.sigmoid()


def tanh(input: Tensor) -> Tensor:
    return input.tanh()


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """``log(1 + exp(beta * x)) / beta``, linear where ``beta * x > threshold``."""
    return _ew.softplus(input, beta, threshold)


def logsigmoid(input: Tensor) -> Tensor:
    """``log(sigmoid(x)) = -softplus(-x)``, stable for large ``|x|``."""
    return -_ew.softplus(-input)


def _get_softmax_dim(name: str, ndim: int, stacklevel: int) -> int:
    warnings.warn(
        f"Implicit dimension choice for {name} has been deprecated. "
        "Change the call to include dim=X as an argument.",
        stacklevel=stacklevel,
    )
    return 0 if ndim in (0, 1, 3) else 1


def softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    """Softmax along ``dim`` (PyTorch's implicit-dim rule, with its warning, when None)."""
    if dim is None:
        dim = _get_softmax_dim("softmax", input.ndim, _stacklevel)
    return _red.softmax(input, dim, dtype=dtype)


def log_softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    """Log-softmax along ``dim`` (implicit-dim rule and warning when None)."""
    if dim is None:
        dim = _get_softmax_dim("log_softmax", input.ndim, _stacklevel)
    return _red.log_softmax(input, dim, dtype=dtype)


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)``.

    Identity when ``training`` is False. The mask comes from runba's Philox stream
    (``runba.rand``), so ``runba.manual_seed`` makes it reproducible.
    """
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        keep = input * 0.0
    else:
        mask = runba.rand(input.shape, dtype=input.dtype) < (1.0 - p)
        keep = input * (mask.to(input.dtype) * (1.0 / (1.0 - p)))
    return input.copy_(keep) if inplace else keep


def _channel_shape(input: Tensor) -> tuple:
    return (1, input.shape[1]) + (1,) * (input.ndim - 2)


def batch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Batch normalisation over every dim but 1 (the channel dim).

    Training: normalise with the batch mean and biased variance, and (when running stats
    are given) update them in place under ``no_grad``:
    ``running = (1 - momentum) * running + momentum * batch_stat``, with the unbiased variance
    for ``running_var``. Otherwise normalise with ``running_mean``/``running_var``.
    """
    if input.ndim < 2:
        raise ValueError(f"batch_norm: expected an input with at least 2 dims, got {input.ndim}")
    shape = _channel_shape(input)
    if training:
        c = input.shape[1]
        n = input.numel() // c if c else 0
        if n <= 1:
            raise ValueError(
                "Expected more than 1 value per channel when training, got input size "
                f"{input.shape}"
            )
        dims = (0, *range(2, input.ndim))
        mean = input.mean(dims, keepdim=True)
        diff = input - mean
        var = (diff * diff).mean(dims, keepdim=True)
        if running_mean is not None or running_var is not None:
            with no_grad():
                if running_mean is not None:
                    running_mean.mul_(1.0 - momentum).add_(
                        mean.detach().reshape(c).to(running_mean.dtype) * momentum
                    )
                if running_var is not None:
                    running_var.mul_(1.0 - momentum).add_(
                        var.detach().reshape(c).to(running_var.dtype) * (momentum * n / (n - 1))
                    )
        scale = (var + eps).rsqrt()
        if weight is not None:
            scale = scale * weight.reshape(shape)
        out = diff * scale
        return out if bias is None else out + bias.reshape(shape)
    if running_mean is None or running_var is None:
        raise ValueError("batch_norm: running_mean and running_var are required when not training")
    scale = (running_var + eps).rsqrt()
    if weight is not None:
        scale = scale * weight
    shift = -running_mean * scale
    if bias is not None:
        shift = shift + bias
    return input * scale.reshape(shape) + shift.reshape(shape)


def layer_norm(
    input: Tensor,
    normalized_shape,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Normalise over the trailing ``normalized_shape`` dims (biased variance)."""
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(ns)
    if k == 0 or input.ndim < k or tuple(input.shape[input.ndim - k :]) != ns:
        raise RuntimeError(
            f"Given normalized_shape={list(ns)}, expected input with shape "
            f"[*, {', '.join(map(str, ns))}], but got input of size{list(input.shape)}"
        )
    dims = tuple(range(-k, 0))
    mean = input.mean(dims, keepdim=True)
    diff = input - mean
    var = (diff * diff).mean(dims, keepdim=True)
    out = diff * (var + eps).rsqrt()
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


def pad(input: Tensor, pad, mode: str = "constant", value: float | None = None) -> Tensor:
    """Pad the last ``len(pad) // 2`` dims: ``pad = (last_left, last_right, prev_left, ...)``.

    ``mode``: ``"constant"`` (negative pads crop), ``"reflect"``, ``"replicate"``,
    ``"circular"``.
    """
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2:
        raise ValueError("Padding length must be divisible by 2")
    if len(pad) // 2 > input.ndim:
        raise ValueError(
            "Padding length should be less than or equal to two times the input dimension "
            f"but got padding length {len(pad)} and input of dimension {input.ndim}"
        )
    if mode not in ("constant", "reflect", "replicate", "circular"):
        raise NotImplementedError(f"pad: mode {mode!r} is not supported")
    if mode != "constant" and value:
        raise ValueError(f'Padding mode "{mode}" doesn\'t take in value argument')
    out = input
    for i in range(len(pad) // 2):
        dim = input.ndim - 1 - i
        left, right = pad[2 * i], pad[2 * i + 1]
        n = out.shape[dim]
        if mode == "constant":
            if left < 0:
                out = out.narrow(dim, -left, n + left)
                left = 0
            if right < 0:
                out = out.narrow(dim, 0, out.shape[dim] + right)
                right = 0
            parts = []
            for width in (left, right):
                if width:
                    shape = list(out.shape)
                    shape[dim] = width
                    parts.append(
                        runba.full(shape, 0.0 if value is None else value, dtype=out.dtype)
                    )
            if parts:
                pieces = ([parts.pop(0)] if left else []) + [out] + parts
                out = runba.cat(pieces, dim)
            continue
        if mode == "reflect" and (left >= n or right >= n):
            raise RuntimeError(
                f"pad: padding size should be less than the corresponding input dimension, but "
                f"got padding ({left}, {right}) at dimension {dim} of input {list(input.shape)}"
            )
        if mode == "circular" and (left > n or right > n):
            raise RuntimeError(
                f"pad: padding value ({left}, {right}) is larger than the input size {n} "
                f"at dimension {dim} in circular mode"
            )
        idx = []
        for j in range(-left, n + right):
            if mode == "reflect":
                j = -j if j < 0 else (2 * (n - 1) - j if j >= n else j)
            elif mode == "replicate":
                j = min(max(j, 0), n - 1)
            else:
                j %= n
            idx.append(j)
        out = out.index_select(dim, runba.tensor(idx, dtype=runba.int64))
    return out


# ---------------------------------------------------------------------------- conv / pool
def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation), ``runba.ops.conv.conv2d``."""
    from runba.ops import conv

    return conv.conv2d(input, weight, bias, stride, padding, dilation, groups)


def max_pool2d(
    input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False
):
    """2-D max pooling, ``runba.ops.conv.max_pool2d``."""
    from runba.ops import conv

    return conv.max_pool2d(
        input,
        kernel_size,
        stride,
        padding,
        dilation,
        ceil_mode=ceil_mode,
        return_indices=return_indices,
    )


def avg_pool2d(
    input,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
):
    """2-D average pooling, ``runba.ops.conv.avg_pool2d``."""
    from runba.ops import conv

    return conv.avg_pool2d(
        input,
        kernel_size,
        stride,
        padding,
        ceil_mode=ceil_mode,
        count_include_pad=count_include_pad,
        divisor_override=divisor_override,
    )


def adaptive_avg_pool2d(input, output_size):
    """2-D adaptive average pooling, ``runba.ops.conv.adaptive_avg_pool2d``."""
    from runba.ops import conv

    return conv.adaptive_avg_pool2d(input, output_size)


# ---------------------------------------------------------------------------- losses
_REDUCTIONS = ("none", "mean", "sum")


def _legacy_reduction(size_average, reduce, reduction: str) -> str:
    if size_average is None and reduce is None:
        if reduction not in _REDUCTIONS:
            raise ValueError(f"{reduction} is not a valid value for reduction")
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    ret = ("mean" if size_average else "sum") if reduce else "none"
    warnings.warn(
        f"size_average and reduce args will be deprecated, please use reduction='{ret}' instead.",
        stacklevel=3,
    )
    return ret


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _warn_size(input: Tensor, target: Tensor, name: str) -> None:
    if target.shape != input.shape:
        warnings.warn(
            f"Using a target size ({target.shape}) that is different to the input size "
            f"({input.shape}). This will likely lead to incorrect results due to "
            "broadcasting. Please ensure they have the same size.",
            stacklevel=3,
        )


def mse_loss(
    input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean"
) -> Tensor:
    """Mean squared error ``(input - target)^2`` with ``reduction`` none/mean/sum.

    Warns (like PyTorch) when ``target`` has a different size and will broadcast.
    """
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _warn_size(input, target, "mse_loss")
    d = input - target
    return _reduce(d * d, reduction)


def l1_loss(
    input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean"
) -> Tensor:
    """Mean absolute error ``|input - target|`` with ``reduction`` none/mean/sum."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _warn_size(input, target, "l1_loss")
    return _reduce((input - target).abs(), reduction)


def _check_class_target(input: Tensor, target: Tensor, name: str):
    """Validate (N, C, d1...) input against (N, d1...) integer target; return class count."""
    if input.ndim < 2:
        raise ValueError(f"{name}: expected input of shape (N, C, ...), got {list(input.shape)}")
    if target.dtype.is_floating_point or target.dtype is runba.bool:
        raise RuntimeError(
            f"{name}: expected target of integer class indices (int64), got dtype "
            f"{target.dtype.name}"
        )
    if target.ndim == 0 or input.shape[0] != target.shape[0]:
        got = target.shape[0] if target.ndim else "a 0-dim target"
        raise ValueError(
            f"Expected input batch_size ({input.shape[0]}) to match target batch_size ({got})."
        )
    if tuple(target.shape[1:]) != tuple(input.shape[2:]):
        raise RuntimeError(
            f"{name}: expected target of shape {[input.shape[0], *input.shape[2:]]} for input "
            f"of shape {list(input.shape)}, got target of shape {list(target.shape)}"
        )
    c = input.shape[1]
    return c


def _picked_log_probs(logp: Tensor, target: Tensor, weight, ignore_index: int, name: str):
    """``(-logp[target] * w, w)`` for class-index targets; ``w`` is None when every element
    counts with weight 1 (no class weights and nothing ignored)."""
    c = _check_class_target(logp, target, name)
    if weight is not None and tuple(weight.shape) != (c,):
        raise RuntimeError(
            f"{name}: weight tensor should be defined either for all {c} classes or no "
            f"classes but got weight tensor of shape: {list(weight.shape)}"
        )
    if target.dtype is not runba.int64:
        target = target.long()
    may_ignore = 0 <= ignore_index < c
    invalid = (target < 0) | (target >= c)
    if bool(invalid.any()):
        bad = invalid & (target != ignore_index)
        if bool(bad.any()):
            first = target[bad].reshape(-1)[0].item()
            raise IndexError(f"{name}: Target {first} is out of bounds (C = {c} classes).")
        may_ignore = True
    if may_ignore:
        keep = target != ignore_index
        safe = _ew.where(keep, target, 0)
    else:
        keep, safe = None, target
    picked = -logp.gather(1, safe.unsqueeze(1)).squeeze(1)
    if weight is None and keep is None:
        return picked, None, None
    w = keep.to(logp.dtype) if weight is None else weight[safe]
    if weight is not None and keep is not None:
        w = w * keep.to(w.dtype)
    loss = picked * w
    if keep is not None:
        # ignored targets get a zero gradient by selection, not by weight 0: with every
        # target ignored the mean is 0/0 (NaN, as in PyTorch) and its gradient inf * 0
        loss = _ew.where(keep, loss, 0.0)
    return loss, w, keep


def _unbatched(input: Tensor, target: Tensor):
    """(C,) input with a 0-dim target -> (1, C) / (1,)."""
    return input.unsqueeze(0), target.unsqueeze(0)


def nll_loss(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average=None,
    ignore_index: int = -100,
    reduce=None,
    reduction: str = "mean",
) -> Tensor:
    """Negative log-likelihood of log-probabilities ``input`` (N, C, d1...) at class
    indices ``target`` (N, d1...).

    ``mean`` divides by the total weight of the non-ignored targets (like PyTorch).
    """
    reduction = _legacy_reduction(size_average, reduce, reduction)
    squeeze = input.ndim == 1
    if squeeze:
        input, target = _unbatched(input, target)
    loss, w, _ = _picked_log_probs(input, target, weight, ignore_index, "nll_loss")
    if reduction == "none":
        return loss.squeeze(0) if squeeze else loss
    if reduction == "sum":
        return loss.sum()
    return loss.mean() if w is None else loss.sum() / w.sum()


def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average=None,
    ignore_index: int = -100,
    reduce=None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross entropy between logits ``input`` (N, C, d1...) or (C,) and ``target``.

    ``target`` holds class indices (N, d1...) (``ignore_index`` and ``weight`` apply), or
    class probabilities with the input's shape (floating dtype). ``label_smoothing`` mixes
    the target with the uniform distribution, as PyTorch does.
    """
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    class_dim = 0 if input.ndim == 1 else 1
    logp = log_softmax(input, class_dim)
    n_classes = input.shape[class_dim]
    if target.dtype.is_floating_point:
        return _cross_entropy_probs(
            logp, target, weight, reduction, label_smoothing, class_dim, n_classes
        )
    squeeze = input.ndim == 1
    if squeeze:
        logp, target = _unbatched(logp, target)
    nll, w, keep = _picked_log_probs(logp, target, weight, ignore_index, "cross_entropy")
    if label_smoothing > 0.0:
        lw = logp if weight is None else logp * weight.reshape(_channel_shape(logp))
        smooth = -lw.sum(1)
        if keep is not None:
            smooth = _ew.where(keep, smooth, 0.0)
        eps = label_smoothing
        nll = nll * (1.0 - eps) + smooth * (eps / n_classes)
    if reduction == "none":
        return nll.squeeze(0) if squeeze else nll
    if reduction == "sum":
        return nll.sum()
    return nll.mean() if w is None else nll.sum() / w.sum()


def _cross_entropy_probs(logp, target, weight, reduction, label_smoothing, class_dim, n_classes):
    if target.shape != logp.shape:
        raise RuntimeError(
            f"cross_entropy: class-probability targets must have the input's shape "
            f"{list(logp.shape)}, got {list(target.shape)} (class indices must be int64)"
        )
    if label_smoothing > 0.0:
        target = target * (1.0 - label_smoothing) + label_smoothing / n_classes
    prod = logp * target
    if weight is not None:
        if tuple(weight.shape) != (n_classes,):
            raise RuntimeError(
                f"cross_entropy: weight tensor should be defined either for all {n_classes} "
                f"classes or no classes but got weight tensor of shape: {list(weight.shape)}"
            )
        shape = [1] * logp.ndim
        shape[class_dim] = n_classes
        prod = prod * weight.reshape(shape)
    if reduction == "none":
        return -prod.sum(class_dim)
    if reduction == "sum":
        return -prod.sum()
    n = logp.numel() // n_classes if n_classes else 0
    return -prod.sum() / n if n else -prod.sum() * math.nan


def _safe_log(x: Tensor) -> Tensor:
    """``log(x)`` clamped below at -100 (PyTorch's BCE), with finite gradients at x == 0."""
    pos = x > 0
    return _ew.where(pos, _ew.where(pos, x, 1.0).log(), -100.0).clamp(min=-100.0)


def binary_cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
) -> Tensor:
    """``-(t log x + (1 - t) log(1 - x))`` on probabilities ``input`` (logs clamped >= -100)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if target.shape != input.shape:
        raise ValueError(
            f"Using a target size ({target.shape}) that is different to the input size "
            f"({input.shape}) is deprecated. Please ensure they have the same size."
        )
    if bool(((input < 0) | (input > 1)).any()):  # NaN passes, as in PyTorch
        raise RuntimeError(
            "binary_cross_entropy: all elements of input should be between 0 and 1 (apply "
            "sigmoid first, or use binary_cross_entropy_with_logits)"
        )
    loss = -(target * _safe_log(input) + (1.0 - target) * _safe_log(1.0 - input))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
    pos_weight: Tensor | None = None,
) -> Tensor:
    """BCE on logits, stably: ``(1 - t) x + lw * softplus(-x)`` with
    ``lw = 1 + (pos_weight - 1) t`` (``softplus(-x) = log(1 + exp(-x))`` never overflows and
    its gradient is exact everywhere, including ``x == 0``)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if target.shape != input.shape:
        raise ValueError(
            f"Target size ({target.shape}) must be the same as input size ({input.shape})"
        )
    sp = _ew.softplus(-input)
    if pos_weight is not None:
        sp = sp * ((pos_weight - 1.0) * target + 1.0)
    loss = (1.0 - target) * input + sp
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)
