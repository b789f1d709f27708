"""The statistical return's read model: each offender's temporal model, indexed by area.

For every offender the projection keeps, besides the history of facts, the *timeline* built
from it as known now (intervals of area/BCU, registration, custody, category and level, and
the dated occurrences the return counts: breaches, orders, recalls, charges, disposals).
A return as known now is a query over those timelines: read the area's, count them; no
history is replayed. A return ``asKnownOn`` an earlier moment builds the timelines again
from the stored histories, keeping only what had been recorded by then.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson

from projections.base import OffenderHistory, Projection, load_histories
from projections.ports import Transaction
from projections.statistical_return.rules import (
    OffenderTimeline,
    TimelineFold,
    compute_return,
    leaves_timeline_as_it_was,
    return_from_timelines,
    timeline_from_json,
    timeline_to_json,
)

NAME = "statistical-return"


class StatisticalReturnProjection(Projection):
    name = NAME

    def create_tables(self, tx: Transaction) -> None:
        tx.execute(
            "CREATE TABLE IF NOT EXISTS return_offender_areas (offender_id TEXT NOT NULL, "
            "area TEXT NOT NULL, PRIMARY KEY (area, offender_id))"
        )
        tx.execute(
            "CREATE TABLE IF NOT EXISTS return_timelines (offender_id TEXT PRIMARY KEY, "
            "timeline TEXT NOT NULL)"
        )

    def reset(self, tx: Transaction) -> None:
        tx.execute("DELETE FROM return_offender_areas")
        tx.execute("DELETE FROM return_timelines")

    def refresh(self, tx: Transaction, offenders: Sequence[OffenderHistory]) -> None:
        # Every area a history names, as sender or destination: a superset of the areas the
        # offender was ever responsible to, which is all the query needs to find them. Rows
        # for the documents stored before this batch were written with them.
        tx.executemany(
            "INSERT INTO return_offender_areas (offender_id, area) VALUES (%s, %s) "
            "ON CONFLICT (area, offender_id) DO NOTHING",
            [
                (h.offender_id, area)
                for h in offenders
                for area in sorted(_areas_named(h.added_documents))
            ],
        )
        changed = [(h.offender_id, timeline) for h in offenders for timeline in _changed(h)]
        tx.executemany(
            "INSERT INTO return_timelines (offender_id, timeline) VALUES (%s, %s) "
            "ON CONFLICT (offender_id) DO UPDATE SET timeline = excluded.timeline",
            [
                (offender_id, orjson.dumps(timeline_to_json(timeline)).decode())
                for offender_id, timeline in changed
                if timeline is not None
            ],
        )
        gone = [(offender_id,) for offender_id, timeline in changed if timeline is None]
        tx.executemany("DELETE FROM return_timelines WHERE offender_id = %s", gone)


# The timeline stored for a history is kept with it between batches (in the writer's cache),
# with the fold it came from and how many documents that fold holds.
_TIMELINE, _FOLD, _BUILT_FROM = NAME, f"{NAME}-fold", f"{NAME}-built-from"


def _changed(history: OffenderHistory) -> list[OffenderTimeline | None]:
    """The history's timeline (None: it has none) to store, or nothing when this batch's
    facts leave the stored one as it is, for certain (``leaves_timeline_as_it_was``): a
    third of the facts do, and then the timeline is neither built nor stored again.

    Otherwise the kept fold is extended by this batch's facts when they follow every fact
    folded so far, and the whole history folded again when they do not (a late fact, a
    retraction) or nothing is kept (a history read from the database): building every
    changed timeline from scratch was a fifth of the projector's time.
    """
    memo = history.memo
    added = history.added_documents
    kept = memo.get(_BUILT_FROM) == history.known_before
    if kept and leaves_timeline_as_it_was(memo.get(_TIMELINE), added):
        memo[_BUILT_FROM] = history.document_count
        memo[_FOLD].passed_over(added)
        return []
    fold = memo.get(_FOLD) if kept else None
    if fold is None or not fold.extended(added):
        fold = TimelineFold.of(history.documents)
    memo[_FOLD], memo[_TIMELINE] = fold, fold.timeline()
    memo[_BUILT_FROM] = history.document_count
    return [memo[_TIMELINE]]


def _areas_named(documents: Iterable[Mapping[str, Any]]) -> set[str]:
    areas: set[str] = set()
    for document in documents:
        areas.add(document["area"])
        to_area = (document.get("additionalInformation") or {}).get("toArea")
        if to_area:
            areas.add(to_area)
    return areas


@functools.lru_cache(maxsize=100_000)
def _decoded(text: str) -> OffenderTimeline:
    # Keyed by the stored text itself, so a changed timeline is simply a new entry; a
    # process answering many returns (the national tables, the web service) decodes each
    # offender's timeline once. Timelines are immutable.
    return timeline_from_json(orjson.loads(text))


def area_timelines(tx: Transaction, area: str) -> list[OffenderTimeline]:
    """The stored timelines of every offender a history links to ``area``."""
    tx.execute(
        "SELECT t.timeline FROM return_timelines t JOIN return_offender_areas a "
        "ON a.offender_id = t.offender_id WHERE a.area = %s ORDER BY t.offender_id",
        (area,),
    )
    return [_decoded(row[0]) for row in tx.fetchall()]


def timelines_by_area(tx: Transaction, areas: Iterable[str]) -> dict[str, list[OffenderTimeline]]:
    """The stored timelines of every offender a history links to each of ``areas``, read in
    two scans for all of them (the national tables want every area: a query per area
    looked up each offender's timeline by its key, ten times slower than reading them all)."""
    wanted = set(areas)
    tx.execute("SELECT area, offender_id FROM return_offender_areas")
    linked: dict[str, list[str]] = {area: [] for area in wanted}
    for area, offender_id in tx.fetchall():
        if area in wanted:
            linked[area].append(offender_id)
    tx.execute("SELECT offender_id, timeline FROM return_timelines")
    timelines = {offender_id: _decoded(text) for offender_id, text in tx.fetchall()}
    return {
        area: [timelines[o] for o in sorted(offenders) if o in timelines]
        for area, offenders in linked.items()
    }


def statistical_return(
    tx: Transaction,
    area: str,
    year: int,
    layout: str | None = None,
    as_known_on: datetime | None = None,
    population: int | None = None,
) -> dict[str, Any]:
    """The contract's return for ``area`` and ``year``: from the stored timelines, or (as
    known on an earlier moment) from the stored histories."""
    if as_known_on is None:
        timelines = area_timelines(tx, area)
        return return_from_timelines(timelines, area, year, layout, None, population)
    tx.execute("SELECT offender_id FROM return_offender_areas WHERE area = %s", (area,))
    offender_ids = [str(row[0]) for row in tx.fetchall()]
    histories = load_histories(tx, NAME, offender_ids)
    return compute_return(
        (h.documents for h in histories), area, year, layout, as_known_on, population
    )
