"""An independent reference implementation of the 31 March statistical return, for tests only.

Written from the contract (``statistical-return.md``) alone, and deliberately shaped unlike
the read model's rules: there is no timeline object and no segment list. Each offender's
visible facts are folded once, in ``occurredAt`` order, through a tiny immutable
:class:`Situation`; while folding, every stretch of time between two consecutive distinct
instants is checked against the period P (does the situation that held over it overlap P
for a positive length of time?) and every counted occurrence is tallied with the situation
at its instant. The tests compare this against
:func:`projections.statistical_return.rules.compute_return` on generated histories.

Readings of the contract that the text leaves to the implementer, kept the same as the
read model's deliberate choices so the two can be compared:

* *Events at the same instant are applied together*: a yes/no state (in custody,
  registered) both begun and ended at one instant is left as it was before the instant, in
  whatever order the events arrived, because the other state would have lasted no time;
  two values of one attribute at one instant (two levels, two areas) are taken in eventId
  order, the last holding, so that the same documents give the same return in any order.
  Having a category (or a level) is such a yes/no state too, begun by an assignment and
  ended by a closure: with both at one instant, an
  offender who had none keeps none (the assignment is not "a later event of the same
  type" than the closure) and one who had one takes the new value (being without lasted
  no time). The situation *at* an instant is the one after every event of that instant.
* The area at first is the ``area`` of the earliest non-retracted fact, eventId order
  breaking a tie; retractions are corrections, not facts about the offender, and play no
  part in the fold.
* ``i`` does not ask for category 1: the return counts registered offenders.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")
SERIOUS_FURTHER_OFFENCE_EXCLUDED = "other"
ORDER_KEYS = {"SOPO": "iii", "NOTIFICATION_ORDER": "iv", "FOREIGN_TRAVEL_ORDER": "v"}
STARTS_CUSTODY = {"custody.received", "licence.recalled"}
ENDS_REGISTRATION = {"registration.ended", "mappa.case-closed"}


@dataclass(frozen=True)
class Situation:
    """Where an offender stands between two instants of their history."""

    area: str
    bcu: str | None = None
    registered: bool = False
    in_custody: bool = False
    category: int | None = None
    level: int | None = None

    def in_community_in(self, area: str) -> bool:
        return self.area == area and not self.in_custody


@dataclass(frozen=True)
class Fact:
    """One visible, non-retracted document with its instant and arrival position."""

    at: datetime
    arrival: int
    document: Mapping[str, Any]

    @property
    def kind(self) -> str:
        return str(self.document["eventType"])

    @property
    def info(self) -> Mapping[str, Any]:
        return self.document.get("additionalInformation") or {}


@dataclass
class Figures:
    """What one offender contributes to the return."""

    at_snapshot: Situation
    categories_in_community_during_p: set[int] = field(default_factory=set)
    managed_during_p: set[tuple[int, int]] = field(default_factory=set)
    breached_registration: bool = False
    orders: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    interventions: set[tuple[int, str]] = field(default_factory=set)
    sfo_outcomes: list[str] = field(default_factory=list)


def instant(value: str | datetime) -> datetime:
    """An aware UTC datetime; naive datetimes are London wall time."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=LONDON)
    return moment.astimezone(UTC)


def london_midnight_1_april(year: int) -> datetime:
    return datetime(year, 4, 1, tzinfo=LONDON).astimezone(UTC)


# ------------------------------------------------------------------ one offender


def visible_facts(history: Sequence[Mapping[str, Any]], known_by: datetime | None) -> list[Fact]:
    """Facts recorded by ``known_by``, minus those retracted by then, in occurredAt order."""
    seen = [
        (arrival, document)
        for arrival, document in enumerate(history)
        if known_by is None or instant(document["recordedAt"]) <= known_by
    ]
    retracted = {
        str((document.get("additionalInformation") or {}).get("eventId"))
        for _, document in seen
        if document["eventType"] == "record.retracted"
    }
    facts = [
        Fact(instant(document["occurredAt"]), arrival, document)
        for arrival, document in seen
        if document["eventType"] != "record.retracted" and document["eventId"] not in retracted
    ]
    return sorted(facts, key=lambda fact: (fact.at, str(fact.document["eventId"])))


def same_instant_groups(facts: list[Fact]) -> Iterable[tuple[datetime, list[Fact]]]:
    group: list[Fact] = []
    for fact in facts:
        if group and fact.at != group[0].at:
            yield group[0].at, group
            group = []
        group.append(fact)
    if group:
        yield group[0].at, group


def toggled(before: bool, begins: bool, ends: bool) -> bool:
    """A yes/no state after an instant that may begin and/or end it (both: unchanged)."""
    if begins == ends:
        return before
    return begins


def after_instant(before: Situation, group: list[Fact]) -> Situation:
    """The situation once every fact of one instant has been applied together."""
    kinds = [fact.kind for fact in group]
    custody_begins = any(
        fact.kind in STARTS_CUSTODY
        or (fact.kind == "order.breached" and fact.info.get("returnedToCustody") is True)
        for fact in group
    )
    closed = "mappa.case-closed" in kinds
    situation = replace(
        before,
        in_custody=toggled(before.in_custody, custody_begins, "custody.released" in kinds),
        registered=toggled(
            before.registered,
            "registration.started" in kinds,
            any(kind in ENDS_REGISTRATION for kind in kinds),
        ),
    )
    # Values of one attribute: eventId order within the instant, the last holding.
    categories: list[int] = []
    levels: list[int] = []
    for fact in group:
        info = fact.info
        if fact.kind == "mappa.category-assigned":
            categories.append(int(info["category"]))
        elif fact.kind == "mappa.level-changed":
            levels.append(int(info["level"]))
        elif fact.kind == "registration.started" and info.get("bcu"):
            situation = replace(situation, bcu=info["bcu"])
        elif fact.kind in ("mappa.area-transferred", "custody.released"):
            situation = moved(situation, info.get("toArea"), info.get("toBcu"))
    return replace(
        situation,
        category=assigned(before.category, categories, closed),
        level=assigned(before.level, levels, closed),
    )


def assigned(before: int | None, assignments: list[int], closed: bool) -> int | None:
    """A category or level after an instant with these assignments, perhaps a closure."""
    if not toggled(before is not None, bool(assignments), closed):
        return None
    return assignments[-1] if assignments else before


def moved(situation: Situation, to_area: str | None, to_bcu: str | None) -> Situation:
    if to_area and to_area != situation.area:
        # A move to another area without a BCU leaves the BCU unknown.
        return replace(situation, area=to_area, bcu=to_bcu or None)
    if to_bcu:
        return replace(situation, bcu=to_bcu)
    return situation


def fold_offender(
    history: Sequence[Mapping[str, Any]],
    area: str,
    start: datetime,
    snapshot: datetime,
    known_by: datetime | None,
) -> Figures | None:
    """One offender's contribution: a single walk over their facts in occurredAt order."""
    facts = visible_facts(history, known_by)
    if not facts:
        return None
    situation = Situation(area=str(facts[0].document["area"]))
    figures = Figures(at_snapshot=situation)
    held_since: datetime | None = None  # None: since before any fact
    charges: list[tuple[datetime, str]] = []
    disposals: dict[str, list[Fact]] = defaultdict(list)

    def note_held(situation: Situation, since: datetime | None, until: datetime | None) -> None:
        """Record what ``situation`` shows if it held for a positive time inside P."""
        lower = start if since is None else max(since, start)
        upper = snapshot if until is None else min(until, snapshot)
        if not lower < upper:
            return
        if situation.category is not None and situation.in_community_in(area):
            figures.categories_in_community_during_p.add(situation.category)
        if situation.area == area and situation.category is not None and situation.level in (2, 3):
            figures.managed_during_p.add((situation.level, situation.category))

    for at, group in same_instant_groups(facts):
        note_held(situation, held_since, at)
        situation = after_instant(situation, group)
        held_since = at
        if at < snapshot:
            figures.at_snapshot = situation
        for fact in group:
            if fact.kind == "offence.disposed":
                disposals[str(fact.info.get("chargeId"))].append(fact)
            elif (
                fact.kind == "offence.charged"
                and fact.info.get("offence") != SERIOUS_FURTHER_OFFENCE_EXCLUDED
                and at < snapshot
                and situation.area == area
                and situation.level in (2, 3)
            ):
                charges.append((at, str(fact.info.get("chargeId"))))
            if start <= at < snapshot and situation.area == area:
                tally_occurrence(figures, fact, situation)
    note_held(situation, held_since, None)

    for charged_at, charge_id in charges:
        known = disposals.get(charge_id, [])
        if charged_at < start and any(disposal.at < start for disposal in known):
            continue  # disposed of before P began
        before_snapshot = [d for d in known if d.at < snapshot]
        if not before_snapshot:
            figures.sfo_outcomes.append("remain_charged")
            continue
        latest = max(before_snapshot, key=lambda d: (d.at, d.arrival))
        outcome = latest.info.get("outcome")
        figures.sfo_outcomes.append("convicted" if outcome == "convicted" else "other_outcome")
    return figures


def tally_occurrence(figures: Figures, fact: Fact, situation: Situation) -> None:
    """Count one fact that occurred in P while the offender was in the area."""
    info = fact.info
    if fact.kind == "registration.breached" and info.get("outcome") in ("caution", "conviction"):
        figures.breached_registration = True
    elif fact.kind in ("order.applied", "order.interim-granted", "order.granted"):
        key = ORDER_KEYS.get(str(info.get("orderType")))
        if key:
            figures.orders[(key, fact.kind)] += 1
    if situation.level not in (2, 3):
        return
    if fact.kind == "licence.recalled":
        figures.interventions.add((situation.level, "a"))
    elif (
        fact.kind == "order.breached"
        and info.get("orderType") in ("SOPO", "RESTRAINING_ORDER")
        and info.get("returnedToCustody") is True
    ):
        figures.interventions.add((situation.level, "b"))
    elif fact.kind == "offence.charged" and info.get("offence") != SERIOUS_FURTHER_OFFENCE_EXCLUDED:
        figures.interventions.add((situation.level, "c"))


# ------------------------------------------------------------------ the return


def reference_return(
    histories: Iterable[Sequence[Mapping[str, Any]]],
    area: str,
    year: int,
    layout: str | None = None,
    as_known_on: datetime | None = None,
    population: int | None = None,
) -> dict[str, Any]:
    """The contract's return, with the signature and output of ``compute_return``."""
    layout = ("2004" if year < 2008 else "2008") if layout is None else str(layout)
    if layout not in ("2004", "2008"):
        raise ValueError(f"unknown layout {layout!r}")
    if as_known_on is not None and as_known_on.tzinfo is None:
        as_known_on = as_known_on.replace(tzinfo=LONDON)
    known_by = None if as_known_on is None else instant(as_known_on)
    start, snapshot = london_midnight_1_april(year), london_midnight_1_april(year + 1)

    i = 0
    by_bcu: dict[str, int] = defaultdict(int)
    ii = 0
    orders: dict[tuple[str, str], int] = defaultdict(int)
    vi = vii = 0
    viii = {level: {cat: 0 for cat in (1, 2, 3)} for level in (3, 2)}
    viii_distinct = 0
    ix = {level: {letter: 0 for letter in "abc"} for level in (3, 2)}
    sfo = {"convicted": 0, "other_outcome": 0, "remain_charged": 0}

    for history in histories:
        figures = fold_offender(history, area, start, snapshot, known_by)
        if figures is None:
            continue
        at_s = figures.at_snapshot
        if at_s.registered and at_s.in_community_in(area):
            i += 1
            by_bcu[at_s.bcu or "unknown"] += 1
        ii += figures.breached_registration
        for key, count in figures.orders.items():
            orders[key] += count
        if layout == "2004":
            vi += 2 in figures.categories_in_community_during_p
            vii += 3 in figures.categories_in_community_during_p
        elif at_s.in_community_in(area):
            vi += at_s.category == 2
            vii += at_s.category == 3
        for level, category in figures.managed_during_p:
            viii[level][category] += 1
        viii_distinct += bool(figures.managed_during_p)
        for level, letter in figures.interventions:
            ix[level][letter] += 1
        for outcome in figures.sfo_outcomes:
            sfo[outcome] += 1

    def order_counts(key: str) -> dict[str, int]:
        return {
            "a": orders[(key, "order.applied")],
            "b": orders[(key, "order.interim-granted")],
            "c": orders[(key, "order.granted")],
        }

    travel = order_counts("v")
    result: dict[str, Any] = {
        "area": area,
        "year": year,
        "layout": layout,
        "asKnownOn": None if as_known_on is None else as_known_on.isoformat(),
        "i": i,
        "i_by_bcu": dict(by_bcu),
        "ia": None if population is None else (2 * i * 100_000 + population) // (2 * population),
        "ii": ii,
        "iii": order_counts("iii"),
        "iv": order_counts("iv"),
        "v": {"a": travel["a"], "b": travel["c"]},
        "vi": vi,
        "vii": vii,
        "viii": {
            f"level{level}": {f"cat{cat}": viii[level][cat] for cat in (1, 2, 3)}
            for level in (3, 2)
        },
        "viii_distinct": viii_distinct,
        "ix": {f"level{level}": dict(ix[level]) for level in (3, 2)},
    }
    if layout == "2008":
        result["v"]["b_interim"] = travel["b"]
        result["sfo_outcomes"] = sfo
    return result
