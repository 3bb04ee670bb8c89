"""runba.optim: optimizers (SGD, Adam, AdamW) and ``lr_scheduler``, like ``torch.optim``."""

from runba.optim import lr_scheduler
from runba.optim.adam import Adam, AdamW
from runba.optim.optimizer import Optimizer
from runba.optim.sgd import SGD

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "lr_scheduler"]
