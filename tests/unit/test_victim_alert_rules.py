"""The victim-alert rules (victim-alerts.md), on offender histories of fact documents."""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.victim_alerts.rules import (
    ALERT_ID_NAMESPACE,
    ALERT_KINDS,
    CORRECTION,
    LATE_RELEASE_NOTICE,
    Alert,
    CalendarDay,
    Duration,
    LeadTimes,
    Owing,
    _for_people,
    add_duration,
    alert_id_for,
    alert_uuid,
    correction_id_for,
    derive_alerts,
    fact_of,
    parse_duration,
    plan_alerts,
)

OFFENDER = "WM-000123"
T0 = datetime(2005, 1, 10, 9, 0, tzinfo=UTC)
Doc = dict[str, Any]


def at(days: float) -> datetime:
    return T0 + timedelta(days=days)


def fact(
    event_type: str,
    occurred: datetime | str,
    info: Mapping[str, Any] | None = None,
    *,
    recorded: datetime | None = None,
    event_id: str | None = None,
    area: str = "WM",
) -> Doc:
    occurred_at = occurred if isinstance(occurred, str) else occurred.isoformat()
    recorded_at = recorded or datetime.fromisoformat(occurred_at).astimezone(UTC)
    return {
        "eventId": event_id or str(uuid.uuid4()),
        "eventType": event_type,
        "version": 1,
        "occurredAt": occurred_at,
        "source": {"agency": "probation"},
        "personReference": {"identifiers": [{"type": "MAPPA", "value": OFFENDER}]},
        "area": area,
        "additionalInformation": dict(info or {}),
        "recordedAt": recorded_at.isoformat(),
    }


def enrolled(
    occurred: datetime,
    victim: str = "V-1",
    vlo: str = "VLO-A",
    wants: list[str] | None = None,
    **kwargs: Any,
) -> Doc:
    info: dict[str, Any] = {"victimRef": victim, "vloRef": vlo}
    if wants is not None:
        info["wants"] = wants
    return fact("victim.enrolled", occurred, info, **kwargs)


def withdrawn(occurred: datetime, victim: str = "V-1", **kwargs: Any) -> Doc:
    return fact("victim.withdrawn", occurred, {"victimRef": victim}, **kwargs)


def retraction(target: Doc, occurred: datetime, **kwargs: Any) -> Doc:
    info = {"eventId": target["eventId"], "reason": "recorded in error"}
    return fact("record.retracted", occurred, info, **kwargs)


def notice(occurred: datetime | str, expected: str, **kwargs: Any) -> Doc:
    info = {"expectedReleaseDate": expected, "releaseType": "licence"}
    return fact("release.notified", occurred, info, **kwargs)


def level(occurred: datetime | str, value: int, **kwargs: Any) -> Doc:
    return fact("mappa.level-changed", occurred, {"level": value}, **kwargs)


# One triggering event per alert kind.
TRIGGERS: dict[str, tuple[str, dict[str, Any]]] = {
    "release-due": (
        "release.notified",
        {"expectedReleaseDate": "2005-06-01", "releaseType": "licence"},
    ),
    "released": ("custody.released", {"releaseType": "licence"}),
    "licence-conditions": (
        "licence.conditions-set",
        {
            "conditions": [
                {"code": "non-contact", "text": "No contact with V", "protectsVictim": True}
            ]
        },
    ),
    "recalled": ("licence.recalled", {"reason": "breach-of-conditions"}),
    "sentence-reduced": (
        "sentence.varied",
        {"reason": "appeal", "newExpectedReleaseDate": "2005-09-01"},
    ),
    "work-placement": (
        "custody.temporary-release",
        {"purpose": "work-placement", "from": "2005-03-01", "to": "2005-03-31"},
    ),
    "absconded": ("custody.absconded", {}),
    "transferred": (
        "custody.transferred",
        {"fromPrison": "HMP Long Lartin", "toPrison": "HMP Hewell"},
    ),
    "parole-outcome": ("parole.decided", {"outcome": "release-refused"}),
    "case-closing": ("mappa.case-closed", {"reason": "licence-ended"}),
}


def trigger(kind: str, occurred: datetime, **kwargs: Any) -> Doc:
    event_type, info = TRIGGERS[kind]
    return fact(event_type, occurred, info, **kwargs)


def no_rules(area: str, level: int) -> str | None:
    return None


def rules(table: Mapping[tuple[str, int], str]) -> LeadTimes:
    return lambda area, level: table.get((area, level))


def victim_alerts(history: Sequence[Doc], lead_times: LeadTimes = no_rules) -> list[Alert]:
    return [a for a in derive_alerts(history, lead_times) if a.kind != LATE_RELEASE_NOTICE]


def late_notices(history: Sequence[Doc], lead_times: LeadTimes) -> list[Alert]:
    return [a for a in derive_alerts(history, lead_times) if a.kind == LATE_RELEASE_NOTICE]


def raise_live(history: Sequence[Doc], lead_times: LeadTimes = no_rules) -> dict[str, Alert]:
    """What the projection does: after each arrival, derive from the history so far and
    raise what the plan says."""
    raised: dict[str, Alert] = {}
    for arrived in range(1, len(history) + 1):
        for alert in plan_alerts(derive_alerts(history[:arrived], lead_times), raised):
            assert alert.alert_id not in raised, "an alert was planned twice"
            raised[alert.alert_id] = alert
    return raised


# ---------------------------------------------------------------------------------------------
# Which events raise which alerts, for whom


def test_the_ten_kinds_are_the_contracts_in_its_order() -> None:
    assert ALERT_KINDS == (
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


@pytest.mark.parametrize("kind", ALERT_KINDS)
def test_each_kind_is_raised_by_its_event_for_an_enrolled_victim(kind: str) -> None:
    event = trigger(kind, at(10))
    [alert] = victim_alerts([enrolled(at(1)), event])

    assert alert.kind == kind
    assert alert.recipient == "VLO-A"
    assert alert.victim_ref == "V-1"
    assert alert.offender_ref == OFFENDER
    assert alert.area == "WM"
    assert alert.event_id == event["eventId"]
    assert alert.event_type == event["eventType"]
    assert alert.occurred_at == event["occurredAt"]
    assert alert.recorded_at == event["recordedAt"]
    assert alert.late_by_seconds == 0
    assert "V-1" in alert.message
    assert alert.corrects_alert_id is None


def test_a_sentence_varied_for_another_reason_than_appeal_raises_nothing() -> None:
    varied = fact("sentence.varied", at(10), {"reason": "other"})
    assert victim_alerts([enrolled(at(1)), varied]) == []


def test_a_temporary_release_for_another_purpose_than_work_raises_nothing() -> None:
    leave = fact(
        "custody.temporary-release",
        at(10),
        {"purpose": "other", "from": "2005-01-20", "to": "2005-01-21"},
    )
    assert victim_alerts([enrolled(at(1)), leave]) == []


def test_events_that_victims_are_not_told_of_raise_nothing() -> None:
    history = [
        enrolled(at(1)),
        level(at(2), 2),
        fact("custody.received", at(3), {"prison": "HMP Hewell", "reason": "sentence"}),
        fact("offence.charged", at(4), {"chargeId": "C1", "offence": "other"}),
    ]
    assert victim_alerts(history) == []


def test_a_victim_is_told_only_of_the_kinds_they_want() -> None:
    history = [
        enrolled(at(1), wants=["released", "absconded"]),
        trigger("released", at(10)),
        trigger("recalled", at(20)),
        trigger("absconded", at(30)),
    ]
    assert [a.kind for a in victim_alerts(history)] == ["released", "absconded"]


def test_a_victim_who_wants_an_empty_list_is_told_nothing() -> None:
    assert victim_alerts([enrolled(at(1), wants=[]), trigger("released", at(10))]) == []


def test_a_withdrawn_victim_is_told_nothing() -> None:
    history = [enrolled(at(1)), withdrawn(at(5)), trigger("released", at(10))]
    assert victim_alerts(history) == []


def test_a_victim_is_not_told_of_events_before_they_enrolled() -> None:
    history = [trigger("released", at(1)), enrolled(at(5)), trigger("recalled", at(10))]
    assert [a.kind for a in victim_alerts(history)] == ["recalled"]


def test_a_victim_who_enrols_again_after_withdrawing_is_told_again() -> None:
    history = [
        enrolled(at(1)),
        withdrawn(at(5)),
        trigger("released", at(6)),
        enrolled(at(8), vlo="VLO-B"),
        trigger("recalled", at(10)),
    ]
    [alert] = victim_alerts(history)
    assert (alert.kind, alert.recipient) == ("recalled", "VLO-B")


def test_an_enrolment_at_the_same_instant_as_the_event_counts() -> None:
    assert len(victim_alerts([enrolled(at(1)), trigger("released", at(1))])) == 1


def test_a_withdrawal_at_the_same_instant_as_the_event_wins() -> None:
    history = [enrolled(at(1)), withdrawn(at(10)), trigger("released", at(10))]
    assert victim_alerts(history) == []


def test_a_late_enrolment_that_happened_before_the_event_raises_the_alert() -> None:
    released = trigger("released", at(10), recorded=at(10))
    late_enrolment = enrolled(at(1), recorded=at(20))
    [alert] = victim_alerts([released, late_enrolment])
    assert (alert.kind, alert.victim_ref) == ("released", "V-1")


def test_two_victims_with_different_vlos_each_get_their_own_alert_with_only_their_reference() -> (
    None
):
    history = [
        enrolled(at(1), victim="V-1", vlo="VLO-A"),
        enrolled(at(2), victim="V-2", vlo="VLO-B"),
        trigger("licence-conditions", at(10)),
    ]
    alerts = victim_alerts(history)

    assert sorted((a.recipient, a.victim_ref) for a in alerts) == [
        ("VLO-A", "V-1"),
        ("VLO-B", "V-2"),
    ]
    for alert in alerts:
        other = "V-2" if alert.victim_ref == "V-1" else "V-1"
        assert other not in alert.message
        assert other not in repr(alert.details)
    assert len({a.alert_id for a in alerts}) == 2


def test_the_alert_area_is_the_offenders_responsible_area_when_the_event_happened() -> None:
    history = [
        enrolled(at(1), area="WM"),
        trigger("transferred", at(5)),
        fact("mappa.area-transferred", at(6), {"toArea": "GLO"}),
        trigger("recalled", at(10)),
    ]
    assert [(a.kind, a.area) for a in victim_alerts(history)] == [
        ("transferred", "WM"),
        ("recalled", "GLO"),
    ]


# ---------------------------------------------------------------------------------------------
# What the alert says


def test_a_changed_release_date_says_what_changed() -> None:
    history = [enrolled(at(1)), notice(at(10), "2005-06-01"), notice(at(20), "2005-06-15")]
    first, second = victim_alerts(history)

    assert first.details["previousExpectedReleaseDate"] is None
    assert "2005-06-01" in first.message
    assert second.details["dateChanged"] is True
    assert second.details["previousExpectedReleaseDate"] == "2005-06-01"
    assert second.details["expectedReleaseDate"] == "2005-06-15"
    assert "2005-06-01 -> 2005-06-15" in second.message


def test_a_changed_release_date_is_judged_against_the_previous_notice_by_when_it_happened() -> None:
    later = notice(at(20), "2005-06-15", recorded=at(20))
    earlier_reported_late = notice(at(10), "2005-06-01", recorded=at(30))
    alerts = victim_alerts([enrolled(at(1)), later, earlier_reported_late])

    by_event = {a.event_id: a for a in alerts}
    assert "2005-06-01 -> 2005-06-15" in by_event[later["eventId"]].message
    stale = by_event[earlier_reported_late["eventId"]]
    assert stale.details["supersededByEventId"] == later["eventId"]
    assert "replaced" in stale.message


def test_a_retracted_notice_is_not_the_previous_one() -> None:
    wrong = notice(at(10), "2005-05-01")
    history = [
        enrolled(at(1)),
        notice(at(5), "2005-06-01"),
        wrong,
        retraction(wrong, at(12)),
        notice(at(20), "2005-06-15"),
    ]
    last = victim_alerts(history)[-1]
    assert "2005-06-01 -> 2005-06-15" in last.message


def test_licence_conditions_that_protect_the_victim_are_listed_first() -> None:
    conditions = [
        {"code": "curfew", "text": "Home 7pm to 7am", "protectsVictim": False},
        {"code": "exclusion-zone", "text": "Not to enter Worcester", "protectsVictim": True},
        {"code": "programme", "text": "Attend the programme", "protectsVictim": False},
        {"code": "non-contact", "text": "No contact with the victim", "protectsVictim": True},
    ]
    history = [enrolled(at(1)), fact("licence.conditions-set", at(10), {"conditions": conditions})]
    [alert] = victim_alerts(history)

    codes = [c["code"] for c in alert.details["conditions"]]
    assert codes == ["exclusion-zone", "non-contact", "curfew", "programme"]
    message = alert.message
    assert message.index("Not to enter Worcester") < message.index("No contact with the victim")
    assert message.index("No contact with the victim") < message.index("Home 7pm to 7am")


def test_an_event_that_reached_the_tracker_late_says_how_many_days_late() -> None:
    released = trigger("released", at(10), recorded=at(22))
    [alert] = victim_alerts([enrolled(at(1)), released])
    assert alert.late_by_seconds == 12 * 86_400
    assert "reached the tracker 12 days late" in alert.message


def test_an_event_on_time_does_not_say_it_was_late() -> None:
    [alert] = victim_alerts([enrolled(at(1)), trigger("released", at(10))])
    assert alert.late_by_seconds == 0
    assert "late" not in alert.message


@pytest.mark.parametrize(("after", "late_by"), [(5, 0), (3600, 0), (3601, 3601), (7200, 7200)])
def test_an_event_reaching_the_tracker_within_an_hour_is_on_time(after: int, late_by: int) -> None:
    recorded = at(10) + timedelta(seconds=after)
    [alert] = victim_alerts([enrolled(at(1)), trigger("released", at(10), recorded=recorded)])
    assert alert.late_by_seconds == late_by
    assert ("late" in alert.message) is bool(late_by)
    assert alert.details.get("lateBySeconds") == (late_by or None)


# ---------------------------------------------------------------------------------------------
# Raised once: stable ids, any arrival order


def sample_history() -> list[Doc]:
    wrong = trigger("absconded", at(12), recorded=at(12))
    return [
        level(at(0), 3, event_id="e-level"),
        enrolled(at(1), victim="V-1", vlo="VLO-A", event_id="e-v1"),
        enrolled(at(2), victim="V-2", vlo="VLO-B", wants=["released"], event_id="e-v2"),
        notice(at(3), "2005-03-01", event_id="e-notice", recorded=at(9)),
        trigger("released", at(50), event_id="e-released"),
        {**wrong, "eventId": "e-wrong"},
        retraction({"eventId": "e-wrong"}, at(13), event_id="e-retraction"),
        withdrawn(at(60), victim="V-1", event_id="e-w1"),
        trigger("recalled", at(70), event_id="e-recalled"),
    ]


def test_the_same_history_gives_the_same_alert_ids() -> None:
    lead = rules({("WM", 3): "P3M"})
    first = derive_alerts(sample_history(), lead)
    second = derive_alerts(sample_history(), lead)
    assert [a.alert_id for a in first] == [a.alert_id for a in second]
    assert first == second


def test_facts_kept_by_the_caller_give_the_alerts_the_documents_give() -> None:
    lead = rules({("WM", 3): "P3M"})
    history = sample_history()
    kept = [fact_of(document) for document in history]
    assert derive_alerts(history, lead, kept) == derive_alerts(history, lead)
    assert derive_alerts(history, lead, kept) != []


def test_alerts_on_record_are_given_as_recorded_and_the_others_worded_afresh() -> None:
    lead = rules({("WM", 3): "P3M"})
    fresh = derive_alerts(sample_history(), lead)
    first = next(a for a in fresh if a.victim_ref)
    on_record = {
        a.alert_id: dataclasses.replace(a, message="as recorded")
        for a in fresh
        if a.victim_ref and a.event_id == first.event_id
    }
    again = derive_alerts(sample_history(), lead, on_record=on_record)
    assert again == [on_record.get(a.alert_id, a) for a in fresh]
    assert any(a.message == "as recorded" for a in again) and len(on_record) < len(fresh)


def test_the_alert_id_is_uuid5_of_the_event_and_the_victim() -> None:
    history = [enrolled(at(1)), trigger("released", at(10), event_id="evt-1")]
    [alert] = victim_alerts(history)
    assert uuid.UUID(alert.alert_id).version == 5
    other_history = [enrolled(at(2), vlo="VLO-Z"), trigger("released", at(10), event_id="evt-1")]
    assert victim_alerts(other_history)[0].alert_id == alert.alert_id


@given(st.text())
def test_alert_ids_are_spelt_as_the_uuid_library_spells_uuid5(name: str) -> None:
    assert alert_uuid(name) == str(uuid.uuid5(ALERT_ID_NAMESPACE, name))


def test_the_alert_id_of_an_event_and_a_victim_is_the_one_on_record() -> None:
    # Stored alerts are keyed by these ids: a different spelling would raise them all again.
    assert alert_id_for("evt-1", "V-1") == "f3c51a32-708e-53e0-8cee-dff155cf11a0"


@given(st.datetimes(datetime(1900, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)))
def test_moments_are_told_in_uk_time_to_the_minute(moment: datetime) -> None:
    in_london = moment.astimezone(ZoneInfo("Europe/London"))
    assert _for_people(moment) == in_london.strftime("%Y-%m-%d %H:%M (UK time)")


def test_every_arrival_order_of_a_small_history_gives_the_same_alerts() -> None:
    history = sample_history()
    lead = rules({("WM", 3): "P3M"})
    expected = derive_alerts(history, lead)
    for order in itertools.islice(itertools.permutations(history), 0, None, 997):
        assert derive_alerts(list(order), lead) == expected


@settings(max_examples=60, deadline=None)
@given(st.permutations(sample_history()))
def test_a_permuted_history_gives_the_same_alerts(order: list[Doc]) -> None:
    lead = rules({("WM", 3): "P3M"})
    assert derive_alerts(order, lead) == derive_alerts(sample_history(), lead)


@st.composite
def random_histories(draw: st.DrawFn) -> list[Doc]:
    """Victim enrolments and withdrawals, triggers, levels and notices, some retracted, with
    random occurredAt, arriving in a random order (recordedAt increasing with arrival)."""
    docs: list[Doc] = []
    for n in range(draw(st.integers(1, 9))):
        day = draw(st.integers(0, 40))
        choice = draw(st.sampled_from(["enrol", "withdraw", "trigger", "level", "notice"]))
        victim = draw(st.sampled_from(["V-1", "V-2"]))
        if choice == "enrol":
            wants = draw(
                st.one_of(st.none(), st.lists(st.sampled_from(ALERT_KINDS[:3]), max_size=2))
            )
            doc = enrolled(at(day), victim=victim, vlo=f"VLO-{victim}", wants=wants)
        elif choice == "withdraw":
            doc = withdrawn(at(day), victim=victim)
        elif choice == "trigger":
            doc = trigger(draw(st.sampled_from(ALERT_KINDS[:3])), at(day))
        elif choice == "level":
            doc = level(at(day), draw(st.integers(1, 3)))
        else:
            doc = notice(
                at(day), (at(day) + timedelta(days=draw(st.integers(10, 120)))).date().isoformat()
            )
        docs.append({**doc, "eventId": f"e{n}"})
    targets = draw(st.lists(st.sampled_from(docs), max_size=3, unique_by=lambda d: d["eventId"]))
    docs += [{**retraction(t, at(45)), "eventId": f"r{i}"} for i, t in enumerate(targets)]
    arrival = draw(st.permutations(docs))
    # The tracker stamps recordedAt on arrival: it grows along the arrival order.
    return [{**doc, "recordedAt": at(50 + i).isoformat()} for i, doc in enumerate(arrival)]


@settings(max_examples=150, deadline=None)
@given(random_histories(), st.randoms(use_true_random=False))
def test_alerts_do_not_depend_on_the_order_of_the_history(history: list[Doc], rnd: Any) -> None:
    lead = rules({("WM", 2): "P6W", ("WM", 3): "P3M"})
    shuffled = list(history)
    rnd.shuffle(shuffled)
    assert derive_alerts(shuffled, lead) == derive_alerts(history, lead)


@settings(max_examples=150, deadline=None)
@given(random_histories(), st.integers(0, 46))
def test_alerts_derived_since_a_moment_are_those_of_the_events_that_happened_from_then_on(
    history: list[Doc], day: int
) -> None:
    lead = rules({("WM", 2): "P6W", ("WM", 3): "P3M"})
    since = at(day)
    every_alert = derive_alerts(history, lead)
    from_then_on = [a for a in every_alert if datetime.fromisoformat(a.occurred_at) >= since]
    assert derive_alerts(history, lead, since=since) == from_then_on


@settings(max_examples=150, deadline=None)
@given(random_histories())
def test_live_raising_raises_each_alert_once_and_corrects_only_what_is_no_longer_due(
    history: list[Doc],
) -> None:
    lead = rules({("WM", 2): "P6W", ("WM", 3): "P3M"})
    raised = raise_live(history, lead)  # asserts that nothing is planned twice
    due = {a.alert_id for a in derive_alerts(history, lead)}
    corrected = [a.corrects_alert_id for a in raised.values() if a.kind == CORRECTION]

    assert due <= raised.keys(), "rebuilding would raise an alert the live run did not"
    assert len(corrected) == len(set(corrected))
    for alert in raised.values():
        if alert.kind != CORRECTION and alert.alert_id not in due:
            assert alert.alert_id in corrected
    assert plan_alerts(derive_alerts(history, lead), raised) == []


# ---------------------------------------------------------------------------------------------
# Corrections


def test_a_retracted_event_gets_exactly_one_correction_and_planning_again_plans_nothing() -> None:
    recall = trigger("recalled", at(10), recorded=at(10))
    history = [enrolled(at(1)), recall]
    raised = {a.alert_id: a for a in plan_alerts(derive_alerts(history, no_rules), {})}
    [original] = raised.values()

    history.append(retraction(recall, at(11), recorded=at(11)))
    [correction] = plan_alerts(derive_alerts(history, no_rules), raised)

    assert correction.kind == CORRECTION
    assert correction.corrects_alert_id == original.alert_id
    assert correction.details["corrects"] == original.alert_id
    assert correction.alert_id == correction_id_for(original.alert_id)
    assert (correction.recipient, correction.victim_ref) == ("VLO-A", "V-1")
    assert "recorded in error" in correction.message
    assert "recalled" in correction.message
    assert "the event, or the victim's enrolment that it was told through," in correction.message

    raised[correction.alert_id] = correction
    assert plan_alerts(derive_alerts(history, no_rules), raised) == []


def test_a_retracted_enrolment_corrects_the_alerts_it_caused() -> None:
    enrolment = enrolled(at(1), recorded=at(1))
    history = [enrolment, trigger("released", at(10))]
    raised = raise_live(history)
    history.append(retraction(enrolment, at(20)))

    [correction] = plan_alerts(derive_alerts(history, no_rules), raised)
    assert correction.corrects_alert_id in raised


def test_a_retracted_reenrolment_with_the_same_vlo_corrects_nothing() -> None:
    history = [enrolled(at(1), recorded=at(1))]
    again = enrolled(at(3), recorded=at(3))  # enrolled again, same victim and VLO
    history += [again, trigger("transferred", at(10), recorded=at(10))]
    raised = raise_live(history)
    history.append(retraction(again, at(20)))

    assert plan_alerts(derive_alerts(history, no_rules, on_record=raised), raised) == []


def test_a_retracted_reenrolment_with_another_vlo_readdresses_the_alert() -> None:
    history = [enrolled(at(1), recorded=at(1))]
    again = enrolled(at(3), vlo="VLO-B", recorded=at(3))
    history += [again, trigger("transferred", at(10), recorded=at(10))]
    raised = raise_live(history)
    assert [a.recipient for a in raised.values()] == ["VLO-B"]
    history.append(retraction(again, at(20)))

    correction, readdressed = plan_alerts(
        derive_alerts(history, no_rules, on_record=raised), raised
    )
    assert (correction.kind, correction.recipient) == (CORRECTION, "VLO-B")
    assert (readdressed.kind, readdressed.recipient) == ("transferred", "VLO-A")


def test_a_retraction_that_arrives_before_its_target_means_no_alert_at_all() -> None:
    released = trigger("released", at(10), recorded=at(30))
    history = [enrolled(at(1)), retraction(released, at(20), recorded=at(20)), released]
    assert raise_live(history) == {}


def test_a_late_withdrawal_does_not_correct_an_alert_already_raised() -> None:
    # The VLO was told while the victim was, as far as the tracker knew, enrolled; a
    # withdrawal reported afterwards is not an error in that alert.
    history = [enrolled(at(1), recorded=at(1)), trigger("released", at(10), recorded=at(10))]
    raised = raise_live(history)
    history.append(withdrawn(at(5), recorded=at(15)))

    assert plan_alerts(derive_alerts(history, no_rules), raised) == []
    assert victim_alerts(history) == list(raised.values())


def test_a_retracted_withdrawal_tells_the_victim_enrolled_when_the_retraction_came() -> None:
    # Withdrawn when the recall arrived; enrolled again with another VLO, for transfers only,
    # before the withdrawal is retracted. From the retraction on, the victim's standing at
    # the recall is the second enrolment: nothing is due, and VLO-A was never due it.
    history = [
        enrolled(at(1), vlo="VLO-A", recorded=at(30)),
        withdrawal := withdrawn(at(80), recorded=at(30)),
        trigger("recalled", at(110), recorded=at(30)),
        enrolled(at(85), vlo="VLO-B", wants=["transferred"], recorded=at(31)),
        retraction(withdrawal, at(170), recorded=at(170)),
    ]
    assert raise_live(history) == {}
    assert victim_alerts(history) == []


def test_a_retracted_withdrawal_tells_the_vlo_when_the_retraction_comes() -> None:
    history = [
        enrolled(at(1), recorded=at(30)),
        withdrawal := withdrawn(at(80), recorded=at(30)),
        trigger("recalled", at(110), recorded=at(30)),
    ]
    assert raise_live(history) == {}
    history.append(retraction(withdrawal, at(170), recorded=at(170)))
    [alert] = raise_live(history).values()
    assert (alert.kind, alert.recipient) == ("recalled", "VLO-A")
    assert victim_alerts(history) == [alert]


def test_an_enrolment_retracted_after_a_reenrolment_arrived_readdresses_to_the_vlo_then() -> None:
    # First enrolment (VLO-A) alone when the event arrived, the victim enrolled again with
    # VLO-B (before the event happened) reported later, then the first enrolment retracted:
    # the VLO-A alert is corrected, and VLO-B, whose enrolment stood when the retraction
    # came, is told.
    first = enrolled(at(1), vlo="VLO-A", recorded=at(1))
    history = [first, trigger("released", at(10), recorded=at(10))]
    history.append(enrolled(at(5), vlo="VLO-B", recorded=at(12)))
    raised = raise_live(history)
    assert [a.recipient for a in raised.values()] == ["VLO-A"]
    history.append(retraction(first, at(20), recorded=at(20)))

    correction, readdressed = plan_alerts(
        derive_alerts(history, no_rules, on_record=raised), raised
    )
    assert (correction.kind, correction.recipient) == (CORRECTION, "VLO-A")
    assert (readdressed.kind, readdressed.recipient) == ("released", "VLO-B")


def test_a_withdrawal_reported_with_the_event_prevents_the_alert() -> None:
    history = [
        enrolled(at(1), recorded=at(1)),
        withdrawn(at(5), recorded=at(10)),
        trigger("released", at(10), recorded=at(10)),
    ]
    assert victim_alerts(history) == []


# ---------------------------------------------------------------------------------------------
# Late release notices


def test_a_notice_40_days_before_release_under_a_90_day_rule_is_50_days_short() -> None:
    history = [level(at(0), 3), notice(at(1), (at(1) + timedelta(days=40)).date().isoformat())]
    [alert] = late_notices(history, rules({("WM", 3): "P90D"}))

    assert alert.kind == LATE_RELEASE_NOTICE
    assert alert.recipient == "coordinator:WM"
    assert alert.victim_ref is None
    assert alert.details["daysShort"] == 50
    assert alert.details["leadTimeDays"] == 40
    assert alert.details["ruleDuration"] == "P90D"
    assert alert.details["level"] == 3
    assert "50 days short" in alert.message


def test_a_notice_100_days_before_release_under_a_90_day_rule_raises_nothing() -> None:
    history = [level(at(0), 3), notice(at(1), (at(1) + timedelta(days=100)).date().isoformat())]
    assert late_notices(history, rules({("WM", 3): "P90D"})) == []


def test_a_notice_exactly_on_the_rule_is_in_time() -> None:
    history = [level(at(0), 3), notice(at(1), (at(1) + timedelta(days=90)).date().isoformat())]
    assert late_notices(history, rules({("WM", 3): "P90D"})) == []


def test_months_in_the_rule_are_counted_by_the_calendar() -> None:
    three_months = rules({("WM", 3): "P3M"})
    # 31 January + 3 months is 30 April: 89 days' notice is in time.
    in_time = [
        level("2005-01-01T09:00:00+00:00", 3),
        notice("2005-01-31T09:00:00+00:00", "2005-04-30"),
    ]
    assert late_notices(in_time, three_months) == []
    # 1 May + 3 months is 1 August: 91 days' notice is a day short.
    [alert] = late_notices(
        [level("2005-01-01T09:00:00+00:00", 3), notice("2005-05-01T09:00:00+01:00", "2005-07-31")],
        three_months,
    )
    assert alert.details["daysShort"] == 1
    assert alert.details["leadTimeDays"] == 91


def test_the_notice_date_is_the_europe_london_date_of_its_occurred_at() -> None:
    # 23:30 UTC on 27 March 2005 is 00:30 on 28 March in London (summer time began that day).
    history = [
        level("2005-01-01T09:00:00+00:00", 3),
        notice("2005-03-27T23:30:00+00:00", "2005-05-08"),
    ]
    [alert] = late_notices(history, rules({("WM", 3): "P6W"}))
    assert alert.details["noticeDate"] == "2005-03-28"
    assert alert.details["leadTimeDays"] == 41
    assert alert.details["daysShort"] == 1


def test_the_rule_is_the_one_for_the_level_at_the_moment_of_the_notice() -> None:
    lead = rules({("WM", 2): "P6W", ("WM", 3): "P3M"})
    # 60 days' notice: short of three months, but in time for six weeks.
    history = [
        level(at(0), 2),
        notice(at(10), (at(10) + timedelta(days=60)).date().isoformat()),
        level(at(20), 3),
    ]
    assert late_notices(history, lead) == []
    history = [
        level(at(0), 3),
        notice(at(10), (at(10) + timedelta(days=60)).date().isoformat()),
        level(at(20), 2),
    ]
    [alert] = late_notices(history, lead)
    assert alert.details["level"] == 3


def test_a_retracted_level_leaves_the_level_known_when_the_retraction_came() -> None:
    # Level 3, then 1 (no rule) when the notice arrived; a level 2 that happened before the
    # notice arrives later; then the level 1 is retracted. The level at the notice is 2
    # from then on, and six weeks' notice is met: level 3 was never the level it was judged
    # on, so no late notice is due at any moment.
    lead = rules({("WM", 2): "P6W", ("WM", 3): "P3M"})
    history = [
        level("2005-01-01T09:00:00+00:00", 3, recorded=at(60)),
        wrong := level("2005-02-01T09:00:00+00:00", 1, recorded=at(60)),
        notice("2005-03-01T09:00:00+00:00", "2005-05-01", recorded=at(60)),
    ]
    assert raise_live(history, lead) == {}
    history.append(level("2005-02-15T09:00:00+00:00", 2, recorded=at(61)))
    history.append(retraction(wrong, at(70), recorded=at(70)))
    assert raise_live(history, lead) == {}
    assert late_notices(history, lead) == []


def test_a_retracted_level_with_nothing_since_makes_the_notice_late_from_the_retraction() -> None:
    lead = rules({("WM", 3): "P3M"})
    history = [
        level("2005-01-01T09:00:00+00:00", 3, recorded=at(60)),
        wrong := level("2005-02-01T09:00:00+00:00", 1, recorded=at(60)),
        notice("2005-03-01T09:00:00+00:00", "2005-05-01", recorded=at(60)),
        retraction(wrong, at(70), recorded=at(70)),
    ]
    [alert] = raise_live(history, lead).values()
    assert (alert.details["level"], alert.details["daysShort"]) == (3, 31)
    assert late_notices(history, lead) == [alert]


def test_a_level_without_a_rule_raises_no_late_notice() -> None:
    history = [level(at(0), 1), notice(at(10), (at(10) + timedelta(days=5)).date().isoformat())]
    assert late_notices(history, rules({("WM", 3): "P3M"})) == []


def test_an_offender_without_a_level_raises_no_late_notice() -> None:
    history = [notice(at(10), (at(10) + timedelta(days=5)).date().isoformat())]
    assert late_notices(history, lambda area, level: "P3M") == []


def test_a_closed_case_has_no_level_for_the_rule() -> None:
    history = [
        level(at(0), 3),
        fact("mappa.case-closed", at(5), {"reason": "other"}),
        notice(at(10), (at(10) + timedelta(days=5)).date().isoformat()),
    ]
    assert late_notices(history, rules({("WM", 3): "P3M"})) == []


def test_the_late_notice_goes_to_the_coordinator_of_the_area_responsible_at_the_time() -> None:
    history = [
        level(at(0), 3, area="WM"),
        fact("mappa.area-transferred", at(2), {"toArea": "DUR"}),
        notice(at(10), (at(10) + timedelta(days=5)).date().isoformat(), area="WM"),
    ]
    [alert] = late_notices(history, rules({("DUR", 3): "P6M", ("WM", 3): "P3M"}))
    assert (alert.recipient, alert.area, alert.details["ruleDuration"]) == (
        "coordinator:DUR",
        "DUR",
        "P6M",
    )


def test_a_late_notice_does_not_need_an_enrolled_victim_and_victims_still_get_release_due() -> None:
    history = [
        level(at(0), 3),
        enrolled(at(1)),
        notice(at(10), (at(10) + timedelta(days=5)).date().isoformat()),
    ]
    kinds = sorted(a.kind for a in derive_alerts(history, rules({("WM", 3): "P3M"})))
    assert kinds == [LATE_RELEASE_NOTICE, "release-due"]


# ---------------------------------------------------------------------------------------------
# ISO 8601 durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("P90D", Duration(months=0, days=90)),
        ("P6W", Duration(months=0, days=42)),
        ("P3M", Duration(months=3, days=0)),
        ("P1Y2M3W4D", Duration(months=14, days=25)),
        ("PT48H", Duration(months=0, days=2)),
    ],
)
def test_lead_time_durations_are_parsed(text: str, expected: Duration) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "P", "3M", "P1.5M", "PT", "PT1H", "P-1D", "P3m"])
def test_malformed_lead_time_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("start", "text", "expected"),
    [
        (date(2005, 1, 31), "P1M", date(2005, 2, 28)),
        (date(2004, 1, 31), "P1M", date(2004, 2, 29)),
        (date(2004, 2, 29), "P1Y", date(2005, 2, 28)),
        (date(2005, 11, 30), "P3M", date(2006, 2, 28)),
        (date(2005, 1, 31), "P1M1D", date(2005, 3, 1)),
        (date(2005, 12, 1), "P6W", date(2006, 1, 12)),
    ],
)
def test_durations_add_months_by_the_calendar_clamping_the_day(
    start: date, text: str, expected: date
) -> None:
    assert add_duration(start, parse_duration(text)) == CalendarDay.of(expected)


@pytest.mark.parametrize(
    ("start", "text", "expected"),
    [
        (date(9999, 12, 20), "P3M", "10000-03-20"),
        # 10000 is a leap year (divisible by 400).
        (date(9999, 11, 30), "P3M", "10000-02-29"),
        (date(9999, 12, 1), "P6W", "10000-01-12"),
        (date(9999, 12, 31), "P1Y1D", "10001-01-01"),
        (date(2005, 6, 1), "P10000Y", "12005-06-01"),
    ],
)
def test_durations_reaching_past_the_year_9999_are_added_without_error(
    start: date, text: str, expected: str
) -> None:
    assert add_duration(start, parse_duration(text)).isoformat() == expected


@given(st.dates(), st.integers(min_value=0, max_value=5_000_000))
def test_a_calendar_day_counts_days_as_dates_do(start: date, days: int) -> None:
    later = CalendarDay.from_ordinal(start.toordinal() + days)
    assert later.days_after(start) == days
    assert later.ordinal == start.toordinal() + days
    if later.year <= 9999:
        assert later == CalendarDay.of(start + timedelta(days=days))


def test_a_notice_given_at_the_end_of_the_calendar_is_judged_not_raised_on() -> None:
    # Given on 20 December 9999, three months' notice runs into the year 10000, past what
    # Python's dates hold: the rules say how short it was instead of failing, which would
    # have stopped the projection at this fact for good.
    history = [
        level("9999-01-01T00:00:00+00:00", 3),
        notice("9999-12-20T00:00:00+00:00", "9999-12-31"),
    ]
    [alert] = late_notices(history, rules({("WM", 3): "P3M"}))

    assert alert.details["inTimeForReleaseFrom"] == "10000-03-20"
    # 31 January, 29 February and 20 March of the year 10000.
    assert alert.details["daysShort"] == 80
    assert "on or after 10000-03-20, so it was 80 days short" in alert.message


def test_only_an_enrolment_or_a_notice_judged_from_on_may_make_alerts_owed() -> None:
    facts = [fact_of(fact("release.notified", at(0))), fact_of(fact("custody.received", at(5)))]
    owing = Owing().after(facts)
    assert owing.may_owe()
    assert owing.may_owe(since=at(0))  # the notice itself is among the events judged
    assert not owing.may_owe(since=at(1))
    assert Owing().after(facts[1:]).may_owe() is False
    assert owing.after([fact_of(enrolled(at(-3)))]).may_owe(since=at(9))
    # Folded in two parts, the same as folded at once.
    assert Owing().after(facts[:1]).after(facts[1:]) == owing
