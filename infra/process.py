"""Process-wide tuning for the tracker's long-running work (``mappa run``, ingest, rebuild)."""

from __future__ import annotations

import gc

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
