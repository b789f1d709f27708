"""Rebuilding projections from zero, one after another or several at once.

Each projection replays the whole event store on its own, so a rebuild of all of them is
as slow as the sum of each. On PostgreSQL they can run at once, one process each (Python
runs one thread at a time, so processes are what use a second core); the embedded SQLite
store takes one writer at a time, so there they run one after another.
"""

from __future__ import annotations

import multiprocessing
import queue
import resource
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from infra.bootstrap import Tracker, bootstrap
from infra.settings import Settings

# (projection, events replayed in the batch just stored)
Progress = Callable[[str, int], None]


@dataclass(frozen=True)
class Rebuilt:
    """What rebuilding one projection did."""

    projection: str
    applied: int
    seconds: float
    peak_rss_kib: int


def default_jobs(settings: Settings, projections: int) -> int:
    """One process per projection up to one per core on PostgreSQL; one on SQLite."""
    if not settings.database_url:
        return 1
    return max(1, min(projections, multiprocessing.cpu_count()))


def check_jobs(settings: Settings, jobs: int) -> None:
    """Raise ValueError, saying why, if ``jobs`` projections cannot be rebuilt at once."""
    if jobs < 1:
        raise ValueError(f"--jobs: expected 1 or more, got {jobs}")
    if jobs > 1 and not settings.database_url:
        raise ValueError(
            "--jobs above 1 needs PostgreSQL (MAPPA_DATABASE_URL): the embedded SQLite "
            "store takes one writer at a time"
        )


def rebuild_projections(
    tracker: Tracker, names: Sequence[str], jobs: int = 1, on_batch: Progress | None = None
) -> list[Rebuilt]:
    """Rebuild ``names`` from zero: in this process one after another (``jobs`` 1), or in
    up to ``jobs`` processes of their own at once (PostgreSQL only)."""
    check_jobs(tracker.settings, jobs)
    for name in names:
        tracker.writer(name)  # an unknown name fails before anything is reset
    if jobs == 1 or len(names) == 1:
        return [_rebuild_here(tracker, name, on_batch) for name in names]
    return _rebuild_in_processes(tracker.settings, names, jobs, on_batch)


def _rebuild_here(tracker: Tracker, name: str, on_batch: Progress | None) -> Rebuilt:
    started = time.perf_counter()
    applied = tracker.rebuild(name, on_batch)
    return Rebuilt(name, applied, time.perf_counter() - started, _peak_rss_kib())


def _rebuild_in_processes(
    settings: Settings, names: Sequence[str], jobs: int, on_batch: Progress | None
) -> list[Rebuilt]:
    # Fresh interpreters ("spawn"), not forks: a fork would share this process's database
    # connections with the children.
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        progress: Any = manager.Queue()
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            pending = {
                pool.submit(_rebuild_in_worker, settings.model_dump(), name, progress)
                for name in names
            }
            done: dict[str, Rebuilt] = {}
            while pending:
                finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                _drain(progress, on_batch)
                for future in finished:
                    rebuilt = future.result()  # a worker's error is raised here
                    done[rebuilt.projection] = rebuilt
            _drain(progress, on_batch)
    return [done[name] for name in names]


def _drain(progress: Any, on_batch: Progress | None) -> None:
    while True:
        try:
            name, count = progress.get_nowait()
        except queue.Empty:
            return
        if on_batch:
            on_batch(name, count)


def _rebuild_in_worker(settings: dict[str, Any], name: str, progress: Any) -> Rebuilt:
    from infra.logs import configure_logging
    from infra.process import tune_garbage_collection

    tune_garbage_collection()  # the worker is a long-running process of its own
    own = Settings(**settings)
    configure_logging(own.log_format, own.log_level)
    tracker = bootstrap(own)
    try:
        return _rebuild_here(tracker, name, lambda n, count: progress.put((n, count)))
    finally:
        tracker.close()


def _peak_rss_kib() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
