"""The Offender aggregate: what it accepts, refuses and queries, and the state it keeps."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import events as ev
from domain.errors import RetractionOfAnotherOffendersEvent, RetractionOfRetraction, WrongOffender
from domain.offender import KnownEvent, Offender, Outcome, ReportedFact
from tests.builders import History


def record_all(history: History, offender: Offender | None = None) -> Offender:
    offender = offender or Offender(mappa_ref=history.ref)
    for fact in history.facts():
        offender.record(fact)
    return offender


def query_kinds(offender: Offender) -> set[str]:
    return {q.kind for q in offender.open_queries.values()}


def test_the_offender_id_is_derived_from_the_mappa_reference() -> None:
    assert Offender(mappa_ref="WM-000001").id == ev.offender_id_for("WM-000001")
    assert ev.offender_id_for("WM-000001") != ev.offender_id_for("WM-000002")


def test_a_fact_for_another_reference_is_refused() -> None:
    other = History("WM-000002")
    other.add("licence.ended", "2005-01-01T00:00:00+00:00")
    with pytest.raises(WrongOffender):
        Offender(mappa_ref="WM-000001").record(other.facts()[0])


def test_a_duplicate_event_id_changes_nothing() -> None:
    h = History("WM-000001")
    h.add("custody.received", "2004-01-01T10:00:00+00:00", prison="HMP A", reason="sentence")
    offender = record_all(h)
    version = offender.version
    decision = offender.record(h.facts()[0])
    assert decision.outcome is Outcome.DUPLICATE
    assert offender.version == version
    assert not offender.pending_events[version:]


def test_a_release_of_someone_not_in_custody_is_accepted_and_queried() -> None:
    h = History("WM-000001")
    h.add("custody.released", "2004-06-01T10:00:00+01:00", releaseType="licence")
    offender = Offender(mappa_ref=h.ref)
    decision = offender.record(h.facts()[0])
    assert decision.outcome is Outcome.ACCEPTED
    assert [q.kind for q in decision.raised] == ["release-without-custody"]
    assert offender.state.on_licence and not offender.state.in_custody


def test_the_release_query_clears_when_an_earlier_reception_arrives_late() -> None:
    h = History("WM-000001")
    h.add("custody.released", "2004-06-01T10:00:00+01:00", releaseType="licence")
    h.add("custody.received", "2003-01-01T10:00:00+00:00", prison="HMP A", reason="sentence")
    offender = Offender(mappa_ref=h.ref)
    release, reception = h.facts()
    offender.record(release)
    decision = offender.record(reception)
    assert decision.cleared == [f"{release.event_id}:release-without-custody"]
    assert offender.open_queries == {}
    assert any(isinstance(e, ev.DataQualityQueryCleared) for e in offender.pending_events)


def test_a_reception_placed_after_the_release_does_not_clear_its_query() -> None:
    h = History("WM-000001")
    h.add("custody.released", "2004-06-01T10:00:00+01:00", releaseType="licence")
    h.add("custody.received", "2004-07-01T10:00:00+01:00", prison="HMP A", reason="remand")
    offender = record_all(h)
    assert query_kinds(offender) == {"release-without-custody"}
    assert offender.state.in_custody


def test_a_recall_of_someone_not_on_licence_is_queried_until_a_licence_release_is_known() -> None:
    h = History("WM-000001")
    h.add("licence.recalled", "2005-01-10T10:00:00+00:00", reason="breach-of-conditions")
    offender = record_all(h)
    assert query_kinds(offender) == {"recall-without-licence"}
    late = History("WM-000001", namespace="late")
    late.add("custody.received", "2003-01-01T10:00:00+00:00", prison="HMP A", reason="sentence")
    late.add("custody.released", "2004-01-01T10:00:00+00:00", releaseType="parole-licence")
    record_all(late, offender)
    assert query_kinds(offender) == set()
    assert offender.state.in_custody and not offender.state.on_licence


def test_an_end_of_sentence_release_is_not_a_licence() -> None:
    h = History("WM-000001")
    h.add("custody.received", "2003-01-01T10:00:00+00:00", prison="HMP A", reason="sentence")
    h.add("custody.released", "2004-01-01T10:00:00+00:00", releaseType="end-of-sentence")
    h.add("licence.recalled", "2004-02-01T10:00:00+00:00", reason="other")
    assert query_kinds(record_all(h)) == {"recall-without-licence"}


def on_licence_then_breached_an_order() -> History:
    h = History("WM-000001")
    h.add("custody.received", "2004-01-01T10:00:00+00:00", prison="HMP A", reason="sentence")
    h.add("custody.released", "2004-06-01T10:00:00+01:00", releaseType="licence")
    h.add("order.breached", "2004-08-01T10:00:00+01:00", orderType="SOPO", returnedToCustody=True)
    return h


def test_an_order_breach_returning_them_to_custody_keeps_their_licence() -> None:
    state = record_all(on_licence_then_breached_an_order()).state
    assert state.in_custody and state.on_licence


def test_a_recall_after_an_order_breach_returned_them_to_custody_is_not_queried() -> None:
    # Breaching a SOPO puts the offender back in custody but does not end their licence:
    # the recall that commonly follows is a recall of someone on licence.
    h = on_licence_then_breached_an_order()
    h.add("licence.recalled", "2004-08-02T10:00:00+01:00", reason="breach-of-conditions")
    offender = record_all(h)
    assert query_kinds(offender) == set()
    assert offender.state.in_custody and not offender.state.on_licence


def test_a_disposal_of_a_charge_not_received_is_queried_until_the_charge_arrives() -> None:
    h = History("WM-000001")
    h.add("offence.disposed", "2006-05-01T10:00:00+01:00", chargeId="C1", outcome="convicted")
    offender = record_all(h)
    assert query_kinds(offender) == {"disposal-without-charge"}
    late = History("WM-000001", namespace="late")
    late.add("offence.charged", "2006-01-01T10:00:00+00:00", chargeId="C1", offence="rape")
    record_all(late, offender)
    assert query_kinds(offender) == set()
    assert offender.state.open_charges == {}


@pytest.mark.parametrize("outcome", ["order.interim-granted", "order.granted", "order.refused"])
def test_an_outcome_of_an_application_not_received_is_queried_until_it_arrives(
    outcome: str,
) -> None:
    h = History("WM-000001")
    h.add(outcome, "2006-05-01T10:00:00+01:00", orderType="SOPO", applicationId="A1")
    offender = record_all(h)
    assert query_kinds(offender) == {"outcome-without-application"}
    late = History("WM-000001", namespace="late")
    late.add("order.applied", "2006-01-01T10:00:00+00:00", orderType="SOPO", applicationId="A1")
    record_all(late, offender)
    assert query_kinds(offender) == set()


def test_an_order_granted_on_conviction_names_no_application_and_is_not_queried() -> None:
    h = History("WM-000001")
    h.add("order.granted", "2006-05-01T10:00:00+01:00", orderType="SOPO")
    assert query_kinds(record_all(h)) == set()


SAME_INSTANT_PAIRS = [
    (("custody.received", {"prison": "HMP A", "reason": "remand"}),
     ("custody.released", {"releaseType": "other"})),
    (("custody.released", {"releaseType": "licence"}),
     ("licence.recalled", {"reason": "other"})),
    (("offence.charged", {"chargeId": "C1", "offence": "rape"}),
     ("offence.disposed", {"chargeId": "C1", "outcome": "convicted"})),
    (("order.applied", {"orderType": "SOPO", "applicationId": "A1"}),
     ("order.interim-granted", {"orderType": "SOPO", "applicationId": "A1"})),
]  # fmt: skip


@pytest.mark.parametrize(("giver", "taker"), SAME_INSTANT_PAIRS)
@pytest.mark.parametrize("taker_id_first", [True, False])
@pytest.mark.parametrize("taker_arrives_first", [True, False])
def test_a_fact_is_not_queried_for_what_another_of_the_same_instant_gives(
    giver: tuple[str, dict[str, Any]],
    taker: tuple[str, dict[str, Any]],
    taker_id_first: bool,
    taker_arrives_first: bool,
) -> None:
    # Both at midnight, as a sender writing dates only would: applied together, whichever
    # eventId sorts first and whichever arrives first.
    h = History("WM-000001")
    given = h.add(giver[0], "2006-01-01T00:00:00+00:00", **giver[1])
    taken = h.add(taker[0], "2006-01-01T00:00:00+00:00", **taker[1])
    low, high = sorted([given["eventId"], taken["eventId"]])
    taken["eventId"], given["eventId"] = (low, high) if taker_id_first else (high, low)
    if taker_arrives_first:
        h.documents.reverse()
    assert query_kinds(record_all(h)) == set()


@pytest.mark.parametrize(
    ("opened", "closed", "kind"),
    [
        (("offence.charged", {"chargeId": "C1", "offence": "murder"}),
         ("offence.disposed", {"chargeId": "C1", "outcome": "other"}),
         "disposal-without-charge"),
        (("order.applied", {"orderType": "SOPO", "applicationId": "A1"}),
         ("order.refused", {"orderType": "SOPO", "applicationId": "A1"}),
         "outcome-without-application"),
    ],
)  # fmt: skip
def test_charge_and_application_ids_are_scoped_to_their_offender(
    opened: tuple[str, dict[str, Any]], closed: tuple[str, dict[str, Any]], kind: str
) -> None:
    first, second = History("WM-000001"), History("WM-000002")
    first.add(opened[0], "2006-01-01T10:00:00+00:00", **opened[1])
    second.add(closed[0], "2006-05-01T10:00:00+01:00", **closed[1])
    record_all(first)
    assert query_kinds(record_all(second)) == {kind}


def test_a_retraction_of_an_unreceived_event_is_queried_and_the_event_counts_as_retracted() -> None:
    h = History("WM-000001")
    reception = h.add(
        "custody.received", "2003-01-01T10:00:00+00:00", prison="A", reason="sentence"
    )
    retraction = h.retract(reception, "2003-02-01T10:00:00+00:00")
    offender = Offender(mappa_ref=h.ref)
    reception_fact, retraction_fact = h.facts()
    decision = offender.record(retraction_fact)
    assert [q.about_event_id for q in decision.raised] == [retraction["eventId"]]
    offender.record(reception_fact)
    assert query_kinds(offender) == set()
    assert not offender.state.in_custody
    assert offender.history == []


def test_a_retracted_event_is_as_if_it_had_not_happened() -> None:
    h = History("WM-000001")
    reception = h.add(
        "custody.received", "2003-01-01T10:00:00+00:00", prison="A", reason="sentence"
    )
    h.add("custody.released", "2004-01-01T10:00:00+00:00", releaseType="licence")
    offender = record_all(h)
    assert query_kinds(offender) == set()
    correction = History("WM-000001", namespace="correction")
    correction.retract(reception, "2004-02-01T10:00:00+00:00")
    record_all(correction, offender)
    assert query_kinds(offender) == {"release-without-custody"}


def a_reception_retracted_twice() -> History:
    """A reception, its retraction, and a retraction of that retraction."""
    h = History("WM-000001")
    reception = h.add(
        "custody.received", "2003-01-01T10:00:00+00:00", prison="A", reason="sentence"
    )
    first = h.retract(reception, "2003-02-01T10:00:00+00:00")
    h.retract(first, "2003-03-01T10:00:00+00:00")
    return h


def test_a_retraction_of_a_retraction_is_refused() -> None:
    h = a_reception_retracted_twice()
    offender = Offender(mappa_ref=h.ref)
    reception_fact, first_fact, second_fact = h.facts()
    offender.record(reception_fact)
    offender.record(first_fact)
    version = offender.version
    with pytest.raises(RetractionOfRetraction):
        offender.record(second_fact)
    assert offender.version == version


def test_a_retraction_whose_target_arrives_later_as_a_retraction_is_not_queried_again() -> None:
    # Received first, the retraction of a retraction cannot be refused; once its target
    # arrived, its query is cleared, and later facts must not raise it again as "not received".
    h = a_reception_retracted_twice()
    h.add("mappa.level-changed", "2002-06-01T10:00:00+01:00", level=1)  # placed earliest
    reception_fact, target_fact, outer_fact, earlier_fact = h.facts()
    offender = Offender(mappa_ref=h.ref)
    for fact in (reception_fact, outer_fact, target_fact):
        offender.record(fact)
    assert query_kinds(offender) == set()
    decision = offender.record(earlier_fact)
    assert decision.raised == []
    assert query_kinds(offender) == set()


def test_a_retraction_of_a_retraction_known_only_to_the_store_is_refused() -> None:
    h = History("WM-000001")
    h.add(
        "record.retracted",
        "2003-03-01T10:00:00+00:00",
        eventId=str(ev.OFFENDER_NAMESPACE),
        reason="x",
    )
    offender = Offender(mappa_ref=h.ref)
    target = KnownEvent(offender.id, "record.retracted")
    with pytest.raises(RetractionOfRetraction):
        offender.record(h.facts()[0], target)


def test_a_retraction_naming_another_offenders_event_is_refused() -> None:
    h = History("WM-000001")
    h.add(
        "record.retracted",
        "2003-03-01T10:00:00+00:00",
        eventId=str(ev.OFFENDER_NAMESPACE),
        reason="x",
    )
    offender = Offender(mappa_ref=h.ref)
    target = KnownEvent(ev.offender_id_for("WM-000999"), "custody.received")
    with pytest.raises(RetractionOfAnotherOffendersEvent, match="another offender"):
        offender.record(h.facts()[0], target)


def test_category_level_and_closure_are_kept_and_a_closure_clears_both() -> None:
    h = History("WM-000001")
    h.add("mappa.category-assigned", "2003-01-01T10:00:00+00:00", category=2)
    h.add("mappa.level-changed", "2003-01-02T10:00:00+00:00", level=3)
    offender = record_all(h)
    assert (offender.state.category, offender.state.level, offender.state.managed) == (2, 3, True)
    h.add("mappa.case-closed", "2004-01-01T10:00:00+00:00", reason="risk-reduced")
    offender = record_all(h)
    assert (offender.state.category, offender.state.level, offender.state.managed) == (
        None,
        None,
        False,
    )


def test_a_move_to_another_area_without_a_bcu_leaves_the_bcu_unknown() -> None:
    h = History("WM-000001")
    h.add("registration.started", "2003-01-01T10:00:00+00:00", period="P5Y", bcu="Worcester")
    offender = record_all(h)
    assert (offender.state.area, offender.state.bcu) == ("WM", "Worcester")
    h.add("mappa.area-transferred", "2004-01-01T10:00:00+00:00", toArea="DUR")
    offender = record_all(h)
    assert (offender.state.area, offender.state.bcu) == ("DUR", None)
    h.add(
        "custody.released",
        "2004-02-01T10:00:00+00:00",
        releaseType="licence",
        toArea="GLO",
        toBcu="Stroud",
    )
    offender = record_all(h)
    assert (offender.state.area, offender.state.bcu) == ("GLO", "Stroud")


def test_applications_charges_and_victims_are_tracked_until_decided_or_withdrawn() -> None:
    h = History("WM-000001")
    h.add("order.applied", "2004-05-01T10:00:00+01:00", orderType="SOPO", applicationId="A1")
    h.add("offence.charged", "2004-05-02T10:00:00+01:00", chargeId="C1", offence="rape")
    h.add("victim.enrolled", "2004-05-03T10:00:00+01:00", victimRef="V1", vloRef="VLO-1")
    h.add(
        "victim.enrolled",
        "2004-05-03T11:00:00+01:00",
        victimRef="V2",
        vloRef="VLO-2",
        wants=["released"],
    )
    offender = record_all(h)
    assert offender.state.open_applications == {"A1": "SOPO"}
    assert offender.state.open_charges == {"C1": "rape"}
    assert set(offender.state.victims) == {"V1", "V2"}
    assert offender.state.victims["V2"].wants == ("released",)
    h.add("order.granted", "2004-06-01T10:00:00+01:00", orderType="SOPO", applicationId="A1")
    h.add("victim.withdrawn", "2004-06-02T10:00:00+01:00", victimRef="V1")
    offender = record_all(h)
    assert offender.state.open_applications == {}
    assert set(offender.state.victims) == {"V2"}


def test_replaying_an_inconsistent_history_never_raises() -> None:
    h = History("WM-000001")
    h.add("licence.recalled", "2005-01-10T10:00:00+00:00", reason="other")
    h.add("custody.released", "2005-01-11T10:00:00+00:00", releaseType="licence")
    h.add("custody.released", "2005-01-12T10:00:00+00:00", releaseType="licence")
    h.add("offence.disposed", "2005-01-13T10:00:00+00:00", chargeId="nope", outcome="other")
    h.add("registration.ended", "2005-01-14T10:00:00+00:00")
    offender = record_all(h)
    replayed = None
    for event in offender.collect_events():
        replayed = event.mutate(replayed)
    assert replayed is not None
    assert replayed.state == offender.state
    assert replayed.open_queries == offender.open_queries


# --- arrival order does not matter --------------------------------------------------------


def _lifecycle() -> History:
    h = History("WM-000777")
    h.add("custody.received", "2003-01-10T10:00:00+00:00", prison="HMP A", reason="sentence")
    h.add("mappa.category-assigned", "2003-01-11T10:00:00+00:00", category=1)
    h.add("registration.started", "2003-01-12T10:00:00+00:00", period="P10Y", bcu="Worcester")
    h.add("mappa.level-changed", "2003-01-12T10:00:00+00:00", level=2)
    h.add("victim.enrolled", "2003-02-12T10:00:00+00:00", victimRef="V-1", vloRef="VLO-1")
    h.add(
        "release.notified",
        "2004-03-01T10:00:00+00:00",
        expectedReleaseDate="2004-04-01",
        releaseType="licence",
    )
    h.add("custody.released", "2004-04-01T10:00:00+01:00", releaseType="licence", toBcu="Hereford")
    h.add("licence.recalled", "2004-09-01T10:00:00+01:00", reason="breach-of-conditions")
    h.add("custody.released", "2005-01-01T10:00:00+00:00", releaseType="licence")
    h.add("offence.charged", "2005-02-01T10:00:00+00:00", chargeId="C1", offence="other")
    h.add("offence.disposed", "2005-03-01T10:00:00+00:00", chargeId="C1", outcome="acquitted")
    h.add("mappa.level-changed", "2005-03-31T23:59:00+01:00", level=3)
    h.add("licence.ended", "2006-01-01T10:00:00+00:00")
    wrong = h.add("mappa.area-transferred", "2006-02-01T10:00:00+00:00", toArea="DUR")
    h.retract(wrong, "2006-02-02T10:00:00+00:00")
    h.add("licence.recalled", "2006-03-01T10:00:00+00:00", reason="other")
    return h


def _final(facts: list[ReportedFact]) -> tuple[Any, ...]:
    offender = Offender(mappa_ref="WM-000777")
    for fact in facts:
        offender.record(fact)
    return offender.state, sorted(offender.open_queries), [e.event_id for e in offender.history]


@settings(max_examples=200, deadline=None)
@given(st.permutations(range(len(_lifecycle().documents))))
def test_any_arrival_order_gives_the_state_of_the_occurred_at_order(order: list[int]) -> None:
    facts = _lifecycle().facts()
    by_occurrence = sorted(facts, key=lambda f: (f.fields["occurred_at"], f.event_id))
    assert _final([facts[i] for i in order]) == _final(by_occurrence)


def test_the_lifecycle_ends_recalled_at_level_3_with_one_query_for_the_second_recall() -> None:
    state, queries, _history = _final(_lifecycle().facts())
    assert (state.area, state.bcu, state.level, state.category) == ("WM", "Hereford", 3, 1)
    assert state.in_custody and not state.on_licence
    assert [q.split(":")[1] for q in queries] == ["recall-without-licence"]


def test_every_small_reordering_of_a_history_agrees() -> None:
    facts = _lifecycle().facts()[:6]
    results = {repr(_final(list(p))) for p in itertools.permutations(facts)}
    assert len(results) == 1
