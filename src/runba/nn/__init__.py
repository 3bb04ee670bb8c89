"""runba.nn: modules, layers, losses, init and functional, PyTorch's ``torch.nn``.

>>> import runba
>>> from runba import nn
>>> import runba.nn.functional as F
>>> model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
>>> loss = F.cross_entropy(model(runba.randn(8, 4)), runba.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
>>> loss.backward()
>>> model[0].weight.grad.shape
runba.Size([16, 4])
"""

from runba.nn import functional, init, utils
from runba.nn.module import Module, ModuleError
from runba.nn.modules import *  # noqa: F403 - the layer classes, listed in modules.__all__
from runba.nn.modules import __all__ as _layers
from runba.nn.parameter import Buffer, Parameter

__all__ = ["Module", "ModuleError", "Parameter", "Buffer", "functional", "init", "utils", *_layers]
