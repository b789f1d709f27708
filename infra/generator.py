"""Deterministic generator of realistic MAPPA offender histories in the interchange format.

``generate_history`` tells the life stories of a number of offenders in one MAPPA area over a
run of reporting years (1 April of ``first_year`` to 31 March after ``last_year``) and returns
them as the lines of an interchange ``.jsonl`` file (``shared/contract/interchange-v1.md``), in
the order the agencies' feeds would deliver them. It feeds the demo, the tests and the
benchmarks, so it must be realistic enough for the statistical return and the victim alerts to
have something to count, and exactly reproducible: the same arguments give the same lines in
any process (only ``random.Random`` streams seeded from ``seed`` are used; no hash order, no
clock, no ``uuid4``).

Proportions follow the seeds (West Mercia, County Durham and Gloucestershire annual reports
2004/05 to 2008/09): about two thirds of the community caseload are registered sex offenders,
about 70% of offenders are managed at level 1, SOPOs and registration breaches are counted in
handfuls per year, category 2 offenders stay in MAPPA while on licence.

The module is organised by lifecycle stage: conviction, custody and release, licence, life in
the community (incidents), closure; then victims, corrections and delivery (late arrivals,
resent duplicates, invalid lines).
"""

from __future__ import annotations

import gc
import heapq
import json
import pathlib
import random
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

from projections.victim_alerts.rules import ALERT_KINDS

if TYPE_CHECKING:
    from _typeshed import SupportsLenAndGetItem

Info = dict[str, Any]


def _compact_encoder() -> Callable[[Any], str]:
    """Compact JSON. The C encoder is built once: ``json.dumps`` rebuilds it on every call,
    which costs as much as the encoding of a small dict."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return json.JSONEncoder(separators=(",", ":")).encode

    def unsupported(value: Any) -> Any:
        raise TypeError(f"not JSON serialisable: {value!r}")

    chunks = make(
        None, unsupported, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True
    )
    return lambda value: "".join(chunks(value, 0))


_ENCODE = _compact_encoder()

# Basic command units / police divisions as the seeds name them. West Mercia's are the names
# the areas reference data uses; County Durham's 2005/06 return splits RSOs into "BCU NORTH" and
# "BCU SOUTH"; Gloucestershire's 2005/06 return names three police divisions.
AREA_BCUS: dict[str, list[str]] = {
    "WM": ["Hereford", "North Worcs", "Shrewsbury", "Telford and Wrekin", "Worcester"],
    "DUR": ["North", "South"],
    "GLO": ["Cheltenham & Tewkesbury", "Stroud & Cotswolds", "Gloucester & Forest"],
}

# Prisons local to each area, then a few national ones that hold offenders from everywhere.
AREA_PRISONS: dict[str, list[str]] = {
    "WM": ["HMP Long Lartin", "HMP Hewell Grange", "HMP Shrewsbury", "HMYOI Stoke Heath"],
    "DUR": ["HMP Durham", "HMP Frankland", "HMP Low Newton", "HMYOI Deerbolt"],
    "GLO": ["HMP Gloucester", "HMP Leyhill", "HMP Eastwood Park"],
}
NATIONAL_PRISONS: list[str] = ["HMP Whatton", "HMP Wakefield", "HMP Albany", "HMP Birmingham"]
# Open prisons: where parole boards send people for open conditions and where absconds happen.
OPEN_PRISONS: list[str] = ["HMP Hewell Grange", "HMP Leyhill", "HMP North Sea Camp"]

# A handful of victim liaison officers per area.
VLO_COUNT: dict[str, int] = {"WM": 6, "DUR": 4, "GLO": 4}

# The 42 MAPPA areas of England and Wales (the police force areas, London being the
# Metropolitan and City forces together), with a rough population in thousands (mid-2000s)
# that shares out a national history's offenders. Only the three seed areas have real BCU
# names and reference data; the others get generic BCUs, and their returns no "ia" figure.
NATIONAL_AREAS: dict[str, tuple[str, int]] = {
    "AS": ("Avon and Somerset", 1_500),
    "BED": ("Bedfordshire", 580),
    "CAM": ("Cambridgeshire", 750),
    "CHE": ("Cheshire", 1_000),
    "CLE": ("Cleveland", 550),
    "CUM": ("Cumbria", 490),
    "DER": ("Derbyshire", 1_000),
    "DC": ("Devon and Cornwall", 1_650),
    "DOR": ("Dorset", 700),
    "DUR": ("County Durham", 600),
    "DP": ("Dyfed-Powys", 500),
    "ESS": ("Essex", 1_700),
    "GLO": ("Gloucestershire", 570),
    "GM": ("Greater Manchester", 2_550),
    "GWE": ("Gwent", 560),
    "HAM": ("Hampshire", 1_800),
    "HER": ("Hertfordshire", 1_050),
    "HUM": ("Humberside", 900),
    "KEN": ("Kent", 1_600),
    "LAN": ("Lancashire", 1_450),
    "LEI": ("Leicestershire", 950),
    "LIN": ("Lincolnshire", 690),
    "LON": ("London", 7_500),
    "MER": ("Merseyside", 1_370),
    "NOR": ("Norfolk", 820),
    "NTH": ("Northamptonshire", 650),
    "NUM": ("Northumbria", 1_400),
    "NWA": ("North Wales", 670),
    "NY": ("North Yorkshire", 760),
    "NOT": ("Nottinghamshire", 1_040),
    "SWA": ("South Wales", 1_250),
    "SY": ("South Yorkshire", 1_290),
    "STA": ("Staffordshire", 1_060),
    "SUF": ("Suffolk", 680),
    "SUR": ("Surrey", 1_080),
    "SUS": ("Sussex", 1_520),
    "TV": ("Thames Valley", 2_150),
    "WAR": ("Warwickshire", 530),
    "WM": ("West Mercia", 1_180),
    "WMID": ("West Midlands", 2_600),
    "WY": ("West Yorkshire", 2_100),
    "WIL": ("Wiltshire", 630),
}
_GENERIC_BCUS = ["North", "Central", "South"]
_NATIONAL_BCUS: dict[str, list[str]] = {
    code: AREA_BCUS.get(code, _GENERIC_BCUS) for code in NATIONAL_AREAS
}


def national_areas() -> list[str]:
    """The codes of the 42 MAPPA areas of England and Wales (WM, DUR and GLO among them)."""
    return list(NATIONAL_AREAS)


EVENT_TYPES: frozenset[str] = frozenset(
    {
        "mappa.category-assigned",
        "mappa.level-changed",
        "mappa.area-transferred",
        "mappa.case-closed",
        "registration.started",
        "registration.breached",
        "registration.ended",
        "order.applied",
        "order.interim-granted",
        "order.granted",
        "order.refused",
        "order.breached",
        "custody.received",
        "custody.transferred",
        "release.notified",
        "custody.released",
        "custody.temporary-release",
        "custody.absconded",
        "parole.decided",
        "sentence.varied",
        "licence.conditions-set",
        "licence.recalled",
        "licence.ended",
        "offence.charged",
        "offence.disposed",
        "victim.enrolled",
        "victim.withdrawn",
        "record.retracted",
    }
)


# Which agency reports each type (record.retracted goes back to the agency of its target).
AGENCY_OF: dict[str, str] = {
    "mappa.category-assigned": "mappa-coordinator",
    "mappa.level-changed": "mappa-coordinator",
    "mappa.area-transferred": "mappa-coordinator",
    "mappa.case-closed": "mappa-coordinator",
    "registration.started": "police",
    "registration.breached": "police",
    "registration.ended": "police",
    "order.applied": "police",
    "order.interim-granted": "court",
    "order.granted": "court",
    "order.refused": "court",
    "order.breached": "police",
    "custody.received": "prison",
    "custody.transferred": "prison",
    "release.notified": "prison",
    "custody.released": "prison",
    "custody.temporary-release": "prison",
    "custody.absconded": "prison",
    "parole.decided": "prison",
    "sentence.varied": "court",
    "licence.conditions-set": "probation",
    "licence.recalled": "probation",
    "licence.ended": "probation",
    "offence.charged": "police",
    "offence.disposed": "court",
    "victim.enrolled": "victim-liaison",
    "victim.withdrawn": "victim-liaison",
}
SYSTEMS: dict[str, str] = {
    "prison": "LIDS",
    "probation": "CRAMS",
    "police": "ViSOR",
    "court": "Libra",
    "victim-liaison": "VCS",
    "mappa-coordinator": "ViSOR",
}

# --- time ---------------------------------------------------------------------------------
# A moment is an int: minutes since day 0 of the proleptic Gregorian calendar
# (date ordinal * 1440 + minute of the day), in Europe/London wall-clock time. Every event
# happens between 07:00 and 22:59, well clear of the 01:00/02:00 clock changes, so the
# offset in force at noon is the offset of the moment.

DAY = 1440
_LONDON = ZoneInfo("Europe/London")
_HHMM = [f"{m // 60:02d}:{m % 60:02d}:00" for m in range(DAY)]

# Windows of the day (first and last minute). Events that follow one another on the same day
# use windows that do not overlap, so their order in occurredAt is always the causal order.
EARLY = (7 * 60, 7 * 60 + 59)
MORNING = (8 * 60, 10 * 60 + 59)  # releases from prison
AM = (9 * 60, 12 * 60 + 59)  # recalls, breaches, charges
MIDDAY = (11 * 60, 15 * 60 + 59)  # licence conditions after a release
PM = (13 * 60, 15 * 60 + 59)
COURT = (10 * 60, 15 * 60 + 59)
LATE_PM = (16 * 60, 18 * 60 + 59)
EVENING = (16 * 60, 20 * 60 + 59)  # receptions into custody
AFTER_RELEASE = (11 * 60, 17 * 60 + 59)
OFFICE = (9 * 60, 17 * 60 + 29)
ANY = (7 * 60, 22 * 60 + 59)


class _Clock:
    """Formats moments as ISO 8601 with the Europe/London offset; caches per day."""

    def __init__(self) -> None:
        self._days: dict[int, tuple[str, str]] = {}

    def iso(self, t: int) -> str:
        day, minute = divmod(t, DAY)
        head = self._days.get(day)
        if head is None:
            head = self._days[day] = self._day_parts(day)
        return head[0] + _HHMM[minute] + head[1]

    @staticmethod
    def _day_parts(day: int) -> tuple[str, str]:
        d = date.fromordinal(day)
        offset = datetime(d.year, d.month, d.day, 12, tzinfo=_LONDON).utcoffset()
        seconds = int(offset.total_seconds()) if offset is not None else 0
        sign = "+" if seconds >= 0 else "-"
        hours, rest = divmod(abs(seconds), 3600)
        return d.isoformat() + "T", f"{sign}{hours:02d}:{rest // 60:02d}"


def _iso_day(day: int) -> str:
    return date.fromordinal(day).isoformat()


def _add_years(day: int, years: int) -> int:
    d = date.fromordinal(day)
    try:
        return d.replace(year=d.year + years).toordinal()
    except ValueError:  # 29 February
        return d.replace(year=d.year + years, day=28).toordinal()


def _years(days: float) -> float:
    return days / 365.25


# --- the people ---------------------------------------------------------------------------


class _Rng(random.Random):
    """``random.Random`` with ``randint`` and ``choice`` drawn from ``random()`` alone.

    Several times faster than the library's rejection sampling, and the sequence depends only
    on the Mersenne Twister, which every Python version reproduces exactly.
    """

    def randint(self, a: int, b: int) -> int:
        return a + int(self.random() * (b - a + 1))

    def choice(self, seq: SupportsLenAndGetItem[_T]) -> _T:
        return seq[int(self.random() * len(seq))]

    def uuid(self) -> str:
        """A random (version 4) UUID from this stream: reproducible, unlike ``uuid4``."""
        bits = (self.getrandbits(128) & _UUID_KEEP) | _UUID_SET
        h = f"{bits:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_T = TypeVar("_T")
# Version 4 in bits 76-79, RFC 4122 variant (binary 10) in bits 62-63.
_UUID_KEEP = ~((0xF << 76) | (0x3 << 62)) & ((1 << 128) - 1)
_UUID_SET = (0x4 << 76) | (0x2 << 62)


class _Event:
    """One fact of a life, before it becomes a line."""

    __slots__ = ("after", "agency", "area", "eid", "etype", "info", "recv", "t")

    def __init__(self, t: int, etype: str, info: Info, agency: str, eid: str) -> None:
        self.t = t
        self.etype = etype
        self.info = info
        self.agency = agency
        self.eid = eid
        self.area = ""
        self.recv = 0
        # Must be received after this event (a retraction after its target, a corrected
        # breach after the retraction of the pending one).
        self.after: _Event | None = None


class _World:
    """What all the lives share: the window, the home area, the other areas."""

    def __init__(self, area: str, first_year: int, last_year: int, national: bool = False) -> None:
        self.home = area
        # The areas people arrive from and move to: the three seed areas by default (so their
        # histories stay what they always were), all 42 at national scale.
        self.areas = list(_NATIONAL_BCUS) if national else list(AREA_BCUS)
        self.bcus = _NATIONAL_BCUS
        self.others = [a for a in self.areas if a != area]
        self.start = date(first_year, 4, 1).toordinal()
        self.end = date(last_year + 1, 4, 1).toordinal()
        self.end_t = self.end * DAY
        # Sexual Offences Act 2003 came into force on 1 May 2004: SOPOs, Notification Orders
        # and Foreign Travel Orders exist from then on (the WM 2004/05 return counts from then).
        self.orders_from = date(2004, 5, 1).toordinal()


class _Profile:
    """Who an offender is at entry: drawn first so references follow entry order."""

    __slots__ = ("arrives", "cat", "custodial", "day", "initial", "months", "seed")

    def __init__(self, world: _World, rng: _Rng) -> None:
        self.seed = rng.getrandbits(64)
        # About a third are already known when the run starts (MAPPA began in 2001 with a
        # caseload): without them the first 31 March would count only a year of newcomers.
        self.initial = rng.random() < 0.3
        if self.initial:
            self.cat = _weighted(rng, ((1, 0.6), (2, 0.33), (3, 0.07)))
            self.day = world.start + rng.randint(0, 45)
            custodial_share = {1: 0.3, 2: 1.0, 3: 0.2}[self.cat]
        else:
            # Category 2 and 3 offenders pass through faster (licence-long), so they are a
            # larger share of the flow than of the caseload.
            self.cat = _weighted(rng, ((1, 0.36), (2, 0.55), (3, 0.09)))
            self.day = rng.randint(world.start, max(world.start, world.end - 30))
            custodial_share = {1: 0.75, 2: 0.97, 3: 0.35}[self.cat]
        self.arrives = not self.initial and rng.random() < 0.03
        self.custodial = rng.random() < custodial_share
        self.months = _sentence_months(rng, self.cat)


def _weighted(rng: _Rng, choices: tuple[tuple[Any, float], ...]) -> Any:
    r = rng.random() * sum(w for _, w in choices)
    for value, weight in choices:
        r -= weight
        if r < 0:
            return value
    return choices[-1][0]


def _sentence_months(rng: _Rng, cat: int) -> int:
    r = rng.random()
    if cat == 1:
        if r < 0.10:
            return rng.randint(3, 5)
        if r < 0.55:
            return rng.randint(6, 29)
        return rng.randint(30, 96) if r < 0.95 else rng.randint(97, 216)
    if cat == 2:
        if r < 0.7:
            return rng.randint(12, 47)
        return rng.randint(48, 120) if r < 0.95 else rng.randint(121, 240)
    # Category 3: not a sexual offence, nor a violent one with 12 months or more, so a short
    # sentence served to its end without licence.
    return rng.randint(3, 11)


class _Life:
    """An offender's events as they are drawn, with the state the drawing needs."""

    def __init__(self, world: _World, profile: _Profile, number: int) -> None:
        self.world = world
        self.rng = rng = _Rng(profile.seed)
        self.profile = profile
        self.cat = profile.cat
        self.origin = rng.choice(world.others) if profile.arrives and world.others else world.home
        self.ref = f"{self.origin}-{number:06d}"
        self.area = self.origin  # responsible area at the drawing cursor
        self.bcu = rng.choice(world.bcus[self.origin])
        self.prison = ""
        self.level = 0
        self.registered = False
        self.sopo_from: int | None = None
        self.counter = 0
        self.first_notice: int | None = None
        self.settled = 0  # day by which pending charges are disposed of
        self.victims = _victim_count(rng, profile)
        self.events: list[_Event] = []
        self.dependents: list[_Event] = []
        self.refs_json = _person_references(rng, self.ref, profile.custodial)
        self.officer = rng.randint(1, 3)  # the user at each agency who handles the case

    def emit(
        self, day: int, window: tuple[int, int], etype: str, info: Info | None = None
    ) -> _Event:
        first, last = window
        t = day * DAY + first + int(self.rng.random() * (last - first + 1))
        return self.emit_at(t, etype, info)

    def emit_at(self, t: int, etype: str, info: Info | None, agency: str = "") -> _Event:
        # Facts beyond the run are drawn (the story needs them) but never delivered.
        eid = self.rng.uuid() if t < self.world.end_t else ""
        ev = _Event(t, etype, info if info is not None else {}, agency or AGENCY_OF[etype], eid)
        self.events.append(ev)
        return ev

    def next_number(self) -> int:
        self.counter += 1
        return self.counter

    def pick_prison(self, open_estate: bool = False) -> str:
        if open_estate:
            return self.rng.choice(OPEN_PRISONS)
        local = AREA_PRISONS.get(self.area, [])
        pool = local if local and self.rng.random() < 0.7 else NATIONAL_PRISONS
        choice = self.rng.choice(pool)
        return choice if choice != self.prison else self.rng.choice(NATIONAL_PRISONS)


def _victim_count(rng: _Rng, profile: _Profile) -> int:
    # Victims of sexual and violent offenders join the contact scheme in about 40% of cases.
    if profile.cat == 3 or rng.random() >= 0.4:
        return 0
    return 2 if rng.random() < 0.1 else 1


def _person_references(rng: _Rng, ref: str, custodial: bool) -> dict[str, str]:
    """The personReference (as JSON) each agency sends: its own number beside the MAPPA
    reference (NOMS number from prisons, PNC id from police, CRN from probation)."""
    letters = "ABCDEFGHJKLMNPRSTUVWXYZ"
    pick = rng.choice
    numbers = {
        "prison": f"{pick(letters)}{rng.randint(1000, 9999)}{pick(letters)}{pick(letters)}",
        "police": f"{rng.randint(1980, 2000)}/{rng.randint(0, 9999999):07d}{pick(letters)}",
        "probation": f"{pick(letters)}{rng.randint(0, 999999):06d}",
    }
    mappa = _ENCODE({"type": "MAPPA", "value": ref})
    refs = {"": f'{{"identifiers":[{mappa}]}}'}
    for agency, kind in (("prison", "NOMS"), ("police", "PNC"), ("probation", "CRN")):
        if agency != "prison" or custodial:
            other = f'{{"type":"{kind}","value":"{numbers[agency]}"}}'
            refs[agency] = f'{{"identifiers":[{mappa},{other}]}}'
    return refs


# --- stage 1: conviction and MAPPA eligibility --------------------------------------------

_FIRST_LEVEL: dict[int, tuple[tuple[int, float], ...]] = {
    # Registered sex offenders mostly need ordinary management; category 3 offenders are in
    # MAPPA because they need multi-agency management. Overall about 70/25/5.
    1: ((1, 0.80), (2, 0.16), (3, 0.04)),
    2: ((1, 0.74), (2, 0.21), (3, 0.05)),
    3: ((1, 0.10), (2, 0.72), (3, 0.18)),
}


def _registration_period(months: int) -> str:
    # Sexual Offences Act 2003 s.82: under 6 months 7 years, 6 to 30 months 10 years,
    # 30 months or more indefinitely.
    if months < 6:
        return "P7Y"
    return "P10Y" if months < 30 else "indefinite"


def _period_end(start: int, period: str) -> int | None:
    if period == "indefinite":
        return None
    return _add_years(start, int(period[1:-1]))


def _assign_category(life: _Life, day: int) -> None:
    life.emit(day, (9 * 60, 11 * 60 + 59), "mappa.category-assigned", {"category": life.cat})


def _start_registration(life: _Life, day: int, period: str) -> None:
    life.registered = True
    info = {"period": period, "bcu": life.bcu}
    life.emit(day, (13 * 60, 16 * 60 + 59), "registration.started", info)


def _set_first_level(life: _Life, day: int) -> None:
    life.level = _weighted(life.rng, _FIRST_LEVEL[life.cat])
    info = {"level": life.level, "reason": "initial risk assessment"}
    life.emit(day, OFFICE, "mappa.level-changed", info)


def _order_on_conviction(life: _Life, day: int) -> None:
    """A SOPO made by the sentencing court (no application); from May 2004 only."""
    share = 0.15 if life.cat == 1 else 0.02
    if day < life.world.orders_from or life.rng.random() >= share:
        return
    info = {
        "orderType": "SOPO",
        "prohibitions": _prohibitions(life.rng),
        "expiresOn": _iso_day(_add_years(day, life.rng.choice((5, 5, 10)))),
    }
    life.emit(day, (10 * 60, 12 * 60 + 59), "order.granted", info)
    life.sopo_from = day


_PROHIBITIONS = (
    "Not to allow a child under 18 to be carried in a vehicle unless a parent is present",
    "Not to take photographs of any child under 18 with any image capturing device",
    "Not to loiter within 100 metres of schools, parks, playgrounds or swimming pools",
    "Not to seek or undertake any work allowing unsupervised access to a child under 16",
    "Not to reside in any household with a child or young person under 17",
    "Not to use internet chat rooms or sites designed to introduce people to one another",
    "Not to change vehicle without informing a designated police officer",
    "Not to have unsupervised contact with any child under 16",
)


def _prohibitions(rng: _Rng) -> list[str]:
    return rng.sample(_PROHIBITIONS, rng.randint(1, 4))


# --- stage 2: custody and release ---------------------------------------------------------


class _Plan:
    """When and how a sentence ends: release day and type, licence end, parole reviews."""

    __slots__ = ("licence_end", "release", "reviews", "rtype", "varied")

    def __init__(self, release: int, rtype: str, licence_end: int | None) -> None:
        self.release = release
        self.rtype = rtype
        self.licence_end = licence_end
        self.reviews: list[tuple[int, str]] = []
        self.varied = 0  # day of an appeal that set this release date


def _release_plan(rng: _Rng, d0: int, months: int, served: float, sexual: bool) -> _Plan:
    """Criminal Justice Act 1991 rules: half of short terms, parole from half of long ones."""
    days = int(months * 30.44)
    half = max(14, int(days / 2 * (1 - served)))
    if months < 12:
        return _Plan(d0 + half, "end-of-sentence", None)
    # Licence to the three-quarter point, or to the end for extended sex offender licences.
    licence_days = int(days * (0.5 if sexual and rng.random() < 0.3 else 0.25))
    if months < 48 or served > 0:
        release = d0 + half
        return _Plan(release, "licence", release + max(90, licence_days))
    return _parole_plan(rng, d0, days, half, licence_days)


def _parole_plan(rng: _Rng, d0: int, days: int, half: int, licence_days: int) -> _Plan:
    ped, npd = d0 + half, d0 + int(days * 2 / 3)
    review = ped - rng.randint(20, 60)
    outcome = _weighted(
        rng, (("release-directed", 0.4), ("release-refused", 0.5), ("open-conditions", 0.1))
    )
    plan = _Plan(npd, "licence", 0)
    plan.reviews.append((review, outcome))
    if outcome == "release-directed":
        plan.release, plan.rtype = ped + rng.randint(0, 40), "parole-licence"
    elif review + 365 < npd - 60:
        second = _weighted(rng, (("release-directed", 0.5), ("release-refused", 0.5)))
        plan.reviews.append((review + 365, second))
        if second == "release-directed":
            plan.release, plan.rtype = review + 365 + rng.randint(14, 40), "parole-licence"
    plan.licence_end = max(plan.release + 90, d0 + half + licence_days)  # the 3/4 point
    return plan


def _serve_sentence(life: _Life, d0: int, months: int, served: float = 0.0) -> _Plan:
    """Everything from reception to release; returns the plan that was carried out."""
    rng = life.rng
    plan = _release_plan(rng, d0, months, served, life.cat == 1)
    if served == 0 and plan.release - d0 > 150 and rng.random() < 0.04:
        plan = _appeal(life, d0, months, plan)
    _first_steps_in_custody(life, d0, plan)
    _parole_reviews(life, plan)
    _transfers(life, d0, plan)
    _temporary_release(life, d0, months, plan)
    destination = _destination(life)
    _notify_release(life, max(d0, plan.varied), plan, destination)
    _release(life, plan, destination)
    return plan


def _destination(life: _Life) -> Info:
    """Where the offender will live on release: the home area (people serving their sentence
    from another area move here), usually the BCU they were registered in."""
    rng = life.rng
    if life.area != life.world.home:
        return {"toArea": life.world.home, "toBcu": rng.choice(life.world.bcus[life.world.home])}
    return {"toBcu": rng.choice(life.world.bcus[life.area]) if rng.random() < 0.2 else life.bcu}


def _receive(life: _Life, day: int, reason: str, window: tuple[int, int] = EVENING) -> None:
    life.prison = life.pick_prison()
    life.emit(day, window, "custody.received", {"prison": life.prison, "reason": reason})


def _first_steps_in_custody(life: _Life, d0: int, plan: _Plan) -> None:
    """Category, registration and first level while the sentence begins."""
    rng = life.rng
    span = plan.release - d0
    cat_day = d0 + rng.randint(1, max(1, min(10, span // 4)))
    if life.cat == 3:
        # Category 3 is a judgement about risk on release, made as release approaches.
        cat_day = max(d0 + 1, plan.release - rng.randint(30, 120))
    _assign_category(life, cat_day)
    if life.cat == 1:
        _start_registration(life, cat_day, _registration_period(life.profile.months))
    level_day = cat_day + rng.randint(7, max(7, min(90, (plan.release - cat_day) // 2)))
    _set_first_level(life, min(level_day, plan.release - 1))


def _appeal(life: _Life, d0: int, months: int, plan: _Plan) -> _Plan:
    """Sentence reduced on appeal: a new, earlier release date."""
    rng = life.rng
    day = d0 + rng.randint(40, min(300, plan.release - d0 - 60))
    shorter = _release_plan(rng, d0, max(3, int(months * rng.uniform(0.55, 0.9))), 0.0, False)
    shorter.release = max(shorter.release, day + 21)
    if shorter.licence_end is not None:
        shorter.licence_end = max(shorter.licence_end, shorter.release + 90)
    info = {"reason": "appeal", "newExpectedReleaseDate": _iso_day(shorter.release)}
    life.emit(day, COURT, "sentence.varied", info)
    shorter.varied = day
    return shorter


def _parole_reviews(life: _Life, plan: _Plan) -> None:
    for day, outcome in plan.reviews:
        life.emit(day, OFFICE, "parole.decided", {"outcome": outcome})


def _transfers(life: _Life, d0: int, plan: _Plan) -> None:
    """Moves between prisons, to open conditions after a parole board says so, and back
    to closed conditions after an abscond."""
    rng = life.rng
    moves: list[tuple[int, bool]] = []
    room = plan.release - d0 - 60
    if room > 30:
        # Long-term prisoners move on through the estate about once or twice in two years.
        count = sum(1 for _ in range(1 + room // 365) if rng.random() < 0.6)
        moves += [(d0 + 30 + rng.randint(0, room), False) for _ in range(count)]
    moves += [
        (day + rng.randint(14, 60), True) for day, o in plan.reviews if o == "open-conditions"
    ]
    moves = [m for m in sorted(moves) if m[0] < plan.release - 7]
    for day, to_open in moves:
        _transfer(life, day, to_open)
        if to_open and rng.random() < 0.08 and day + 40 < plan.release - 40:
            gone = rng.randint(day + 7, plan.release - 40)
            life.emit(gone, ANY, "custody.absconded")
            _transfer(life, gone + rng.randint(2, 25), False)  # recaptured, to closed conditions
            return


def _transfer(life: _Life, day: int, to_open: bool) -> None:
    origin = life.prison
    life.prison = life.pick_prison(open_estate=to_open)
    info = {"fromPrison": origin, "toPrison": life.prison}
    life.emit(day, OFFICE, "custody.transferred", info)


def _temporary_release(life: _Life, d0: int, months: int, plan: _Plan) -> None:
    """Spells of release on temporary licence (mostly work placements) in the last months
    of longer sentences, each notified a few days ahead."""
    rng = life.rng
    if months < 24 or rng.random() >= 0.25 or plan.release - d0 < 300:
        return
    start = plan.release - rng.randint(60, 240)
    for _ in range(rng.randint(1, 8)):
        end = start + rng.randint(0, 13)
        if end >= plan.release - 30:
            return
        purpose = "work-placement" if rng.random() < 0.8 else "other"
        info = {"purpose": purpose, "from": _iso_day(start), "to": _iso_day(end)}
        life.emit(start - rng.randint(1, 3), OFFICE, "custody.temporary-release", info)
        if rng.random() < 0.03:  # failed to return: an abscond, then closed conditions
            life.emit(end, EVENING, "custody.absconded")
            _transfer(life, end + rng.randint(2, 25), False)
            return
        start = end + rng.randint(3, 30)


def _notify_release(life: _Life, since: int, plan: _Plan, destination: Info) -> None:
    """Notice of the expected release date: usually months ahead, sometimes late (under the
    six weeks level 2 needs), sometimes followed by a second notice with a changed date."""
    rng = life.rng
    release = plan.release
    lead = rng.randint(5, 41) if rng.random() < 0.12 else rng.randint(90, 200)
    day = max(since + 1, release - lead)
    if day >= release:
        return
    info: Info = {"releaseType": plan.rtype, **destination}
    if rng.random() < 0.2 and release - day > 20:
        first = dict(info, expectedReleaseDate=_iso_day(release + rng.randint(-45, 45)))
        life.emit(day, OFFICE, "release.notified", first)
        day2 = rng.randint(day + 7, release - 3)
        life.emit(
            day2, OFFICE, "release.notified", dict(info, expectedReleaseDate=_iso_day(release))
        )
    else:
        life.emit(
            day, OFFICE, "release.notified", dict(info, expectedReleaseDate=_iso_day(release))
        )
    if life.first_notice is None:
        life.first_notice = day
    _pre_release_review(life, day)


def _pre_release_review(life: _Life, day: int) -> None:
    # The release plan is discussed at a MAPPA meeting; some cases move up for release.
    rng = life.rng
    if life.level and rng.random() < 0.12:
        up = {1: 2, 2: 3 if rng.random() < 0.3 else 1, 3: 3}[life.level]
        if up != life.level:
            life.level = up
            info = {"level": up, "reason": "pre-release planning"}
            life.emit(day + rng.randint(1, 14), OFFICE, "mappa.level-changed", info)


def _release(life: _Life, plan: _Plan, destination: Info) -> None:
    life.area = destination.get("toArea", life.area)
    life.bcu = destination["toBcu"]
    life.emit(plan.release, MORNING, "custody.released", {"releaseType": plan.rtype, **destination})
    if plan.licence_end is not None:
        _set_conditions(life, plan.release, plan.licence_end, MIDDAY)


# --- stage 3: licence ---------------------------------------------------------------------

_CONDITIONS: dict[str, str] = {
    "residence": "Reside at an address approved by the supervising officer",
    "non-contact": "No contact, direct or indirect, with the victim or the victim's family",
    "exclusion-zone": "Not to enter the exclusion zone shown on the attached map",
    "curfew": "Remain at the approved address between 19:00 and 07:00",
    "electronic-monitoring": "Comply with electronic monitoring of the curfew",
    "programme": "Attend and complete the accredited programme as directed",
    "disclosure-of-relationships": "Disclose any new relationship to the supervising officer",
    "other": "Not to own or use any device able to access the internet without permission",
}


def _set_conditions(life: _Life, day: int, licence_end: int, window: tuple[int, int]) -> None:
    rng = life.rng
    codes = ["residence"] if rng.random() < 0.9 else []
    if life.victims:
        codes.append("non-contact")
    codes += rng.sample(
        ("exclusion-zone", "curfew", "electronic-monitoring", "programme", "other"),
        rng.randint(1, 3),
    )
    if life.cat == 1 and rng.random() < 0.4:
        codes.append("disclosure-of-relationships")
    conditions = [
        {
            "code": code,
            "text": _CONDITIONS[code],
            # Exclusion zones usually keep the offender away from where a victim lives.
            "protectsVictim": code == "non-contact"
            or (code == "exclusion-zone" and rng.random() < 0.8),
        }
        for code in codes
    ]
    info = {"conditions": conditions, "licenceEndDate": _iso_day(licence_end)}
    life.emit(day, window, "licence.conditions-set", info)


def _serve_licence(life: _Life, release: int, licence_end: int) -> int | None:
    """Life on licence; returns the day it ended, or None when the story stops here."""
    cursor = _incidents(life, release, licence_end, on_licence=True)
    if cursor is None:
        return None
    if licence_end < life.world.end:
        life.emit(licence_end, AFTER_RELEASE, "licence.ended")
    return max(cursor, licence_end)


# --- stage 4: life in the community (incidents) -------------------------------------------
# Incidents arrive at random (exponential waiting times) with yearly rates that depend on the
# offender's state. Each handler draws the incident's events from the cursor day and returns
# the day to continue from (after any spell in custody), or None when the story stops.

_RECALL_RATE = {1: 0.10, 2: 0.16, 3: 0.20}
_LEVEL_RISK = {0: 1.0, 1: 0.8, 2: 1.4, 3: 2.0}
_LEVEL_REVIEW = {0: 0.0, 1: 0.03, 2: 0.45, 3: 0.9}


def _incident_rates(life: _Life, day: int, on_licence: bool) -> list[tuple[str, float]]:
    """Yearly rate of each kind of incident open to this offender now."""
    rates = [
        ("bcu-move", 0.04),
        ("level", _LEVEL_REVIEW[life.level]),
        ("charge", 0.004 if life.level <= 1 else 0.012),
        ("death", 0.003),
    ]
    if on_licence:
        rates += [("recall", _RECALL_RATE[life.cat] * _LEVEL_RISK[life.level]), ("vary", 0.2)]
    else:
        rates += [("area-move", 0.015), ("left", 0.004)]
        if life.cat == 1 and day >= life.world.orders_from:
            rates += [("sopo", 0.02 if life.sopo_from is None else 0.0), ("fto", 0.002)]
    if life.registered:
        rates.append(("reg-breach", 0.035))
    if life.sopo_from is not None and day > life.sopo_from:
        rates.append(("sopo-breach", 0.05))
    if life.cat in (2, 3):
        rates.append(("ro-breach", 0.015))
    return rates


def _incidents(life: _Life, day: int, until: int, on_licence: bool) -> int | None:
    rng = life.rng
    stop = min(until, life.world.end)
    while True:
        rates = _incident_rates(life, day, on_licence)
        total = sum(rate for _, rate in rates)
        next_day = day + 1 + int(rng.expovariate(total / 365.25))
        if next_day >= stop:
            return max(day, until)
        after = _HANDLERS[_weighted(rng, tuple(rates))](life, next_day, until, on_licence)
        if after is None:
            return None
        day = after


def _recall(life: _Life, day: int, until: int, on_licence: bool) -> int | None:
    if day + 3 >= until:
        return day
    reason = _weighted(
        life.rng, (("breach-of-conditions", 0.75), ("further-offence", 0.2), ("other", 0.05))
    )
    life.emit(day, AM, "licence.recalled", {"reason": reason})
    back = day + life.rng.choice((0, 0, 0, 1, 2))
    _receive(life, back, "recall")
    # Fixed-term recalls last 28 days; standard recalls until the parole board re-releases.
    stay = 28 if life.rng.random() < 0.5 else life.rng.randint(40, 365)
    return _rerelease(life, back, back + stay, until)


def _rerelease(life: _Life, back: int, out: int, until: int) -> int:
    """Release after a return to custody during a licence: on licence again, or at the
    licence end date when the licence runs out inside."""
    rng = life.rng
    if out >= until:
        info = {"releaseType": "end-of-sentence", "toBcu": life.bcu}
        life.emit(until, MORNING, "custody.released", info)
        return until
    if rng.random() < 0.5:
        notice = max(back + 1, out - rng.randint(3, 30))
        if notice < out:
            info = {"expectedReleaseDate": _iso_day(out), "releaseType": "licence"}
            life.emit(notice, OFFICE, "release.notified", dict(info, toBcu=life.bcu))
    life.emit(out, MORNING, "custody.released", {"releaseType": "licence", "toBcu": life.bcu})
    _set_conditions(life, out, until, MIDDAY)
    return out


def _vary_conditions(life: _Life, day: int, until: int, on_licence: bool) -> int | None:
    _set_conditions(life, day, until, OFFICE)
    return day


def _registration_breach(life: _Life, day: int, until: int, on_licence: bool) -> int | None:
    """A breach of the notification requirements; a pending outcome is often decided later
    and sent as a retraction of the first report plus a new one at the same occurredAt."""
    rng = life.rng
    outcomes = (("conviction", 0.40), ("caution", 0.25), ("no-further-action", 0.15))
    outcome = _weighted(rng, (*outcomes, ("pending", 0.20)))
    first = life.emit(day, AM, "registration.breached", {"outcome": outcome})
    decided = day + rng.randint(30, 200)
    if outcome == "pending" and rng.random() < 0.75 and decided < life.world.end:
        retraction = _retract(life, first, decided * DAY + rng.randint(*OFFICE), "outcome decided")
        final = _weighted(rng, outcomes)
        corrected = life.emit_at(first.t, "registration.breached", {"outcome": final})
        corrected.after = retraction
        life.dependents.append(corrected)
    return day


def _apply_for_order(life: _Life, day: int, until: int, order_type: str) -> int | None:
    """Police application, sometimes an interim order, then the court's decision."""
    rng = life.rng
    code = {"SOPO": "SOPO", "FOREIGN_TRAVEL_ORDER": "FTO", "NOTIFICATION_ORDER": "NO"}[order_type]
    app = {"orderType": order_type, "applicationId": f"{code}/{life.ref}/{life.next_number()}"}
    life.emit(day, OFFICE, "order.applied", app)
    decision = day + rng.randint(21, 120)
    if decision >= until:
        return day  # undecided while the case is open
    if rng.random() < 0.25:
        life.emit(day + rng.randint(1, 20), COURT, "order.interim-granted", dict(app))
    outcome = _weighted(rng, (("granted", 0.75), ("refused", 0.17), ("withdrawn", 0.08)))
    if outcome == "granted":
        # SOPOs last at least five years; Foreign Travel Orders at most six months.
        expires = _add_years(decision, 5) if order_type == "SOPO" else decision + 182
        granted: Info = dict(app, expiresOn=_iso_day(expires))
        if order_type == "SOPO":
            granted["prohibitions"] = _prohibitions(rng)
            life.sopo_from = decision
        life.emit(decision, COURT, "order.granted", granted)
    elif outcome == "refused":
        life.emit(decision, COURT, "order.refused", dict(app))
    return day


def _sopo(life: _Life, day: int, until: int, on_licence: bool) -> int | None:
    return _apply_for_order(life, day, until, "SOPO")


def _fto(life: _Life, day: int, until: int, on_licence: bool) -> int | None:
    return _apply_for_order(life, day, until, "FOREIGN_TRAVEL_ORDER")


def _order_breach(life: _Life, day: int, until: int, on_licence: bool, order_type: str) -> int:
    rng = life.rng
    returned = rng.random() < 0.55 and until - day > 40
    info = {"orderType": order_type, "returnedToCustody": returned}
    life.emit(day, AM, "order.breached", info)
    if not returned:
        return day
    _receive(life, day, "breach")
    out = day + rng.randint(28, 300)
    if on_licence:
        return _rerelease(life, day, out, until)
    out = min(out, until - 1)
    info = {"releaseType": "end-of-sentence", "toBcu": life.bcu}
    life.emit(out, MORNING, "custody.released", info)
    return out


def _sopo_breach(life: _Life, day: int, until: int, on_licence: bool) -> int | None:
    return _order_breach(life, day, until, on_licence, "SOPO")


def _ro_breach(life: _Life, day: int, until: int, on_licence: bool) -> int | None:
    # Restraining orders protect victims of domestic violence, the commonest category 2/3 case.
    return _order_breach(life, day, until, on_licence, "RESTRAINING_ORDER")


def _bcu_move(life: _Life, day: int, until: int, on_licence: bool) -> int | None:
    choices = [b for b in life.world.bcus[life.area] if b != life.bcu]
    if choices:
        life.bcu = life.rng.choice(choices)
        info = {"toArea": life.area, "toBcu": life.bcu}
        life.emit(day, OFFICE, "mappa.area-transferred", info)
    return day


def _area_move(life: _Life, day: int, until: int, on_licence: bool) -> int | None:
    choices = [a for a in life.world.areas if a != life.area]
    life.area = life.rng.choice(choices)
    life.bcu = life.rng.choice(life.world.bcus[life.area])
    life.emit(day, OFFICE, "mappa.area-transferred", {"toArea": life.area, "toBcu": life.bcu})
    return day


def _level_review(life: _Life, day: int, until: int, on_licence: bool) -> int | None:
    """Cases come down as risk is managed; a few go up."""
    rng = life.rng
    if life.level == 3:
        new, reason = (2, "risk reduced") if rng.random() < 0.85 else (1, "risk reduced")
    elif life.level == 2:
        new, reason = (1, "risk reduced") if rng.random() < 0.8 else (3, "risk escalated")
    else:
        new, reason = 2, "risk escalated"
    life.level = new
    life.emit(day, OFFICE, "mappa.level-changed", {"level": new, "reason": reason})
    return day


_OFFENCES = (
    ("other", 0.35),
    ("rape", 0.15),
    ("other-very-serious", 0.12),
    ("attempted-murder", 0.08),
    ("arson-endangering-life", 0.08),
    ("kidnap-abduction", 0.08),
    ("murder", 0.05),
    ("significant-public-interest", 0.05),
    ("manslaughter", 0.04),
)


def _charge(life: _Life, day: int, until: int, on_licence: bool) -> int | None:
    """A further offence charged: serious ones mostly remanded in custody (a recall if on
    licence); conviction of a remanded charge keeps them in custody for the rest of the run."""
    rng = life.rng
    charge_id = f"CHG/{life.ref}/{life.next_number()}"
    offence = _weighted(rng, _OFFENCES)
    life.emit(day, AM, "offence.charged", {"chargeId": charge_id, "offence": offence})
    disposal = day + rng.randint(60, 400)
    life.settled = max(life.settled, disposal)
    if offence == "other" or rng.random() < 0.3:
        on_bail = (("convicted", 0.4), ("acquitted", 0.3), ("discontinued", 0.3))
        outcome = _weighted(rng, on_bail if offence == "other" else on_bail[1:])
        life.emit(disposal, COURT, "offence.disposed", {"chargeId": charge_id, "outcome": outcome})
        return day
    if on_licence:
        life.emit(day, PM, "licence.recalled", {"reason": "further-offence"})
    _receive(life, day, "recall" if on_licence else "remand")
    outcome = _weighted(
        rng, (("convicted", 0.6), ("acquitted", 0.2), ("discontinued", 0.15), ("other", 0.05))
    )
    life.emit(disposal, COURT, "offence.disposed", {"chargeId": charge_id, "outcome": outcome})
    if outcome == "convicted":
        life.emit(
            disposal, EVENING, "custody.received", {"prison": life.prison, "reason": "sentence"}
        )
        return None
    rtype = "licence" if on_licence and disposal < until else "other"
    life.emit(disposal, LATE_PM, "custody.released", {"releaseType": rtype, "toBcu": life.bcu})
    return disposal


def _death(life: _Life, day: int, until: int, on_licence: bool) -> int | None:
    _close(life, day, "deceased")
    return None


def _left(life: _Life, day: int, until: int, on_licence: bool) -> int | None:
    _close(life, day, "left-jurisdiction")
    return None


_HANDLERS: dict[str, Callable[[_Life, int, int, bool], int | None]] = {
    "recall": _recall,
    "vary": _vary_conditions,
    "reg-breach": _registration_breach,
    "sopo": _sopo,
    "fto": _fto,
    "sopo-breach": _sopo_breach,
    "ro-breach": _ro_breach,
    "bcu-move": _bcu_move,
    "area-move": _area_move,
    "level": _level_review,
    "charge": _charge,
    "death": _death,
    "left": _left,
}


# --- stage 5: closure ---------------------------------------------------------------------


def _close(life: _Life, day: int, reason: str) -> None:
    """Case closed. An offender who dies or leaves the jurisdiction has no further facts
    (pending court business lapses); otherwise closure waits for pending charges."""
    if reason in ("deceased", "left-jurisdiction"):
        _forget_after(life, day * DAY)
    else:
        day = max(day, life.settled + life.rng.randint(1, 14))
    if day < life.world.end:
        life.emit(day, (13 * 60, 17 * 60 + 59), "mappa.case-closed", {"reason": reason})


def _forget_after(life: _Life, cut: int) -> None:
    """Drop the facts drawn for after ``cut``, and any correction whose retraction went."""
    kept = {id(ev) for ev in life.events if ev.t < cut}
    for ev in life.dependents:  # drawing order: a retraction before the breach it corrects
        if ev.after is not None and id(ev.after) not in kept:
            kept.discard(id(ev))
    life.events = [ev for ev in life.events if id(ev) in kept]


def _end_registration(life: _Life, day: int) -> None:
    if day < life.world.end:
        life.registered = False
        life.emit(day, AM, "registration.ended")
        _close(life, day + life.rng.randint(0, 14), "registration-ended")


# --- whole lives --------------------------------------------------------------------------


def _draw_life(life: _Life) -> None:
    """One offender's story, by category and by how they enter."""
    p = life.profile
    if p.custodial:
        _custodial_life(life)
    elif life.cat == 1:
        _registered_in_community(life)
    else:
        _managed_in_community(life)
    _victims(life)
    _corrections(life)


def _custodial_life(life: _Life) -> None:
    rng, p = life.rng, life.profile
    d0 = p.day
    if not p.initial:
        _order_on_conviction(life, d0)
    _receive(life, d0, "sentence")
    # People already inside when the run starts have served part of their time.
    served = rng.random() if p.initial else 0.0
    plan = _serve_sentence(life, d0, p.months, served)
    after = plan.release
    if plan.licence_end is not None:
        ended = _serve_licence(life, plan.release, plan.licence_end)
        if ended is None:
            return
        after = ended
    _after_sentence(life, d0, after)


def _after_sentence(life: _Life, d0: int, after: int) -> None:
    rng = life.rng
    if life.cat == 2:
        # Category 2 offenders are in MAPPA while on licence.
        _close(life, after + rng.randint(1, 14), "licence-ended")
    elif life.cat == 3:
        until = after + rng.randint(180, 1000)
        if _incidents(life, after, until, on_licence=False) is not None:
            _close(life, until, "risk-reduced")
    else:
        reg_end = _period_end(d0, _registration_period(life.profile.months))
        until = max(reg_end, after + 1) if reg_end is not None else life.world.end + 1
        if _incidents(life, after, until, on_licence=False) is not None and reg_end is not None:
            _end_registration(life, until)


_PERIODS_AT_START = (
    ("P2Y", 0.08),
    ("P5Y", 0.32),
    ("P7Y", 0.1),
    ("P10Y", 0.25),
    ("indefinite", 0.25),
)


def _registered_in_community(life: _Life) -> None:
    """Registered sex offenders with a community sentence or caution, or (at the start of
    the run) already registered for some time."""
    rng, p = life.rng, life.profile
    d0 = p.day
    if p.initial:
        period = _weighted(rng, _PERIODS_AT_START)
        # Registered some time ago: the end of the period falls somewhere in the run.
        years = 0 if period == "indefinite" else int(period[1:-1])
        begun = d0 - rng.randint(0, max(0, years * 365 - 60))
        reg_end = _period_end(begun, period)
    elif d0 >= life.world.orders_from and rng.random() < 0.015:
        registered = _notification_order(life, d0)
        if registered is None:
            return
        d0, period = registered, rng.choice(("P7Y", "P10Y", "indefinite"))
        reg_end = _period_end(d0, period)
    else:
        period = "P2Y" if rng.random() < 0.2 else "P5Y"  # a caution, or a community sentence
        if period == "P5Y":
            _order_on_conviction(life, d0)
        reg_end = _period_end(d0, period)
    _start_registration(life, d0, period)
    if p.arrives:
        _area_move_home(life, d0 + rng.randint(1, 20))
    _assign_category(life, d0 + rng.randint(1, 20))
    _set_first_level(life, d0 + rng.randint(21, 40))
    until = max(reg_end, d0 + 60) if reg_end is not None else life.world.end + 1
    if _incidents(life, d0 + 40, until, on_licence=False) is not None and reg_end is not None:
        _end_registration(life, until)


def _notification_order(life: _Life, day: int) -> int | None:
    """Convicted of a sexual offence abroad: the police apply for a Notification Order, and
    registration follows the order. Returns the day registration starts, None if refused."""
    rng = life.rng
    life.victims = 0  # victims abroad are not in the scheme
    app = {"orderType": "NOTIFICATION_ORDER", "applicationId": f"NO/{life.ref}/1"}
    life.emit(day, OFFICE, "order.applied", app)
    decision = day + rng.randint(21, 90)
    if rng.random() < 0.15:
        life.emit(day + rng.randint(1, 20), COURT, "order.interim-granted", dict(app))
    if rng.random() < 0.1:
        life.emit(decision, COURT, "order.refused", dict(app))
        return None
    life.emit(decision, COURT, "order.granted", dict(app))
    return decision + 1


def _managed_in_community(life: _Life) -> None:
    """Category 3 (and the odd category 2) offenders managed for a risk, not a sentence."""
    rng = life.rng
    d0 = life.profile.day
    _assign_category(life, d0)
    _set_first_level(life, d0 + rng.randint(1, 14))
    if life.profile.arrives:
        _area_move_home(life, d0 + rng.randint(2, 13))
    until = d0 + rng.randint(180, 1100)
    if _incidents(life, d0 + 14, until, on_licence=False) is not None:
        _close(life, until, "risk-reduced")


def _area_move_home(life: _Life, day: int) -> None:
    life.area = life.world.home
    life.bcu = life.rng.choice(life.world.bcus[life.area])
    life.emit(day, OFFICE, "mappa.area-transferred", {"toArea": life.area, "toBcu": life.bcu})


# --- victims ------------------------------------------------------------------------------


def _victims(life: _Life) -> None:
    """Victims join the contact scheme after conviction, in time to hear about the release."""
    rng = life.rng
    if not life.victims or not life.events:
        return
    d0 = life.profile.day
    last = max((ev.t for ev in life.events if ev.etype != "record.retracted"), default=0) // DAY
    latest = life.first_notice - 5 if life.first_notice is not None else d0 + 120
    for _ in range(life.victims):
        day = d0 + rng.randint(10, max(10, min(150, latest - d0)))
        if day >= last:
            continue
        info: Info = {"victimRef": f"V-{rng.getrandbits(40):010X}", "vloRef": _vlo(life, rng)}
        if rng.random() < 0.35:
            info["wants"] = [k for k in ALERT_KINDS if rng.random() < 0.5] or ["released"]
        life.emit(day, OFFICE, "victim.enrolled", info)
        if rng.random() < 0.12 and last - day > 60:
            withdrawn = {"victimRef": info["victimRef"]}
            life.emit(rng.randint(day + 30, last - 1), OFFICE, "victim.withdrawn", withdrawn)


def _vlo(life: _Life, rng: _Rng) -> str:
    return f"VLO-{life.origin}-{rng.randint(1, VLO_COUNT.get(life.origin, 4)):02d}"


# --- corrections --------------------------------------------------------------------------

# Types whose retraction leaves the rest of the story coherent (no custody or licence state).
_RETRACTABLE = frozenset(
    {
        "mappa.level-changed",
        "release.notified",
        "licence.conditions-set",
        "custody.transferred",
        "custody.temporary-release",
        "registration.breached",
    }
)
_RETRACTION_REASONS = (
    "recorded in error",
    "entered against the wrong nominal",
    "duplicate of an earlier entry",
    "not confirmed by the originating agency",
)


def _retract(life: _Life, target: _Event, t: int, reason: str) -> _Event:
    info = {"eventId": target.eid, "reason": reason}
    retraction = life.emit_at(t, "record.retracted", info, agency=target.agency)
    retraction.after = target
    life.dependents.append(retraction)
    return retraction


def _corrections(life: _Life) -> None:
    """About 0.5% of events are retracted as recorded in error, besides breach outcomes."""
    rng = life.rng
    if rng.random() >= 0.005 * len(life.events):
        return
    corrected = {ev.after.eid for ev in life.dependents if ev.after is not None}
    candidates = [
        ev
        for ev in life.events
        if ev.etype in _RETRACTABLE and ev.eid not in corrected and ev.after is None
    ]
    if not candidates:
        return
    target = rng.choice(candidates)
    t = target.t + rng.randint(1, 60) * DAY
    t = t - t % DAY + rng.randint(*OFFICE)
    if t < life.world.end_t:
        _retract(life, target, t, rng.choice(_RETRACTION_REASONS))


# --- delivery -----------------------------------------------------------------------------

_LATE_SHARE = 0.02
_DUPLICATE_SHARE = 0.001
_INVALID_SHARE = 0.001


class _Delivery:
    """Turns lives into lines, each keyed by when the tracker would receive it."""

    def __init__(self, world: _World, seed: int, invalid_lines: bool) -> None:
        self.world = world
        self.clock = _Clock()
        self.invalid_lines = invalid_lines
        # Invalid lines come from their own stream so that the valid lines are the same
        # whether or not invalid ones are asked for.
        self.aux = _Rng(f"{seed}/invalid")
        self.resends = _Rng(f"{seed}/resend")
        self.out: list[tuple[int, int, str]] = []
        self.sources: dict[tuple[str, str, int], tuple[Info, str]] = {}
        self.invalid = 0
        self.duplicates = 0
        self.samples: list[tuple[int, Info, str]] = []  # a few valid lines, for top_up

    def source(self, agency: str, area: str, user: int) -> tuple[Info, str]:
        """The envelope's source (and its JSON): the agency's system and one of its users."""
        key = (agency, area, user)
        src = self.sources.get(key)
        if src is None:
            value = {"agency": agency, "system": SYSTEMS[agency], "user": f"{area}-{agency}-{user}"}
            src = self.sources[key] = (value, _ENCODE(value))
        return src

    def deliver(self, life: _Life) -> None:
        events = sorted(life.events, key=attrgetter("t"))
        _assign_areas(life, events)
        _assign_received(life, events)
        end_t = self.world.end_t
        for ev in events:
            if ev.t < end_t:
                self._line(life, ev)

    def _line(self, life: _Life, ev: _Event) -> None:
        rng = life.rng
        source, source_json = self.source(ev.agency, ev.area, life.officer)
        pref_json = life.refs_json.get(ev.agency) or life.refs_json[""]
        occurred = self.clock.iso(ev.t)
        # The envelope is assembled from parts that need no escaping (UUIDs, type names, ISO
        # times, area codes) and parts encoded once (source, personReference); only the facts
        # go through the encoder for every line. It is the hot path of a multi-million run.
        info_json = _ENCODE(ev.info) if ev.info else "{}"
        line = (
            f'{{"eventId":"{ev.eid}","eventType":"{ev.etype}","version":1,'
            f'"occurredAt":"{occurred}","source":{source_json},"personReference":{pref_json},'
            f'"area":"{ev.area}","additionalInformation":{info_json}}}'
        )
        out = self.out
        out.append((ev.recv, len(out), line))
        sample = len(self.samples) < 100
        # One draw decides both: resent (below _DUPLICATE_SHARE), an invalid line (next slice).
        r = rng.random()
        bad = _DUPLICATE_SHARE <= r < _DUPLICATE_SHARE + _INVALID_SHARE and self.invalid_lines
        if sample or bad:
            doc = {
                "eventId": ev.eid,
                "eventType": ev.etype,
                "version": 1,
                "occurredAt": occurred,
                "source": source,
                "personReference": json.loads(pref_json),
                "area": ev.area,
                "additionalInformation": ev.info,
            }
            if sample:
                self.samples.append((ev.recv, doc, line))
            if bad:
                self.add_invalid(doc, ev.recv)
        if r < _DUPLICATE_SHARE:
            self.resend(line, ev.recv, rng)

    def resend(self, line: str, recv: int, rng: _Rng) -> None:
        self.duplicates += 1
        self.out.append((recv + rng.randint(1, 3 * DAY), len(self.out), line))

    def add_invalid(self, doc: Info, recv: int) -> None:
        self.invalid += 1
        line = _invalid_line(dict(doc), self.aux)
        self.out.append((recv + self.aux.randint(1, 600), len(self.out), line))

    def top_up(self, offenders: int) -> None:
        """A few duplicates and (if asked) invalid lines even in small files, so that every
        file of 100 or more offenders exercises those paths."""
        if offenders < 100 or not self.samples:
            return
        while self.duplicates < 2:
            recv, _, line = self.resends.choice(self.samples)
            self.resend(line, recv, self.resends)
        while self.invalid_lines and self.invalid < 3:
            recv, doc, _ = self.aux.choice(self.samples)
            self.add_invalid(doc, recv)


def _assign_areas(life: _Life, events: list[_Event]) -> None:
    """The sender's area is the responsible area then: the first event's, changed by area
    transfers and by releases to another area (after the event that moves it)."""
    area = life.origin
    for ev in events:
        ev.area = area
        if ev.etype == "mappa.area-transferred":
            area = ev.info["toArea"]
        elif ev.etype == "custody.released":
            area = ev.info.get("toArea", area)


def _assign_received(life: _Life, events: list[_Event]) -> None:
    """Most feeds deliver within the hour or in the next day's batch; about 2% arrive weeks
    or months late. Retractions arrive after their targets."""
    rng = life.rng
    late = _LATE_SHARE
    for ev in events:
        # One draw picks both the kind of delay and its length (uniform within the kind).
        r = rng.random()
        if r < late:
            ev.recv = ev.t + 14 * DAY + int(r / late * 136 * DAY)
        elif r < 0.8:
            ev.recv = ev.t + 1 + int((r - late) / (0.8 - late) * 89)
        else:
            ev.recv = ev.t + 90 + int((r - 0.8) / 0.2 * (2 * DAY - 90))
    for ev in life.dependents:  # in drawing order: a retraction before the fact it corrects
        if ev.after is not None:
            ev.recv = max(ev.recv, ev.after.recv + rng.randint(1, 240))


def _invalid_line(doc: Info, rng: _Rng) -> str:
    """A line that does not conform, of one of several kinds, with a fresh eventId."""
    doc["eventId"] = rng.uuid()
    kind = rng.randrange(6)
    if kind == 0:  # cut off in transmission: not JSON
        text = _ENCODE(doc)
        return text[: rng.randint(10, len(text) - 2)]
    if kind == 1:
        del doc["occurredAt"]
    elif kind == 2:
        doc["eventType"] = rng.choice(("custody.teleported", "registration.paused", "mappa.note"))
    elif kind == 3:
        doc["eventType"], doc["additionalInformation"] = "mappa.level-changed", {"level": 4}
    elif kind == 4:
        doc["occurredAt"] = doc["occurredAt"][:19]  # no UTC offset
    else:
        doc["personReference"] = {"identifiers": []}  # no MAPPA reference
    return _ENCODE(doc)


# --- public API ---------------------------------------------------------------------------


def generate_history(
    area: str,
    first_year: int,
    last_year: int,
    offenders: int,
    seed: int,
    invalid_lines: bool = True,
    national: bool = False,
) -> list[str]:
    """Lines of an interchange .jsonl file (no trailing newlines), in the order an agency feed
    would deliver them.

    ``area`` is the home area (a key of :data:`AREA_BCUS`, or with ``national`` any of
    :func:`national_areas`); the run covers the reporting years ``first_year`` to
    ``last_year`` (1 April ``first_year`` to 31 March ``last_year + 1``). ``offenders`` people
    are followed, about 30% of them already known at the start, the rest entering evenly over
    the run. With ``invalid_lines`` about 0.1% extra lines that do not conform are inserted
    (at least three in a file of 100 or more offenders); the valid lines are the same either
    way. The same arguments always give the same lines. An area outside the three seed areas
    implies ``national``: people then arrive from and move to any of the 42 areas.
    """
    national = national or area not in AREA_BCUS
    _check(area, first_year, last_year, offenders, national)
    world = _World(area, first_year, last_year, national)
    with _no_cyclic_gc():
        return [line for _, _, line in _generate(world, offenders, seed, invalid_lines)]


def _check(area: str, first_year: int, last_year: int, offenders: int, national: bool) -> None:
    known = NATIONAL_AREAS if national else AREA_BCUS
    if area not in known:
        raise ValueError(f"unknown area {area!r}: expected one of {', '.join(known)}")
    if first_year > last_year:
        raise ValueError(f"first year {first_year} is after last year {last_year}")
    if offenders < 0:
        raise ValueError("offenders must not be negative")


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    # Millions of small objects that all live until the end: the cyclic garbage collector
    # would walk them again and again for nothing (none of them form cycles that matter).
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _generate(
    world: _World, offenders: int, seed: int, invalid_lines: bool, first_number: int = 1
) -> list[tuple[int, int, str]]:
    """(received, tiebreak, line) of every line, sorted: the order of delivery."""
    master = _Rng(seed)
    profiles = [_Profile(world, master) for _ in range(offenders)]
    # References are numbered in order of entry, as a register would number them.
    order = sorted(range(offenders), key=lambda i: (profiles[i].day, i))
    delivery = _Delivery(world, seed, invalid_lines)
    for number, index in enumerate(order, start=first_number):
        life = _Life(world, profiles[index], number)
        _draw_life(life)
        delivery.deliver(life)
    delivery.top_up(offenders)
    delivery.out.sort()
    return delivery.out


def write_history(
    path: pathlib.Path,
    area: str,
    first_year: int,
    last_year: int,
    offenders: int,
    seed: int,
    invalid_lines: bool = True,
) -> int:
    """Write :func:`generate_history`'s lines to ``path`` (UTF-8, one per line); returns how
    many lines were written."""
    lines = generate_history(area, first_year, last_year, offenders, seed, invalid_lines)
    with pathlib.Path(path).open("w", encoding="utf-8", newline="\n") as handle:
        for start in range(0, len(lines), 10_000):
            handle.write("\n".join(lines[start : start + 10_000]))
            handle.write("\n")
    return len(lines)


# --- national scale -----------------------------------------------------------------------


def national_shares(offenders: int) -> dict[str, int]:
    """How many of ``offenders`` each of the 42 areas follows: in proportion to population
    (largest remainders, so the shares add up exactly and are the same on every run)."""
    total = sum(population for _, population in NATIONAL_AREAS.values())
    exact = {code: offenders * pop / total for code, (_, pop) in NATIONAL_AREAS.items()}
    shares = {code: int(value) for code, value in exact.items()}
    by_remainder = sorted(exact, key=lambda code: (shares[code] - exact[code], code))
    for code in by_remainder[: offenders - sum(shares.values())]:
        shares[code] += 1
    return shares


def generate_national_history(
    first_year: int, last_year: int, offenders: int, seed: int, invalid_lines: bool = True
) -> Iterator[str]:
    """The lines of a national history (all 42 areas), in delivery order, one at a time.

    ``offenders`` are shared out over the areas by population; each area's history is drawn
    as :func:`generate_history` draws one (with its own seed derived from ``seed``), and the
    areas' feeds are merged by the moment each line is received. References are numbered
    nationally (``LON-000001`` and ``WM-000001`` are never both used), so that an offender who
    arrives from another area never shares a reference with that area's own offenders. Memory
    stays bounded by the largest area: each area is drawn, spilled to a temporary file and
    then merged from the files.
    """
    for area in NATIONAL_AREAS:
        _check(area, first_year, last_year, offenders, national=True)
    with tempfile.TemporaryDirectory(prefix="mappa-national-") as scratch:
        spills: list[pathlib.Path] = []
        number = 1
        for index, (area, count) in enumerate(national_shares(offenders).items()):
            world = _World(area, first_year, last_year, national=True)
            area_seed = zlib.crc32(f"{seed}/{area}".encode())
            with _no_cyclic_gc():
                delivered = _generate(world, count, area_seed, invalid_lines, number)
            number += count
            spill = pathlib.Path(scratch) / f"{index:02d}-{area}.tsv"
            with spill.open("w", encoding="utf-8", newline="\n") as handle:
                handle.writelines(f"{received}\t{line}\n" for received, _, line in delivered)
            del delivered
            spills.append(spill)
        handles = [spill.open(encoding="utf-8", newline="\n") for spill in spills]
        try:
            # heapq.merge is stable: lines received at the same minute keep the areas' order.
            merged = heapq.merge(*(_spilled(handle) for handle in handles), key=itemgetter(0))
            for _, line in merged:
                yield line
        finally:
            for handle in handles:
                handle.close()


def _spilled(handle: Iterable[str]) -> Iterator[tuple[int, str]]:
    for row in handle:
        received, line = row.rstrip("\n").split("\t", 1)
        yield int(received), line


def write_national_history(
    path: pathlib.Path,
    first_year: int,
    last_year: int,
    offenders: int,
    seed: int,
    invalid_lines: bool = True,
) -> int:
    """Write :func:`generate_national_history`'s lines to ``path`` (UTF-8, one per line), as
    they are produced; returns how many lines were written."""
    count = 0
    with pathlib.Path(path).open("w", encoding="utf-8", newline="\n") as handle:
        for line in generate_national_history(
            first_year, last_year, offenders, seed, invalid_lines
        ):
            handle.write(line)
            handle.write("\n")
            count += 1
    return count
