"""Finite-difference gradient checks (float64 central differences).

``gradcheck`` compares the full Jacobian for small inputs and, for large ones (or with
``fast_mode=True``), the projection ``v^T J u`` along random directions, which needs only two
function evaluations per direction.
"""

from __future__ import annotations

import numpy as np

from runba.ops import registry

__all__ = ["gradcheck", "GradcheckError"]


class GradcheckError(RuntimeError):
    """Analytical and numerical gradients disagree."""


def _as_tuple(x):
    return x if isinstance(x, tuple) else (x,)


def _flat_outputs(func, inputs):
    outs = _as_tuple(func(*inputs))
    Tensor = registry.Tensor
    return [o for o in outs if isinstance(o, Tensor) and o.dtype.is_floating_point]


def gradcheck(
    func,
    inputs,
    *,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_exception: bool = True,
    fast_mode: bool | None = None,
    n_directions: int = 3,
    seed: int = 0,
) -> bool:
    """Check ``func``'s autograd gradients against central differences.

    Inputs that require grad should be float64. Returns True, or raises
    :class:`GradcheckError` naming the input and the worst element.

    >>> import runba
    >>> x = runba.randn(3, dtype=runba.float64, requires_grad=True)
    >>> runba.autograd.gradcheck(lambda t: (t * t).sum(), (x,))
    True
    """
    from runba.autograd.engine import grad as autograd_grad

    Tensor = registry.Tensor
    inputs = _as_tuple(inputs)
    diff_idx = [i for i, a in enumerate(inputs) if isinstance(a, Tensor) and a.requires_grad]
    if not diff_idx:
        raise ValueError("gradcheck: no input requires grad")
    for i in diff_idx:
        if inputs[i].dtype.name != "float64":
            import warnings

            warnings.warn(
                f"gradcheck: input {i} is {inputs[i].dtype.name}, not float64; expect "
                "finite-difference noise",
                stacklevel=2,
            )
    outs = _flat_outputs(func, inputs)
    n_in = sum(inputs[i].numel() for i in diff_idx)
    n_out = sum(o.numel() for o in outs)
    if fast_mode is None:
        fast_mode = n_in * n_out > 20000

    def evaluate():
        # Grad mode stays on: a function that itself calls autograd.grad (a second-order
        # check) needs it; only the values are read.
        outs = _flat_outputs(func, inputs)
        for o in outs:
            if o._lazy is not None:  # a runba.fuse'd function: run its graph
                o._realize()
        return np.concatenate(
            [o._data.astype(np.float64).reshape(-1) for o in outs] or [np.zeros(0)]
        )

    def numeric_directional(u_parts):
        # (f(x + eps u) - f(x - eps u)) / 2 eps, perturbing storage in place
        originals = [inputs[i]._data.copy() for i in diff_idx]
        try:
            for i, u in zip(diff_idx, u_parts):
                inputs[i]._data[...] = originals[diff_idx.index(i)] + eps * u
            plus = evaluate()
            for i, u in zip(diff_idx, u_parts):
                inputs[i]._data[...] = originals[diff_idx.index(i)] - eps * u
            minus = evaluate()
        finally:
            for i, orig in zip(diff_idx, originals):
                inputs[i]._data[...] = orig
        return (plus - minus) / (2 * eps)

    def analytic_vjp(v_flat):
        outs = _flat_outputs(func, inputs)
        grads_out, off = [], 0
        for o in outs:
            n = o.numel()
            grads_out.append(
                Tensor._make(
                    v_flat[off : off + n].reshape(o._data.shape).astype(o._data.dtype), o.dtype
                )
            )
            off += n
        usable = [(o, g) for o, g in zip(outs, grads_out) if o.requires_grad]
        if not usable:
            return [np.zeros(inputs[i]._data.shape) for i in diff_idx]
        res = autograd_grad(
            [o for o, _ in usable],
            [inputs[i] for i in diff_idx],
            [g for _, g in usable],
            allow_unused=True,
        )
        return [
            np.zeros(inputs[i]._data.shape) if r is None else r._data.astype(np.float64)
            for i, r in zip(diff_idx, res)
        ]

    def fail(msg):
        if raise_exception:
            raise GradcheckError(msg)
        return False

    rng = np.random.default_rng(seed)
    if fast_mode:
        for _ in range(n_directions):
            u_parts = [rng.standard_normal(inputs[i]._data.shape) for i in diff_idx]
            v = rng.standard_normal(n_out)
            num = float(v @ numeric_directional(u_parts))
            ana_parts = analytic_vjp(v)
            ana = float(sum((a * u).sum() for a, u in zip(ana_parts, u_parts)))
            if not abs(num - ana) <= atol + rtol * abs(num):
                return fail(
                    f"gradcheck (random direction): analytical v^T J u = {ana!r}, numerical = "
                    f"{num!r}"
                )
        return True

    # full Jacobians: numerical column by column, analytical row by row
    for k, i in enumerate(diff_idx):
        x = inputs[i]
        num_cols, ana_rows = [], []
        for j in range(x.numel()):
            u_parts = [np.zeros(inputs[m]._data.shape) for m in diff_idx]
            u_parts[k].reshape(-1)[j] = 1.0
            num_cols.append(numeric_directional(u_parts))
        num = np.stack(num_cols, axis=1) if num_cols else np.zeros((n_out, 0))
        for r in range(n_out):
            v = np.zeros(n_out)
            v[r] = 1.0
            ana_rows.append(analytic_vjp(v)[k].reshape(-1))
        ana = np.stack(ana_rows, axis=0) if ana_rows else np.zeros((0, x.numel()))
        if not np.allclose(ana, num, atol=atol, rtol=rtol):
            err = np.abs(ana - num)
            r, c = np.unravel_index(np.argmax(err), err.shape)
            return fail(
                f"gradcheck: Jacobian mismatch for input {i} (shape {list(x.shape)}): output "
                f"element {r}, input element {c}: analytical {ana[r, c]!r} vs numerical "
                f"{num[r, c]!r}\nanalytical:\n{ana}\nnumerical:\n{num}"
            )
    return True
