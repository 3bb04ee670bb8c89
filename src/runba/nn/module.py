"""``Module``: the base class of every layer and model.

Parameters, buffers and submodules register themselves when assigned as attributes, in
assignment order, exactly as in PyTorch; ``state_dict`` keys are their dotted paths.

``__call__`` is the hot path: with no hooks registered it is one attribute check and a call to
``forward``. When ``forward`` raises, each enclosing ``Module.__call__`` frame prepends the
child's attribute name to the error, so a shape error deep inside a model reads
``Linear(in_features=784, ...) at 'classifier.0': expected ...`` without any bookkeeping on the
success path (Python's try/except is free until something raises).
"""

from __future__ import annotations

import itertools
from collections import OrderedDict, namedtuple

from runba._state import STATE as _STATE
from runba.jit.capture import capturing as _capturing
from runba.jit.capture import is_enabled as _jit_enabled
from runba.nn.parameter import Buffer, Parameter
from runba.tensor import Tensor

__all__ = ["Module", "ModuleError", "module_error"]


class _IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    __slots__ = ()

    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()

    __str__ = __repr__


class _RemovableHandle:
    """Returned by ``register_forward_hook``; ``remove()`` unregisters the hook."""

    _ids = itertools.count()
    __slots__ = ("_dict", "id")

    def __init__(self, hooks: dict):
        self._dict = hooks
        self.id = next(_RemovableHandle._ids)

    def remove(self):
        self._dict.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


# ---------------------------------------------------------------------------- error paths
class ModuleError(RuntimeError):
    """An error raised by a layer about its input; the message names the module's path.

    The path is filled in while the exception unwinds through the enclosing modules'
    ``__call__`` (see :func:`_annotate`).
    """


def module_error(module: Module, message: str, exc_type=ModuleError) -> Exception:
    """Build an exception ``"<Layer(extra_repr)> at '<path>': <message>"`` for ``module``.

    The path is added as the exception propagates through ``Module.__call__``; a layer
    called on its own reads ``"<Layer(...)>: <message>"``.
    """
    head = f"{type(module).__name__}({module.extra_repr()})"
    e = exc_type(f"{head}: {message}")
    e._runba_template = (head, message)
    return e


_ANNOTATED = (RuntimeError, ValueError, IndexError, TypeError)


def _child_path(parent: Module, child: Module) -> str | None:
    if parent is child:
        return ""
    for name, m in parent.named_modules():
        if m is child:
            return name
    return None


def _annotate(e: BaseException, module: Module) -> None:
    """Record that ``e`` passed through ``module.__call__`` and rewrite its message."""
    d = e.__dict__
    inner = d.get("_runba_module")
    if inner is None:
        d["_runba_module"] = module
        d["_runba_path"] = ""
        d["_runba_args"] = e.args
        d["_runba_owner"] = type(module).__name__
        d.setdefault("_runba_template", None)
    else:
        if inner is module or d.get("_runba_done"):
            return
        rel = _child_path(module, inner)
        if rel is None:  # called something that is not one of its submodules: stop here
            d["_runba_done"] = True
            return
        d["_runba_module"] = module
        d["_runba_path"] = rel + ("." + d["_runba_path"] if d["_runba_path"] else "")
    path = d["_runba_path"]
    template = d["_runba_template"]
    if template is not None:
        head, message = template
        where = f" at {path!r}" if path else ""
        e.args = (f"{head}{where}: {message}",)
    else:
        args = d["_runba_args"]
        if len(args) != 1 or not isinstance(args[0], str):
            return
        owner = d["_runba_owner"]
        where = f"{owner} at {path!r}" if path else owner
        e.args = (f"{args[0]} (raised in module {where})",)


# ---------------------------------------------------------------------------- Module
class Module:
    """Base class for all neural-network modules.

    Subclasses call ``super().__init__()`` first, assign parameters and submodules as
    attributes, and implement ``forward``:

    >>> import runba
    >>> from runba import nn
    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc = nn.Linear(4, 2)
    ...     def forward(self, x):
    ...         return self.fc(x).relu()
    >>> net = Net()
    >>> [name for name, _ in net.named_parameters()]
    ['fc.weight', 'fc.bias']
    >>> net(runba.randn(3, 4)).shape
    runba.Size([3, 2])
    """

    training: bool
    _version: int = 1
    _runba_fused: bool = False  # set by runba.fuse (on the instance or the class)

    def __init__(self, *args, **kwargs):
        if args or kwargs:
            raise TypeError(
                f"{type(self).__name__}.__init__() got unexpected arguments (Module.__init__ "
                "takes none)"
            )
        s = object.__setattr__
        s(self, "training", True)
        s(self, "_parameters", {})
        s(self, "_buffers", {})
        s(self, "_non_persistent_buffers_set", set())
        s(self, "_modules", {})
        s(self, "_forward_hooks", {})
        s(self, "_forward_pre_hooks", {})

    def forward(self, *args, **kwargs):
        raise NotImplementedError(
            f'Module [{type(self).__name__}] is missing the required "forward" function'
        )

    # ------------------------------------------------------------------ call
    def __call__(self, *args, **kwargs):
        if self._runba_fused and _STATE.capture is None and _jit_enabled():
            with _capturing(self):  # runba.fuse: record this call (the branch is skipped inside)
                return self(*args, **kwargs)
        if self._forward_hooks or self._forward_pre_hooks:
            return self._call_with_hooks(args, kwargs)
        try:
            return self.forward(*args, **kwargs)
        except _ANNOTATED as e:
            _annotate(e, self)
            raise

    def _call_with_hooks(self, args, kwargs):
        try:
            for hook in list(self._forward_pre_hooks.values()):
                res = hook(self, args)
                if res is not None:
                    args = res if isinstance(res, tuple) else (res,)
            out = self.forward(*args, **kwargs)
            for hook in list(self._forward_hooks.values()):
                res = hook(self, args, out)
                if res is not None:
                    out = res
            return out
        except _ANNOTATED as e:
            _annotate(e, self)
            raise

    def register_forward_hook(self, hook):
        """``hook(module, args, output)`` after every forward; may return a new output."""
        handle = _RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    def register_forward_pre_hook(self, hook):
        """``hook(module, args)`` before every forward; may return new args."""
        handle = _RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    # ------------------------------------------------------------------ registration
    def __setattr__(self, name: str, value):
        d = self.__dict__
        params = d.get("_parameters")
        if isinstance(value, Parameter):
            if params is None:
                raise AttributeError("cannot assign parameters before Module.__init__() call")
            _remove_from(self, name, d, self._buffers, self._modules)
            self.register_parameter(name, value)
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(
                    f"cannot assign '{_type_name(value)}' as parameter '{name}' "
                    "(runba.nn.Parameter or None expected)"
                )
            params[name] = None
        elif isinstance(value, Module):
            modules = d.get("_modules")
            if modules is None:
                raise AttributeError("cannot assign module before Module.__init__() call")
            _remove_from(self, name, d, self._parameters, self._buffers)
            modules[name] = value
        elif d.get("_modules") is not None and name in d["_modules"]:
            if value is not None:
                raise TypeError(
                    f"cannot assign '{_type_name(value)}' as child module '{name}' "
                    "(runba.nn.Module or None expected)"
                )
            d["_modules"][name] = None
        elif isinstance(value, Buffer):
            _remove_from(self, name, d, self._parameters, self._modules)
            self.register_buffer(name, value.data, persistent=value.persistent)
        elif d.get("_buffers") is not None and name in d["_buffers"]:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(
                    f"cannot assign '{_type_name(value)}' as buffer '{name}' "
                    "(runba.Tensor or None expected)"
                )
            d["_buffers"][name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str):
        d = self.__dict__
        for key in ("_parameters", "_buffers", "_modules"):
            reg = d.get(key)
            if reg is not None and name in reg:
                return reg[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str):
        for reg in (self._parameters, self._buffers, self._modules):
            if name in reg:
                del reg[name]
                self._non_persistent_buffers_set.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        return sorted(
            set(super().__dir__()) | set(self._parameters) | set(self._buffers) | set(self._modules)
        )

    def _check_new_name(self, name, kind):
        if not isinstance(name, str):
            raise TypeError(f"{kind} name should be a string. Got {type(name).__name__}")
        if "." in name:
            raise KeyError(f'{kind} name can\'t contain ".", got: {name}')
        if name == "":
            raise KeyError(f'{kind} name can\'t be empty string ""')

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add a parameter (or ``None``) under ``name``."""
        if "_parameters" not in self.__dict__:
            raise AttributeError("cannot assign parameter before Module.__init__() call")
        self._check_new_name(name, "parameter")
        if hasattr(self, name) and name not in self._parameters:
            raise KeyError(f"attribute '{name}' already exists")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(
                f"cannot assign '{_type_name(param)}' object to parameter '{name}' "
                "(runba.nn.Parameter or None required)"
            )
        if param is not None and param.grad_fn is not None:
            raise ValueError(
                f"Cannot assign non-leaf Tensor to parameter '{name}'. Model parameters must "
                "be created explicitly. To express '{name}' as a function of another Tensor, "
                "compute the value in the forward() method."
            )
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Add a buffer: state that is not a parameter (BatchNorm's running stats).

        Non-persistent buffers are left out of ``state_dict``.
        """
        if "_buffers" not in self.__dict__:
            raise AttributeError("cannot assign buffer before Module.__init__() call")
        self._check_new_name(name, "buffer")
        if hasattr(self, name) and name not in self._buffers:
            raise KeyError(f"attribute '{name}' already exists")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(
                f"cannot assign '{_type_name(tensor)}' object to buffer '{name}' "
                "(runba.Tensor or None required)"
            )
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers_set.discard(name)
        else:
            self._non_persistent_buffers_set.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        """Add a child module under ``name`` (``name`` may be any string without dots)."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{_type_name(module)} is not a Module subclass")
        self._check_new_name(name, "module")
        if hasattr(self, name) and name not in self._modules:
            raise KeyError(f"attribute '{name}' already exists")
        self._modules[name] = module

    register_module = add_module

    def get_submodule(self, target: str) -> Module:
        """The submodule at dotted path ``target`` (``""`` is ``self``)."""
        mod = self
        if target == "":
            return mod
        for item in target.split("."):
            if item not in mod._modules or mod._modules[item] is None:
                raise AttributeError(f"{type(mod).__name__} has no submodule `{item}`")
            mod = mod._modules[item]
        return mod

    def get_parameter(self, target: str) -> Parameter:
        mod_path, _, name = target.rpartition(".")
        mod = self.get_submodule(mod_path)
        if name not in mod._parameters:
            raise AttributeError(f"{type(mod).__name__} has no parameter `{name}`")
        return mod._parameters[name]

    def get_buffer(self, target: str) -> Tensor:
        mod_path, _, name = target.rpartition(".")
        mod = self.get_submodule(mod_path)
        if name not in mod._buffers:
            raise AttributeError(f"{type(mod).__name__} has no buffer `{name}`")
        return mod._buffers[name]

    # ------------------------------------------------------------------ iteration
    def _named_members(self, get_members, prefix="", recurse=True, remove_duplicate=True):
        memo = set()
        modules = (
            self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate)
            if recurse
            else [(prefix, self)]
        )
        for module_prefix, module in modules:
            for k, v in get_members(module):
                if v is None or (remove_duplicate and id(v) in memo):
                    continue
                if remove_duplicate:
                    memo.add(id(v))
                yield (module_prefix + ("." if module_prefix else "") + k, v)

    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate=True):
        """Yield ``(dotted_name, Parameter)``; a shared parameter appears once."""
        return self._named_members(
            lambda m: m._parameters.items(), prefix, recurse, remove_duplicate
        )

    def parameters(self, recurse: bool = True):
        """Yield every parameter (each once), in registration order."""
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True, remove_duplicate=True):
        return self._named_members(lambda m: m._buffers.items(), prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def named_children(self):
        memo = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in memo:
                memo.add(id(m))
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def named_modules(self, memo=None, prefix: str = "", remove_duplicate: bool = True):
        """Yield ``(dotted_name, module)`` for self (name ``prefix``) and every descendant."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is None:
                continue
            sub = prefix + ("." if prefix else "") + name
            yield from m.named_modules(memo, sub, remove_duplicate)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    # ------------------------------------------------------------------ modes
    def train(self, mode: bool = True) -> Module:
        """Set training mode on this module and all descendants (Dropout, BatchNorm)."""
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        """``train(False)``."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset every parameter's ``.grad`` (to ``None`` by default, like PyTorch 2)."""
        from runba.autograd import no_grad

        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                if p.grad.grad_fn is not None:
                    p.grad = p.grad.detach()
                with no_grad():
                    p.grad.zero_()

    def apply(self, fn) -> Module:
        """Call ``fn(m)`` on every submodule (children first) and on self; return self."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------ dtype / device
    def _apply(self, fn) -> Module:
        """Replace every parameter's data, gradient and buffer by ``fn(tensor)``.

        Parameters keep their identity (optimizers hold them), like PyTorch.
        """
        from runba.autograd import no_grad

        for m in self.modules():
            for p in m._parameters.values():
                if p is None:
                    continue
                with no_grad():
                    new = fn(p)
                if new is not p:
                    _set_data(p, new)
                if p.grad is not None:
                    with no_grad():
                        g = fn(p.grad)
                    if g is not p.grad:
                        p.grad = g
            for k, b in m._buffers.items():
                if b is not None:
                    with no_grad():
                        m._buffers[k] = fn(b)
        return self

    def to(self, *args, **kwargs) -> Module:
        """``to(dtype)``, ``to(device)``, ``to(device, dtype)`` or ``to(tensor)``.

        Only floating-point parameters and buffers change dtype (``num_batches_tracked``
        stays int64). Returns self.
        """
        from runba.creation import empty
        from runba.dtypes import dtype as _dtype
        from runba.tensor import device

        dtype = kwargs.pop("dtype", None)
        dev = kwargs.pop("device", None)
        kwargs.pop("non_blocking", None)
        if kwargs:
            raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
        for a in args:
            if isinstance(a, Tensor):
                dtype, dev = a.dtype, a.device
            elif isinstance(a, _dtype):
                dtype = a
            elif isinstance(a, (str, device)):
                dev = a
            else:
                raise TypeError(f"to() received an invalid argument {a!r}")
        if dtype is not None and not dtype.is_floating_point:
            raise TypeError(
                f"nn.Module.to only accepts floating point dtypes, but got desired dtype={dtype}"
            )
        if dev is not None:
            empty(0).to(dev)  # raises the Tensor error for devices that are not available

        def convert(t):
            if dtype is not None and t.dtype.is_floating_point and t.dtype is not dtype:
                t = t.to(dtype)
            if dev is not None:
                t = t.to(dev)
            return t

        return self._apply(convert)

    def float(self) -> Module:
        from runba.dtypes import float32

        return self.to(float32)

    def double(self) -> Module:
        from runba.dtypes import float64

        return self.to(float64)

    def half(self) -> Module:
        from runba.dtypes import float16

        return self.to(float16)

    def cpu(self) -> Module:
        return self.to("cpu")

    def cuda(self, device=None) -> Module:
        return self.to("cuda" if device is None else f"cuda:{device}")

    # ------------------------------------------------------------------ state dict
    def state_dict(self, *args, destination=None, prefix: str = "", keep_vars: bool = False):
        """An ordered dict of every parameter and persistent buffer, keyed by dotted path.

        Values are detached tensors sharing storage with the module (``keep_vars=True``
        returns the Parameters themselves).
        """
        if args:  # torch's deprecated positional form state_dict(destination, prefix, keep_vars)
            destination, *rest = args
            if rest:
                prefix = rest[0]
            if len(rest) > 1:
                keep_vars = rest[1]
        if destination is None:
            destination = OrderedDict()
        for name, m in self.named_modules(prefix=prefix.rstrip("."), remove_duplicate=False):
            head = name + "." if name else ""
            for k, p in m._parameters.items():
                if p is not None:
                    destination[head + k] = p if keep_vars else p.detach()
            for k, b in m._buffers.items():
                if b is not None and k not in m._non_persistent_buffers_set:
                    destination[head + k] = b if keep_vars else b.detach()
        return destination

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Copy ``state_dict``'s tensors into this module's parameters and buffers.

        Returns ``(missing_keys, unexpected_keys)``. Raises one ``RuntimeError`` listing
        missing keys, unexpected keys (both only when ``strict``) and every shape mismatch,
        and says so when all keys differ by a prefix such as ``module.``.
        """
        from runba.autograd import no_grad
        from runba.creation import as_tensor

        if not hasattr(state_dict, "keys"):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict)}.")
        own = self.state_dict(keep_vars=True)
        missing, unexpected, mismatched = [], [], []
        to_copy = []
        for key, target in own.items():
            if key not in state_dict:
                missing.append(key)
                continue
            value = state_dict[key]
            if not isinstance(value, Tensor):
                try:
                    value = as_tensor(value)
                except Exception:  # noqa: BLE001 - reported as a load error below
                    mismatched.append(
                        f'While copying the parameter named "{key}", expected a tensor, '
                        f"got {type(value).__name__}."
                    )
                    continue
            if tuple(value.shape) != tuple(target.shape):
                mismatched.append(
                    f"size mismatch for {key}: copying a param with shape {list(value.shape)} "
                    f"from checkpoint, the shape in current model is {list(target.shape)}."
                )
                continue
            to_copy.append((key, target, value))
        for key in state_dict.keys():
            if key not in own:
                unexpected.append(key)

        errors = list(mismatched)
        if strict:
            if unexpected:
                errors.insert(
                    0,
                    "Unexpected key(s) in state_dict: "
                    + ", ".join(f'"{k}"' for k in unexpected)
                    + ". ",
                )
            if missing:
                errors.insert(
                    0,
                    "Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + ". ",
                )
        if errors:
            hint = _prefix_hint(missing, unexpected)
            if hint:
                errors.append(hint)
            raise RuntimeError(
                "Error(s) in loading state_dict for {}:\n\t{}".format(
                    type(self).__name__, "\n\t".join(errors)
                )
            )
        with no_grad():
            for key, target, value in to_copy:
                if assign:
                    _assign_into(self, key, target, value)
                else:
                    target.copy_(value)
        return _IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ repr
    def extra_repr(self) -> str:
        """Text shown inside this module's parentheses in ``repr`` (override in layers)."""
        return ""

    def _get_name(self) -> str:
        return type(self).__name__

    def __repr__(self):
        lines = []
        extra = self.extra_repr()
        if extra:
            lines = extra.split("\n")
        for key, m in self._modules.items():
            mod_str = _addindent(repr(m), 2)
            lines.append(f"({key}): {mod_str}")
        main = self._get_name() + "("
        if lines:
            if len(lines) == 1 and not self._modules:
                main += lines[0]
            else:
                main += "\n  " + "\n  ".join(lines) + "\n"
        return main + ")"


def _addindent(s: str, n: int) -> str:
    parts = s.split("\n")
    if len(parts) == 1:
        return s
    return parts[0] + "\n" + "\n".join(" " * n + line for line in parts[1:])


def _type_name(value) -> str:
    if isinstance(value, Tensor):
        return value.type()
    t = type(value)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _remove_from(module, name, d, *registries):
    d.pop(name, None)
    for reg in registries:
        if reg is not None and name in reg:
            del reg[name]
    module.__dict__.get("_non_persistent_buffers_set", set()).discard(name)


def _set_data(p: Tensor, new: Tensor) -> None:
    p.data = new  # keeps the Parameter object (optimizers and state hold it)


def _assign_into(root: Module, key: str, target: Tensor, value: Tensor) -> None:
    mod_path, _, name = key.rpartition(".")
    mod = root.get_submodule(mod_path)
    if name in mod._parameters:
        mod._parameters[name] = Parameter(value.detach(), target.requires_grad)
    else:
        mod._buffers[name] = value.detach()


def _prefix_hint(missing: list, unexpected: list) -> str | None:
    """Explain when every key differs by a fixed leading prefix (``module.`` from DDP)."""
    if not missing or not unexpected or len(missing) != len(unexpected):
        return None
    for have, want, direction in ((unexpected, missing, "has"), (missing, unexpected, "lacks")):
        first = have[0]
        for w in want:
            if first.endswith("." + w):
                pfx = first[: len(first) - len(w)]
                if {k[len(pfx) :] for k in have if k.startswith(pfx)} == set(want) and all(
                    k.startswith(pfx) for k in have
                ):
                    if direction == "has":
                        return (
                            f"All keys in the checkpoint carry the extra prefix {pfx!r} (saved "
                            "from a wrapped model such as DataParallel/DistributedDataParallel"
                            f"?): strip it, e.g. {{k.removeprefix({pfx!r}): v for k, v in "
                            "state_dict.items()}."
                        )
                    return (
                        f"All keys in the checkpoint lack the prefix {pfx!r} that this model's "
                        f"keys carry: add it, e.g. {{{pfx!r} + k: v for k, v in "
                        "state_dict.items()}, or load into the wrapped submodule."
                    )
    return None
