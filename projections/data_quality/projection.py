"""The data-quality view: every query the offenders' streams raised, open or cleared, per area.

The contract accepts a fact that is inconsistent with the history received so far (a
release of someone not known to be in custody, a recall of someone not on licence, a
disposal of a charge not received, a retraction of an event not received) and flags it as
a data-quality query that clears itself when the missing fact arrives. The offender
aggregate records both moments as events on the stream (``DataQualityQueryRaised``,
``DataQualityQueryCleared``); this projection keeps one row per query from them, with the
fact that raised it (from the offender's history) and the offender's area now, so the
query follows the offender to the area that must answer it.

A person may also close a query with a note. Closures are records of what someone decided,
not derived from the events, so they live in their own table that a rebuild never deletes
(like a VLO's done-marks on alerts). A closure holds for the query as it stood when it was
closed: if the query clears and is raised again later (the fact that cleared it was
retracted), it is open again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from domain import events as ev
from domain.timeline import state_of
from projections.base import OffenderHistory, Projection, rows_of_offenders, typed_events
from projections.ports import Transaction

NAME = "data-quality"

_COLUMNS = (
    "query_id", "offender_id", "mappa_ref", "area", "kind", "reason", "about_event_id",
    "about_event_type", "about_occurred_at", "first_raised_at", "raised_at", "times_raised",
    "cleared_at", "cleared_by_event_id",
)  # fmt: skip


class DataQualityProjection(Projection):
    name = NAME
    reads_findings = True  # its queries are the tracker's findings

    def create_tables(self, tx: Transaction) -> None:
        tx.execute(
            "CREATE TABLE IF NOT EXISTS data_quality_queries (query_id TEXT PRIMARY KEY, "
            "offender_id TEXT NOT NULL, mappa_ref TEXT NOT NULL, area TEXT, kind TEXT NOT NULL, "
            "reason TEXT NOT NULL, about_event_id TEXT NOT NULL, about_event_type TEXT, "
            "about_occurred_at TEXT, first_raised_at TEXT NOT NULL, raised_at TEXT NOT NULL, "
            "times_raised INTEGER NOT NULL, cleared_at TEXT, cleared_by_event_id TEXT)"
        )
        tx.execute(
            "CREATE INDEX IF NOT EXISTS data_quality_queries_area "
            "ON data_quality_queries (area, raised_at)"
        )
        tx.execute(
            "CREATE INDEX IF NOT EXISTS data_quality_queries_offender "
            "ON data_quality_queries (offender_id)"
        )
        tx.execute(
            "CREATE TABLE IF NOT EXISTS data_quality_closures (query_id TEXT NOT NULL, "
            "closed_at TEXT NOT NULL, closed_by TEXT NOT NULL, note TEXT NOT NULL, "
            "PRIMARY KEY (query_id, closed_at))"
        )

    def reset(self, tx: Transaction) -> None:
        # Closures are kept: they are people's decisions, not derived from the events.
        tx.execute("DELETE FROM data_quality_queries")

    def refresh(self, tx: Transaction, offenders: Sequence[OffenderHistory]) -> None:
        rows = _stored_rows(tx, [h.offender_id for h in offenders])
        touched: list[dict[str, Any]] = []
        for history in offenders:
            mine = rows.get(history.offender_id, {})
            for event in history.new_events:
                _apply(mine, history, event)
            if not mine:
                continue  # no query, ever: spare the fold below
            # A fact in this batch may have moved the offender, or be the raising fact of a
            # query about an event not yet received: describe every query of theirs afresh.
            area = state_of(typed_events(history)).area
            documents = {d["eventId"]: d for d in history.documents}
            for row in mine.values():
                about = documents.get(row["about_event_id"], {})
                row.update(
                    mappa_ref=history.mappa_ref,
                    # No fact gives an area when all of them are retractions, or retracted:
                    # the query is then the area's that sent the fact it is about, so that
                    # someone can list it (``queries_for`` reads by area).
                    area=area or about.get("area") or history.documents[-1]["area"],
                    about_event_type=about.get("eventType"),
                    about_occurred_at=about.get("occurredAt"),
                )
                touched.append(row)
        if not touched:
            return
        marks = ", ".join(["%s"] * len(_COLUMNS))
        updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[1:])
        tx.executemany(
            f"INSERT INTO data_quality_queries ({', '.join(_COLUMNS)}) VALUES ({marks}) "
            f"ON CONFLICT (query_id) DO UPDATE SET {updates}",
            [tuple(row[c] for c in _COLUMNS) for row in touched],
        )


def _apply(
    rows: dict[str, dict[str, Any]], history: OffenderHistory, event: ev.OffenderEvent
) -> None:
    """One query event on an offender's rows (``rows``: query id -> row), in stream order;
    its time is when the tracker recorded it."""
    at = event.timestamp.isoformat()
    if isinstance(event, ev.DataQualityQueryRaised):
        row = rows.get(event.query_id)
        if row is None:
            rows[event.query_id] = {
                "query_id": event.query_id, "offender_id": history.offender_id,
                "mappa_ref": history.mappa_ref, "area": None, "kind": event.kind,
                "reason": event.reason, "about_event_id": event.about_event_id,
                "about_event_type": None, "about_occurred_at": None, "first_raised_at": at,
                "raised_at": at, "times_raised": 1, "cleared_at": None,
                "cleared_by_event_id": None,
            }  # fmt: skip
        else:
            # Raised again: the fact that cleared it was retracted. Open again.
            row.update(
                kind=event.kind, reason=event.reason, raised_at=at,
                times_raised=int(row["times_raised"]) + 1, cleared_at=None,
                cleared_by_event_id=None,
            )  # fmt: skip
    elif isinstance(event, ev.DataQualityQueryCleared):
        row = rows.get(event.query_id)
        if row is not None:
            row.update(cleared_at=at, cleared_by_event_id=event.cleared_by_event_id)


def _stored_rows(tx: Transaction, offender_ids: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """Stored query rows of these offenders: offender id -> query id -> row."""
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for values in rows_of_offenders(tx, "data_quality_queries", _COLUMNS, offender_ids):
        row = dict(zip(_COLUMNS, values[1:], strict=True))
        found.setdefault(str(row["offender_id"]), {})[str(row["query_id"])] = row
    return found


# --- reading and closing -----------------------------------------------------------------


@dataclass(frozen=True)
class DataQualityQuery:
    """A query on record, with how it ended (if it has)."""

    query_id: str
    mappa_ref: str
    area: str | None
    kind: str
    reason: str
    about_event_id: str
    about_event_type: str | None
    about_occurred_at: str | None
    first_raised_at: str
    raised_at: str
    times_raised: int
    cleared_at: str | None
    cleared_by_event_id: str | None
    closed_at: str | None
    closed_by: str | None
    note: str | None

    @property
    def status(self) -> str:
        """``cleared`` (the missing fact arrived), ``closed`` (by a person) or ``open``."""
        if self.cleared_at is not None:
            return "cleared"
        return "closed" if self.closed_at is not None else "open"

    def age_days(self, now: datetime) -> int:
        """Whole days since it was (last) raised."""
        return max(0, (now - datetime.fromisoformat(self.raised_at)).days)

    def to_json(self, now: datetime) -> dict[str, Any]:
        return {**asdict(self), "status": self.status, "age_days": self.age_days(now)}


def queries_for(tx: Transaction, area: str, include_ended: bool = False) -> list[DataQualityQuery]:
    """The queries of the offenders now in ``area``, oldest first: the open ones, or with
    ``include_ended`` the cleared and closed ones too."""
    return [q for q in _read(tx, "q.area = %s", (area,)) if include_ended or q.status == "open"]


def query_by_id(tx: Transaction, query_id: str) -> DataQualityQuery | None:
    found = _read(tx, "q.query_id = %s", (query_id,))
    return found[0] if found else None


def _read(tx: Transaction, where: str, params: Sequence[Any]) -> list[DataQualityQuery]:
    columns = [c for c in _COLUMNS if c != "offender_id"]
    tx.execute(
        f"SELECT {', '.join('q.' + c for c in columns)}, c.closed_at, c.closed_by, c.note "
        "FROM data_quality_queries q LEFT JOIN data_quality_closures c "
        f"ON c.query_id = q.query_id WHERE {where} ORDER BY q.raised_at, q.query_id, c.closed_at",
        params,
    )
    queries: dict[str, DataQualityQuery] = {}
    for values in tx.fetchall():
        row = dict(zip(columns, values[: len(columns)], strict=True))
        closed_at, closed_by, note = values[len(columns) :]
        # Only a closure made since the query was last raised holds (see the module
        # docstring); of several, the latest (rows come in closed_at order).
        if closed_at is None or _instant(closed_at) < _instant(row["raised_at"]):
            closed_at = closed_by = note = None
        kept = queries.get(row["query_id"])
        if kept is not None and closed_at is None:
            continue
        queries[row["query_id"]] = DataQualityQuery(
            **{**row, "times_raised": int(row["times_raised"])},
            closed_at=closed_at,
            closed_by=closed_by,
            note=note,
        )
    return list(queries.values())


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


class QueryNotFound(LookupError):
    pass


def close_query(tx: Transaction, query_id: str, by: str, note: str, at: datetime) -> str:
    """Close an open query with a note; returns ``closed``, or why nothing was recorded:
    ``cleared`` (it cleared itself already) or ``already closed``."""
    query = query_by_id(tx, query_id)
    if query is None:
        raise QueryNotFound(query_id)
    if query.status != "open":
        return "cleared" if query.status == "cleared" else "already closed"
    tx.execute(
        "INSERT INTO data_quality_closures (query_id, closed_at, closed_by, note) "
        "VALUES (%s, %s, %s, %s) ON CONFLICT (query_id, closed_at) DO NOTHING",
        (query_id, at.isoformat(), by, note),
    )
    return "closed"
