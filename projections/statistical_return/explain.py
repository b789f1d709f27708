"""Every figure can be explained: who is behind a figure, why, and what moved it.

Who is counted
    Every figure of :func:`~projections.statistical_return.rules.compute_return` is a sum
    over offenders of what that offender alone contributes: offender counts are sets of
    offenders (each distinct offender adds 1), orders and SFO charges are counted within one
    offender's history and added up. So an offender's contribution to each figure is the
    return computed over their history alone, and the contributions listed by
    :func:`explain_figure` add up to the figure *by construction*: an explanation cannot
    drift from the counting rules, whatever they become. ``ia`` is ``i`` per 100,000 of the
    population, so it is explained by the offenders of ``i``.

Why they are counted
    The offender's timeline (:func:`~projections.statistical_return.rules.build_timeline`)
    says which of their states and occurrences the rule looked at; the events cited are
    those that brought each looked-at part of the state about (for ``i`` at the snapshot:
    the registration, the release into the community, the move into the area; for ``viii``
    during the period: the level change and the category assignment), and, for figures
    counting dated events (``ii`` to ``v``, ``ix``, SFO outcomes), those events themselves.
    A part of the state is traced back to the instant it last changed: the events of that
    instant that set it are the cause.

What moved a figure
    :func:`diff_as_known_on` compares the return as known at two moments. An offender's
    contribution can only change if some of their documents were recorded in between, so
    for each figure that differs, the offenders whose contribution changed are listed with
    every document of theirs recorded in between (retractions included): those are the
    events that moved it.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from projections.ports import Transaction
from projections.statistical_return.formats import flatten
from projections.statistical_return.rules import (
    LONDON,
    RETRACTED,
    OffenderTimeline,
    ReportingPeriod,
    State,
    build_timeline,
    compute_return,
    counted_sfo_charges,
    default_layout,
    to_instant,
)

__all__ = [
    "CountedOffender",
    "EventRef",
    "Explanation",
    "FigureChange",
    "OffenderChange",
    "UnknownFigure",
    "area_histories",
    "diff_as_known_on",
    "explain_figure",
    "format_diff_text",
    "format_explanation_text",
    "valid_figures",
]

Document = Mapping[str, Any]
History = Sequence[Document]

_BCU_PREFIX: Final = "i_by_bcu."
# iii, iv, v count orders of one type; their letters name the event type counted.
_ORDER_TYPE: Final = {"iii": "SOPO", "iv": "NOTIFICATION_ORDER", "v": "FOREIGN_TRAVEL_ORDER"}
_ORDER_EVENT: Final = {
    "iii": {"a": "order.applied", "b": "order.interim-granted", "c": "order.granted"},
    "iv": {"a": "order.applied", "b": "order.interim-granted", "c": "order.granted"},
    "v": {"a": "order.applied", "b": "order.granted", "b_interim": "order.interim-granted"},
}
_MANAGED_LEVELS: Final = (3, 2)


class UnknownFigure(ValueError):
    """A figure path that names no figure of the return; the message lists the valid ones."""


# ------------------------------------------------------------------------------ data


@dataclass(frozen=True, slots=True)
class EventRef:
    """An event cited by an explanation, and what it did (``why``)."""

    event_id: str
    event_type: str
    occurred_at: str
    recorded_at: str | None
    why: str

    def to_json(self) -> dict[str, Any]:
        return {
            "eventId": self.event_id,
            "eventType": self.event_type,
            "occurredAt": self.occurred_at,
            "recordedAt": self.recorded_at,
            "why": self.why,
        }


@dataclass(frozen=True, slots=True)
class CountedOffender:
    """One offender behind a figure: how much they add to it, and the events that put them there."""

    reference: str
    count: int
    events: tuple[EventRef, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "mappaRef": self.reference,
            "count": self.count,
            "events": [event.to_json() for event in self.events],
        }


@dataclass(frozen=True, slots=True)
class Explanation:
    """The offenders behind one figure of one return."""

    area: str
    year: int
    layout: str
    as_known_on: str | None
    figure: str
    value: Any
    unit: str
    offenders: tuple[CountedOffender, ...]
    note: str | None = None

    @property
    def explained(self) -> int:
        """What the listed offenders add up to (equals the figure; ``ia``: equals ``i``)."""
        return sum(offender.count for offender in self.offenders)

    def to_json(self) -> dict[str, Any]:
        return {
            "area": self.area,
            "year": self.year,
            "layout": self.layout,
            "asKnownOn": self.as_known_on,
            "figure": self.figure,
            "value": self.value,
            "unit": self.unit,
            "explained": self.explained,
            "note": self.note,
            "offenders": [offender.to_json() for offender in self.offenders],
        }


@dataclass(frozen=True, slots=True)
class OffenderChange:
    """An offender whose contribution to a figure differs, with what was recorded meanwhile."""

    reference: str
    before: int
    after: int
    events: tuple[EventRef, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "mappaRef": self.reference,
            "before": self.before,
            "after": self.after,
            "events": [event.to_json() for event in self.events],
        }


@dataclass(frozen=True, slots=True)
class FigureChange:
    """A figure that differs between two moments, and the events recorded between them that
    moved it."""

    figure: str
    before: Any
    after: Any
    offenders: tuple[OffenderChange, ...] = field(default=())

    @property
    def events(self) -> tuple[EventRef, ...]:
        return tuple(event for offender in self.offenders for event in offender.events)

    def to_json(self) -> dict[str, Any]:
        return {
            "figure": self.figure,
            "before": self.before,
            "after": self.after,
            "offenders": [offender.to_json() for offender in self.offenders],
        }


# ---------------------------------------------------------------------------- figures


def valid_figures(layout: str) -> list[str]:
    """The figure paths of a return in ``layout`` (``i_by_bcu.<BCU>`` stands for any BCU)."""
    paths = list(flatten(compute_return([], "-", 2000, layout)))
    at = paths.index("i") + 1
    return [*paths[:at], f"{_BCU_PREFIX}<BCU>", *paths[at:]]


def _check_figure(figure: str, layout: str) -> None:
    if figure.startswith(_BCU_PREFIX) and len(figure) > len(_BCU_PREFIX):
        return
    figures = valid_figures(layout)
    if figure not in figures:
        raise UnknownFigure(
            f"unknown figure {figure!r} for layout {layout}; valid figures: {', '.join(figures)}"
        )


def _unit(figure: str) -> str:
    family = figure.split(".", 1)[0]
    if family in _ORDER_TYPE:
        return "orders"
    if family == "sfo_outcomes":
        return "charges"
    return "offenders"


def _basis(figure: str) -> str:
    # ia is i per 100,000 of the population: the same offenders, a derived number.
    return "i" if figure == "ia" else figure


def _known_by(as_known_on: datetime | None) -> int | None:
    if as_known_on is None:
        return None
    if as_known_on.tzinfo is None:
        as_known_on = as_known_on.replace(tzinfo=LONDON)
    return to_instant(as_known_on)


def _contributions(
    history: History, area: str, year: int, layout: str, as_known_on: datetime | None
) -> dict[str, int]:
    """What this offender alone adds to each figure (non-zero figures only; no ``ia``)."""
    alone = flatten(compute_return([history], area, year, layout, as_known_on))
    return {path: int(value) for path, value in alone.items() if path != "ia" and value}


def _reference(history: History) -> str:
    for document in history:
        person = document.get("personReference")
        if isinstance(person, Mapping):
            for identifier in person.get("identifiers") or ():
                if isinstance(identifier, Mapping) and identifier.get("type") == "MAPPA":
                    return str(identifier.get("value"))
    return "unknown"


# ---------------------------------------------------------------------------- explain


def explain_figure(
    histories: Iterable[History],
    area: str,
    year: int,
    figure: str,
    layout: str | None = None,
    as_known_on: datetime | None = None,
    population: int | None = None,
) -> Explanation:
    """The offenders (and, for orders, the events) behind ``figure`` of the return.

    ``figure`` is a path of :func:`~projections.statistical_return.formats.flatten`, such as
    ``i``, ``i_by_bcu.Hereford``, ``iii.c`` or ``viii.level3.cat1``; an unknown one raises
    :class:`UnknownFigure`. The other arguments are those of ``compute_return``.
    """
    layout = default_layout(year) if layout is None else str(layout)
    _check_figure(figure, layout)
    histories = list(histories)
    ret = compute_return(histories, area, year, layout, as_known_on, population)
    basis = _basis(figure)
    known_by = _known_by(as_known_on)
    counted = []
    for history in histories:
        count = _contributions(history, area, year, layout, as_known_on).get(basis, 0)
        if count:
            timeline = build_timeline(history, known_by)
            assert timeline is not None  # it counts, so something of it is known
            why = _Why(history, timeline, known_by, ReportingPeriod.of(area, year))
            counted.append(CountedOffender(_reference(history), count, why.of(basis, layout)))
    counted.sort(key=lambda offender: offender.reference)
    note = None
    if figure == "ia":
        note = "ia is i per 100,000 of the population: the offenders listed are those of i"
    return Explanation(
        area=area,
        year=year,
        layout=layout,
        as_known_on=ret["asKnownOn"],
        figure=figure,
        value=flatten(ret).get(figure, 0),
        unit=_unit(figure),
        offenders=tuple(counted),
        note=note,
    )


class _Why:
    """The events behind one offender's contribution to a figure."""

    def __init__(
        self,
        history: History,
        timeline: OffenderTimeline,
        known_by: int | None,
        period: ReportingPeriod,
    ) -> None:
        self.timeline = timeline
        self.period = period
        self.documents = _effective_documents(history, known_by)
        self.by_id = {str(document.get("eventId")): document for document in self.documents}
        self.by_instant: dict[int, list[Document]] = {}
        # In the timeline's order: by instant, then eventId (see ``rules``).
        for document in sorted(self.documents, key=lambda d: str(d.get("eventId"))):
            self.by_instant.setdefault(to_instant(document["occurredAt"]), []).append(document)
        self.cited: dict[str, list[str]] = {}

    # -- what a figure looks at

    def of(self, figure: str, layout: str) -> tuple[EventRef, ...]:
        family, _, rest = figure.partition(".")
        area = self.period.area
        if family == "i":
            self._at_snapshot(("registered", "community", "area"))
        elif family == "i_by_bcu":
            self._at_snapshot(("registered", "community", "area", "bcu"))
        elif family in ("vi", "vii"):
            category = 2 if family == "vi" else 3
            parts = ("category", "community", "area")
            if layout == "2008":
                self._at_snapshot(parts)
            else:
                self._during_period(
                    lambda s: s.area == area and s.in_community and s.category == category, parts
                )
        elif family == "viii":
            level_key, _, category_key = rest.partition(".")
            level, category = int(level_key[-1]), int(category_key[-1])
            self._during_period(
                lambda s: s.area == area and s.level == level and s.category == category,
                ("level", "category", "area"),
            )
        elif family == "viii_distinct":
            self._during_period(
                lambda s: s.area == area and s.level in _MANAGED_LEVELS and s.category is not None,
                ("level", "category", "area"),
            )
        elif family == "ii":
            self._occurrences(
                lambda o: (
                    o.event_type == "registration.breached"
                    and o.info.get("outcome") in ("caution", "conviction")
                ),
                ("area",),
            )
        elif family in _ORDER_TYPE:
            order_type, event_type = _ORDER_TYPE[family], _ORDER_EVENT[family][rest]
            self._occurrences(
                lambda o: o.event_type == event_type and o.info.get("orderType") == order_type,
                ("area",),
            )
        elif family == "ix":
            level_key, _, letter = rest.partition(".")
            level = int(level_key[-1])
            self._occurrences(
                lambda o: o.state.level == level and _ix_matches(letter, o.event_type, o.info),
                ("level", "area"),
            )
        elif family == "sfo_outcomes":
            self._sfo_outcome(rest)
        return self._refs()

    def _at_snapshot(self, parts: Sequence[str]) -> None:
        index = bisect_left(self.timeline.starts, self.period.snapshot) - 1
        if index >= 0:
            for part in parts:
                self._cause(index, part)

    def _during_period(self, holds: Callable[[State], bool], parts: Sequence[str]) -> None:
        # The segments that held for a positive time inside P (as ``states_during``).
        starts, last = self.timeline.starts, len(self.timeline.starts) - 1
        for index, state in enumerate(self.timeline.states):
            if starts[index] >= self.period.snapshot:
                break
            overlaps = index == last or starts[index + 1] > self.period.start
            if overlaps and holds(state):
                for part in parts:
                    self._cause(index, part)

    def _occurrences(self, matches: Callable[[Any], bool], parts: Sequence[str]) -> None:
        for occurrence in self.timeline.occurrences:
            if not self.period.contains(occurrence.at):
                continue
            if occurrence.state.area != self.period.area or not matches(occurrence):
                continue
            self._cite(occurrence.event_id, "counted")
            index = bisect_right(self.timeline.starts, occurrence.at) - 1
            for part in parts:
                self._cause(index, part)

    def _sfo_outcome(self, outcome: str) -> None:
        timeline = self.timeline
        for charge, disposal, bucket in counted_sfo_charges(timeline, self.period):
            if bucket != outcome:
                continue
            self._cite(charge.event_id, "counted: the charge")
            if disposal is not None:
                self._cite(
                    disposal.event_id, f"latest disposal before 31 March: {disposal.outcome}"
                )
            index = bisect_right(timeline.starts, charge.at) - 1
            self._cause(index, "level")
            self._cause(index, "area")

    # -- causes

    def _cause(self, index: int, part: str) -> None:
        """Cite the events that set ``part`` of the state to its value in segment ``index``."""
        states, starts = self.timeline.states, self.timeline.starts
        value = _PARTS[part](states[index])
        since = index
        while since > 0 and _PARTS[part](states[since - 1]) == value:
            since -= 1
        at_instant = self.by_instant.get(starts[since], [])
        causes = [d for d in at_instant if _sets(part, d)]
        why = _describe(part, value)
        if not causes and part == "area" and since == 0 and at_instant:
            # "the area of their earliest event": nothing moved them there.
            causes, why = at_instant[:1], f"{why} (the area of their earliest event)"
        for document in causes:
            self._cite(str(document.get("eventId")), why)

    def _cite(self, event_id: str, why: str) -> None:
        whys = self.cited.setdefault(event_id, [])
        if why not in whys:
            whys.append(why)

    def _refs(self) -> tuple[EventRef, ...]:
        cited = [self.by_id[event_id] for event_id in self.cited if event_id in self.by_id]
        cited.sort(key=lambda document: to_instant(document["occurredAt"]))
        return tuple(
            _event_ref(document, "; ".join(self.cited[str(document.get("eventId"))]))
            for document in cited
        )


_PARTS: Final[dict[str, Callable[[State], Any]]] = {
    "area": lambda s: s.area,
    "bcu": lambda s: s.bcu,
    "registered": lambda s: s.registered,
    "community": lambda s: s.in_community,
    "category": lambda s: s.category,
    "level": lambda s: s.level,
}


def _sets(part: str, document: Document) -> bool:
    """Whether ``document`` is of a kind that sets ``part`` of the state."""
    event_type = document.get("eventType")
    info = document.get("additionalInformation") or {}
    if part == "area":
        return event_type in ("mappa.area-transferred", "custody.released") and bool(
            info.get("toArea")
        )
    if part == "bcu":
        return (event_type == "registration.started" and bool(info.get("bcu"))) or (
            event_type in ("mappa.area-transferred", "custody.released")
            and bool(info.get("toArea") or info.get("toBcu"))
        )
    return event_type == {
        "registered": "registration.started",
        "community": "custody.released",
        "category": "mappa.category-assigned",
        "level": "mappa.level-changed",
    }.get(part)


def _describe(part: str, value: Any) -> str:
    if part == "area":
        return f"in area {value}"
    if part == "bcu":
        return f"in BCU {value or 'unknown'}"
    if part == "registered":
        return "registered"
    if part == "community":
        return "in the community"
    return f"{part} {value}"


def _ix_matches(letter: str, event_type: str, info: Mapping[str, Any]) -> bool:
    if letter == "a":
        return event_type == "licence.recalled"
    if letter == "b":
        return (
            event_type == "order.breached"
            and info.get("orderType") in ("SOPO", "RESTRAINING_ORDER")
            and info.get("returnedToCustody") is True
        )
    offence = info.get("offence")
    return event_type == "offence.charged" and bool(offence) and offence != "other"


def _effective_documents(history: History, known_by: int | None) -> list[Document]:
    """The facts the timeline was built from: known by then, not retracted, each id once."""
    seen = [document for document in history if _recorded_by(document, known_by)]
    retracted = {
        str((document.get("additionalInformation") or {}).get("eventId"))
        for document in seen
        if document.get("eventType") == RETRACTED
    }
    facts: list[Document] = []
    ids: set[str] = set()
    for document in seen:
        event_id = str(document.get("eventId"))
        if document.get("eventType") == RETRACTED or event_id in retracted or event_id in ids:
            continue
        ids.add(event_id)
        facts.append(document)
    return facts


def _recorded_by(document: Document, known_by: int | None) -> bool:
    recorded_at = document.get("recordedAt")
    return known_by is None or recorded_at is None or to_instant(recorded_at) <= known_by


def _event_ref(document: Document, why: str) -> EventRef:
    recorded = document.get("recordedAt")
    return EventRef(
        event_id=str(document.get("eventId")),
        event_type=str(document.get("eventType")),
        occurred_at=str(document.get("occurredAt")),
        recorded_at=None if recorded is None else str(recorded),
        why=why,
    )


# ------------------------------------------------------------------------------- diff


def diff_as_known_on(
    histories: Iterable[History],
    area: str,
    year: int,
    layout: str | None,
    a: datetime | None,
    b: datetime | None,
    population: int | None = None,
) -> list[FigureChange]:
    """Each figure that differs between the return as known on ``a`` and on ``b``.

    ``None`` stands for now (everything recorded so far). Each change lists the offenders
    whose contribution to the figure changed, with their documents recorded after the
    earlier moment and by the later one: the events that moved it.
    """
    layout = default_layout(year) if layout is None else str(layout)
    histories = list(histories)
    before = flatten(compute_return(histories, area, year, layout, a, population))
    after = flatten(compute_return(histories, area, year, layout, b, population))
    paths = list(after) + [path for path in before if path not in after]
    changed = [path for path in paths if _value(before, path) != _value(after, path)]
    if not changed:
        return []

    known_a, known_b = _known_by(a), _known_by(b)
    # "Between" is after the earlier moment and by the later one, whichever is given first.
    lower: int | None
    upper: int | None
    if known_b is not None and (known_a is None or known_b < known_a):
        lower, upper = known_b, known_a
    else:
        lower, upper = known_a, known_b
    moved: list[tuple[str, dict[str, int], dict[str, int], tuple[EventRef, ...]]] = []
    for history in histories:
        between = [d for d in history if _recorded_between(d, lower, upper)]
        if not between:
            continue  # nothing of theirs was recorded in between: their part is unchanged
        events = tuple(_event_ref(d, "recorded in between") for d in between)
        moved.append(
            (
                _reference(history),
                _contributions(history, area, year, layout, a),
                _contributions(history, area, year, layout, b),
                events,
            )
        )
    moved.sort(key=lambda item: item[0])

    changes = []
    for path in changed:
        basis = _basis(path)
        offenders = tuple(
            OffenderChange(reference, was.get(basis, 0), now.get(basis, 0), events)
            for reference, was, now, events in moved
            if was.get(basis, 0) != now.get(basis, 0)
        )
        changes.append(FigureChange(path, _value(before, path), _value(after, path), offenders))
    return changes


def _value(flat: Mapping[str, Any], path: str) -> Any:
    # A BCU missing from one version of i_by_bcu has no RSOs in it then.
    return flat.get(path, None if path == "ia" else 0)


def _recorded_between(document: Document, lower: int | None, upper: int | None) -> bool:
    recorded_at = document.get("recordedAt")
    if recorded_at is None:
        return False  # always known: never "recorded in between"
    instant = to_instant(recorded_at)
    return (lower is None or instant > lower) and (upper is None or instant <= upper)


# ---------------------------------------------------------------------------- queries


def area_histories(tx: Transaction, area: str) -> list[list[dict[str, Any]]]:
    """The stored histories of the offenders that ever named ``area`` (as the return reads)."""
    from projections.base import load_histories
    from projections.statistical_return.projection import NAME

    tx.execute("SELECT offender_id FROM return_offender_areas WHERE area = %s", (area,))
    offender_ids = [str(row[0]) for row in tx.fetchall()]
    return [history.documents for history in load_histories(tx, NAME, offender_ids)]


# ---------------------------------------------------------------------------- layouts


def format_explanation_text(explanation: Explanation) -> str:
    """The explanation for a reader: the figure, then each offender and their events."""
    e = explanation
    known = f"as known on {e.as_known_on}" if e.as_known_on else "as known now"
    lines = [
        f"{e.figure} = {'not available' if e.value is None else e.value}  "
        f"({e.area} {e.year}/{(e.year + 1) % 100:02d}, layout {e.layout}, {known})",
        f"{len(e.offenders)} offender(s) behind it, adding up to {e.explained} {e.unit}",
    ]
    if e.note:
        lines.append(e.note)
    for offender in e.offenders:
        lines.append("")
        lines.append(f"{offender.reference}  (+{offender.count})")
        lines += [_event_line(event) for event in offender.events]
    return "\n".join(lines) + "\n"


def format_diff_text(changes: Sequence[FigureChange], area: str, year: int, a: str, b: str) -> str:
    """The figures that differ between two moments, each with the events that moved it."""
    heading = f"{area} {year}/{(year + 1) % 100:02d}: as known on {a} against {b}"
    if not changes:
        return f"{heading}\nno figure differs\n"
    lines = [f"{heading}: {len(changes)} figure(s) differ"]
    for change in changes:
        lines.append("")
        lines.append(f"{change.figure}: {change.before} -> {change.after}")
        for offender in change.offenders:
            lines.append(f"  {offender.reference}  ({offender.before} -> {offender.after})")
            lines += [f"  {_event_line(event)}" for event in offender.events]
    return "\n".join(lines) + "\n"


def _event_line(event: EventRef) -> str:
    return (
        f"  {event.occurred_at}  {event.event_type:<26} {event.event_id}  "
        f"recorded {event.recorded_at or '-'}  [{event.why}]"
    )
