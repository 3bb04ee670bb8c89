"""nn.Module machinery: registration, iteration, modes, dtype, state_dict, repr, error paths,
containers, hooks, init and gradient clipping."""

import math
import warnings

import numpy as np
import pytest

import runba
import runba.nn as nn
import runba.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU())
        self.classifier = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))

    def forward(self, x):
        return self.classifier(self.features(x))


# ---------------------------------------------------------------------------- registration
def test_parameter_is_a_leaf_tensor_and_ops_return_plain_tensors():
    p = nn.Parameter(runba.ones(2, 3))
    assert isinstance(p, runba.Tensor) and isinstance(p, nn.Parameter)
    assert p.requires_grad and p.is_leaf and p.grad_fn is None
    y = p * 2
    assert type(y) is runba.Tensor and y.grad_fn is not None
    y.sum().backward()
    np.testing.assert_array_equal(p.grad.numpy(), np.full((2, 3), 2.0, np.float32))
    assert repr(p).startswith("Parameter containing:\ntensor([[1., 1., 1.],")
    assert not nn.Parameter(runba.ones(1), requires_grad=False).requires_grad
    with pytest.raises(RuntimeError, match="floating point"):
        nn.Parameter(runba.tensor([1, 2]))
    assert nn.Parameter(runba.tensor([1, 2]), requires_grad=False).dtype is runba.int64


def test_parameter_shares_storage_with_its_data():
    t = runba.zeros(3)
    p = nn.Parameter(t)
    with runba.no_grad():
        p.add_(1)
    np.testing.assert_array_equal(t.numpy(), [1.0, 1.0, 1.0])


def test_registration_order_and_names():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == [
        "features.0.weight",
        "features.0.bias",
        "features.1.weight",
        "features.1.bias",
        "classifier.0.weight",
        "classifier.0.bias",
        "classifier.2.weight",
        "classifier.2.bias",
    ]
    assert [n for n, _ in net.named_buffers()] == [
        "features.1.running_mean",
        "features.1.running_var",
        "features.1.num_batches_tracked",
    ]
    assert [n for n, _ in net.named_children()] == ["features", "classifier"]
    assert [n for n, _ in net.named_modules()][:3] == ["", "features", "features.0"]
    assert len(list(net.modules())) == 9
    assert [n for n, _ in net.features.named_parameters(prefix="f")][0] == "f.0.weight"
    assert list(net.named_parameters(recurse=False)) == []
    assert len(list(net.parameters())) == 8


def test_shared_parameters_and_modules_appear_once():
    lin = nn.Linear(3, 3)
    seq = nn.Sequential(lin, nn.ReLU(), lin)
    assert len(list(seq.parameters())) == 2
    assert len(list(seq.modules())) == 3
    # state_dict lists every path (like torch)
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_setattr_rules():
    m = nn.Module()
    m.w = nn.Parameter(runba.zeros(2))
    assert "w" in m._parameters and "w" not in m.__dict__
    with pytest.raises(TypeError, match="cannot assign 'runba.FloatTensor' as parameter 'w'"):
        m.w = runba.zeros(2)
    m.w = None
    assert m.w is None and list(m.parameters()) == []
    m.register_buffer("stats", runba.zeros(2))
    with pytest.raises(TypeError, match="as buffer 'stats'"):
        m.stats = 3
    m.stats = runba.ones(2)
    assert m.stats.numpy().tolist() == [1.0, 1.0]
    m.sub = nn.ReLU()
    assert list(m.children())[0] is m.sub
    m.sub = nn.Parameter(runba.zeros(1))  # re-registers as a parameter
    assert "sub" not in m._modules and "sub" in m._parameters
    m.plain = 3
    assert m.plain == 3
    with pytest.raises(AttributeError, match="'Module' object has no attribute 'nope'"):
        m.nope  # noqa: B018
    del m.stats
    assert "stats" not in m._buffers
    with pytest.raises(KeyError, match="already exists"):
        m.register_buffer("plain", runba.zeros(1))
    with pytest.raises(KeyError, match=r'contain "\."'):
        m.register_parameter("a.b", None)
    m.b = nn.Buffer(runba.zeros(2), persistent=False)
    assert "b" in m._buffers and "b" not in m.state_dict()


def test_assigning_before_init_is_an_error():
    class Bad(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(runba.zeros(1))

    with pytest.raises(AttributeError, match="before Module.__init__"):
        Bad()


def test_non_persistent_buffers_stay_out_of_state_dict():
    m = nn.Module()
    m.register_buffer("a", runba.zeros(1))
    m.register_buffer("b", runba.zeros(1), persistent=False)
    m.register_buffer("c", None)
    assert list(m.state_dict()) == ["a"]
    assert [n for n, _ in m.named_buffers()] == ["a", "b"]


def test_train_eval_apply_requires_grad():
    net = Net()
    assert net.training and net.features[1].training
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    seen = []
    net.apply(lambda m: seen.append(type(m).__name__))
    assert seen[-1] == "Net" and seen[0] == "Linear"
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())


def test_zero_grad():
    lin = nn.Linear(3, 2)
    lin(runba.randn(4, 3)).sum().backward()
    g = lin.weight.grad
    lin.zero_grad(set_to_none=False)
    assert lin.weight.grad is g and not lin.weight.grad.numpy().any()
    lin.zero_grad()
    assert lin.weight.grad is None and lin.bias.grad is None


def test_to_dtype_keeps_parameter_identity_and_integer_buffers():
    net = Net()
    w = net.classifier[0].weight
    net(runba.randn(4, 6)).sum().backward()
    assert net.double() is net
    assert net.classifier[0].weight is w and w.dtype is runba.float64
    assert isinstance(w, nn.Parameter) and w.requires_grad
    assert w.grad.dtype is runba.float64
    assert net.features[1].running_mean.dtype is runba.float64
    assert net.features[1].num_batches_tracked.dtype is runba.int64
    assert net(runba.randn(4, 6, dtype=runba.float64)).dtype is runba.float64
    net.to(runba.float32)
    assert w.dtype is runba.float32
    net.to("cpu")
    net.to(runba.device("cpu"), dtype=runba.float32)
    with pytest.raises(RuntimeError, match="cuda"):
        net.to("cuda")
    with pytest.raises(TypeError, match="floating point"):
        net.to(runba.int64)


# ---------------------------------------------------------------------------- state dict
def test_state_dict_round_trip():
    runba.manual_seed(0)
    a = Net()
    a(runba.randn(8, 6))  # move BatchNorm running stats
    a.eval()
    runba.manual_seed(1)
    b = Net().eval()
    x = runba.randn(5, 6)
    assert not np.allclose(a(x).detach().numpy(), b(x).detach().numpy())
    sd = a.state_dict()
    assert sd["features.1.num_batches_tracked"].item() == 1
    assert not sd["features.0.weight"].requires_grad  # detached
    res = b.load_state_dict(sd)
    assert res.missing_keys == [] and res.unexpected_keys == []
    np.testing.assert_array_equal(a(x).detach().numpy(), b(x).detach().numpy())
    assert b.features[1].num_batches_tracked.item() == 1
    # values were copied, not aliased
    with runba.no_grad():
        a.classifier[2].bias.add_(1)
    assert not np.allclose(a(x).detach().numpy(), b(x).detach().numpy())


def test_state_dict_shares_storage_and_keep_vars():
    lin = nn.Linear(2, 2)
    sd = lin.state_dict()
    with runba.no_grad():
        lin.weight.fill_(3.0)
    assert sd["weight"].numpy()[0, 0] == 3.0
    assert lin.state_dict(keep_vars=True)["weight"] is lin.weight
    assert list(lin.state_dict(prefix="fc.")) == ["fc.weight", "fc.bias"]


def test_load_state_dict_lists_every_problem_in_one_error():
    net = Net()
    sd = dict(net.state_dict())
    del sd["features.0.bias"]
    sd["classifier.0.weight"] = runba.zeros(3, 3)
    sd["extra.weight"] = runba.zeros(1)
    with pytest.raises(RuntimeError) as ei:
        net.load_state_dict(sd)
    msg = str(ei.value)
    assert msg.startswith("Error(s) in loading state_dict for Net:")
    assert 'Missing key(s) in state_dict: "features.0.bias".' in msg
    assert 'Unexpected key(s) in state_dict: "extra.weight".' in msg
    assert (
        "size mismatch for classifier.0.weight: copying a param with shape [3, 3] from "
        "checkpoint, the shape in current model is [4, 5]." in msg
    )


def test_load_state_dict_non_strict():
    net = Net()
    sd = {k: v for k, v in net.state_dict().items() if k.startswith("classifier")}
    sd["unused"] = runba.zeros(1)
    res = net.load_state_dict(sd, strict=False)
    assert res.unexpected_keys == ["unused"]
    assert res.missing_keys[0] == "features.0.weight" and len(res.missing_keys) == 7
    bad = {"classifier.0.weight": runba.zeros(1)}
    with pytest.raises(RuntimeError, match="size mismatch for classifier.0.weight"):
        net.load_state_dict(bad, strict=False)  # shape errors raise even when not strict


def test_load_state_dict_prefix_hint():
    net = Net()
    wrapped = {"module." + k: v for k, v in net.state_dict().items()}
    with pytest.raises(RuntimeError, match="carry the extra prefix 'module.'"):
        net.load_state_dict(wrapped)

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.module = Net()

    with pytest.raises(RuntimeError, match="lack the prefix 'module.'"):
        Wrapper().load_state_dict(net.state_dict())


def test_load_state_dict_casts_dtype_and_accepts_numpy():
    lin = nn.Linear(2, 1)
    lin.load_state_dict({"weight": runba.ones(1, 2, dtype=runba.float64), "bias": np.zeros(1)})
    assert lin.weight.dtype is runba.float32
    assert lin.weight.detach().numpy().tolist() == [[1.0, 1.0]]
    assert lin.weight.requires_grad and lin.weight.is_leaf


# ---------------------------------------------------------------------------- repr
def test_repr_nested_like_pytorch():
    expected = """Net(
  (features): Sequential(
    (0): Linear(in_features=6, out_features=5, bias=True)
    (1): BatchNorm1d(5, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)
    (2): ReLU()
  )
  (classifier): Sequential(
    (0): Linear(in_features=5, out_features=4, bias=True)
    (1): ReLU()
    (2): Linear(in_features=4, out_features=3, bias=False)
  )
)"""
    net = Net()
    net.classifier[2] = nn.Linear(4, 3, bias=False)
    assert repr(net) == expected


def test_repr_of_layers():
    assert repr(nn.Conv2d(1, 20, 5)) == "Conv2d(1, 20, kernel_size=(5, 5), stride=(1, 1))"
    assert (
        repr(nn.Conv2d(4, 8, (3, 1), stride=2, padding=1, dilation=2, groups=2, bias=False))
        == "Conv2d(4, 8, kernel_size=(3, 1), stride=(2, 2), padding=(1, 1), dilation=(2, 2), "
        "groups=2, bias=False)"
    )
    assert repr(nn.Conv2d(1, 2, 3, padding="same")).endswith("padding=same)")
    assert repr(nn.MaxPool2d(2)) == (
        "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)"
    )
    assert repr(nn.AvgPool2d(2)) == "AvgPool2d(kernel_size=2, stride=2, padding=0)"
    assert repr(nn.AdaptiveAvgPool2d((1, 1))) == "AdaptiveAvgPool2d(output_size=(1, 1))"
    assert repr(nn.Dropout()) == "Dropout(p=0.5, inplace=False)"
    assert repr(nn.LeakyReLU()) == "LeakyReLU(negative_slope=0.01)"
    assert repr(nn.GELU(approximate="tanh")) == "GELU(approximate='tanh')"
    assert repr(nn.LogSoftmax(dim=1)) == "LogSoftmax(dim=1)"
    assert repr(nn.Flatten()) == "Flatten(start_dim=1, end_dim=-1)"
    assert (
        repr(nn.LayerNorm((2, 3)))
        == "LayerNorm((2, 3), eps=1e-05, elementwise_affine=True, bias=True)"
    )
    assert repr(nn.CrossEntropyLoss()) == "CrossEntropyLoss()"
    assert repr(nn.ReLU(inplace=True)) == "ReLU(inplace=True)"
    assert repr(nn.Identity()) == "Identity()"

    class WithExtra(nn.Module):
        def extra_repr(self):
            return "a=1,\nb=2"

    assert repr(WithExtra()) == "WithExtra(\n  a=1,\n  b=2\n)"


# ---------------------------------------------------------------------------- error paths
def test_linear_shape_error_names_module_path():
    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.classifier = nn.Sequential(nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 10))

        def forward(self, x):
            return self.classifier(x)

    with pytest.raises(RuntimeError) as ei:
        Classifier()(runba.randn(32, 100))
    assert str(ei.value) == (
        "Linear(in_features=784, out_features=100, bias=True) at 'classifier.0': expected "
        "input with last dimension 784, got shape [32, 100]"
    )
    # the same layer called on its own has no path
    with pytest.raises(
        RuntimeError, match=r"^Linear\(in_features=3, out_features=1, bias=True\): "
    ):
        nn.Linear(3, 1)(runba.randn(2, 4))
    # deeper nesting and ModuleList
    deep = nn.Sequential(nn.Sequential(nn.Identity(), nn.ModuleDict({"head": nn.Linear(2, 2)})))

    class UsesDict(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = deep

        def forward(self, x):
            return self.body[0][1]["head"](x)

    with pytest.raises(RuntimeError, match=r"at 'body.0.1.head': expected input with last"):
        UsesDict()(runba.randn(1, 3))


def test_foreign_errors_get_the_module_path_appended():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(runba.randn(3, 3))

        def forward(self, x):
            return x @ self.w

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([Block(), Block()])

        def forward(self, x):
            for b in self.blocks:
                x = b(x)
            return x

    with pytest.raises(RuntimeError, match=r"\(raised in module Block at 'blocks.0'\)$"):
        Model()(runba.randn(2, 4))


def test_batchnorm_and_conv_errors_name_the_path():
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(5))
    with pytest.raises(RuntimeError, match=r"BatchNorm1d\(5, .*\) at '1': expected input with 5"):
        net(runba.randn(3, 4))
    with pytest.raises(ValueError, match="expected 2D or 3D input"):
        nn.BatchNorm1d(5)(runba.randn(3, 5, 2, 2))
    feats = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
    with pytest.raises(RuntimeError, match=r"Conv2d\(1, 4, .*\) at '0': expected input with 1 ch"):
        feats(runba.randn(2, 3, 8, 8))


# ---------------------------------------------------------------------------- hooks / containers
def test_forward_hooks_and_removal():
    lin = nn.Linear(2, 2)
    calls = []
    h1 = lin.register_forward_pre_hook(lambda m, args: calls.append("pre"))
    h2 = lin.register_forward_hook(lambda m, args, out: out * 0)
    out = lin(runba.ones(1, 2))
    assert calls == ["pre"] and not out.detach().numpy().any()
    h1.remove()
    h2.remove()
    assert not lin._forward_hooks and not lin._forward_pre_hooks
    assert lin(runba.ones(1, 2)).detach().numpy().any()


def test_sequential_container_api():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert len(seq) == 3 and isinstance(seq[-1], nn.Linear) and isinstance(seq[1], nn.ReLU)
    head = seq[:2]
    assert isinstance(head, nn.Sequential) and len(head) == 2 and head[0] is seq[0]
    assert [type(m).__name__ for m in seq] == ["Linear", "ReLU", "Linear"]
    seq.append(nn.Sigmoid())
    assert list(seq.state_dict())[-1] == "2.bias" and len(seq) == 4
    out = seq(runba.randn(5, 2))
    assert out.shape == (5, 1) and bool(((out > 0) & (out < 1)).all())
    del seq[1]
    assert [k for k, _ in seq.named_children()] == ["0", "1", "2"]
    seq.insert(1, nn.Tanh())
    assert isinstance(seq[1], nn.Tanh) and len(seq) == 4
    with pytest.raises(IndexError):
        seq[10]
    from collections import OrderedDict

    named = nn.Sequential(OrderedDict([("fc", nn.Linear(2, 2)), ("act", nn.ReLU())]))
    assert list(named.state_dict()) == ["fc.weight", "fc.bias"]
    assert isinstance(named[0], nn.Linear)
    assert len(nn.Sequential(nn.ReLU()) + nn.Sequential(nn.Tanh())) == 2


def test_modulelist_and_moduledict():
    ml = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    assert len(ml) == 3 and len(list(ml.parameters())) == 6
    ml.append(nn.ReLU())
    ml.extend([nn.Tanh()])
    assert isinstance(ml[-1], nn.Tanh) and len(ml[1:3]) == 2
    del ml[0]
    assert [k for k, _ in ml.named_children()] == ["0", "1", "2", "3"]
    ml.insert(0, nn.Identity())
    assert isinstance(ml[0], nn.Identity)
    md = nn.ModuleDict({"a": nn.Linear(1, 1)})
    md["b"] = nn.ReLU()
    assert list(md.keys()) == ["a", "b"] and "a" in md and len(md) == 2
    assert list(md.state_dict()) == ["a.weight", "a.bias"]
    assert isinstance(md.pop("b"), nn.ReLU) and len(md) == 1


def test_get_submodule():
    net = Net()
    assert net.get_submodule("classifier.2") is net.classifier[2]
    assert net.get_parameter("classifier.2.bias") is net.classifier[2].bias
    with pytest.raises(AttributeError, match="no submodule `nope`"):
        net.get_submodule("classifier.nope")


# ---------------------------------------------------------------------------- init
def test_calculate_gain_and_fans():
    g = nn.init.calculate_gain
    assert g("linear") == 1 and g("conv2d") == 1 and g("sigmoid") == 1
    assert g("relu") == math.sqrt(2) and g("tanh") == 5 / 3
    assert g("leaky_relu") == math.sqrt(2 / (1 + 0.01**2))
    assert g("leaky_relu", math.sqrt(5)) == math.sqrt(2 / 6)
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        g("foo")
    fan = nn.init._calculate_fan_in_and_fan_out
    assert fan(runba.empty(20, 10)) == (10, 20)
    assert fan(runba.empty(8, 4, 3, 5)) == (60, 120)
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        fan(runba.empty(3))


def _check_uniform(t, bound):
    a = t.detach().numpy().astype(np.float64)
    assert np.abs(a).max() <= bound * (1 + 1e-6)
    assert np.abs(a).max() > 0.9 * bound  # draws fill the range
    np.testing.assert_allclose(a.var(), bound**2 / 3, rtol=0.1)


def test_init_distributions():
    runba.manual_seed(0)
    w = runba.empty(200, 100)
    assert nn.init.kaiming_uniform_(w) is w
    _check_uniform(w, math.sqrt(3) * math.sqrt(2 / (1 + 0.01**2)) / math.sqrt(100))
    nn.init.kaiming_uniform_(w, mode="fan_out", nonlinearity="relu")
    _check_uniform(w, math.sqrt(3) * math.sqrt(2) / math.sqrt(200))
    nn.init.xavier_uniform_(w, gain=2.0)
    _check_uniform(w, 2.0 * math.sqrt(6 / 300))
    nn.init.kaiming_normal_(w, nonlinearity="relu")
    np.testing.assert_allclose(w.numpy().std(), math.sqrt(2 / 100), rtol=0.05)
    nn.init.xavier_normal_(w)
    np.testing.assert_allclose(w.numpy().std(), math.sqrt(2 / 300), rtol=0.05)
    nn.init.normal_(w, 3.0, 0.5)
    np.testing.assert_allclose([w.numpy().mean(), w.numpy().std()], [3.0, 0.5], rtol=0.05)
    nn.init.uniform_(w, -2, -1)
    assert w.numpy().min() >= -2 and w.numpy().max() < -1
    assert (nn.init.constant_(w, 0.25).numpy() == 0.25).all()
    assert not nn.init.zeros_(w).numpy().any()
    assert (nn.init.ones_(w).numpy() == 1).all()
    with pytest.raises(ValueError, match="fan_in, fan_out"):
        nn.init.kaiming_uniform_(w, mode="fan_avg")
    with pytest.warns(UserWarning, match="zero-element"):
        nn.init.kaiming_uniform_(runba.empty(0, 3))


def test_init_on_parameters_runs_under_no_grad():
    p = nn.Parameter(runba.empty(4, 4))
    nn.init.xavier_uniform_(p)
    assert p.is_leaf and p.requires_grad and p.grad_fn is None


def test_linear_and_conv_default_init_bounds():
    runba.manual_seed(0)
    lin = nn.Linear(300, 200)
    _check_uniform(lin.weight, 1 / math.sqrt(300))
    assert np.abs(lin.bias.detach().numpy()).max() <= 1 / math.sqrt(300)
    conv = nn.Conv2d(8, 64, 5, groups=2)
    assert conv.weight.shape == (64, 4, 5, 5)
    _check_uniform(conv.weight, 1 / math.sqrt(100))
    assert np.abs(conv.bias.detach().numpy()).max() <= 1 / math.sqrt(100)
    with pytest.raises(ValueError, match="in_channels must be divisible by groups"):
        nn.Conv2d(3, 6, 3, groups=2)
    with pytest.raises(ValueError, match="strided"):
        nn.Conv2d(3, 6, 3, stride=2, padding="same")


# ---------------------------------------------------------------------------- clip_grad
def test_clip_grad_norm_against_numpy():
    ps = [
        nn.Parameter(runba.zeros(3)),
        nn.Parameter(runba.zeros(2, 2)),
        nn.Parameter(runba.zeros(1)),
    ]
    rng = np.random.default_rng(0)
    gs = [rng.standard_normal(p.shape).astype(np.float32) for p in ps]
    for p, g in zip(ps, gs):
        p.grad = runba.tensor(g)
    ps[2].grad = None  # skipped
    total = nn.utils.clip_grad_norm_(ps, max_norm=0.5)
    ref = math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in gs[:2]))
    np.testing.assert_allclose(total.item(), ref, rtol=1e-6)
    for p, g in zip(ps[:2], gs):
        np.testing.assert_allclose(p.grad.numpy(), g * 0.5 / (ref + 1e-6), rtol=1e-5)
    # below the threshold: unchanged; inf norm
    before = ps[0].grad.numpy().copy()
    total = nn.utils.clip_grad_norm_(ps, max_norm=100.0, norm_type="inf")
    np.testing.assert_allclose(
        total.item(), max(np.abs(p.grad.numpy()).max() for p in ps[:2]), rtol=1e-6
    )
    np.testing.assert_array_equal(ps[0].grad.numpy(), before)
    assert nn.utils.clip_grad_norm_([nn.Parameter(runba.zeros(1))], 1.0).item() == 0.0
    ps[0].grad = runba.tensor([math.inf, 0.0, 0.0])
    with pytest.raises(RuntimeError, match="non-finite"):
        nn.utils.clip_grad_norm_(ps, 1.0, error_if_nonfinite=True)


def test_clip_grad_value():
    p = nn.Parameter(runba.zeros(3))
    p.grad = runba.tensor([-3.0, 0.5, 2.0])
    nn.utils.clip_grad_value_(p, 1.0)
    assert p.grad.numpy().tolist() == [-1.0, 0.5, 1.0]


def test_public_names():
    for name in [
        "Module",
        "Parameter",
        "Sequential",
        "ModuleList",
        "ModuleDict",
        "Linear",
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
        "Identity",
        "ReLU",
        "LeakyReLU",
        "GELU",
        "SiLU",
        "Sigmoid",
        "Tanh",
        "Softmax",
        "LogSoftmax",
        "MSELoss",
        "L1Loss",
        "NLLLoss",
        "CrossEntropyLoss",
        "BCELoss",
        "BCEWithLogitsLoss",
    ]:
        assert name in nn.__all__ and hasattr(nn, name)
    for name in ["linear", "relu", "softmax", "cross_entropy", "pad", "conv2d", "one_hot"]:
        assert hasattr(F, name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        import runba.nn.utils  # noqa: F401


def test_deepcopy_of_a_model_with_buffers():
    import copy

    m = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    m2 = copy.deepcopy(m)
    assert m2[1].running_mean is not m[1].running_mean
    for (k, a), (k2, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert k == k2 and a.tolist() == b.tolist()
