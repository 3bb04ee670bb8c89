"""The JIT seam (DESIGN §1, §3): every Tensor operation reaches ``registry.dispatch``.

A recording capture handler (the test double of the JIT's recorder) is installed in
``runba._state.STATE.capture``. Every tensor it sees or hands out carries *poisoned* storage:
an ndarray subclass that raises on any numpy computation (ufuncs, ``np.*`` functions,
indexing, ``reshape``/``astype``/``copy``...). So a Tensor method that computed with numpy
itself instead of dispatching would raise :class:`EagerComputeError`; a method that dispatches
is recorded by op name. The recorder computes each result from unpoisoned shadows of the
inputs (so composites can go on) and poisons the result before handing it back.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import runba
from runba._state import STATE
from runba.ops import registry


class EagerComputeError(AssertionError):
    """Numpy computation on a tensor's storage while capture was active."""


def _refuse(name):
    def method(self, *args, **kwargs):
        raise EagerComputeError(f"ndarray.{name} ran on a tensor's storage under capture")

    return method


class Poisoned(np.ndarray):
    """Storage whose metadata (shape, strides, dtype, flags) is readable but which refuses
    to be computed with."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        raise EagerComputeError(f"numpy ufunc {ufunc.__name__}.{method} ran under capture")

    def __array_function__(self, func, types, args, kwargs):
        raise EagerComputeError(f"numpy function {func.__name__} ran under capture")

    __getitem__ = _refuse("__getitem__")
    __setitem__ = _refuse("__setitem__")
    __array__ = _refuse("__array__")
    for _name in (
        "astype copy reshape transpose swapaxes sum mean max min prod all any argmax argmin "
        "cumsum fill flatten ravel squeeze tolist item dot clip round take repeat"
    ).split():
        locals()[_name] = _refuse(_name)
    del _name


def poison(t: runba.Tensor) -> runba.Tensor:
    t._data = np.ndarray.view(t._data, Poisoned)
    return t


def _plain(a):
    if isinstance(a, runba.Tensor) and isinstance(a._data, Poisoned):
        s = runba.Tensor._make(np.ndarray.view(a._data, np.ndarray), a.dtype)
        s._version = a._version
        return s
    return a


class Recorder:
    """A capture handler: ``record(op, inputs, attrs)`` is what the JIT implements."""

    def __init__(self):
        self.ops: list[str] = []
        self.realized: list[str] = []  # value reads (realization points)

    def record(self, op, inputs, attrs):
        assert isinstance(op, registry.OpDef)
        assert isinstance(inputs, tuple) and isinstance(attrs, dict)
        self.ops.append(op.name)
        prev = STATE.capture
        STATE.capture = None
        try:
            out = registry.dispatch(op, tuple(_plain(a) for a in inputs), attrs)  # eager
        finally:
            STATE.capture = prev
        if op.inplace:
            # the eager run returned the shadow of input 0; hand back the real target
            return inputs[0]
        return poison(out)


# Value reads (bool, item, tolist) are realization points (DESIGN §4): the JIT runs what it
# recorded and hands out the value. The double models that by reading through the poison and
# counting the read, so only *computation* on storage counts as a bypass.
_REALIZING = ("__bool__", "item", "tolist")


def _realizing(name, original):
    def method(self, *args, **kwargs):
        data = self._data
        if not isinstance(data, Poisoned):
            return original(self, *args, **kwargs)
        if isinstance(STATE.capture, Recorder):
            STATE.capture.realized.append(name)
        self._data = np.ndarray.view(data, np.ndarray)
        try:
            return original(self, *args, **kwargs)
        finally:
            self._data = data

    return method


class capturing:  # noqa: N801
    def __enter__(self):
        self.rec = Recorder()
        self.saved = {n: getattr(runba.Tensor, n) for n in _REALIZING}
        for n, fn in self.saved.items():
            setattr(runba.Tensor, n, _realizing(n, fn))
        self.prev = STATE.capture
        STATE.capture = self.rec
        return self.rec

    def __exit__(self, *exc):
        STATE.capture = self.prev
        for n, fn in self.saved.items():
            setattr(runba.Tensor, n, fn)
        return False


def _inputs():
    x = poison(runba.randn(3, 4))
    y = poison(runba.randn(4, 3))
    z = poison(runba.randn(3, 4))
    return x, y, z


# (description, callable, recorded op names: a list is the exact sequence; a set must be a
# subset of what a composite recorded)
CASES = [
    ("x + y.T", lambda x, y, z: x + y.T, ["permute", "add"]),
    ("x + 1 (scalar)", lambda x, y, z: x + 1, ["add"]),
    ("2 - x (reflected)", lambda x, y, z: 2 - x, ["sub"]),
    ("x * z", lambda x, y, z: x * z, ["mul"]),
    ("x / z", lambda x, y, z: x / z, ["div"]),
    ("x ** 2", lambda x, y, z: x**2, ["pow"]),
    ("-x", lambda x, y, z: -x, ["neg"]),
    ("abs(x)", lambda x, y, z: abs(x), ["abs"]),
    ("x > z", lambda x, y, z: x > z, ["gt"]),
    ("x == z", lambda x, y, z: x == z, ["eq"]),
    ("x.exp()", lambda x, y, z: x.exp(), ["exp"]),
    ("runba.exp(x)", lambda x, y, z: runba.exp(x), ["exp"]),
    ("x.abs().log()", lambda x, y, z: x.abs().log(), ["abs", "log"]),
    ("x.tanh()", lambda x, y, z: x.tanh(), ["tanh"]),
    ("x.sigmoid()", lambda x, y, z: x.sigmoid(), ["sigmoid"]),
    ("x.relu()", lambda x, y, z: x.relu(), ["relu"]),
    ("runba.relu(x)", lambda x, y, z: runba.relu(x), ["relu"]),
    ("x.sum(1)", lambda x, y, z: x.sum(1), ["sum"]),
    ("x.sum()", lambda x, y, z: x.sum(), ["sum"]),
    ("x.amax(1)", lambda x, y, z: x.amax(1), ["amax"]),
    ("x.argmax(1)", lambda x, y, z: x.argmax(1), ["argmax"]),
    ("x.prod(0)", lambda x, y, z: x.prod(0), ["prod"]),
    ("x.cumsum(1)", lambda x, y, z: x.cumsum(1), ["cumsum"]),
    ("x[1:]", lambda x, y, z: x[1:], ["slice"]),
    ("x[:, ::2]", lambda x, y, z: x[:, ::2], ["slice"]),
    ("x[None, ..., 0]", lambda x, y, z: x[None, ..., 0], ["slice"]),
    ("x[idx]", lambda x, y, z: x[runba.tensor([0, 2])], ["index"]),
    ("x[mask]", lambda x, y, z: x[runba.tensor([True, False, True])], ["index"]),
    ("x @ y", lambda x, y, z: x @ y, ["matmul"]),
    ("runba.matmul(x, y)", lambda x, y, z: runba.matmul(x, y), ["matmul"]),
    ("x.reshape(2, 6)", lambda x, y, z: x.reshape(2, 6), ["reshape"]),
    ("x.view(-1)", lambda x, y, z: x.view(-1), ["reshape"]),
    ("x.flatten()", lambda x, y, z: x.flatten(), ["reshape"]),
    ("x.unsqueeze(0)", lambda x, y, z: x.unsqueeze(0), ["reshape"]),
    ("x.t()", lambda x, y, z: x.t(), ["permute"]),
    ("x.permute(1, 0)", lambda x, y, z: x.permute(1, 0), ["permute"]),
    ("x.transpose(0, 1)", lambda x, y, z: x.transpose(0, 1), ["permute"]),
    ("x.clone()", lambda x, y, z: x.clone(), ["clone"]),
    ("x.double()", lambda x, y, z: x.double(), ["cast"]),
    ("x.to(int64)", lambda x, y, z: x.to(runba.int64), ["cast"]),
    ("x.half()", lambda x, y, z: x.half(), ["cast"]),
    ("x.t().contiguous()", lambda x, y, z: x.t().contiguous(), ["permute", "clone"]),
    ("x.flip(0)", lambda x, y, z: x.flip(0), ["flip"]),
    ("x[:1].expand(3, 4)", lambda x, y, z: x[:1].expand(3, 4), ["slice", "expand"]),
    ("cat", lambda x, y, z: runba.cat([x, z], 0), ["cat"]),
    ("where", lambda x, y, z: runba.where(x > 0, x, z), ["gt", "where"]),
    ("gather", lambda x, y, z: x.gather(1, runba.tensor([[0], [1], [2]])), ["gather"]),
    ("x.add_(z)", lambda x, y, z: x.add_(z), {"copy_"}),
    ("x += 1", lambda x, y, z: x.__iadd__(1), {"copy_"}),
    ("x.zero_()", lambda x, y, z: x.zero_(), ["copy_"]),
    ("x[0] = 1", lambda x, y, z: x.__setitem__(0, 1.0), ["index_put_"]),
    # composites: written in primitives, every piece recorded
    ("x.mean(0, keepdim=True)", lambda x, y, z: x.mean(0, keepdim=True), {"sum"}),
    ("x.var(1)", lambda x, y, z: x.var(1), {"sum"}),
    ("x.std()", lambda x, y, z: x.std(), {"sum"}),
    ("x.norm()", lambda x, y, z: x.norm(), {"sum"}),
    ("x.logsumexp(1)", lambda x, y, z: x.logsumexp(1), {"exp", "log"}),
    ("x.softmax(-1)", lambda x, y, z: x.softmax(-1), {"amax", "exp", "sum", "div"}),
    ("x.log_softmax(-1)", lambda x, y, z: x.log_softmax(-1), {"exp", "sum", "log"}),
    ("gelu", lambda x, y, z: runba.ops.elementwise.gelu(x), ["gelu"]),
    ("gelu tanh", lambda x, y, z: runba.ops.elementwise.gelu(x, "tanh"), ["gelu"]),
    ("silu", lambda x, y, z: runba.ops.elementwise.silu(x), {"sigmoid", "mul"}),
    ("leaky_relu", lambda x, y, z: x.leaky_relu(0.1), set()),
    ("softplus", lambda x, y, z: runba.ops.elementwise.softplus(x), set()),
    ("stack", lambda x, y, z: runba.stack([x, z]), {"cat"}),
    ("clamp", lambda x, y, z: x.clamp(-0.5, 0.5), set()),
    ("lerp", lambda x, y, z: x.lerp(z, 0.3), set()),
    ("x.max(1)", lambda x, y, z: x.max(1), {"argmax", "gather"}),
    ("masked_fill", lambda x, y, z: x.masked_fill(x > 0, 0.0), {"gt"}),
    ("tril", lambda x, y, z: x.tril(), set()),
    ("repeat", lambda x, y, z: x.repeat(2, 1), set()),
    ("roll", lambda x, y, z: x.roll(1, 0), set()),
    ("split", lambda x, y, z: x.split(2, 1), {"slice"}),
    ("chunk", lambda x, y, z: x.chunk(2, 0), {"slice"}),
    ("narrow", lambda x, y, z: x.narrow(1, 1, 2), {"slice"}),
    ("squeeze", lambda x, y, z: x[:1].squeeze(0), {"slice"}),
    ("index_select", lambda x, y, z: x.index_select(0, runba.tensor([2, 0])), set()),
    ("dot", lambda x, y, z: x[0].dot(z[0]), set()),
    ("einsum", lambda x, y, z: runba.einsum("ij,jk->ik", x, y), set()),
]


def _check(expected, recorded):
    assert recorded, "nothing was recorded: the call bypassed the registry"
    if isinstance(expected, list):
        assert recorded == expected
    else:
        assert expected <= set(recorded), f"expected {expected} among recorded {recorded}"
    for name in recorded:
        assert name in registry.REGISTRY or name == "function"


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_every_call_is_recorded_and_nothing_runs_eagerly(case):
    _, fn, expected = case
    x, y, z = _inputs()
    with capturing() as rec:
        fn(x, y, z)
    assert STATE.capture is None
    _check(expected, rec.ops)


def _f_cases():
    import runba.nn.functional as F  # noqa: N812

    w = poison(runba.randn(5, 4))
    b = poison(runba.randn(5))
    target = runba.tensor([0, 3, 1])
    return [
        ("F.linear", lambda x, y, z: F.linear(x, w, b), {"matmul", "add"}),
        ("F.relu", lambda x, y, z: F.relu(x), ["relu"]),
        ("F.gelu", lambda x, y, z: F.gelu(x), ["gelu"]),
        ("F.silu", lambda x, y, z: F.silu(x), {"sigmoid"}),
        ("F.softmax", lambda x, y, z: F.softmax(x, -1), {"exp"}),
        ("F.log_softmax", lambda x, y, z: F.log_softmax(x, 1), {"exp", "log"}),
        ("F.layer_norm", lambda x, y, z: F.layer_norm(x, (4,)), {"sum"}),
        ("F.mse_loss", lambda x, y, z: F.mse_loss(x, z), {"sub", "sum"}),
        ("F.cross_entropy", lambda x, y, z: F.cross_entropy(x, target), {"exp", "log"}),
        ("F.dropout", lambda x, y, z: F.dropout(x, 0.5, training=True), {"mul"}),
        (
            "F.binary_cross_entropy_with_logits",
            lambda x, y, z: F.binary_cross_entropy_with_logits(x, (z > 0).float()),
            {"gt", "cast"},
        ),
    ]


@pytest.mark.parametrize("index", range(11))
def test_functional_composites_are_recorded(index):
    name, fn, expected = _f_cases()[index]
    x, y, z = _inputs()
    with capturing() as rec:
        fn(x, y, z)
    _check(expected, rec.ops)


def test_a_bypassing_method_is_caught(monkeypatch):
    # The double must be able to fail: a Tensor method computing with numpy on its storage
    # (instead of dispatching) raises under capture.
    def bad_exp(self):
        return runba.Tensor._make(np.exp(self._data), self.dtype)

    monkeypatch.setattr(runba.Tensor, "exp", bad_exp)
    x, _, _ = _inputs()
    with capturing() as rec:
        with pytest.raises(EagerComputeError):
            x.exp()
    assert rec.ops == []


def test_poison_detects_a_bypass():
    # The double must be able to fail: a "method" that computes with numpy on the storage
    # raises instead of being silently eager.
    x, _, _ = _inputs()
    with capturing():
        with pytest.raises(EagerComputeError):
            np.exp(x._data)
        with pytest.raises(EagerComputeError):
            x._data.sum()
        with pytest.raises(EagerComputeError):
            x._data[1:]


def test_value_reads_are_realization_points_not_bypasses():
    x, _, _ = _inputs()
    original_item = runba.Tensor.item
    with capturing() as rec:
        s = x.sum()
        assert isinstance(s.item(), float)
        assert bool(s > -1e9)
    assert rec.ops == ["sum", "gt"]
    assert rec.realized == ["item", "__bool__"]
    assert runba.Tensor.item is original_item  # the double restores the class


def test_recorded_results_match_eager():
    a = runba.randn(3, 4)
    b = runba.randn(4, 3)
    expected = ((a @ b).relu().sum(1) + 1).numpy()
    pa, pb = poison(runba.tensor(a)), poison(runba.tensor(b))
    with capturing() as rec:
        out = (pa @ pb).relu().sum(1) + 1
    assert rec.ops == ["matmul", "relu", "sum", "add"]
    np.testing.assert_allclose(np.ndarray.view(out._data, np.ndarray), expected, rtol=1e-6)


def test_capture_restored_after_error():
    prev = STATE.capture
    with pytest.raises(ZeroDivisionError):
        with capturing():
            raise ZeroDivisionError
    assert STATE.capture is prev


def test_capture_is_per_thread():
    rec = Recorder()
    seen = {}

    def worker():
        seen["capture"] = STATE.capture
        a = runba.ones(2)
        seen["value"] = (a + a).tolist()  # eager in this thread

    STATE.capture = rec
    try:
        th = threading.Thread(target=worker)
        th.start()
        th.join()
        x = poison(runba.ones(2))
        x + x  # recorded in the main thread
    finally:
        STATE.capture = None
    assert seen["capture"] is None
    assert seen["value"] == [2.0, 2.0]
    assert rec.ops == ["add"]


def test_capture_in_a_thread_does_not_affect_main_thread():
    rec = Recorder()
    started, release = threading.Event(), threading.Event()

    def worker():
        STATE.capture = rec
        try:
            started.set()
            release.wait(5)
        finally:
            STATE.capture = None

    th = threading.Thread(target=worker)
    th.start()
    try:
        assert started.wait(5)
        a = runba.ones(2)
        assert (a * 3).tolist() == [3.0, 3.0]
        assert STATE.capture is None
    finally:
        release.set()
        th.join()
    assert rec.ops == []
