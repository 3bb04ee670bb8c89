"""The counter-based Philox stream: known answers, seeding, generators, distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest

import runba
from runba.random import Generator, philox4x32

# Random123 known-answer tests for Philox4x32-10 (kat_vectors):
# (counter words, key words, expected output words)
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    (
        (0xFFFFFFFF,) * 4,
        (0xFFFFFFFF, 0xFFFFFFFF),
        (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD),
    ),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize("counter,key,expected", KAT)
def test_philox4x32_10_known_answers(counter, key, expected):
    out = philox4x32(np.array([counter], dtype=np.uint32), key)
    assert out.dtype == np.uint32
    assert out.shape == (1, 4)
    assert tuple(int(v) for v in out[0]) == expected


def test_philox4x32_vectorised_rows_are_independent():
    counters = np.array([k[0] for k in KAT], dtype=np.uint32)
    # one key per call: run the batch under the first key, compare row 0; and each row alone
    batch = philox4x32(counters, KAT[0][1])
    assert tuple(int(v) for v in batch[0]) == KAT[0][2]
    for i, c in enumerate(counters):
        assert np.array_equal(philox4x32(c[None, :], KAT[0][1])[0], batch[i])


def test_philox4x32_matches_pure_python_reference():
    # numpy's Philox bit generator is Philox4x64, so the reference is a plain-int
    # Philox4x32-10 written from the Random123 paper.
    def mulhilo(a, b):
        p = a * b
        return p >> 32, p & 0xFFFFFFFF

    def ref(ctr, key):
        c, k = list(ctr), list(key)
        for r in range(10):
            if r:
                k = [(k[0] + 0x9E3779B9) & 0xFFFFFFFF, (k[1] + 0xBB67AE85) & 0xFFFFFFFF]
            hi0, lo0 = mulhilo(0xD2511F53, c[0])
            hi1, lo1 = mulhilo(0xCD9E8D57, c[2])
            c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0]
        return tuple(c)

    rng = np.random.default_rng(123)
    ctrs = rng.integers(0, 2**32, size=(16, 4), dtype=np.uint64).astype(np.uint32)
    key = (0x12345678, 0x9ABCDEF0)
    out = philox4x32(ctrs, key)
    for row, ctr in zip(out, ctrs):
        assert tuple(int(v) for v in row) == ref([int(v) for v in ctr], key)


# ---------------------------------------------------------------------------- seeding
def test_manual_seed_reproducible():
    runba.manual_seed(1234)
    a = runba.rand(100)
    b = runba.randn(7, 3)
    c = runba.randint(0, 10, (20,))
    d = runba.randperm(12)
    runba.manual_seed(1234)
    assert np.array_equal(runba.rand(100).numpy(), a.numpy())
    assert np.array_equal(runba.randn(7, 3).numpy(), b.numpy())
    assert np.array_equal(runba.randint(0, 10, (20,)).numpy(), c.numpy())
    assert np.array_equal(runba.randperm(12).numpy(), d.numpy())


def test_different_seeds_and_successive_draws_differ():
    runba.manual_seed(0)
    a = runba.rand(64).numpy()
    b = runba.rand(64).numpy()
    runba.manual_seed(1)
    c = runba.rand(64).numpy()
    assert not np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_manual_seed_returns_generator_and_initial_seed():
    g = runba.manual_seed(77)
    assert isinstance(g, Generator)
    assert runba.initial_seed() == 77


def test_generators_are_independent():
    g1 = Generator().manual_seed(5)
    g2 = Generator().manual_seed(5)
    runba.manual_seed(5)
    x1 = runba.rand(10, generator=g1)
    # draws on the default generator and on g1 do not advance g2
    runba.rand(10)
    runba.rand(10, generator=g1)
    x2 = runba.rand(10, generator=g2)
    assert np.array_equal(x1.numpy(), x2.numpy())
    # the default generator, seeded the same, gives the same stream as a fresh generator
    runba.manual_seed(5)
    assert np.array_equal(runba.rand(10).numpy(), x1.numpy())


def test_generator_draw_does_not_touch_default_stream():
    runba.manual_seed(9)
    expected = runba.randn(5).numpy()
    runba.manual_seed(9)
    g = Generator().manual_seed(100)
    runba.randn(50, generator=g)
    assert np.array_equal(runba.randn(5).numpy(), expected)


def test_get_set_rng_state_roundtrip():
    runba.manual_seed(3)
    runba.rand(17)  # move the offset
    state = runba.get_rng_state()
    a = runba.randn(9).numpy()
    runba.rand(5)
    runba.set_rng_state(state)
    assert np.array_equal(runba.randn(9).numpy(), a)


def test_generator_get_set_state_roundtrip_with_big_seed():
    g = Generator().manual_seed(2**40 + 12345)
    g.random_bits(4 * 2**3)
    st = g.get_state()
    a = runba.rand(6, generator=g).numpy()
    h = Generator().set_state(st)
    assert h.initial_seed() == 2**40 + 12345
    assert np.array_equal(runba.rand(6, generator=h).numpy(), a)


def test_bits_are_a_function_of_seed_offset_index():
    # drawing 8 words in one call or 4 + 4 gives the same stream (one Philox block = 4 words)
    g1 = Generator().manual_seed(11)
    g2 = Generator().manual_seed(11)
    a = g1.random_bits(8)
    b = np.concatenate([g2.random_bits(4), g2.random_bits(4)])
    assert np.array_equal(a, b)


# ---------------------------------------------------------------------------- distributions
N = 200_000


def test_rand_uniform_moments_and_range():
    runba.manual_seed(0)
    x = runba.rand(N).numpy().astype(np.float64)
    assert x.min() >= 0.0 and x.max() < 1.0
    # mean 1/2, var 1/12; standard error of the mean sqrt(1/12/N) ~ 6.5e-4: 6 sigma bounds
    assert abs(x.mean() - 0.5) < 6 * math.sqrt(1 / 12 / N)
    assert abs(x.var() - 1 / 12) < 0.002
    hist, _ = np.histogram(x, bins=10, range=(0, 1))
    assert np.all(np.abs(hist - N / 10) < 6 * math.sqrt(N / 10))


@pytest.mark.parametrize("dtype", [runba.float32, runba.float64, runba.float16])
def test_rand_dtypes(dtype):
    x = runba.rand(1000, dtype=dtype)
    assert x.dtype is dtype
    v = x.numpy()
    assert v.dtype == dtype.np
    assert v.min() >= 0 and v.max() < 1


def test_rand_float16_never_rounds_up_to_one():
    # float32 draws above 1 - 2**-12 round to 1.0 in float16 (p ~ 2.4e-4 per draw); the
    # interval is [0, 1) in every dtype
    runba.manual_seed(0)
    v = runba.rand(200_000, dtype=runba.float16).numpy()
    assert v.max() < 1.0
    assert v.min() >= 0.0


def test_randn_moments():
    runba.manual_seed(1)
    x = runba.randn(N).numpy().astype(np.float64)
    assert abs(x.mean()) < 6 / math.sqrt(N)
    assert abs(x.var() - 1) < 0.02
    # tails: P(|z| > 2) ~ 0.0455
    assert abs((np.abs(x) > 2).mean() - 0.0455) < 0.003
    skew = ((x - x.mean()) ** 3).mean()
    assert abs(skew) < 0.05


def test_randn_float64_and_shape():
    x = runba.randn(3, 4, dtype=runba.float64)
    assert x.shape == (3, 4) and x.dtype is runba.float64
    y = runba.randn((2, 5))
    assert y.shape == (2, 5) and y.dtype is runba.float32


def test_randint_range_and_coverage():
    runba.manual_seed(2)
    x = runba.randint(-3, 4, (10_000,))
    assert x.dtype is runba.int64
    v = x.numpy()
    assert v.min() == -3 and v.max() == 3
    counts = np.bincount(v + 3)
    assert np.all(np.abs(counts - 10_000 / 7) < 6 * math.sqrt(10_000 / 7))
    y = runba.randint(5, (3, 2))
    assert y.shape == (3, 2) and y.numpy().min() >= 0 and y.numpy().max() < 5


def test_randint_dtype_and_empty_range():
    assert runba.randint(0, 2, (4,), dtype=runba.int32).dtype is runba.int32
    with pytest.raises(RuntimeError):
        runba.randint(3, 3, (2,))


@pytest.mark.parametrize("n", [0, 1, 2, 17, 1000])
def test_randperm_is_permutation(n):
    p = runba.randperm(n)
    assert p.dtype is runba.int64
    assert sorted(p.tolist()) == list(range(n))


def test_randperm_is_not_identity_and_varies():
    runba.manual_seed(0)
    a = runba.randperm(50).tolist()
    b = runba.randperm(50).tolist()
    assert a != list(range(50)) and a != b


def test_normal_and_uniform_inplace():
    runba.manual_seed(4)
    x = runba.empty(N).normal_(2.0, 3.0)
    v = x.numpy().astype(np.float64)
    assert abs(v.mean() - 2.0) < 6 * 3 / math.sqrt(N)
    assert abs(v.std() - 3.0) < 0.05
    u = runba.empty(N, dtype=runba.float64).uniform_(-2.0, 5.0)
    w = u.numpy()
    assert u.dtype is runba.float64
    assert w.min() >= -2.0 and w.max() < 5.0
    assert abs(w.mean() - 1.5) < 6 * 7 / math.sqrt(12 * N)


def test_inplace_random_returns_self_and_bumps_version():
    x = runba.zeros(4)
    v = x._version_count
    assert x.normal_() is x
    assert x.uniform_() is x
    assert x._version_count > v


def test_normal_inplace_reproducible_with_generator():
    g = Generator().manual_seed(8)
    a = runba.empty(5).normal_(generator=g).numpy().copy()
    g.manual_seed(8)
    b = runba.empty(5).normal_(generator=g).numpy()
    assert np.array_equal(a, b)


def test_generator_threads_never_share_counters():
    import threading

    g = runba.Generator().manual_seed(7)
    draws = []

    def worker():
        for _ in range(50):
            draws.append(g.random_bits(4096).tobytes())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(draws)) == len(draws) == 200
    assert g._offset == 200 * 1024
