"""``runba.cuda``: the CUDA backend is not built yet, so nothing is available.

>>> import runba
>>> runba.cuda.is_available()
False
"""


def is_available() -> bool:
    """False until runba's CUDA backend exists."""
    return False


def device_count() -> int:
    return 0


def manual_seed(seed: int) -> None:
    """Accepted for script compatibility; there is no CUDA generator to seed."""


def manual_seed_all(seed: int) -> None:
    """Accepted for script compatibility; there is no CUDA generator to seed."""


def synchronize(device=None) -> None:
    """Nothing to wait for on the CPU."""
