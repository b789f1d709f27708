"""The victim-alert rules of ``victim-alerts.md``, as pure functions of an offender's history.

The projection stores every accepted fact document of an offender (the interchange JSON plus
the tracker's ``recordedAt``), calls :func:`derive_alerts` with the whole history after each
new document, and raises what :func:`plan_alerts` says is not yet raised. Nothing here does
I/O or reads a clock, so the same history always gives the same alerts, whatever the order
in which its documents arrived.

What is due is decided on *when things happened* (``occurredAt``, as the contract says), but
an alert, once the tracker could have raised it, stays due: the rules ask whether, at some
moment the tracker knew of the event (some ``recordedAt``), the facts it knew then made the
alert due. A ``victim.withdrawn`` or ``mappa.level-changed`` that happened earlier but
reaches the tracker after the alert was raised therefore does not un-raise it (the VLO was
told, and nothing told was recorded in error), and rebuilding the projection from zero
raises the alerts it raised live (``recordedAt`` grows with arrival). A retraction makes an
event "as if it had not happened, from the time the retraction is recorded"
(interchange-v1.md): each moment is judged with the retractions known then, and an alert
due at a moment stands only if it rests on no fact retracted since (its trigger, the
victim's enrolment, the level and area behind a late notice). So a raised alert stops being
derivable only when a fact it rests on is retracted, and that is when :func:`plan_alerts`
corrects it; and a retraction never makes due, at an earlier moment, an alert that the
facts known then did not (retracting a withdrawal tells the victim's VLO as enrolled when
the retraction came, not as enrolled before a re-enrolment arrived).

Choices where the contract is silent (each also commented where it is made):

- Same instant: an enrolment counts for an event at the same ``occurredAt`` ("at or
  before"); a withdrawal at the same instant as the event, or as an enrolment of the same
  victim, wins (the victim asked not to be contacted).
- Several enrolments of one victim: the latest at the event's moment gives the VLO and
  ``wants``. ``wants: []`` means the victim wants none of the alerts; only an absent (or
  null) ``wants`` means all.
- Other ties at one instant (level and area changes) are broken by ``eventId``, as the
  offender timeline does, so that no arrival order changes the answer.
- A changed release date is judged against the previous non-retracted notice in
  ``occurredAt`` order within the same custody term: a ``custody.released`` in between means
  the earlier notice was about an earlier sentence. A notice that a later one has already
  replaced says so, so that the VLO does not pass on a stale date.
- Every ``release.notified`` raises ``release-due``, even one repeating the previous date
  (the alert then says the date is unchanged).
- The responsible area counts every non-retracted fact (victim-liaison ones too) for "the
  earliest event", and a move by ``mappa.area-transferred`` or ``custody.released`` takes
  effect at its own ``occurredAt``.
- Who is told (VLO, ``wants``) is what it was when the alert first became due; what they are
  told (wording, area, previous release date) is judged on the whole history. A transfer
  reported late, placing a late notice in another area, raises it to that area's co-ordinator
  too (the first co-ordinator's alert stands: it is not an error in a retracted fact).
- An alert whose enrolment is retracted while another enrolment of the victim makes it
  due (one with another VLO, or one made earlier that arrives later) is corrected and
  raised anew, through the other enrolment, under an id derived from the event, the
  victim and that enrolment (the first id is on record).
"""

from __future__ import annotations

import bisect
import calendar
import functools
import hashlib
import itertools
import operator
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, NamedTuple, TypeGuard
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")

ALERT_KINDS: tuple[str, ...] = (
    "release-due",
    "released",
    "licence-conditions",
    "recalled",
    "sentence-reduced",
    "work-placement",
    "absconded",
    "transferred",
    "parole-outcome",
    "case-closing",
)
LATE_RELEASE_NOTICE = "late-release-notice"
CORRECTION = "correction"

# Alert ids are uuid5 in this namespace (uuid5(NAMESPACE_URL, "urn:mappa-tracker:victim-alerts")).
# Stored alerts are keyed by these ids: changing the namespace would raise every alert again.
ALERT_ID_NAMESPACE = uuid.UUID("37636868-c604-5226-8e12-61d684354382")

LeadTimes = Callable[[str, int], str | None]

_ENROLLED = "victim.enrolled"
_WITHDRAWN = "victim.withdrawn"
RETRACTED = "record.retracted"
_NOTIFIED = "release.notified"
_RELEASED = "custody.released"
_LEVEL_CHANGED = "mappa.level-changed"
_CASE_CLOSED = "mappa.case-closed"
_AREA_TRANSFERRED = "mappa.area-transferred"

_KIND_BY_EVENT_TYPE: dict[str, str] = {
    _NOTIFIED: "release-due",
    _RELEASED: "released",
    "licence.conditions-set": "licence-conditions",
    "licence.recalled": "recalled",
    "custody.absconded": "absconded",
    "custody.transferred": "transferred",
    "parole.decided": "parole-outcome",
    _CASE_CLOSED: "case-closing",
}

_SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class Alert:
    """One thing one person must be told: a victim's VLO, or an area's MAPPA co-ordinator."""

    alert_id: str
    kind: str
    recipient: str
    victim_ref: str | None
    offender_ref: str
    area: str
    event_id: str
    event_type: str
    occurred_at: str
    recorded_at: str
    late_by_seconds: int
    message: str
    # Excluded from the hash (a dict is unhashable) so that alerts can go in sets.
    details: dict[str, Any] = field(hash=False)
    corrects_alert_id: str | None = None


_NAMESPACE_BYTES = ALERT_ID_NAMESPACE.bytes


def alert_uuid(name: str) -> str:
    """``str(uuid.uuid5(ALERT_ID_NAMESPACE, name))``, made without the two ``UUID`` objects
    the library builds in Python on the way (a new alert's id took 4 us)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


# Pure functions of immutable values, cached: a history is judged again whenever it grows,
# so the same moments and ids are worked out again and again (a tenth of a projector's time).
@functools.lru_cache(maxsize=65_536)
def alert_id_for(event_id: str, victim_ref: str) -> str:
    """The stable id of the alert to ``victim_ref`` about ``event_id``."""
    return alert_uuid(f"{event_id}:{victim_ref}")


@functools.lru_cache(maxsize=65_536)
def readdressed_alert_id_for(event_id: str, victim_ref: str, enrolment_event_id: str) -> str:
    """The stable id of the alert to ``victim_ref`` about ``event_id`` through the enrolment
    ``enrolment_event_id``, when the alert first raised for them under the event's and the
    victim's id rested on an enrolment since retracted (see :func:`_victim_alert_id`)."""
    return alert_uuid(f"{event_id}:{victim_ref}:{enrolment_event_id}")


def _victim_alert_id(
    trigger: Fact,
    enrolment: Fact,
    on_record: Mapping[str, Alert] | None,
    retracted: AbstractSet[str] = frozenset(),
) -> str:
    """The id of the alert due through ``enrolment``: the event's and the victim's, unless
    the alert on record under that id came through another enrolment. The enrolment
    through which an alert is due never changes unless it is retracted, so that one was:
    the alert on record is corrected, and the victim's VLO (the same or another) is told
    anew, under an id from the enrolment too, whether the retraction and the other
    enrolment arrive together or apart. ``retracted``: the events the history judged
    retracts."""
    victim_ref = str(enrolment.info["victimRef"])
    alert_id = alert_id_for(trigger.event_id, victim_ref)
    recorded = on_record.get(alert_id) if on_record else None
    if (
        recorded is None
        or recorded.details.get("enrolmentEventId") == enrolment.event_id
        # Raised through another enrolment of the victim with the same VLO (enrolled again)
        # while this one was known already, and not corrected: that VLO was told what was
        # due through this one too, so nothing told was in error. Corrected, that is, by a
        # retraction in the history judged: replaying a history whose alerts are on record
        # (a rebuild), a correction whose retraction is not replayed yet is still to come.
        or (
            recorded.recipient == str(enrolment.info["vloRef"])
            and enrolment.recorded <= trigger.recorded
            and on_record is not None
            and not (
                correction_id_for(alert_id) in on_record
                and {recorded.event_id, recorded.details.get("enrolmentEventId")} & retracted
            )
        )
    ):
        return alert_id
    return readdressed_alert_id_for(trigger.event_id, victim_ref, enrolment.event_id)


@functools.lru_cache(maxsize=65_536)
def coordinator_alert_id_for(event_id: str, area: str) -> str:
    """The stable id of the late-release-notice alert about ``event_id`` to ``area``."""
    return alert_uuid(f"{event_id}:coordinator:{area}")


@functools.lru_cache(maxsize=65_536)
def correction_id_for(alert_id: str) -> str:
    """The stable id of the correction of ``alert_id``: one correction per alert, ever."""
    return alert_uuid(f"{alert_id}:correction")


# ---------------------------------------------------------------------------------------------
# ISO 8601 durations (the areas' release-notice lead times)


@dataclass(frozen=True)
class Duration:
    """A calendar duration: months are added by the calendar, then days."""

    months: int
    days: int


_DURATION = re.compile(
    r"P(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?"
)


def parse_duration(text: str) -> Duration:
    """Parse an ISO 8601 duration ``PnYnMnWnD`` (a time part only if it is whole days).

    Raises ``ValueError`` for anything else, so that reference data can be checked on load.
    """
    match = _DURATION.fullmatch(text.strip())
    if match is None or not any(match.groupdict().values()) or text.strip().endswith("T"):
        raise ValueError(f"not an ISO 8601 duration of years, months, weeks and days: {text!r}")
    part = {name: int(value or 0) for name, value in match.groupdict().items()}
    seconds = part["hours"] * 3600 + part["minutes"] * 60 + part["seconds"]
    if seconds % _SECONDS_PER_DAY:
        raise ValueError(f"a release-notice lead time must be whole days: {text!r}")
    return Duration(
        months=part["years"] * 12 + part["months"],
        days=part["weeks"] * 7 + part["days"] + seconds // _SECONDS_PER_DAY,
    )


# The Gregorian calendar repeats every 400 years, which are this many days: a day past
# ``date``'s last year (9999) is reckoned as the same day 400 years (or a multiple) earlier.
_DAYS_IN_400_YEARS = 146_097


class CalendarDay(NamedTuple):
    """A day of the proleptic Gregorian calendar, in any year from 1 on.

    ``date`` ends with 9999: a release notice given in December 9999 under a three-month
    rule is in time for a release from a day in 10000, and the rules must say so rather
    than raise (a fact that cannot be judged would stop its projection for good).
    """

    year: int
    month: int
    day: int

    @classmethod
    def of(cls, day: date) -> CalendarDay:
        return cls(day.year, day.month, day.day)

    @classmethod
    def from_ordinal(cls, ordinal: int) -> CalendarDay:
        cycles, within = divmod(ordinal - 1, _DAYS_IN_400_YEARS)
        day = date.fromordinal(within + 1)
        return cls(day.year + 400 * cycles, day.month, day.day)

    @property
    def ordinal(self) -> int:
        """``date.toordinal``'s number of the day (1 January of year 1 is 1)."""
        cycles = (self.year - 1) // 400
        earlier = date(self.year - 400 * cycles, self.month, self.day)
        return earlier.toordinal() + cycles * _DAYS_IN_400_YEARS

    def days_after(self, other: date) -> int:
        """How many days this day is after ``other`` (negative if before it)."""
        return self.ordinal - other.toordinal()

    def isoformat(self) -> str:
        return f"{self.year:04d}-{self.month:02d}-{self.day:02d}"

    def __str__(self) -> str:
        return self.isoformat()


def add_duration(start: date, duration: Duration) -> CalendarDay:
    """``start`` plus ``duration``, as dateutil's ``relativedelta`` does it: years and months
    first, clamping the day to the end of a shorter month (31 Jan + P1M is 28/29 Feb), then
    weeks and days. Past the year 9999 too (see ``CalendarDay``)."""
    month_index = start.year * 12 + (start.month - 1) + duration.months
    year, month = divmod(month_index, 12)
    month += 1
    # A month's length depends on the year only through leap years, which repeat every 400.
    day = min(start.day, calendar.monthrange(1 + (year - 1) % 400, month)[1])
    return CalendarDay.from_ordinal(CalendarDay(year, month, day).ordinal + duration.days)


# ---------------------------------------------------------------------------------------------
# Facts


class Fact(NamedTuple):
    """A fact document with what the rules read of it, parsed once. (A named tuple: made
    for every fact, a frozen dataclass took three times as long to build.)"""

    doc: Mapping[str, Any]
    event_id: str
    event_type: str
    occurred: datetime
    recorded: datetime

    @property
    def offender_ref(self) -> str:
        """The offender's MAPPA reference in the document ("" if it has none): read only
        for the events judged, not made for every fact."""
        return _mappa_ref(self.doc)

    @property
    def info(self) -> Mapping[str, Any]:
        info = self.doc.get("additionalInformation")
        return info if _is_mapping(info) else {}

    @property
    def placement(self) -> tuple[datetime, str]:
        # Same order as the offender timeline: when it happened, then eventId for ties.
        return (self.occurred, self.event_id)

    @property
    def occurred_at(self) -> str:
        return str(self.doc["occurredAt"])

    @property
    def recorded_at(self) -> str:
        return str(self.doc["recordedAt"])

    @property
    def area(self) -> str:
        return str(self.doc.get("area", ""))


def _moment(text: str) -> datetime:
    """The instant ``text`` names, in UTC.

    In UTC because the rules compare and sort moments all the time: ``fromisoformat`` gives
    each summer-time text ("+01:00") a time zone object of its own, and two datetimes with
    different time zone objects compare through both offsets, some nine times as slowly as
    two sharing one. Measured, a victim-alerts catch-up spent 4% less CPU. Only instants
    are read from these (texts are spelt from the documents), so nothing else changes.
    """
    moment = datetime.fromisoformat(str(text))
    # occurredAt always has an offset; recordedAt is UTC by definition even if written bare.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment if moment.tzinfo is UTC else moment.astimezone(UTC)


# For alerts' times, read again and again, and for the facts' ``recordedAt``, shared by
# every fact of a submission (0.6 of the 4 us of ``fact_of``). Not for ``occurredAt``: nearly
# every one is new, and looking them up first made reading a fact half as slow again.
instant_of = functools.lru_cache(maxsize=65_536)(_moment)


def _is_mapping(value: object) -> TypeGuard[Mapping[str, Any]]:
    # A JSON object is a dict: the exact type check first spares the ABC's slower one.
    return type(value) is dict or isinstance(value, Mapping)


def _mappa_ref(doc: Mapping[str, Any]) -> str:
    reference = doc.get("personReference")
    identifiers = reference.get("identifiers", []) if _is_mapping(reference) else []
    for identifier in identifiers:
        if _is_mapping(identifier) and identifier.get("type") == "MAPPA":
            return str(identifier.get("value", ""))
    return ""


def fact_of(doc: Mapping[str, Any]) -> Fact:
    """A fact document as the rules read it: what :func:`derive_alerts` makes of each
    document, which a caller deriving again and again from a growing history may keep."""
    return Fact(
        doc=doc,
        event_id=str(doc["eventId"]),
        event_type=str(doc["eventType"]),
        occurred=_moment(doc["occurredAt"]),
        recorded=instant_of(doc["recordedAt"]),
    )


class _Judged(NamedTuple):
    """An offender's facts as the rules judge them."""

    # The facts not retracted (retractions themselves excluded), in placement order.
    facts: list[Fact]
    # Each retracted event's id, with when its retraction reached the tracker.
    retracted_at: dict[str, datetime]
    # The retracted facts the tracker knew before their retraction reached it.
    once_known: list[Fact]


def _facts(read: Iterable[Fact]) -> _Judged:
    by_id: dict[str, Fact] = {}
    for fact in read:
        kept = by_id.get(fact.event_id)
        # Histories hold no duplicates; should one slip in, the first accepted copy counts.
        if kept is None or fact.recorded < kept.recorded:
            by_id[fact.event_id] = fact
    retractions = [fact for fact in by_id.values() if fact.event_type == RETRACTED]
    if not retractions:  # most histories
        return _Judged(sorted(by_id.values(), key=_placement), {}, [])
    # A retraction makes its target as if it had not happened from the moment the retraction
    # is recorded (interchange-v1.md): a target that arrived after its retraction was never
    # known. Retractions of retractions are rejected at ingest, so a retraction is never
    # itself retracted here.
    retracted_at: dict[str, datetime] = {}
    # Latest first, so that an event retracted twice keeps the earlier retraction's time.
    for retraction in sorted(retractions, key=_recorded, reverse=True):
        retracted_at[str(retraction.info.get("eventId"))] = retraction.recorded
    facts = [
        fact
        for fact in by_id.values()
        if fact.event_type != RETRACTED and fact.event_id not in retracted_at
    ]
    once_known = [
        known
        for target, at in retracted_at.items()
        if (known := by_id.get(target)) is not None and known.recorded < at
    ]
    return _Judged(sorted(facts, key=_placement), retracted_at, sorted(once_known, key=_placement))


_occurred = operator.attrgetter("occurred")
_recorded = operator.attrgetter("recorded")
# ``Fact.placement``, made in C.
_placement = operator.attrgetter("occurred", "event_id")


def _known_by(
    facts: Iterable[Fact], moment: datetime, retracted_at: Mapping[str, datetime] | None = None
) -> list[Fact]:
    """The ``facts`` the tracker knew at ``moment``: arrived, and not retracted by then."""
    if not retracted_at:
        return [fact for fact in facts if fact.recorded <= moment]
    return [
        fact
        for fact in facts
        if fact.recorded <= moment and retracted_at.get(fact.event_id, _NEVER) > moment
    ]


def _moments_after(
    start: datetime, facts: Iterable[Fact], retracted_at: Mapping[str, datetime] | None = None
) -> list[datetime]:
    """``start`` and every later moment at which one of ``facts`` reached the tracker, or
    (``retracted_at``) its retraction did."""
    if not retracted_at:
        return sorted({start, *(fact.recorded for fact in facts if fact.recorded > start)})
    moments = {start}
    for fact in facts:
        if fact.recorded > start:
            moments.add(fact.recorded)
        if (gone := retracted_at.get(fact.event_id)) and gone > start:
            moments.add(gone)
    return sorted(moments)


_NEVER = datetime.max.replace(tzinfo=UTC)


def _moves_area(fact: Fact) -> bool:
    return fact.event_type in (_AREA_TRANSFERRED, _RELEASED) and bool(fact.info.get("toArea"))


def _sets_level(fact: Fact) -> bool:
    return fact.event_type in (_LEVEL_CHANGED, _CASE_CLOSED)


def _responsible_area(first_area: str, facts: Sequence[Fact], moment: datetime) -> str:
    """The offender's responsible area at ``moment``: the earliest fact's area
    (``first_area``), moved by every area transfer and release to another area at or before
    ``moment``. ``facts`` is in placement order; facts that move no one are skipped."""
    area = first_area
    for fact in facts:
        if fact.occurred > moment:
            break
        if _moves_area(fact):
            area = str(fact.info["toArea"])
    return area


def _level_set_by(facts: Sequence[Fact], moment: datetime) -> Fact | None:
    """The ``mappa.level-changed`` that gave the MAPPA level at ``moment``: the latest at or
    before it, unless the case was closed after it. ``facts`` is in placement order."""
    setter: Fact | None = None
    for fact in facts:
        if fact.occurred > moment:
            break
        if fact.event_type == _LEVEL_CHANGED:
            setter = fact
        elif fact.event_type == _CASE_CLOSED:
            setter = None
    return setter


def _london_date(moment: datetime) -> date:
    return moment.astimezone(LONDON).date()


@functools.lru_cache(maxsize=65_536)
def _for_people(moment: datetime) -> str:
    # "2005-01-10 09:00 (UK time)": spelt by isoformat, which took two thirds of the time
    # strftime took (every alert about an event recorded late names two moments).
    return f"{moment.astimezone(LONDON).isoformat(' ', 'minutes')[:16]} (UK time)"


# An event that reaches the tracker within this long of happening is on time: agencies record
# and send what happens within minutes, and a VLO told "12 seconds late" learns nothing.
# Later than that, the alert says how late (victim-alerts.md, "Timely").
ON_TIME_WITHIN_SECONDS = 3600


def _late_by_seconds(fact: Fact) -> int:
    """How late the fact reached the tracker, in seconds; 0 if it was on time."""
    seconds = int((fact.recorded - fact.occurred).total_seconds())
    return seconds if seconds > ON_TIME_WITHIN_SECONDS else 0


def _how_late(seconds: int) -> str:
    for unit, size in (("day", _SECONDS_PER_DAY), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def _lateness_sentence(fact: Fact) -> str:
    seconds = _late_by_seconds(fact)
    if not seconds:
        return ""
    return (
        f" This event reached the tracker {_how_late(seconds)} late: it happened"
        f" {_for_people(fact.occurred)} and was recorded {_for_people(fact.recorded)}."
    )


# ---------------------------------------------------------------------------------------------
# Alerts to victims' VLOs


def _kind_of(fact: Fact) -> str | None:
    if fact.event_type == "sentence.varied":
        return "sentence-reduced" if fact.info.get("reason") == "appeal" else None
    if fact.event_type == "custody.temporary-release":
        return "work-placement" if fact.info.get("purpose") == "work-placement" else None
    return _KIND_BY_EVENT_TYPE.get(fact.event_type)


def _victim_order(fact: Fact) -> tuple[datetime, int, str]:
    # At one instant a withdrawal comes after (so overrides) an enrolment of the same victim.
    return (fact.occurred, 1 if fact.event_type == _WITHDRAWN else 0, fact.event_id)


def _wants(enrolment: Fact, kind: str) -> bool:
    wants = enrolment.info.get("wants")
    if wants is None:
        return True
    if isinstance(wants, str):
        return wants == kind
    return kind in wants


def _addressing_enrolment(
    trigger: Fact,
    kind: str,
    of_victim: Sequence[Fact],
    retracted_at: Mapping[str, datetime] | None = None,
) -> Fact | None:
    """The enrolment through which the victim is (or was first) due the alert, if any.

    The victim's state at the trigger's ``occurredAt`` is the latest enrolment or withdrawal
    happening at or before it (enrolment at the same instant counts). It is judged with what
    the tracker knew at each moment from the trigger's arrival on: a late-arriving enrolment
    makes the alert due when it arrives; a late-arriving withdrawal cannot un-raise it.

    ``of_victim`` holds the victim's enrolments and withdrawals, the retracted ones too:
    what the tracker knew at a moment includes a fact whose retraction came later
    (``retracted_at``), and excludes one retracted by then. An enrolment retracted since
    addresses nothing (the alert through it is an error, corrected); the alert may be due
    through another enrolment at a later moment, the retraction's among them.
    """
    relevant = [fact for fact in of_victim if fact.occurred <= trigger.occurred]
    for moment in _moments_after(trigger.recorded, relevant, retracted_at):
        known = _known_by(relevant, moment, retracted_at)
        if not known:
            continue
        latest = max(known, key=_victim_order)
        if (
            latest.event_type == _ENROLLED
            and _wants(latest, kind)
            and not (retracted_at and latest.event_id in retracted_at)
        ):
            return latest
    return None


@dataclass(frozen=True)
class _Telling:
    """What an event means for every victim told of it (their own parts are added later)."""

    kind: str
    area: str
    offender_ref: str
    happened: str
    tell: str
    details: dict[str, Any]


def _victim_alert(trigger: Fact, telling: _Telling, enrolment: Fact, alert_id: str) -> Alert:
    victim_ref = str(enrolment.info["victimRef"])
    happened, tell = telling.happened, telling.tell
    details = {**telling.details, "enrolmentEventId": enrolment.event_id}
    late_by = _late_by_seconds(trigger)
    if late_by:
        details["lateBySeconds"] = late_by
    return Alert(
        alert_id=alert_id,
        kind=telling.kind,
        recipient=str(enrolment.info["vloRef"]),
        victim_ref=victim_ref,
        offender_ref=telling.offender_ref,
        area=telling.area,
        event_id=trigger.event_id,
        event_type=trigger.event_type,
        occurred_at=trigger.occurred_at,
        recorded_at=trigger.recorded_at,
        late_by_seconds=late_by,
        message=f"For victim {victim_ref}: {happened} {tell}{_lateness_sentence(trigger)}",
        details=details,
    )


def _describe(
    kind: str, fact: Fact, facts: Sequence[Fact], offender: str
) -> tuple[str, str, dict[str, Any]]:
    """What happened, what the VLO must tell the victim, and the structured details."""
    info = fact.info
    if kind == "release-due":
        return _describe_release_notice(fact, facts, offender)
    on = _for_people(fact.occurred)
    if kind == "released":
        release_type = info.get("releaseType")
        to_area = f", to area {info['toArea']}" if info.get("toArea") else ""
        return (
            f"Released: offender {offender} was released from custody on {on}"
            f" ({release_type} release{to_area}).",
            "Tell the victim the offender has been released.",
            {"releaseType": release_type, "toArea": info.get("toArea"), "toBcu": info.get("toBcu")},
        )
    if kind == "licence-conditions":
        return _describe_conditions(fact, offender)
    if kind == "recalled":
        return (
            f"Recalled: offender {offender} was recalled to custody on {on}"
            f" (reason: {info.get('reason')}).",
            "Tell the victim the offender has been recalled to prison.",
            {"reason": info.get("reason")},
        )
    if kind == "sentence-reduced":
        new_date = info.get("newExpectedReleaseDate")
        new_date_text = f" The new expected release date is {new_date}." if new_date else ""
        return (
            f"Sentence reduced on appeal: offender {offender}'s sentence was reduced on"
            f" appeal on {on}.{new_date_text}",
            "Tell the victim the sentence has been reduced.",
            {"reason": info.get("reason"), "newExpectedReleaseDate": new_date},
        )
    if kind == "work-placement":
        return (
            f"Work placement: offender {offender} is released on temporary licence for a work"
            f" placement in the community from {info.get('from')} to {info.get('to')}"
            f" (decided {on}).",
            "Tell the victim about the work placement.",
            {"purpose": info.get("purpose"), "from": info.get("from"), "to": info.get("to")},
        )
    if kind == "absconded":
        return (
            f"Absconded: offender {offender} absconded or escaped from custody on {on}.",
            "Tell the victim at once.",
            {},
        )
    if kind == "transferred":
        return (
            f"Transferred: offender {offender} was moved from {info.get('fromPrison')} to"
            f" {info.get('toPrison')} on {on}.",
            "Tell the victim the offender has moved to a different prison.",
            {"fromPrison": info.get("fromPrison"), "toPrison": info.get("toPrison")},
        )
    if kind == "parole-outcome":
        outcome = info.get("outcome")
        outcome_text = {
            "release-directed": "the Parole Board directed release",
            "release-refused": "release was refused",
            "open-conditions": "a move to open conditions",
        }.get(str(outcome), str(outcome))
        return (
            f"Parole outcome: the parole review of offender {offender} decided on {on}:"
            f" {outcome_text}.",
            "Tell the victim the outcome of the parole review.",
            {"outcome": outcome},
        )
    # case-closing
    return (
        f"Case closing: offender {offender}'s MAPPA case was closed on {on}"
        f" (reason: {info.get('reason')}); contact about this offender is ending.",
        "Tell the victim the case is closing.",
        {"reason": info.get("reason")},
    )


def _describe_conditions(fact: Fact, offender: str) -> tuple[str, str, dict[str, Any]]:
    raw = fact.info.get("conditions") or []
    conditions = [dict(condition) for condition in raw if isinstance(condition, Mapping)]
    # Stable sort: the victim's protections first, each group in the order the licence gives.
    conditions.sort(key=lambda condition: not condition.get("protectsVictim"))
    protective = [condition for condition in conditions if condition.get("protectsVictim")]
    others = [condition for condition in conditions if not condition.get("protectsVictim")]

    def listed(group: list[dict[str, Any]]) -> str:
        return "; ".join(f"{c.get('code')}: {c.get('text')}" for c in group)

    parts = [
        f"Licence conditions: the licence conditions of offender {offender} were set on"
        f" {_for_people(fact.occurred)}."
    ]
    if protective:
        parts.append(f"Conditions protecting the victim: {listed(protective)}.")
    else:
        parts.append("No condition is marked as protecting the victim.")
    if others:
        parts.append(f"Other conditions: {listed(others)}.")
    if fact.info.get("licenceEndDate"):
        parts.append(f"The licence ends on {fact.info['licenceEndDate']}.")
    return (
        " ".join(parts),
        "Tell the victim the conditions that protect them.",
        {"conditions": conditions, "licenceEndDate": fact.info.get("licenceEndDate")},
    )


def _neighbouring_notices(notice: Fact, facts: Sequence[Fact]) -> tuple[Fact | None, Fact | None]:
    """The notices just before and just after ``notice`` in the same custody term."""
    previous: Fact | None = None
    following: Fact | None = None
    seen = False
    for fact in facts:
        if fact is notice:
            seen = True
        elif fact.event_type == _RELEASED:
            # A release ends the custody term: notices either side are about different terms.
            if seen:
                break
            previous = None
        elif fact.event_type == _NOTIFIED:
            if not seen:
                previous = fact
            else:
                following = fact
                break
    return previous, following


def _describe_release_notice(
    notice: Fact, facts: Sequence[Fact], offender: str
) -> tuple[str, str, dict[str, Any]]:
    info = notice.info
    expected = info.get("expectedReleaseDate")
    release_type = info.get("releaseType")
    previous, following = _neighbouring_notices(notice, facts)
    previous_date = previous.info.get("expectedReleaseDate") if previous else None
    changed = previous is not None and previous_date != expected
    if changed:
        happened = (
            f"Release date changed: offender {offender}'s expected release date has changed"
            f" from {previous_date} to {expected} ({previous_date} -> {expected});"
            f" {release_type} release."
        )
    elif previous is not None:
        happened = (
            f"Release due: a new notice confirms offender {offender}'s expected release date"
            f" of {expected} (unchanged); {release_type} release."
        )
    else:
        happened = (
            f"Release due: offender {offender} is expected to be released on {expected}"
            f" ({release_type} release)."
        )
    if info.get("toArea"):
        happened += f" Release is to area {info['toArea']}."
    if following is not None:
        happened += (
            f" A later notice has since replaced this one, giving"
            f" {following.info.get('expectedReleaseDate')}: check the latest date."
        )
    details: dict[str, Any] = {
        "expectedReleaseDate": expected,
        "releaseType": release_type,
        "previousExpectedReleaseDate": previous_date,
        "previousNoticeEventId": previous.event_id if previous else None,
        "dateChanged": changed,
        "toArea": info.get("toArea"),
        "supersededByEventId": following.event_id if following else None,
    }
    return happened, "Tell the victim when the offender is due to be released.", details


# ---------------------------------------------------------------------------------------------
# Late release notices, to the area's MAPPA co-ordinator


@dataclass(frozen=True)
class _Shortfall:
    area: str
    level: int
    rule: str
    notice_date: date
    due_by: CalendarDay
    expected: date
    # The mappa.level-changed that gave the level.
    level_event_id: str

    @property
    def days_short(self) -> int:
        return self.due_by.days_after(self.expected)

    @property
    def lead_time_days(self) -> int:
        return (self.expected - self.notice_date).days


def _shortfall(
    notice: Fact, first_area: str, known: Sequence[Fact], lead_times: LeadTimes
) -> _Shortfall | None:
    """How the notice fell short of its area's rule, judged on the ``known`` level and area
    changes and the area of the earliest known fact."""
    setter = _level_set_by(known, notice.occurred)
    if setter is None:
        return None
    level = int(setter.info["level"])
    area = _responsible_area(first_area, known, notice.occurred)
    rule = lead_times(area, level)
    if not rule:
        return None
    notice_date = _london_date(notice.occurred)
    expected = date.fromisoformat(str(notice.info["expectedReleaseDate"]))
    due_by = add_duration(notice_date, parse_duration(rule))
    if due_by.days_after(expected) <= 0:
        return None
    return _Shortfall(area, level, rule, notice_date, due_by, expected, setter.event_id)


def _late_notice_alerts(
    notice: Fact,
    judged: _Judged,
    lead_times: LeadTimes,
    offender_ref: str,
    on_record: Mapping[str, Alert] | None = None,
) -> list[Alert]:
    # Only facts placed at or before the notice bear on its level and area (the earliest fact
    # of all is one of them, since the notice itself is). As for victims, the notice counts as
    # late if it was late on what the tracker knew at some moment after it arrived; a level
    # change or transfer reported later cannot un-raise it, but may raise it to another area.
    relevant = [fact for fact in judged.facts if fact.occurred <= notice.occurred]
    once_known = [fact for fact in judged.once_known if fact.occurred <= notice.occurred]
    if once_known:
        shortfalls = _shortfalls_with_retractions(
            notice, relevant, once_known, judged.retracted_at, lead_times
        )
    else:
        shortfalls = _shortfalls(notice, relevant, lead_times)
    return [
        _late_notice_alert(notice, shortfall, offender_ref, on_record)
        for shortfall in shortfalls.values()
    ]


def _shortfalls(
    notice: Fact, relevant: Sequence[Fact], lead_times: LeadTimes
) -> dict[str, _Shortfall]:
    """The first shortfall of the notice for each area, judged at each moment on the facts
    known then (``relevant``: those placed at or before it, none of them retracted)."""
    changes = [fact for fact in relevant if _moves_area(fact) or _sets_level(fact)]

    def earliest_known(moment: datetime) -> Fact:
        # Never empty: the notice itself is known from its arrival on.
        return next(fact for fact in relevant if fact.recorded <= moment)

    # The answer can change only when a level or area change arrives, or a fact placed before
    # every fact known when the notice arrived (it may become "the earliest event").
    first_on_arrival = earliest_known(notice.recorded)
    movers = [f for f in relevant if f.placement < first_on_arrival.placement] + changes
    shortfalls: dict[str, _Shortfall] = {}
    for moment in _moments_after(notice.recorded, movers):
        first_area = earliest_known(moment).area
        shortfall = _shortfall(notice, first_area, _known_by(changes, moment), lead_times)
        if shortfall is not None and shortfall.area not in shortfalls:
            shortfalls[shortfall.area] = shortfall
    return shortfalls


def _shortfalls_with_retractions(
    notice: Fact,
    relevant: Sequence[Fact],
    once_known: Sequence[Fact],
    retracted_at: Mapping[str, datetime],
    lead_times: LeadTimes,
) -> dict[str, _Shortfall]:
    """As :func:`_shortfalls`, when facts placed at or before the notice were retracted
    after the tracker knew them (``once_known``). At each moment the notice is judged on
    what the tracker knew then, the retracted facts among it until their retraction came; a
    shortfall found so stands only if it rests on nothing retracted since, that is if the
    same facts without those retracted since give it too. (Judged on the facts without the
    retracted ones at every moment, a superseded level could stand alone before the level
    that superseded it had arrived, and give a shortfall at a level never current.)"""
    as_known = sorted([*relevant, *once_known], key=_placement)
    shortfalls: dict[str, _Shortfall] = {}
    for moment in _moments_after(notice.recorded, as_known, retracted_at):
        then = _shortfall_known_by(notice, as_known, moment, lead_times, retracted_at)
        if then is None or then.area in shortfalls:
            continue
        if then == _shortfall_known_by(notice, relevant, moment, lead_times):
            shortfalls[then.area] = then
    return shortfalls


def _shortfall_known_by(
    notice: Fact,
    facts: Sequence[Fact],
    moment: datetime,
    lead_times: LeadTimes,
    retracted_at: Mapping[str, datetime] | None = None,
) -> _Shortfall | None:
    # Never empty: the notice itself is known from its arrival on, and is not retracted.
    known = _known_by(facts, moment, retracted_at)
    changes = [fact for fact in known if _moves_area(fact) or _sets_level(fact)]
    return _shortfall(notice, known[0].area, changes, lead_times)


def _late_notice_alert_id(
    notice: Fact, shortfall: _Shortfall, on_record: Mapping[str, Alert] | None
) -> str:
    """The id of the alert to ``shortfall.area``: the notice's and the area's, unless the
    alert on record under that id gave another level, rule or shortfall. Only a retraction
    changes what the notice is judged on (a fact reported late cannot un-raise an alert), so
    one did: the alert on record is corrected, and the co-ordinator told anew, under an id
    from what it says too. An alert corrected (its level retracted) that is due again, saying
    the same, through another level change (the level sent again) is told anew too, under an
    id from that change."""
    records = on_record or {}
    alert_id = coordinator_alert_id_for(notice.event_id, shortfall.area)
    recorded = records.get(alert_id)
    if recorded is None:
        return alert_id
    content = (
        f"{notice.event_id}:coordinator:{shortfall.area}:{shortfall.level}:{shortfall.rule}:"
        f"{shortfall.days_short}"
    )
    says = (shortfall.level, shortfall.rule, shortfall.days_short)
    if _what_it_says(recorded) != says:
        alert_id = alert_uuid(content)
        recorded = records.get(alert_id)
    if (
        recorded is not None
        and correction_id_for(alert_id) in records
        and recorded.details.get("levelEventId") != shortfall.level_event_id
    ):
        return alert_uuid(f"{content}:{shortfall.level_event_id}")
    return alert_id


def _what_it_says(alert: Alert) -> tuple[Any, Any, Any]:
    return (
        alert.details.get("level"),
        alert.details.get("ruleDuration"),
        alert.details.get("daysShort"),
    )


def _late_notice_alert(
    notice: Fact,
    shortfall: _Shortfall,
    offender_ref: str,
    on_record: Mapping[str, Alert] | None = None,
) -> Alert:
    days = shortfall.days_short
    message = (
        f"Late release notice: the notice given on {shortfall.notice_date} that offender"
        f" {offender_ref} (MAPPA level {shortfall.level}) is expected to be released on"
        f" {shortfall.expected} gave {shortfall.lead_time_days} days' notice. Area"
        f" {shortfall.area}'s rule for level {shortfall.level} is {shortfall.rule}: notice given"
        f" on {shortfall.notice_date} is in time only for a release on or after"
        f" {shortfall.due_by}, so it was {days} day{'s' if days != 1 else ''} short."
        f"{_lateness_sentence(notice)}"
    )
    return Alert(
        alert_id=_late_notice_alert_id(notice, shortfall, on_record),
        kind=LATE_RELEASE_NOTICE,
        recipient=f"coordinator:{shortfall.area}",
        victim_ref=None,
        offender_ref=offender_ref,
        area=shortfall.area,
        event_id=notice.event_id,
        event_type=notice.event_type,
        occurred_at=notice.occurred_at,
        recorded_at=notice.recorded_at,
        late_by_seconds=_late_by_seconds(notice),
        message=message,
        details={
            "expectedReleaseDate": shortfall.expected.isoformat(),
            "releaseType": notice.info.get("releaseType"),
            "noticeDate": shortfall.notice_date.isoformat(),
            "leadTimeDays": shortfall.lead_time_days,
            "ruleDuration": shortfall.rule,
            "level": shortfall.level,
            "inTimeForReleaseFrom": shortfall.due_by.isoformat(),
            "daysShort": days,
            "levelEventId": shortfall.level_event_id,
        },
    )


# ---------------------------------------------------------------------------------------------
# The public rules


def _sort_key(alert: Alert) -> tuple[datetime, str, int, str, str]:
    kinds = (*ALERT_KINDS, LATE_RELEASE_NOTICE, CORRECTION)
    return (
        instant_of(alert.occurred_at),
        alert.event_id,
        kinds.index(alert.kind),
        alert.recipient,
        alert.victim_ref or "",
    )


class Owing(NamedTuple):
    """What decides whether an offender's history may owe any alert, folded over its facts:
    every alert is owed to an enrolled victim or is a late notice of release."""

    enrolled: bool = False
    # When the latest notice of release happened (None: there is none).
    latest_notice: datetime | None = None

    def after(self, facts: Iterable[Fact]) -> Owing:
        """This, with ``facts`` folded in."""
        enrolled, latest_notice = self
        for fact in facts:
            if fact.event_type == _ENROLLED:
                enrolled = True
            elif fact.event_type == _NOTIFIED and (
                latest_notice is None or fact.occurred > latest_notice
            ):
                latest_notice = fact.occurred
        return Owing(enrolled, latest_notice)

    def may_owe(self, since: datetime | None = None) -> bool:
        """Whether any alert of the events that happened at or after ``since`` (by default,
        of every event) may be due: with no enrolment and no notice among them, none is."""
        notice = self.latest_notice
        return self.enrolled or (notice is not None and (since is None or notice >= since))


def derive_alerts(
    history: Sequence[Mapping[str, Any]],
    lead_times: LeadTimes,
    read: Sequence[Fact] | None = None,
    on_record: Mapping[str, Alert] | None = None,
    since: datetime | None = None,
    *,
    may_owe: bool = False,
) -> list[Alert]:
    """Every alert due from an offender's whole ``history`` (fact documents, any order).

    ``read``: ``fact_of`` of each document of ``history``, in the same order, if the caller
    kept them (a projection deriving again at every new fact); otherwise they are made here.
    ``on_record``: alerts already raised, by id; a victim's alert due with one of those ids
    is given as it was recorded rather than worded again (a projection only raises what is
    not on record, and wording every alert again at every new fact was most of its work).
    ``since``: derive only the alerts of the events that happened at or after it (by
    default, of every event); each event's alerts are judged on the whole history either way.
    ``may_owe``: the caller has found that the history may owe alerts (``Owing``), so it is
    not looked at again.

    ``lead_times(area, level)`` gives the area's release-notice lead time for the level as
    an ISO 8601 duration, or ``None`` where the area has no rule. The result is the same for
    every arrival order of the same documents and is sorted by when the events happened.
    Raises ``ValueError`` for a lead time that is not a duration of years, months, weeks
    and days (reference data should be checked with :func:`parse_duration` when loaded).
    """
    read = read if read is not None else [fact_of(document) for document in history]
    if not may_owe and not Owing().after(read).may_owe(since):
        return []  # most histories are so
    judged = _facts(read)
    facts, retracted_at = judged.facts, judged.retracted_at
    offender_ref = next((fact.offender_ref for fact in facts if fact.offender_ref), "")
    # The retracted enrolments and withdrawals count for what the tracker knew before their
    # retraction came.
    of_victim: dict[str, list[Fact]] = {}
    # The victims some of whose facts were known and then retracted: only theirs are judged
    # with the retractions' times.
    with_retracted: set[str] = set()
    for fact in itertools.chain(facts, judged.once_known):
        if fact.event_type in (_ENROLLED, _WITHDRAWN) and fact.info.get("victimRef"):
            victim_ref = str(fact.info["victimRef"])
            of_victim.setdefault(victim_ref, []).append(fact)
            if fact.event_id in retracted_at:
                with_retracted.add(victim_ref)

    first_area = facts[0].area if facts else ""
    moves = [fact for fact in facts if _moves_area(fact)]

    alerts: list[Alert] = []
    first = 0 if since is None else bisect.bisect_left(facts, since, key=_occurred)
    for trigger in itertools.islice(facts, first, None):
        kind = _kind_of(trigger)
        if kind is None:
            continue
        reference = trigger.offender_ref or offender_ref
        enrolments = [
            enrolment
            for victim_ref, victim_facts in of_victim.items()
            if (
                enrolment := _addressing_enrolment(
                    trigger,
                    kind,
                    victim_facts,
                    retracted_at if victim_ref in with_retracted else None,
                )
            )
            is not None
        ]
        ids = [
            _victim_alert_id(trigger, enrolment, on_record, retracted_at.keys())
            for enrolment in enrolments
        ]
        recorded = [on_record.get(alert_id) for alert_id in ids] if on_record else []
        if recorded and all(recorded):
            alerts.extend(alert for alert in recorded if alert is not None)
        elif enrolments:
            # Unlike who is told, what they are told is worded on everything known now.
            happened, tell, details = _describe(kind, trigger, facts, reference)
            area = _responsible_area(first_area, moves, trigger.occurred)
            telling = _Telling(kind, area, reference, happened, tell, details)
            alerts.extend(
                _victim_alert(trigger, telling, enrolment, alert_id)
                for enrolment, alert_id in zip(enrolments, ids, strict=True)
            )
        if trigger.event_type == _NOTIFIED:
            alerts.extend(_late_notice_alerts(trigger, judged, lead_times, reference, on_record))
    return sorted(alerts, key=_sort_key)


def plan_alerts(derived: Sequence[Alert], already_raised: Mapping[str, Alert]) -> list[Alert]:
    """The alerts to raise now, given those ``already_raised`` (by alert id).

    A correction for every raised alert that is no longer derived, then every derived alert
    not yet raised. Because :func:`derive_alerts` never drops an alert for a fact reported
    late (a late withdrawal, level change or transfer), an alert stops being derived only
    when an event it rests on (its trigger, the victim's enrolment, the level or area behind
    a late-notice alert) has been retracted: the correction says it was recorded in error.
    A correction's id is derived from the alert's, so each alert is corrected once, ever.
    (A change to an area's lead-time rules would also undo late-notice alerts and so correct
    them: change those rules only for the future, or expect corrections.)
    """
    derived_ids = {alert.alert_id for alert in derived}
    to_raise = [alert for alert in derived if alert.alert_id not in already_raised]
    corrections = [
        _correction(alert)
        for alert in already_raised.values()
        if alert.kind != CORRECTION
        and alert.alert_id not in derived_ids
        and correction_id_for(alert.alert_id) not in already_raised
    ]
    # Corrections first: a VLO told again through another enrolment reads the correction
    # of the earlier alert before the new one.
    return sorted(corrections, key=_sort_key) + to_raise


def _rested_on(alert: Alert) -> str:
    """What, retracted, made ``alert`` an error (a correction does not say which one)."""
    if alert.kind == LATE_RELEASE_NOTICE:
        return "the notice, or a fact its level or area was judged on,"
    return "the event, or the victim's enrolment that it was told through,"


def _correction(alert: Alert) -> Alert:
    when = _for_people(instant_of(alert.occurred_at))
    addressee = f"For victim {alert.victim_ref}: " if alert.victim_ref else ""
    message = (
        f"{addressee}Correction: the earlier {alert.kind} alert about {alert.event_type} event"
        f" {alert.event_id} of {when} (offender {alert.offender_ref}, alert {alert.alert_id})"
        f" was recorded in error: {_rested_on(alert)} has been retracted. Disregard it; if"
        " it has already been passed on, say that it was recorded in error."
    )
    return Alert(
        alert_id=correction_id_for(alert.alert_id),
        kind=CORRECTION,
        recipient=alert.recipient,
        victim_ref=alert.victim_ref,
        offender_ref=alert.offender_ref,
        area=alert.area,
        event_id=alert.event_id,
        event_type=alert.event_type,
        occurred_at=alert.occurred_at,
        recorded_at=alert.recorded_at,
        late_by_seconds=0,
        message=message,
        details={
            "corrects": alert.alert_id,
            "correctedKind": alert.kind,
            "correctedEventId": alert.event_id,
        },
        corrects_alert_id=alert.alert_id,
    )
