"""Layers: outputs and gradients against hand-written numpy references, gradcheck in float64,
train/eval behaviour of BatchNorm and Dropout, conv/pool modules (when runba.ops.conv exists)."""

import math
import warnings

import numpy as np
import pytest

import runba
import runba.nn as nn
from runba.autograd import gradcheck

F64 = runba.float64


def _t(a, grad=False):
    return runba.tensor(np.asarray(a), dtype=F64, requires_grad=grad)


def _np(t):
    return t.detach().numpy()


def _grad_of(fn, x_np, upstream=None):
    """(output, d(sum(out * upstream))/dx) through runba autograd, float64."""
    x = _t(x_np, grad=True)
    out = fn(x)
    up = np.ones(out.shape) if upstream is None else upstream
    (out * _t(up)).sum().backward()
    return _np(out), x.grad.numpy()


def _check_module(module, *shapes, seed=0, **kw):
    """gradcheck a float64 copy of ``module`` w.r.t. its inputs and its parameters."""
    module.double()
    rng = np.random.default_rng(seed)
    xs = [_t(rng.standard_normal(s), grad=True) for s in shapes]
    params = [p for p in module.parameters() if p.requires_grad]
    n = len(xs)
    assert gradcheck(lambda *a: module(*a[:n]), (*xs, *params), **kw)


# ---------------------------------------------------------------------------- Linear
def test_linear_forward_backward_vs_numpy():
    rng = np.random.default_rng(0)
    lin = nn.Linear(5, 3).double()
    w, b = _np(lin.weight), _np(lin.bias)
    x = rng.standard_normal((4, 5))
    up = rng.standard_normal((4, 3))
    out, gx = _grad_of(lin, x, up)
    np.testing.assert_allclose(out, x @ w.T + b, rtol=1e-12)
    np.testing.assert_allclose(gx, up @ w, rtol=1e-12)
    np.testing.assert_allclose(lin.weight.grad.numpy(), up.T @ x, rtol=1e-12)
    np.testing.assert_allclose(lin.bias.grad.numpy(), up.sum(0), rtol=1e-12)
    # batched (leading dims) and 1-D inputs
    x3 = rng.standard_normal((2, 3, 5))
    np.testing.assert_allclose(_np(lin(_t(x3))), x3 @ w.T + b, rtol=1e-12)
    np.testing.assert_allclose(_np(lin(_t(x[0]))), x[0] @ w.T + b, rtol=1e-12)
    assert nn.Linear(5, 3, bias=False).bias is None


def test_linear_gradcheck():
    _check_module(nn.Linear(4, 3), (2, 4))
    _check_module(nn.Linear(4, 3, bias=False), (2, 2, 4))


# ---------------------------------------------------------------------------- activations
_erf = np.vectorize(math.erf)


def _ref_gelu(x):
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


def _ref_gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def _sig(x):
    return 1 / (1 + np.exp(-x))


def _softmax(x, d):
    e = np.exp(x - x.max(d, keepdims=True))
    return e / e.sum(d, keepdims=True)


ACTIVATIONS = [
    (nn.ReLU(), lambda x: np.maximum(x, 0), lambda x: (x > 0) * 1.0),
    (nn.LeakyReLU(0.2), lambda x: np.where(x > 0, x, 0.2 * x), lambda x: np.where(x > 0, 1, 0.2)),
    (nn.Sigmoid(), _sig, lambda x: _sig(x) * (1 - _sig(x))),
    (nn.Tanh(), np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    (nn.SiLU(), lambda x: x * _sig(x), lambda x: _sig(x) * (1 + x * (1 - _sig(x)))),
    (
        nn.GELU(),
        _ref_gelu,
        lambda x: (
            0.5 * (1 + _erf(x / math.sqrt(2))) + x * np.exp(-(x**2) / 2) / math.sqrt(2 * math.pi)
        ),
    ),
    (nn.GELU("tanh"), _ref_gelu_tanh, None),
    (nn.Softplus(), lambda x: np.log1p(np.exp(x)), _sig),
    (
        nn.Softplus(beta=2.0, threshold=1.0),
        lambda x: np.where(2 * x > 1, x, np.log1p(np.exp(2 * x)) / 2),
        None,
    ),
    (nn.ELU(0.5), lambda x: np.where(x > 0, x, 0.5 * np.expm1(x)), None),
    (nn.Hardtanh(-0.5, 0.5), lambda x: np.clip(x, -0.5, 0.5), None),
    (nn.ReLU6(), lambda x: np.clip(x, 0, 6), None),
    (nn.LogSigmoid(), lambda x: np.log(_sig(x)), lambda x: 1 - _sig(x)),
]


@pytest.mark.parametrize(
    "mod,ref,dref", ACTIVATIONS, ids=lambda v: repr(v) if isinstance(v, nn.Module) else ""
)
def test_activation_vs_numpy(mod, ref, dref):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 7)) * 3
    x[0, :3] = [7.0, -7.0, 0.3]
    out, g = _grad_of(mod, x)
    np.testing.assert_allclose(out, ref(x), rtol=1e-10, atol=1e-12)
    if dref is not None:
        np.testing.assert_allclose(g, dref(x), rtol=1e-9, atol=1e-12)
    # float32 path agrees with the float64 reference
    out32 = mod(runba.tensor(x.astype(np.float32)))
    assert out32.dtype is runba.float32
    np.testing.assert_allclose(_np(out32), ref(x), rtol=2e-5, atol=2e-6)
    _check_module(mod, (2, 3))  # standard-normal draws sit far (>> eps) from any kink


def test_softmax_modules_vs_numpy_and_gradcheck():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 4)) * 5
    for d in (0, 1, 2, -1):
        np.testing.assert_allclose(_np(nn.Softmax(d)(_t(x))), _softmax(x, d), rtol=1e-12)
        np.testing.assert_allclose(
            _np(nn.LogSoftmax(d)(_t(x))), np.log(_softmax(x, d)), rtol=1e-10, atol=1e-12
        )
    _check_module(nn.Softmax(dim=1), (2, 3))
    _check_module(nn.LogSoftmax(dim=-1), (2, 3))
    big = np.array([[1000.0, 0.0, -1000.0]])
    assert np.isfinite(_np(nn.LogSoftmax(1)(_t(big)))).all()


@pytest.mark.parametrize("ndim,dim", [(1, 0), (2, 1), (3, 0), (4, 1), (0, 0)])
def test_softmax_implicit_dim_warns_and_follows_pytorch(ndim, dim):
    x = _t(np.random.default_rng(3).standard_normal((2, 3, 2, 2)[:ndim]))
    for cls, ref in ((nn.Softmax, _softmax), (nn.LogSoftmax, lambda a, d: np.log(_softmax(a, d)))):
        with pytest.warns(UserWarning, match="Implicit dimension choice") as rec:
            out = cls()(x)
        assert rec[0].filename == __file__  # points at the caller, not at runba
        np.testing.assert_allclose(_np(out), ref(x.numpy(), dim), rtol=1e-10, atol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nn.Softmax(dim=0)(x)


def test_inplace_activations():
    x = runba.tensor([-1.0, 2.0])
    y = nn.ReLU(inplace=True)(x)
    assert y is x and x.numpy().tolist() == [0.0, 2.0]
    x = runba.tensor([-1.0, 2.0])
    nn.LeakyReLU(0.5, inplace=True)(x)
    assert x.numpy().tolist() == [-0.5, 2.0]


# ---------------------------------------------------------------------------- BatchNorm
def _bn_reference(xs, momentum, eps, axes, w=None, b=None):
    """Outputs, running_mean, running_var over several training steps (PyTorch semantics)."""
    c = xs[0].shape[1]
    rm, rv = np.zeros(c), np.ones(c)
    outs = []
    for step, x in enumerate(xs, 1):
        shape = [1, c] + [1] * (x.ndim - 2)
        n = x.size // c
        mean = x.mean(axes)
        var = x.var(axes)
        y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
        if w is not None:
            y = y * w.reshape(shape) + b.reshape(shape)
        outs.append(y)
        f = 1.0 / step if momentum is None else momentum
        rm = (1 - f) * rm + f * mean
        rv = (1 - f) * rv + f * var * n / (n - 1)
    return outs, rm, rv


@pytest.mark.parametrize(
    "cls,shape,momentum",
    [
        (nn.BatchNorm1d, (8, 3), 0.1),
        (nn.BatchNorm1d, (4, 3, 5), 0.3),
        (nn.BatchNorm2d, (4, 3, 2, 5), 0.1),
        (nn.BatchNorm2d, (2, 3, 3, 3), None),
    ],
)
def test_batchnorm_training_and_running_stats_vs_numpy(cls, shape, momentum):
    rng = np.random.default_rng(4)
    bn = cls(3, momentum=momentum).double()
    with runba.no_grad():
        bn.weight.copy_(_t(rng.standard_normal(3)))
        bn.bias.copy_(_t(rng.standard_normal(3)))
    axes = (0, *range(2, len(shape)))
    xs = [rng.standard_normal(shape) * (i + 1) + i for i in range(4)]
    ref_out, rm, rv = _bn_reference(xs, momentum, 1e-5, axes, _np(bn.weight), _np(bn.bias))
    for x, ref in zip(xs, ref_out):
        np.testing.assert_allclose(_np(bn(_t(x))), ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(bn.running_mean.numpy(), rm, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var.numpy(), rv, rtol=1e-12)
    assert bn.num_batches_tracked.item() == 4 and bn.num_batches_tracked.dtype is runba.int64
    assert not bn.running_mean.requires_grad and bn.running_mean.grad_fn is None
    # eval: running statistics, nothing updated
    bn.eval()
    x = rng.standard_normal(shape)
    bshape = [1, 3] + [1] * (len(shape) - 2)
    ref = (x - rm.reshape(bshape)) / np.sqrt(rv.reshape(bshape) + 1e-5)
    ref = ref * _np(bn.weight).reshape(bshape) + _np(bn.bias).reshape(bshape)
    np.testing.assert_allclose(_np(bn(_t(x))), ref, rtol=1e-10, atol=1e-12)
    assert bn.num_batches_tracked.item() == 4
    np.testing.assert_allclose(bn.running_mean.numpy(), rm, rtol=1e-12)


def test_batchnorm_gradients():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 3))
    up = rng.standard_normal((6, 3))
    bn = nn.BatchNorm1d(3, affine=False).double()
    out, g = _grad_of(bn, x, up)
    # analytic batch-norm input gradient (biased variance, eps)
    n = x.shape[0]
    mu, var = x.mean(0), x.var(0)
    xhat = (x - mu) / np.sqrt(var + 1e-5)
    ref = (up - up.mean(0) - xhat * (up * xhat).mean(0)) / np.sqrt(var + 1e-5)
    np.testing.assert_allclose(g, ref, rtol=1e-8, atol=1e-10)
    assert n == 6
    _check_module(nn.BatchNorm1d(3), (4, 3))
    _check_module(nn.BatchNorm2d(2), (3, 2, 2, 2))
    _check_module(nn.BatchNorm2d(2).eval(), (2, 2, 2, 2))


def test_batchnorm_options_and_errors():
    x = runba.randn(5, 4)
    bn = nn.BatchNorm1d(4, affine=False, track_running_stats=False)
    assert bn.weight is None and bn.running_mean is None and list(bn.state_dict()) == []
    bn.eval()  # no running stats: batch statistics even in eval
    out = _np(bn(x))
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-6)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        nn.BatchNorm1d(4)(runba.randn(1, 4))
    nn.BatchNorm1d(4).eval()(runba.randn(1, 4))  # fine in eval
    with pytest.raises(ValueError, match="expected 4D input"):
        nn.BatchNorm2d(4)(runba.randn(2, 4, 3))
    bn = nn.BatchNorm1d(4)
    bn(x)
    bn.reset_running_stats()
    assert bn.num_batches_tracked.item() == 0 and (bn.running_var.numpy() == 1).all()


# ---------------------------------------------------------------------------- LayerNorm
@pytest.mark.parametrize("ns", [4, (3, 4)])
def test_layernorm_vs_numpy_and_gradcheck(ns):
    rng = np.random.default_rng(6)
    ln = nn.LayerNorm(ns, eps=1e-3).double()
    k = 1 if isinstance(ns, int) else 2
    with runba.no_grad():
        ln.weight.copy_(_t(rng.standard_normal(ln.weight.shape)))
        ln.bias.copy_(_t(rng.standard_normal(ln.bias.shape)))
    x = rng.standard_normal((2, 3, 4)) * 3 + 1
    axes = tuple(range(-k, 0))
    ref = (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + 1e-3)
    ref = ref * _np(ln.weight) + _np(ln.bias)
    np.testing.assert_allclose(_np(ln(_t(x))), ref, rtol=1e-10, atol=1e-12)
    _check_module(ln, (2, 3, 4))
    _check_module(nn.LayerNorm(ns, elementwise_affine=False), (2, 3, 4))
    assert nn.LayerNorm(4, bias=False).bias is None


def test_layernorm_shape_error():
    with pytest.raises(RuntimeError, match=r"at '0': expected input with shape \[\*, 3, 4\], got"):
        nn.Sequential(nn.LayerNorm((3, 4)))(runba.randn(2, 4, 3))


# ---------------------------------------------------------------------------- Dropout
def test_dropout_train_scales_and_masks():
    runba.manual_seed(0)
    drop = nn.Dropout(0.25)
    x = runba.ones(200, 100, requires_grad=True)
    y = drop(x)
    a = _np(y)
    kept = a != 0
    np.testing.assert_allclose(a[kept], 1 / 0.75, rtol=1e-6)
    assert abs(1 - kept.mean() - 0.25) < 0.01
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), kept / 0.75, rtol=1e-6)
    # reproducible from the Philox stream
    runba.manual_seed(0)
    np.testing.assert_array_equal(_np(drop(x)), a)
    # eval: identity
    drop.eval()
    assert drop(x) is x
    assert nn.Dropout(0.0)(x) is x
    assert not _np(nn.Dropout(1.0)(x)).any()
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)


def test_dropout_inplace():
    runba.manual_seed(1)
    x = runba.ones(10, 10)
    out = nn.Dropout(0.5, inplace=True)(x)
    assert out is x and set(np.unique(x.numpy())) <= {0.0, 2.0}


# ---------------------------------------------------------------------------- shape modules
def test_flatten_unflatten_identity():
    x = runba.randn(2, 3, 4, 5)
    assert nn.Flatten()(x).shape == (2, 60)
    assert nn.Flatten(0, 2)(x).shape == (24, 5)
    assert nn.Unflatten(1, (3, 20))(nn.Flatten()(x)).shape == (2, 3, 20)
    np.testing.assert_array_equal(_np(nn.Unflatten(1, (3, 4, 5))(nn.Flatten()(x))), x.numpy())
    assert nn.Identity(3, foo=1)(x) is x


# ---------------------------------------------------------------------------- conv / pooling
def _has_conv():
    try:
        import runba.ops.conv  # noqa: F401
    except ImportError:
        return False
    return True


needs_conv = pytest.mark.skipif(not _has_conv(), reason="runba.ops.conv not available yet")


def _ref_conv2d(x, w, b, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, o, oh, ow))
    og = o // groups
    for oc in range(o):
        g = oc // og
        for i in range(oh):
            for j in range(ow):
                patch = xp[
                    :,
                    g * cg : (g + 1) * cg,
                    i * stride[0] : i * stride[0] + dilation[0] * (kh - 1) + 1 : dilation[0],
                    j * stride[1] : j * stride[1] + dilation[1] * (kw - 1) + 1 : dilation[1],
                ]
                out[:, oc, i, j] = (patch * w[oc]).sum((1, 2, 3))
        if b is not None:
            out[:, oc] += b[oc]
    return out


@needs_conv
@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(stride=2, padding=1),
        dict(padding=2, dilation=2),
        dict(groups=2, bias=False),
        dict(padding="same"),
        dict(padding="valid"),
    ],
)
def test_conv2d_module_vs_numpy(kw):
    rng = np.random.default_rng(7)
    conv = nn.Conv2d(4, 6, 3, **kw).double()
    x = rng.standard_normal((2, 4, 7, 6))
    pad = kw.get("padding", 0)
    pad = {"same": 1, "valid": 0}.get(pad, pad) if isinstance(pad, str) else pad
    ref = _ref_conv2d(
        x,
        _np(conv.weight),
        None if conv.bias is None else _np(conv.bias),
        conv.stride,
        (pad, pad),
        conv.dilation,
        conv.groups,
    )
    np.testing.assert_allclose(_np(conv(_t(x))), ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(_np(conv(_t(x[0]))), ref[0], rtol=1e-10, atol=1e-10)  # unbatched


@needs_conv
def test_conv2d_and_pool_gradcheck():
    _check_module(nn.Conv2d(2, 2, 2, stride=2, padding=1, groups=2), (1, 2, 3, 3))
    _check_module(nn.AvgPool2d(2), (1, 2, 4, 4))
    _check_module(nn.AdaptiveAvgPool2d((2, 1)), (1, 1, 4, 3))
    x = _t(np.random.default_rng(8).permutation(32).reshape(1, 2, 4, 4) / 7.0, grad=True)
    assert gradcheck(nn.MaxPool2d(2), (x,))


@needs_conv
def test_pool_modules_vs_numpy():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 3, 6, 4))
    win = x.reshape(2, 3, 3, 2, 2, 2)
    np.testing.assert_allclose(_np(nn.MaxPool2d(2)(_t(x))), win.max((3, 5)), rtol=1e-12)
    np.testing.assert_allclose(_np(nn.AvgPool2d(2)(_t(x))), win.mean((3, 5)), rtol=1e-12)
    np.testing.assert_allclose(
        _np(nn.AdaptiveAvgPool2d(1)(_t(x))), x.mean((2, 3), keepdims=True), rtol=1e-12
    )
    with pytest.raises(RuntimeError, match=r"MaxPool2d\(kernel_size=2.*\) at '1': expected 3D"):
        nn.Sequential(nn.Identity(), nn.MaxPool2d(2))(runba.randn(2, 3))
