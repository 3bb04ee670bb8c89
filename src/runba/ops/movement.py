"""Movement ops: reshape, permute, expand, basic indexing (slice) and flip are primitives
whose outputs are numpy views sharing the input's storage and version counter; squeeze,
transpose, repeat, split, ... are written in them."""

from __future__ import annotations

import numpy as np

from runba.ops.reduce import normalize_dims
from runba.ops.registry import (
    EXTERN,
    MOVEMENT,
    OpDef,
    dispatch,
    register,
    tensor_method,
)


def _dim(d, ndim, op):
    return normalize_dims(d, ndim, op)[0] if ndim else 0


def _shape_arg(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    elif len(shape) == 1 and hasattr(shape[0], "tolist") and not isinstance(shape[0], int):
        shape = tuple(shape[0].tolist())
    return tuple(map(int, shape))  # map: half a generator's cost


def infer_shape(shape, numel: int, op: str, in_shape) -> tuple:
    """Resolve one ``-1`` in ``shape`` and check the element count, PyTorch-style."""
    # one pass (reshape runs it on every call); errors in the same order as before
    neg = 0
    bad = None
    known = 1
    for s in shape:
        if s == -1:
            neg += 1
        else:
            if s < -1 and bad is None:
                bad = s
            known *= s
    if neg > 1:
        raise RuntimeError(f"{op}: only one dimension can be inferred (got shape {list(shape)})")
    if bad is not None:
        raise RuntimeError(f"{op}: invalid shape dimension {bad} in {list(shape)}")
    if neg:
        if known == 0 or numel % known:
            raise RuntimeError(
                f"{op}: shape '{list(shape)}' is invalid for input of size {numel} "
                f"(input shape {list(in_shape)})"
            )
        shape = tuple(numel // known if s == -1 else s for s in shape)
    elif known != numel:
        raise RuntimeError(
            f"{op}: shape '{list(shape)}' is invalid for input of size {numel} "
            f"(input shape {list(in_shape)})"
        )
    return shape


# ---------------------------------------------------------------------------- primitives
def _reshape_impl(x, shape, view_only):
    if not view_only:
        return x.reshape(shape)  # the method: np.reshape's wrapper costs ~0.4 µs more
    v = x.view()
    try:
        v.shape = shape
    except AttributeError:
        raise RuntimeError(
            f"view size is not compatible with input tensor's size and stride (input shape "
            f"{list(x.shape)}, strides {[s // x.itemsize for s in x.strides]}, requested "
            f"{list(shape)}): at least one dimension spans across two contiguous subspaces. "
            "Use .reshape(...) instead."
        ) from None
    return v


RESHAPE = register(
    OpDef(
        "reshape",
        MOVEMENT,
        impl=_reshape_impl,
        vjp=lambda c, g: (g.reshape(c.in_meta[0][0]),),
        view=True,
    )
)


def _permute_vjp(c, g):
    inv = np.argsort(c.attrs["dims"])
    return (g.permute(*[int(i) for i in inv]),)


PERMUTE = register(
    OpDef(
        "permute",
        MOVEMENT,
        impl=lambda x, dims: x.transpose(dims),  # the method: np.transpose's wrapper is slower
        vjp=_permute_vjp,
        view=True,
    )
)

# The engine un-broadcasts (sum_to) every gradient centrally, so expand's vjp is identity.
EXPAND = register(
    OpDef(
        "expand",
        MOVEMENT,
        impl=lambda x, shape: np.broadcast_to(x, shape),
        vjp=lambda c, g: (g,),
        view=True,
    )
)


def _slice_vjp(c, g):
    return (dispatch(SLICE_BACKWARD, (g,), {"shape": c.in_meta[0][0], "index": c.attrs["index"]}),)


SLICE = register(
    OpDef(
        "slice",
        MOVEMENT,
        impl=lambda x, index: x[index],
        vjp=_slice_vjp,
        view=True,
    )
)


def _slice_backward_impl(g, shape, index):
    out = np.zeros(shape, dtype=g.dtype)
    out[index] = g
    return out


SLICE_BACKWARD = register(
    OpDef(
        "slice_backward",
        EXTERN,
        impl=_slice_backward_impl,
        vjp=lambda c, g: (dispatch(SLICE, (g,), {"index": c.attrs["index"]}),),
    )
)

FLIP = register(
    OpDef(
        "flip",
        MOVEMENT,
        impl=lambda x, dims: np.flip(x, dims) if dims else x.view(),
        vjp=lambda c, g: (flip(g, c.attrs["dims"]),),
        view=True,
    )
)


# ---------------------------------------------------------------------------- functions
@tensor_method()
def reshape(input, *shape):
    """A tensor with the same data and a new shape (a view when strides allow)."""
    shape = infer_shape(_shape_arg(shape), input.numel(), "reshape", input.shape)
    if shape == input._data.shape:
        return dispatch(RESHAPE, (input,), {"shape": shape, "view_only": True})
    return dispatch(RESHAPE, (input,), {"shape": shape, "view_only": False})


@tensor_method()
def view(input, *shape):
    """A view with a new shape; raises when the strides cannot express it (use reshape)."""
    if len(shape) == 1 and not isinstance(shape[0], (int, tuple, list)):
        from runba import dtypes as _dt

        if isinstance(shape[0], _dt.dtype):
            raise NotImplementedError("view(dtype) is not supported; use .to(dtype)")
    shape = infer_shape(_shape_arg(shape), input.numel(), "view", input.shape)
    return dispatch(RESHAPE, (input,), {"shape": shape, "view_only": True})


@tensor_method()
def view_as(input, other):
    return view(input, other.shape)


@tensor_method()
def reshape_as(input, other):
    return reshape(input, other.shape)


@tensor_method()
def flatten(input, start_dim=0, end_dim=-1):
    """Merge dims ``start_dim..end_dim`` into one."""
    if input.ndim == 0:
        return reshape(input, 1)
    s = _dim(start_dim, input.ndim, "flatten")
    e = _dim(end_dim, input.ndim, "flatten")
    if s > e:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    shape = input.shape
    merged = 1
    for d in shape[s : e + 1]:
        merged *= d
    return reshape(input, shape[:s] + (merged,) + shape[e + 1 :])


@tensor_method()
def unflatten(input, dim, sizes):
    """Split dim ``dim`` into ``sizes`` (one entry may be -1)."""
    d = _dim(dim, input.ndim, "unflatten")
    sizes = infer_shape(tuple(sizes), input.shape[d], "unflatten", input.shape)
    return reshape(input, input.shape[:d] + sizes + input.shape[d + 1 :])


@tensor_method()
def squeeze(input, dim=None):
    """Drop size-1 dims (all, or those in ``dim``)."""
    if dim is None:
        dims = tuple(i for i, s in enumerate(input.shape) if s == 1)
    else:
        dims = normalize_dims(dim, input.ndim, "squeeze")
    shape = tuple(s for i, s in enumerate(input.shape) if not (i in dims and s == 1))
    return dispatch(RESHAPE, (input,), {"shape": shape, "view_only": True})


@tensor_method()
def unsqueeze(input, dim):
    """Insert a size-1 dim at ``dim``."""
    n = input.ndim + 1
    if not -n <= dim < n:
        raise IndexError(
            f"unsqueeze: Dimension out of range (expected to be in range of [{-n}, {n - 1}], "
            f"but got {dim})"
        )
    d = dim % n
    shape = input.shape[:d] + (1,) + input.shape[d:]
    return dispatch(RESHAPE, (input,), {"shape": tuple(shape), "view_only": True})


@tensor_method()
def permute(input, *dims):
    """Reorder dims; a view."""
    dims = _shape_arg(dims)
    if len(dims) != input.ndim:
        raise RuntimeError(
            f"permute(sparse_coo): number of dimensions in the tensor input does not match the "
            f"length of the desired ordering of dimensions i.e. input.dim() = {input.ndim} is "
            f"not equal to len(dims) = {len(dims)}"
        )
    nd = normalize_dims(dims, input.ndim, "permute")  # validates range and repeats
    del nd
    dims = tuple(d % max(input.ndim, 1) for d in dims)
    return dispatch(PERMUTE, (input,), {"dims": dims})


@tensor_method("transpose", "swapaxes", "swapdims")
def transpose(input, dim0, dim1):
    """Swap two dims; a view."""
    if input.ndim == 0:
        return input.view(())
    a = _dim(dim0, input.ndim, "transpose")
    b = _dim(dim1, input.ndim, "transpose")
    dims = list(range(input.ndim))
    dims[a], dims[b] = dims[b], dims[a]
    return dispatch(PERMUTE, (input,), {"dims": tuple(dims)})


swapaxes = swapdims = transpose


@tensor_method()
def t(input):
    """Transpose a <= 2-D tensor."""
    ndim = input._data.ndim
    if ndim == 2:  # F.linear's weight.t() on every call: straight to the permute
        return dispatch(PERMUTE, (input,), {"dims": (1, 0)})
    if ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {ndim}D")
    return input.view(input.shape)


@tensor_method()
def movedim(input, source, destination):
    src = (source,) if isinstance(source, int) else tuple(source)
    dst = (destination,) if isinstance(destination, int) else tuple(destination)
    n = input.ndim
    src = [s % n for s in src]
    dst = [d % n for d in dst]
    order = [i for i in range(n) if i not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return permute(input, *order)


moveaxis = movedim


@tensor_method()
def expand(input, *sizes):
    """Broadcast size-1 dims to ``sizes`` (-1 keeps a dim); a view, no copy."""
    sizes = _shape_arg(sizes)
    shape = input.shape
    if len(sizes) < len(shape):
        raise RuntimeError(
            f"expand: the number of sizes provided ({len(sizes)}) must be greater or equal to "
            f"the number of dimensions in the tensor ({len(shape)})"
        )
    lead = len(sizes) - len(shape)
    out = []
    for i, s in enumerate(sizes):
        if i < lead:
            if s < 0:
                raise RuntimeError(
                    f"expand: -1 is not allowed in a leading, non-existing dimension {i}"
                )
            out.append(s)
            continue
        cur = shape[i - lead]
        if s == -1 or s == cur:
            out.append(cur)
        elif cur == 1:
            out.append(s)
        else:
            raise RuntimeError(
                f"The expanded size of the tensor ({s}) must match the existing size ({cur}) "
                f"at non-singleton dimension {i}.  Target sizes: {list(sizes)}.  Tensor sizes: "
                f"{list(shape)}"
            )
    out = tuple(out)
    if out == tuple(shape):
        return dispatch(RESHAPE, (input,), {"shape": out, "view_only": True})
    return dispatch(EXPAND, (input,), {"shape": out})


@tensor_method()
def expand_as(input, other):
    return expand(input, other.shape)


def broadcast_to(input, shape):
    return expand(input, shape)


@tensor_method()
def flip(input, dims):
    """Reverse the order of elements along ``dims``."""
    return dispatch(FLIP, (input,), {"dims": normalize_dims(dims, input.ndim, "flip")})


@tensor_method()
def fliplr(input):
    return flip(input, 1)


@tensor_method()
def flipud(input):
    return flip(input, 0)


@tensor_method()
def repeat(input, *sizes):
    """Tile the tensor ``sizes[i]`` times along each dim (``torch.Tensor.repeat``)."""
    sizes = _shape_arg(sizes)
    if len(sizes) < input.ndim:
        raise RuntimeError(
            "Number of dimensions of repeat dims can not be smaller than number of dimensions "
            f"of tensor (repeat dims {list(sizes)}, tensor shape {list(input.shape)})"
        )
    shape = (1,) * (len(sizes) - input.ndim) + tuple(input.shape)
    x = reshape(input, shape)
    # interleave a size-r axis before each dim, expand it, then merge
    inter = []
    target = []
    for r, s in zip(sizes, shape):
        inter += [1, s]
        target += [r, s]
    x = reshape(x, inter).expand(*target)
    return reshape(x, tuple(r * s for r, s in zip(sizes, shape)))


@tensor_method()
def tile(input, *dims):
    """Like ``repeat``, but pads ``dims`` with leading 1s when it is shorter."""
    dims = _shape_arg(dims)
    if len(dims) < input.ndim:
        dims = (1,) * (input.ndim - len(dims)) + dims
    return repeat(input, *dims)


@tensor_method()
def narrow(input, dim, start, length):
    """The slice ``start:start+length`` along ``dim`` (a view)."""
    d = _dim(dim, input.ndim, "narrow")
    size = input.shape[d]
    if start < 0:
        start += size
    if not (0 <= start <= size and 0 <= length and start + length <= size):
        raise IndexError(
            f"narrow(): start ({start}) + length ({length}) exceeds dimension size ({size})."
        )
    index = (slice(None),) * d + (slice(start, start + length),)
    return dispatch(SLICE, (input,), {"index": index})


@tensor_method()
def split(input, split_size_or_sections, dim=0):
    """Split into chunks of ``split_size`` (last may be smaller) or the given sizes."""
    d = _dim(dim, input.ndim, "split")
    size = input.shape[d]
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        if step <= 0 and size:
            raise RuntimeError(f"split expects split_size be positive, but got {step}")
        sizes = [min(step, size - i) for i in range(0, size, step)] if size else [0]
    else:
        sizes = list(split_size_or_sections)
        if builtin_sum(sizes) != size:
            raise RuntimeError(
                f"split_with_sizes expects split_sizes to sum exactly to {size} (input tensor's "
                f"size at dimension {d}), but got split_sizes={sizes}"
            )
    out, start = [], 0
    for s in sizes:
        out.append(narrow(input, d, start, s))
        start += s
    return tuple(out)


builtin_sum = sum


@tensor_method()
def chunk(input, chunks, dim=0):
    """Split into ``chunks`` nearly equal pieces (fewer when the dim is small)."""
    if chunks <= 0:
        raise RuntimeError(f"chunk expects `chunks` to be greater than 0, got: {chunks}")
    d = _dim(dim, input.ndim, "chunk")
    size = input.shape[d]
    step = max(-(-size // chunks), 1)
    return split(input, step, d)


@tensor_method()
def unbind(input, dim=0):
    """Remove ``dim``, returning a tuple of all slices along it."""
    d = _dim(dim, input.ndim, "unbind")
    return tuple(
        dispatch(SLICE, (input,), {"index": (slice(None),) * d + (i,)})
        for i in range(input.shape[d])
    )


@tensor_method()
def contiguous(input, memory_format=None):
    """``input`` itself when C-contiguous, else a contiguous copy."""
    if input.is_contiguous():  # a lazy value: the layout it will have
        return input
    from runba.ops.elementwise import CLONE

    return dispatch(CLONE, (input,), {"order": "C"})


def T(input):  # noqa: N802 - torch name
    """All dims reversed (``x.T``)."""
    return permute(input, *reversed(range(input.ndim)))


def mT(input):  # noqa: N802 - torch name
    """The last two dims swapped (``x.mT``)."""
    if input.ndim < 2:
        raise RuntimeError(
            "tensor.mT is only supported on matrices or batches of matrices. "
            f"Got {input.ndim}-D tensor."
        )
    return transpose(input, -2, -1)
