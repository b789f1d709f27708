"""The caseload's rules, as pure functions of an offender's facts.

An offender's :class:`Snapshot` is what the caseload shows of them at a moment: the timeline's
state (``domain.timeline.fold``) plus what the caseload lists besides, namely the release
notice behind the expected release date, the last recall and the orders granted. The "now"
view stores one snapshot per offender (after every fact received); the caseload "as it stood
on" a date folds each stored history again up to the end of that date. Both then go through
:func:`summarise`, so the two can differ only in the facts they see.

Choices where the issue and the contracts are silent (each also commented where it is made):

- "As it stood on D" is the record as corrected since: every fact that occurred up to the
  end of D (Europe/London), less every fact retracted, whenever the retraction came. (What
  was *recorded* by a moment is the return's ``--as-known-on``, not this.)
- The notice behind an expected release date is the latest ``release.notified`` of the
  current custody term. Its lead time is from its own London date to its own
  ``expectedReleaseDate`` (victim-alerts.md), so a date later moved by ``sentence.varied``
  does not change it; it is judged against the rule of the responsible area for the level
  at the notice's ``occurredAt``, as the co-ordinator's late-release-notice alert is
  (a level or area change at the same instant counts).
- An order is in force from its grant until the day before ``expiresOn`` (it has expired on
  that day), or without end when it has none; a case closure ends every order granted
  before it (a reopened case starts with none).
- "Due in the next N days" is an expected release date from D to D + N; "recalled in the
  last N days" a recall dated from D - N to D.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from domain import events as ev
from domain.timeline import OffenderState, advance, placement_key
from projections.victim_alerts.rules import add_duration, parse_duration

LONDON = ZoneInfo("Europe/London")

# The civil orders the caseload lists (restraining orders appear only in breaches).
ORDER_TYPES = frozenset({"SOPO", "NOTIFICATION_ORDER", "FOREIGN_TRAVEL_ORDER"})

LeadTimes = Callable[[str, int], str | None]


@dataclass(frozen=True)
class Notice:
    """The release notice behind an expected release date."""

    event_id: str
    given_on: str  # the London date of its occurredAt
    expected_release_date: str  # the date the notice itself gave
    area: str | None  # the responsible area when it was given
    level: int | None  # the MAPPA level when it was given


@dataclass(frozen=True)
class Recall:
    event_id: str
    recalled_on: str  # the London date of its occurredAt
    reason: str


@dataclass(frozen=True)
class Order:
    event_id: str
    order_type: str
    granted_on: str  # the London date of its occurredAt
    expires_on: str | None
    prohibitions: tuple[str, ...]
    # An interim order: in force from its grant until the court decides the application
    # (a full order replaces it, a refusal ends it), as the caseload folds it.
    interim: bool = False
    # The application it was made on, if any (folded only, not stored: only the fold
    # matches a decision to the interim order it ends).
    application_id: str | None = None

    def in_force_on(self, day: date) -> bool:
        return self.granted_on <= day.isoformat() and (
            self.expires_on is None or day.isoformat() < self.expires_on
        )


@dataclass(frozen=True)
class Snapshot:
    """An offender as the caseload shows them at one moment."""

    offender_id: str
    mappa_ref: str
    area: str | None
    bcu: str | None
    category: int | None
    level: int | None
    managed: bool
    in_custody: bool
    on_licence: bool
    registered: bool
    # Only while in custody: a release date after the release is history, not a plan.
    expected_release_date: str | None
    release_type: str | None
    notice: Notice | None
    last_recall: Recall | None
    orders: tuple[Order, ...] = ()


def end_of_day(day: date) -> datetime:
    """The first instant after ``day`` ends in Europe/London (midnight, GMT or BST)."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=LONDON)


def london_date(moment: datetime) -> str:
    return moment.astimezone(LONDON).date().isoformat()


def snapshot(
    offender_id: str,
    mappa_ref: str,
    events: Iterable[ev.InterchangeEvent],
    before: datetime | None = None,
) -> Snapshot:
    """The offender after every non-retracted fact that occurred before ``before`` (all of
    them when None). Retractions apply whenever they occurred: see the module docstring."""
    return SnapshotFold.of(events, before).snapshot(offender_id, mappa_ref)


class SnapshotFold:
    """The fold behind a :class:`Snapshot`: the facts applied one by one in placement order.

    Kept between batches by the projection, so that facts placed after every fact folded so
    far (as most are: agencies mostly report in order) are applied to it instead of folding
    the whole history again. Anything else (a fact placed earlier, a retraction, a fact
    already retracted) calls for a fold from scratch: :meth:`extended` says which.
    """

    def __init__(self, retracted: set[str]) -> None:
        self.retracted = retracted  # ids of the facts retracted (whether received or not)
        self.state = OffenderState()
        self.last_key: tuple[datetime, str] | None = None
        self.notice_fact: ev.ReleaseNotified | None = None
        self.last_recall: Recall | None = None
        self.orders: list[Order] = []
        # The level and area "at the notice": every change up to its instant, ties included,
        # exactly as the late-release-notice alert judges them (victim_alerts.rules).
        self.level: int | None = None
        self.area: str | None = None
        self.notice_level: int | None = None
        self.notice_area: str | None = None

    @classmethod
    def of(
        cls, events: Iterable[ev.InterchangeEvent], before: datetime | None = None
    ) -> SnapshotFold:
        """The fold of a whole history (in any order), up to ``before``."""
        facts: list[ev.InterchangeEvent] = []
        retracted: set[str] = set()
        for event in events:
            if isinstance(event, ev.RecordRetracted):
                retracted.add(event.retracted_event_id)
            elif before is None or event.occurred_at < before:
                facts.append(event)
        folded = cls(retracted)
        for fact in sorted(facts, key=placement_key):
            if fact.event_id not in retracted:
                folded._advance(fact)
        return folded

    def extended(self, added: Sequence[ev.InterchangeEvent]) -> bool:
        """Apply facts received since; False (and nothing applied) when they cannot simply
        follow the facts folded so far, and the history must be folded again."""
        ordered = sorted(added, key=placement_key)
        if any(
            isinstance(fact, ev.RecordRetracted) or fact.event_id in self.retracted
            for fact in ordered
        ):
            return False
        if ordered and self.last_key is not None and placement_key(ordered[0]) <= self.last_key:
            return False
        for fact in ordered:
            self._advance(fact)
        return True

    def _decided(self, application_id: str | None) -> None:
        """The court decided the application: the interim order made on it ends."""
        if application_id is not None:
            self.orders = [
                o for o in self.orders if not (o.interim and o.application_id == application_id)
            ]

    def _advance(self, fact: ev.InterchangeEvent) -> None:
        advance(self.state, fact)
        self.last_key = placement_key(fact)
        if self.area is None:
            self.area = fact.area
        match fact:
            case ev.ReleaseNotified():
                self.notice_fact = fact
            case ev.CustodyReleased():
                if fact.to_area:
                    self.area = fact.to_area
                self.notice_fact = None  # the next notice is about another custody term
            case ev.LicenceRecalled():
                self.last_recall = Recall(fact.event_id, london_date(fact.occurred_at), fact.reason)
            case ev.OrderInterimGranted() if fact.order_type in ORDER_TYPES:
                self.orders.append(
                    Order(
                        fact.event_id,
                        fact.order_type,
                        london_date(fact.occurred_at),
                        None,
                        (),
                        interim=True,
                        application_id=fact.application_id,
                    )
                )
            case ev.OrderGranted() if fact.order_type in ORDER_TYPES:
                self._decided(fact.application_id)
                self.orders.append(
                    Order(
                        fact.event_id,
                        fact.order_type,
                        london_date(fact.occurred_at),
                        fact.expires_on,
                        tuple(fact.prohibitions or ()),
                        application_id=fact.application_id,
                    )
                )
            case ev.OrderRefused():
                self._decided(fact.application_id)
            case ev.CaseClosed():
                self.orders.clear()
                self.level = None
            case ev.LevelChanged():
                self.level = fact.level
            case ev.AreaTransferred():
                self.area = fact.to_area
            case _:
                pass
        notice = self.notice_fact
        if notice is not None and notice.occurred_at == fact.occurred_at:
            # The notice itself, or a fact at the same instant placed after it.
            self.notice_level, self.notice_area = self.level, self.area

    def snapshot(self, offender_id: str, mappa_ref: str) -> Snapshot:
        state, notice_fact = self.state, self.notice_fact
        in_custody = state.in_custody
        notice = None
        if in_custody and notice_fact is not None:
            notice = Notice(
                notice_fact.event_id,
                london_date(notice_fact.occurred_at),
                notice_fact.expected_release_date,
                self.notice_area,
                self.notice_level,
            )
        return Snapshot(
            offender_id=offender_id,
            mappa_ref=mappa_ref,
            area=state.area,
            bcu=state.bcu,
            category=state.category,
            level=state.level,
            managed=state.managed,
            in_custody=in_custody,
            on_licence=state.on_licence,
            registered=state.registered,
            expected_release_date=state.expected_release_date if in_custody else None,
            release_type=state.release_type if in_custody else None,
            notice=notice,
            last_recall=self.last_recall,
            orders=tuple(self.orders),
        )


# --- the summary of an area -------------------------------------------------------------


@dataclass(frozen=True)
class NoticeTiming:
    """How much notice a release notice gave, against the area's rule for the level."""

    given_on: str
    lead_time_days: int
    rule: str | None  # the ISO 8601 duration; None when the area has no rule for the level
    late: bool | None  # None when there is no rule to be late against
    days_short: int | None


def notice_timing(notice: Notice, lead_times: LeadTimes | None) -> NoticeTiming:
    given_on = date.fromisoformat(notice.given_on)
    expected = date.fromisoformat(notice.expected_release_date)
    lead = (expected - given_on).days
    rule = None
    if lead_times is not None and notice.area and notice.level is not None:
        rule = lead_times(notice.area, notice.level)
    if not rule:
        return NoticeTiming(notice.given_on, lead, None, None, None)
    # Late when the notice's date plus the rule falls after the release (victim-alerts.md).
    due_by = add_duration(given_on, parse_duration(rule))
    days_short = due_by.days_after(expected)
    return NoticeTiming(notice.given_on, lead, rule, days_short > 0, max(days_short, 0))


@dataclass(frozen=True)
class DueForRelease:
    mappa_ref: str
    bcu: str | None
    category: int | None
    level: int | None
    expected_release_date: str
    release_type: str | None
    notice_given_on: str | None = None
    notice_level: int | None = None
    notice_lead_time_days: int | None = None
    notice_rule: str | None = None
    notice_late: bool | None = None
    notice_days_short: int | None = None


@dataclass(frozen=True)
class Recalled:
    mappa_ref: str
    bcu: str | None
    category: int | None
    level: int | None
    recalled_on: str
    reason: str
    in_custody: bool


@dataclass(frozen=True)
class ActiveOrder:
    mappa_ref: str
    bcu: str | None
    order_type: str
    granted_on: str
    expires_on: str | None
    prohibitions: list[str]
    event_id: str
    interim: bool = False


@dataclass(frozen=True)
class ManagedOffender:
    mappa_ref: str
    bcu: str | None
    category: int | None
    level: int | None
    in_custody: bool
    on_licence: bool
    registered: bool


@dataclass(frozen=True)
class CaseloadSummary:
    area: str
    on: str
    managed: int
    by_bcu: dict[str, dict[str, dict[str, int]]]
    due_for_release: list[DueForRelease]
    # True: folded from the histories as the caseload stood at the end of ``on``; False:
    # the caseload now, with ``on`` the date the windows count from.
    as_it_stood: bool = False
    bcu: str | None = None
    within_days: int = 90
    recalled: list[Recalled] = field(default_factory=list)
    orders: list[ActiveOrder] = field(default_factory=list)
    levels_2_and_3: list[ManagedOffender] = field(default_factory=list)
    # In custody past the expected release date: a release not reported yet (someone may be
    # in the community unbeknown to the unit), or a date that changed without a new notice.
    release_date_passed: list[DueForRelease] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


UNKNOWN_BCU = "unknown"


def summarise(
    snapshots: Iterable[Snapshot],
    area: str,
    on: date,
    within_days: int = 90,
    *,
    bcu: str | None = None,
    as_it_stood: bool = False,
    lead_times: LeadTimes | None = None,
) -> CaseloadSummary:
    """The caseload of ``area`` (one BCU of it with ``bcu``; ``unknown`` for none) from the
    offenders' snapshots: counts per BCU, who is due out, recalled, under orders, at level
    2 or 3. ``lead_times(area, level)`` gives the release-notice rules."""
    managed = sorted(
        (
            s
            for s in snapshots
            if s.managed and s.area == area and (bcu is None or (s.bcu or UNKNOWN_BCU) == bcu)
        ),
        key=lambda s: s.mappa_ref,
    )
    by_bcu: dict[str, dict[str, dict[str, int]]] = {}
    due: list[DueForRelease] = []
    passed: list[DueForRelease] = []
    recalled: list[Recalled] = []
    orders: list[ActiveOrder] = []
    levels: list[ManagedOffender] = []
    today = on.isoformat()
    horizon = (on + timedelta(days=within_days)).isoformat()
    since = (on - timedelta(days=within_days)).isoformat()
    for s in managed:
        counts = by_bcu.setdefault(s.bcu or UNKNOWN_BCU, _empty_counts())
        counts["category"][f"cat{s.category}" if s.category else "none"] += 1
        counts["level"][f"level{s.level}" if s.level else "none"] += 1
        counts["custody"]["in_custody" if s.in_custody else "in_community"] += 1
        counts["licence"]["on_licence" if s.on_licence else "not_on_licence"] += 1
        counts["registration"]["registered" if s.registered else "not_registered"] += 1
        release = s.expected_release_date
        if s.in_custody and release and today <= release <= horizon:
            due.append(_due(s, release, lead_times))
        elif s.in_custody and release and release < today:
            passed.append(_due(s, release, lead_times))
        recall = s.last_recall
        if recall is not None and since <= recall.recalled_on <= today:
            recalled.append(
                Recalled(s.mappa_ref, s.bcu, s.category, s.level, recall.recalled_on,
                         recall.reason, s.in_custody)
            )  # fmt: skip
        orders.extend(
            ActiveOrder(s.mappa_ref, s.bcu, o.order_type, o.granted_on, o.expires_on,
                        list(o.prohibitions), o.event_id, o.interim)
            for o in s.orders
            if o.in_force_on(on)
        )  # fmt: skip
        if s.level in (2, 3):
            levels.append(
                ManagedOffender(s.mappa_ref, s.bcu, s.category, s.level, s.in_custody,
                                s.on_licence, s.registered)
            )  # fmt: skip
    due.sort(key=lambda d: (d.expected_release_date, d.mappa_ref))
    passed.sort(key=lambda d: (d.expected_release_date, d.mappa_ref))
    recalled.sort(key=lambda r: (r.recalled_on, r.mappa_ref), reverse=True)
    orders.sort(key=lambda o: (o.order_type, o.mappa_ref, o.granted_on, o.event_id))
    levels.sort(key=lambda m: (-(m.level or 0), m.mappa_ref))
    return CaseloadSummary(
        area=area,
        on=today,
        managed=len(managed),
        by_bcu=dict(sorted(by_bcu.items())),
        due_for_release=due,
        release_date_passed=passed,
        as_it_stood=as_it_stood,
        bcu=bcu,
        within_days=within_days,
        recalled=recalled,
        orders=orders,
        levels_2_and_3=levels,
    )


def _due(s: Snapshot, release: str, lead_times: LeadTimes | None) -> DueForRelease:
    due = DueForRelease(s.mappa_ref, s.bcu, s.category, s.level, release, s.release_type)
    if s.notice is None:
        return due
    timing = notice_timing(s.notice, lead_times)
    return DueForRelease(
        **{
            **asdict(due),
            "notice_given_on": timing.given_on,
            "notice_level": s.notice.level,
            "notice_lead_time_days": timing.lead_time_days,
            "notice_rule": timing.rule,
            "notice_late": timing.late,
            "notice_days_short": timing.days_short,
        }
    )


def _empty_counts() -> dict[str, dict[str, int]]:
    return {
        "category": {"cat1": 0, "cat2": 0, "cat3": 0, "none": 0},
        "level": {"level1": 0, "level2": 0, "level3": 0, "none": 0},
        "custody": {"in_custody": 0, "in_community": 0},
        "licence": {"on_licence": 0, "not_on_licence": 0},
        "registration": {"registered": 0, "not_registered": 0},
    }
