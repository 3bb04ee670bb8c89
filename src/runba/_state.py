"""Per-thread modes: grad mode and capture mode (DESIGN §3).

A DataLoader thread never records into the main thread's graph, so both modes live in a
``threading.local``. Nothing else in runba is hidden global state.
"""

import threading


class _ThreadState(threading.local):
    def __init__(self):
        self.grad_enabled = True
        # The capture handler (the JIT's recorder) or None for eager execution.
        self.capture = None
        # The JIT's pending lazy graph of this thread (runba.jit.graph.Graph) or None.
        self.graph = None
        # The fused function or module running now (its graphs count its specialisations),
        # and a number for the current call of it (graphs of one call are not respecialisations)
        self.fuse_origin = None
        self.fuse_call = 0


STATE = _ThreadState()
