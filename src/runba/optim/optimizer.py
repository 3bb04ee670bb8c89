"""The optimizer base class: parameter groups, per-parameter state, state dicts.

Layout and semantics follow ``torch.optim.Optimizer``:

* ``param_groups``: a list of dicts, each with ``"params"`` (a list of tensors) and every
  hyper-parameter (defaults filled in from the constructor);
* ``state``: a dict from parameter tensor to its own state dict (momentum buffers, moments,
  ``step``);
* ``state_dict()``: ``{"state": {index: {...}}, "param_groups": [{..., "params": [index, ...]}]}``
  where ``index`` numbers the parameters in group order; ``load_state_dict`` maps those indices
  back onto this optimizer's parameters (the groups must have the same sizes) and copies the
  state tensors, cast to each parameter's dtype (``step`` stays a number).

Updates run under ``no_grad`` with in-place Tensor methods only (``add_``, ``mul_``, ``lerp_``,
``copy_``...), so the same code runs eagerly and, later, recorded by the JIT.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import runba

__all__ = ["Optimizer", "required"]


class _Required:
    """Marks a hyper-parameter that has no default (``lr`` of SGD in old PyTorch)."""

    def __repr__(self):
        return "<required parameter>"


required = _Required()


def _count_steps(step):
    @functools.wraps(step)
    def wrapper(self, *args, **kwargs):
        self._opt_step_count += 1
        return step(self, *args, **kwargs)

    wrapper._counted = True
    return wrapper


class Optimizer:
    """Base class: subclasses pass their defaults and implement ``step``.

    >>> import runba
    >>> p = runba.zeros(2, requires_grad=True)
    >>> opt = runba.optim.SGD([p], lr=0.1)
    >>> (p - 1.0).square().sum().backward(); _ = opt.step()
    >>> [round(v, 6) for v in p.tolist()]
    [0.2, 0.2]
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # count step() calls: LR schedulers warn when they step before the optimizer does
        step = cls.__dict__.get("step")
        if step is not None and not getattr(step, "_counted", False):
            cls.step = _count_steps(step)

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.state: dict = {}
        self.param_groups: list[dict] = []
        self._opt_step_count = 0
        if isinstance(params, runba.Tensor):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of Tensors or "
                f"dicts, but got {type(params).__name__}"
            )
        if isinstance(params, (set, frozenset)):
            raise TypeError(
                "optimizer parameters need to be organized in ordered collections, but the "
                "ordering of tensors in sets will change between runs. Please use a list instead."
            )
        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for group in param_groups:
            self.add_param_group(group)

    # ------------------------------------------------------------------------ groups
    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters with its own hyper-parameters (missing ones default)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        group = dict(param_group)
        params = group.get("params")
        if isinstance(params, runba.Tensor):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError(
                "optimizer parameters need to be organized in ordered collections, but the "
                "ordering of tensors in sets will change between runs. Please use a list instead."
            )
        elif params is None or not isinstance(params, Iterable):
            raise TypeError("param_group['params'] must be a Tensor or an iterable of Tensors")
        params = list(params)
        for i, p in enumerate(params):
            if not isinstance(p, runba.Tensor):
                raise TypeError(
                    f"optimizer can only optimize Tensors, but param {i} of the group is a "
                    f"{type(p).__name__}"
                )
            if not p.is_leaf:
                raise ValueError(f"can't optimize a non-leaf Tensor (param {i} of the group)")
        group["params"] = params
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(
                    f"parameter group didn't specify a value of required optimization "
                    f"parameter {name}"
                )
            group.setdefault(name, default)
        if len({id(p) for p in params}) != len(params):
            import warnings

            warnings.warn(
                "optimizer contains a parameter group with duplicate parameters; in future, "
                "this will cause an error",
                UserWarning,
                stacklevel=3,
            )
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    # ------------------------------------------------------------------------ grads
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset every parameter's ``.grad``: to ``None`` (default), or to zeros in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    g = p.grad
                    if g.grad_fn is not None:
                        g = p.grad = g.detach()
                    else:
                        g.requires_grad_(False)
                    g.zero_()

    def step(self, closure=None):
        raise NotImplementedError

    def _closure_loss(self, closure):
        if closure is None:
            return None
        with runba.enable_grad():
            return closure()

    # ------------------------------------------------------------------------ state dicts
    def state_dict(self) -> dict:
        """``{"state": {index: {...}}, "param_groups": [...]}`` in PyTorch's layout.

        The state values are the live tensors (like PyTorch); save or copy them before
        stepping again if a snapshot is needed.
        """
        index: dict = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            ids = []
            for p in group["params"]:
                if id(p) not in index:
                    index[id(p)] = len(index)
                ids.append(index[id(p)])
            packed["params"] = ids
            groups.append(packed)
        state = {index[id(p)]: dict(s) for p, s in self.state.items() if id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a :meth:`state_dict` (this optimizer's groups must have the same sizes)."""
        if not isinstance(state_dict, dict) or "param_groups" not in state_dict:
            raise ValueError(
                "optimizer state_dict must be a dict with 'state' and 'param_groups' entries"
            )
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"loaded state dict has a different number of parameter groups "
                f"({len(saved_groups)}) than the optimizer ({len(self.param_groups)})"
            )
        for i, (g, sg) in enumerate(zip(self.param_groups, saved_groups)):
            if len(g["params"]) != len(sg["params"]):
                raise ValueError(
                    f"loaded state dict contains a parameter group that doesn't match the size "
                    f"of optimizer's group: group {i} has {len(sg['params'])} parameters in the "
                    f"state dict and {len(g['params'])} in the optimizer"
                )
        id_map = {}
        for g, sg in zip(self.param_groups, saved_groups):
            for p, idx in zip(g["params"], sg["params"]):
                id_map[int(idx)] = p
        state: dict = {}
        for key, value in state_dict.get("state", {}).items():
            # keys are ints, or strings after a JSON round trip
            p = id_map.get(int(key))
            if p is None:
                continue
            state[p] = {k: _cast_state(k, v, p) for k, v in dict(value).items()}
        self.state = state
        new_groups = []
        for g, sg in zip(self.param_groups, saved_groups):
            ng = {k: _copy_value(k, v) for k, v in sg.items() if k != "params"}
            ng["params"] = g["params"]
            new_groups.append(ng)
        self.param_groups = new_groups

    # ------------------------------------------------------------------------ misc
    def __getstate__(self):
        return {"defaults": self.defaults, "state": self.state, "param_groups": self.param_groups}

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(group):
                if key != "params":
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


def _copy_value(key, v):
    # a JSON round trip (runba.save) turns the betas tuple into a list
    if key == "betas" and isinstance(v, list):
        return tuple(v)
    return v


def _cast_state(key, value, param):
    if isinstance(value, runba.Tensor):
        if key == "step":
            return int(value.item()) if value.numel() == 1 else value.clone()
        return value.detach().to(param.dtype).clone()
    return value
