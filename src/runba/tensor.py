"""The Tensor: numpy-backed storage, autograd metadata, and methods that all dispatch.

A CPU tensor wraps a numpy ndarray. Views are numpy views and share one version counter
(a one-element list) with their base, so an in-place change through any view is seen by the
autograd engine's saved-tensor check.

No method here computes with numpy itself: every operation is a registry op reached through
:func:`runba.ops.registry.dispatch` (methods are bound from ``runba.ops`` at import time).
"""

from __future__ import annotations

import weakref

import numpy as np

from runba import dtypes as _dt
from runba.ops import registry

__all__ = ["Tensor", "Size", "device"]


class Size(tuple):
    """A tensor shape: a tuple that prints like ``runba.Size([2, 3])``."""

    __slots__ = ()

    def __repr__(self):
        return f"runba.Size({list(self)})"

    def numel(self) -> int:
        n = 1
        for s in self:
            n *= s
        return n


class device:  # noqa: N801 - mirrors torch.device
    """Where a tensor lives: ``device("cpu")`` now; the type admits ``"cuda"`` later."""

    __slots__ = ("type", "index")

    def __init__(self, type="cpu", index=None):  # noqa: A002 - torch's argument name
        if isinstance(type, device):
            type, index = type.type, type.index
        if ":" in type:
            type, idx = type.split(":", 1)
            index = int(idx)
        if type not in ("cpu", "cuda"):
            raise RuntimeError(
                f"Expected one of cpu, cuda device type at start of device string: {type}"
            )
        self.type = type
        self.index = index

    def __eq__(self, other):
        if isinstance(other, str):
            other = device(other)
        return isinstance(other, device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self):
        return hash((self.type, self.index))

    def __repr__(self):
        idx = "" if self.index is None else f", index={self.index}"
        return f"device(type='{self.type}'{idx})"

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"


CPU = device("cpu")


def _check_device(dev, op: str):
    dev = device(dev) if not isinstance(dev, device) else dev
    if dev.type != "cpu":
        raise RuntimeError(
            f"{op}: device {str(dev)!r} is not available (runba's CUDA backend is not built "
            "yet; runba.cuda.is_available() is False)"
        )
    return dev


class Tensor:
    """A multi-dimensional array with autograd, PyTorch-style.

    >>> import runba
    >>> x = runba.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    >>> y = (x * x).sum()
    >>> y.backward()
    >>> x.grad
    tensor([[2., 4.],
            [6., 8.]])
    """

    __slots__ = (
        "_data",
        "dtype",
        "_version",
        "_rg",
        "_grad",
        "grad_fn",
        "_base",
        "_extra",
        "_lazy",
        "__weakref__",
    )

    # Tensor on the left of numpy arithmetic: make numpy defer to our reflected operators.
    __array_priority__ = 1000

    def __init__(self, *args, **kwargs):
        raise TypeError(
            "runba.Tensor cannot be constructed directly; use runba.tensor(data), "
            "runba.empty(*shape) or runba.from_numpy(array)"
        )

    @staticmethod
    def _make(data: np.ndarray, dtype: _dt.dtype) -> Tensor:
        # Every op result is built here: keep it to one allocation plus plain slot stores
        # (a class-level default cannot share a name with a slot).
        t = _new(_Tensor)
        t._data = data
        t.dtype = dtype
        t._version = [0]
        t._rg = False
        t._grad = None
        t.grad_fn = None
        t._base = None
        t._extra = None
        t._lazy = None
        return t

    def _realize(self) -> None:
        """Give a lazy tensor (recorded inside runba.fuse) its value: runs its graph."""
        _jit_realize()(self)

    # ------------------------------------------------------------------ attributes
    @property
    def shape(self) -> Size:
        s = self._data.shape
        size = _SIZES.get(s)
        return size if size is not None else _size(s)

    def size(self, dim: int | None = None):
        if dim is None:
            s = self._data.shape
            size = _SIZES.get(s)
            return size if size is not None else _size(s)
        return self._data.shape[_wrap_dim(dim, self._data.ndim, "size")]

    def dim(self) -> int:
        return self._data.ndim

    ndimension = dim

    @property
    def ndim(self) -> int:
        return self._data.ndim

    def numel(self) -> int:
        return self._data.size

    nelement = numel

    @property
    def device(self) -> device:
        return CPU

    @property
    def is_cuda(self) -> bool:
        return False

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def requires_grad(self) -> bool:
        return self._rg

    @requires_grad.setter
    def requires_grad(self, flag: bool):
        self.requires_grad_(flag)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if not self.is_leaf:
            raise RuntimeError(
                "you can only change requires_grad flags of leaf variables. If you want to "
                "use a computed variable in a subgraph that doesn't require differentiation "
                "use var_no_grad = var.detach()."
            )
        if requires_grad and not self.dtype.is_floating_point:
            raise RuntimeError(
                f"only Tensors of floating point dtype can require gradients "
                f"(got dtype {self.dtype!r})"
            )
        self._rg = bool(requires_grad)
        return self

    def is_floating_point(self) -> bool:
        return self.dtype.is_floating_point

    def element_size(self) -> int:
        return self.dtype.itemsize

    def stride(self, dim: int | None = None):
        if self._lazy is not None:
            self._realize()
        st = tuple(s // self.dtype.itemsize for s in self._data.strides)
        return st if dim is None else st[_wrap_dim(dim, self._data.ndim, "stride")]

    def is_contiguous(self) -> bool:
        node = self._lazy
        if node is not None:  # the layout its value will have (kernels write C order)
            from runba.jit.graph import layout_model

            return layout_model(node).flags.c_contiguous
        return self._data.flags.c_contiguous

    def data_ptr(self) -> int:
        if self._lazy is not None:
            self._realize()
        return self._data.__array_interface__["data"][0]

    @property
    def grad(self) -> Tensor | None:
        """The gradient ``backward()`` accumulated here (None until then). Assigning checks,
        like PyTorch, that it is None or a tensor of this one's shape and dtype."""
        return self._grad

    @grad.setter
    def grad(self, value) -> None:
        if value is not None:
            if not isinstance(value, Tensor):
                raise TypeError(
                    "assigned grad expected to be a Tensor or None but got grad of type "
                    f"{type(value).__name__}"
                )
            if value.shape != self.shape:
                raise RuntimeError(
                    f"assigned grad has data of a different size: grad {list(value.shape)}, "
                    f"tensor {list(self.shape)}"
                )
            if value.dtype is not self.dtype:
                raise RuntimeError(
                    f"assigned grad has data of a different type: grad {value.dtype.name}, "
                    f"tensor {self.dtype.name}"
                )
        self._grad = value

    @property
    def data(self) -> Tensor:
        """A tensor sharing storage that is not part of the graph (``x.data``)."""
        return self.detach()

    @data.setter
    def data(self, other: Tensor):
        if other._lazy is not None:
            other._realize()
        # a lazy tensor stops showing its graph node: the graph's value must not land on
        # top of the storage assigned here when the graph runs
        self._lazy = None
        self._data = other._data
        self.dtype = other.dtype

    @property
    def _version_count(self) -> int:
        return self._version[0]

    # ------------------------------------------------------------------ conversion
    def numpy(self, *, force: bool = False) -> np.ndarray:
        """The underlying numpy array (shares memory), like ``torch.Tensor.numpy``."""
        if self._rg and not force:
            raise RuntimeError(
                "Can't call numpy() on Tensor that requires grad. "
                "Use tensor.detach().numpy() instead."
            )
        if self._lazy is not None:
            self._realize()
        elif registry.lazy_graphs[0]:
            # a writable view: pending graphs reading this storage run first (as eager did)
            registry.lazy_recorder.before_write(self)
        return self._data

    def item(self):
        if self._lazy is not None:
            self._realize()
        if self._data.size != 1:
            raise RuntimeError(
                f"a Tensor with {self._data.size} elements cannot be converted to Scalar"
            )
        return self._data.reshape(-1)[0].item()

    def tolist(self):
        if self._lazy is not None:
            self._realize()
        return self._data.tolist()

    def __bool__(self):
        if self._lazy is not None:
            self._realize()
        if self._data.size != 1:
            raise RuntimeError(
                f"Boolean value of Tensor with {self._data.size} elements is ambiguous"
            )
        return bool(self._data.reshape(-1)[0])

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self.dtype.is_floating_point or self._data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __len__(self):
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __iter__(self):
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self._data.shape[0]))

    def __array__(self, dtype=None, copy=None):
        if self._rg:
            raise RuntimeError(
                "Can't call numpy() on Tensor that requires grad. "
                "Use tensor.detach().numpy() instead."
            )
        if self._lazy is not None:
            self._realize()
        elif dtype is None and registry.lazy_graphs[0]:
            registry.lazy_recorder.before_write(self)
        return self._data if dtype is None else self._data.astype(dtype)

    def __hash__(self):
        return id(self)

    def __deepcopy__(self, memo):
        """A copy with its own storage (leaves only, like torch); keeps ``requires_grad``."""
        if not self.is_leaf:
            raise RuntimeError(
                "Only Tensors created explicitly by the user (graph leaves) support the "
                "deepcopy protocol at the moment. If you were attempting to deepcopy a module, "
                "this may be because of a torch.nn.utils.weight_norm usage."
            )
        if id(self) in memo:
            return memo[id(self)]
        if self._lazy is not None:
            self._realize()
        t = Tensor._make(self._data.copy(), self.dtype)
        t._rg = self._rg
        if self.grad is not None:
            t.grad = self.grad.__deepcopy__(memo)
        memo[id(self)] = t
        return t

    def __reduce_ex__(self, protocol):
        raise TypeError(
            "runba tensors are not pickled; use runba.save / runba.load (safetensors format)"
        )

    def to(self, *args, **kwargs) -> Tensor:
        """``to(dtype)``, ``to(device)``, ``to(device, dtype)`` or ``to(other)``."""
        dtype = kwargs.pop("dtype", None)
        dev = kwargs.pop("device", None)
        kwargs.pop("non_blocking", None)
        copy = kwargs.pop("copy", False)
        if kwargs:
            raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
        for a in args:
            if isinstance(a, Tensor):
                dtype, dev = a.dtype, a.device
            elif isinstance(a, _dt.dtype):
                dtype = a
            elif isinstance(a, (str, device)):
                dev = a
            else:
                raise TypeError(f"to() received an invalid argument {a!r}")
        if dev is not None:
            _check_device(dev, "Tensor.to")
        if dtype is None or dtype is self.dtype:
            return self.clone() if copy else self
        from runba.ops.elementwise import cast

        return cast(self, dtype)

    def type(self, dtype=None):
        if dtype is None:
            return f"runba.{_TYPE_NAMES[self.dtype.name]}"
        return self.to(_dt.to_dtype(dtype, "type"))

    def float(self):
        return self.to(_dt.float32)

    def double(self):
        return self.to(_dt.float64)

    def half(self):
        return self.to(_dt.float16)

    def long(self):
        return self.to(_dt.int64)

    def int(self):
        return self.to(_dt.int32)

    def bool(self):
        return self.to(_dt.bool_)

    def byte(self):
        return self.to(_dt.uint8)

    def cpu(self):
        return self

    def cuda(self, *args, **kwargs):
        _check_device("cuda", "Tensor.cuda")

    # ------------------------------------------------------------------ autograd
    def detach(self) -> Tensor:
        """A tensor sharing storage (and version counter) that is not part of the graph."""
        t = Tensor._make(self._data, self.dtype)
        t._version = self._version  # same storage: in-place writes show in both
        if self._lazy is not None:  # the same lazy value, realized together
            self._lazy.graph.attach(self._lazy, t)
        return t

    def detach_(self) -> Tensor:
        self.grad_fn = None
        self._rg = False
        return self

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad`` (see ``runba.autograd``)."""
        from runba.autograd.engine import backward

        backward(self, gradient, retain_graph, create_graph, inputs)

    def retain_grad(self) -> None:
        """Keep ``.grad`` on a non-leaf tensor after backward."""
        if not self._rg:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        if self.grad_fn is not None:
            self.grad_fn.retained = weakref.ref(self)

    @property
    def retains_grad(self) -> bool:
        node = self.grad_fn
        return node is not None and node.retained is not None and node.retained() is self

    def register_hook(self, hook):
        """Call ``hook(grad)`` when this tensor's gradient is computed; it may return a
        replacement. Returns a handle with ``remove()``."""
        if not self._rg:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self.grad_fn is not None:
            hooks = self.grad_fn.hooks
            if hooks is None:
                hooks = self.grad_fn.hooks = []
        else:
            if self._extra is None:
                self._extra = {}
            hooks = self._extra.setdefault("hooks", [])
        hooks.append(hook)
        return _HookHandle(hooks, hook)

    # ------------------------------------------------------------------ printing
    def __repr__(self):
        from runba._printing import tensor_repr

        return tensor_repr(self)

    __str__ = __repr__

    def __format__(self, spec):
        if self._data.ndim == 0 and spec:
            return format(self.item(), spec)
        return repr(self)


_new = object.__new__
_JIT_REALIZE: list = []


def _jit_realize():
    """``runba.jit.capture.realize``, imported on first use (the JIT imports this module;
    an import statement in ``_realize`` cost ~0.6 µs on every value read)."""
    if not _JIT_REALIZE:
        from runba.jit.capture import realize

        _JIT_REALIZE.append(realize)
    return _JIT_REALIZE[0]


_Tensor = Tensor

# Size objects are immutable, so one per distinct shape is shared: ``.shape`` is read on
# every op by shape checks and user code, and a dict hit is cheaper than building a tuple
# subclass. Bounded so a stream of ever-new shapes cannot grow it without limit.
_SIZES: dict = {}
_SIZES_MAX = 4096


def _size(shape: tuple) -> Size:
    size = Size(shape)
    if len(_SIZES) < _SIZES_MAX:
        _SIZES[shape] = size
    return size


_TYPE_NAMES = {
    "float32": "FloatTensor",
    "float64": "DoubleTensor",
    "float16": "HalfTensor",
    "int32": "IntTensor",
    "int64": "LongTensor",
    "bool": "BoolTensor",
    "uint8": "ByteTensor",
}


class _HookHandle:
    __slots__ = ("_hooks", "_hook")

    def __init__(self, hooks, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self):
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


def _wrap_dim(dim: int, ndim: int, op: str) -> int:
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(
            f"{op}: Dimension out of range (expected to be in range of [{-n}, {n - 1}], "
            f"but got {dim})"
        )
    return dim % n


registry.Tensor = Tensor
registry._make = Tensor._make
