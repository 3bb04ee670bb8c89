"""Losses: values and gradients vs numpy references written from PyTorch's documented
formulas, gradcheck in float64, warnings/errors, and (when torch is installed) torch itself."""

import warnings

import numpy as np
import pytest

import runba
import runba.nn as nn
import runba.nn.functional as F
from runba.autograd import gradcheck

F64 = runba.float64
REDUCTIONS = ["mean", "sum", "none"]


def _t(a, grad=False, dtype=F64):
    return runba.tensor(np.asarray(a), dtype=dtype, requires_grad=grad)


def _np(t):
    return t.detach().numpy()


def _reduce(loss, reduction):
    return {"mean": np.mean, "sum": np.sum, "none": lambda a: a}[reduction](loss)


def _log_softmax(x, axis):
    m = x.max(axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis, keepdims=True))


def _value_and_grad(fn, x_np, *rest):
    x = _t(x_np, grad=True)
    out = fn(x, *rest)
    out.sum().backward()
    return _np(out), x.grad.numpy()


# ---------------------------------------------------------------------------- mse / l1
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_and_l1_vs_numpy(reduction):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    n = x.size if reduction == "mean" else 1
    out, g = _value_and_grad(lambda a: F.mse_loss(a, _t(y), reduction=reduction), x)
    np.testing.assert_allclose(out, _reduce((x - y) ** 2, reduction), rtol=1e-12)
    np.testing.assert_allclose(g, 2 * (x - y) / n, rtol=1e-12)
    out, g = _value_and_grad(lambda a: nn.L1Loss(reduction=reduction)(a, _t(y)), x)
    np.testing.assert_allclose(out, _reduce(np.abs(x - y), reduction), rtol=1e-12)
    np.testing.assert_allclose(g, np.sign(x - y) / n, rtol=1e-12)
    assert gradcheck(lambda a, b: nn.MSELoss(reduction=reduction)(a, b), (_t(x, True), _t(y, True)))


def test_mse_broadcast_warning():
    x, y = runba.randn(3, 1), runba.randn(3)
    with pytest.warns(UserWarning, match="target size .* different to the input size") as rec:
        out = F.mse_loss(x, y)
    assert rec[0].filename == __file__
    ref = ((x.numpy() - y.numpy()) ** 2).mean()  # broadcast to (3, 3), like torch
    np.testing.assert_allclose(out.item(), ref, rtol=1e-6)
    with pytest.warns(UserWarning, match="broadcasting"):
        nn.L1Loss()(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        F.mse_loss(y, y)


def test_invalid_reduction_and_legacy_args():
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        F.mse_loss(runba.zeros(2), runba.zeros(2), reduction="avg")
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        nn.CrossEntropyLoss(reduction="avg")
    with pytest.warns(UserWarning, match="reduction='sum'"):
        out = F.l1_loss(runba.ones(2), runba.zeros(2), size_average=False)
    assert out.item() == 2.0


# ---------------------------------------------------------------------------- nll / cross entropy
def _ref_nll(logp, t, weight=None, ignore_index=-100, reduction="mean"):
    c = logp.shape[1]
    flat = np.moveaxis(logp, 1, -1).reshape(-1, c)
    tt = t.reshape(-1)
    keep = tt != ignore_index
    safe = np.where(keep, tt, 0)
    w = (np.ones(c) if weight is None else weight)[safe] * keep
    loss = -flat[np.arange(tt.size), safe] * w
    if reduction == "none":
        return loss.reshape(t.shape), w
    if reduction == "sum":
        return loss.sum(), w
    return loss.sum() / w.sum(), w


def _ref_ce(x, t, weight=None, ignore_index=-100, reduction="mean", ls=0.0):
    logp = _log_softmax(x, 1)
    c = x.shape[1]
    if t.dtype.kind == "f":  # class probabilities
        tgt = t * (1 - ls) + ls / c
        wb = np.ones(c) if weight is None else weight
        prod = logp * tgt * wb.reshape([1, c] + [1] * (x.ndim - 2))
        if reduction == "none":
            return -prod.sum(1)
        if reduction == "sum":
            return -prod.sum()
        return -prod.sum() / (x.size // c)
    nll, w = _ref_nll(logp, t, weight, ignore_index, "none")
    wb = np.ones(c) if weight is None else weight
    smooth = -(logp * wb.reshape([1, c] + [1] * (x.ndim - 2))).sum(1)
    smooth = np.where(t == ignore_index, 0.0, smooth)
    loss = (1 - ls) * nll + ls / c * smooth
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / w.sum()


CE_CASES = [
    dict(),
    dict(weight=True),
    dict(ignore_index=1),
    dict(weight=True, ignore_index=2),
    dict(ls=0.1),
    dict(ls=0.2, weight=True, ignore_index=0),
    dict(spatial=True),
    dict(spatial=True, weight=True, ls=0.05, ignore_index=3),
    dict(probs=True),
    dict(probs=True, ls=0.3, weight=True),
    dict(probs=True, spatial=True),
]


def _ce_inputs(case, seed=0):
    rng = np.random.default_rng(seed)
    c = 4
    shape = (3, c, 2, 2) if case.get("spatial") else (5, c)
    x = rng.standard_normal(shape) * 2
    tshape = (shape[0],) + shape[2:]
    if case.get("probs"):
        t = rng.random(shape)
        t = t / t.sum(1, keepdims=True)
    else:
        t = rng.integers(0, c, tshape)
        ii = case.get("ignore_index", 1)
        t[t == ii] = (ii + 1) % c
        t.reshape(-1)[:2] = ii  # exactly the first two targets are ignored
    weight = rng.random(c) + 0.5 if case.get("weight") else None
    return x, t, weight


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", CE_CASES, ids=lambda c: "-".join(sorted(c)) or "plain")
def test_cross_entropy_vs_numpy(case, reduction):
    x, t, weight = _ce_inputs(case)
    ii = case.get("ignore_index", -100)
    ls = case.get("ls", 0.0)
    tt = _t(t) if t.dtype.kind == "f" else runba.tensor(t)
    wt = None if weight is None else _t(weight)
    out = F.cross_entropy(_t(x), tt, wt, ignore_index=ii, reduction=reduction, label_smoothing=ls)
    ref = _ref_ce(x, t, weight, ii, reduction, ls)
    np.testing.assert_allclose(_np(out), ref, rtol=1e-10, atol=1e-12)
    mod = nn.CrossEntropyLoss(wt, ignore_index=ii, reduction=reduction, label_smoothing=ls)
    np.testing.assert_allclose(_np(mod(_t(x), tt)), ref, rtol=1e-10, atol=1e-12)
    sl = slice(0, 2) if case.get("spatial") else slice(1, 3)  # some ignored, some not
    xg = _t(x[sl], grad=True)
    tg = tt[sl]
    assert gradcheck(
        lambda a: F.cross_entropy(
            a, tg, wt, ignore_index=ii, reduction=reduction, label_smoothing=ls
        ),
        (xg,),
    )


def test_cross_entropy_gradient_closed_form():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 5))
    t = rng.integers(0, 5, 6)
    _, g = _value_and_grad(lambda a: F.cross_entropy(a, runba.tensor(t)), x)
    p = np.exp(_log_softmax(x, 1))
    np.testing.assert_allclose(g, (p - np.eye(5)[t]) / 6, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_loss_vs_numpy(reduction):
    rng = np.random.default_rng(2)
    logp = _log_softmax(rng.standard_normal((6, 3, 2)), 1)
    t = rng.integers(0, 3, (6, 2))
    t[0, 0] = -100
    w = rng.random(3) + 0.1
    ref, _ = _ref_nll(logp, t, w, -100, reduction)
    out = nn.NLLLoss(weight=_t(w), reduction=reduction)(_t(logp), runba.tensor(t))
    np.testing.assert_allclose(_np(out), ref, rtol=1e-12)
    assert gradcheck(
        lambda a: F.nll_loss(a, runba.tensor(t), _t(w), reduction=reduction), (_t(logp, True),)
    )


def test_unbatched_class_targets():
    x = np.array([1.0, 2.0, 0.5])
    out = F.cross_entropy(_t(x), runba.tensor(1))
    np.testing.assert_allclose(out.item(), -_log_softmax(x, 0)[1], rtol=1e-12)
    assert F.nll_loss(_t(x), runba.tensor(2), reduction="none").shape == ()
    p = np.array([0.2, 0.5, 0.3])
    np.testing.assert_allclose(
        F.cross_entropy(_t(x), _t(p)).item(), -(p * _log_softmax(x, 0)).sum(), rtol=1e-12
    )


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:divide by zero encountered:RuntimeWarning")
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_all_ignored_mean_is_nan_with_zero_gradients_like_torch(weighted, smoothing):
    # an all-padding batch: loss NaN (0/0), but the gradient is 0, so a step leaves the
    # weights finite
    x = runba.randn(2, 3).requires_grad_()
    w = runba.tensor([1.0, 2.0, 0.5]) if weighted else None
    out = F.cross_entropy(x, runba.tensor([-100, -100]), weight=w, label_smoothing=smoothing)
    assert np.isnan(out.item())
    out.backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros((2, 3), np.float32))
    logp = F.log_softmax(x.detach().requires_grad_(), 1)
    F.nll_loss(logp, runba.tensor([-100, 1]), weight=w).backward()  # one kept: finite
    assert np.isfinite(x.grad.numpy()).all()


@pytest.mark.parametrize("bad", [-0.5, 1.5])
def test_bce_input_outside_zero_one_raises_like_torch(bad):
    t = runba.tensor([1.0, 0.0, 1.0])
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        F.binary_cross_entropy(runba.tensor([0.3, bad, 0.2]), t)
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        nn.BCELoss()(runba.tensor([0.3, 0.7, bad]), t)
    edge = F.binary_cross_entropy(runba.tensor([0.0, 1.0, 0.5]), t)  # the ends are fine
    assert np.isfinite(edge.item())


def test_class_target_errors():
    x = runba.randn(4, 3)
    with pytest.raises(IndexError, match="Target 3 is out of bounds"):
        F.cross_entropy(x, runba.tensor([0, 1, 3, 0]))
    with pytest.raises(IndexError, match="Target -1 is out of bounds"):
        F.nll_loss(x, runba.tensor([0, -1, 2, 0]))
    with pytest.raises(ValueError, match=r"Expected input batch_size \(4\) to match target"):
        F.cross_entropy(x, runba.tensor([0, 1]))
    with pytest.raises(RuntimeError, match="weight tensor should be defined"):
        F.cross_entropy(x, runba.tensor([0, 1, 2, 0]), weight=runba.ones(2))
    with pytest.raises(RuntimeError, match="input's shape"):
        F.cross_entropy(x, runba.rand(4, 2))
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(x, runba.tensor([0, 1, 2, 0]), label_smoothing=1.5)
    # int32 targets are accepted
    out = F.cross_entropy(x, runba.tensor([0, 1, 2, 0], dtype=runba.int32))
    assert np.isfinite(out.item())


def test_cross_entropy_float32_large_logits_stable():
    x = runba.tensor([[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]], requires_grad=True)
    out = F.cross_entropy(x, runba.tensor([2, 0]))
    out.backward()
    np.testing.assert_allclose(out.item(), (2000.0 + np.log(3)) / 2, rtol=1e-6)
    assert np.isfinite(x.grad.numpy()).all()


# ---------------------------------------------------------------------------- BCE
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_bce_vs_numpy(reduction, weighted):
    rng = np.random.default_rng(3)
    p = rng.uniform(0.05, 0.95, (4, 3))
    t = rng.random((4, 3))
    w = rng.random((4, 3)) + 0.5 if weighted else np.ones((4, 3))
    wt = _t(w) if weighted else None
    ref = _reduce(-(t * np.log(p) + (1 - t) * np.log(1 - p)) * w, reduction)
    out = nn.BCELoss(weight=wt, reduction=reduction)(_t(p), _t(t))
    np.testing.assert_allclose(_np(out), ref, rtol=1e-12)
    _, g = _value_and_grad(lambda a: F.binary_cross_entropy(a, _t(t), wt, reduction="sum"), p)
    np.testing.assert_allclose(g, w * (p - t) / (p * (1 - p)), rtol=1e-10)
    assert gradcheck(
        lambda a: F.binary_cross_entropy(a, _t(t), wt, reduction=reduction), (_t(p, True),)
    )


def test_bce_clamps_log_and_keeps_gradients_finite():
    p = runba.tensor([0.0, 1.0, 1.0, 0.0], requires_grad=True)
    t = runba.tensor([1.0, 0.0, 1.0, 0.0])
    out = F.binary_cross_entropy(p, t, reduction="none")
    np.testing.assert_array_equal(_np(out), [100.0, 100.0, 0.0, 0.0])
    out.sum().backward()
    assert np.isfinite(p.grad.numpy()).all()
    with pytest.raises(ValueError, match="different to the input size"):
        F.binary_cross_entropy(runba.rand(3, 1), runba.rand(3))


def _ref_bce_logits(x, t, w, pw):
    log_sig = -np.logaddexp(0, -x)
    log_one_minus = -np.logaddexp(0, x)
    loss = -(pw * t * log_sig + (1 - t) * log_one_minus) * w
    sig = 1 / (1 + np.exp(-x))
    grad = ((1 - t) * sig - pw * t * (1 - sig)) * w
    return loss, grad


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    "weighted,pos", [(False, False), (True, False), (False, True), (True, True)]
)
def test_bce_with_logits_vs_numpy(reduction, weighted, pos):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 3)) * 4
    x[0] = [0.0, 60.0, -60.0]
    t = rng.random((5, 3))
    t[1] = [0.0, 1.0, 0.5]
    w = rng.random((5, 3)) + 0.5 if weighted else np.ones((5, 3))
    pw = rng.random(3) * 3 if pos else np.ones(3)
    kwargs = dict(weight=_t(w) if weighted else None, pos_weight=_t(pw) if pos else None)
    loss, grad = _ref_bce_logits(x, t, w, pw)
    out = nn.BCEWithLogitsLoss(reduction=reduction, **kwargs)(_t(x), _t(t))
    np.testing.assert_allclose(_np(out), _reduce(loss, reduction), rtol=1e-10, atol=1e-12)
    _, g = _value_and_grad(
        lambda a: F.binary_cross_entropy_with_logits(a, _t(t), reduction="sum", **kwargs), x
    )
    np.testing.assert_allclose(g, grad, rtol=1e-9, atol=1e-12)
    xs = _t(x[1:3], True)
    assert gradcheck(
        lambda a: F.binary_cross_entropy_with_logits(
            a,
            _t(t[1:3]),
            _t(w[1:3]) if weighted else None,
            reduction=reduction,
            pos_weight=kwargs["pos_weight"],
        ),
        (xs,),
    )


def test_bce_with_logits_float32_extremes():
    x = runba.tensor([100.0, -100.0, 0.0, 30.0], requires_grad=True)
    t = runba.tensor([0.0, 1.0, 1.0, 1.0])
    out = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    np.testing.assert_allclose(_np(out), [100.0, 100.0, np.log(2), 9.357623e-14], rtol=1e-5)
    out.sum().backward()
    np.testing.assert_allclose(
        x.grad.numpy(), [1.0, -1.0, -0.5, -9.357623e-14], rtol=1e-5, atol=1e-7
    )
    with pytest.raises(ValueError, match="must be the same as input size"):
        F.binary_cross_entropy_with_logits(runba.rand(3, 1), runba.rand(3))


def test_loss_modules_register_weights_as_buffers():
    w = runba.tensor([1.0, 2.0])
    ce = nn.CrossEntropyLoss(weight=w)
    assert ce.weight is w and list(ce.state_dict()) == ["weight"]
    ce.double()
    assert ce.weight.dtype is F64
    bce = nn.BCEWithLogitsLoss(pos_weight=runba.tensor([2.0]))
    assert list(bce.state_dict()) == ["pos_weight"]
    assert nn.MSELoss().reduction == "mean" and list(nn.MSELoss().state_dict()) == []


# ---------------------------------------------------------------------------- torch cross-check
def test_losses_against_torch():
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    rng = np.random.default_rng(5)

    def both(name, x, target, **kw):
        """Value and input gradient of F.<name> vs torch.nn.functional.<name>, float64."""
        rkw = {k: _t(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
        tkw = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
        xr = _t(x, True)
        tr = _t(target) if target.dtype.kind == "f" else runba.tensor(target)
        out_r = getattr(F, name)(xr, tr, **rkw)
        out_r.sum().backward()
        xt = torch.tensor(x, requires_grad=True)
        out_t = getattr(tF, name)(xt, torch.tensor(target), **tkw)
        out_t.sum().backward()
        np.testing.assert_allclose(_np(out_r), out_t.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(xr.grad.numpy(), xt.grad.numpy(), rtol=1e-9, atol=1e-12)

    for reduction in REDUCTIONS:
        for case in CE_CASES:
            x, t, weight = _ce_inputs(case, seed=6)
            both(
                "cross_entropy", x, t, weight=weight, reduction=reduction,
                ignore_index=case.get("ignore_index", -100),
                label_smoothing=case.get("ls", 0.0),
            )  # fmt: skip
        x = rng.standard_normal((4, 3)) * 5
        t = rng.random((4, 3))
        pw = rng.random(3) * 2
        both("binary_cross_entropy_with_logits", x, t, reduction=reduction, pos_weight=pw)
        both("binary_cross_entropy", 1 / (1 + np.exp(-x)), t, reduction=reduction)
        both("mse_loss", x, t, reduction=reduction)
        both("l1_loss", x, t, reduction=reduction)
        logp = _log_softmax(x, 1)
        both("nll_loss", logp, rng.integers(0, 3, 4), weight=pw, reduction=reduction)
