"""The report says when the machine itself was slower or faster than in the previous run."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from infra.bench.report import Figures
from infra.bench.run import _anchor_changes


def bench_with(**values: float) -> Any:
    figures = Figures()
    figures.define("anchor.pg_copy", "PostgreSQL COPY (anchor)", "rows/s")
    figures.define("anchor.peer", "eventsourcing ProjectionRunner (peer)", "events/s")
    figures.define("ingest.rate", "ingest", "events/s")
    for key, value in values.items():
        figures.set(key.replace("__", "."), value)
    return SimpleNamespace(figures=figures)


def test_each_anchors_change_from_the_previous_run_is_reported_and_nothing_else() -> None:
    bench = bench_with(anchor__pg_copy=75_000, anchor__peer=900, ingest__rate=9_000)
    previous = {
        "figures": {
            "anchor.pg_copy": {"value": 100_000},
            "anchor.peer": {"value": 1_000},
            "ingest.rate": {"value": 5_000},
        }
    }
    changes = _anchor_changes(bench, previous)
    assert changes.keys() == {"PostgreSQL COPY", "eventsourcing ProjectionRunner"}
    assert round(changes["PostgreSQL COPY"], 3) == -0.25
    assert round(changes["eventsourcing ProjectionRunner"], 3) == -0.1
    assert _anchor_changes(bench, None) == {}
