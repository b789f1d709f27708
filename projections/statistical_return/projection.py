"""The statistical return's view: each offender's history, indexed by every area it names.

A return is a query: the histories of the offenders ever in the area are read and counted by
:func:`~projections.statistical_return.rules.compute_return`, so any year, any layout and
any ``asKnownOn`` moment come from the same stored facts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from projections.base import OffenderHistory, Projection, load_histories
from projections.ports import Transaction
from projections.statistical_return.rules import compute_return

NAME = "statistical-return"


class StatisticalReturnProjection(Projection):
    name = NAME

    def create_tables(self, tx: Transaction) -> None:
        tx.execute(
            "CREATE TABLE IF NOT EXISTS return_offender_areas (offender_id TEXT NOT NULL, "
            "area TEXT NOT NULL, PRIMARY KEY (area, offender_id))"
        )

    def reset(self, tx: Transaction) -> None:
        tx.execute("DELETE FROM return_offender_areas")

    def refresh(self, tx: Transaction, offenders: Sequence[OffenderHistory]) -> None:
        # Every area a history names, as sender or destination: a superset of the areas the
        # offender was ever responsible to, which is all the query needs to find them.
        tx.executemany(
            "INSERT INTO return_offender_areas (offender_id, area) VALUES (%s, %s) "
            "ON CONFLICT (area, offender_id) DO NOTHING",
            [(h.offender_id, area) for h in offenders for area in sorted(_areas_named(h))],
        )


def _areas_named(history: OffenderHistory) -> set[str]:
    areas: set[str] = set()
    for document in history.documents:
        areas.add(document["area"])
        to_area = (document.get("additionalInformation") or {}).get("toArea")
        if to_area:
            areas.add(to_area)
    return areas


def statistical_return(
    tx: Transaction,
    area: str,
    year: int,
    layout: str | None = None,
    as_known_on: datetime | None = None,
    population: int | None = None,
) -> dict[str, Any]:
    """The contract's return for ``area`` and ``year`` from the stored histories."""
    tx.execute("SELECT offender_id FROM return_offender_areas WHERE area = %s", (area,))
    offender_ids = [str(row[0]) for row in tx.fetchall()]
    histories = load_histories(tx, NAME, offender_ids)
    return compute_return(
        (h.documents for h in histories), area, year, layout, as_known_on, population
    )
