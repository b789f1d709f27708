"""The return as known now is a query over stored timelines; it must count exactly what a
fold of the stored histories counts, for every year and both layouts, on both stores."""

from __future__ import annotations

from datetime import UTC, datetime

from consumers.interchange import InvalidDocument, parse_document
from infra.generator import generate_history
from projections.statistical_return.projection import statistical_return
from tests.conftest import TrackerFactory


def test_the_read_model_counts_what_the_histories_count_for_every_year_and_layout(
    tracker_factory: TrackerFactory,
) -> None:
    tracker = tracker_factory(batch_size=97)
    facts = []
    for number, line in enumerate(generate_history("WM", 2002, 2007, 150, seed=8), start=1):
        try:
            facts.append((number, parse_document(line)))
        except InvalidDocument:
            continue
    for start in range(0, len(facts), 400):
        tracker.ingest_service().ingest(facts[start : start + 400])
        tracker.catch_up()
    far_future = datetime(2100, 1, 1, tzinfo=UTC)
    compared = 0
    with tracker.views.transaction() as tx:
        for area in ("WM", "DUR", "GLO"):
            for year in range(2001, 2010):
                for layout in ("2004", "2008"):
                    from_timelines = statistical_return(tx, area, year, layout)
                    folded = statistical_return(tx, area, year, layout, as_known_on=far_future)
                    folded["asKnownOn"] = None
                    assert from_timelines == folded, (area, year, layout)
                    compared += from_timelines["i"] + from_timelines["viii_distinct"]
    assert compared > 0, "the history produced no figures to compare"
