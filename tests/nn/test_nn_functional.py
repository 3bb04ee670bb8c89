"""nn.functional: pad, linear, one_hot, dropout, batch_norm/layer_norm as functions,
softmax's implicit dim, and the conv re-exports."""

import numpy as np
import pytest

import runba
import runba.nn.functional as F
from runba.autograd import gradcheck

F64 = runba.float64


def _t(a, grad=False):
    return runba.tensor(np.asarray(a), dtype=F64, requires_grad=grad)


def _np(t):
    return t.detach().numpy()


@pytest.mark.parametrize(
    "pad",
    [(1, 2), (0, 0, 2, 1), (1, 1, 1, 1, 1, 0), (-1, 2), (2, -2, -1, 0)],
)
@pytest.mark.parametrize("value", [0.0, 1.5])
def test_pad_constant_vs_numpy(pad, value):
    x = np.arange(24.0).reshape(2, 3, 4)
    out = F.pad(_t(x), pad, value=value)
    width = [(0, 0)] * 3
    for i in range(len(pad) // 2):
        width[2 - i] = (pad[2 * i], pad[2 * i + 1])
    crop = tuple(slice(max(-lo, 0), x.shape[d] - max(-hi, 0)) for d, (lo, hi) in enumerate(width))
    ref = np.pad(x[crop], [(max(lo, 0), max(hi, 0)) for lo, hi in width], constant_values=value)
    np.testing.assert_array_equal(_np(out), ref)
    assert gradcheck(lambda a: F.pad(a, pad, value=value), (_t(x[:, :2, :3] + 0.5, True),))


@pytest.mark.parametrize(
    "mode,np_mode", [("reflect", "reflect"), ("replicate", "edge"), ("circular", "wrap")]
)
def test_pad_other_modes_vs_numpy(mode, np_mode):
    x = np.arange(20.0).reshape(1, 4, 5)
    out = F.pad(_t(x), (2, 1, 3, 0), mode=mode)
    ref = np.pad(x, [(0, 0), (3, 0), (2, 1)], mode=np_mode)
    np.testing.assert_array_equal(_np(out), ref)
    assert gradcheck(lambda a: F.pad(a, (2, 1), mode=mode), (_t(x[:, :2, :3], True),))


def test_pad_errors():
    with pytest.raises(ValueError, match="divisible by 2"):
        F.pad(runba.zeros(2, 2), (1,))
    with pytest.raises(ValueError, match="less than or equal to two times"):
        F.pad(runba.zeros(2), (1, 1, 1, 1))
    with pytest.raises(RuntimeError, match="less than the corresponding input dimension"):
        F.pad(runba.zeros(1, 2), (2, 0), mode="reflect")


def test_linear_and_one_hot():
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((3, 4)), rng.standard_normal((2, 4)), rng.standard_normal(2)
    np.testing.assert_allclose(_np(F.linear(_t(x), _t(w), _t(b))), x @ w.T + b, rtol=1e-12)
    np.testing.assert_allclose(_np(F.linear(_t(x), _t(w))), x @ w.T, rtol=1e-12)
    assert gradcheck(F.linear, (_t(x, True), _t(w, True), _t(b, True)))
    oh = F.one_hot(runba.tensor([0, 2, 1]), 4)
    assert oh.dtype is runba.int64
    np.testing.assert_array_equal(oh.numpy(), np.eye(4, dtype=np.int64)[[0, 2, 1]])


def test_functional_dropout():
    x = runba.ones(1000)
    assert F.dropout(x, 0.3, training=False) is x
    runba.manual_seed(3)
    a = _np(F.dropout(x, 0.3))
    assert set(np.unique(a)) <= {0.0, np.float32(1 / 0.7)}
    runba.manual_seed(3)
    np.testing.assert_array_equal(_np(F.dropout(x, 0.3)), a)
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.dropout(x, -0.1)


def test_functional_batch_norm_without_running_stats():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 3, 2))
    out = F.batch_norm(_t(x), None, None, training=True, eps=0.0)
    ref = (x - x.mean((0, 2), keepdims=True)) / x.std((0, 2), keepdims=True)
    np.testing.assert_allclose(_np(out), ref, rtol=1e-10)
    rm, rv = _t(np.zeros(3)), _t(np.ones(3))
    F.batch_norm(_t(x), rm, rv, training=True, momentum=0.5)
    np.testing.assert_allclose(rm.numpy(), 0.5 * x.mean((0, 2)), rtol=1e-12)
    np.testing.assert_allclose(rv.numpy(), 0.5 + 0.5 * x.var((0, 2), ddof=1), rtol=1e-12)
    with pytest.raises(ValueError, match="running_mean and running_var are required"):
        F.batch_norm(_t(x), None, None, training=False)


def test_functional_layer_norm_error():
    with pytest.raises(RuntimeError, match=r"Given normalized_shape=\[5\], expected input with"):
        F.layer_norm(runba.zeros(2, 4), (5,))


def test_functional_activations():
    x = np.array([-2.0, -0.5, 0.5, 3.0])
    np.testing.assert_allclose(_np(F.relu(_t(x))), np.maximum(x, 0))
    np.testing.assert_allclose(_np(F.leaky_relu(_t(x), 0.1)), np.where(x > 0, x, 0.1 * x))
    np.testing.assert_allclose(_np(F.elu(_t(x))), np.where(x > 0, x, np.expm1(x)), rtol=1e-12)
    np.testing.assert_allclose(_np(F.relu6(_t(x * 3))), np.clip(x * 3, 0, 6))
    np.testing.assert_allclose(_np(F.logsigmoid(_t(x))), -np.log1p(np.exp(-x)), rtol=1e-12)
    np.testing.assert_allclose(_np(F.sigmoid(_t(x))), 1 / (1 + np.exp(-x)), rtol=1e-12)
    np.testing.assert_allclose(_np(F.tanh(_t(x))), np.tanh(x), rtol=1e-12)
    np.testing.assert_allclose(_np(F.softplus(_t(x))), np.log1p(np.exp(x)), rtol=1e-12)
    assert np.isfinite(_np(F.logsigmoid(_t([-800.0, 800.0])))).all()


def test_functional_softmax_implicit_dim_warning():
    x = runba.randn(2, 3)
    with pytest.warns(UserWarning, match="Implicit dimension choice for softmax") as rec:
        out = F.softmax(x)
    assert rec[0].filename == __file__
    np.testing.assert_allclose(_np(out).sum(1), 1.0, rtol=1e-6)
    with pytest.warns(UserWarning, match="Implicit dimension choice for log_softmax"):
        F.log_softmax(runba.randn(4))
    assert F.softmax(x, 0, dtype=F64).dtype is F64


def test_conv_reexports():
    pytest.importorskip("runba.ops.conv")
    x = runba.randn(1, 2, 4, 4)
    w = runba.randn(3, 2, 3, 3)
    assert F.conv2d(x, w, padding=1).shape == (1, 3, 4, 4)
    assert F.max_pool2d(x, 2).shape == (1, 2, 2, 2)
    assert F.avg_pool2d(x, 2, stride=1).shape == (1, 2, 3, 3)
    assert F.adaptive_avg_pool2d(x, 1).shape == (1, 2, 1, 1)
