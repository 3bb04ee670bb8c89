"""Integer edge cases of the generated code: fused == eager (numpy), bit for bit.

numba's own integer semantics differ from numpy's at the edges: ``np.sign`` reads unsigned
values as signed (sign(uint8 200) = 255), and ``INT64_MIN // -1`` gives 0 where numpy wraps
to INT64_MIN. Division by zero must give numpy's 0 (not a SIGFPE trap) in the fused kernel.

One fused function per dtype (one kernel each): every edge is one output of it, compared
with eager separately so that a failure names the case.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from jitutil import values

import runba

SIGNED = [runba.int32, runba.int64]  # the signed integer dtypes runba has


def _check(fn, names, *args):
    with warnings.catch_warnings():  # numpy warns on integer division by zero
        warnings.simplefilter("ignore", RuntimeWarning)
        want = values(fn(*args))
        got = values(runba.fuse(fn)(*args))
    assert len(got) == len(want) == len(names)
    for name, g, w in zip(names, got, want):
        assert g.dtype == w.dtype, f"{name}: fused {g.dtype}, eager {w.dtype}"
        np.testing.assert_array_equal(g, w, err_msg=name)


def test_uint8_sign_high_values():
    x = runba.tensor(np.array([0, 1, 127, 128, 200, 255], np.uint8))
    want = np.array([0, 1, 1, 1, 1, 1], np.uint8)
    np.testing.assert_array_equal(x.sign().numpy(), want)  # eager: numpy's unsigned sign
    _check(lambda x: [x.sign()], ["sign"], x)


@pytest.mark.parametrize("dtype", SIGNED, ids=lambda d: d.name)
def test_signed_floor_divide_remainder_edges(dtype):
    """INT_MIN // -1 wraps to INT_MIN and INT_MIN % -1 is 0 (numpy); x // 0 and x % 0
    are 0. Divisors both as tensors and as Python scalars (run-time kernel arguments)."""
    info = np.iinfo(dtype.np)
    lo, hi = int(info.min), int(info.max)
    a = runba.tensor(np.array([lo, lo, lo, hi, -7, 7, 0, lo, 5, -5], dtype.np))
    b = runba.tensor(np.array([-1, 0, 1, -1, 0, 0, 0, 2, -1, 3], dtype.np))
    assert a.dtype is dtype and b.dtype is dtype

    def fn(a, b):
        c = a.clone()  # one lazy value every output reads: one kernel
        return [c // b, c % b, c.floor_divide(b), c.remainder(b), c // -1, c % -1, c // 0, c % 0]

    names = ["a // b", "a % b", "floor_divide", "remainder", "a // -1", "a % -1", "a // 0"]
    _check(fn, names + ["a % 0"], a, b)
    # the edges themselves, as numpy defines them
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        q, r = (a // b).numpy(), (a % b).numpy()
    assert q[0] == lo and r[0] == 0
    assert q[1] == 0 and r[1] == 0


def test_unsigned_division_by_zero():
    a = runba.tensor(np.array([0, 1, 7, 128, 255, 200], np.uint8))
    b = runba.tensor(np.array([0, 0, 0, 0, 3, 255], np.uint8))

    def fn(a, b):
        c = a.clone()
        return [c // b, c % b, c // 0, c % 0]

    _check(fn, ["a // b", "a % b", "a // 0", "a % 0"], a, b)


def test_narrow_intermediates_wrap_to_their_dtype_inside_a_kernel():
    # numba computes uint8/int32 in 64 bits and bools as ints; eager's numpy wraps every
    # intermediate: (250 + 250) // 2 is 122 in uint8, and True + True is True
    u8 = runba.tensor(np.array([250, 200, 3], np.uint8))
    c8 = runba.tensor(np.array([5, 4, 1], np.uint8))
    _check(
        lambda a, c: [(a + a) // 2, (a - c).float(), ((a * 2) > 200)],
        ["(a + a) // 2", "(a - c).float()", "a * 2 > 200"],
        u8,
        c8,
    )
    i32 = runba.tensor(np.array([2**31 - 1, 5], np.int32))
    _check(lambda x: [(x + 1) < 0, (x * 4).double()], ["x + 1 < 0", "(x * 4).double()"], i32)
    b = runba.tensor(np.array([True, False, True]))
    _check(lambda x: [(x + x).long(), (x * x).long()], ["(x + x).long()", "(x * x).long()"], b)
