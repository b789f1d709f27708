"""Rebuilding projections from zero: the event store replayed offender by offender.

A projection fed live derives an offender's rows again at every event of theirs (it cannot
know whether more will come). A rebuild can: it reads the store stream by stream (whole
offenders, a page at a time, in the primary key's order) and gives each projection every
event of an offender at once, so each offender's rows are derived once, and each event is
read and decoded once for all the projections rebuilt. The projections' rules do not
depend on how a history's events were batched, so the views are the incremental run's.

The replay takes the store as it is when the rebuild starts (up to its last notification);
the projections' positions are then set there, and what was stored meanwhile is caught up
from the notification log as usual. Each page is stored in one transaction for every
projection, so a rebuild that stops part-way leaves whole offenders: a later catch-up (from
position 0) skips the events their histories hold already, and a new rebuild starts from zero.
Rebuilding more than one projection, each history is stored once, shared by the projections
(``projections.base.store_shared_histories``): four copies of it were the largest part of
a full rebuild's work.

On PostgreSQL the offenders can be shared between processes (``jobs``), each replaying a
range of offender ids into every projection (Python runs one thread at a time, so
processes are what use a second core); the embedded SQLite store takes one writer at a
time, so there one process does it all.
"""

from __future__ import annotations

import itertools
import multiprocessing
import queue
import resource
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import structlog

from infra.bootstrap import NOTIFICATION_LOG, Tracker, bootstrap
from infra.process import collector_paused
from infra.settings import Settings
from infra.storedjson import delivery_of
from projections.base import ReplayBatch, prune_shared_histories, store_shared_histories

log = structlog.get_logger(__name__)

# (projection, events replayed in the batch just stored)
Progress = Callable[[str, int], None]
# A range of offender ids: from the first (None: the lowest) up to, not including, the
# second (None: to the end).
OffenderRange = tuple[UUID | None, UUID | None]
# Stored events read a page at a time: a page's offenders are stored in one transaction.
# Some 20 MB of rows; larger pages gained nothing measurable.
REPLAY_PAGE = 20_000


@dataclass(frozen=True)
class Rebuilt:
    """What rebuilding one projection did."""

    projection: str
    applied: int
    seconds: float
    peak_rss_kib: int


def default_jobs(settings: Settings) -> int:
    """One process per core on PostgreSQL; one on SQLite."""
    if not settings.database_url:
        return 1
    return max(1, multiprocessing.cpu_count())


def check_jobs(settings: Settings, jobs: int) -> None:
    """Raise ValueError, saying why, if the store cannot be replayed by ``jobs`` processes."""
    if jobs < 1:
        raise ValueError(f"--jobs: expected 1 or more, got {jobs}")
    if jobs > 1 and not settings.database_url:
        raise ValueError(
            "--jobs above 1 needs PostgreSQL (MAPPA_DATABASE_URL): the embedded SQLite "
            "store takes one writer at a time"
        )


def offender_ranges(parts: int) -> list[OffenderRange]:
    """The offender ids cut into ``parts`` ranges of equal width. Offender ids are name-based
    UUIDs (hashes), spread evenly, so each range holds about as many offenders."""
    bounds: list[UUID | None] = [None]
    bounds += [UUID(int=part * (1 << 128) // parts) for part in range(1, parts)]
    bounds.append(None)
    return list(itertools.pairwise(bounds))


def rebuild_projections(
    tracker: Tracker,
    names: Sequence[str],
    jobs: int = 1,
    on_batch: Progress | None = None,
    page: int = REPLAY_PAGE,
) -> list[Rebuilt]:
    """Rebuild ``names`` from zero, replaying the store in this process (``jobs`` 1) or in
    ``jobs`` processes sharing the offenders (PostgreSQL only)."""
    check_jobs(tracker.settings, jobs)
    writers = [tracker.writer(name) for name in names]  # an unknown name fails first
    started = time.perf_counter()
    upto = tracker.max_notification_id()
    for writer in writers:
        writer.reset()
    log.info("projections reset", projections=list(names), replaying_up_to=upto, jobs=jobs)
    if jobs == 1:
        applied = replay(tracker, names, (None, None), upto, on_batch, page)
        peak_kib = _peak_rss_kib()
    else:
        applied, peak_kib = _replay_in_processes(
            tracker.settings, names, jobs, upto, on_batch, page
        )
    with tracker.views.transaction() as tx:
        prune_shared_histories(tx)  # those of an earlier rebuild no projection refers to now
    for writer in writers:
        writer.store_position(NOTIFICATION_LOG, upto)
    caught_up = tracker.catch_up(list(names), on_batch)  # stored while the replay ran
    seconds = time.perf_counter() - started
    return [Rebuilt(name, applied[name] + caught_up[name], seconds, peak_kib) for name in names]


def replay(
    tracker: Tracker,
    names: Sequence[str],
    offenders: OffenderRange,
    upto: int,
    on_batch: Progress | None = None,
    page: int = REPLAY_PAGE,
) -> dict[str, int]:
    """Replay the streams of ``offenders`` (up to notification ``upto``) into the named
    projections, a page of whole offenders at a time; return the events each applied."""
    writers = {name: tracker.writer(name) for name in names}
    applied = dict.fromkeys(names, 0)
    start, below = offenders
    mapper = tracker.records.mapper
    # With more than one projection, each history is stored once for all of them.
    shared = len(writers) > 1
    # The collector paused for the whole replay (see there): each page lives until the next
    # is read (the store's reader holds it), so pausing page by page left every page to be
    # walked by the collection that followed, as a twelfth of the replay's time. Nothing
    # outlives a page: the collector finds what little there is once the replay is done.
    with collector_paused():
        for stored in tracker.records.streams(start, below, upto, page):
            # Decoded once for every projection
            batch = ReplayBatch([delivery_of(event, mapper) for event in stored])
            with tracker.views.transaction() as tx:
                if shared:
                    store_shared_histories(tx, batch)
                for name, writer in writers.items():
                    applied[name] += writer.replay(tx, batch, shared=shared)
            if on_batch:
                for name in writers:
                    on_batch(name, len(stored))
    return applied


def _replay_in_processes(
    settings: Settings,
    names: Sequence[str],
    jobs: int,
    upto: int,
    on_batch: Progress | None,
    page: int,
) -> tuple[dict[str, int], int]:
    # Fresh interpreters ("spawn"), not forks: a fork would share this process's database
    # connections with the children.
    context = multiprocessing.get_context("spawn")
    applied = dict.fromkeys(names, 0)
    peak_kib = 0
    with context.Manager() as manager:
        progress: Any = manager.Queue()
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            pending = {
                pool.submit(
                    _replay_in_worker, settings.model_dump(), names, part, upto, page, progress
                )
                for part in offender_ranges(jobs)
            }
            while pending:
                finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                _drain(progress, on_batch)
                for future in finished:
                    counts, worker_peak_kib = future.result()  # a worker's error is raised here
                    for name, count in counts.items():
                        applied[name] += count
                    peak_kib = max(peak_kib, worker_peak_kib)
            _drain(progress, on_batch)
    return applied, peak_kib


def _drain(progress: Any, on_batch: Progress | None) -> None:
    while True:
        try:
            name, count = progress.get_nowait()
        except queue.Empty:
            return
        if on_batch:
            on_batch(name, count)


def _replay_in_worker(
    settings: dict[str, Any],
    names: Sequence[str],
    offenders: OffenderRange,
    upto: int,
    page: int,
    progress: Any,
) -> tuple[dict[str, int], int]:
    from infra.logs import configure_logging
    from infra.process import tune_garbage_collection

    tune_garbage_collection()  # the worker is a long-running process of its own
    own = Settings(**settings)
    configure_logging(own.log_format, own.log_level)
    tracker = bootstrap(own)
    try:
        counts = replay(
            tracker, names, offenders, upto, lambda name, n: progress.put((name, n)), page
        )
        return counts, _peak_rss_kib()
    finally:
        tracker.close()


def _peak_rss_kib() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
