"""The caseload view: one row per offender, their state now (after every fact received,
placed by ``occurredAt``), their orders, and the queries that count and list them per area
and BCU, now or as the caseload stood at the end of any past date.

"Now" reads the stored rows, so it stays fast however long the histories are; a past date
folds every stored history of the area again up to the end of that date (``rules``).
A store made before the notice, recall and order columns existed gets them added empty:
``mappa rebuild caseload`` fills them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from typing import Any

from projections.base import (
    OffenderHistory,
    Projection,
    added_typed_events,
    events_of,
    in_list,
    load_histories,
    typed_events,
)
from projections.caseload.rules import (
    CaseloadSummary,
    DueForRelease,
    LeadTimes,
    Notice,
    Order,
    Recall,
    Snapshot,
    SnapshotFold,
    end_of_day,
    snapshot,
    summarise,
)
from projections.ports import Transaction

__all__ = ["NAME", "CaseloadProjection", "CaseloadSummary", "DueForRelease", "caseload"]

NAME = "caseload"

_COLUMNS = (
    "offender_id", "mappa_ref", "area", "bcu", "category", "level", "managed",
    "in_custody", "on_licence", "registered", "expected_release_date", "release_type",
    "notice_event_id", "notice_given_on", "notice_release_date", "notice_area", "notice_level",
    "recall_event_id", "recalled_on", "recall_reason",
)  # fmt: skip
# Added after the first release of the view: (name, SQL type) for the upgrade of old stores.
_ADDED_COLUMNS = (
    ("notice_event_id", "TEXT"), ("notice_given_on", "TEXT"), ("notice_release_date", "TEXT"),
    ("notice_area", "TEXT"), ("notice_level", "INTEGER"), ("recall_event_id", "TEXT"),
    ("recalled_on", "TEXT"), ("recall_reason", "TEXT"),
)  # fmt: skip
_ORDER_COLUMNS = (
    "offender_id", "event_id", "order_type", "granted_on", "expires_on", "prohibitions",
    "interim",
)  # fmt: skip
# Columns added to ``caseload_orders`` since it was first made (a store made before gets them
# when the projection starts; ``mappa rebuild caseload`` fills them in).
_ADDED_ORDER_COLUMNS = (("interim", "INTEGER NOT NULL DEFAULT 0"),)


class CaseloadProjection(Projection):
    name = NAME

    def create_tables(self, tx: Transaction) -> None:
        tx.execute(
            "CREATE TABLE IF NOT EXISTS caseload_offenders (offender_id TEXT PRIMARY KEY, "
            "mappa_ref TEXT NOT NULL, area TEXT, bcu TEXT, category INTEGER, level INTEGER, "
            "managed INTEGER NOT NULL, in_custody INTEGER NOT NULL, on_licence INTEGER NOT NULL, "
            "registered INTEGER NOT NULL, expected_release_date TEXT, release_type TEXT, "
            "notice_event_id TEXT, notice_given_on TEXT, notice_release_date TEXT, "
            "notice_area TEXT, notice_level INTEGER, recall_event_id TEXT, recalled_on TEXT, "
            "recall_reason TEXT)"
        )
        tx.execute(
            "CREATE INDEX IF NOT EXISTS caseload_offenders_area ON caseload_offenders (area, bcu)"
        )
        _add_missing_columns(tx, "caseload_offenders", _ADDED_COLUMNS)
        tx.execute(
            "CREATE TABLE IF NOT EXISTS caseload_orders (offender_id TEXT NOT NULL, "
            "event_id TEXT NOT NULL, order_type TEXT NOT NULL, granted_on TEXT NOT NULL, "
            "expires_on TEXT, prohibitions TEXT NOT NULL, interim INTEGER NOT NULL DEFAULT 0, "
            "PRIMARY KEY (offender_id, event_id))"
        )
        _add_missing_columns(tx, "caseload_orders", _ADDED_ORDER_COLUMNS)

    def reset(self, tx: Transaction) -> None:
        tx.execute("DELETE FROM caseload_offenders")
        tx.execute("DELETE FROM caseload_orders")

    def refresh(self, tx: Transaction, offenders: Sequence[OffenderHistory]) -> None:
        snapshots = [s for h in offenders if (s := _changed_snapshot(h)) is not None]
        if not snapshots:
            return
        marks = ", ".join(["%s"] * len(_COLUMNS))
        updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[1:])
        tx.executemany(
            f"INSERT INTO caseload_offenders ({', '.join(_COLUMNS)}) VALUES ({marks}) "
            f"ON CONFLICT (offender_id) DO UPDATE SET {updates}",
            [_row(s) for s in snapshots],
        )
        ids = [s.offender_id for s in snapshots]
        for condition, params in in_list(tx, "offender_id", ids):
            tx.execute(f"DELETE FROM caseload_orders WHERE {condition}", params)
        order_rows = [
            (s.offender_id, o.event_id, o.order_type, o.granted_on, o.expires_on,
             json.dumps(list(o.prohibitions)), int(o.interim))
            for s in snapshots
            for o in s.orders
        ]  # fmt: skip
        if order_rows:
            tx.executemany(
                f"INSERT INTO caseload_orders ({', '.join(_ORDER_COLUMNS)}) "
                f"VALUES ({', '.join(['%s'] * len(_ORDER_COLUMNS))})",
                order_rows,
            )


# Kept with a history between batches (in the writer's cache): the snapshot fold, how many
# documents it has folded, and the snapshot stored last.
_FOLD, _FOLDED, _STORED = NAME, f"{NAME}-folded", f"{NAME}-stored"


def _changed_snapshot(history: OffenderHistory) -> Snapshot | None:
    """The offender's snapshot, or None when it is the one this writer stored last (kept
    with the history in the writer's cache): one offender's batch in six changes nothing
    the caseload shows (a victim enrolled, a transfer between prisons, licence
    conditions...), and its rows need not be written again."""
    latest = _snapshot_of(history)
    if history.memo.get(_STORED) == latest:
        return None
    history.memo[_STORED] = latest
    return latest


def _snapshot_of(history: OffenderHistory) -> Snapshot:
    """The offender's snapshot after every fact in the history.

    The fold is kept with the history between batches and extended by the facts new in this
    batch when they follow every fact folded so far; otherwise, and for a history read
    from the database, the whole history is folded again. Folding every history again at
    every batch was a quarter of the projector's time.
    """
    kept: SnapshotFold | None = history.memo.get(_FOLD)
    if history.memo.get(_FOLDED) != history.known_before:
        kept = None
    if kept is None or not kept.extended(added_typed_events(history)):
        kept = SnapshotFold.of(typed_events(history))
    history.memo[_FOLD], history.memo[_FOLDED] = kept, history.document_count
    return kept.snapshot(history.offender_id, history.mappa_ref)


def _add_missing_columns(tx: Transaction, table: str, columns: Sequence[tuple[str, str]]) -> None:
    if tx.dialect == "postgres":
        tx.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = %s",
            (table,),
        )
    else:
        tx.execute("SELECT name FROM pragma_table_info(%s)", (table,))
    present = {str(row[0]) for row in tx.fetchall()}
    for column, kind in columns:
        if column not in present:
            tx.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def _row(s: Snapshot) -> tuple[Any, ...]:
    notice, recall = s.notice, s.last_recall
    return (
        s.offender_id, s.mappa_ref, s.area, s.bcu, s.category, s.level, int(s.managed),
        int(s.in_custody), int(s.on_licence), int(s.registered), s.expected_release_date,
        s.release_type,
        notice.event_id if notice else None, notice.given_on if notice else None,
        notice.expected_release_date if notice else None, notice.area if notice else None,
        notice.level if notice else None,
        recall.event_id if recall else None, recall.recalled_on if recall else None,
        recall.reason if recall else None,
    )  # fmt: skip


def _snapshot_from(row: Sequence[Any], orders: tuple[Order, ...]) -> Snapshot:
    values = dict(zip(_COLUMNS, row, strict=True))
    notice = None
    if values["notice_event_id"]:
        notice = Notice(
            values["notice_event_id"], values["notice_given_on"], values["notice_release_date"],
            values["notice_area"],
            None if values["notice_level"] is None else int(values["notice_level"]),
        )  # fmt: skip
    recall = None
    if values["recall_event_id"]:
        recall = Recall(values["recall_event_id"], values["recalled_on"], values["recall_reason"])
    return Snapshot(
        offender_id=values["offender_id"],
        mappa_ref=values["mappa_ref"],
        area=values["area"],
        bcu=values["bcu"],
        category=values["category"],
        level=values["level"],
        managed=bool(values["managed"]),
        in_custody=bool(values["in_custody"]),
        on_licence=bool(values["on_licence"]),
        registered=bool(values["registered"]),
        expected_release_date=values["expected_release_date"],
        release_type=values["release_type"],
        notice=notice,
        last_recall=recall,
        orders=orders,
    )


def current_snapshots(tx: Transaction, area: str) -> list[Snapshot]:
    """The stored snapshots of the offenders managed in ``area`` now."""
    tx.execute(
        f"SELECT {', '.join(_COLUMNS)} FROM caseload_offenders "
        "WHERE area = %s AND managed = 1 ORDER BY mappa_ref",
        (area,),
    )
    rows = tx.fetchall()
    tx.execute(
        f"SELECT {', '.join('o.' + c for c in _ORDER_COLUMNS)} FROM caseload_orders o "
        "JOIN caseload_offenders c ON c.offender_id = o.offender_id "
        "WHERE c.area = %s AND c.managed = 1 ORDER BY o.offender_id, o.granted_on, o.event_id",
        (area,),
    )
    orders: dict[str, list[Order]] = {}
    for offender_id, event_id, kind, granted_on, expires_on, prohibitions, interim in tx.fetchall():
        orders.setdefault(str(offender_id), []).append(
            Order(
                event_id,
                kind,
                granted_on,
                expires_on,
                tuple(json.loads(prohibitions)),
                interim=bool(interim),
            )
        )
    return [_snapshot_from(row, tuple(orders.get(str(row[0]), ()))) for row in rows]


def bcus_on_record(tx: Transaction, area: str) -> set[str]:
    """The BCUs the offenders now in ``area`` are in, as far as known."""
    tx.execute("SELECT DISTINCT bcu FROM caseload_offenders WHERE area = %s", (area,))
    return {str(row[0]) for row in tx.fetchall() if row[0] is not None}


def snapshots_as_it_stood(tx: Transaction, area: str, on: date) -> list[Snapshot]:
    """Every offender as they stood at the end of ``on`` (Europe/London), folded from the
    stored histories of those who were ever reported in or moved to ``area``."""
    before = end_of_day(on)
    return [
        snapshot(h.offender_id, h.mappa_ref, events_of(h), before)
        for h in load_histories(tx, NAME)
        if _ever_in(h, area)
    ]


def _ever_in(history: OffenderHistory, area: str) -> bool:
    # An offender is in an area only through a fact sent from it or a move to it: a cheap
    # test on the documents that spares folding everybody else's history.
    return any(
        d.get("area") == area or (d.get("additionalInformation") or {}).get("toArea") == area
        for d in history.documents
    )


def caseload(
    tx: Transaction,
    area: str,
    on: date,
    within_days: int = 90,
    *,
    bcu: str | None = None,
    as_it_stood: bool = False,
    lead_times: LeadTimes | None = None,
) -> CaseloadSummary:
    """The caseload of ``area``: now (from the stored rows, with the windows counted from
    ``on``) or, with ``as_it_stood``, as it stood at the end of ``on``."""
    snapshots = snapshots_as_it_stood(tx, area, on) if as_it_stood else current_snapshots(tx, area)
    return summarise(
        snapshots, area, on, within_days, bcu=bcu, as_it_stood=as_it_stood, lead_times=lead_times
    )
