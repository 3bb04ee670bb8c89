"""Counter-based random numbers: Philox4x32-10 keyed by (seed), indexed by a 64-bit counter.

A :class:`Generator` is just ``(seed, offset)``. Drawing ``n`` values uses counters
``offset .. offset + ceil(n / 4) - 1`` and advances ``offset``: the bits for element ``i`` are a
pure function of ``(seed, offset, i)``, so eager code and generated kernels (which will carry
the same function) draw identical dropout masks, and a fused kernel can regenerate a mask
instead of saving it.

>>> import runba
>>> _ = runba.manual_seed(0)
>>> a = runba.rand(3)
>>> _ = runba.manual_seed(0)
>>> bool((runba.rand(3) == a).all())
True
"""

from __future__ import annotations

import threading

import numpy as np

__all__ = [
    "Generator",
    "default_generator",
    "manual_seed",
    "seed",
    "initial_seed",
    "get_rng_state",
    "set_rng_state",
    "philox4x32",
]

_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint32(0x9E3779B9)
_W1 = np.uint32(0xBB67AE85)
_MASK32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)


def philox4x32(counter: np.ndarray, key: tuple[int, int], rounds: int = 10) -> np.ndarray:
    """Philox4x32 on an ``(n, 4)`` uint32 counter array with a 2x32-bit key.

    Returns an ``(n, 4)`` uint32 array of random bits.
    """
    c0, c1, c2, c3 = (counter[:, i].astype(np.uint64) for i in range(4))
    k0, k1 = np.uint32(key[0]), np.uint32(key[1])
    with np.errstate(over="ignore"):
        for r in range(rounds):
            if r:
                k0 = np.uint32((int(k0) + int(_W0)) & 0xFFFFFFFF)
                k1 = np.uint32((int(k1) + int(_W1)) & 0xFFFFFFFF)
            p0 = _M0 * c0
            p1 = _M1 * c2
            hi0, lo0 = p0 >> _SHIFT32, p0 & _MASK32
            hi1, lo1 = p1 >> _SHIFT32, p1 & _MASK32
            c0, c1, c2, c3 = (
                hi1 ^ c1 ^ np.uint64(k0),
                lo1,
                hi0 ^ c3 ^ np.uint64(k1),
                lo0,
            )
    return np.stack([c0, c1, c2, c3], axis=1).astype(np.uint32)


class Generator:
    """A counter-based random stream: ``(seed, offset)``.

    >>> g = Generator().manual_seed(42)
    >>> g.initial_seed()
    42
    """

    def __init__(self, device="cpu"):
        self._seed = 67280421310721
        self._offset = 0
        self._lock = threading.Lock()
        self.device = device

    def manual_seed(self, seed: int) -> Generator:
        self._seed = int(seed) & 0xFFFFFFFFFFFFFFFF
        self._offset = 0
        return self

    def seed(self) -> int:
        import os

        s = int.from_bytes(os.urandom(8), "little")
        self.manual_seed(s)
        return s

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self):
        from runba.creation import tensor

        return tensor(
            [
                self._seed & 0xFFFFFFFF,
                self._seed >> 32,
                self._offset & 0xFFFFFFFF,
                self._offset >> 32,
            ],
            dtype="int64",
        )

    def set_state(self, state) -> Generator:
        v = [int(x) for x in state.tolist()]
        self._seed = v[0] | (v[1] << 32)
        self._offset = v[2] | (v[3] << 32)
        return self

    # -- raw draws -----------------------------------------------------------------
    def random_bits(self, n: int) -> np.ndarray:
        """``n`` uint32 words; advances the counter by ``ceil(n / 4)`` blocks."""
        blocks = -(-n // 4)
        # Reserve the counter range first: DataLoader threads may draw concurrently, and the
        # numpy work below releases the GIL.
        with self._lock:
            start = self._offset
            self._offset += blocks
        idx = np.arange(start, start + blocks, dtype=np.uint64)
        counter = np.empty((blocks, 4), dtype=np.uint32)
        counter[:, 0] = (idx & _MASK32).astype(np.uint32)
        counter[:, 1] = (idx >> _SHIFT32).astype(np.uint32)
        counter[:, 2] = 0
        counter[:, 3] = 0
        key = (self._seed & 0xFFFFFFFF, self._seed >> 32)
        return philox4x32(counter, key).reshape(-1)[:n]

    def uniform(self, shape, dtype=np.float32) -> np.ndarray:
        """U[0, 1) with 11 (float16), 24 (float32) or 53 (float64) random mantissa bits.

        Each dtype gets exactly as many bits as it can hold, so the value is representable
        and never rounds up to 1.0 (a float32 draw cast to float16 would).
        """
        n = int(np.prod(shape, dtype=np.int64))
        if np.dtype(dtype) == np.float16:
            u = (self.random_bits(n) >> np.uint32(21)).astype(np.float32) * np.float32(1.0 / 2048.0)
        elif np.dtype(dtype) == np.float64:
            bits = self.random_bits(2 * n).astype(np.uint64)
            hi = bits[0::2] >> np.uint64(5)
            lo = bits[1::2] >> np.uint64(6)
            u = (hi * np.float64(67108864.0) + lo) * (1.0 / 9007199254740992.0)
        else:
            u = (self.random_bits(n) >> np.uint32(8)).astype(np.float32) * np.float32(
                1.0 / 16777216.0
            )
        return u.reshape(shape).astype(dtype, copy=False)

    def normal(self, shape, dtype=np.float32) -> np.ndarray:
        """Standard normal draws by Box-Muller (computed in float64)."""
        n = int(np.prod(shape, dtype=np.int64))
        m = -(-n // 2)
        u = self.uniform((2 * m,), np.float64)
        u1 = 1.0 - u[:m]  # (0, 1]: log never sees 0
        r = np.sqrt(-2.0 * np.log(u1))
        theta = 2.0 * np.pi * u[m:]
        z = np.concatenate([r * np.cos(theta), r * np.sin(theta)])[:n]
        return z.reshape(shape).astype(dtype)

    def integers(self, low: int, high: int, shape) -> np.ndarray:
        """Uniform integers in ``[low, high)`` (64-bit draws, negligible modulo bias)."""
        n = int(np.prod(shape, dtype=np.int64))
        span = high - low
        if span <= 0:
            raise RuntimeError(
                f"random_ expects 'from' to be less than 'to', but got from={low} >= to={high}"
            )
        bits = self.random_bits(2 * n).astype(np.uint64)
        words = (bits[0::2] << np.uint64(32)) | bits[1::2]
        return (words % np.uint64(span)).astype(np.int64).reshape(shape) + low


default_generator = Generator()


def manual_seed(seed: int) -> Generator:
    """Seed the default generator (``torch.manual_seed``)."""
    return default_generator.manual_seed(seed)


def seed() -> int:
    return default_generator.seed()


def initial_seed() -> int:
    return default_generator.initial_seed()


def get_rng_state():
    return default_generator.get_state()


def set_rng_state(state) -> None:
    default_generator.set_state(state)
