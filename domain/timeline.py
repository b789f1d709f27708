"""An offender's state as the facts say it is, folded in ``occurredAt`` order.

Agencies report late, so facts arrive out of order. The tracker never trusts arrival order:
the state (and every data-quality query) is a fold over the non-retracted facts sorted by
when they happened. Ties are broken by ``eventId`` so that any arrival order of the same
facts gives the same state.

Folding is total: an inconsistent fact (a release of someone not in custody) still changes
state as the sending agency says, and is reported as a query, never an exception.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

from domain import events as ev

LICENCE_RELEASE_TYPES = frozenset({"licence", "parole-licence"})
# The outcomes of an application to a court (``order.granted`` names one only when applied for).
ORDER_OUTCOMES = (ev.OrderInterimGranted, ev.OrderGranted, ev.OrderRefused)


@dataclass(frozen=True)
class Query:
    """A fact that is inconsistent with the history known so far."""

    query_id: str
    about_event_id: str
    kind: str
    reason: str


@dataclass(frozen=True)
class Victim:
    victim_ref: str
    vlo_ref: str
    wants: tuple[str, ...] | None


@dataclass
class OffenderState:
    """What decisions need to know about an offender, now."""

    area: str | None = None
    bcu: str | None = None
    category: int | None = None
    level: int | None = None
    managed: bool = False
    in_custody: bool = False
    on_licence: bool = False
    registered: bool = False
    expected_release_date: str | None = None
    release_type: str | None = None
    open_applications: dict[str, str] = field(default_factory=dict)
    open_charges: dict[str, str] = field(default_factory=dict)
    victims: dict[str, Victim] = field(default_factory=dict)
    # Every charge id received so far (a disposal of any other is queried).
    charged: set[str] = field(default_factory=set)
    # Every application id received so far (an outcome of any other is queried).
    applied: set[str] = field(default_factory=set)


def placement_key(event: ev.InterchangeEvent) -> tuple[datetime, str]:
    """Sort key placing a fact in the offender's history: when it happened, then its id."""
    return (event.occurred_at, event.event_id)


def fold(
    facts: Iterable[ev.InterchangeEvent], retracted: dict[str, str], known_ids: set[str]
) -> tuple[OffenderState, dict[str, Query]]:
    """The state after ``facts`` and the queries they raise.

    ``facts`` excludes retractions; ``retracted`` maps each retracted event id to the id of
    the retraction; ``known_ids`` is every event id received (to query retractions of
    events not yet received).
    """
    state = OffenderState()
    queries: dict[str, Query] = {}
    standing = [fact for fact in sorted(facts, key=placement_key) if fact.event_id not in retracted]
    for _, at_one_instant in itertools.groupby(standing, key=_occurred_at):
        group = list(at_one_instant)
        # Facts of one instant are applied together (as statistical-return.md has it): none
        # is queried for lacking what another of the same instant gives (a disposal on the
        # day of its charge, both written at midnight), whatever their eventIds.
        seen_as = _with_what_they_give(state, group) if len(group) > 1 else None
        for fact in group:
            query = advance(state, fact, seen_as)
            if query is not None:
                queries[query.query_id] = query
    for target in sorted(retracted.keys() - known_ids):
        query = Query(
            query_id=f"{retracted[target]}:retraction-of-unknown-event",
            about_event_id=retracted[target],
            kind="retraction-of-unknown-event",
            reason=f"a retraction names event {target}, which has not been received",
        )
        queries[query.query_id] = query
    return state, queries


_occurred_at = operator.attrgetter("occurred_at")


def _with_what_they_give(state: OffenderState, facts: list[ev.InterchangeEvent]) -> OffenderState:
    """``state`` as the queries of ``facts`` (of one instant) see it: with the custody, licence,
    charges and applications that any of them gives."""
    return replace(
        state,
        in_custody=state.in_custody
        or any(
            isinstance(f, ev.CustodyReceived | ev.LicenceRecalled)
            or (isinstance(f, ev.OrderBreached) and f.returned_to_custody)
            for f in facts
        ),
        on_licence=state.on_licence
        or any(
            isinstance(f, ev.CustodyReleased) and f.release_type in LICENCE_RELEASE_TYPES
            for f in facts
        ),
        charged=state.charged | {f.charge_id for f in facts if isinstance(f, ev.OffenceCharged)},
        applied=state.applied | {f.application_id for f in facts if isinstance(f, ev.OrderApplied)},
    )


def advance(
    state: OffenderState, fact: ev.InterchangeEvent, seen_as: OffenderState | None = None
) -> Query | None:
    """Apply one fact placed after every fact applied so far; return the query it raises,
    judged on ``state``, or on ``seen_as`` (what the facts of its instant give together)."""
    if state.area is None:
        state.area = fact.area
    query = query_for(state if seen_as is None else seen_as, fact)
    _apply(state, fact)
    return query


def query_for(state: OffenderState, fact: ev.InterchangeEvent) -> Query | None:
    kind, reason = "", ""
    if isinstance(fact, ev.CustodyReleased) and not state.in_custody:
        kind, reason = "release-without-custody", "released, but not known to be in custody"
    elif isinstance(fact, ev.LicenceRecalled) and not state.on_licence:
        kind, reason = "recall-without-licence", "recalled, but not known to be on licence"
    elif isinstance(fact, ev.OffenceDisposed) and fact.charge_id not in state.charged:
        kind = "disposal-without-charge"
        reason = f"charge {fact.charge_id} disposed of, but no such charge has been received"
    elif (
        isinstance(fact, ORDER_OUTCOMES)
        and fact.application_id
        and fact.application_id not in state.applied
    ):
        # Like a charge's disposal: the application is scoped to the offender
        # (interchange-v1.md), and it may yet arrive, placed earlier.
        kind = "outcome-without-application"
        reason = (
            f"{fact.EVENT_TYPE} names application {fact.application_id}, "
            "but no such application has been received"
        )
    if not kind:
        return None
    return Query(f"{fact.event_id}:{kind}", fact.event_id, kind, reason)


def _apply(state: OffenderState, fact: ev.InterchangeEvent) -> None:
    match fact:
        case ev.CategoryAssigned():
            state.category, state.managed = fact.category, True
        case ev.LevelChanged():
            state.level, state.managed = fact.level, True
        case ev.AreaTransferred():
            _move(state, fact.to_area, fact.to_bcu)
        case ev.CaseClosed():
            state.category = state.level = None
            state.managed = state.registered = False
        case ev.RegistrationStarted():
            # A registered offender is managed (MAPPA's category 1 is those registered), with
            # or without a category assigned yet: the return counts them in ``i`` so too.
            state.registered = state.managed = True
            if fact.bcu:
                state.bcu = fact.bcu
        case ev.RegistrationEnded():
            state.registered = False
        case ev.OrderApplied():
            state.applied.add(fact.application_id)
            state.open_applications[fact.application_id] = fact.order_type
        case ev.OrderGranted() | ev.OrderRefused():
            if fact.application_id:
                state.open_applications.pop(fact.application_id, None)
        case ev.OrderBreached():
            # Back in custody, but the licence stands: only a recall (which commonly
            # follows) or its end takes it away.
            if fact.returned_to_custody:
                state.in_custody = True
        case ev.CustodyReceived():
            state.in_custody = True
        case ev.ReleaseNotified():
            state.expected_release_date, state.release_type = (
                fact.expected_release_date,
                fact.release_type,
            )
        case ev.SentenceVaried():
            if fact.new_expected_release_date:
                state.expected_release_date = fact.new_expected_release_date
        case ev.CustodyReleased():
            state.in_custody = False
            state.on_licence = fact.release_type in LICENCE_RELEASE_TYPES
            state.expected_release_date = None
            if fact.to_area:
                _move(state, fact.to_area, fact.to_bcu)
            elif fact.to_bcu:
                state.bcu = fact.to_bcu
        case ev.LicenceRecalled():
            state.in_custody, state.on_licence = True, False
        case ev.LicenceEnded():
            state.on_licence = False
        case ev.OffenceCharged():
            state.charged.add(fact.charge_id)
            state.open_charges[fact.charge_id] = fact.offence
        case ev.OffenceDisposed():
            state.open_charges.pop(fact.charge_id, None)
        case ev.VictimEnrolled():
            wants = tuple(fact.wants) if fact.wants is not None else None
            state.victims[fact.victim_ref] = Victim(fact.victim_ref, fact.vlo_ref, wants)
        case ev.VictimWithdrawn():
            state.victims.pop(fact.victim_ref, None)
        case _:
            pass


def _move(state: OffenderState, to_area: str, to_bcu: str | None) -> None:
    # A move to another area without a BCU leaves the BCU unknown (statistical-return.md).
    if to_area != state.area:
        state.bcu = None
    state.area = to_area
    if to_bcu:
        state.bcu = to_bcu


def state_of(events: Iterable[ev.InterchangeEvent]) -> OffenderState:
    """The state after a whole history of facts, retractions included, in any order."""
    facts: list[ev.InterchangeEvent] = []
    retracted: dict[str, str] = {}
    known: set[str] = set()
    for event in events:
        known.add(event.event_id)
        if isinstance(event, ev.RecordRetracted):
            retracted[event.retracted_event_id] = event.event_id
        else:
            facts.append(event)
    return fold(facts, retracted, known)[0]
