"""The Offender aggregate: one stream per MAPPA reference.

Deciding and evolving are kept apart. :func:`decide` is a pure function of the aggregate's
state and a reported fact: it classifies the fact (accepted or duplicate), may raise a named
:class:`~domain.errors.DomainError`, and works out which data-quality queries the fact raises
or clears. :meth:`Offender.evolve` applies a recorded event to the state and never raises,
so replaying stored history always succeeds, whatever the facts say.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain import events as ev
from domain.errors import RetractionOfAnotherOffendersEvent, RetractionOfRetraction, WrongOffender
from domain.timeline import OffenderState, Query, advance, fold, placement_key, query_for


@dataclass(frozen=True)
class ReportedFact:
    """A fact as an agency reported it: the event class and its fields (envelope included)."""

    event_class: type[ev.InterchangeEvent]
    fields: Mapping[str, Any]

    @property
    def event_id(self) -> str:
        return str(self.fields["event_id"])

    @cached_property
    def mappa_ref(self) -> str:
        return mappa_ref_of(self.fields["identifiers"])

    @cached_property
    def offender_id(self) -> UUID:
        return ev.offender_id_for(self.mappa_ref)


def mappa_ref_of(identifiers: list[dict[str, str]]) -> str:
    return next(i["value"] for i in identifiers if i["type"] == "MAPPA")


@dataclass(frozen=True)
class KnownEvent:
    """What the event store knows of an event a retraction names: whose, and what type."""

    offender_id: UUID
    event_type: str


class Outcome(enum.Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    raised: list[Query] = field(default_factory=list)
    cleared: list[str] = field(default_factory=list)


def decide(
    offender: Offender, fact: ReportedFact, retraction_target: KnownEvent | None
) -> Decision:
    """Classify ``fact`` against ``offender``'s history; raise if the contract rejects it.

    ``retraction_target`` is what the store knows of the event a retraction names (None
    when that event has not been received, by this offender or any other).
    """
    if fact.offender_id != offender.id:
        raise WrongOffender(fact.mappa_ref, offender.mappa_ref)
    if fact.event_id in offender.seen_event_ids:
        return Decision(Outcome.DUPLICATE)
    if fact.event_class is ev.RecordRetracted:
        target_id = str(fact.fields["retracted_event_id"])
        if target_id in offender.retraction_ids or target_id == fact.event_id:
            raise RetractionOfRetraction(target_id)
        if retraction_target is not None:
            if retraction_target.offender_id != offender.id:
                raise RetractionOfAnotherOffendersEvent(target_id)
            if retraction_target.event_type == ev.RecordRetracted.EVENT_TYPE:
                raise RetractionOfRetraction(target_id)
    before = offender.open_queries
    after = offender.queries_with(fact)
    return Decision(
        Outcome.ACCEPTED,
        raised=[q for qid, q in after.items() if qid not in before],
        cleared=sorted(qid for qid in before if qid not in after),
    )


class Offender(Aggregate):
    """An offender's record under MAPPA: everything reported about them, in one stream."""

    TOPIC = "mappa.offender.v1"

    class Event(Aggregate.Event):
        TOPIC = "mappa.offender.event.v1"

    class Opened(Aggregate.Created):
        """The tracker opened a record on the first fact received for this reference."""

        TOPIC = "mappa.offender-opened.v1"
        mappa_ref: str

    @staticmethod
    def create_id(mappa_ref: str) -> UUID:
        return ev.offender_id_for(mappa_ref)

    def __init__(self, mappa_ref: str) -> None:
        self.mappa_ref = mappa_ref
        self.facts: list[ev.InterchangeEvent] = []
        self.seen_event_ids: set[str] = set()
        self.retraction_ids: set[str] = set()
        self.retracted: dict[str, str] = {}  # retracted event id -> retraction's event id
        self.open_queries: dict[str, Query] = {}
        self.state = OffenderState()
        self._last_key: tuple[datetime, str] | None = None

    # --- deciding ---------------------------------------------------------------------

    def record(
        self,
        fact: ReportedFact,
        retraction_target: KnownEvent | None = None,
        recorded_at: datetime | None = None,
    ) -> Decision:
        """Decide on ``fact`` and, unless it is a duplicate, record it and its queries.

        ``recorded_at``: when the tracker records it (the events' ``timestamp``, a fact's
        ``recordedAt``); None, now. The facts stored together in one transaction are given
        one, so that what reads the store knows them all from the same moment, as it does.
        """
        decision = decide(self, fact, retraction_target)
        if decision.outcome is Outcome.DUPLICATE:
            return decision
        self.trigger_event(fact.event_class, timestamp=recorded_at, **fact.fields)
        for query in decision.raised:
            self.trigger_event(
                ev.DataQualityQueryRaised,
                timestamp=recorded_at,
                query_id=query.query_id,
                about_event_id=query.about_event_id,
                kind=query.kind,
                reason=query.reason,
            )
        for query_id in decision.cleared:
            self.trigger_event(
                ev.DataQualityQueryCleared,
                timestamp=recorded_at,
                query_id=query_id,
                cleared_by_event_id=fact.event_id,
            )
        return decision

    def queries_with(self, fact: ReportedFact) -> dict[str, Query]:
        """The queries the history would raise with ``fact`` added (nothing is changed)."""
        if self._in_order(fact.fields["occurred_at"], fact.event_id, fact.event_class):
            # Placed after everything known, it cannot change what came before: the only
            # query it can add is about itself, in the state as it stands.
            query = query_for(self.state, _detached(fact))
            return {**self.open_queries, **({query.query_id: query} if query else {})}
        facts = list(self.facts)
        retracted = dict(self.retracted)
        known = set(self.seen_event_ids) | {fact.event_id}
        if fact.event_class is ev.RecordRetracted:
            retracted[str(fact.fields["retracted_event_id"])] = fact.event_id
        else:
            # Only the fields fold() reads matter; build the event without an originator.
            facts.append(_detached(fact))
        return fold(facts, retracted, known)[1]

    # --- evolving (never raises) ------------------------------------------------------

    def evolve(self, event: ev.OffenderEvent) -> None:
        if isinstance(event, ev.DataQualityQueryRaised):
            self.open_queries[event.query_id] = Query(
                event.query_id, event.about_event_id, event.kind, event.reason
            )
        elif isinstance(event, ev.DataQualityQueryCleared):
            self.open_queries.pop(event.query_id, None)
        elif isinstance(event, ev.InterchangeEvent):
            self._add_fact(event)

    def _add_fact(self, event: ev.InterchangeEvent) -> None:
        in_order = self._in_order(event.occurred_at, event.event_id, type(event))
        self.seen_event_ids.add(event.event_id)
        if isinstance(event, ev.RecordRetracted):
            self.retraction_ids.add(event.event_id)
            self.retracted[event.retracted_event_id] = event.event_id
        else:
            self.facts.append(event)
        if in_order:
            advance(self.state, event)  # the common case: no need to fold it all again
            self._last_key = placement_key(event)
        else:
            self.state = fold(self.facts, self.retracted, self.seen_event_ids)[0]
            self._last_key = max((placement_key(f) for f in self.facts), default=None)

    def _in_order(
        self, occurred_at: datetime, event_id: str, event_class: type[ev.InterchangeEvent]
    ) -> bool:
        """Whether a fact would be placed after every fact known, at a later instant (and
        changes nothing else: it is not a retraction, nor an event already retracted). One
        at the instant of the last is folded with the others of that instant, which are
        queried together (``timeline.fold``)."""
        if event_class is ev.RecordRetracted or event_id in self.retracted:
            return False
        return self._last_key is None or occurred_at > self._last_key[0]

    @property
    def history(self) -> list[ev.InterchangeEvent]:
        """Non-retracted facts in the order they happened."""
        return sorted(
            (f for f in self.facts if f.event_id not in self.retracted), key=placement_key
        )


def _detached(fact: ReportedFact) -> ev.InterchangeEvent:
    return fact.event_class(
        originator_id=fact.offender_id,
        originator_version=0,
        timestamp=datetime.now(UTC),
        **fact.fields,
    )
