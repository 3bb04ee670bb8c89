"""Caching and define-by-run semantics: what a repeated structure skips, what changes it.

DESIGN §4: the plan cache is keyed by the graph's structure, never sizes or scalar values;
Python runs every call (loops, branches and sizes may change); backward through lazy
tensors; ``RUNBA_JIT=0`` runs fused code eagerly.
"""

import warnings

import numpy as np
import pytest
from jitutil import Delta, assert_fused_matches, block, double, randn, scaled, softmax, values

import runba
import runba.nn as nn
import runba.nn.functional as F


def test_second_identical_call_compiles_nothing():
    f = runba.fuse(block)
    x, b = randn(4, 8), randn(8, seed=1)
    with Delta() as first:
        want = f(x, b).numpy()
    with Delta() as second:
        got = f(randn(4, 8, seed=2), b).numpy()
    assert first.launches == second.launches == 1
    assert second.compiles == 0 and second.disk_hits == 0
    assert second.plan_hits == 1 and second.plan_misses == 0
    np.testing.assert_allclose(want, block(x, b).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, block(randn(4, 8, seed=2), b).numpy(), rtol=1e-5, atol=1e-6)


def test_new_size_same_structure_reuses_the_plan():
    f = runba.fuse(block)
    f(randn(4, 8), randn(8)).numpy()
    for shape in [(9, 8), (4, 33), (1000, 3)]:
        with Delta() as d:
            got = f(randn(*shape), randn(shape[1], seed=1)).numpy()
        assert d.compiles == 0 and d.plan_hits == 1, shape
        want = block(randn(*shape), randn(shape[1], seed=1)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_new_scalar_value_compiles_nothing_and_is_used():
    f = runba.fuse(scaled)
    x = randn(4, 8)
    half = f(x, 0.5).numpy()
    with Delta() as d:
        quarter = f(x, 0.25).numpy()
    assert d.compiles == 0 and d.plan_hits == 1
    np.testing.assert_array_equal(half, x.numpy() * np.float32(0.5))
    np.testing.assert_array_equal(quarter, x.numpy() * np.float32(0.25))
    with Delta() as d:  # an int scalar is another plan (promotion), the same kernel
        three = f(x, 3).numpy()
    assert d.compiles == 0
    np.testing.assert_array_equal(three, x.numpy() * 3)


def test_outputs_joined_by_shape_stay_right_when_a_later_call_has_other_sizes():
    """``y + b`` reads only inputs and joins the kernel over ``x * 2`` when their shapes are
    equal. Sizes are not in the plan key, so a call with the same structure where they
    differ must not reuse that join (it looped over x's shape: wrong values, reads past b)."""
    g = runba.fuse(lambda x, y, b: (x * 2.0, y + b))
    y, b = randn(3, 4, seed=1), randn(4, seed=2)
    expect = y.numpy() + b.numpy()
    with Delta() as d:
        outs = values(g(randn(3, 4), y, b))
    assert d.launches == 1  # joined: one kernel
    np.testing.assert_allclose(outs[1], expect, rtol=1e-6)
    for shape in [(4, 3), (2, 6), (3, 4), (5, 4)]:
        x = randn(*shape, seed=3)
        outs = values(g(x, y, b))
        np.testing.assert_allclose(outs[0], 2 * x.numpy(), rtol=1e-6)
        np.testing.assert_allclose(outs[1], expect, rtol=1e-6)
    f = runba.fuse(lambda x, y: (x * 2.0, y + 1.0))
    values(f(randn(3, 4), randn(3, 4)))
    y2 = randn(5, 6, seed=4)
    np.testing.assert_allclose(values(f(randn(3, 4), y2))[1], y2.numpy() + 1, rtol=1e-6)


@pytest.mark.parametrize(
    "fn, first, later",
    [
        # a trailing row kernel: y's last size is free against x.sum(-1, keepdim=True)
        (lambda x, y: y - x.sum(-1, keepdim=True), [(3, 5), (3, 5)], [(3, 5), (3, 7)]),
        # an interior reduction (a permuted row kernel): y's sizes on axes 0 and 2 are free
        (lambda x, y: y - x.mean((0, 2), keepdim=True), [(2, 3, 6)] * 2, [(2, 3, 6), (4, 3, 3)]),
        # a column kernel
        (lambda x, y: y * x.amax(0, keepdim=True), [(4, 5), (4, 5)], [(4, 5), (7, 5)]),
    ],
)
def test_broadcast_against_row_values_stays_right_when_a_later_call_has_other_sizes(
    fn, first, later
):
    """``y - stats``, stats a keepdim reduction of x, joins x's row kernel as a full-shape
    value when y happens to be as big as x; the structure holds no sizes, so a later call
    where y is bigger or smaller on the reduced axes must not reuse that join (it gave NaN,
    uninitialised memory, or a reshape error)."""
    f = runba.fuse(fn)
    args = [randn(*s, seed=i) for i, s in enumerate(first)]
    np.testing.assert_allclose(f(*args).numpy(), fn(*args).numpy(), rtol=1e-5, atol=1e-6)
    for _ in range(2):  # the second time from the plan cache
        args = [randn(*s, seed=i + 5) for i, s in enumerate(later)]
        got, want = f(*args).numpy(), fn(*args).numpy()
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    args = [randn(*s, seed=i + 9) for i, s in enumerate(first)]
    np.testing.assert_allclose(f(*args).numpy(), fn(*args).numpy(), rtol=1e-5, atol=1e-6)


def test_structure_change_misses_the_plan():
    f = runba.fuse(block)
    f(randn(4, 8), randn(8)).numpy()
    with Delta() as d:  # a broadcast pattern the plan has not seen: [4, 1] bias
        f(randn(4, 8), randn(4, 1)).numpy()
    assert d.plan_misses == 1 and d.plan_hits == 0


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        return F.log_softmax(self.fc2(F.relu(self.fc1(x))), dim=-1)


def _twins():
    runba.manual_seed(0)
    eager = MLP()
    fused = MLP()
    fused.load_state_dict(eager.state_dict())
    assert runba.fuse(fused) is fused
    return eager, fused


def _step(model, x, t):
    model.zero_grad()
    out = model(x)
    lazy = out._lazy is not None
    loss = F.nll_loss(out, t)
    loss.backward()
    return out, loss, lazy


def test_mlp_backward_through_lazy_tensors_matches_eager():
    eager, fused = _twins()
    x, t = randn(5, 8), runba.tensor([0, 2, 1, 1, 0])
    out_e, loss_e, _ = _step(eager, x, t)
    out_f, loss_f, lazy = _step(fused, x, t)
    assert lazy, "the fused module's output is not lazy"
    assert out_f._lazy is None
    assert loss_f.item() == pytest.approx(loss_e.item(), rel=1e-5)
    np.testing.assert_allclose(out_f.detach().numpy(), out_e.detach().numpy(), rtol=1e-5, atol=1e-6)
    for (name, p), (_, q) in zip(eager.named_parameters(), fused.named_parameters()):
        np.testing.assert_allclose(
            q.grad.numpy(), p.grad.numpy(), rtol=1e-5, atol=1e-6, err_msg=name
        )


def test_smaller_last_batch_compiles_nothing():
    eager, fused = _twins()
    t32 = runba.tensor(np.arange(32) % 3)
    _step(fused, randn(32, 8), t32)  # compiles (or loads) everything once
    _step(fused, randn(32, 8, seed=1), t32)
    x7, t7 = randn(7, 8, seed=2), runba.tensor([0, 1, 2, 0, 1, 2, 0])
    with Delta() as d:
        out_f, loss_f, _ = _step(fused, x7, t7)
        loss_f.item()
    assert d.compiles == 0, "a smaller batch compiled a kernel"
    assert d.plan_misses == 0 and d.plan_hits >= 1
    out_e, loss_e, _ = _step(eager, x7, t7)
    np.testing.assert_allclose(out_f.detach().numpy(), out_e.detach().numpy(), rtol=1e-5, atol=1e-6)
    for (name, p), (_, q) in zip(eager.named_parameters(), fused.named_parameters()):
        np.testing.assert_allclose(
            q.grad.numpy(), p.grad.numpy(), rtol=1e-5, atol=1e-6, err_msg=name
        )


def _read_only(t):
    a = np.array(t.numpy(), copy=True)
    a.flags.writeable = False
    return runba.from_numpy(a)


@pytest.mark.parametrize("kind", ["elementwise", "strided", "gemm"])
def test_read_only_inputs_compile_nothing_new(kind):
    """A read-only array (a memory-mapped file, another library's frozen data) is another
    numba type; it reaches the kernel as a writable alias of its memory, so the kernel a
    writable input compiled serves it."""
    x, w, b = randn(96, 60), randn(60, 70, seed=1), randn(70, seed=2)
    if kind == "elementwise":
        fn, args = (lambda x, b: (x[:, :1] * 2 + b[:60]).relu()), [x, b]
    elif kind == "strided":
        fn, args = (lambda x, b: (x.t() * 2 + b[:1]).tanh()), [x, b]
    else:
        fn, args = (lambda x, w, b: F.relu(x @ w + b)), [x, w, b]
    assert_fused_matches(fn, *args, rtol=1e-5, atol=1e-6)
    frozen = [_read_only(a) for a in args]
    assert not any(a.numpy().flags.writeable for a in frozen)
    with Delta() as d:
        d_fused = assert_fused_matches(fn, *frozen, rtol=1e-5, atol=1e-6)
    assert d.compiles == 0 and d_fused.launches >= 1
    assert not any(a.numpy().flags.writeable for a in frozen)  # the inputs are left as they were


def test_training_loop_with_optimizer_matches_eager():
    eager, fused = _twins()
    opt_e = runba.optim.SGD(eager.parameters(), lr=0.1, momentum=0.9)
    opt_f = runba.optim.SGD(fused.parameters(), lr=0.1, momentum=0.9)
    for step in range(3):
        x, t = randn(6, 8, seed=step), runba.tensor([0, 1, 2, 2, 1, 0])
        for model, opt in ((eager, opt_e), (fused, opt_f)):
            _step(model, x, t)
            opt.step()
    for (name, p), (_, q) in zip(eager.named_parameters(), fused.named_parameters()):
        np.testing.assert_allclose(
            q.detach().numpy(), p.detach().numpy(), rtol=1e-5, atol=1e-6, err_msg=name
        )


def dynamic(x):
    """The loop depth is read from the input's values inside the fused code (a realization
    in the middle of the function); each depth is another graph."""
    depth = int(abs(x.sum().item()) * 10) % 3 + 1
    for _ in range(depth):
        x = (x * 1.1).sin()
    return (x * x).sum(), depth


def test_dynamic_control_flow_values_and_gradients():
    depths = set()
    for seed in range(5):
        x0 = randn(3, 4, seed=seed)
        xe = x0.clone().requires_grad_()
        loss_e, depth_e = dynamic(xe)
        loss_e.backward()
        xf = x0.clone().requires_grad_()
        loss_f, depth_f = runba.fuse(dynamic)(xf)
        assert depth_f == depth_e
        assert loss_f._lazy is not None
        loss_f.backward()
        assert loss_f.item() == pytest.approx(loss_e.item(), rel=1e-5), seed
        np.testing.assert_allclose(xf.grad.numpy(), xe.grad.numpy(), rtol=1e-5, atol=1e-6)
        depths.add(depth_f)
    assert depths == {1, 2, 3}, "the seeds do not cover every loop depth"


def test_no_grad_and_requires_grad_are_part_of_the_key():
    f = runba.fuse(double)
    x = randn(4, 8).requires_grad_()
    with runba.no_grad():
        y = f(x)
    assert not y.requires_grad
    y.numpy()
    y = f(x)
    assert y.requires_grad and y._lazy is not None
    (y * y).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 8 * x.detach().numpy(), rtol=1e-6)


def test_laziness_is_contagious_outside_the_fused_function():
    x = randn(4, 8)
    y = runba.fuse(double)(x)
    z = y * 2  # outside the fused function, but y is lazy
    assert z._lazy is not None
    np.testing.assert_array_equal(z.numpy(), x.numpy() * 4)
    assert y._lazy is None


def test_input_written_in_place_after_recording_keeps_the_old_value():
    x = runba.ones(2, 3)
    y = runba.fuse(double)(x)
    x.add_(1)  # an in-place op realizes what is pending first, like eager order
    assert y.tolist() == [[2.0] * 3] * 2
    assert x.tolist() == [[2.0] * 3] * 2


def test_in_place_ops_inside_a_fused_function():
    def f(x):
        y = x * 2
        z = y + 1
        y.mul_(3)
        y[:, 0] = 0.5
        return z + y

    x = randn(4, 8)
    np.testing.assert_allclose(runba.fuse(f)(x).numpy(), f(x).numpy(), rtol=1e-6)


def test_value_reads_realize():
    f = runba.fuse(double)
    x = runba.tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    want = np.arange(6).reshape(2, 3) * 2
    assert f(x).tolist() == want.tolist()
    assert f(x)[1, 2].item() == 10.0
    assert float(f(x)[0, 1]) == 2.0
    assert int(f(x)[1, 0]) == 6
    assert np.asarray(f(x)).tolist() == want.tolist()
    assert "10." in str(f(x)) and "nan" not in str(f(x))
    assert [row.tolist() for row in f(x)] == want.tolist()
    y = f(x)
    runba.realize()
    assert y._lazy is None and y.numpy().tolist() == want.tolist()


def test_detached_lazy_value_is_realized_too():
    x = randn(4, 8)

    def f(x):
        y = x * 2
        return y.detach() + y, y.detach()

    a, b = runba.fuse(f)(x)
    np.testing.assert_allclose(a.numpy(), 4 * x.numpy(), rtol=1e-6)
    np.testing.assert_allclose(b.numpy(), 2 * x.numpy(), rtol=1e-6)


def test_data_assigned_to_a_lazy_value_is_kept_when_the_graph_runs():
    x = randn(4, 8)
    f = runba.fuse(lambda x: (x * 2, x * 2 + 1))
    y, z = f(x)
    y.data = runba.zeros(4, 8, dtype=runba.float64)
    assert y.dtype is runba.float64
    np.testing.assert_array_equal(y.numpy(), np.zeros((4, 8)))
    assert y.numpy().dtype == np.float64
    np.testing.assert_allclose(z.numpy(), 2 * x.numpy() + 1, rtol=1e-6)  # the graph ran


def test_lazy_value_read_from_another_thread():
    import threading

    y = runba.fuse(double)(randn(4, 8))
    got = []
    t = threading.Thread(target=lambda: got.append(y.numpy()))
    t.start()
    t.join()
    np.testing.assert_allclose(got[0], randn(4, 8).numpy() * 2, rtol=1e-6)


def test_backward_in_another_thread_than_the_fused_forward():
    """backward() in a second thread reads the forward's saved lazy values (another
    thread's graph): they are realized, and the gradients equal eager mode's, not NaN."""
    import threading

    def loss_of(w, x):
        return F.gelu(x @ w).sum() + (w * x[0]).tanh().sum()

    x = randn(2, 8, seed=5)
    grads = []
    for fn in (loss_of, runba.fuse(loss_of)):
        w = randn(8, 8, seed=6).requires_grad_()
        loss = fn(w, x)
        t = threading.Thread(target=loss.backward)
        t.start()
        t.join()
        grads.append(w.grad.numpy())
    assert np.isfinite(grads[1]).all()
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-5, atol=1e-6)


def test_gradient_accumulation_runs_another_threads_graph_reading_the_gradient_first():
    import threading

    w = randn(4, seed=8).requires_grad_()
    (w * 3.0).sum().backward()  # w.grad = 3
    pending = []
    t = threading.Thread(target=lambda: pending.append(runba.fuse(lambda g: g * 2.0)(w.grad)))
    t.start()
    t.join()
    assert pending[0]._lazy is not None  # recorded in that thread, not run yet
    (w * 5.0).sum().backward()  # accumulates into w.grad in place: 3 + 5
    np.testing.assert_array_equal(pending[0].numpy(), np.full(4, 6.0, np.float32))
    np.testing.assert_array_equal(w.grad.numpy(), np.full(4, 8.0, np.float32))


def test_recording_while_another_thread_runs_the_graph():
    """One thread records into its graph while a second thread reads values of that graph
    (and so runs it): an op added while the run is under way is recorded again in a new
    graph, and every value comes out right - none lost (NaN) or mixed up."""
    import queue
    import sys
    import threading

    f = runba.fuse(lambda x: x * 2.0 + 1.0)
    x = runba.ones(8)
    handed = queue.Queue()
    done = threading.Event()
    errors, wrong = [], []

    def reader():
        try:
            while not done.is_set() or not handed.empty():
                try:
                    handed.get(timeout=0.01).numpy()
                except queue.Empty:
                    pass
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    t = threading.Thread(target=reader)
    t.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", runba.jit.RecompileWarning)
            held = []
            for i in range(3000):
                y = f(x)
                held.append(y)
                if i % 3 == 0:
                    handed.put(y)
                if len(held) == 30:
                    wrong += [v for v in (h.numpy() for h in held) if not (v == 3.0).all()]
                    held.clear()
    finally:
        done.set()
        t.join()
        sys.setswitchinterval(interval)
    assert not errors, errors[0]
    assert not wrong, wrong[:3]


def test_concurrent_fused_calls_from_threads():
    import threading

    f = runba.fuse(softmax)
    xs = [randn(16, 32, seed=k) for k in range(3)]
    want = [x.softmax(-1).numpy() for x in xs]
    errors = []

    def work(k):
        try:
            for _ in range(10):
                np.testing.assert_allclose(f(xs[k]).numpy(), want[k], rtol=1e-5, atol=1e-7)
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_runba_jit_0_runs_eagerly(monkeypatch):
    monkeypatch.setenv("RUNBA_JIT", "0")
    assert not runba.jit.is_enabled()
    x = randn(4, 8)
    y = runba.fuse(double)(x)
    assert y._lazy is None
    model = runba.fuse(MLP())
    out = model(x)
    assert out._lazy is None
    with Delta() as d:
        F.nll_loss(out, runba.tensor([0, 1, 2, 0])).backward()
    assert d.graphs == 0 and d.launches == 0


def test_clear_cache_forgets_plans_and_reloads_kernels_from_disk():
    f = runba.fuse(block)
    x, b = randn(4, 8), randn(8, seed=1)
    want = f(x, b).numpy()
    runba.jit.clear_cache()
    info = runba.jit.cache_info()
    assert (info.plan_hits, info.plan_misses, info.plans_cached, info.launches) == (0, 0, 0, 0)
    with Delta() as d:
        got = f(x, b).numpy()
    assert d.plan_misses == 1 and d.compiles == 0 and d.disk_hits >= 1
    np.testing.assert_array_equal(got, want)


def test_debug_output(monkeypatch, capsys):
    x, b = randn(4, 8), randn(8)
    f = runba.fuse(block)
    monkeypatch.setenv("RUNBA_DEBUG", "1")
    f(x, b).numpy()
    err = capsys.readouterr().err
    assert "runba.jit: realized 4 nodes: 1 kernels" in err
    assert "launch" not in err
    runba.jit.clear_cache()
    monkeypatch.setenv("RUNBA_DEBUG", "4")
    f(x, b).numpy()
    err = capsys.readouterr().err
    assert "runba.jit: new plan" in err
    assert "launch R_mul_add_relu_sum_f32 sizes=[4, 8]" in err
    assert "def R_mul_add_relu_sum_f32(" in err and "prange" in err
    monkeypatch.delenv("RUNBA_DEBUG")
    f(x, b).numpy()
    assert capsys.readouterr().err == ""


def test_nothing_is_pending_after_realize():
    y = runba.fuse(double)(randn(3))
    del y  # dead values are dropped, not computed
    with Delta() as d:
        runba.realize()
    assert d.launches == 0


def test_fused_matches_eager_for_composites():
    x, y = randn(4, 8), randn(4, 8, seed=1)
    assert_fused_matches(lambda x, y: x.clamp(-0.5, 0.5).lerp(y, 0.3), x, y)
    assert_fused_matches(lambda x, y: x.var(-1) + y.std(-1), x, y, rtol=1e-5, atol=1e-6)
    assert values(runba.fuse(lambda x: x.norm(dim=-1))(x))[0].shape == (4,)


def test_outputs_never_alias_buffers_of_later_calls():
    f = runba.fuse(double)
    x = randn(4, 8)
    first = f(x)
    first_values = first.numpy().copy()
    second = f(randn(4, 8, seed=1))
    second.numpy()
    np.testing.assert_array_equal(first.numpy(), first_values)
    assert not np.shares_memory(first.numpy(), second.numpy())
    first.add_(100)  # writing one output leaves the other alone
    np.testing.assert_array_equal(second.numpy(), randn(4, 8, seed=1).numpy() * 2)


def test_same_group_at_another_graph_position_compiles_nothing():
    """Kernel source names values by their place in the group, not in the graph: the same
    group after other nodes is the same kernel (one compile, one disk entry)."""

    def alone(x, b):
        return (x * b).tanh()

    def after_another_group(p, x, b):
        return (p - 1.0).abs(), (x * b).tanh()  # separate groups: different shapes

    x, b, p = randn(4, 8, seed=5), randn(8, seed=6), randn(3, seed=7)
    runba.fuse(after_another_group)(p, x, b)[1].numpy()
    with Delta() as d:
        got = runba.fuse(alone)(x, b).numpy()
    assert d.plan_misses == 1 and d.compiles == 0 and d.disk_hits == 0
    np.testing.assert_allclose(got, alone(x, b).numpy(), rtol=1e-5, atol=1e-6)


def test_row_kernel_keeps_expensive_values_for_its_last_pass(monkeypatch, capsys):
    """Softmax computes exp once per element: the sum pass stores it in a scratch row that
    the output pass reads (one exp call per branch, serial and parallel)."""
    x = randn(6, 16, seed=3)
    runba.jit.clear_cache()
    monkeypatch.setenv("RUNBA_DEBUG", "4")
    got = runba.fuse(softmax)(x).numpy()
    src = capsys.readouterr().err
    assert "def R_amax_sub_exp_sum_div_f32(" in src
    assert src.count("exp_f32(") == 2 and "np.empty(n1, np.float32)" in src
    np.testing.assert_allclose(got, softmax(x).numpy(), rtol=1e-5, atol=1e-7)


def test_one_element_kernel_compiles_serial_without_a_numba_warning():
    """Every axis of size 1 renders a kernel without prange: it is compiled serial, so numba
    has no parallel=True without a parallel loop to warn about."""
    import warnings

    x, b = randn(1, 1, seed=11), randn(1, seed=12)
    runba.jit.clear_cache()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = runba.fuse(block)(x, b).numpy()
    np.testing.assert_allclose(got, block(x, b).numpy(), rtol=1e-6)


def test_large_outputs_reuse_freed_buffers_but_never_live_ones():
    """Outputs of POOL_MIN_BYTES or more (16 MiB where runba tuned glibc's malloc, which
    reuses smaller blocks itself; else 1 MiB) come from a pool: a dead output's block is
    reused (no fresh page faults), a block any array still views is not."""
    from runba.jit import runtime

    x = randn(runtime.POOL_MIN_BYTES // 4096, 1024, seed=21)  # POOL_MIN_BYTES of float32
    f = runba.fuse(double)
    runtime.clear_buffer_pool()
    first = f(x).numpy()
    address = first.ctypes.data
    view = first[3:, ::2]  # outlives the tensor and `first`
    del first
    kept = view.copy()
    second = f(x).numpy()
    assert second.ctypes.data != address  # a view still sees the first block
    np.testing.assert_array_equal(view, kept)
    del view
    third_addresses = set()
    for _ in range(3):  # the first block is free now; reused by one of these calls
        y = f(x).numpy()
        third_addresses.add(y.ctypes.data)
        del y
    assert address in third_addresses
    np.testing.assert_allclose(second, double(x).numpy(), rtol=1e-6)


def test_buffer_freed_while_the_pool_lock_is_held_does_not_deadlock():
    """A pooled array can die while its own thread holds the pool's lock: an allocation
    there can start a garbage collection that frees one held in a reference cycle, and its
    finalizer hands the block back on the same thread. That must neither hang nor lose it."""
    import threading

    from runba.jit import runtime

    runtime.clear_buffer_pool()
    block = np.empty(runtime.POOL_MIN_BYTES, np.uint8)

    def finalizer_inside_the_lock():
        with runtime._pool_lock:
            runtime._give_back(block)

    t = threading.Thread(target=finalizer_inside_the_lock, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "_give_back deadlocked on the pool lock"
    assert runtime._pool[block.nbytes] == [block]
    runtime.clear_buffer_pool()


def test_ninth_specialisation_of_one_fused_function_warns_once():
    """Each call with a new structure (here: one more loop iteration, one more axis) is a new
    plan; the 9th for one fused function warns, naming it and the reason, and only once. (The
    size-1 axes drop out of the kernel's layout: one kernel serves every depth.)"""

    def deepening(x, depth):
        y = x * 1.5
        for _ in range(depth):
            y = y.unsqueeze(0)
        return y

    f = runba.fuse(deepening)
    x = randn(3, seed=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for depth in range(1, 12):
            f(x, depth).numpy()
    msgs = [str(w.message) for w in caught if issubclass(w.category, runba.jit.RecompileWarning)]
    assert len(msgs) == 1, msgs
    assert "runba.fuse(" in msgs[0] and "deepening" in msgs[0] and "9 specialisations" in msgs[0]
    # a module counts its own graphs
    m = runba.fuse(nn.Linear(3, 3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with runba.no_grad():
            for n in range(1, 4):
                m(randn(n, 3)).numpy()  # new sizes: one structure
    assert not [w for w in caught if issubclass(w.category, runba.jit.RecompileWarning)]


def test_many_graphs_in_one_call_are_not_respecialisations():
    """A fused training step realizes several graphs per call (forward, backward, optimizer),
    each its own structure; repeating the same step must not warn. Structures that first
    appear in a later call still count."""

    def step(x, depth):
        y = x
        total = 0.0
        for _ in range(depth):
            y = y.unsqueeze(0) * 2.0  # one more axis: a new structure
            total += float(y.sum())  # a realization point: one graph per iteration
        return total

    f = runba.fuse(step)
    x = randn(3, seed=5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            assert f(x, 10) == step(x, 10)
    assert not [w for w in caught if issubclass(w.category, runba.jit.RecompileWarning)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for depth in range(11, 20):  # 9 new structures in later calls
            f(x, depth)
    msgs = [str(w.message) for w in caught if issubclass(w.category, runba.jit.RecompileWarning)]
    assert len(msgs) == 1 and "9 specialisations" in msgs[0], msgs


def test_respecialisation_warning_names_the_fused_call_that_varies_at_the_users_line():
    """head(encoder(x), n): head's ops join encoder's pending graph. The structure varies
    with n, so the warning names head (it named encoder), at this file's line (it pointed
    into runba/jit)."""
    encoder = runba.fuse(lambda x: (x * 2.0).relu())

    def head(h, n):
        for _ in range(n):
            h = h * 0.5 + 1.0
        return h

    fused_head = runba.fuse(head)
    x = randn(4, seed=6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for n in range(1, 12):
            fused_head(encoder(x), n).numpy()
    got = [w for w in caught if issubclass(w.category, runba.jit.RecompileWarning)]
    assert len(got) == 1, [str(w.message) for w in got]
    assert "runba.fuse(test_respecialisation" in str(got[0].message)
    assert "head" in str(got[0].message).split(")")[0]
    assert got[0].filename == __file__

    # the same when the outer call is a fused module
    class Head(nn.Module):
        def forward(self, h, n):
            return head(h, n)

    fused_module = runba.fuse(Head())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for n in range(12, 23):  # structures not planned yet (a plan hit counts nothing)
            fused_module(encoder(x), n).numpy()
    got = [w for w in caught if issubclass(w.category, runba.jit.RecompileWarning)]
    assert len(got) == 1 and "runba.fuse(Head)" in str(got[0].message), got


def _tanh_chain(x, b):
    return (x * 2 + b).tanh()


def _sub_softmax(x, b):
    return (x - b).softmax(-1)


@pytest.mark.parametrize(
    "fn, b_shape, contiguous, strided",
    [(_tanh_chain, (6, 4, 5), [120], [6, 20]), (_sub_softmax, (5,), [24, 5], [6, 4, 5])],
    ids=["pointwise", "row"],
)
def test_contiguous_and_strided_inputs_alternate_on_one_plan(
    monkeypatch, capsys, fn, b_shape, contiguous, strided
):
    """A group's layout (which axes merge into one loop) depends on its arrays' strides; the
    runtime keeps the layout found for all-C-contiguous arrays. Alternating contiguous and
    strided inputs of one shape on one plan: eager's values and each call's own layout (the
    launch sizes show the merged loops), in either order."""
    f = runba.fuse(fn)
    b = randn(*b_shape, seed=1)
    variants = [  # (input [6, 4, 5], launch sizes)
        (randn(5, 4, 6, seed=2).permute(2, 1, 0), [6, 4, 5]),  # strided before any cache
        (randn(6, 4, 5, seed=3), contiguous),
        (randn(6, 4, 10, seed=4)[..., ::2], contiguous),  # not contiguous; every axis merges
        (randn(6, 4, 5, seed=5), contiguous),
        (randn(6, 8, 5, seed=6)[:, :4], strided),  # axes 0 and 1 do not merge
        (randn(6, 4, 5, seed=7), contiguous),
        (randn(4, 6, 5, seed=8).transpose(0, 1), [6, 4, 5]),
        (randn(6, 4, 5, seed=9), contiguous),
    ]
    assert [x.is_contiguous() for x, _ in variants] == [0, 1, 0, 1, 0, 1, 0, 1]
    runba.realize()
    monkeypatch.setenv("RUNBA_DEBUG", "2")
    for k, (x, sizes) in enumerate(variants):
        capsys.readouterr()
        with Delta() as d:
            got = values(f(x, b))
        if k:
            assert d.plan_hits == 1 and d.plan_misses == 0, k
        assert f" sizes={sizes} " in capsys.readouterr().err, f"variant {k}"
        want = values(fn(x, b))
        np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6, err_msg=f"variant {k}")
