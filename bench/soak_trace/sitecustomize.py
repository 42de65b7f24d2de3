"""Allocation tracing for `python -m bench.soak --trace MODULE` (a leak hunt, never in a normal run).

`bench.soak` puts this directory first on the children's PYTHONPATH, so every Python child imports this module at
start-up; only the one started as ``python -m MODULE`` (``ZETA_TRACE_MODULE``) traces: ``ZETA_TRACE_AFTER``
seconds after start (tracing the imports makes start-up far slower than the harness waits for), it starts
tracemalloc and then dumps a snapshot every ``ZETA_TRACE_EVERY`` seconds into ``ZETA_TRACE_DIR``, which the soak
compares at the end. Memory allocated before tracing starts is not traced; growth after it is.
"""

import os
import sys
import threading
import time
import tracemalloc

FRAMES = 10  # enough to see which caller of a library keeps the memory


def _trace_forever(directory: str, after: float, every: float) -> None:
    time.sleep(after)
    tracemalloc.start(FRAMES)
    for n in range(1_000_000):
        time.sleep(every)
        snapshot = tracemalloc.take_snapshot()
        snapshot.dump(os.path.join(directory, f"{os.getpid()}-{n:04d}.snap"))


_directory, _module = os.environ.get("ZETA_TRACE_DIR"), os.environ.get("ZETA_TRACE_MODULE")
if _directory and _module and _module in getattr(sys, "orig_argv", []):
    _after = float(os.environ.get("ZETA_TRACE_AFTER", "60"))
    _every = float(os.environ.get("ZETA_TRACE_EVERY", "60"))
    threading.Thread(
        target=_trace_forever, args=(_directory, _after, _every), daemon=True, name="trace"
    ).start()
