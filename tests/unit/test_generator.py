"""The history generator: deterministic, contract-conforming, coherent and realistic."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from datetime import date, datetime
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from infra.generator import AREA_BCUS, EVENT_TYPES, generate_history, write_history

LONDON = ZoneInfo("Europe/London")
AGENCIES = {
    "prison",
    "probation",
    "police",
    "court",
    "youth-offending",
    "victim-liaison",
    "mappa-coordinator",
}
REFERENCE = re.compile(r"^[A-Z]{2,4}-\d{6}$")
OFFSET = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")
DAY = re.compile(r"^\d{4}-\d\d-\d\d$")
ORDER_TYPES = {"SOPO", "NOTIFICATION_ORDER", "FOREIGN_TRAVEL_ORDER"}
RELEASE_TYPES = {"licence", "parole-licence", "end-of-sentence", "other"}
ALERT_KINDS = {
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
}
CONDITION_CODES = {
    "exclusion-zone",
    "non-contact",
    "residence",
    "curfew",
    "electronic-monitoring",
    "programme",
    "disclosure-of-relationships",
    "other",
}
SERIOUS = {
    "murder",
    "attempted-murder",
    "arson-endangering-life",
    "manslaughter",
    "rape",
    "kidnap-abduction",
    "other-very-serious",
    "significant-public-interest",
}

# Required additionalInformation fields per type, with the values allowed (None: any
# non-empty value; a callable: a check).
Rule = Any
REQUIRED: dict[str, dict[str, Rule]] = {
    "mappa.category-assigned": {"category": {1, 2, 3}},
    "mappa.level-changed": {"level": {1, 2, 3}},
    "mappa.area-transferred": {"toArea": set(AREA_BCUS)},
    "mappa.case-closed": {
        "reason": {
            "registration-ended",
            "licence-ended",
            "order-ended",
            "deceased",
            "risk-reduced",
            "left-jurisdiction",
            "other",
        }
    },
    "registration.started": {"period": {"P2Y", "P5Y", "P7Y", "P10Y", "indefinite"}},
    "registration.breached": {"outcome": {"caution", "conviction", "no-further-action", "pending"}},
    "registration.ended": {},
    "order.applied": {"orderType": ORDER_TYPES, "applicationId": None},
    "order.interim-granted": {"orderType": ORDER_TYPES, "applicationId": None},
    "order.granted": {"orderType": ORDER_TYPES},
    "order.refused": {"orderType": ORDER_TYPES, "applicationId": None},
    "order.breached": {
        "orderType": ORDER_TYPES | {"RESTRAINING_ORDER"},
        "returnedToCustody": {True, False},
    },
    "custody.received": {
        "prison": None,
        "reason": {"remand", "sentence", "recall", "breach", "other"},
    },
    "custody.transferred": {"fromPrison": None, "toPrison": None},
    "release.notified": {"expectedReleaseDate": DAY.match, "releaseType": RELEASE_TYPES},
    "custody.released": {"releaseType": RELEASE_TYPES},
    "custody.temporary-release": {
        "purpose": {"work-placement", "other"},
        "from": DAY.match,
        "to": DAY.match,
    },
    "custody.absconded": {},
    "parole.decided": {"outcome": {"release-directed", "release-refused", "open-conditions"}},
    "sentence.varied": {"reason": {"appeal", "other"}},
    "licence.conditions-set": {"conditions": lambda c: isinstance(c, list) and len(c) > 0},
    "licence.recalled": {"reason": {"breach-of-conditions", "further-offence", "other"}},
    "licence.ended": {},
    "offence.charged": {"chargeId": None, "offence": SERIOUS | {"other"}},
    "offence.disposed": {
        "chargeId": None,
        "outcome": {"convicted", "acquitted", "discontinued", "other"},
    },
    "victim.enrolled": {"victimRef": None, "vloRef": None},
    "victim.withdrawn": {"victimRef": None},
    "record.retracted": {"eventId": None, "reason": None},
}


def problem(line: str) -> str | None:
    """Why a line does not conform to the interchange format, or None when it does."""
    try:
        doc = json.loads(line)
    except json.JSONDecodeError:
        return "not JSON"
    if not isinstance(doc, dict):
        return "not an object"
    for field in ("eventId", "eventType", "version", "occurredAt", "source", "personReference"):
        if field not in doc:
            return f"missing {field}"
    if doc["eventType"] not in EVENT_TYPES or doc["eventType"] not in REQUIRED:
        return "unknown eventType"
    if doc["version"] != 1 or str(uuid.UUID(doc["eventId"])) != doc["eventId"]:
        return "bad version or eventId"
    if not OFFSET.match(doc["occurredAt"]):
        return "occurredAt without offset"
    if doc["source"].get("agency") not in AGENCIES or doc.get("area") not in AREA_BCUS:
        return "bad source or area"
    refs = [i for i in doc["personReference"]["identifiers"] if i["type"] == "MAPPA"]
    if len(refs) != 1 or not REFERENCE.match(refs[0]["value"]):
        return "not exactly one MAPPA reference"
    return info_problem(doc["eventType"], doc.get("additionalInformation", {}))


def info_problem(event_type: str, info: dict[str, Any]) -> str | None:
    for field, rule in REQUIRED[event_type].items():
        if field not in info:
            return f"{event_type} without {field}"
        value = info[field]
        ok = bool(value) if rule is None else rule(value) if callable(rule) else value in rule
        if not ok:
            return f"{event_type} with bad {field} {value!r}"
    for field in ("bcu", "toBcu"):
        if field in info and info[field] not in {b for bs in AREA_BCUS.values() for b in bs}:
            return f"unknown BCU {info[field]!r}"
    for condition in info.get("conditions", []):
        if condition["code"] not in CONDITION_CODES or not isinstance(
            condition["protectsVictim"], bool
        ):
            return "bad licence condition"
    if not set(info.get("wants", [])) <= ALERT_KINDS:
        return "unknown alert kind"
    return None


@cache
def history(offenders: int = 200, seed: int = 7, invalid_lines: bool = True) -> tuple[str, ...]:
    return tuple(generate_history("WM", 2001, 2009, offenders, seed, invalid_lines))


@cache
def documents(offenders: int = 200, seed: int = 7) -> tuple[dict[str, Any], ...]:
    """The valid documents of a history, first copies only, with their line number."""
    docs, seen = [], set()
    for number, line in enumerate(history(offenders, seed)):
        if problem(line) is None:
            doc = json.loads(line)
            if doc["eventId"] not in seen:
                seen.add(doc["eventId"])
                doc["_line"] = number
                doc["_at"] = datetime.fromisoformat(doc["occurredAt"])
                docs.append(doc)
    return tuple(docs)


def reference(doc: dict[str, Any]) -> str:
    return next(i["value"] for i in doc["personReference"]["identifiers"] if i["type"] == "MAPPA")


def stories(offenders: int = 200, seed: int = 7) -> dict[str, list[dict[str, Any]]]:
    """Each offender's documents in occurredAt order (file order for the same instant)."""
    by_offender: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for doc in documents(offenders, seed):
        by_offender[reference(doc)].append(doc)
    for docs in by_offender.values():
        docs.sort(key=lambda d: (d["_at"], d["_line"]))
    return by_offender


# --- determinism --------------------------------------------------------------------------


def test_same_seed_gives_identical_lines() -> None:
    assert generate_history("WM", 2001, 2009, 200, 7) == list(history())


def test_different_seeds_give_different_lines() -> None:
    other = generate_history("WM", 2001, 2009, 200, 8)
    assert other != list(history())
    assert not set(other) & set(history())


def test_another_process_with_another_hash_seed_gives_identical_lines() -> None:
    script = (
        "import hashlib; from infra.generator import generate_history; "
        "print(hashlib.sha256('\\n'.join(generate_history('WM', 2001, 2009, 200, 7))"
        ".encode()).hexdigest())"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    expected = hashlib.sha256("\n".join(history()).encode()).hexdigest()
    assert result.stdout.strip() == expected


# --- the contract -------------------------------------------------------------------------


def test_every_line_without_invalid_lines_conforms_to_the_contract() -> None:
    lines = history(invalid_lines=False)
    assert lines
    assert [(n, problem(line)) for n, line in enumerate(lines) if problem(line)] == []


def test_every_valid_line_is_an_envelope_with_one_mappa_reference_and_an_offset() -> None:
    for doc in documents():
        assert set(doc) >= {"eventId", "eventType", "version", "occurredAt", "source", "area"}
        assert doc["eventType"] in EVENT_TYPES
        mappa = [i for i in doc["personReference"]["identifiers"] if i["type"] == "MAPPA"]
        assert len(mappa) == 1
        assert doc["_at"].utcoffset() is not None


def test_occurred_at_carries_the_offset_in_force_in_london() -> None:
    offsets: Counter[str] = Counter()
    for doc in documents():
        at = doc["_at"]
        assert at.utcoffset() == at.astimezone(LONDON).utcoffset(), doc["occurredAt"]
        offsets[doc["occurredAt"][-6:]] += 1
    assert set(offsets) == {"+00:00", "+01:00"}


def test_events_occur_inside_the_reporting_years() -> None:
    start = datetime(2001, 4, 1, tzinfo=LONDON)
    end = datetime(2010, 4, 1, tzinfo=LONDON)
    assert all(start <= doc["_at"] < end for doc in documents())


def test_each_agency_sends_its_own_event_types() -> None:
    agency = {doc["eventType"]: doc["source"]["agency"] for doc in documents()}
    assert agency["custody.released"] == "prison"
    assert agency["licence.conditions-set"] == "probation"
    assert agency["registration.started"] == "police"
    assert agency["victim.enrolled"] == "victim-liaison"
    assert agency["mappa.level-changed"] == "mappa-coordinator"


def test_registration_periods_are_the_statutory_lengths() -> None:
    periods = {
        doc["additionalInformation"]["period"]
        for doc in documents()
        if doc["eventType"] == "registration.started"
    }
    assert periods <= {"P2Y", "P5Y", "P7Y", "P10Y", "indefinite"}
    assert {"P10Y", "indefinite"} <= periods


def test_unknown_area_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown area"):
        generate_history("XX", 2001, 2009, 10, 1)


# --- invalid lines, duplicates ------------------------------------------------------------


def test_invalid_lines_are_present_and_do_not_conform() -> None:
    invalid = [line for line in history() if problem(line) is not None]
    assert len(invalid) >= 3


def test_invalid_lines_are_extra_lines_that_replace_nothing() -> None:
    with_invalid = history()
    without = history(invalid_lines=False)
    assert [line for line in with_invalid if problem(line) is None] == list(without)
    assert len(with_invalid) > len(without)


def test_invalid_lines_are_of_several_kinds() -> None:
    kinds = Counter(problem(line) for line in history(2000, 3) if problem(line) is not None)
    assert len(kinds) >= 3
    assert 0.0003 < sum(kinds.values()) / len(history(2000, 3)) < 0.004


def test_no_invalid_lines_when_not_asked() -> None:
    assert all(problem(line) is None for line in history(invalid_lines=False))


def test_some_lines_are_resent_as_exact_duplicates() -> None:
    counts = Counter(line for line in history() if problem(line) is None)
    assert any(count > 1 for count in counts.values())
    ids = Counter(json.loads(line)["eventId"] for line in counts)
    assert all(count == 1 for count in ids.values())  # a resend is the same line, never a clash


# --- delivery order -----------------------------------------------------------------------


def test_most_lines_arrive_in_order_and_about_two_percent_late() -> None:
    latest, late, docs = None, 0, documents()
    for doc in docs:
        if latest is not None and (latest - doc["_at"]).days > 7:
            late += 1
        latest = doc["_at"] if latest is None or doc["_at"] > latest else latest
    assert 0.005 < late / len(docs) < 0.05


def test_retractions_name_earlier_events_of_the_same_offender() -> None:
    docs = documents()
    by_id = {doc["eventId"]: doc for doc in docs}
    retractions = [doc for doc in docs if doc["eventType"] == "record.retracted"]
    assert 0.002 < len(retractions) / len(docs) < 0.02
    for retraction in retractions:
        target = by_id[retraction["additionalInformation"]["eventId"]]
        assert reference(target) == reference(retraction)
        assert target["_at"] <= retraction["_at"]
        assert target["_line"] < retraction["_line"]
        assert target["eventType"] != "record.retracted"


def test_pending_breach_outcomes_are_corrected_at_the_same_occurred_at() -> None:
    docs = documents(2000, 3)
    by_id = {doc["eventId"]: doc for doc in docs}
    corrected = 0
    for doc in docs:
        if doc["eventType"] != "record.retracted":
            continue
        target = by_id[doc["additionalInformation"]["eventId"]]
        if target["additionalInformation"].get("outcome") != "pending":
            continue
        later = [
            d
            for d in docs
            if d["eventType"] == "registration.breached"
            and d["occurredAt"] == target["occurredAt"]
            and d["eventId"] != target["eventId"]
            and reference(d) == reference(target)
        ]
        assert later and later[0]["_line"] > doc["_line"]
        corrected += 1
    assert corrected > 0


# --- coherence of each life ---------------------------------------------------------------


def test_releases_follow_receptions_and_recalls_follow_releases_on_licence() -> None:
    for ref, docs in stories(2000, 3).items():
        in_custody, on_licence = False, False
        for doc in docs:
            kind, info = doc["eventType"], doc["additionalInformation"]
            if kind == "custody.received":
                in_custody, on_licence = True, False
            elif kind == "custody.released":
                assert in_custody, f"{ref}: released at {doc['occurredAt']} while not in custody"
                in_custody = False
                on_licence = info["releaseType"] in {"licence", "parole-licence"}
            elif kind == "licence.recalled":
                assert on_licence and not in_custody, f"{ref}: recalled when not on licence"
                in_custody, on_licence = True, False
            elif kind == "licence.ended":
                on_licence = False
            elif kind == "order.breached" and info["returnedToCustody"]:
                in_custody = True
            elif kind in {"custody.transferred", "release.notified", "parole.decided"}:
                assert in_custody, f"{ref}: {kind} at {doc['occurredAt']} while not in custody"


def test_each_offender_starts_with_a_conviction_or_eligibility_and_ends_at_most_once() -> None:
    firsts = {"custody.received", "order.granted", "order.applied", "registration.started"}
    for ref, docs in stories(2000, 3).items():
        assert docs[0]["eventType"] in firsts | {"mappa.category-assigned"}, ref
        closures = [d for d in docs if d["eventType"] == "mappa.case-closed"]
        assert len(closures) <= 1, ref
        if closures:
            after = docs[docs.index(closures[0]) + 1 :]
            assert {d["eventType"] for d in after} <= {"record.retracted"}, ref


def test_sender_area_follows_transfers_and_releases_to_another_area() -> None:
    for docs in stories().values():
        area = docs[0]["area"]
        for doc in docs:
            assert doc["area"] == area
            info = doc["additionalInformation"]
            if doc["eventType"] == "mappa.area-transferred":
                area = info["toArea"]
            elif doc["eventType"] == "custody.released":
                area = info.get("toArea", area)


def test_granted_applications_were_applied_for_first() -> None:
    for docs in stories(2000, 3).values():
        applied: set[str] = set()
        for doc in docs:
            info = doc["additionalInformation"]
            if doc["eventType"] == "order.applied":
                applied.add(info["applicationId"])
            elif doc["eventType"].startswith("order.") and "applicationId" in info:
                assert info["applicationId"] in applied


def test_charges_are_disposed_after_they_are_made() -> None:
    for docs in stories(2000, 3).values():
        charged: set[str] = set()
        for doc in docs:
            if doc["eventType"] == "offence.charged":
                charged.add(doc["additionalInformation"]["chargeId"])
            elif doc["eventType"] == "offence.disposed":
                assert doc["additionalInformation"]["chargeId"] in charged


# --- realism ------------------------------------------------------------------------------


def first_levels(offenders: int, seed: int) -> Counter[int]:
    levels: Counter[int] = Counter()
    for docs in stories(offenders, seed).values():
        for doc in docs:
            if doc["eventType"] == "mappa.level-changed":
                levels[doc["additionalInformation"]["level"]] += 1
                break
    return levels


def test_about_seventy_percent_of_offenders_with_a_level_are_at_level_1() -> None:
    levels = first_levels(2000, 3)
    total = sum(levels.values())
    assert 0.62 < levels[1] / total < 0.78
    assert 0.18 < levels[2] / total < 0.32
    assert 0.02 < levels[3] / total < 0.10


def test_levels_change_over_time() -> None:
    changes = Counter(
        sum(1 for d in docs if d["eventType"] == "mappa.level-changed") > 1
        for docs in stories().values()
    )
    assert changes[True] > 10


def test_every_31_march_has_registered_offenders_in_the_community() -> None:
    snapshots = {year: datetime(year + 1, 4, 1, tzinfo=LONDON) for year in range(2001, 2010)}
    counts: Counter[int] = Counter()
    for docs in stories(2000, 3).values():
        for year, moment in snapshots.items():
            registered = in_custody = False
            area = docs[0]["area"]
            for doc in (d for d in docs if d["_at"] < moment):
                kind = doc["eventType"]
                registered = (registered or kind == "registration.started") and kind not in {
                    "registration.ended",
                    "mappa.case-closed",
                }
                if kind in {"custody.received", "licence.recalled"}:
                    in_custody = True
                elif kind == "custody.released":
                    in_custody = False
                    area = doc["additionalInformation"].get("toArea", area)
                elif kind == "mappa.area-transferred":
                    area = doc["additionalInformation"]["toArea"]
            counts[year] += registered and not in_custody and area == "WM"
    # 2,000 people over nine years is about West Mercia's scale: 689 RSOs in 2005.
    assert all(100 < counts[year] < 600 for year in snapshots), counts
    assert counts[2009] >= counts[2001]


def test_the_history_has_every_kind_of_fact_the_figures_need() -> None:
    kinds = Counter(doc["eventType"] for doc in documents(2000, 3))
    assert EVENT_TYPES - set(kinds) == set()
    small = Counter(doc["eventType"] for doc in documents())
    assert EVENT_TYPES - set(small) <= {
        "custody.absconded",
        "offence.charged",
        "offence.disposed",
        "order.refused",
        "order.interim-granted",
        "order.applied",
    }


def test_there_are_area_transfers_sopos_on_conviction_and_enrolled_victims() -> None:
    docs = documents()
    transfers = [d for d in docs if d["eventType"] == "mappa.area-transferred"]
    assert any(d["additionalInformation"]["toArea"] == d["area"] for d in transfers)  # BCU
    releases = [d for d in docs if d["eventType"] == "custody.released"]
    assert any(
        d["additionalInformation"].get("toArea", d["area"]) != d["area"]
        for d in transfers + releases
    )
    sopos = [
        d
        for d in docs
        if d["eventType"] == "order.granted" and d["additionalInformation"]["orderType"] == "SOPO"
    ]
    on_conviction = [d for d in sopos if "applicationId" not in d["additionalInformation"]]
    assert on_conviction and all(d["additionalInformation"]["prohibitions"] for d in on_conviction)
    assert all(d["_at"].date() >= date(2004, 5, 1) for d in sopos)  # Sexual Offences Act 2003
    victims = [d for d in docs if d["eventType"] == "victim.enrolled"]
    assert any("wants" in d["additionalInformation"] for d in victims)
    assert any("wants" not in d["additionalInformation"] for d in victims)
    assert all(d["additionalInformation"]["vloRef"].startswith("VLO-") for d in victims)


def test_about_forty_percent_of_category_1_and_2_offenders_have_victims_enrolled() -> None:
    with_victims = eligible = 0
    for docs in stories(2000, 3).values():
        categories = {
            d["additionalInformation"]["category"]
            for d in docs
            if d["eventType"] == "mappa.category-assigned"
        }
        if categories & {1, 2}:
            eligible += 1
            with_victims += any(d["eventType"] == "victim.enrolled" for d in docs)
    assert 0.3 < with_victims / eligible < 0.5


def test_some_release_notices_are_late_and_some_dates_change() -> None:
    late = changed = 0
    for docs in stories(2000, 3).values():
        notices = [d for d in docs if d["eventType"] == "release.notified"]
        for notice in notices:
            expected = date.fromisoformat(notice["additionalInformation"]["expectedReleaseDate"])
            late += (expected - notice["_at"].astimezone(LONDON).date()).days < 42
        dates = [n["additionalInformation"]["expectedReleaseDate"] for n in notices]
        changed += any(a != b for a, b in pairwise(dates))
    assert late > 10
    assert changed > 10


# --- writing ------------------------------------------------------------------------------


def test_write_history_writes_one_line_per_document(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    count = write_history(path, "WM", 2001, 2009, 200, 7)
    text = path.read_text(encoding="utf-8")
    assert count == len(history())
    assert text.endswith("\n")
    assert text.splitlines() == list(history())


def test_other_areas_use_their_own_bcus_and_references() -> None:
    for area in ("DUR", "GLO"):
        lines = generate_history(area, 2005, 2006, 100, 1, invalid_lines=False)
        docs = [json.loads(line) for line in lines]
        home = [d for d in docs if reference(d).startswith(area + "-")]
        assert len(home) > len(docs) / 2
        bcus = {
            d["additionalInformation"]["bcu"]
            for d in home
            if d["eventType"] == "registration.started" and d["area"] == area
        }
        assert bcus and bcus <= set(AREA_BCUS[area])


def test_some_offenders_are_recalled_twice_and_rarer_facts_occur_in_a_larger_history() -> None:
    recalls = Counter(
        sum(1 for d in docs if d["eventType"] == "licence.recalled")
        for docs in stories(2000, 3).values()
    )
    assert any(count >= 2 for count in recalls.elements())
    kinds = Counter(doc["eventType"] for doc in documents(2000, 3))
    assert kinds["custody.absconded"] > 0
    assert kinds["offence.charged"] > 0
    assert kinds["sentence.varied"] > 0
    orders = Counter(
        doc["additionalInformation"]["orderType"]
        for doc in documents(2000, 3)
        if doc["eventType"].startswith("order.")
    )
    assert orders["SOPO"] > orders["RESTRAINING_ORDER"] > 0
    assert orders["NOTIFICATION_ORDER"] + orders["FOREIGN_TRAVEL_ORDER"] > 0
