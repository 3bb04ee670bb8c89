"""The layer classes of ``runba.nn`` (import them from ``runba.nn``)."""

from runba.nn.modules.activation import (
    ELU,
    GELU,
    Hardtanh,
    LeakyReLU,
    LogSigmoid,
    LogSoftmax,
    ReLU,
    ReLU6,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Tanh,
)
from runba.nn.modules.container import ModuleDict, ModuleList, Sequential
from runba.nn.modules.conv import Conv2d
from runba.nn.modules.dropout import Dropout
from runba.nn.modules.flatten import Flatten, Unflatten
from runba.nn.modules.linear import Identity, Linear
from runba.nn.modules.loss import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    L1Loss,
    MSELoss,
    NLLLoss,
)
from runba.nn.modules.normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from runba.nn.modules.pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d

__all__ = [
    "Sequential",
    "ModuleList",
    "ModuleDict",
    "Linear",
    "Identity",
    "Conv2d",
    "MaxPool2d",
    "AvgPool2d",
    "AdaptiveAvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "LayerNorm",
    "Dropout",
    "Flatten",
    "Unflatten",
    "ReLU",
    "ReLU6",
    "LeakyReLU",
    "ELU",
    "Hardtanh",
    "GELU",
    "SiLU",
    "Sigmoid",
    "Tanh",
    "Softplus",
    "LogSigmoid",
    "Softmax",
    "LogSoftmax",
    "MSELoss",
    "L1Loss",
    "NLLLoss",
    "CrossEntropyLoss",
    "BCELoss",
    "BCEWithLogitsLoss",
]
