"""Tests driven by the op-sample table (tests/op_db.py): forward vs independent numpy/math
references in float64 and float32, non-contiguous inputs, gradcheck in float64, dtype
promotion, and meta-tests that fail when an op has no samples."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from op_db import (
    COVERED_BY,
    NOT_SAMPLED,
    REQUIRED_OPS,
    SAMPLES,
    Sample,
    ref_log_softmax,
    ref_softmax,
)

import runba
from runba._state import STATE
from runba.autograd import gradcheck
from runba.ops import elementwise as E
from runba.ops import index as IX
from runba.ops import reduce as R
from runba.ops.registry import METHODS, REGISTRY, run_eager

F64, F32 = runba.float64, runba.float32

# samples with inf/nan/empty reductions make numpy warn (log(0) = -inf, ...): expected here
pytestmark = pytest.mark.filterwarnings(
    "ignore:divide by zero:RuntimeWarning", "ignore:invalid value:RuntimeWarning"
)


def _ids(samples):
    return [s.id for s in samples]


def _by_id():
    out = {}
    for s in SAMPLES:
        assert s.id not in out, f"duplicate sample id {s.id}"
        out[s.id] = s
    return out


SAMPLE_BY_ID = _by_id()


# ------------------------------------------------------------------------------ helpers
def _strided(a: np.ndarray) -> np.ndarray:
    """The same values in a non-contiguous layout: every other element along each dim of a
    Fortran-ordered buffer (so neither C- nor F-contiguous when any dim exceeds 1)."""
    if a.ndim == 0:
        return a.copy()
    buf = np.zeros(tuple(2 * n for n in a.shape), dtype=a.dtype)
    if a.ndim >= 2:
        buf = np.asfortranarray(buf)
    view = buf[(slice(None, None, 2),) * a.ndim]
    view[...] = a
    return view


def make_inputs(s: Sample, fdtype, *, requires_grad=False, noncontig=False):
    """Tensors for ``s`` in float dtype ``fdtype`` and the float64 arrays the reference sees."""
    tensors, arrays = [], []
    grad_pos = s.grad_positions() if requires_grad else ()
    for i, a in enumerate(s.inputs):
        a = np.array(a, copy=True)
        if a.dtype.kind == "f":
            a = a.astype(fdtype.np)
        arrays.append(a.astype(np.float64) if a.dtype.kind == "f" else a.copy())
        t = runba.from_numpy(_strided(a)) if noncontig else runba.tensor(a)
        if noncontig and a.ndim and a.size > 1:
            assert not t.is_contiguous()
        if i in grad_pos:
            t.requires_grad_()
        tensors.append(t)
    return tensors, arrays


def flat_tensors(out):
    if isinstance(out, runba.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in flat_tensors(o)]
    raise TypeError(f"sample returned {type(out).__name__}, expected Tensor(s)")


def flat_arrays(out):
    if isinstance(out, (tuple, list)):
        return [a for o in out for a in flat_arrays(o)]
    return [np.asarray(out)]


def expected_dtypes(s: Sample, fdtype, refs):
    od = s.out_dtype
    if od is not None:
        if callable(od) and not isinstance(od, runba.dtype):
            od = od(fdtype)
        return od if isinstance(od, tuple) else (od,) * len(refs)
    out = []
    for r in refs:
        kind = r.dtype.kind
        if kind == "f":
            out.append(fdtype if s.has_float_input else runba.get_default_dtype())
        elif kind == "b":
            out.append(runba.bool)
        else:
            out.append(runba.int64)
    return tuple(out)


def tolerances(s: Sample, dt):
    if dt is F64:
        return (1e-12 if s.rtol is None else s.rtol), (1e-12 if s.atol is None else s.atol)
    return (2e-5 if s.rtol32 is None else s.rtol32), (1e-5 if s.atol32 is None else s.atol32)


def check_forward(s: Sample, fdtype, *, noncontig=False, rtol=None, atol=None):
    tensors, arrays = make_inputs(s, fdtype, noncontig=noncontig)
    before = [t.numpy().copy() for t in tensors]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy: log(0), inf - inf, ...
        got = flat_tensors(s.fn(*tensors))
        want = flat_arrays(s.ref(*arrays))
    assert len(got) == len(want), f"{len(got)} outputs, reference has {len(want)}"
    dts = expected_dtypes(s, fdtype, want)
    for k, (g, w, dt) in enumerate(zip(got, want, dts)):
        where = f"output {k}"
        assert g.dtype is dt, f"{where}: dtype {g.dtype}, expected {dt}"
        assert tuple(g.shape) == w.shape, f"{where}: shape {tuple(g.shape)}, expected {w.shape}"
        gv = g.detach().numpy()
        assert gv.dtype == dt.np
        if dt.is_floating_point:
            rt, at = (rtol, atol) if rtol is not None and dt is fdtype else tolerances(s, dt)
            np.testing.assert_allclose(
                gv.astype(np.float64),
                w.astype(np.float64),
                rtol=rt,
                atol=at,
                equal_nan=True,
                err_msg=where,
            )
        else:
            np.testing.assert_array_equal(gv, w.astype(gv.dtype), err_msg=where)
    for t, b in zip(tensors, before):
        np.testing.assert_array_equal(t.numpy(), b, err_msg="the op modified its input")


def check_grad(s: Sample, *, noncontig=False):
    tensors, _ = make_inputs(s, F64, requires_grad=True, noncontig=noncontig)
    outs = [o for o in flat_tensors(s.fn(*tensors)) if o.dtype.is_floating_point]
    assert outs, "a differentiable sample must have a floating output"
    assert any(o.requires_grad for o in outs if o.numel()) or all(o.numel() == 0 for o in outs), (
        "no output requires grad"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # log(0) = -inf in the forward, ...
        assert gradcheck(s.fn, tuple(tensors), fast_mode=True if s.fast else None)


GRAD_SAMPLES = [s for s in SAMPLES if s.grad and s.grad_positions()]
F32_SAMPLES = [s for s in SAMPLES if s.f32 and s.has_float_input]
NONCONTIG_SAMPLES = [
    s for s in SAMPLES if s.noncontig and any(a.ndim and a.size > 1 for a in s.inputs)
]


# ------------------------------------------------------------------------------ table tests
@pytest.mark.parametrize("s", SAMPLES, ids=_ids(SAMPLES))
def test_forward_float64(s):
    check_forward(s, F64)


@pytest.mark.parametrize("s", F32_SAMPLES, ids=_ids(F32_SAMPLES))
def test_forward_float32(s):
    check_forward(s, F32)


@pytest.mark.parametrize("s", NONCONTIG_SAMPLES, ids=_ids(NONCONTIG_SAMPLES))
def test_forward_noncontiguous(s):
    check_forward(s, F64, noncontig=True)


@pytest.mark.parametrize("s", GRAD_SAMPLES, ids=_ids(GRAD_SAMPLES))
def test_gradcheck(s):
    check_grad(s)


_GRAD_NONCONTIG = [s for s in GRAD_SAMPLES if s in NONCONTIG_SAMPLES]


@pytest.mark.parametrize("s", _GRAD_NONCONTIG, ids=_ids(_GRAD_NONCONTIG))
def test_gradcheck_noncontiguous(s):
    check_grad(s, noncontig=True)


# ------------------------------------------------------------------------------ meta-tests
class _Recorder:
    """A capture handler that records each dispatched op's name and runs it eagerly: the
    registry's capture seam used as a spy."""

    def __init__(self):
        self.seen = set()

    def record(self, op, inputs, attrs):
        self.seen.add(op.name)
        return run_eager(op, inputs, attrs)


def dispatched_ops(s: Sample) -> set:
    """Registry ops that ``s`` dispatches, forward and backward."""
    rec = _Recorder()
    prev = STATE.capture
    STATE.capture = rec
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            tensors, _ = make_inputs(s, F64, requires_grad=s.grad and bool(s.grad_positions()))
            outs = [o for o in flat_tensors(s.fn(*tensors)) if o.requires_grad]
            leaves = [t for t in tensors if t.requires_grad]
            if outs and leaves:
                grads = [runba.ones_like(o) for o in outs]
                runba.autograd.grad(outs, leaves, grads, allow_unused=True)
    finally:
        STATE.capture = prev
    return rec.seen


def test_every_registry_op_has_a_sample():
    sampled = {s.op for s in SAMPLES}
    missing = sorted(n for n in REGISTRY if n not in sampled and n not in COVERED_BY)
    assert not missing, (
        f"registry ops with no sample (add rows to tests/op_db.py, or map them in COVERED_BY "
        f"to the sample that exercises them): {missing}"
    )


def test_covered_by_is_consistent():
    for name, sid in COVERED_BY.items():
        assert name in REGISTRY, f"COVERED_BY names {name!r}, which is not a registry op"
        assert sid in SAMPLE_BY_ID, f"COVERED_BY[{name!r}] = {sid!r} is not a sample id"


def test_required_ops_have_samples():
    sampled = {s.op for s in SAMPLES}
    missing = [n for n in REQUIRED_OPS if n not in sampled]
    assert not missing, f"ops required by issue 2 without samples: {missing}"


def _public_op_functions():
    """Every op a user can call: public runba functions defined in runba.ops.* and every
    Tensor method the ops modules contribute."""
    out = {}
    for name in runba.__all__:
        obj = getattr(runba, name)
        if callable(obj) and getattr(obj, "__module__", "").startswith("runba.ops"):
            out[name] = obj
    out.update(METHODS)
    return out


def _sampled_functions():
    fns = set()
    for s in SAMPLES:
        for where in (runba, E, R, IX, runba.Tensor):
            f = getattr(where, s.op, None)
            if callable(f):
                fns.add(f)
    return fns


def test_every_public_op_function_has_a_sample():
    sampled = _sampled_functions()
    missing = sorted(
        n for n, f in _public_op_functions().items() if f not in sampled and n not in NOT_SAMPLED
    )
    assert not missing, f"public op functions with no sample in tests/op_db.py: {missing}"


_COVER_CASES = [(name, SAMPLE_BY_ID[sid]) for name, sid in sorted(COVERED_BY.items())] + [
    (name, s) for s in SAMPLES for name in s.covers
]
_SELF_CASES = [s for s in SAMPLES if (s.prim or s.op) in REGISTRY]


@pytest.mark.parametrize("name,s", _COVER_CASES, ids=[f"{n}<-{s.id}" for n, s in _COVER_CASES])
def test_covering_sample_dispatches_op(name, s):
    assert name in dispatched_ops(s), f"sample {s.id} never dispatches registry op {name!r}"


@pytest.mark.parametrize("s", _SELF_CASES, ids=_ids(_SELF_CASES))
def test_sample_dispatches_its_op(s):
    prim = s.prim or s.op
    assert prim in dispatched_ops(s), f"sample {s.id} never dispatches registry op {prim!r}"


# ------------------------------------------------------------------------------ exact gradients
DREF_SAMPLES = [s for s in SAMPLES if s.dref is not None and s.grad]


@pytest.mark.parametrize("s", DREF_SAMPLES, ids=_ids(DREF_SAMPLES))
def test_gradient_vs_handwritten_derivative(s):
    """Backward of sum(output) against a hand-written derivative, float64, tight: catches
    precision losses finite differences cannot see (e.g. a float32 constant in a vjp)."""
    tensors, arrays = make_inputs(s, F64, requires_grad=True)
    outs = flat_tensors(s.fn(*tensors))
    leaves = [tensors[i] for i in s.grad_positions()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = s.dref(*arrays)
    live = [o for o in outs if o.requires_grad]
    got = (
        runba.autograd.grad(live, leaves, [runba.ones_like(o) for o in live], allow_unused=True)
        if live
        else [None] * len(leaves)
    )
    for k, (g, w) in enumerate(zip(got, want)):
        gv = np.zeros(leaves[k].shape) if g is None else g.numpy()
        if g is not None:
            assert g.dtype is F64 and tuple(g.shape) == tuple(leaves[k].shape)
        np.testing.assert_allclose(gv, w, rtol=1e-11, atol=1e-13, err_msg=f"input {k}")


# ------------------------------------------------------------------------------ promotion
from op_db import PROMOTION, PROMOTION_RAISES  # noqa: E402


@pytest.mark.parametrize(
    "thunk,dtype,values", [p[1:] for p in PROMOTION], ids=[p[0] for p in PROMOTION]
)
def test_dtype_promotion(thunk, dtype, values):
    out = thunk()
    assert out.dtype is dtype, f"got {out.dtype}, PyTorch gives {dtype}"
    np.testing.assert_allclose(
        out.numpy().astype(np.float64), np.asarray(values, dtype=np.float64), rtol=1e-6
    )


@pytest.mark.parametrize("name", sorted(PROMOTION_RAISES))
def test_dtype_promotion_raises(name):
    with pytest.raises(RuntimeError):
        PROMOTION_RAISES[name]()


# ------------------------------------------------------------------------------ semantics
@pytest.mark.parametrize("op", ["max", "min"])
def test_max_min_with_dim_return_values_indices_namedtuple(op):
    x = runba.tensor([[1.0, 5.0, 3.0], [4.0, 2.0, 6.0]], dtype=F64, requires_grad=True)
    r = getattr(x, op)(dim=1)
    assert type(r).__name__ == op and r._fields == ("values", "indices")
    values, indices = r
    assert r[0] is r.values and r[1] is r.indices
    want_i = [1, 2] if op == "max" else [0, 1]
    assert indices.dtype is runba.int64 and indices.tolist() == want_i
    assert values.tolist() == ([5.0, 6.0] if op == "max" else [1.0, 2.0])
    r.values.sum().backward()
    g = np.zeros((2, 3))
    g[[0, 1], want_i] = 1
    np.testing.assert_array_equal(x.grad.numpy(), g)
    full = getattr(runba, op)(x)
    assert isinstance(full, runba.Tensor) and full.ndim == 0


@pytest.mark.parametrize("dtype", [F32, F64, runba.float16])
def test_nan_to_num_default_extremes_per_dtype(dtype):
    x = runba.tensor([math.nan, math.inf, -math.inf, 1.0], dtype=dtype)
    info = np.finfo(dtype.np)
    out = E.nan_to_num(x)
    assert out.dtype is dtype
    np.testing.assert_array_equal(out.numpy(), np.array([0, info.max, info.min, 1], dtype.np))


def test_cast_gradient_is_cast_back():
    x = runba.tensor([1.5, -2.0], dtype=F64, requires_grad=True)
    y = x.float()
    assert y.dtype is F32 and y.requires_grad
    (y * runba.tensor([2.0, 3.0])).sum().backward()
    assert x.grad.dtype is F64
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 3.0])


@pytest.mark.parametrize("fn", [R.softmax, R.log_softmax], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_softmax_stable_for_huge_inputs(fn, dtype):
    x = runba.tensor([[1e30, 0.0, -1e30], [88.0, 89.0, 90.0], [-1e4, -1e4, -1e4]], dtype=dtype)
    out = fn(x, dim=1).numpy()
    assert np.isfinite(out).all()
    x64 = x.numpy().astype(np.float64)
    want = ref_softmax(x64, 1) if fn is R.softmax else ref_log_softmax(x64, 1)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)


def test_inplace_bumps_version_and_rebases_grad_fn():
    a = runba.tensor([1.0, 2.0], dtype=F64, requires_grad=True)
    y = a * 1
    v0 = y._version_count
    y.mul_(3)
    assert y._version_count == v0 + 1
    assert y.grad_fn is not None and "Copy" in y.grad_fn.name()
    y.sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [3.0, 3.0])


def test_setitem_through_view_without_grad_writes_base():
    x = runba.zeros(3, 4)
    x[1][2] = 5.0
    x[:, 0][::2] = runba.tensor([7.0, 8.0])
    want = np.zeros((3, 4), np.float32)
    want[1, 2] = 5
    want[[0, 2], 0] = [7, 8]
    np.testing.assert_array_equal(x.numpy(), want)


def test_setitem_through_view_with_grad():
    a = runba.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=F64, requires_grad=True)
    y = a.clone()
    y[0][1] = 10.0  # y[0] is a view of y
    y.sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [[1.0, 0.0], [1.0, 1.0]])


def test_inplace_ops_through_views_reach_the_base_gradient():
    a = runba.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=F64, requires_grad=True)
    y = a * 2
    y[:, 1].mul_(3)  # y = [[2, 12], [6, 24]]
    (y * y).sum().backward()
    # d/da of sum(y^2): 2y * dy/da, with dy/da = 2 (column 0) and 6 (column 1)
    np.testing.assert_array_equal(a.grad.numpy(), [[8.0, 144.0], [24.0, 288.0]])

    w = runba.tensor([1.0, 2.0, 3.0], dtype=F64, requires_grad=True)
    z = w * 1
    zz = z.view(3, 1)[1:]  # a view of a view
    zz += w[:2].view(2, 1) * 10
    z.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [11.0, 11.0, 1.0])
    assert z.tolist() == [1.0, 12.0, 23.0]


def test_inplace_on_a_view_of_a_leaf_that_requires_grad_raises():
    b = runba.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="add_: a view of a leaf Variable"):
        b[0:2].add_(1)
    with runba.no_grad():
        b[0:2].add_(1)  # allowed without grad mode, like torch
    assert b.tolist() == [2.0, 2.0, 1.0]


# second order: the vjp of each backward-only primitive (slice_backward, index_backward,
# scatter_add as gather's vjp, ...) is itself differentiated
_GRADGRAD = [
    "getitem-slice-step",
    "getitem-two-int-tensors",
    "getitem-bool-mask",
    "setitem-int-tensor",
    "gather-dim0",
    "scatter_add-dim1",
    "cat-dim1",
    "matmul-bcast-batch",
    "einsum-bij,bjk->bik",
    "softmax-dim1",
    "prod-one-zero",
    "prod-two-zeros",
    "prod-all-one-zero",
    "pow-same",
    "div-same",
    "index_put-functional",
    "copy_-bcast",
    "mul_-tensor",
    "amax-dim",
    "cumsum-dim0",
]


@pytest.mark.parametrize("sid", _GRADGRAD)
def test_gradgradcheck(sid):
    s = SAMPLE_BY_ID[sid]
    tensors, _ = make_inputs(s, F64, requires_grad=True)
    pos = s.grad_positions()
    outs0 = [o for o in flat_tensors(s.fn(*tensors)) if o.requires_grad]
    cot = [runba.tensor(np.random.default_rng(1).standard_normal(tuple(o.shape))) for o in outs0]

    def first_order(*args):
        # gradcheck evaluates under no_grad; differentiating inside needs grad mode back
        with runba.enable_grad():
            outs = [o for o in flat_tensors(s.fn(*args)) if o.requires_grad]
            leaves = [args[i] for i in pos]
            gs = runba.autograd.grad(outs, leaves, cot, create_graph=True, allow_unused=True)
        return tuple(g for g in gs if g is not None)

    assert gradcheck(first_order, tuple(tensors), fast_mode=True)


# ------------------------------------------------------------------------------ float16
def _writes(s: Sample) -> bool:
    return s.op.endswith("_") or s.op == "setitem" or "copy_" in s.covers


# float16 is a storage type: ops compute in float32 and round the result to float16.
# Samples that write in place are checked separately: see test_float16_inplace_write.
F16_SAMPLES = [s for s in F32_SAMPLES if not _writes(s) and s.id != "round-decimals"]


@pytest.mark.parametrize("s", F16_SAMPLES, ids=_ids(F16_SAMPLES))
def test_forward_float16(s):
    check_forward(s, runba.float16, rtol=4e-3, atol=2e-3)


def test_float16_inplace_write():
    x = runba.tensor([1.0, 2.0], dtype=runba.float16)
    x.add_(1)
    x[0] = 5.0
    np.testing.assert_array_equal(x.numpy(), np.array([5.0, 3.0], np.float16))


def test_float16_views_share_storage():
    x = runba.zeros(2, 3, dtype=runba.float16)
    views = [x[0], x.view(6), x.t()]
    x.numpy()[0, 0] = 5
    assert [v.numpy().reshape(-1)[0] for v in views] == [5, 5, 5]


# ------------------------------------------------------------------------------ torch (optional)
# When torch is importable, every sample whose call is portable runs on torch tensors too
# (op_db's module aliases E/R/IX/M/L and ``runba`` are pointed at torch for the call) and
# values, dtypes and gradients are compared. Samples bound to runba functions at definition
# time are not portable and skip. Install: pip install torch==2.13.0 (CPU).
_TORCH_FIRST_F = {
    "gelu",
    "silu",
    "softplus",
    "leaky_relu",
    "one_hot",
    "softmax",
    "log_softmax",
    "conv2d",
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
}


class _TorchNamespace:
    def __init__(self, torch):
        self._torch = torch
        self._F = torch.nn.functional

    def __getattr__(self, name):
        if name == "bool":
            return self._torch.bool
        order = (self._F, self._torch) if name in _TORCH_FIRST_F else (self._torch, self._F)
        for src in order:
            if hasattr(src, name):
                return getattr(src, name)
        raise AttributeError(name)


def _call_with_torch(torch, fn, *args):
    """``fn(*args)`` with op_db's module aliases (and ``runba``) pointed at torch."""
    import op_db

    names = ("C", "E", "R", "IX", "M", "L", "runba")
    saved = {n: getattr(op_db, n) for n in names}
    try:
        for n in names:
            setattr(op_db, n, _TorchNamespace(torch))
        return fn(*args)
    except Exception as e:  # a runba function given torch tensors: not portable
        pytest.skip(f"sample is not portable to torch: {type(e).__name__}: {e}")
    finally:
        for n, v in saved.items():
            setattr(op_db, n, v)


def _torch_run(torch, s, arrays):
    tensors = []
    for i, a in enumerate(arrays):
        t = torch.from_numpy(np.array(a, copy=True))
        if i in s.grad_positions() and s.grad:
            t.requires_grad_()
        tensors.append(t)
    out = _call_with_torch(torch, s.fn, *tensors)

    def flat(o):
        if isinstance(o, (tuple, list)):
            return [x for e in o for x in flat(e)]
        return [o]

    outs = flat(out)
    if not all(isinstance(o, torch.Tensor) for o in outs):
        pytest.skip("sample is not portable to torch (non-tensor result)")
    return tensors, outs


@pytest.mark.parametrize("s", SAMPLES, ids=_ids(SAMPLES))
def test_against_torch(s):
    torch = pytest.importorskip("torch")
    tensors, arrays = make_inputs(s, F64, requires_grad=s.grad)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ttensors, touts = _torch_run(torch, s, arrays)
        outs = flat_tensors(s.fn(*tensors))
    assert len(outs) == len(touts)
    for k, (o, t) in enumerate(zip(outs, touts)):
        assert str(t.dtype) == f"torch.{o.dtype.name}", f"output {k}: torch gives {t.dtype}"
        assert tuple(o.shape) == tuple(t.shape), f"output {k}: torch shape {tuple(t.shape)}"
        tol = 1e-10 if o.dtype is F64 else 1e-5
        np.testing.assert_allclose(
            o.detach().numpy().astype(np.float64),
            t.detach().numpy().astype(np.float64),
            rtol=tol,
            atol=tol,
            equal_nan=True,
            err_msg=f"output {k}",
        )
    pos = [i for i in s.grad_positions() if s.grad]
    live = [(o, t) for o, t in zip(outs, touts) if o.requires_grad and t.requires_grad]
    if not pos or not live or s.extra.get("torch_grad") is False:
        return
    seed = np.random.default_rng(7)
    cots = [seed.standard_normal(tuple(o.shape)) for o, _ in live]
    got = runba.autograd.grad(
        [o for o, _ in live],
        [tensors[i] for i in pos],
        [runba.tensor(c) for c in cots],
        allow_unused=True,
    )
    try:
        want = torch.autograd.grad(
            [t for _, t in live],
            [ttensors[i] for i in pos],
            [torch.from_numpy(c) for c in cots],
            allow_unused=True,
        )
    except RuntimeError as e:  # e.g. torch has no derivative for Scalar % Tensor
        pytest.skip(f"torch cannot differentiate this sample: {e}")
    for k, (g, w) in enumerate(zip(got, want)):
        gv = np.zeros(arrays[pos[k]].shape) if g is None else g.numpy()
        wv = np.zeros(arrays[pos[k]].shape) if w is None else w.numpy()
        np.testing.assert_allclose(gv, wv, rtol=1e-9, atol=1e-10, err_msg=f"grad of input {k}")


@pytest.mark.parametrize(
    "thunk,dtype,values", [p[1:] for p in PROMOTION], ids=[p[0] for p in PROMOTION]
)
def test_dtype_promotion_against_torch(thunk, dtype, values):
    """The promotion table's expectations are PyTorch's."""
    torch = pytest.importorskip("torch")
    out = _call_with_torch(torch, thunk)
    assert str(out.dtype) == f"torch.{dtype.name}"
    np.testing.assert_allclose(
        out.numpy().astype(np.float64), np.asarray(values, dtype=np.float64), rtol=1e-6
    )
