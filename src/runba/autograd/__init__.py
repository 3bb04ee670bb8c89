"""Autograd: the tape, the backward engine, grad mode, custom Functions and gradcheck."""

from runba.autograd.engine import backward, grad
from runba.autograd.function import Function, FunctionCtx
from runba.autograd.grad_mode import (
    enable_grad,
    inference_mode,
    is_grad_enabled,
    no_grad,
    set_grad_enabled,
)
from runba.autograd.gradcheck import GradcheckError, gradcheck

__all__ = [
    "backward",
    "grad",
    "Function",
    "FunctionCtx",
    "gradcheck",
    "GradcheckError",
    "no_grad",
    "enable_grad",
    "set_grad_enabled",
    "is_grad_enabled",
    "inference_mode",
]
