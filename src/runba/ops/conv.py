"""Convolution and pooling: EXTERN primitives on the hand-written kernels in
``runba.kernels.cpu.conv`` / ``runba.kernels.cpu.pool``, and the PyTorch-signature functions.

Convolution is composed of registry ops: ``im2col`` (whose adjoint is ``col2im``, and vice
versa), one matmul over the whole batch (the cols layout is ``(C*kh*kw, N, OH*OW)``, see the
kernel module), the bias add on the GEMM's own layout, and a permute to NCHW:

    cols = im2col(x)                          (C*kh*kw, N, L)
    res  = W.reshape(Cout, -1) @ cols + b.reshape(Cout, 1)             (Cout, N*L)
    out  = res.reshape(Cout, N, OH, OW).permute(1, 0, 2, 3).contiguous()

so the backward follows from the pieces: the weight gradient is ``g @ cols^T`` with the
columns matmul saved (no second im2col), the input gradient ``col2im(W^T @ g)``, the bias
gradient a sum along contiguous rows, and double backward works without conv-specific rules.
(Eager mode pays one pass for the bias and one for the permute copy either way; the bias is
added before the permute because numpy broadcasts it along ``N*L``-long rows much faster than
along the middle axis of NCHW: 0.10 vs 0.29 ms for the seed CNN's first layer, 64x20x24x24.
The JIT fuses bias, activation and permute into one epilogue.)

Max pooling is ``max_pool2d``, one pass that writes the window maxima and no indices (so
inference never computes or allocates them). Its backward recomputes the argmax from the saved
input with ``max_pool2d_indices`` (integer, not differentiable) and scatters the gradient
there with ``plane_scatter_add``. ``return_indices=True`` runs ``max_pool2d_indices`` and
gathers the values with ``plane_gather`` (the backward is then the scatter alone);
``plane_gather``'s vjp is ``plane_scatter_add`` and vice versa (the GATHER/SCATTER_ADD
pattern, per plane).

Average pooling (plain and adaptive) is one pair of kernels over explicit windows; the window
bounds and divisors are computed here from the attrs, so ``avg_pool2d_backward``'s adjoint is
``avg_pool2d`` again.

Attrs hold only Python ints/bools/tuples (hashable; the JIT keys on them). Spatial sizes that
cannot be recovered from the operands (the input's H, W in the backward ops) are attrs.
"""

from __future__ import annotations

import numpy as np

from runba.dtypes import int64
from runba.kernels.cpu import conv as _kconv
from runba.kernels.cpu import pool as _kpool
from runba.ops.registry import EXTERN, SAVE_INPUTS, SAVE_NONE, OpDef, dispatch, register

__all__ = [
    "adaptive_avg_pool2d",
    "avg_pool2d",
    "conv2d",
    "max_pool2d",
    "pool_output_size",
]


# ============================================================================ convolution
def _conv_geometry(x_shape, w_shape, stride, padding, dilation):
    """(OH, OW) for NCHW ``x_shape`` and OIHW ``w_shape``; padding is (top, bottom, left, right)."""
    kh, kw = w_shape[2], w_shape[3]
    oh = _kconv.conv_out_size(x_shape[2], kh, stride[0], padding[0] + padding[1], dilation[0])
    ow = _kconv.conv_out_size(x_shape[3], kw, stride[1], padding[2] + padding[3], dilation[1])
    return oh, ow


def _im2col(x, kernel, stride, padding, dilation, out_hw):
    return _kconv.im2col(x, kernel, stride, (padding[0], padding[2]), dilation, out_hw)


# conv2d = im2col (a registry op whose adjoint is col2im) + a GEMM + a layout permute + bias,
# all registry ops: matmul keeps the columns for the weight gradient (no second im2col), the
# backward (and double backward) follows from the pieces, and the JIT can later fuse the
# bias/activation epilogue onto the GEMM.
def _im2col_impl(x, *, kernel, stride, padding, dilation, out_hw):
    return _im2col(x, kernel, stride, padding, dilation, out_hw)


def _col2im_impl(cols, *, in_shape, kernel, stride, padding, dilation, out_hw):
    return _kconv.col2im(cols, in_shape, kernel, stride, (padding[0], padding[2]), dilation, out_hw)


def _im2col_vjp(c, g):
    return (dispatch(COL2IM, (g,), {**c.attrs, "in_shape": tuple(c.in_meta[0][0])}),)


def _col2im_vjp(c, g):
    attrs = {k: v for k, v in c.attrs.items() if k != "in_shape"}
    return (dispatch(IM2COL, (g,), attrs),)


# (N, C, H, W) -> (C*kh*kw, N, OH*OW) columns
IM2COL = register(OpDef("im2col", EXTERN, impl=_im2col_impl, vjp=_im2col_vjp))
# the adjoint: sum columns back into an (N, C, H, W) image
COL2IM = register(OpDef("col2im", EXTERN, impl=_col2im_impl, vjp=_col2im_vjp))


# ============================================================================ pooling
def pool_output_size(size, k, stride, pad, dilation=1, ceil_mode=False):
    """PyTorch's pooling output length along one axis (``pad`` on each side).

    >>> pool_output_size(5, 2, 2, 0), pool_output_size(5, 2, 2, 0, ceil_mode=True)
    (2, 3)
    """
    num = size + 2 * pad - dilation * (k - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = num // stride + 1
    # the last window must start inside the input or its left padding
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _max_pool_impl(x, *, kernel_size, stride, padding, dilation, out_hw):
    return _kpool.max_pool2d(x, kernel_size, stride, padding, dilation, out_hw)


def _max_indices_impl(x, *, kernel_size, stride, padding, dilation, out_hw):
    return _kpool.max_pool2d_indices(x, kernel_size, stride, padding, dilation, out_hw)


def _max_pool_vjp(c, g):
    # the argmax is recomputed from the saved input (one more pass over it) instead of being
    # produced and kept by the forward: the forward (and all of inference) never computes or
    # allocates indices, and the backward keeps no int64 array alive
    x = c.inputs[0]
    idx = dispatch(MAX_POOL2D_INDICES, (x,), c.attrs)
    return (dispatch(PLANE_SCATTER_ADD, (g, idx), {"in_hw": tuple(x.shape[-2:])}),)


# window maxima only (one pass, no indices); the backward scatters into the argmax
MAX_POOL2D = register(
    OpDef("max_pool2d", EXTERN, impl=_max_pool_impl, vjp=_max_pool_vjp, saves=SAVE_INPUTS)
)
# int64 argmax offsets ``ih * W + iw`` per window (return_indices, and max_pool2d's backward)
MAX_POOL2D_INDICES = register(
    OpDef(
        "max_pool2d_indices",
        EXTERN,
        impl=_max_indices_impl,
        out_dtype=lambda dtypes, attrs: int64,
    )
)


def _plane_gather_vjp(c, g):
    x, idx = c.inputs
    return dispatch(PLANE_SCATTER_ADD, (g, idx), {"in_hw": tuple(x.shape[-2:])}), None


def _plane_scatter_vjp(c, g):
    return dispatch(PLANE_GATHER, (g, c.inputs[1])), None


PLANE_GATHER = register(
    OpDef(
        "plane_gather",
        EXTERN,
        impl=_kpool.plane_gather,
        vjp=_plane_gather_vjp,
        saves=SAVE_INPUTS,
    )
)
PLANE_SCATTER_ADD = register(
    OpDef(
        "plane_scatter_add",
        EXTERN,
        impl=lambda g, idx, *, in_hw: _kpool.plane_scatter_add(g, idx, in_hw),
        vjp=_plane_scatter_vjp,
        saves=SAVE_INPUTS,
    )
)


def _avg_windows_1d(size, out, k, stride, pad):
    """Clipped window bounds, padded window sizes and clipped sizes along one axis."""
    start = np.arange(out, dtype=np.int64) * stride - pad
    end = np.minimum(start + k, size + pad)
    padded = end - start
    start = np.maximum(start, 0)
    end = np.minimum(end, size)
    return start, np.maximum(end, start), padded, np.maximum(end - start, 0)


def _avg_windows(in_hw, out_hw, kernel_size, stride, padding, count_include_pad, divisor_override):
    hs, he, hpad, hcnt = _avg_windows_1d(in_hw[0], out_hw[0], kernel_size[0], stride[0], padding[0])
    ws, we, wpad, wcnt = _avg_windows_1d(in_hw[1], out_hw[1], kernel_size[1], stride[1], padding[1])
    if divisor_override:
        div = np.full((len(hs), len(ws)), float(divisor_override))
    elif count_include_pad:
        div = np.outer(hpad, wpad).astype(np.float64)
    else:
        div = np.outer(hcnt, wcnt).astype(np.float64)
    # an empty window (ceil_mode) averages to 0, like PyTorch; never divide 0 by 0
    div[np.outer(hcnt, wcnt) == 0] = 1.0
    return hs, he, ws, we, div


def _avg_attrs(attrs):
    return (
        attrs["kernel_size"],
        attrs["stride"],
        attrs["padding"],
        attrs["count_include_pad"],
        attrs["divisor_override"],
    )


def _avg_pool_impl(x, **attrs):
    windows = _avg_windows(x.shape[-2:], attrs["out_hw"], *_avg_attrs(attrs))
    return _kpool.avg_pool2d_forward(x, windows)


def _avg_pool_backward_impl(g, **attrs):
    windows = _avg_windows(attrs["in_hw"], g.shape[-2:], *_avg_attrs(attrs))
    return _kpool.avg_pool2d_backward(g, windows, attrs["in_hw"])


def _avg_pool_vjp(c, g):
    attrs = {k: v for k, v in c.attrs.items() if k != "out_hw"}
    return (dispatch(AVG_POOL2D_BACKWARD, (g,), {**attrs, "in_hw": tuple(c.in_shapes[0][-2:])}),)


def _avg_pool_backward_vjp(c, h):
    attrs = {k: v for k, v in c.attrs.items() if k != "in_hw"}
    return (dispatch(AVG_POOL2D, (h,), {**attrs, "out_hw": tuple(c.in_shapes[0][-2:])}),)


AVG_POOL2D = register(
    OpDef("avg_pool2d", EXTERN, impl=_avg_pool_impl, vjp=_avg_pool_vjp, saves=SAVE_NONE)
)
AVG_POOL2D_BACKWARD = register(
    OpDef(
        "avg_pool2d_backward",
        EXTERN,
        impl=_avg_pool_backward_impl,
        vjp=_avg_pool_backward_vjp,
        saves=SAVE_NONE,
    )
)


def _adaptive_windows(in_hw, out_hw):
    def axis(size, out):
        o = np.arange(out, dtype=np.int64)
        start = (o * size) // out
        end = ((o + 1) * size + out - 1) // out
        return start, end, end - start

    hs, he, hn = axis(in_hw[0], out_hw[0])
    ws, we, wn = axis(in_hw[1], out_hw[1])
    div = np.outer(hn, wn).astype(np.float64)
    div[div == 0] = 1.0
    return hs, he, ws, we, div


def _adaptive_impl(x, *, output_size):
    return _kpool.avg_pool2d_forward(x, _adaptive_windows(x.shape[-2:], output_size))


def _adaptive_backward_impl(g, *, in_hw):
    return _kpool.avg_pool2d_backward(g, _adaptive_windows(in_hw, g.shape[-2:]), in_hw)


ADAPTIVE_AVG_POOL2D = register(
    OpDef(
        "adaptive_avg_pool2d",
        EXTERN,
        impl=_adaptive_impl,
        vjp=lambda c, g: (
            dispatch(ADAPTIVE_AVG_POOL2D_BACKWARD, (g,), {"in_hw": tuple(c.in_shapes[0][-2:])}),
        ),
    )
)
ADAPTIVE_AVG_POOL2D_BACKWARD = register(
    OpDef(
        "adaptive_avg_pool2d_backward",
        EXTERN,
        impl=_adaptive_backward_impl,
        vjp=lambda c, h: (
            dispatch(ADAPTIVE_AVG_POOL2D, (h,), {"output_size": tuple(c.in_shapes[0][-2:])}),
        ),
    )
)


# ============================================================================ functions
def _pair(v, name, op):
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return (int(v), int(v))
    try:
        t = tuple(int(e) for e in v)
    except TypeError:
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {v!r}") from None
    if len(t) == 1:
        return (t[0], t[0])
    if len(t) != 2:
        raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {v!r}")
    return t


def _shape(t):
    return list(t.shape)


def _batched(input, op, what="input"):
    """(input as 4-D, whether it was unbatched 3-D)."""
    if input.ndim == 4:
        return input, False
    if input.ndim == 3:
        return input.unsqueeze(0), True
    raise RuntimeError(
        f"{op}: expected 3D (unbatched) or 4D (batched) {what}, but got {what} of shape "
        f"{_shape(input)} ({input.ndim}D)"
    )


def _check_float(t, op, what):
    if not t.dtype.is_floating_point:
        raise RuntimeError(f"{op}: expected a floating-point {what}, got {t.dtype.name}")


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation) of NCHW (or unbatched CHW) ``input`` with OIHW
    ``weight``, like ``torch.nn.functional.conv2d``.

    ``padding``: int, pair, ``"valid"`` (0) or ``"same"`` (output size = input size, stride 1;
    an odd total padding puts the extra row/column at the bottom/right, like PyTorch).

    >>> import runba
    >>> x, w = runba.ones(1, 1, 4, 4), runba.ones(2, 1, 3, 3)
    >>> conv2d(x, w, padding=1)[0, 0].tolist()[0]
    [4.0, 6.0, 6.0, 4.0]
    """
    op = "conv2d"
    if weight.ndim != 4:
        raise RuntimeError(
            f"{op}: expected a 4D weight [out_channels, in_channels/groups, kH, kW], got weight "
            f"of shape {_shape(weight)}"
        )
    x, unbatched = _batched(input, op)
    _check_float(x, op, "input")
    if weight.dtype is not x.dtype:
        raise RuntimeError(
            f"{op}: input type ({x.dtype.name}) and weight type ({weight.dtype.name}) should be "
            "the same"
        )
    groups = int(groups)
    cout, cg, kh, kw = weight.shape
    c = x.shape[1]
    if groups < 1:
        raise RuntimeError(f"{op}: non-positive groups is not supported (got groups={groups})")
    if cout % groups:
        raise RuntimeError(
            f"{op}: out_channels ({cout}, weight {_shape(weight)}) must be divisible by "
            f"groups={groups}"
        )
    if c != cg * groups:
        raise RuntimeError(
            f"{op}: expected input with {cg * groups} channels (weight {_shape(weight)}, "
            f"groups={groups}), got input of shape {_shape(input)}"
        )
    stride = _pair(stride, "stride", op)
    dilation = _pair(dilation, "dilation", op)
    if min(stride) < 1 or min(dilation) < 1:
        raise RuntimeError(
            f"{op}: stride and dilation must be positive (got stride={stride}, dilation={dilation})"
        )
    if isinstance(padding, str):
        if padding == "valid":
            pads = (0, 0, 0, 0)
        elif padding == "same":
            if stride != (1, 1):
                raise RuntimeError(
                    f"{op}: padding='same' is not supported for strided convolutions"
                )
            th, tw = dilation[0] * (kh - 1), dilation[1] * (kw - 1)
            pads = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
        else:
            raise ValueError(
                f"{op}: invalid padding string {padding!r}, should be one of {{'valid', 'same'}}"
            )
    else:
        ph, pw = _pair(padding, "padding", op)
        if ph < 0 or pw < 0:
            raise RuntimeError(f"{op}: negative padding is not supported (got {(ph, pw)})")
        pads = (ph, ph, pw, pw)
    eh, ew = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    hp, wp = x.shape[2] + pads[0] + pads[1], x.shape[3] + pads[2] + pads[3]
    if eh > hp or ew > wp:
        raise RuntimeError(
            f"{op}: kernel size ({eh}x{ew} with dilation {dilation}, weight {_shape(weight)}) "
            f"can't be greater than the padded input size ({hp}x{wp}; input {_shape(input)}, "
            f"padding {pads[0]},{pads[1]},{pads[2]},{pads[3]})"
        )
    inputs = (x, weight)
    if bias is not None:
        if bias.ndim != 1 or bias.shape[0] != cout:
            raise RuntimeError(
                f"{op}: expected bias of shape [{cout}] (weight {_shape(weight)}), got bias of "
                f"shape {_shape(bias)}"
            )
        if bias.dtype is not x.dtype:
            raise RuntimeError(
                f"{op}: input type ({x.dtype.name}) and bias type ({bias.dtype.name}) should be "
                "the same"
            )
        inputs = (x, weight, bias)
    del inputs
    oh, ow = _conv_geometry(x.shape, weight.shape, stride, pads, dilation)
    n = x.shape[0]
    attrs = {
        "kernel": (kh, kw),
        "stride": stride,
        "padding": pads,
        "dilation": dilation,
        "out_hw": (oh, ow),
    }
    cols = dispatch(IM2COL, (x,), attrs)  # (C*kh*kw, N, OH*OW)
    kg = cg * kh * kw
    nl = n * oh * ow
    if groups == 1:
        res = weight.reshape(cout, kg) @ cols.reshape(kg, nl)  # (Cout, N*L)
    else:
        res = weight.reshape(groups, cout // groups, kg) @ cols.reshape(groups, kg, nl)
        res = res.reshape(cout, nl)
    if bias is not None:
        # on the GEMM's own (Cout, N*L) layout: numpy broadcasts over long rows (~3x faster
        # than over the middle axis of the NCHW result for 64x20x24x24), and the bias
        # gradient is a sum along contiguous rows
        res = res + bias.reshape(cout, 1)
    out = res.reshape(cout, n, oh, ow).permute(1, 0, 2, 3).contiguous()
    return out.squeeze(0) if unbatched else out


def _pool_args(op, kernel_size, stride, padding):
    k = _pair(kernel_size, "kernel_size", op)
    s = k if stride is None or (not isinstance(stride, int) and len(stride) == 0) else stride
    s = _pair(s, "stride", op)
    p = _pair(padding, "padding", op)
    if min(k) < 1 or min(s) < 1:
        raise RuntimeError(
            f"{op}: kernel_size and stride must be positive (got kernel_size={k}, stride={s})"
        )
    return k, s, p


def _pool_out(op, x, input, k, s, p, d, ceil_mode):
    out = tuple(
        pool_output_size(x.shape[2 + a], k[a], s[a], p[a], d[a], ceil_mode) for a in range(2)
    )
    if min(out) < 1:
        raise RuntimeError(
            f"{op}: given input of shape {_shape(input)}, the calculated output size "
            f"{out[0]}x{out[1]} is too small (kernel_size={k}, stride={s}, padding={p}, "
            f"dilation={d})"
        )
    return out


def max_pool2d(
    input,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode=False,
    return_indices=False,
):
    """2-D max pooling like ``torch.nn.functional.max_pool2d`` (NaN propagates; indices are
    flat ``h * W + w`` offsets into each input plane).

    >>> import runba
    >>> max_pool2d(runba.arange(16.0).reshape(1, 1, 4, 4), 2).tolist()
    [[[[5.0, 7.0], [13.0, 15.0]]]]
    """
    op = "max_pool2d"
    x, unbatched = _batched(input, op)
    k, s, p = _pool_args(op, kernel_size, stride, padding)
    d = _pair(dilation, "dilation", op)
    if min(d) < 1:
        raise RuntimeError(f"{op}: dilation must be positive (got {d})")
    for a in range(2):
        if p[a] < 0 or p[a] > (d[a] * (k[a] - 1) + 1) // 2:
            raise RuntimeError(
                f"{op}: pad should be at most half of effective kernel size, but got pad={p[a]}, "
                f"kernel_size={k[a]} and dilation={d[a]}"
            )
    out_hw = _pool_out(op, x, input, k, s, p, d, ceil_mode)
    attrs = {"kernel_size": k, "stride": s, "padding": p, "dilation": d, "out_hw": out_hw}
    if not return_indices:
        out = dispatch(MAX_POOL2D, (x,), attrs)
        return out.squeeze(0) if unbatched else out
    # with the indices: gather the values at them (the backward is then a scatter at the same
    # indices, nothing recomputed)
    idx = dispatch(MAX_POOL2D_INDICES, (x,), attrs)
    out = dispatch(PLANE_GATHER, (x, idx))
    if unbatched:
        out, idx = out.squeeze(0), idx.squeeze(0)
    return out, idx


def avg_pool2d(
    input,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
):
    """2-D average pooling like ``torch.nn.functional.avg_pool2d``.

    >>> import runba
    >>> avg_pool2d(runba.arange(16.0).reshape(1, 1, 4, 4), 2).tolist()
    [[[[2.5, 4.5], [10.5, 12.5]]]]
    """
    op = "avg_pool2d"
    x, unbatched = _batched(input, op)
    k, s, p = _pool_args(op, kernel_size, stride, padding)
    for a in range(2):
        if p[a] < 0 or p[a] > k[a] // 2:
            raise RuntimeError(
                f"{op}: pad should be at most half of kernel size, but got pad={p[a]} and "
                f"kernel_size={k[a]}"
            )
    if divisor_override is not None and int(divisor_override) == 0:
        raise RuntimeError(f"{op}: divisor must be not zero")
    out_hw = _pool_out(op, x, input, k, s, p, (1, 1), ceil_mode)
    attrs = {
        "kernel_size": k,
        "stride": s,
        "padding": p,
        "count_include_pad": bool(count_include_pad),
        "divisor_override": None if divisor_override is None else int(divisor_override),
        "out_hw": out_hw,
    }
    out = dispatch(AVG_POOL2D, (x,), attrs)
    return out.squeeze(0) if unbatched else out


def adaptive_avg_pool2d(input, output_size):
    """Average over ``output_size`` adaptive bins (``None`` keeps that input size), like
    ``torch.nn.functional.adaptive_avg_pool2d``.

    >>> import runba
    >>> adaptive_avg_pool2d(runba.arange(16.0).reshape(1, 1, 4, 4), 1).tolist()
    [[[[7.5]]]]
    """
    op = "adaptive_avg_pool2d"
    x, unbatched = _batched(input, op)
    if isinstance(output_size, (int, np.integer)) or output_size is None:
        output_size = (output_size, output_size)
    if len(output_size) != 2:
        raise ValueError(f"{op}: output_size must be an int or a pair, got {output_size!r}")
    out = tuple(int(x.shape[2 + a] if o is None else o) for a, o in enumerate(output_size))
    if min(out) < 0:
        raise RuntimeError(f"{op}: output_size must be non-negative (got {out})")
    if 0 in x.shape[2:]:
        raise RuntimeError(
            f"{op}: expected input with non-zero spatial sizes, got input of shape {_shape(input)}"
        )
    res = dispatch(ADAPTIVE_AVG_POOL2D, (x,), {"output_size": out})
    return res.squeeze(0) if unbatched else res
