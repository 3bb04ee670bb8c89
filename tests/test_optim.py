"""Optimizers and LR schedulers: trajectories vs numpy references written here, param groups,
state_dict round trips, zero_grad, errors, optional torch cross-check."""

import math

import numpy as np
import pytest

import runba
from runba import optim
from runba.optim import lr_scheduler

RNG = np.random.default_rng(7)
A = RNG.uniform(0.5, 2.0, size=(3, 4))
TARGET = RNG.standard_normal((3, 4))
P0 = RNG.standard_normal((3, 4))
STEPS = 6


def grad_fn(p):
    """Gradient of the test loss 0.5 * sum(A * (p - TARGET)^2) + 0.1 * sum(p^3)."""
    return A * (p - TARGET) + 0.3 * p * p


def runba_loss(p):
    a, tg = runba.tensor(A), runba.tensor(TARGET)
    return 0.5 * (a * (p - tg) * (p - tg)).sum() + 0.1 * (p * p * p).sum()


def run_runba(make_opt, steps=STEPS, p0=P0):
    p = runba.tensor(p0.copy(), requires_grad=True)
    opt = make_opt([p])
    traj = []
    for _ in range(steps):
        opt.zero_grad()
        runba_loss(p).backward()
        opt.step()
        traj.append(p.detach().numpy().copy())
    return np.array(traj)


# ------------------------------------------------------------------ numpy references
def ref_sgd(lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False):
    p, buf, traj = P0.copy(), None, []
    for _ in range(STEPS):
        g = grad_fn(p)
        if maximize:
            g = -g
        if weight_decay:
            g = g + weight_decay * p
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
        traj.append(p.copy())
    return np.array(traj)


def ref_adam(lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, decoupled=False,
             maximize=False):  # fmt: skip
    b1, b2 = betas
    p = P0.copy()
    m, v, vmax, traj = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p), []
    for t in range(1, STEPS + 1):
        g = grad_fn(p)
        if maximize:
            g = -g
        if weight_decay and decoupled:
            p = p * (1 - lr * weight_decay)
        elif weight_decay:
            g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = np.maximum(vmax, v)
        v_hat = (vmax if amsgrad else v) / (1 - b2**t)
        p = p - lr / (1 - b1**t) * m / (np.sqrt(v_hat) + eps)
        traj.append(p.copy())
    return np.array(traj)


SGD_CASES = [
    {"lr": 0.1},
    {"lr": 0.05, "momentum": 0.9},
    {"lr": 0.05, "momentum": 0.9, "dampening": 0.3},
    {"lr": 0.05, "momentum": 0.8, "nesterov": True},
    {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.1},
    {"lr": 0.05, "momentum": 0.5, "nesterov": True, "weight_decay": 0.01},
    {"lr": 0.01, "maximize": True},
]


@pytest.mark.parametrize("kw", SGD_CASES)
def test_sgd_trajectory(kw):
    got = run_runba(lambda ps: optim.SGD(ps, **kw))
    np.testing.assert_allclose(got, ref_sgd(**kw), rtol=1e-12, atol=1e-12)


ADAM_CASES = [
    {"lr": 0.1},
    {"lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-6},
    {"lr": 0.05, "weight_decay": 0.1},
    {"lr": 0.05, "amsgrad": True},
    {"lr": 0.02, "maximize": True},
]


@pytest.mark.parametrize("kw", ADAM_CASES)
def test_adam_trajectory(kw):
    got = run_runba(lambda ps: optim.Adam(ps, **kw))
    np.testing.assert_allclose(got, ref_adam(**kw), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kw", [{"lr": 0.05}, {"lr": 0.05, "weight_decay": 0.3, "amsgrad": True}])
def test_adamw_trajectory(kw):
    got = run_runba(lambda ps: optim.AdamW(ps, **kw))
    ref = ref_adam(weight_decay=kw.get("weight_decay", 1e-2), decoupled=True,
                   **{k: v for k, v in kw.items() if k != "weight_decay"})  # fmt: skip
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)


def test_float32_params_stay_float32():
    p = runba.tensor(P0.astype(np.float32), requires_grad=True)
    opt = optim.Adam([p], lr=0.1, weight_decay=0.01)
    runba_loss(p.double()).backward()
    opt.step()
    assert p.dtype is runba.float32 and opt.state[p]["exp_avg"].dtype is runba.float32


def test_param_groups_with_different_lr():
    p1 = runba.tensor(P0.copy(), requires_grad=True)
    p2 = runba.tensor(P0.copy(), requires_grad=True)
    opt = optim.SGD([{"params": [p1]}, {"params": p2, "lr": 0.01, "momentum": 0.9}], lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.01]
    assert opt.param_groups[0]["momentum"] == 0 and opt.param_groups[1]["dampening"] == 0
    for _ in range(STEPS):
        opt.zero_grad()
        (runba_loss(p1) + runba_loss(p2)).backward()
        opt.step()
    np.testing.assert_allclose(p1.detach().numpy(), ref_sgd(0.1)[-1], rtol=1e-12)
    np.testing.assert_allclose(p2.detach().numpy(), ref_sgd(0.01, momentum=0.9)[-1], rtol=1e-12)


def test_add_param_group_and_errors():
    p1 = runba.zeros(2, requires_grad=True)
    opt = optim.Adam([p1], lr=0.1)
    p2 = runba.zeros(3, requires_grad=True)
    opt.add_param_group({"params": [p2], "betas": (0.5, 0.6)})
    assert opt.param_groups[1]["lr"] == 0.1 and opt.param_groups[1]["betas"] == (0.5, 0.6)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [p1]})
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        optim.SGD([p1], lr=-1)
    with pytest.raises(ValueError, match="Nesterov momentum requires"):
        optim.SGD([p1], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="Invalid beta parameter at index 1"):
        optim.Adam([p1], betas=(0.9, 1.0))
    with pytest.raises(TypeError, match="ordered collections"):
        optim.SGD({p1}, lr=0.1)
    with pytest.raises(TypeError, match="iterable of Tensors"):
        optim.SGD(p1, lr=0.1)
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([p1 * 2], lr=0.1)


def test_zero_grad_modes_and_missing_grads():
    p = runba.ones(3, requires_grad=True)
    q = runba.ones(2, requires_grad=True)  # never gets a grad: skipped by step
    opt = optim.SGD([p, q], lr=0.1, momentum=0.9)
    (p * 2).sum().backward()
    opt.step()
    assert q not in opt.state and q.tolist() == [1.0, 1.0]
    opt.zero_grad(set_to_none=False)
    assert p.grad is not None and p.grad.tolist() == [0.0, 0.0, 0.0]
    opt.zero_grad()
    assert p.grad is None


def test_step_closure_returns_loss():
    p = runba.tensor(P0.copy(), requires_grad=True)
    opt = optim.SGD([p], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = runba_loss(p)
        loss.backward()
        return loss

    with runba.no_grad():  # the closure still records: step enables grad for it
        loss = opt.step(closure)
    assert math.isclose(loss.item(), runba_loss(runba.tensor(P0)).item())
    np.testing.assert_allclose(p.detach().numpy(), ref_sgd(0.1)[0], rtol=1e-12)


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True),
        lambda ps: optim.Adam(ps, lr=0.05, amsgrad=True),
        lambda ps: optim.AdamW(ps, lr=0.05),
    ],
)
def test_state_dict_round_trip_then_identical_steps(make):
    p = runba.tensor(P0.copy(), requires_grad=True)
    opt = make([p])
    for _ in range(3):
        opt.zero_grad()
        runba_loss(p).backward()
        opt.step()
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert list(sd["state"]) == [0] and sd["param_groups"][0]["params"] == [0]

    # a fresh optimizer on a copy of the parameter, loaded from the state dict
    q = runba.tensor(p.detach().numpy().copy(), requires_grad=True)
    opt2 = make([q])
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    for key, val in opt.state[p].items():
        other = opt2.state[q][key]
        if isinstance(val, runba.Tensor):
            assert other is not val  # copied, not shared
            np.testing.assert_array_equal(other.numpy(), val.numpy())
        else:
            assert other == val
    for _ in range(3):
        for param, o in ((p, opt), (q, opt2)):
            o.zero_grad()
            runba_loss(param).backward()
            o.step()
    np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())


def test_load_state_dict_string_keys_and_mismatch():
    p = runba.tensor(P0.copy(), requires_grad=True)
    opt = optim.Adam([p], lr=0.1)
    runba_loss(p).backward()
    opt.step()
    sd = opt.state_dict()
    # as after a JSON round trip: string keys, lists for tuples
    sd = {
        "state": {str(k): v for k, v in sd["state"].items()},
        "param_groups": [{**g, "betas": list(g["betas"])} for g in sd["param_groups"]],
    }
    opt2 = optim.Adam([runba.tensor(P0.copy(), requires_grad=True)], lr=0.5)
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["lr"] == 0.1 and opt2.param_groups[0]["betas"] == (0.9, 0.999)
    assert next(iter(opt2.state.values()))["step"] == 1
    two = optim.Adam([runba.zeros(1, requires_grad=True), runba.zeros(1, requires_grad=True)])
    with pytest.raises(ValueError, match="doesn't match the size"):
        two.load_state_dict(sd)


def test_repr_lists_groups():
    opt = optim.SGD([runba.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)
    text = repr(opt)
    assert text.startswith("SGD (") and "Parameter Group 0" in text and "momentum: 0.9" in text


# ------------------------------------------------------------------ schedulers
def _lrs(make_sched, epochs, lr=0.5, groups=1):
    params = [{"params": [runba.zeros(1, requires_grad=True)], "lr": lr * (i + 1)}
              for i in range(groups)]  # fmt: skip
    opt = optim.SGD(params, lr=lr)
    sched = make_sched(opt)
    out = [sched.get_last_lr()]
    for _ in range(epochs):
        opt.step()
        sched.step()
        out.append(sched.get_last_lr())
        assert [g["lr"] for g in opt.param_groups] == out[-1]
    return np.array(out)


def test_step_lr_sequence():
    got = _lrs(lambda o: lr_scheduler.StepLR(o, step_size=3, gamma=0.1), 10, groups=2)
    ref = np.array([[b * 0.1 ** (e // 3) for b in (0.5, 1.0)] for e in range(11)])
    np.testing.assert_allclose(got, ref, rtol=1e-12)


@pytest.mark.parametrize("eta_min", [0.0, 0.01])
def test_cosine_annealing_sequence(eta_min):
    t_max = 5
    got = _lrs(lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=t_max, eta_min=eta_min), 17,
               groups=2)  # fmt: skip
    ref = np.array(
        [[eta_min + (b - eta_min) * (1 + math.cos(math.pi * e / t_max)) / 2 for b in (0.5, 1.0)]
         for e in range(18)]
    )  # fmt: skip
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)


def test_scheduler_state_dict_and_resume():
    opt = optim.SGD([runba.zeros(1, requires_grad=True)], lr=1.0)
    sched = lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    for _ in range(4):
        opt.step()
        sched.step()
    sd = sched.state_dict()
    assert "optimizer" not in sd and sd["last_epoch"] == 4 and sd["base_lrs"] == [1.0]
    opt2 = optim.SGD([runba.zeros(1, requires_grad=True)], lr=1.0)
    opt2.load_state_dict(opt.state_dict())
    sched2 = lr_scheduler.CosineAnnealingLR(opt2, T_max=10)
    sched2.load_state_dict(sd)
    for _ in range(3):
        for o, s in ((opt, sched), (opt2, sched2)):
            o.step()
            s.step()
    assert sched.get_last_lr() == sched2.get_last_lr()
    with pytest.raises(KeyError, match="initial_lr"):
        lr_scheduler.StepLR(optim.SGD([runba.zeros(1, requires_grad=True)], lr=1.0), 2,
                            last_epoch=3)  # fmt: skip


def test_scheduler_before_optimizer_warns():
    opt = optim.SGD([runba.zeros(1, requires_grad=True)], lr=1.0)
    sched = lr_scheduler.StepLR(opt, 1)
    with pytest.warns(UserWarning, match="before `optimizer.step"):
        sched.step()


# ------------------------------------------------------------------ optional torch check
def test_against_torch_if_installed():
    torch = pytest.importorskip("torch")
    for make_r, make_t in [
        (lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01),
         lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)),
        (lambda ps: optim.Adam(ps, lr=0.05, weight_decay=0.1, amsgrad=True),
         lambda ps: torch.optim.Adam(ps, lr=0.05, weight_decay=0.1, amsgrad=True)),
        (lambda ps: optim.AdamW(ps, lr=0.05), lambda ps: torch.optim.AdamW(ps, lr=0.05)),
    ]:  # fmt: skip
        got = run_runba(make_r)
        p = torch.tensor(P0.copy(), requires_grad=True)
        opt = make_t([p])
        a, tg = torch.tensor(A), torch.tensor(TARGET)
        traj = []
        for _ in range(STEPS):
            opt.zero_grad()
            (0.5 * (a * (p - tg) ** 2).sum() + 0.1 * (p**3).sum()).backward()
            opt.step()
            traj.append(p.detach().numpy().copy())
        np.testing.assert_allclose(got, np.array(traj), rtol=1e-10, atol=1e-12)
        ts = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4, eta_min=0.001)
        rs = lr_scheduler.CosineAnnealingLR(make_r([runba.zeros(1, requires_grad=True)]), T_max=4,
                                            eta_min=0.001)  # fmt: skip
        for _ in range(9):
            opt.step()
            ts.step()
            rs.optimizer.step()
            rs.step()
            np.testing.assert_allclose(rs.get_last_lr(), ts.get_last_lr(), rtol=1e-12)
