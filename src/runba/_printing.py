"""``repr(tensor)`` in PyTorch's style: 4 decimals, scientific notation for wide ranges."""

from __future__ import annotations

import numpy as np

_SHOWN_DTYPES_HIDDEN = ("float32", "int64", "bool")


def _float_formatter(values: np.ndarray):
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return lambda v: _special(v) or f"{v:.4f}"
    absf = np.abs(finite.astype(np.float64))
    nonzero = absf[absf > 0]
    if np.all(finite == np.round(finite)) and (nonzero.size == 0 or nonzero.max() < 1e8):
        width = max(len(f"{v:.0f}.") for v in finite)
        return lambda v: (_special(v) or f"{v:.0f}.").rjust(width)
    sci = nonzero.size > 0 and (
        nonzero.max() / nonzero.min() > 1000 or nonzero.max() >= 1e8 or nonzero.min() < 1e-4
    )
    fmt = "{:.4e}" if sci else "{:.4f}"
    width = max(len(fmt.format(v)) for v in finite)
    return lambda v: (_special(v) or fmt.format(v)).rjust(width)


def _special(v) -> str | None:
    if np.isnan(v):
        return "nan"
    if np.isinf(v):
        return "inf" if v > 0 else "-inf"
    return None


def tensor_repr(t) -> str:
    data = t._data
    prefix = "tensor("
    if data.dtype == np.float16:
        data = data.astype(np.float32)
    suffix = []
    if data.size == 0 and data.ndim != 1:
        body = "[]"
        suffix.append(f"size={tuple(data.shape)}")
    elif data.dtype.kind == "f":
        fmt = _float_formatter(data.reshape(-1))
        body = np.array2string(
            data,
            separator=", ",
            prefix=prefix,
            formatter={"float_kind": fmt},
            threshold=1000,
            edgeitems=3,
            max_line_width=80,
        )
    elif data.dtype.kind == "b":
        body = np.array2string(
            data,
            separator=", ",
            prefix=prefix,
            formatter={"bool": lambda v: "True" if v else "False"},
            threshold=1000,
            edgeitems=3,
            max_line_width=80,
        )
    else:
        body = np.array2string(
            data, separator=", ", prefix=prefix, threshold=1000, edgeitems=3, max_line_width=80
        )
    if t.dtype.name not in _SHOWN_DTYPES_HIDDEN:
        suffix.append(f"dtype=runba.{t.dtype.name}")
    if t.grad_fn is not None:
        suffix.append(f"grad_fn=<{t.grad_fn.name()}>")
    elif t._rg:
        suffix.append("requires_grad=True")
    return prefix + ", ".join([body, *suffix]) + ")"
