"""The caseload view: one row per offender, their state now (after every fact received,
placed by ``occurredAt``), and the queries that count and list them per area and BCU."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import Any

from domain.timeline import state_of
from projections.base import OffenderHistory, Projection, events_of
from projections.ports import Transaction

NAME = "caseload"

_COLUMNS = (
    "offender_id", "mappa_ref", "area", "bcu", "category", "level", "managed",
    "in_custody", "on_licence", "registered", "expected_release_date", "release_type",
)  # fmt: skip


class CaseloadProjection(Projection):
    name = NAME

    def create_tables(self, tx: Transaction) -> None:
        tx.execute(
            "CREATE TABLE IF NOT EXISTS caseload_offenders (offender_id TEXT PRIMARY KEY, "
            "mappa_ref TEXT NOT NULL, area TEXT, bcu TEXT, category INTEGER, level INTEGER, "
            "managed INTEGER NOT NULL, in_custody INTEGER NOT NULL, on_licence INTEGER NOT NULL, "
            "registered INTEGER NOT NULL, expected_release_date TEXT, release_type TEXT)"
        )
        tx.execute(
            "CREATE INDEX IF NOT EXISTS caseload_offenders_area ON caseload_offenders (area, bcu)"
        )

    def reset(self, tx: Transaction) -> None:
        tx.execute("DELETE FROM caseload_offenders")

    def refresh(self, tx: Transaction, offenders: Sequence[OffenderHistory]) -> None:
        rows = [_row(history) for history in offenders]
        marks = ", ".join(["%s"] * len(_COLUMNS))
        updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[1:])
        tx.executemany(
            f"INSERT INTO caseload_offenders ({', '.join(_COLUMNS)}) VALUES ({marks}) "
            f"ON CONFLICT (offender_id) DO UPDATE SET {updates}",
            rows,
        )


def _row(history: OffenderHistory) -> tuple[Any, ...]:
    state = state_of(events_of(history))
    return (
        history.offender_id, history.mappa_ref, state.area, state.bcu, state.category,
        state.level, int(state.managed), int(state.in_custody), int(state.on_licence),
        int(state.registered), state.expected_release_date if state.in_custody else None,
        state.release_type if state.in_custody else None,
    )  # fmt: skip


@dataclass(frozen=True)
class DueForRelease:
    mappa_ref: str
    bcu: str | None
    category: int | None
    level: int | None
    expected_release_date: str
    release_type: str | None


@dataclass(frozen=True)
class CaseloadSummary:
    area: str
    on: str
    managed: int
    by_bcu: dict[str, dict[str, dict[str, int]]]
    due_for_release: list[DueForRelease]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "due_for_release": [asdict(d) for d in self.due_for_release]}


def caseload(tx: Transaction, area: str, on: date, within_days: int = 90) -> CaseloadSummary:
    """Counts per BCU of the offenders managed in ``area``, and who is due out soon."""
    tx.execute(
        "SELECT mappa_ref, bcu, category, level, in_custody, on_licence, registered, "
        "expected_release_date, release_type FROM caseload_offenders "
        "WHERE area = %s AND managed = 1 ORDER BY mappa_ref",
        (area,),
    )
    by_bcu: dict[str, dict[str, dict[str, int]]] = {}
    due: list[DueForRelease] = []
    managed = 0
    horizon = (on + timedelta(days=within_days)).isoformat()
    for (
        ref,
        bcu,
        category,
        level,
        in_custody,
        on_licence,
        registered,
        release,
        kind,
    ) in tx.fetchall():
        managed += 1
        counts = by_bcu.setdefault(bcu or "unknown", _empty_counts())
        counts["category"][f"cat{category}" if category else "none"] += 1
        counts["level"][f"level{level}" if level else "none"] += 1
        counts["custody"]["in_custody" if in_custody else "in_community"] += 1
        counts["licence"]["on_licence" if on_licence else "not_on_licence"] += 1
        counts["registration"]["registered" if registered else "not_registered"] += 1
        if in_custody and release and on.isoformat() <= release <= horizon:
            due.append(DueForRelease(ref, bcu, category, level, release, kind))
    due.sort(key=lambda d: (d.expected_release_date, d.mappa_ref))
    return CaseloadSummary(area, on.isoformat(), managed, dict(sorted(by_bcu.items())), due)


def _empty_counts() -> dict[str, dict[str, int]]:
    return {
        "category": {"cat1": 0, "cat2": 0, "cat3": 0, "none": 0},
        "level": {"level1": 0, "level2": 0, "level3": 0, "none": 0},
        "custody": {"in_custody": 0, "in_community": 0},
        "licence": {"on_licence": 0, "not_on_licence": 0},
        "registration": {"registered": 0, "not_registered": 0},
    }
