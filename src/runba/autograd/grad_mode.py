"""Grad mode: ``no_grad``, ``enable_grad``, ``set_grad_enabled`` (per thread).

Each works as a context manager and as a decorator, like PyTorch's.

>>> import runba
>>> x = runba.ones(2, requires_grad=True)
>>> with runba.no_grad():
...     y = x * 2
>>> y.requires_grad
False
"""

from __future__ import annotations

import functools

from runba._state import STATE

__all__ = ["no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled", "inference_mode"]


def is_grad_enabled() -> bool:
    return STATE.grad_enabled


class _GradModeContext:
    _mode: bool = True

    def __enter__(self):
        self._prev = STATE.grad_enabled
        STATE.grad_enabled = self._mode

    def __exit__(self, *exc):
        STATE.grad_enabled = self._prev
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self.__class__.__new__(self.__class__)._with_mode(self._mode):
                return fn(*args, **kwargs)

        return wrapper

    def _with_mode(self, mode):
        self._mode = mode
        return self


class no_grad(_GradModeContext):  # noqa: N801
    """Disable gradient recording in this thread."""

    _mode = False


class enable_grad(_GradModeContext):  # noqa: N801
    """Enable gradient recording in this thread (inside a ``no_grad`` block)."""

    _mode = True


class inference_mode(_GradModeContext):  # noqa: N801
    """Same as ``no_grad`` in runba (no separate inference tensors)."""

    def __init__(self, mode: bool = True):
        self._mode = not mode


class set_grad_enabled(_GradModeContext):  # noqa: N801
    """Set grad mode: takes effect immediately, and restores on context exit."""

    def __init__(self, mode: bool):
        self._prev = STATE.grad_enabled
        self._mode = bool(mode)
        STATE.grad_enabled = self._mode

    def __enter__(self):
        pass

    def __exit__(self, *exc):
        STATE.grad_enabled = self._prev
        return False
