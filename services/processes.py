"""`--processes N`: a parent that forks N workers sharing the listening sockets.

Every worker is a complete server (its own event loop, Redis/MySQL/HTTP clients); all state
lives in Redis and MySQL, so any request may land on any worker. The parent only forwards
SIGINT/SIGTERM and restarts a worker that crashed.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Callable

from services.accounts.mobiles import canonical_mobile
from services.metrics import MULTIPROC_ENV

log = logging.getLogger(__name__)
MAX_RESTARTS = 20
# A worker that could not start (config, port, Redis/MySQL down) exits with this code: the
# parent does not restart it, since the next attempt would fail the same way.
STARTUP_FAILED = 3


def prepare_multiprocess_metrics() -> str:
    """A fresh folder for prometheus_client's per-process files (set before any metric)."""
    directory = os.environ.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix="smsreg-metrics-")
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    os.environ[MULTIPROC_ENV] = directory
    return directory


def supervise(count: int, worker: Callable[[], int]) -> int:
    """Run worker() in `count` forked processes until they all exit; returns an exit code."""
    children: dict[int, int] = {}
    stopping = False

    def start(slot: int) -> None:
        pid = os.fork()
        if pid == 0:
            # The worker installs its own handlers on its event loop.
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            code = 1
            try:
                code = worker()
            finally:
                os._exit(code)
        children[pid] = slot

    def forward(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    for slot in range(count):
        start(slot)
    restarts, worst = 0, 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if pid not in children:
            continue  # not a worker of ours
        slot = children.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        worst = max(worst, abs(code))
        if code == STARTUP_FAILED and not stopping:
            forward(signal.SIGTERM, None)
            return 1
        if not stopping and code != 0 and restarts < MAX_RESTARTS:
            log.error("worker %d (pid %d) exited with %d: restarting it", slot, pid, code)
            restarts += 1
            start(slot)
    return 0 if stopping else worst


GC_YOUNG_THRESHOLD = 10_000  # net allocations between two young collections (default 700)


def settle_garbage_collector() -> None:
    """Take what the ready process holds out of garbage collection, and collect less often.

    A collection of the oldest generation walks every object the process holds, and with
    everything loaded (phonenumbers' metadata, the pools, the routes) that stalls the event
    loop for tens of ms, which every request in flight feels (bench: pauses up to 30-38 ms
    during a send flood). What exists once the process is ready lives until it stops: frozen,
    it is never walked again. The youngest generation is collected every GC_YOUNG_THRESHOLD
    net allocations instead of 700: a request allocates hundreds of short-lived objects.
    """
    canonical_mobile("13800138000")  # phonenumbers loads China's metadata now, not mid-request
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
