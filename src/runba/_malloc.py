"""Keep freed tensor memory in the process instead of handing it back to the OS.

glibc serves blocks above ``M_MMAP_THRESHOLD`` (128 KiB by default) with a fresh ``mmap``
and returns them with ``munmap`` when freed; it also trims the heap top above
``M_TRIM_THRESHOLD``. A training step frees and re-allocates the same activation buffers
every iteration, so each step page-faults them back in: measured on the seed CNN, about
5,400 page faults and +80 % wall time per step. Raising both thresholds makes glibc reuse
the freed blocks (the same trade as PyTorch's caching allocators: the process keeps its
peak heap). ``RUNBA_MALLOC_TUNE=0`` leaves the allocator alone. Other platforms: nothing.

The mmap threshold stays at 16 MiB, not higher: a fresh mmap of 4 MiB or more is advised
onto transparent huge pages by numpy, heap memory is not, and streaming a 16 MiB array
through 4 KiB pages measured 4-5x slower here (a prange copy: 1.3 ms -> 6.4 ms).
"""

from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 16 << 20  # below: reused heap blocks; above: fresh, huge-page mmaps
TRIM_THRESHOLD = 512 << 20


def tune_allocator() -> bool:
    """Apply the thresholds once at import; returns whether glibc accepted them."""
    if os.environ.get("RUNBA_MALLOC_TUNE", "1").strip().lower() in ("0", "false", "off", "no"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - glibc only (musl's mallopt is a no-op)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    return mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok


ALLOCATOR_TUNED = tune_allocator()
