"""Test-session setup: one per-run kernel cache dir shared by all workers."""

import os
import tempfile

# Before runba imports: compiled kernels (generated and hand-written) go to a cache shared
# by this run's workers (pytest-xdist workers inherit it from the controller's environment).
if "RUNBA_CACHE_DIR" not in os.environ:
    _run_dir = os.path.join(tempfile.gettempdir(), f"runba-test-cache-{os.getppid()}")
    os.environ["RUNBA_CACHE_DIR"] = _run_dir

# Fused kernels' fresh output buffers start as NaN in tests (runtime._new_buffer): an element
# a kernel forgets to write fails the comparison instead of passing on recycled memory.
os.environ.setdefault("RUNBA_POISON_OUTPUTS", "1")
