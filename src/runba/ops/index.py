"""Indexing and gather/scatter: getitem/setitem (basic and advanced), gather, scatter_add,
cat, the in-place copy_ and index_put_, and composites (stack, index_select, masked_fill,
tril/triu, one_hot, roll)."""

from __future__ import annotations

import numpy as np

from runba import dtypes as _dt
from runba.ops.movement import SLICE, _dim, unsqueeze
from runba.ops.reduce import normalize_dims
from runba.ops.registry import (
    EXTERN,
    SAVE_INPUTS,
    OpDef,
    check_inplace,
    dispatch,
    register,
    tensor_method,
)


class _Slot:
    """Placeholder for the k-th index tensor inside an index template."""

    __slots__ = ("k",)

    def __init__(self, k):
        self.k = k

    def __repr__(self):
        return f"<index tensor {self.k}>"

    def __eq__(self, other):
        return isinstance(other, _Slot) and other.k == self.k

    def __hash__(self):
        return hash(("slot", self.k))


def _fill(template, arrays):
    return tuple(arrays[i.k] if isinstance(i, _Slot) else i for i in template)


def normalize_index(index):
    """Split an index into a template (ints, slices, None, Ellipsis, slots) and tensors."""
    from runba.creation import tensor as make_tensor
    from runba.tensor import Tensor

    if not isinstance(index, tuple):
        index = (index,)
    template, tensors = [], []
    for i in index:
        if isinstance(i, Tensor):
            if i.dtype.is_floating_point:
                raise IndexError(
                    f"tensors used as indices must be long, int, byte or bool tensors "
                    f"(got {i.dtype.name})"
                )
            if i.dtype is _dt.uint8:  # torch: a byte tensor index is a mask
                i = i.to(_dt.bool_)
            template.append(_Slot(len(tensors)))
            tensors.append(i)
        elif isinstance(i, (list, np.ndarray)) or isinstance(i, bool):
            t = make_tensor(i)
            if t.dtype.is_floating_point:
                raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
            template.append(_Slot(len(tensors)))
            tensors.append(t)
        elif isinstance(i, slice):
            template.append(
                slice(*(None if v is None else _as_int(v) for v in (i.start, i.stop, i.step)))
            )
            if i.step is not None and _as_int(i.step) <= 0:
                raise ValueError("step must be greater than zero")
        elif i is None or i is Ellipsis:
            template.append(i)
        else:
            template.append(_as_int(i))
    return tuple(template), tuple(tensors)


def _as_int(v):
    try:
        return int(v.__index__())
    except AttributeError:
        raise TypeError(
            f"only integers, slices, None, Ellipsis and integer or boolean tensors are valid "
            f"indices (got {type(v).__name__})"
        ) from None


# ---------------------------------------------------------------------------- primitives
def _index_impl(x, *index_arrays, template):
    return x[_fill(template, index_arrays)]


def _index_vjp(c, g):
    tensors = c.inputs[1:]
    return (
        dispatch(
            INDEX_BACKWARD,
            (g, *tensors),
            {"shape": c.in_meta[0][0], "template": c.attrs["template"]},
        ),
        *([None] * len(tensors)),
    )


INDEX = register(
    OpDef(
        "index",
        EXTERN,
        impl=_index_impl,
        vjp=_index_vjp,
        saves=SAVE_INPUTS,
        reads=lambda needs: (False, *[True] * (len(needs) - 1)),  # the indices, not the data
    )
)


def _index_backward_impl(g, *index_arrays, shape, template):
    out = np.zeros(shape, dtype=g.dtype)
    np.add.at(out, _fill(template, index_arrays), g)  # repeated indices accumulate
    return out


INDEX_BACKWARD = register(
    OpDef(
        "index_backward",
        EXTERN,
        impl=_index_backward_impl,
        vjp=lambda c, g: (
            dispatch(INDEX, (g, *c.inputs[1:]), {"template": c.attrs["template"]}),
            *([None] * (len(c.inputs) - 1)),
        ),
        saves=SAVE_INPUTS,
    )
)


def _index_put_impl(x, value, *index_arrays, template, accumulate=False):
    out = x.copy()
    idx = _fill(template, index_arrays)
    if accumulate:
        np.add.at(out, idx, value)
    else:
        out[idx] = value
    return out


def _index_put_inplace_impl(x, value, *index_arrays, template, accumulate=False):
    idx = _fill(template, index_arrays)
    if accumulate:
        np.add.at(x, idx, value)
    else:
        x[idx] = value
    return x


def _index_put_vjp(c, g):
    tensors = c.inputs[2:]
    template, acc = c.attrs["template"], c.attrs.get("accumulate", False)
    gx = g if acc else dispatch(INDEX_PUT, (g, 0, *tensors), {"template": template})
    gv = dispatch(INDEX, (g, *tensors), {"template": template}) if c.needs[1] else None
    return (gx if c.needs[0] else None, gv, *([None] * len(tensors)))


INDEX_PUT = register(
    OpDef("index_put", EXTERN, impl=_index_put_impl, vjp=_index_put_vjp, saves=SAVE_INPUTS)
)
INDEX_PUT_ = register(
    OpDef(
        "index_put_",
        EXTERN,
        impl=_index_put_inplace_impl,
        vjp=_index_put_vjp,
        saves=SAVE_INPUTS,
        inplace=True,
    )
)


def _copy_impl(dst, src):
    np.copyto(dst, src, casting="unsafe")
    return dst


# The old value of dst gets no gradient: it is overwritten. src may broadcast to dst.
COPY_ = register(OpDef("copy_", EXTERN, impl=_copy_impl, vjp=lambda c, g: (None, g), inplace=True))


# -- writes through views (PyTorch's CopySlices) ---------------------------------------
# A view created from a tensor that requires grad remembers its view chain (the view ops
# from its base: run_eager records it). An in-place write into such a view becomes
# ``base <- view_scatter(base, new_view_values)`` on the base, so the base's gradient sees it.


def replay_view_chain(x, chain, for_grad=False):
    """Apply the recorded view ops to ``x`` (a Tensor), through dispatch."""
    for op, attrs in chain:
        if for_grad and "view_only" in attrs:
            attrs = {**attrs, "view_only": False}  # gradients need not be contiguous
        x = dispatch(op, (x,), attrs)
    return x


def _replay_arrays(x, chain):
    for op, attrs in chain:
        x = op.impl(x, **attrs)
    return x


def _view_scatter_impl(base, values, chain):
    out = base.copy()
    np.copyto(_replay_arrays(out, chain), values, casting="unsafe")
    return out


def _view_scatter_vjp(c, g):
    chain = c.attrs["chain"]
    g_base = dispatch(VIEW_SCATTER, (g, 0), {"chain": chain}) if c.needs[0] else None
    g_values = replay_view_chain(g, chain, for_grad=True) if c.needs[1] else None
    return g_base, g_values


VIEW_SCATTER = register(
    OpDef("view_scatter", EXTERN, impl=_view_scatter_impl, vjp=_view_scatter_vjp)
)


def tracked_view_chain(t):
    """The view chain of a view whose base autograd tracks, else None."""
    extra = t._extra
    return extra.get("view_chain") if extra is not None and t._base is not None else None


def write_through_view(view, new_values, op_name):
    """Commit ``new_values`` (same shape as ``view``) into ``view``'s base, recorded."""
    chain = view._extra["view_chain"]
    base = view._base
    if base._rg and base.grad_fn is None:
        raise RuntimeError(
            f"{op_name}: a view of a leaf Variable that requires grad is being used in an "
            f"in-place operation (view shape {list(view.shape)}, base shape "
            f"{list(base.shape)}); wrap it in runba.no_grad() or operate on a clone()"
        )
    new_base = dispatch(VIEW_SCATTER, (base, new_values), {"chain": chain})
    dispatch(COPY_, (base, new_base))
    # the view's values now come from the rewritten base
    regenerated = replay_view_chain(base, chain)
    view.grad_fn = regenerated.grad_fn
    view._rg = regenerated._rg
    return view


def records_inplace(target, sources):
    """Whether autograd records an in-place write of ``sources`` into ``target``."""
    from runba._state import STATE
    from runba.tensor import Tensor

    return STATE.grad_enabled and (
        target._rg or any(isinstance(s, Tensor) and s._rg for s in sources)
    )


def _gather_impl(x, index, dim):
    # torch only requires index.size(d) <= input.size(d) for d != dim (no broadcasting):
    # restrict x to the index's extent there, which take_along_axis would broadcast instead.
    x = x[tuple(slice(None) if d == dim else slice(0, s) for d, s in enumerate(index.shape))]
    _check_index_range(index, x.shape[dim], dim, "gather")
    return np.take_along_axis(x, index, axis=dim)


def _check_index_range(index, size, dim, op):
    # numpy would wrap negative indices silently; torch's gather/scatter reject them
    if index.size:
        lo, hi = index.min(), index.max()
        if lo < 0 or hi >= size:
            bad = lo if lo < 0 else hi
            raise RuntimeError(
                f"{op}(): index {bad} is out of bounds for dimension {dim} with size {size}"
            )


GATHER = register(
    OpDef(
        "gather",
        EXTERN,
        impl=_gather_impl,
        vjp=lambda c, g: (
            dispatch(
                SCATTER_ADD,
                (_zeros(c.in_meta[0][0], g.dtype), c.inputs[1], g),
                {"dim": c.attrs["dim"]},
            ),
            None,
        ),
        saves=SAVE_INPUTS,
        reads=lambda needs: (False, True),  # the index, not the data
    )
)


def _scatter_add_src_grad(c, g):
    # only src[:index.shape] is read: the rest of src gets a zero gradient
    gs = dispatch(GATHER, (g, c.inputs[1]), {"dim": c.attrs["dim"]})
    src_shape = c.in_meta[2][0]
    if tuple(gs.shape) != tuple(src_shape):
        from runba.ops.movement import SLICE_BACKWARD

        region = tuple(slice(0, s) for s in gs.shape)
        gs = dispatch(SLICE_BACKWARD, (gs,), {"shape": src_shape, "index": region})
    return gs


def _scatter_add_impl(x, index, src, dim):
    _check_index_range(index, x.shape[dim], dim, "scatter_add")
    out = x.copy()
    # full index grids for every axis but `dim`, which takes the given index
    grids = list(np.indices(index.shape, sparse=True))
    grids[dim] = index
    np.add.at(out, tuple(grids), src[tuple(slice(0, s) for s in index.shape)])
    return out


SCATTER_ADD = register(
    OpDef(
        "scatter_add",
        EXTERN,
        impl=_scatter_add_impl,
        vjp=lambda c, g: (
            g if c.needs[0] else None,
            None,
            _scatter_add_src_grad(c, g) if c.needs[2] else None,
        ),
        saves=SAVE_INPUTS,
    )
)


def _cat_vjp(c, g):
    d = c.attrs["dim"]
    out, start = [], 0
    for meta in c.in_meta:
        n = meta[0][d]
        out.append(
            dispatch(SLICE, (g,), {"index": (slice(None),) * d + (slice(start, start + n),)})
        )
        start += n
    return tuple(out)


def _cat_dtype(dtypes, attrs):
    d = dtypes[0]
    for x in dtypes[1:]:
        d = _dt.promote_types(d, x)
    return d


CAT = register(
    OpDef(
        "cat",
        EXTERN,
        impl=lambda *xs, dim: np.concatenate([x.astype(np.result_type(*xs)) for x in xs], axis=dim),
        out_dtype=_cat_dtype,
        vjp=_cat_vjp,
    )
)


def _zeros(shape, dtype):
    from runba.creation import zeros

    return zeros(shape, dtype=dtype)


# ---------------------------------------------------------------------------- functions
def _basic_template(index):
    """``index`` as a template when it holds only ints, plain slices, None and Ellipsis (the
    common case, checked with type tests only), else None."""
    t = type(index)
    if t is int or t is slice and _plain_slice(index):
        return (index,)
    if t is not tuple:
        return None
    for i in index:
        ti = type(i)
        if not (ti is int or i is None or i is Ellipsis or ti is slice and _plain_slice(i)):
            return None
    return index


def _plain_slice(s):
    return (
        (s.start is None or type(s.start) is int)
        and (s.stop is None or type(s.stop) is int)
        and (s.step is None or type(s.step) is int and s.step > 0)
    )


def split_index(index):
    """(template, index tensors): the type-test fast path, else :func:`normalize_index`."""
    template = _basic_template(index)
    return (template, ()) if template is not None else normalize_index(index)


def getitem(input, index):
    """``input[index]``: basic indices give a view, tensor/list indices gather (a copy)."""
    template, tensors = split_index(index)
    try:
        if not tensors:
            return dispatch(SLICE, (input,), {"index": template})
        return dispatch(INDEX, (input, *tensors), {"template": template})
    except IndexError as e:
        raise IndexError(f"{e} (indexing a tensor of shape {list(input.shape)})") from None


def setitem(input, index, value):
    """``input[index] = value`` in place; recorded for autograd (PyTorch's CopySlices)."""
    from runba.tensor import Tensor

    template, tensors = split_index(index)
    if isinstance(value, Tensor) and value.dtype is not input.dtype:
        value = value.to(input.dtype)
    if tracked_view_chain(input) is not None and records_inplace(input, (value,)):
        from runba.ops.elementwise import clone

        snapshot = clone(input)  # index_put must not save the buffer being rewritten
        new = dispatch(INDEX_PUT, (snapshot, value, *tensors), {"template": template})
        write_through_view(input, new, "setitem")
        return
    check_inplace(input, "setitem", (value,))
    try:
        dispatch(INDEX_PUT_, (input, value, *tensors), {"template": template})
    except (IndexError, ValueError) as e:
        vshape = list(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise type(e)(
            f"setitem: {e} (tensor of shape {list(input.shape)}, value {vshape})"
        ) from None


@tensor_method()
def copy_(input, src, non_blocking=False, *, _op_name="copy_"):
    """Copy ``src`` (broadcast, cast) into ``input`` in place; gradients flow to ``src``."""
    from runba.tensor import Tensor

    if isinstance(src, Tensor):
        try:
            np.broadcast_shapes(src._data.shape, input._data.shape)
        except ValueError:
            raise RuntimeError(
                f"copy_: the source of shape {list(src.shape)} cannot be broadcast to the "
                f"destination of shape {list(input.shape)}"
            ) from None
    if tracked_view_chain(input) is not None and records_inplace(input, (src,)):
        if not isinstance(src, Tensor):
            from runba.creation import full_like

            src = full_like(input, src)
        elif src.shape != input.shape:
            src = src.expand(input.shape)
        if src.dtype is not input.dtype:
            src = src.to(input.dtype)
        return write_through_view(input, src, _op_name)
    check_inplace(input, _op_name, (src,))
    return dispatch(COPY_, (input, src))


@tensor_method()
def index_put_(input, indices, values, accumulate=False):
    template, tensors = normalize_index(tuple(indices))
    check_inplace(input, "index_put_", (values,))
    return dispatch(
        INDEX_PUT_, (input, values, *tensors), {"template": template, "accumulate": accumulate}
    )


@tensor_method()
def index_put(input, indices, values, accumulate=False):
    template, tensors = normalize_index(tuple(indices))
    return dispatch(
        INDEX_PUT, (input, values, *tensors), {"template": template, "accumulate": accumulate}
    )


def _check_index_tensor(index, op):
    if index.dtype not in (_dt.int64, _dt.int32):
        raise RuntimeError(f"{op}(): Expected dtype int64 for index (got {index.dtype.name})")


@tensor_method()
def gather(input, dim, index):
    """``out[i][j] = input[index[i][j]][j]`` for dim 0 (and so on), like ``torch.gather``."""
    _check_index_tensor(index, "gather")
    d = _dim(dim, input.ndim, "gather")
    if index.ndim != input.ndim:
        raise RuntimeError(
            f"gather(): Index tensor must have the same number of dimensions as input tensor "
            f"(index {list(index.shape)}, input {list(input.shape)})"
        )
    return dispatch(GATHER, (input, index), {"dim": d})


@tensor_method()
def scatter_add(input, dim, index, src):
    """``out = input.clone(); out[index[i][j]][j] += src[i][j]`` (dim 0), like torch."""
    _check_index_tensor(index, "scatter_add")
    d = _dim(dim, input.ndim, "scatter_add")
    return dispatch(SCATTER_ADD, (input, index, src), {"dim": d})


@tensor_method()
def index_select(input, dim, index):
    """Entries of ``input`` along ``dim`` at the positions in the 1-D ``index``."""
    d = _dim(dim, input.ndim, "index_select")
    if index.ndim > 1:
        raise IndexError("index_select(): Index is supposed to be a vector")
    return getitem(input, (slice(None),) * d + (index.reshape(-1),))


def cat(tensors, dim=0):
    """Concatenate along an existing ``dim``; shapes must match elsewhere."""
    tensors = [t for t in tensors]
    if not tensors:
        raise RuntimeError("cat(): expected a non-empty list of Tensors")
    # like torch, 1-D empty tensors are skipped
    nonempty = [t for t in tensors if not (t.ndim == 1 and t.shape[0] == 0)] or tensors[:1]
    ref = nonempty[0]
    d = _dim(dim, ref.ndim, "cat")
    for i, t in enumerate(nonempty):
        if t.ndim != ref.ndim or any(
            a != b for k, (a, b) in enumerate(zip(t.shape, ref.shape)) if k != d
        ):
            raise RuntimeError(
                f"cat(): Sizes of tensors must match except in dimension {d}. Expected "
                f"{list(ref.shape)} but got {list(t.shape)} for tensor number {i} in the list."
            )
    return dispatch(CAT, tuple(nonempty), {"dim": d})


concat = concatenate = cat


def stack(tensors, dim=0):
    """Join tensors of equal shape along a new ``dim``."""
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    shape = tensors[0].shape
    for i, t in enumerate(tensors):
        if t.shape != shape:
            raise RuntimeError(
                f"stack expects each tensor to be equal size, but got {list(shape)} at entry 0 "
                f"and {list(t.shape)} at entry {i}"
            )
    return cat([unsqueeze(t, dim) for t in tensors], dim)


def hstack(tensors):
    tensors = list(tensors)
    return cat(tensors, 0 if tensors[0].ndim == 1 else 1)


def vstack(tensors):
    return cat([t.reshape(1, -1) if t.ndim == 1 else t for t in tensors], 0)


@tensor_method()
def masked_fill(input, mask, value):
    """``value`` where ``mask`` is True, else ``input``."""
    from runba.ops.elementwise import where

    if mask.dtype is not _dt.bool_:
        raise RuntimeError(
            f"masked_fill_ only supports boolean masks, but got mask with dtype {mask.dtype.name}"
        )
    out = where(mask, value, input)
    return out if out.dtype is input.dtype else out.to(input.dtype)


def _tri_mask(input, diagonal, lower):
    from runba.creation import arange

    rows, cols = input.shape[-2], input.shape[-1]
    r = arange(rows).reshape(rows, 1)
    c = arange(cols).reshape(1, cols)
    return (c - r <= diagonal) if lower else (c - r >= diagonal)


@tensor_method()
def tril(input, diagonal=0):
    """Lower triangle (``j - i <= diagonal``) of the last two dims; the rest zero."""
    if input.ndim < 2:
        raise RuntimeError(f"tril: input tensor must have at least 2 dimensions (got {input.ndim})")
    from runba.ops.elementwise import where

    return where(_tri_mask(input, diagonal, True), input, 0).to(input.dtype)


@tensor_method()
def triu(input, diagonal=0):
    """Upper triangle (``j - i >= diagonal``) of the last two dims; the rest zero."""
    if input.ndim < 2:
        raise RuntimeError(f"triu: input tensor must have at least 2 dimensions (got {input.ndim})")
    from runba.ops.elementwise import where

    return where(_tri_mask(input, diagonal, False), input, 0).to(input.dtype)


def one_hot(tensor, num_classes=-1):
    """int64 one-hot encoding with a new last dim of ``num_classes``."""
    from runba.creation import arange

    if tensor.dtype is not _dt.int64:
        raise RuntimeError("one_hot is only applicable to index tensor of type LongTensor.")
    if num_classes == -1:
        num_classes = int(tensor.max().item()) + 1 if tensor.numel() else 0
    if tensor.numel() and (tensor.min().item() < 0 or tensor.max().item() >= num_classes):
        raise RuntimeError(
            f"one_hot: Class values must be in [0, {num_classes}) "
            f"(got {tensor.min().item()}..{tensor.max().item()})"
        )
    return (unsqueeze(tensor, -1) == arange(num_classes)).to(_dt.int64)


@tensor_method()
def roll(input, shifts, dims=None):
    """Rotate elements along ``dims`` by ``shifts`` (flattened when dims is None)."""
    if dims is None:
        return roll(input.flatten(), shifts, 0).reshape(input.shape)
    shifts = (shifts,) if isinstance(shifts, int) else tuple(shifts)
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    if len(shifts) != len(dims):
        raise RuntimeError(
            f"roll: shifts and dimensions must align. shifts: {len(shifts)}, dims: {len(dims)}"
        )
    out = input
    for s, d in zip(shifts, dims):
        d = normalize_dims(d, input.ndim, "roll")[0]
        n = input.shape[d]
        if n == 0:
            continue
        s %= n
        if s:
            head = out.narrow(d, n - s, s)
            tail = out.narrow(d, 0, n - s)
            out = cat([head, tail], d)
    return out if out is not input else input.clone()


NONZERO = register(
    OpDef(
        "nonzero",
        EXTERN,
        impl=lambda x: (
            np.stack(np.nonzero(x), axis=1).reshape(-1, x.ndim)
            if x.ndim
            else np.zeros((1 if x else 0, 0), np.int64)  # numpy 2 rejects nonzero of 0-d
        ),
        out_dtype=lambda dtypes, attrs: _dt.int64,
    )
)


@tensor_method()
def nonzero(input, *, as_tuple=False):
    """Indices of non-zero elements, ``(n, ndim)`` int64 (or one tensor per dim)."""
    out = dispatch(NONZERO, (input,))
    if as_tuple:
        if input.ndim == 0:  # torch treats a 0-d input as 1-d here
            from runba.creation import zeros

            return (zeros(out.shape[0], dtype=_dt.int64),)
        return tuple(out[:, i] for i in range(input.ndim))
    return out


@tensor_method()
def masked_select(input, mask):
    """The elements where ``mask`` (broadcast) is True, as a 1-D tensor."""
    shape = np.broadcast_shapes(input.shape, mask.shape)
    return getitem(input.expand(shape), mask.expand(shape))
