"""``repr(tensor)`` in PyTorch's style.

A port of the layout rules of ``torch/_tensor_str.py`` (PyTorch 2.x), so that runba prints what
PyTorch prints for the same values:

* one formatter per tensor: every element right-aligned to the widest one;
* floats: ``1.`` when every finite nonzero value is an integer, else 4 decimals; scientific
  notation when max/min of the finite nonzero magnitudes exceeds 1000, the max exceeds 1e8,
  or (non-integer values only) the min is below 1e-4;
* tensors above 1000 elements are summarised to 3 edge items per dim (``...``), and the
  formatter only looks at those edge items;
* rows wrap at 80 columns; suffixes (``dtype=``, ``grad_fn=``, ``requires_grad=True``) move to
  a new line when they do not fit.
"""

from __future__ import annotations

import math

import numpy as np

PRECISION = 4
THRESHOLD = 1000
EDGEITEMS = 3
LINEWIDTH = 80


class _Formatter:
    def __init__(self, values: np.ndarray):
        # ``values``: the (summarised) elements as a flat array; float16 already widened
        self.floating = values.dtype.kind == "f"
        self.int_mode = True
        self.sci_mode = False
        self.max_width = 1
        if not self.floating:
            for v in values.tolist():
                self.max_width = max(self.max_width, len(str(v)))
            return
        vals = values.astype(np.float64)
        nz = vals[np.isfinite(vals) & (vals != 0)]
        if nz.size == 0:
            return
        absnz = np.abs(nz)
        lo, hi = absnz.min(), absnz.max()
        self.int_mode = bool(np.all(nz == np.ceil(nz)))
        if self.int_mode:
            if hi / lo > 1000.0 or hi > 1.0e8:
                self.sci_mode = True
                self.max_width = max(len(f"{v:.{PRECISION}e}") for v in nz.tolist())
            else:
                self.max_width = max(len(f"{v:.0f}") + 1 for v in nz.tolist())
        elif hi / lo > 1000.0 or hi > 1.0e8 or lo < 1.0e-4:
            self.sci_mode = True
            self.max_width = max(len(f"{v:.{PRECISION}e}") for v in nz.tolist())
        else:
            self.max_width = max(len(f"{v:.{PRECISION}f}") for v in nz.tolist())

    def width(self) -> int:
        return self.max_width

    def format(self, value) -> str:
        if self.floating:
            if self.sci_mode:
                s = f"{value:{self.max_width}.{PRECISION}e}"
            elif self.int_mode:
                s = f"{value:.0f}"
                if not (math.isinf(value) or math.isnan(value)):
                    s += "."
            else:
                s = f"{value:.{PRECISION}f}"
        else:
            s = str(value)
        return (self.max_width - len(s)) * " " + s


def _summarized(data: np.ndarray) -> np.ndarray:
    """The edge items of every dim (what the formatter measures when summarising)."""
    if data.ndim == 0:
        return data
    if data.ndim == 1:
        if data.shape[0] > 2 * EDGEITEMS:
            return np.concatenate([data[:EDGEITEMS], data[-EDGEITEMS:]])
        return data
    if data.shape[0] > 2 * EDGEITEMS:
        rows = [data[i] for i in range(EDGEITEMS)] + [
            data[i] for i in range(data.shape[0] - EDGEITEMS, data.shape[0])
        ]
    else:
        rows = list(data)
    return np.stack([_summarized(r) for r in rows])


def _vector_str(data: np.ndarray, indent: int, summarize: bool, fmt: _Formatter) -> str:
    element_length = fmt.width() + 2
    per_line = max(1, int(math.floor((LINEWIDTH - indent) / element_length)))
    if summarize and data.shape[0] > 2 * EDGEITEMS:
        items = (
            [fmt.format(v) for v in data[:EDGEITEMS].tolist()]
            + [" ..."]
            + [fmt.format(v) for v in data[-EDGEITEMS:].tolist()]
        )
    else:
        items = [fmt.format(v) for v in data.tolist()]
    lines = [", ".join(items[i : i + per_line]) for i in range(0, len(items), per_line)]
    return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"


def _tensor_str(data: np.ndarray, indent: int, summarize: bool, fmt: _Formatter) -> str:
    if data.ndim == 0:
        return fmt.format(data.item())
    if data.ndim == 1:
        return _vector_str(data, indent, summarize, fmt)
    n = data.shape[0]
    if summarize and n > 2 * EDGEITEMS:
        slices = (
            [_tensor_str(data[i], indent + 1, summarize, fmt) for i in range(EDGEITEMS)]
            + ["..."]
            + [_tensor_str(data[i], indent + 1, summarize, fmt) for i in range(n - EDGEITEMS, n)]
        )
    else:
        slices = [_tensor_str(data[i], indent + 1, summarize, fmt) for i in range(n)]
    return "[" + ("," + "\n" * (data.ndim - 1) + " " * (indent + 1)).join(slices) + "]"


def _add_suffixes(tensor_str: str, suffixes: list, indent: int) -> str:
    parts = [tensor_str]
    last_line_len = len(tensor_str) - tensor_str.rfind("\n") + 1
    for suffix in suffixes:
        if last_line_len + len(suffix) + 2 > LINEWIDTH:
            parts.append(",\n" + " " * indent + suffix)
            last_line_len = indent + len(suffix)
        else:
            parts.append(", " + suffix)
            last_line_len += len(suffix) + 2
    parts.append(")")
    return "".join(parts)


def tensor_repr(t) -> str:
    from runba.dtypes import bool_, get_default_dtype, int64

    if t._lazy is not None:
        t._realize()
    data = t._data
    prefix = "tensor("
    indent = len(prefix)
    suffixes = []
    show_dtype = t.dtype not in (get_default_dtype(), int64, bool_)
    if data.size == 0:
        if data.ndim != 1:
            suffixes.append(f"size={tuple(data.shape)}")
        # no elements to tell the dtype from: shown unless it is the default float
        if t.dtype is not get_default_dtype():
            suffixes.append(f"dtype=runba.{t.dtype.name}")
        body = "[]"
    else:
        if show_dtype:
            suffixes.append(f"dtype=runba.{t.dtype.name}")
        if data.dtype == np.float16:
            data = data.astype(np.float32)
        summarize = data.size > THRESHOLD
        fmt = _Formatter((_summarized(data) if summarize else data).reshape(-1))
        body = _tensor_str(data, indent, summarize, fmt)
    if t.grad_fn is not None:
        suffixes.append(f"grad_fn=<{t.grad_fn.name()}>")
    elif t._rg:
        suffixes.append("requires_grad=True")
    return _add_suffixes(prefix + body, suffixes, indent)
