"""Victim alerts as records: raised once, corrected when their event is retracted, worked
by the VLO, kept for ever.

The rows of ``victim_alerts`` are never deleted, not even by a rebuild: an alert is a
record of what a VLO was told to do. A rebuild replays every history, derives the alerts
again and raises only those not already on record (their ids are stable), so it raises
nothing twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from projections.base import History, OffenderHistory, Projection, rows_of_offenders
from projections.ports import Transaction
from projections.victim_alerts.rules import (
    CORRECTION,
    LATE_RELEASE_NOTICE,
    RETRACTED,
    Alert,
    Fact,
    Owing,
    derive_alerts,
    fact_of,
    instant_of,
    plan_alerts,
)

NAME = "victim-alerts"
# Told, on PostgreSQL, when alerts are raised: the publisher waits on it (infra.wakeup).
ALERTS_CHANNEL = "mappa_victim_alerts"

LeadTimes = Callable[[str, int], str | None]

_ALERT_FIELDS = (
    "alert_id", "kind", "recipient", "victim_ref", "offender_ref", "area", "event_id",
    "event_type", "occurred_at", "recorded_at", "late_by_seconds", "message", "details",
    "corrects_alert_id",
)  # fmt: skip


class VictimAlertsProjection(Projection):
    name = NAME
    reads_every_document = True  # every judged history is judged over all its documents

    def __init__(self, lead_times: LeadTimes, clock: Callable[[], datetime] | None = None) -> None:
        self.lead_times = lead_times
        self.clock = clock or (lambda: datetime.now(UTC))

    def create_tables(self, tx: Transaction) -> None:
        tx.execute(
            "CREATE TABLE IF NOT EXISTS victim_alerts (alert_id TEXT PRIMARY KEY, "
            "offender_id TEXT NOT NULL, kind TEXT NOT NULL, recipient TEXT NOT NULL, "
            "victim_ref TEXT, offender_ref TEXT NOT NULL, area TEXT NOT NULL, "
            "event_id TEXT NOT NULL, event_type TEXT NOT NULL, occurred_at TEXT NOT NULL, "
            "recorded_at TEXT NOT NULL, late_by_seconds INTEGER NOT NULL, message TEXT NOT NULL, "
            "details TEXT NOT NULL, corrects_alert_id TEXT, raised_at TEXT NOT NULL, "
            "done_by TEXT, done_at TEXT, sequence BIGINT NOT NULL)"
        )
        tx.execute(
            "CREATE INDEX IF NOT EXISTS victim_alerts_recipient "
            "ON victim_alerts (recipient, done_at)"
        )
        tx.execute(
            "CREATE INDEX IF NOT EXISTS victim_alerts_offender ON victim_alerts (offender_id)"
        )
        # The publisher reads "after the last sequence sent", and new alerts are numbered
        # from MAX(sequence): both must not scan the table.
        tx.execute("CREATE INDEX IF NOT EXISTS victim_alerts_sequence ON victim_alerts (sequence)")

    def reset(self, tx: Transaction) -> None:
        """Nothing: alerts are records, kept for ever (see the module docstring)."""

    def refresh(self, tx: Transaction, offenders: Sequence[OffenderHistory]) -> None:
        raised_at = self.clock().isoformat()
        # Each history to judge, its facts as the rules read them, and since when
        # (``_judged_since``); not those whose batch cannot change their alerts.
        judged: list[tuple[OffenderHistory, list[Fact], datetime | None]] = []
        for history in offenders:
            if not _may_change_alerts(history):
                continue
            facts = _facts_read(history)
            since = _judged_since(history, facts)
            if since is None or not _owes_nothing(history, facts, since):
                judged.append((history, facts, since))
        # The alerts on record of a history kept from an earlier batch are those this
        # writer raised for it then (kept with the history): read only the others'.
        on_record = _raised_for(
            tx, [history.offender_id for history, _, _ in judged if _RAISED not in history.memo]
        )
        rows: list[tuple[Any, ...]] = []
        for history, facts, since in judged:
            raised = history.memo.get(_RAISED)
            if raised is None:
                raised = on_record.get(history.offender_id, {})
            for alert in self._judge(history, raised, facts, since):
                rows.append((*_alert_row(alert), history.offender_id, raised_at))
            history.memo[_RAISED] = raised
        if not rows:
            return
        first = _next_sequence(tx)
        columns = ", ".join((*_ALERT_FIELDS, "offender_id", "raised_at", "sequence"))
        marks = ", ".join(["%s"] * (len(_ALERT_FIELDS) + 3))
        tx.executemany(
            f"INSERT INTO victim_alerts ({columns}) VALUES ({marks}) "
            "ON CONFLICT (alert_id) DO NOTHING",
            [(*row, first + n) for n, row in enumerate(rows)],
        )
        if tx.dialect == "postgres":
            tx.execute(f"NOTIFY {ALERTS_CHANNEL}")  # delivered at commit

    def _judge(
        self,
        history: OffenderHistory,
        raised: dict[str, Alert],
        facts: Sequence[Fact],
        since: datetime | None,
    ) -> list[Alert]:
        """The alerts to raise for ``history`` now (``facts``: ``_facts_read``; ``since``:
        ``_judged_since``), given those ``raised`` for it (by id), which they are added to.
        (Not for a history ``_owes_nothing`` spares.)"""
        if since is not None:
            return _added(raised, self._plan_since(history, raised, facts, since))
        moments = _moments_to_judge(history)
        standing: set[str] = set()
        if len(moments) > 1 and raised:
            # An alert on record before this batch that the whole history still derives is
            # no error, whatever a moment before one of its retractions makes of it: in a
            # rebuild the alerts on record include ones raised on facts that arrived later
            # (after the retraction), which that moment does not hold.
            derived = derive_alerts(history.documents, self.lead_times, facts, raised)
            standing = {alert.alert_id for alert in derived if alert.alert_id in raised}
        planned: list[Alert] = []
        # What this batch retracts: only a batch with a retraction judges before its end.
        retracting = (
            _retracted_ids(history.documents_since(history.known_before))
            if len(moments) > 1
            else set()
        )
        for end in moments:
            # Each moment is judged given what the moments before it raised.
            documents = history.documents[:end]
            plan = self._plan(documents, raised, facts[:end], standing)
            if end < len(history.documents):
                # Just before a retraction, only the alerts about an event (or through an
                # enrolment) that it or a later retraction of the batch takes back are
                # raised, to be corrected: facts written after the retraction in the same
                # submission were known at the same moment, and every other alert is judged
                # at the end, on all that was known then.
                plan = [
                    alert
                    for alert in plan
                    if alert.kind == CORRECTION
                    or {alert.event_id, alert.details.get("enrolmentEventId")} & retracting
                ]
            planned += _added(raised, plan)
        return planned

    def _plan_since(
        self,
        history: OffenderHistory,
        raised: dict[str, Alert],
        facts: Sequence[Fact],
        since: datetime,
    ) -> list[Alert]:
        """What ``_plan`` would raise over the whole history, when only the alerts of the
        events that happened ``since`` may have changed and none may be corrected
        (``_judged_since``): the others stand as they were judged, raised or not due."""
        # Every alert derived is about an event of the history, as are the ones on record
        # that ``_plan`` would look at: ``raised`` may hold others (in a rebuild), unseen.
        # Judged only if it may owe alerts (``_owes_nothing``).
        derived = derive_alerts(
            history.documents, self.lead_times, facts, raised, since, may_owe=True
        )
        return [alert for alert in derived if alert.alert_id not in raised]

    def _plan(
        self,
        documents: History,
        raised: dict[str, Alert],
        facts: Sequence[Fact],
        standing: AbstractSet[str] = frozenset(),
    ) -> list[Alert]:
        """What to raise, judging these documents (``facts``: as the rules read them),
        given the alerts on record (of which those ``standing`` are never corrected)."""
        # During a rebuild the history is replayed from zero while the alerts on record
        # stay: an alert about an event not replayed yet is not "no longer due", so only
        # alerts about events in the history so far may be judged for correction.
        known = {document["eventId"] for document in documents}
        already = {alert_id: a for alert_id, a in raised.items() if a.event_id in known}
        # Those on record are not worded again: only what is not is raised.
        derived = derive_alerts(documents, self.lead_times, facts, already)
        # plan_alerts corrects every alert on record that is no longer derived. Replaying a
        # history, the alerts on record include ones that rest on facts not replayed yet;
        # only a retraction ever undoes an alert, so only those whose support has been
        # retracted (in the documents judged) are left out of the derived set.
        derived_ids = {alert.alert_id for alert in derived}
        retracted = _retracted_ids(documents)
        kept = [
            alert
            for alert in already.values()
            if alert.alert_id not in derived_ids
            and alert.kind != CORRECTION
            and (alert.alert_id in standing or not _support(alert, documents) & retracted)
        ]
        return plan_alerts([*derived, *kept], already)


def _added(raised: dict[str, Alert], alerts: list[Alert]) -> list[Alert]:
    """``alerts``, added to those ``raised`` (by id)."""
    raised.update((alert.alert_id, alert) for alert in alerts)
    return alerts


def _retracted_ids(documents: History) -> set[str]:
    return {
        str(d["additionalInformation"].get("eventId"))
        for d in documents
        if d["eventType"] == "record.retracted"
    }


def _support(alert: Alert, documents: History) -> set[str]:
    """The events an alert rests on: its event and the victim's enrolment; for a
    late-release-notice alert, every fact placed at or before the notice (those that set
    the level and the area, and the earliest fact, whose area is the first)."""
    support = {alert.event_id, str(alert.details.get("enrolmentEventId"))}
    if alert.kind == LATE_RELEASE_NOTICE:
        notice = instant_of(alert.occurred_at)
        support |= {
            d["eventId"]
            for d in documents
            if d["eventType"] != "record.retracted" and instant_of(d["occurredAt"]) <= notice
        }
    return support


# The event types that raise alerts or decide who is told and how (victims, level, area);
# the rest (categories, registration, orders, charges, receptions) never change any alert.
_ALERT_RELEVANT = frozenset(
    {
        "release.notified", "custody.released", "licence.conditions-set", "licence.recalled",
        "sentence.varied", "custody.temporary-release", "custody.absconded",
        "custody.transferred", "parole.decided", "mappa.case-closed", "mappa.level-changed",
        "mappa.area-transferred", "victim.enrolled", "victim.withdrawn", "record.retracted",
    }
)  # fmt: skip


# Kept with a history between batches (in the writer's cache, which drops a history another
# writer has moved on): the alerts on record for it, and its documents as the rules read them.
_RAISED, _FACTS = f"{NAME}-raised", f"{NAME}-facts"
# Also kept: how many of its facts ``_owes_nothing`` has looked at, and their ``Owing``.
_OWING = f"{NAME}-owing"


def _facts_read(history: OffenderHistory) -> list[Fact]:
    """``fact_of`` of each of the history's documents, in order, made once per document
    (documents are only ever appended): making them again at every batch was a tenth of
    the projection's time."""
    documents = history.documents
    kept: list[Fact] | None = history.memo.get(_FACTS)
    if kept is None or len(kept) > len(documents):
        kept = []
    kept.extend(fact_of(d) for d in documents[len(kept) :])
    history.memo[_FACTS] = kept
    return kept


def _may_change_alerts(history: OffenderHistory) -> bool:
    """Whether this batch's documents could raise or correct an alert: deriving them all
    again is the projection's main cost, and most facts cannot."""
    new = history.added_documents
    if any(d["eventType"] in _ALERT_RELEVANT for d in new):
        return True
    # A fact placed before every other moves the offender's first area, which addresses
    # late-release-notice alerts.
    facts = _facts_read(history)
    earliest = min((f.occurred for f in facts[: history.known_before]), default=None)
    return earliest is None or any(f.occurred <= earliest for f in facts[history.known_before :])


def _owes_nothing(history: OffenderHistory, facts: Sequence[Fact], since: datetime) -> bool:
    """Whether judging ``history`` (``facts``: as ``_facts_read`` gives them) now is known to
    raise nothing, without the alerts on record, for a batch that retracts nothing (judged
    ``since``: ``_judged_since``): what ``derive_alerts`` finds first (``Owing``), kept with
    the history and extended by the facts new since. Two thirds of the offenders have no
    victim enrolled: most of their batches were judged, and their alerts read from the
    database, only for ``derive_alerts`` to find so.
    """
    looked_at, owing = history.memo.get(_OWING, (0, Owing()))
    if looked_at > len(facts):  # the history was read again from scratch
        looked_at, owing = 0, Owing()
    owing = owing.after(facts[looked_at:])
    history.memo[_OWING] = (len(facts), owing)
    return not owing.may_owe(since)


def _judged_since(history: OffenderHistory, facts: Sequence[Fact]) -> datetime | None:
    """When the events whose alerts this batch may change begin, if it adds no retraction:
    when the earliest fact it adds happened. None when it retracts (every alert must be
    judged, and corrected if no longer due).

    Judging every event of a long history again at each batch was most of the projection's
    time, though most batches add what happened since the last. The alerts of an event rest
    only on facts that happened at or before it (the victims' enrolments and withdrawals;
    for a late release notice the level, the area and the earliest fact) and on
    retractions: a fact that happened later changes none of them. And only a retraction
    undoes an alert (see ``rules``), so without one nothing is corrected.
    """
    added = facts[history.known_before :]
    if not added or any(fact.event_type == RETRACTED for fact in added):
        return None
    return min(fact.occurred for fact in added)


def _moments_to_judge(history: OffenderHistory) -> list[int]:
    """Prefix lengths of the history at which to raise alerts: just before each retraction
    that arrived in this batch, and at the end.

    A one-event-at-a-time projector would have raised an alert for an event, then corrected
    it when the retraction came. Judging just before each retraction does the same whether
    the event and its retraction arrive in one batch or two, so the alerts never depend on
    how deliveries happened to be batched (embedded log, Kafka, a rebuild).
    """
    documents = history.documents
    cuts = [
        index
        for index in range(history.known_before, len(documents))
        if documents[index]["eventType"] == "record.retracted"
    ]
    return [*cuts, len(documents)]


def _next_sequence(tx: Transaction) -> int:
    """The next alert sequence number: alerts are published to Kafka in this order.

    In PostgreSQL, two projector instances may raise alerts at once; the table lock makes
    sequence numbers commit in order, so the publisher, reading "after the last one I
    sent", never skips an alert committed late. (SQLite writers are serialised already.)
    """
    if tx.dialect == "postgres":
        tx.execute("LOCK TABLE victim_alerts IN EXCLUSIVE MODE")
    tx.execute("SELECT COALESCE(MAX(sequence), 0) FROM victim_alerts")
    row = tx.fetchone()
    return int(row[0] if row else 0) + 1


def _alert_row(alert: Alert) -> tuple[Any, ...]:
    # Field by field: ``asdict`` deep-copies every value first, a twentieth of the projector.
    details = json.dumps(alert.details, sort_keys=True)
    return tuple(details if f == "details" else getattr(alert, f) for f in _ALERT_FIELDS)


def _raised_for(tx: Transaction, offender_ids: Sequence[str]) -> dict[str, dict[str, Alert]]:
    """The alerts on record of each of these offenders."""
    found: dict[str, dict[str, Alert]] = {}
    for row in rows_of_offenders(tx, "victim_alerts", _ALERT_FIELDS, offender_ids):
        alert = _alert_from(row[1:])
        found.setdefault(str(row[0]), {})[alert.alert_id] = alert
    return found


def _alert_from(row: Sequence[Any]) -> Alert:
    values = dict(zip(_ALERT_FIELDS, row, strict=True))
    values["details"] = orjson.loads(values["details"])
    values["late_by_seconds"] = int(values["late_by_seconds"])
    return Alert(**values)


@dataclass(frozen=True)
class RaisedAlert:
    """An alert on record, with its lifecycle."""

    alert: Alert
    raised_at: str
    done_by: str | None
    done_at: str | None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self.alert), "raised_at": self.raised_at, "done_by": self.done_by,
                "done_at": self.done_at}  # fmt: skip


def alerts_for(tx: Transaction, recipient: str, include_done: bool = False) -> list[RaisedAlert]:
    """The alerts addressed to ``recipient`` (a VLO, or ``coordinator:AREA``), oldest first.

    Alerts raised in one batch share ``raised_at`` (and those of one submission
    ``recorded_at``): they come in the order their events happened, compared as instants (the
    senders' offsets differ, so their text does not sort). A correction copies the times of
    the alert it corrects: the sequence, given in the order they were raised, settles those
    ties, so that a correction never comes before the alert it corrects.
    """
    done_filter = "" if include_done else " AND done_at IS NULL"
    tx.execute(
        f"SELECT {', '.join(_ALERT_FIELDS)}, raised_at, done_by, done_at FROM victim_alerts "
        f"WHERE recipient = %s{done_filter} ORDER BY raised_at, recorded_at, occurred_at, sequence",
        (recipient,),
    )
    n = len(_ALERT_FIELDS)
    listed = [
        RaisedAlert(_alert_from(row[:n]), row[n], row[n + 1], row[n + 2]) for row in tx.fetchall()
    ]
    # Stable: alerts of one instant keep the database's order (the sequence among copies).
    listed.sort(key=_oldest_first)
    return listed


def _oldest_first(raised: RaisedAlert) -> tuple[str, str, datetime]:
    # raised_at and recorded_at are the tracker's own UTC times, all written alike.
    return (raised.raised_at, raised.alert.recorded_at, instant_of(raised.alert.occurred_at))


class AlertNotFound(LookupError):
    pass


def mark_done(tx: Transaction, alert_id: str, recipient: str | None, by: str, at: datetime) -> bool:
    """Mark an open alert done; False if it was done already. ``recipient`` (when given)
    must be the alert's, so nobody can work another VLO's alert by guessing its id."""
    tx.execute("SELECT recipient, done_at FROM victim_alerts WHERE alert_id = %s", (alert_id,))
    row = tx.fetchone()
    if row is None or (recipient is not None and row[0] != recipient):
        raise AlertNotFound(alert_id)
    if row[1] is not None:
        return False
    tx.execute(
        "UPDATE victim_alerts SET done_by = %s, done_at = %s "
        "WHERE alert_id = %s AND done_at IS NULL",
        (by, at.isoformat(), alert_id),
    )
    return True


def open_alert_counts(tx: Transaction) -> list[tuple[str, int, int]]:
    """(recipient, open alerts, all alerts), busiest first."""
    tx.execute(
        "SELECT recipient, SUM(CASE WHEN done_at IS NULL THEN 1 ELSE 0 END), COUNT(*) "
        "FROM victim_alerts GROUP BY recipient ORDER BY 2 DESC, 1"
    )
    return [(str(r), int(o), int(n)) for r, o, n in tx.fetchall()]


def alerts_after(tx: Transaction, sequence: int, limit: int) -> list[tuple[int, RaisedAlert]]:
    """Alerts raised after ``sequence``, in order: what the publisher has still to send."""
    tx.execute(
        f"SELECT sequence, {', '.join(_ALERT_FIELDS)}, raised_at, done_by, done_at "
        "FROM victim_alerts WHERE sequence > %s ORDER BY sequence LIMIT %s",
        (sequence, limit),
    )
    n = len(_ALERT_FIELDS)
    return [
        (int(row[0]), RaisedAlert(_alert_from(row[1 : n + 1]), row[n + 1], row[n + 2], row[n + 3]))
        for row in tx.fetchall()
    ]
