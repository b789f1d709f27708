"""Counting rules of the 31 March statistical return (contract: statistical-return.md).

The return is a pure function of offender histories. Each history (every accepted
interchange document of one offender, with the tracker's ``recordedAt``, in arrival
order) is first turned into a small temporal model, an :class:`OffenderTimeline`;
the return then only asks three kinds of question of each timeline.

Building a timeline
    1. *As known on*: only documents recorded (``recordedAt``) by ``as_known_on``
       are seen, retractions included ("only events the tracker had recorded by
       then count, and retractions recorded by then").
    2. *Retractions*: every event named by a seen ``record.retracted`` is dropped,
       whichever arrived first ("treated as never having happened"); a retraction
       naming an event not (yet) seen simply has nothing to drop. Retractions are
       corrections, not facts about the offender, so they take no further part.
    3. *Order*: the remaining facts are sorted by ``occurredAt`` as an absolute
       instant (offsets, hence BST/GMT, are resolved by the conversion), ``eventId``
       breaking ties ("evaluated at occurredAt order, not arrival order": the same
       documents give the same return in whatever order they arrived; the caseload and
       the victim alerts place facts the same way).
    4. *Folding*: facts with the same instant are applied together as one group,
       giving a piecewise-constant :class:`State` (responsible area and BCU,
       registered, in custody, category, level) over half-open segments
       ``[instant, next instant)``. A state holds *from* the instant of the event
       that brings it about, so the state "at" an instant is the state after every
       event at that instant. Within one instant, a state both begun and ended
       (a release and a recall, a registration started and ended) stays as it was
       before the instant, whatever the arrival order: the other state lasted no
       time. Several values of one kind (two level changes, two transfers) are
       taken in that order, the last one holding.
    5. *Occurrences*: the dated events the return counts (registration breaches,
       civil orders, recalls, order breaches, charges) are kept with the state at
       their instant; disposals of charges are kept by ``chargeId``.

Questions asked of a timeline
    * the state at the snapshot S (after every event before S), for ``i`` and the
      2008 ``vi``/``vii``;
    * whether a state held for a positive length of time inside P, for the 2004
      ``vi``/``vii`` and ``viii``: a segment counts when it overlaps P for a
      positive duration, so a state that begins and ends at the same instant (a
      zero-length segment never exists) is never counted;
    * which occurrences fell inside P, and in which state, for ``ii`` to ``v``,
      ``ix`` and the SFO outcomes.

Times are integers: microseconds since the Unix epoch, UTC. P is
``[P0, S)`` with P0 = 1 April ``year`` 00:00 and S = 1 April ``year + 1`` 00:00,
both Europe/London, so an event at 00:00 on 1 April belongs to the next year.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import groupby
from operator import itemgetter
from typing import Any, Final, NamedTuple
from zoneinfo import ZoneInfo

from projections.statistical_return.layouts import format_markdown

__all__ = [
    "LAYOUTS",
    "LONDON",
    "Occurrence",
    "OffenderTimeline",
    "ReportingPeriod",
    "Segment",
    "State",
    "build_timeline",
    "compute_return",
    "default_layout",
    "format_markdown",
    "to_instant",
]

LONDON: Final = ZoneInfo("Europe/London")
LAYOUTS: Final = ("2004", "2008")

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

RETRACTED: Final = "record.retracted"

# Events that put an offender into custody (contract, "In the community").
_CUSTODY_RECEIVED: Final = "custody.received"
_RECALLED: Final = "licence.recalled"
_ORDER_BREACHED: Final = "order.breached"
_RELEASED: Final = "custody.released"
_TRANSFERRED: Final = "mappa.area-transferred"
_REG_STARTED: Final = "registration.started"
_REG_ENDED: Final = "registration.ended"
_REG_BREACHED: Final = "registration.breached"
_CASE_CLOSED: Final = "mappa.case-closed"
_CATEGORY: Final = "mappa.category-assigned"
_LEVEL: Final = "mappa.level-changed"
_CHARGED: Final = "offence.charged"
_DISPOSED: Final = "offence.disposed"
_ORDER_APPLIED: Final = "order.applied"
_ORDER_INTERIM: Final = "order.interim-granted"
_ORDER_GRANTED: Final = "order.granted"

# Dated events the return counts; everything else only shapes the state.
_OCCURRENCE_TYPES: Final = frozenset(
    {
        _REG_BREACHED,
        _ORDER_APPLIED,
        _ORDER_INTERIM,
        _ORDER_GRANTED,
        _RECALLED,
        _ORDER_BREACHED,
        _CHARGED,
    }
)

_SOPO: Final = "SOPO"
_NOTIFICATION_ORDER: Final = "NOTIFICATION_ORDER"
_FOREIGN_TRAVEL_ORDER: Final = "FOREIGN_TRAVEL_ORDER"
# ix b: "a SOPO or restraining order ... returned to custody".
_IX_B_ORDER_TYPES: Final = frozenset({_SOPO, "RESTRAINING_ORDER"})
# ii: only breaches ending in a caution or a conviction are counted.
_II_OUTCOMES: Final = frozenset({"caution", "conviction"})
# Every offence but "other" is a serious further offence (interchange contract).
_NOT_SFO: Final = "other"
_MANAGED_LEVELS: Final = (3, 2)
_CATEGORIES: Final = (1, 2, 3)


# --------------------------------------------------------------------------- time


def to_instant(value: str | datetime) -> int:
    """Microseconds since the Unix epoch (UTC) of an ISO 8601 string or datetime.

    A value without an offset (not allowed by the interchange contract, accepted
    for robustness) is read as Europe/London wall time, the contract's time zone.
    """
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=LONDON)
    since = moment - _EPOCH  # exact integer arithmetic, faster than timedelta division
    return (since.days * 86_400 + since.seconds) * 1_000_000 + since.microseconds


@dataclass(frozen=True, slots=True)
class ReportingPeriod:
    """The reporting period P = [start, snapshot) of one area's return."""

    area: str
    year: int
    start: int
    snapshot: int

    @classmethod
    def of(cls, area: str, year: int) -> ReportingPeriod:
        # "1 April `year` to 31 March `year+1` ... S is the end of 31 March
        # (Europe/London)": end of 31 March is the first instant of 1 April.
        return cls(
            area=area,
            year=year,
            start=to_instant(datetime(year, 4, 1, tzinfo=LONDON)),
            snapshot=to_instant(datetime(year + 1, 4, 1, tzinfo=LONDON)),
        )

    def contains(self, instant: int) -> bool:
        return self.start <= instant < self.snapshot


def default_layout(year: int) -> str:
    """``"2004"`` for years before 2008, ``"2008"`` from 2008 (contract, Parameters)."""
    return "2008" if year >= 2008 else "2004"


# -------------------------------------------------------------------------- model


class State(NamedTuple):
    """What holds for an offender over one segment of time."""

    area: str | None
    bcu: str | None
    registered: bool
    in_custody: bool
    category: int | None
    level: int | None

    @property
    def in_community(self) -> bool:
        return not self.in_custody


_NOTHING_YET: Final = State(
    area=None, bcu=None, registered=False, in_custody=False, category=None, level=None
)


class Segment(NamedTuple):
    """``state`` holds from ``start`` (inclusive) to ``end`` (exclusive; None: still holds)."""

    start: int
    end: int | None
    state: State


class Occurrence(NamedTuple):
    """A dated event counted by the return, with the offender's state at its instant."""

    at: int
    event_type: str
    event_id: str
    info: Mapping[str, Any]
    state: State


class Disposal(NamedTuple):
    at: int
    arrival: int
    outcome: str
    event_id: str


@dataclass(frozen=True, slots=True)
class OffenderTimeline:
    """The temporal model of one offender's history (see the module docstring).

    ``starts[k]`` is the instant from which ``states[k]`` holds, until
    ``starts[k + 1]`` (the last state still holds); consecutive states differ.
    """

    reference: str | None
    starts: tuple[int, ...]
    states: tuple[State, ...]
    occurrences: tuple[Occurrence, ...]
    disposals: Mapping[str, tuple[Disposal, ...]] = field(default_factory=dict)

    @property
    def segments(self) -> tuple[Segment, ...]:
        ends: list[int | None] = [*self.starts[1:], None]
        return tuple(map(Segment, self.starts, ends, self.states))

    def state_before(self, moment: int) -> State | None:
        """The state after every event that occurred strictly before ``moment``."""
        index = bisect_left(self.starts, moment) - 1
        return self.states[index] if index >= 0 else None

    def states_during(self, start: int, end: int) -> Iterator[State]:
        """Every state that held for a positive length of time inside [start, end)."""
        starts, last = self.starts, len(self.starts) - 1
        # The state in force at ``start`` is the last one starting at or before it;
        # a state starting exactly at ``start`` holds from then on.
        first = max(bisect_left(starts, start + 1) - 1, 0)
        for index in range(first, last + 1):
            begins = starts[index]
            if begins >= end:
                break
            if index == last or starts[index + 1] > start:
                yield self.states[index]

    def latest_disposal(self, charge_id: str, before: int) -> Disposal | None:
        """The latest disposal of a charge that occurred strictly before ``before``."""
        latest: Disposal | None = None
        for disposal in self.disposals.get(charge_id, ()):
            if disposal.at < before and (latest is None or disposal[:2] > latest[:2]):
                latest = disposal
        return latest


def _info(document: Mapping[str, Any]) -> Mapping[str, Any]:
    info = document.get("additionalInformation")
    if type(info) is dict or isinstance(info, Mapping):
        return info
    return _NO_INFO


_NO_INFO: Final[Mapping[str, Any]] = {}


def _mappa_reference(document: Mapping[str, Any]) -> str | None:
    person = document.get("personReference")
    if not isinstance(person, Mapping):
        return None
    for identifier in person.get("identifiers") or ():
        if isinstance(identifier, Mapping) and identifier.get("type") == "MAPPA":
            value = identifier.get("value")
            return str(value) if value is not None else None
    return None


def _small_int(value: Any) -> int | None:
    """A category or level (1, 2 or 3), tolerating "2"; None when unusable."""
    if value in (1, 2, 3) and type(value) is int:
        return int(value)
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number in (1, 2, 3) else None


def _both_or(previous: bool, began: bool, ended: bool) -> bool:
    """A yes/no state after an instant where it may have begun and/or ended.

    Events at the same instant are applied together, so when one event of the
    instant begins a state and another ends it (a release and a recall, a
    reception and a release, a registration started and ended), the state that
    differs from the one before lasted no time at all: the offender stays as
    before, whatever the arrival order of the two documents.
    """
    if began and ended:
        return previous
    if began:
        return True
    if ended:
        return False
    return previous


def _assignment_or(previous: int | None, assigned: int | None, closed: bool) -> int | None:
    """Category or level after an instant, closure and assignment applied together.

    Without a closure the latest assignment wins. A closure clears it, "until a
    later event of the same type sets it again"; an assignment at the very instant
    of the closure is resolved like :func:`_both_or`: if the offender had none
    before, assigning and clearing at once leaves none; if they had one, the
    clearance lasted no time and the new assignment holds.
    """
    if not closed:
        return previous if assigned is None else assigned
    if assigned is None or previous is None:
        return None
    return assigned


# A fact document as placed on the timeline: (instant, arrival, type, document).
_Fact = tuple[int, int, str, Mapping[str, Any]]


def _placement(fact: _Fact) -> tuple[int, str]:
    return fact[0], str(fact[3].get("eventId"))


def build_timeline(
    history: Sequence[Mapping[str, Any]], known_by: int | None = None
) -> OffenderTimeline | None:
    """The temporal model of one history, as known at instant ``known_by``.

    Returns None when nothing of the history is left (nothing recorded yet, or
    every fact retracted).
    """
    seen = (
        history
        if known_by is None
        else [document for document in history if _recorded_by(document, known_by)]
    )
    return TimelineFold.of(seen).timeline()


@dataclass
class TimelineFold:
    """:func:`build_timeline`'s fold of a history, which a projection keeps between batches
    and extends with facts that follow every fact folded so far (``extended``) instead of
    folding the whole history again."""

    # Every retraction's target and every fact's eventId among the documents folded.
    retracted: set[str]
    event_ids: set[str]
    # How many documents were folded (the next one's arrival number).
    arrivals: int
    # The instant of the last fact folded (None: none yet).
    last_instant: int | None = None
    reference: str | None = None
    starts: list[int] = field(default_factory=list)
    states: list[State] = field(default_factory=list)
    occurrences: list[Occurrence] = field(default_factory=list)
    disposals: dict[str, list[Disposal]] = field(default_factory=dict)

    @classmethod
    def of(cls, history: Sequence[Mapping[str, Any]]) -> TimelineFold:
        retracted = {
            str(_info(document).get("eventId"))
            for document in history
            if document.get("eventType") == RETRACTED
        }
        fold = cls(retracted, set(), 0)
        facts = fold._new_facts(history)
        if facts:
            fold.reference = _mappa_reference(facts[0][3])
            fold._apply(facts)
        fold.arrivals = len(history)
        return fold

    def extended(self, added: Sequence[Mapping[str, Any]]) -> bool:
        """Fold in ``added`` (the documents that arrived next) if each one that counts
        happened after every fact folded so far and none is a retraction; False, folding
        nothing, if the whole history must be folded again."""
        if not self.starts or any(d.get("eventType") == RETRACTED for d in added):
            return False
        facts = self._new_facts(added)
        if facts is None:
            return False
        self._apply(facts)
        self.arrivals += len(added)
        return True

    def passed_over(self, added: Sequence[Mapping[str, Any]]) -> None:
        """Count in ``added``, documents that arrived next and that
        :func:`leaves_timeline_as_it_was` says change nothing: they number the arrivals
        after them, and a repeat of one of them is not a new fact."""
        self.arrivals += len(added)
        self.event_ids.update(str(document.get("eventId")) for document in added)

    def _new_facts(self, documents: Sequence[Mapping[str, Any]]) -> list[_Fact] | None:
        """These documents' facts, placed (retracted, retractions and repeated eventIds left
        out; sorted by instant, eventId breaking ties); None if, after facts already folded,
        one happened at or before the last of them. Records their eventIds."""
        last_instant = self.last_instant
        facts: list[_Fact] = []
        ids: set[str] = set()
        for arrival, document in enumerate(documents, start=self.arrivals):
            event_type = document.get("eventType")
            event_id = str(document.get("eventId"))
            if (
                event_type == RETRACTED
                or event_id in self.retracted
                or event_id in self.event_ids
                or event_id in ids
            ):
                continue
            instant = to_instant(document["occurredAt"])
            if last_instant is not None and instant <= last_instant:
                return None
            ids.add(event_id)
            facts.append((instant, arrival, str(event_type), document))
        self.event_ids |= ids
        facts.sort(key=_placement)
        return facts

    def _apply(self, facts: Sequence[_Fact]) -> None:
        state = self.states[-1] if self.states else _NOTHING_YET
        for instant, same_instant in groupby(facts, key=itemgetter(0)):
            group = tuple(same_instant)
            state = _apply_together(state, group)
            if not self.states or state != self.states[-1]:
                self.starts.append(instant)
                self.states.append(state)
            for _, arrival, event_type, document in group:
                if event_type in _OCCURRENCE_TYPES:
                    self.occurrences.append(
                        Occurrence(
                            instant, event_type, str(document.get("eventId")), _info(document),
                            state,
                        )
                    )  # fmt: skip
                elif event_type == _DISPOSED:
                    info = _info(document)
                    self.disposals.setdefault(str(info.get("chargeId")), []).append(
                        Disposal(
                            instant, arrival, str(info.get("outcome")), str(document.get("eventId"))
                        )
                    )
            self.last_instant = instant

    def timeline(self) -> OffenderTimeline | None:
        if not self.starts:
            return None
        return OffenderTimeline(
            reference=self.reference,
            starts=tuple(self.starts),
            states=tuple(self.states),
            occurrences=tuple(self.occurrences),
            disposals={charge: tuple(items) for charge, items in self.disposals.items()},
        )


def leaves_timeline_as_it_was(
    timeline: OffenderTimeline | None, added: Iterable[Mapping[str, Any]]
) -> bool:
    """Whether ``build_timeline`` of a history with ``added`` appended gives ``timeline``,
    the history's timeline without them, for certain (False when it may not).

    So it does when every added fact is of a type that neither changes the state, nor is
    counted, nor retracts anything (notices, licence conditions, victims, transfers between
    prisons...), and happened after the history's first instant: it then joins no state and
    is not the first fact, whose area starts the timeline. A third of the facts are such.
    """
    if timeline is None or not timeline.states or timeline.states[0].area is None:
        return False
    first = timeline.starts[0]
    return all(
        document.get("eventType") not in _SHAPING_TYPES
        and to_instant(document["occurredAt"]) > first
        for document in added
    )


def _recorded_by(document: Mapping[str, Any], known_by: int) -> bool:
    recorded_at = document.get("recordedAt")
    # Every stored document carries recordedAt; one without it cannot be placed
    # in the tracker's own time and is treated as always known.
    return recorded_at is None or to_instant(recorded_at) <= known_by


# Event types that change the state; the others only happen (occurrences) or
# inform people (notices, licence conditions, victims) and leave it as it was.
_STATE_TYPES: Final = frozenset(
    {
        _CUSTODY_RECEIVED,
        _RECALLED,
        _ORDER_BREACHED,
        _RELEASED,
        _TRANSFERRED,
        _REG_STARTED,
        _REG_ENDED,
        _CASE_CLOSED,
        _CATEGORY,
        _LEVEL,
    }
)

# Every event type that build_timeline reads beyond its instant and area.
_SHAPING_TYPES: Final = _STATE_TYPES | _OCCURRENCE_TYPES | {_DISPOSED, RETRACTED}


def _apply_together(state: State, group: Sequence[_Fact]) -> State:
    """The state after applying every event of one instant (in eventId order)."""
    area, bcu, registered, in_custody, category, level = state
    if area is None:
        # "the `area` of their earliest event (by occurredAt)": the first fact.
        first_area = group[0][3].get("area")
        area = None if first_area is None else str(first_area)
    custody_began = custody_ended = False
    registration_began = registration_ended = False
    closed = False
    assigned_category: int | None = None
    assigned_level: int | None = None

    for _, _, event_type, document in group:
        if event_type not in _STATE_TYPES:
            continue
        info = _info(document)
        if event_type in (_CUSTODY_RECEIVED, _RECALLED):
            custody_began = True
        elif event_type == _ORDER_BREACHED:
            if info.get("returnedToCustody") is True:
                custody_began = True
        elif event_type == _RELEASED:
            custody_ended = True
            area, bcu = _moved(area, bcu, info.get("toArea"), info.get("toBcu"))
        elif event_type == _TRANSFERRED:
            area, bcu = _moved(area, bcu, info.get("toArea"), info.get("toBcu"))
        elif event_type == _REG_STARTED:
            registration_began = True
            if info.get("bcu"):
                bcu = str(info["bcu"])
        elif event_type == _REG_ENDED:
            registration_ended = True
        elif event_type == _CASE_CLOSED:
            # "Registered: ... until registration.ended or mappa.case-closed", and
            # "a closure clears both" category and level.
            registration_ended = True
            closed = True
        elif event_type == _CATEGORY:
            assigned_category = _small_int(info.get("category")) or assigned_category
        elif event_type == _LEVEL:
            assigned_level = _small_int(info.get("level")) or assigned_level

    if registration_began or registration_ended:
        registered = _both_or(registered, registration_began, registration_ended)
    if custody_began or custody_ended:
        in_custody = _both_or(in_custody, custody_began, custody_ended)
    if closed or assigned_category is not None:
        category = _assignment_or(category, assigned_category, closed)
    if closed or assigned_level is not None:
        level = _assignment_or(level, assigned_level, closed)
    return State(area, bcu, registered, in_custody, category, level)


def _moved(
    area: str | None, bcu: str | None, to_area: Any, to_bcu: Any
) -> tuple[str | None, str | None]:
    """Area and BCU after a transfer or a release that may name either."""
    new_bcu = str(to_bcu) if to_bcu else None
    if to_area and to_area != area:
        # "a move to another area without a BCU leaves it unknown".
        return str(to_area), new_bcu
    return area, new_bcu if new_bcu is not None else bcu


# ----------------------------------------------------------------------- counting


@dataclass(slots=True)
class _Tally:
    """Running counts of one return; offender sets hold history positions."""

    period: ReportingPeriod
    i_by_bcu: dict[str, int] = field(default_factory=dict)
    ii: set[int] = field(default_factory=set)
    orders: dict[tuple[str, str], int] = field(default_factory=dict)
    vi_during: set[int] = field(default_factory=set)
    vii_during: set[int] = field(default_factory=set)
    vi_at_snapshot: set[int] = field(default_factory=set)
    vii_at_snapshot: set[int] = field(default_factory=set)
    viii: dict[tuple[int, int], set[int]] = field(default_factory=dict)
    ix: dict[tuple[int, str], set[int]] = field(default_factory=dict)
    sfo: dict[str, int] = field(
        default_factory=lambda: {"convicted": 0, "other_outcome": 0, "remain_charged": 0}
    )

    def count(self, offender: int, timeline: OffenderTimeline) -> None:
        self._at_snapshot(offender, timeline)
        self._during_period(offender, timeline)
        self._occurrences(offender, timeline)
        self._sfo_outcomes(timeline)

    def _at_snapshot(self, offender: int, timeline: OffenderTimeline) -> None:
        # "the state at S is the state after every event that occurred before it".
        state = timeline.state_before(self.period.snapshot)
        if state is None or state.area != self.period.area or not state.in_community:
            return
        if state.registered:
            # i: "registered, in the community and in the area at S" (category is
            # not asked: registration is what makes an RSO), split by BCU at S.
            key = state.bcu or "unknown"
            self.i_by_bcu[key] = self.i_by_bcu.get(key, 0) + 1
        # vi/vii, layout 2008: "in category 2 [3], in the community and in the area at S".
        if state.category == 2:
            self.vi_at_snapshot.add(offender)
        elif state.category == 3:
            self.vii_at_snapshot.add(offender)

    def _during_period(self, offender: int, timeline: OffenderTimeline) -> None:
        # "At any moment of P": a state holding for a positive time inside P.
        for state in timeline.states_during(self.period.start, self.period.snapshot):
            if state.area != self.period.area:
                continue
            # vi/vii, layout 2004: category 2 [3], in the community, in the area.
            if state.in_community and state.category == 2:
                self.vi_during.add(offender)
            elif state.in_community and state.category == 3:
                self.vii_during.add(offender)
            # viii: managed at level 3 or 2, in a category, in the area; custody
            # does not matter, and an offender at both levels counts under both.
            if state.level in _MANAGED_LEVELS and state.category is not None:
                self.viii.setdefault((state.level, state.category), set()).add(offender)

    def _occurrences(self, offender: int, timeline: OffenderTimeline) -> None:
        # "Orders, breaches and charges are counted in the area where the offender
        # was when they occurred", and only those that occurred in P.
        for occurrence in timeline.occurrences:
            if not self.period.contains(occurrence.at):
                continue
            if occurrence.state.area != self.period.area:
                continue
            event_type, info = occurrence.event_type, occurrence.info
            if event_type == _REG_BREACHED:
                if info.get("outcome") in _II_OUTCOMES:
                    self.ii.add(offender)
            elif event_type in (_ORDER_APPLIED, _ORDER_INTERIM, _ORDER_GRANTED):
                # iii-v count orders (events), not offenders; an order made on
                # conviction is an order.granted without applicationId: counted.
                key = (str(info.get("orderType")), event_type)
                self.orders[key] = self.orders.get(key, 0) + 1
            level = occurrence.state.level
            if level not in _MANAGED_LEVELS:
                continue
            # ix: "in P and while managed at that level in the area".
            if event_type == _RECALLED:
                self.ix.setdefault((level, "a"), set()).add(offender)
            elif (
                event_type == _ORDER_BREACHED
                and info.get("orderType") in _IX_B_ORDER_TYPES
                and info.get("returnedToCustody") is True
            ):
                self.ix.setdefault((level, "b"), set()).add(offender)
            elif event_type == _CHARGED and _is_sfo(info):
                self.ix.setdefault((level, "c"), set()).add(offender)

    def _sfo_outcomes(self, timeline: OffenderTimeline) -> None:
        for _charge, _disposal, bucket in counted_sfo_charges(timeline, self.period):
            self.sfo[bucket] += 1

    def order_count(self, order_type: str, event_type: str) -> int:
        return self.orders.get((order_type, event_type), 0)


def counted_sfo_charges(
    timeline: OffenderTimeline, period: ReportingPeriod
) -> Iterator[tuple[Occurrence, Disposal | None, str]]:
    """The SFO charges ``sfo_outcomes`` counts for one offender: each charge, its latest
    disposal before S (None: still charged) and its bucket (``convicted``,
    ``other_outcome`` or ``remain_charged``).

    Counting charges, not offenders: a charge is its chargeId (scoped to the offender); a
    repeated charge document for the same id is the same charge.
    """
    charged: set[str] = set()
    for occurrence in timeline.occurrences:
        if occurrence.event_type != _CHARGED or not _is_sfo(occurrence.info):
            continue
        if occurrence.at >= period.snapshot:
            break
        charge_id = str(occurrence.info.get("chargeId", occurrence.event_id))
        if charge_id in charged:
            continue
        charged.add(charge_id)
        # "against offenders then at level 2 or 3 in the area": at the charge.
        state = occurrence.state
        if state.area != period.area or state.level not in _MANAGED_LEVELS:
            continue
        # A charge made before P counts only when "undisposed when P began",
        # i.e. no disposal before P0 ("remained charged ... at 31 March").
        if occurrence.at < period.start and timeline.latest_disposal(charge_id, period.start):
            continue
        # "each by its latest disposal before S".
        disposal = timeline.latest_disposal(charge_id, period.snapshot)
        if disposal is None:
            yield occurrence, None, "remain_charged"
        elif disposal.outcome == "convicted":
            yield occurrence, disposal, "convicted"
        else:
            yield occurrence, disposal, "other_outcome"


def _is_sfo(info: Mapping[str, Any]) -> bool:
    offence = info.get("offence")
    return bool(offence) and offence != _NOT_SFO


def _per_100k(count: int, population: int | None) -> int | None:
    """``count`` per 100,000 of ``population``, rounded half up (exact integers)."""
    if population is None or population <= 0:
        return None
    return (count * 200_000 + population) // (2 * population)


def compute_return(
    histories: Iterable[Sequence[Mapping[str, Any]]],
    area: str,
    year: int,
    layout: str | None = None,
    as_known_on: datetime | None = None,
    population: int | None = None,
) -> dict[str, Any]:
    """The statistical return of ``area`` for the year starting 1 April ``year``.

    ``histories``: one sequence of fact documents per offender (interchange
    documents plus ``recordedAt``, arrival order). ``layout``: ``"2004"`` or
    ``"2008"``, by default the layout of ``year``. ``as_known_on``: count only
    what had been recorded by then (a naive value is read as Europe/London).
    ``population``: the area's population for ``ia`` (None gives ``ia`` None).
    Returns the contract's JSON object.
    """
    layout = default_layout(year) if layout is None else str(layout)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    if as_known_on is not None and as_known_on.tzinfo is None:
        as_known_on = as_known_on.replace(tzinfo=LONDON)
    known_by = None if as_known_on is None else to_instant(as_known_on)

    timelines = (build_timeline(history, known_by) for history in histories)
    return return_from_timelines(
        (t for t in timelines if t is not None),
        area,
        year,
        layout,
        None if as_known_on is None else as_known_on.isoformat(),
        population,
    )


def return_from_timelines(
    timelines: Iterable[OffenderTimeline],
    area: str,
    year: int,
    layout: str | None = None,
    as_known_on: str | None = None,
    population: int | None = None,
) -> dict[str, Any]:
    """The return counted from offenders' timelines already built (see
    :func:`compute_return`, which builds them from histories)."""
    layout = default_layout(year) if layout is None else str(layout)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    period = ReportingPeriod.of(area, year)
    tally = _Tally(period)
    for offender, timeline in enumerate(timelines):
        tally.count(offender, timeline)

    i = sum(tally.i_by_bcu.values())
    result: dict[str, Any] = {
        "area": area,
        "year": year,
        "layout": layout,
        "asKnownOn": as_known_on,
        "i": i,
        "i_by_bcu": dict(sorted(tally.i_by_bcu.items())),
        "ia": _per_100k(i, population),
        "ii": len(tally.ii),
        "iii": _order_counts(tally, _SOPO),
        "iv": _order_counts(tally, _NOTIFICATION_ORDER),
        "v": {
            "a": tally.order_count(_FOREIGN_TRAVEL_ORDER, _ORDER_APPLIED),
            "b": tally.order_count(_FOREIGN_TRAVEL_ORDER, _ORDER_GRANTED),
        },
    }
    if layout == "2008":
        # The 2008 template also asks for interim Foreign Travel Orders.
        result["v"]["b_interim"] = tally.order_count(_FOREIGN_TRAVEL_ORDER, _ORDER_INTERIM)
        # 2008 changed categories 2 and 3 to a 31 March snapshot (003, "Explanation").
        result["vi"] = len(tally.vi_at_snapshot)
        result["vii"] = len(tally.vii_at_snapshot)
    else:
        result["vi"] = len(tally.vi_during)
        result["vii"] = len(tally.vii_during)
    result["viii"] = {
        f"level{level}": {
            f"cat{category}": len(tally.viii.get((level, category), ())) for category in _CATEGORIES
        }
        for level in _MANAGED_LEVELS
    }
    result["viii_distinct"] = len(set().union(*tally.viii.values()))
    result["ix"] = {
        f"level{level}": {letter: len(tally.ix.get((level, letter), ())) for letter in "abc"}
        for level in _MANAGED_LEVELS
    }
    if layout == "2008":
        result["sfo_outcomes"] = dict(tally.sfo)
    return result


def _order_counts(tally: _Tally, order_type: str) -> dict[str, int]:
    return {
        "a": tally.order_count(order_type, _ORDER_APPLIED),
        "b": tally.order_count(order_type, _ORDER_INTERIM),
        "c": tally.order_count(order_type, _ORDER_GRANTED),
    }


# ------------------------------------------------------------- stored timelines


def timeline_to_json(timeline: OffenderTimeline) -> list[Any]:
    """A timeline as plain JSON values, to be stored by the read model."""
    return [
        timeline.reference,
        list(timeline.starts),
        [list(state) for state in timeline.states],
        [[o.at, o.event_type, o.event_id, dict(o.info), list(o.state)]
         for o in timeline.occurrences],
        {charge: [list(d) for d in disposals] for charge, disposals in timeline.disposals.items()},
    ]  # fmt: skip


def timeline_from_json(data: Sequence[Any]) -> OffenderTimeline:
    reference, starts, states, occurrences, disposals = data
    return OffenderTimeline(
        reference=reference,
        starts=tuple(starts),
        states=tuple(State(*state) for state in states),
        occurrences=tuple(
            Occurrence(at, event_type, event_id, info, State(*state))
            for at, event_type, event_id, info, state in occurrences
        ),
        disposals={
            charge: tuple(Disposal(*d) for d in values) for charge, values in disposals.items()
        },
    )
