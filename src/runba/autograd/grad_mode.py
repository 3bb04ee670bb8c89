"""Grad mode: ``no_grad``, ``enable_grad``, ``set_grad_enabled`` (per thread).

Each works as a context manager and as a decorator, like PyTorch's (``@no_grad`` and
``@enable_grad`` also without parentheses).

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
    """Sets ``STATE.grad_enabled`` to ``self._mode`` on enter and restores it on exit.

    As a decorator, each call of the wrapped function enters a fresh context (so recursion
    and concurrent calls from several threads each save and restore their own mode).
    """

    _mode: bool = True

    def __enter__(self):
        self._prev = STATE.grad_enabled
        STATE.grad_enabled = self._mode

    def __exit__(self, *exc):
        STATE.grad_enabled = self._prev
        return False

    def clone(self) -> _GradModeContext:
        ctx = _GradModeContext()
        ctx._mode = self._mode
        return ctx

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self.clone():
                return fn(*args, **kwargs)

        return wrapper


class _NoParamGradModeContext(_GradModeContext):
    """Also usable as a bare decorator: ``@no_grad`` as well as ``@no_grad()``."""

    def __new__(cls, orig_func=None):
        if orig_func is None:
            return super().__new__(cls)
        return cls()(orig_func)


class no_grad(_NoParamGradModeContext):  # noqa: N801
    """Disable gradient recording in this thread."""

    _mode = False


class enable_grad(_NoParamGradModeContext):  # noqa: N801
    """Enable gradient recording in this thread (inside a ``no_grad`` block)."""

    _mode = True


class inference_mode(_GradModeContext):  # noqa: N801
    """Same as ``no_grad`` in runba (no separate inference tensors)."""

    def __init__(self, mode: bool = True):
        self._mode = not mode


class set_grad_enabled(_GradModeContext):  # noqa: N801
    """Set grad mode: takes effect immediately (like ``torch.set_grad_enabled``), and restores
    the previous mode on context exit. As a decorator it only applies inside the function."""

    def __init__(self, mode: bool):
        self._prev = STATE.grad_enabled
        self._mode = bool(mode)
        STATE.grad_enabled = self._mode

    def __call__(self, fn):
        # used as a decorator: undo the immediate effect of __init__
        STATE.grad_enabled = self._prev
        return super().__call__(fn)

    def __enter__(self):
        # __init__ already switched (and saved the mode before it); re-entering a reused
        # object switches again
        STATE.grad_enabled = self._mode

    def __exit__(self, *exc):
        STATE.grad_enabled = self._prev
        return False
