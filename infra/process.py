"""Process-wide tuning for the tracker's long-running work (``mappa run``, ingest, rebuild),
and running several copies of one consumer."""

from __future__ import annotations

import gc
import signal
import subprocess
from collections.abc import Sequence
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from consumers.runtime import Shutdown

log = structlog.get_logger(__name__)

# CPython's defaults are (700, 10, 10). A young collection now looks at up to 50,000 new
# objects (a millisecond or two); a full one needs 100 young ones in a row first.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_garbage_collection() -> None:
    """Make the cyclic garbage collector walk the tracker's caches rarely.

    Ingest and every projector keep some 20,000 offenders or histories in memory for
    minutes; reference counting frees an entry when it is evicted (they hold no cycles), so
    the cyclic collector finds next to nothing in them, yet with CPython's thresholds it
    walked them all again every few seconds: 200-400 ms a time, measured, some 15% of a
    catch-up and of a rebuild, and the stalls that made the p99 of alert latency. What
    start-up built (modules, classes, schemas) lives as long as the process: frozen, it is
    never walked at all.
    """
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run_several(argv: Sequence[str], count: int, shutdown: Shutdown) -> int:
    """Run ``count`` copies of the command ``argv`` until ``shutdown`` is requested, then
    stop them all (SIGTERM: each finishes its batch) and return 0 if each exited cleanly.

    The copies are consumers of one Kafka consumer group: the broker shares the topic's
    partitions between them, so they use as many cores as there are copies. If one exits
    by itself (an error it does not wait out), the others are stopped too and the exit
    status says so: whoever runs this (systemd, compose) restarts the whole, rather than a
    group silently running short.
    """
    children = [subprocess.Popen(list(argv), stdin=subprocess.DEVNULL) for _ in range(count)]
    log.info("processes started", count=count, pids=[child.pid for child in children])
    failed = False
    try:
        while not shutdown.wait(0.5):
            ended = [child for child in children if child.poll() is not None]
            if ended:
                log.error(
                    "a process exited by itself: stopping the others",
                    pid=ended[0].pid,
                    status=ended[0].returncode,
                )
                failed = True
                break
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            child.wait()
    statuses = [child.returncode for child in children]
    log.info("processes stopped", statuses=statuses)
    return 1 if failed or any(statuses) else 0
