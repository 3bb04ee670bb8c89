"""runba: define-by-run deep learning for Python with a Numba fusion JIT inside.

>>> import runba
>>> x = runba.randn(4, 3, requires_grad=True)
>>> w = runba.tensor([[1.0], [2.0], [3.0]], requires_grad=True)
>>> loss = ((x @ w).relu() ** 2).mean()
>>> loss.backward()
>>> x.grad.shape
runba.Size([4, 3])
"""

__version__ = "0.1.0"

from runba import (
    _malloc,  # noqa: F401 - tunes glibc malloc once, before any tensor
    autograd,
    cuda,
    utils,
)
from runba.autograd import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled
from runba.creation import (
    arange,
    as_tensor,
    empty,
    empty_like,
    eye,
    from_numpy,
    full,
    full_like,
    linspace,
    normal,
    ones,
    ones_like,
    rand,
    rand_like,
    randint,
    randn,
    randn_like,
    randperm,
    tensor,
    zeros,
    zeros_like,
)
from runba.dtypes import (
    bool_ as bool,  # noqa: A004 - torch name
)
from runba.dtypes import (
    double,
    dtype,
    float,  # noqa: A004
    float16,
    float32,
    float64,
    get_default_dtype,
    half,
    int,  # noqa: A004
    int32,
    int64,
    long,
    promote_types,
    set_default_dtype,
    uint8,
)
from runba.kernels.threads import get_num_threads, set_num_threads
from runba.ops import bind_tensor_methods as _bind
from runba.ops.elementwise import (
    abs,  # noqa: A004
    absolute,
    add,
    ceil,
    clamp,
    clip,
    clone,
    cos,
    div,
    divide,
    eq,
    erf,
    exp,
    exp2,
    expm1,
    floor,
    floor_divide,
    ge,
    gt,
    isinf,
    isnan,
    le,
    lerp,
    log,
    log1p,
    log2,
    log10,
    logical_and,
    logical_not,
    logical_or,
    logical_xor,
    lt,
    maximum,
    minimum,
    mul,
    multiply,
    nan_to_num,
    ne,
    neg,
    negative,
    pow,  # noqa: A004
    reciprocal,
    relu,
    remainder,
    round,  # noqa: A004
    rsqrt,
    sigmoid,
    sign,
    sin,
    sqrt,
    square,
    sub,
    subtract,
    tan,
    tanh,
    true_divide,
    trunc,
    where,
)
from runba.ops.index import (
    cat,
    concat,
    concatenate,
    gather,
    hstack,
    index_select,
    masked_fill,
    masked_select,
    nonzero,
    roll,
    scatter_add,
    stack,
    tril,
    triu,
    vstack,
)
from runba.ops.linalg import bmm, dot, einsum, inner, matmul, mm, mv, outer
from runba.ops.movement import (
    broadcast_to,
    chunk,
    flatten,
    flip,
    movedim,
    narrow,
    permute,
    reshape,
    split,
    squeeze,
    swapaxes,
    t,
    tile,
    transpose,
    unbind,
    unflatten,
    unsqueeze,
)
from runba.ops.reduce import (
    all,  # noqa: A004
    amax,
    amin,
    any,  # noqa: A004
    argmax,
    argmin,
    cumsum,
    log_softmax,
    logsumexp,
    max,  # noqa: A004
    mean,
    min,  # noqa: A004
    norm,
    prod,
    softmax,
    std,
    std_mean,
    sum,  # noqa: A004
    var,
    var_mean,
)
from runba.random import Generator, get_rng_state, initial_seed, manual_seed, seed, set_rng_state
from runba.serialization import CheckpointError, load, save
from runba.tensor import Size, Tensor, device

_bind(Tensor)

from runba import (  # noqa: E402 - built on the bound Tensor methods
    jit,  # noqa: E402
    nn,
    optim,
)
from runba.autograd.gradcheck import gradcheck  # noqa: E402
from runba.jit import fuse, realize  # noqa: E402


def is_tensor(obj) -> bool:
    return isinstance(obj, Tensor)


def numel(input) -> int:
    return input.numel()


__all__ = [
    "fuse",
    "jit",
    "realize",
    "Tensor", "Size", "device", "dtype", "autograd", "cuda", "utils", "Generator",
    "save", "load", "CheckpointError", "nn", "optim", "set_num_threads", "get_num_threads",
    "float16", "float32", "float64", "half", "float", "double", "int32", "int64", "int",
    "long", "uint8", "bool", "get_default_dtype", "set_default_dtype", "promote_types",
    "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled", "inference_mode",
    "manual_seed", "seed", "initial_seed", "get_rng_state", "set_rng_state", "gradcheck",
    "tensor", "as_tensor", "from_numpy", "zeros", "ones", "full", "empty", "zeros_like",
    "ones_like", "full_like", "empty_like", "arange", "linspace", "eye", "rand", "randn",
    "randint", "randperm", "rand_like", "randn_like", "normal", "is_tensor", "numel",
    "abs", "absolute", "add", "ceil", "clamp", "clip", "clone", "cos", "div", "divide", "eq",
    "erf", "exp", "exp2", "expm1", "floor", "floor_divide", "ge", "gt", "isinf", "isnan", "le",
    "lerp", "log", "log1p", "log2", "log10", "logical_and", "logical_not", "logical_or",
    "logical_xor", "lt", "maximum", "minimum", "mul", "multiply", "nan_to_num", "ne", "neg",
    "negative", "pow", "reciprocal", "relu", "remainder", "round", "rsqrt", "sigmoid", "sign",
    "sin", "sqrt", "square", "sub", "subtract", "tan", "tanh", "true_divide", "trunc", "where",
    "cat", "concat", "concatenate", "gather", "hstack", "index_select", "masked_fill",
    "masked_select", "nonzero", "roll", "scatter_add", "stack", "tril", "triu", "vstack",
    "bmm", "dot", "einsum", "inner", "matmul", "mm", "mv", "outer",
    "broadcast_to", "chunk", "flatten", "flip", "movedim", "narrow", "permute", "reshape",
    "split", "squeeze", "swapaxes", "t", "tile", "transpose", "unbind", "unflatten", "unsqueeze",
    "all", "amax", "amin", "any", "argmax", "argmin", "cumsum", "log_softmax", "logsumexp",
    "max", "mean", "min", "norm", "prod", "softmax", "std", "std_mean", "sum", "var", "var_mean",
]  # fmt: skip
