"""The return as known now is a query over stored timelines; it must count exactly what a
fold of the stored histories counts, for every year and both layouts, on both stores."""

from __future__ import annotations

from datetime import UTC, datetime

from consumers.interchange import InvalidDocument, parse_document
from domain.offender import ReportedFact
from infra.generator import generate_history
from projections.statistical_return.national import national_returns, store_areas
from projections.statistical_return.projection import statistical_return
from tests.conftest import TrackerFactory


def conforming_facts(
    area: str, first_year: int, last_year: int, offenders: int, seed: int
) -> list[tuple[int, ReportedFact]]:
    """A generated history's facts, by line number, without its deliberately bad lines."""
    facts = []
    for number, line in enumerate(
        generate_history(area, first_year, last_year, offenders, seed=seed), start=1
    ):
        try:
            facts.append((number, parse_document(line)))
        except InvalidDocument:
            continue
    return facts


def test_the_read_model_counts_what_the_histories_count_for_every_year_and_layout(
    tracker_factory: TrackerFactory,
) -> None:
    tracker = tracker_factory(batch_size=97)
    facts = conforming_facts("WM", 2002, 2007, 150, seed=8)
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


def test_national_returns_of_several_years_are_each_years_area_returns(
    tracker_factory: TrackerFactory,
) -> None:
    tracker = tracker_factory()
    facts = conforming_facts("LON", 2003, 2006, 200, seed=4)
    tracker.ingest_service().ingest(facts)
    tracker.catch_up()
    population = tracker.areas.population_for
    with tracker.views.transaction() as tx:
        areas = store_areas(tx)
        assert len(areas) > 3  # a national history: people move between areas
        for as_known_on in (None, datetime(2100, 1, 1, tzinfo=UTC)):
            together = national_returns(tx, areas, (2005, 2004), population, "2008", as_known_on)
            for year in (2005, 2004):
                one_by_one = [
                    statistical_return(tx, a, year, "2008", as_known_on, population(a, year))
                    for a in areas
                ]
                assert together[year] == one_by_one
        assert sum(r["i"] for r in together[2005]) > 0
