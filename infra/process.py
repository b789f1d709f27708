"""Process-wide tuning for the tracker's long-running work (``mappa run``, ingest, rebuild),
and running several copies of one consumer."""

from __future__ import annotations

import gc
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from consumers.runtime import Shutdown

log = structlog.get_logger(__name__)

# CPython's defaults are (700, 10, 10). A young collection now looks at up to 50,000 new
# objects (a few milliseconds); what survives it is frozen (see below), so no collection
# ever looks at more.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_garbage_collection() -> None:
    """Make the cyclic garbage collector look only at what is new.

    Ingest and every projector keep some 20,000 offenders or histories in memory for
    minutes (millions of objects); reference counting frees an entry when it is evicted,
    as they hold no cycles. CPython's collector nevertheless walks every surviving object
    again in its older generations: measured, a collection of the middle generation took
    100-170 ms and a full one 0.85 s over a heap of 6 million objects, stalling every
    message behind it (the slowest alerts of a national run stood still 1.3 s in ingest).

    So whatever survives one young collection is frozen: moved where the collector never
    looks again. Only a reference cycle that outlives one young collection and then
    becomes garbage is never reclaimed; measured, the tracker makes none (a full
    collection after each of 40 batches of ingest, and of each projector, found no cyclic
    garbage; kafka-python's consumer left 15 objects in 155 polls). What start-up built
    (modules, classes, schemas) is frozen at once.
    """
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    gc.callbacks.append(_FreezeSurvivors())


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run one batch without the cyclic garbage collector.

    A batch's decoded messages live until it is stored: every young collection during it
    walked them (a projector's batch of 40,000 messages is some 300,000 containers), only to
    find them alive, then freed by reference counting when the batch ended. Paused, the
    collector runs after the batch over what is still alive then, which is what the batch
    kept, not what it read: measured, a caseload catch-up spent 1.8-2.0 s in the collector
    instead of 0.5, 6-8% of its CPU. Nothing goes uncollected: cyclic garbage of the batch
    is still young when the collector runs again.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class _FreezeSurvivors:
    """After each collection, freezes what survived it; logs any collection slower than
    ``SLOW_SECONDS``: a pause of the collector stalls every message behind it, which an
    operator looking at a latency spike needs to tell from the database or the broker."""

    SLOW_SECONDS = 0.05

    def __init__(self) -> None:
        self._started = 0.0
        self._cpu_started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            self._cpu_started = time.thread_time()
            return
        gc.freeze()
        seconds = time.perf_counter() - self._started
        if seconds >= self.SLOW_SECONDS:
            # cpu_ms: the collecting thread's own CPU; much less than ms means it waited
            # (for the CPU, or for the interpreter lock held by another thread).
            log.info(
                "slow garbage collection",
                generation=info.get("generation", 0),
                ms=round(seconds * 1000, 1),
                cpu_ms=round((time.thread_time() - self._cpu_started) * 1000, 1),
                collected=info.get("collected", 0),
            )


def run_several(
    argv: Sequence[str],
    count: int,
    shutdown: Shutdown,
    arguments_of_copy: Callable[[int], Sequence[str]] = lambda _: (),
) -> int:
    """Run ``count`` copies of the command ``argv`` (copy ``n`` with
    ``arguments_of_copy(n)`` added) until ``shutdown`` is requested, then stop them all
    (SIGTERM: each finishes its batch) and return 0 if each exited cleanly.

    The copies are consumers of one Kafka consumer group, the broker sharing the topic's
    partitions between them, or relays each given a share of the offenders: they use as
    many cores as there are copies. If one exits
    by itself (an error it does not wait out), the others are stopped too and the exit
    status says so: whoever runs this (systemd, compose) restarts the whole, rather than a
    group silently running short.
    """
    children = [
        subprocess.Popen([*argv, *arguments_of_copy(n)], stdin=subprocess.DEVNULL)
        for n in range(count)
    ]
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
