"""The counting rules of the 31 March statistical return (contract: statistical-return.md).

Histories are written as interchange documents with a small builder; every time is
Europe/London wall time unless an explicit ISO string with an offset is given.
The reporting year used throughout is 2004: P is 1 April 2004 00:00 BST to
1 April 2005 00:00 BST (= 2005-03-31T23:00Z), S is the end of 31 March 2005.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.statistical_return.rules import (
    build_timeline,
    compute_return,
    format_markdown,
    to_instant,
)

LONDON = ZoneInfo("Europe/London")
Document = dict[str, Any]

# --------------------------------------------------------------------- builders


def when(text: str) -> str:
    """An ISO instant: a bare date is noon London time; anything else is taken as is."""
    if len(text) == 10:
        return datetime.fromisoformat(text).replace(hour=12, tzinfo=LONDON).isoformat()
    return text


def utc(text: str) -> str:
    """The UTC ISO form of ``when(text)``, as the tracker stamps ``recordedAt``."""
    return datetime.fromisoformat(when(text)).astimezone(UTC).isoformat()


class Offender:
    """Builds one offender's history, in arrival order, as the tracker stores it."""

    def __init__(self, reference: str, area: str = "WM") -> None:
        self.reference = reference
        self.area = area
        self.history: list[Document] = []

    def event(
        self,
        event_type: str,
        occurred: str,
        recorded: str | None = None,
        area: str | None = None,
        **info: Any,
    ) -> Document:
        document: Document = {
            "eventId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.reference}/{len(self.history)}")),
            "eventType": event_type,
            "version": 1,
            "occurredAt": when(occurred),
            "source": {"agency": "mappa-coordinator"},
            "personReference": {"identifiers": [{"type": "MAPPA", "value": self.reference}]},
            "area": area or self.area,
            "additionalInformation": info,
            "recordedAt": utc(recorded or occurred),
        }
        self.history.append(document)
        return document

    def retract(self, target_event_id: str, occurred: str, recorded: str | None = None) -> Document:
        return self.event(
            "record.retracted",
            occurred,
            recorded,
            eventId=target_event_id,
            reason="recorded in error",
        )

    # Shorthands for the facts most histories start with.
    def registered(self, occurred: str, bcu: str | None = None) -> Offender:
        info: dict[str, Any] = {"period": "indefinite"}
        if bcu:
            info["bcu"] = bcu
        self.event("registration.started", occurred, **info)
        return self

    def managed(self, occurred: str, category: int, level: int) -> Offender:
        self.event("mappa.category-assigned", occurred, category=category)
        self.event("mappa.level-changed", occurred, level=level)
        return self

    def received(self, occurred: str) -> Offender:
        self.event("custody.received", occurred, prison="HMP Long Lartin", reason="sentence")
        return self


def wm_2004(*offenders: Offender, **options: Any) -> dict[str, Any]:
    return compute_return([o.history for o in offenders], "WM", 2004, **options)


# P and S of the 2004 return, in the forms the edge cases need.
START_OF_P = "2004-04-01T00:00:00+01:00"
S = "2005-04-01T00:00:00+01:00"  # 00:00 on 1 April 2005 (BST) = 2005-03-31T23:00Z


# ----------------------------------------------------------- acceptance: by hand


def acceptance_histories() -> list[Offender]:
    """A dozen offenders exercising every rule once; the figures are worked out below."""
    # O1: an RSO living in Hereford in the community at S -> i (Hereford). Two
    # breaches in P, cautioned then convicted -> ii once (distinct offenders).
    o1 = Offender("WM-000001").registered("2003-06-01", bcu="Hereford").managed("2003-06-01", 1, 1)
    o1.event("registration.breached", "2004-07-01", outcome="caution")
    o1.event("registration.breached", "2004-09-01", outcome="conviction")

    # O2: an RSO recalled in P while at level 1 (-> not ix: not managed at 2/3) and
    # in custody at S: temporary release and abscond do not end custody -> not i.
    o2 = Offender("WM-000002").registered("2003-01-01", bcu="Worcester").managed("2003-01-01", 1, 1)
    o2.event("licence.recalled", "2005-02-01", reason="breach-of-conditions")
    o2.event(
        "custody.temporary-release",
        "2005-03-10",
        purpose="work-placement",
        **{"from": "2005-03-10", "to": "2005-03-12"},
    )
    o2.event("custody.absconded", "2005-03-20")

    # O3: a breach first reported "pending", corrected by a retraction and a new
    # document with the same occurredAt and outcome "conviction" -> ii; another with
    # "no-further-action" does not count. The case is closed in P, which ends the
    # registration (-> not i) and clears the category: the level 3 set afterwards
    # comes back without a category -> not viii.
    o3 = (
        Offender("WM-000003").registered("2002-05-01", bcu="Shrewsbury").managed("2002-05-01", 1, 1)
    )
    pending = o3.event("registration.breached", "2004-06-01", outcome="pending")
    o3.retract(pending["eventId"], "2004-06-20")
    o3.event("registration.breached", "2004-06-01", recorded="2004-06-20", outcome="conviction")
    o3.event("registration.breached", "2004-07-01", outcome="no-further-action")
    o3.event("mappa.case-closed", "2004-10-01", reason="registration-ended")
    o3.event("mappa.level-changed", "2004-11-01", level=3)

    # O4: category 2 at level 2, released into Worcester in P and recalled in P:
    # in the community for part of P -> vi (2004), in custody at S -> not vi (2008);
    # level 2 all year -> viii level2 cat2; recalled at level 2 -> ix level2 a.
    o4 = Offender("WM-000004").managed("2003-02-01", 2, 2).received("2003-02-01")
    o4.event(
        "custody.released", "2004-09-01", releaseType="licence", toArea="WM", toBcu="Worcester"
    )
    o4.event("licence.recalled", "2005-01-10", reason="further-offence")

    # O5: category 3 at level 3 -> viii level3 cat3; returned to custody for breach
    # of a restraining order -> ix level3 b; released, so in the community at S ->
    # vii in both layouts; charged with rape in P -> ix level3 c, convicted before S
    # -> sfo convicted.
    o5 = Offender("WM-000005").managed("2003-03-01", 3, 3)
    o5.event("order.breached", "2004-08-01", orderType="RESTRAINING_ORDER", returnedToCustody=True)
    o5.event("custody.released", "2004-11-01", releaseType="end-of-sentence")
    o5.event("offence.charged", "2004-12-01", chargeId="C1", offence="rape")
    o5.event("offence.disposed", "2005-03-01", chargeId="C1", outcome="convicted")

    # O6: an RSO at level 2 (-> viii level2 cat1) transferred out to GLO and back
    # into Telford and Wrekin (-> i there). The SOPO made on conviction and the
    # breach conviction while in GLO are GLO's; back in WM: two applications
    # (one refused) -> iii a 2, an interim order -> iii b 1, a full order -> iii c 1.
    o6 = (
        Offender("WM-000006").registered("2003-04-01", bcu="Shrewsbury").managed("2003-04-01", 1, 2)
    )
    o6.event("mappa.area-transferred", "2004-07-01", toArea="GLO")
    o6.event("order.granted", "2004-08-01", area="GLO", orderType="SOPO")
    o6.event("registration.breached", "2004-08-15", area="GLO", outcome="conviction")
    o6.event("mappa.area-transferred", "2004-10-01", toArea="WM", toBcu="Telford and Wrekin")
    o6.event("order.applied", "2004-11-01", orderType="SOPO", applicationId="A1")
    o6.event("order.interim-granted", "2004-11-15", orderType="SOPO", applicationId="A1")
    o6.event(
        "order.granted", "2005-01-15", orderType="SOPO", applicationId="A1", prohibitions=["x"]
    )
    o6.event("order.applied", "2005-02-01", orderType="SOPO", applicationId="A2")
    o6.event("order.refused", "2005-03-01", orderType="SOPO", applicationId="A2")

    # O7: an RSO released to GLO without a BCU, then transferred back to WM without
    # one: in WM at S with no BCU -> i under "unknown".
    o7 = Offender("WM-000007").registered("2003-01-15", bcu="Worcester").managed("2003-01-15", 1, 1)
    o7.received("2003-02-01")
    o7.event("custody.released", "2004-06-01", releaseType="licence", toArea="GLO")
    o7.event("mappa.area-transferred", "2004-12-01", toArea="WM")

    # O8: category 3, level 3 until exactly the start of P, then level 2 until
    # exactly S: level 3 never holds inside P -> viii level2 cat3 only. The recall
    # at 00:00 on 1 April belongs to the next year -> no ix, and in the community
    # at S -> vii in both layouts.
    o8 = Offender("WM-000008").managed("2003-05-01", 3, 3)
    o8.event("mappa.level-changed", START_OF_P, level=2)
    o8.event("mappa.level-changed", S, level=3)
    o8.event("licence.recalled", S, reason="other")

    # O9: in custody, then at one instant assigned category 2 and level 3, released
    # and recalled (the recall received first): in the community for no time ->
    # not vi in either layout; level 3 for the rest of P -> viii level3 cat2; the
    # recall happens at level 3 -> ix level3 a; charged with kidnap in P -> ix
    # level3 c, disposed only after S -> sfo remain_charged.
    o9 = Offender("WM-000009").received("2003-06-01")
    instant = "2004-05-01T12:00:00+01:00"
    o9.event("licence.recalled", instant, reason="breach-of-conditions")
    o9.event("custody.released", instant, releaseType="licence")
    o9.managed(instant, 2, 3)
    o9.event("offence.charged", "2004-06-01", chargeId="C9", offence="kidnap-abduction")
    o9.event("offence.disposed", "2005-05-01", chargeId="C9", outcome="convicted")

    # O10: an RSO whose only level change (to 3) is retracted -> not viii; its
    # registration.started arrives last though it occurred first -> i (North Worcs).
    o10 = Offender("WM-000010")
    o10.event("mappa.category-assigned", "2003-01-10", category=1)
    level = o10.event("mappa.level-changed", "2004-06-01", level=3)
    o10.retract(level["eventId"], "2004-07-01")
    o10.event(
        "registration.started",
        "2003-01-05",
        recorded="2005-05-01",
        period="indefinite",
        bcu="North Worcs",
    )

    # O11: category 2 at level 2 in the community -> vi (both), viii level2 cat2.
    # Charges: C1 charged and convicted before P -> not counted; C2 (arson) charged
    # before P, undisposed when P began, acquitted in P -> sfo other_outcome; C3
    # (murder) retracted by a retraction received before it -> nothing; C4 "other"
    # is not an SFO -> no ix.
    o11 = Offender("WM-000011").managed("2003-01-01", 2, 2)
    o11.event("offence.charged", "2003-05-01", chargeId="C1", offence="manslaughter")
    o11.event("offence.disposed", "2003-10-01", chargeId="C1", outcome="convicted")
    o11.event("offence.charged", "2004-02-01", chargeId="C2", offence="arson-endangering-life")
    o11.event("offence.disposed", "2004-09-01", chargeId="C2", outcome="acquitted")
    murder_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "WM-000011/murder"))
    o11.retract(murder_id, "2004-10-02")
    murder = o11.event(
        "offence.charged", "2004-10-01", recorded="2004-10-03", chargeId="C3", offence="murder"
    )
    murder["eventId"] = murder_id
    o11.event("offence.charged", "2004-11-01", chargeId="C4", offence="other")

    # O12: DST boundaries, written in UTC. A breach at 23:30Z on 31 March 2004 is
    # 00:30 BST on 1 April -> in P -> ii. An FTO application at 22:59Z on 31 March
    # 2005 (23:59 BST) -> v a; its grant at 23:00Z (00:00 BST 1 April) and the end
    # of registration at 23:30Z are next year's -> still registered at S -> i
    # (Hereford). An interim FTO in P -> v b_interim (layout 2008 only).
    o12 = Offender("WM-000012").registered("2003-01-01", bcu="Hereford")
    o12.event("registration.breached", "2004-03-31T23:30:00+00:00", outcome="conviction")
    o12.event(
        "order.interim-granted", "2004-08-01", orderType="FOREIGN_TRAVEL_ORDER", applicationId="F1"
    )
    o12.event(
        "order.applied",
        "2005-03-31T22:59:00+00:00",
        orderType="FOREIGN_TRAVEL_ORDER",
        applicationId="F2",
    )
    o12.event(
        "order.granted",
        "2005-03-31T23:00:00+00:00",
        orderType="FOREIGN_TRAVEL_ORDER",
        applicationId="F2",
    )
    o12.event("registration.ended", "2005-03-31T23:30:00+00:00")

    # O13: starts in GLO (category 2, level 3), charged with rape there (GLO's
    # charge: no ix, no sfo here), transferred into WM (Worcester) in P: in the
    # community in WM -> vi (both), viii level3 cat2; a Notification Order applied
    # for while in WM -> iv a.
    o13 = Offender("GLO-000013", area="GLO").managed("2003-01-01", 2, 3)
    o13.event("offence.charged", "2004-06-01", chargeId="C1", offence="rape")
    o13.event("mappa.area-transferred", "2004-09-01", toArea="WM", toBcu="Worcester")
    o13.event(
        "order.applied", "2004-10-01", area="WM", orderType="NOTIFICATION_ORDER", applicationId="N1"
    )
    o13.event("offence.disposed", "2004-12-01", chargeId="C1", outcome="convicted")

    return [o1, o2, o3, o4, o5, o6, o7, o8, o9, o10, o11, o12, o13]


EXPECTED_COMMON: dict[str, Any] = {
    "area": "WM",
    "year": 2004,
    "asKnownOn": None,
    # O1, O6, O7, O10, O12.
    "i": 5,
    "i_by_bcu": {"Hereford": 2, "North Worcs": 1, "Telford and Wrekin": 1, "unknown": 1},
    # 5 per 100,000 of 8,000 is 62.5: rounded half up.
    "ia": 63,
    # O1, O3, O12.
    "ii": 3,
    "iii": {"a": 2, "b": 1, "c": 1},
    "iv": {"a": 1, "b": 0, "c": 0},
    "viii": {
        "level3": {"cat1": 0, "cat2": 2, "cat3": 1},  # O9, O13 | O5
        "level2": {"cat1": 1, "cat2": 2, "cat3": 1},  # O6 | O4, O11 | O8
    },
    "viii_distinct": 7,
    "ix": {
        "level3": {"a": 1, "b": 1, "c": 2},  # O9 | O5 | O5, O9
        "level2": {"a": 1, "b": 0, "c": 0},  # O4
    },
}


def test_hand_worked_history_gives_the_hand_worked_2004_layout_return() -> None:
    expected = {
        **EXPECTED_COMMON,
        "layout": "2004",
        "v": {"a": 1, "b": 0},
        "vi": 3,  # O4, O11, O13: in the community at some moment of P
        "vii": 2,  # O5, O8
    }
    assert wm_2004(*acceptance_histories(), population=8000) == expected


def test_hand_worked_history_gives_the_hand_worked_2008_layout_return() -> None:
    expected = {
        **EXPECTED_COMMON,
        "layout": "2008",
        "v": {"a": 1, "b": 0, "b_interim": 1},
        "vi": 2,  # O11, O13: in the community at S (O4 was recalled)
        "vii": 2,  # O5, O8
        "sfo_outcomes": {"convicted": 1, "other_outcome": 1, "remain_charged": 1},
    }
    assert wm_2004(*acceptance_histories(), population=8000, layout="2008") == expected


def test_hand_worked_history_does_not_depend_on_the_order_offenders_are_given_in() -> None:
    offenders = acceptance_histories()
    random.Random(7).shuffle(offenders)
    assert wm_2004(*offenders, population=8000) == wm_2004(*acceptance_histories(), population=8000)


# ------------------------------------------------------------------ snapshot (i)


def test_registered_offender_in_custody_at_snapshot_is_not_counted_in_i() -> None:
    offender = Offender("WM-1").registered("2003-01-01", bcu="Hereford").received("2005-03-01")
    assert wm_2004(offender)["i"] == 0


def test_temporary_release_and_abscond_do_not_end_custody() -> None:
    offender = Offender("WM-1").registered("2003-01-01").received("2004-05-01")
    offender.event(
        "custody.temporary-release",
        "2004-06-01",
        purpose="other",
        **{"from": "2004-06-01", "to": "2004-06-03"},
    )
    offender.event("custody.absconded", "2004-07-01")
    assert wm_2004(offender)["i"] == 0


def test_offender_released_before_snapshot_is_counted_in_i_by_release_bcu() -> None:
    offender = Offender("WM-1").registered("2003-01-01", bcu="Hereford").received("2003-06-01")
    offender.event("custody.released", "2005-03-30", releaseType="licence", toBcu="Worcester")
    result = wm_2004(offender)
    assert (result["i"], result["i_by_bcu"]) == (1, {"Worcester": 1})


def test_recall_and_breach_returning_to_custody_start_custody() -> None:
    recalled = Offender("WM-1").registered("2003-01-01")
    recalled.event("licence.recalled", "2005-01-01", reason="other")
    breached = Offender("WM-2").registered("2003-01-01")
    breached.event("order.breached", "2005-01-01", orderType="SOPO", returnedToCustody=True)
    not_returned = Offender("WM-3").registered("2003-01-01")
    not_returned.event("order.breached", "2005-01-01", orderType="SOPO", returnedToCustody=False)
    assert wm_2004(recalled, breached, not_returned)["i"] == 1


def test_registration_ends_with_registration_ended_or_case_closure() -> None:
    ended = Offender("WM-1").registered("2003-01-01")
    ended.event("registration.ended", "2004-05-01")
    closed = Offender("WM-2").registered("2003-01-01")
    closed.event("mappa.case-closed", "2004-05-01", reason="deceased")
    assert wm_2004(ended, closed)["i"] == 0


def test_offender_living_in_another_area_is_not_counted() -> None:
    offender = Offender("GLO-1", area="GLO").registered("2003-01-01", bcu="Stroud & Cotswolds")
    assert wm_2004(offender)["i"] == 0
    glo = compute_return([offender.history], "GLO", 2004)
    assert glo["i_by_bcu"] == {"Stroud & Cotswolds": 1}


def test_the_sender_area_of_later_events_does_not_move_the_offender() -> None:
    # Only the earliest event's area, transfers and releases with toArea decide.
    offender = Offender("WM-1").registered("2003-01-01")
    offender.event("registration.breached", "2004-06-01", area="GLO", outcome="caution")
    result = wm_2004(offender)
    assert (result["i"], result["ii"]) == (1, 1)


def test_release_to_another_area_without_bcu_leaves_bcu_unknown() -> None:
    offender = Offender("GLO-1", area="GLO").registered("2003-01-01", bcu="Gloucester & Forest")
    offender.received("2003-02-01")
    offender.event("custody.released", "2004-06-01", releaseType="licence", toArea="WM")
    assert wm_2004(offender)["i_by_bcu"] == {"unknown": 1}


def test_transfer_within_the_area_to_another_bcu_moves_the_bcu() -> None:
    offender = Offender("WM-1").registered("2003-01-01", bcu="Hereford")
    offender.event("mappa.area-transferred", "2004-06-01", toArea="WM", toBcu="Worcester")
    assert wm_2004(offender)["i_by_bcu"] == {"Worcester": 1}


def test_ia_is_per_100000_rounded_half_up_and_none_without_population() -> None:
    offenders = [Offender(f"WM-{n}").registered("2003-01-01") for n in range(689)]
    assert wm_2004(*offenders, population=1_148_000)["ia"] == 60
    assert wm_2004(*offenders[:1], population=200_000)["ia"] == 1  # 0.5 rounds up
    assert wm_2004(*offenders[:1], population=200_001)["ia"] == 0
    assert wm_2004(*offenders[:1])["ia"] is None


# -------------------------------------------------------------- the period P


def test_event_at_midnight_on_1_april_belongs_to_the_next_year() -> None:
    offender = Offender("WM-1")
    offender.event("registration.started", S, period="P5Y", bcu="Hereford")
    offender.event("order.applied", S, orderType="SOPO", applicationId="A1")
    offender.event("registration.breached", S, outcome="caution")
    this_year = wm_2004(offender)
    next_year = compute_return([offender.history], "WM", 2005)
    assert (this_year["i"], this_year["iii"]["a"], this_year["ii"]) == (0, 0, 0)
    assert (next_year["i"], next_year["iii"]["a"], next_year["ii"]) == (1, 1, 1)


def test_event_one_microsecond_before_midnight_london_is_in_the_period() -> None:
    offender = Offender("WM-1")
    offender.event("registration.breached", "2005-03-31T23:59:59.999999+01:00", outcome="caution")
    assert wm_2004(offender)["ii"] == 1


def test_period_boundaries_follow_british_summer_time_whatever_the_offset_written() -> None:
    # 1 April 2004 00:00 BST is 2004-03-31T23:00Z: 23:30Z is in P, 22:30Z is not.
    inside = Offender("WM-1")
    inside.event("order.applied", "2004-03-31T23:30:00Z", orderType="SOPO", applicationId="A")
    before = Offender("WM-2")
    before.event("order.applied", "2004-03-31T22:30:00+00:00", orderType="SOPO", applicationId="B")
    # The same instant as inside, written with a different offset.
    same = Offender("WM-3")
    same.event("order.applied", "2004-04-01T01:30:00+02:00", orderType="SOPO", applicationId="C")
    assert wm_2004(inside, before, same)["iii"]["a"] == 2


def test_instants_are_ordered_after_resolving_their_offsets() -> None:
    # 10:00 BST is 09:00Z; a charge written 09:30+00:00 reads earlier on the clock
    # but happens half an hour after the level change, so at level 3.
    offender = Offender("WM-1").managed("2003-01-01", 1, 2)
    offender.event("mappa.level-changed", "2004-06-01T10:00:00+01:00", level=3)
    offender.event("offence.charged", "2004-06-01T09:30:00+00:00", chargeId="C", offence="rape")
    ix = wm_2004(offender)["ix"]
    assert (ix["level3"]["c"], ix["level2"]["c"]) == (1, 0)


def test_period_start_and_snapshot_are_midnight_london_time() -> None:
    assert to_instant(datetime(2004, 4, 1, tzinfo=LONDON)) == to_instant("2004-03-31T23:00:00Z")
    assert to_instant(S) == to_instant("2005-03-31T23:00:00+00:00")


# ----------------------------------------------------------- same instant rules


@pytest.mark.parametrize("recall_first", [True, False])
def test_release_and_recall_at_the_same_instant_are_never_in_the_community(
    recall_first: bool,
) -> None:
    offender = Offender("WM-1").managed("2003-01-01", 2, 1).received("2003-01-01")
    instant = "2004-06-01T09:00:00+01:00"
    kinds = ["licence.recalled", "custody.released"]
    for kind in kinds if recall_first else reversed(kinds):
        info = {"reason": "other"} if kind == "licence.recalled" else {"releaseType": "licence"}
        offender.event(kind, instant, **info)
    assert wm_2004(offender)["vi"] == 0
    assert wm_2004(offender, layout="2008")["vi"] == 0


@pytest.mark.parametrize("release_first", [True, False])
def test_reception_and_release_at_the_same_instant_leave_the_offender_in_the_community(
    release_first: bool,
) -> None:
    offender = Offender("WM-1").registered("2003-01-01")
    instant = "2005-03-01T09:00:00+00:00"
    kinds = ["custody.released", "custody.received"]
    for kind in kinds if release_first else reversed(kinds):
        info = (
            {"releaseType": "other"}
            if kind == "custody.released"
            else {"prison": "HMP X", "reason": "remand"}
        )
        offender.event(kind, instant, **info)
    assert wm_2004(offender)["i"] == 1


@pytest.mark.parametrize("level_3_arrives_first", [True, False])
def test_of_two_levels_at_one_instant_the_later_event_id_holds_and_the_other_is_not_counted(
    level_3_arrives_first: bool,
) -> None:
    # "Evaluated at occurredAt order, not arrival order": the same documents, in either
    # order of arrival, give the same return.
    offender = Offender("WM-1").managed("2003-01-01", 1, 1)
    instant = "2004-06-01T10:00:00+01:00"
    levels = [
        (3, "00000000-0000-4000-8000-000000000001"),
        (2, "ffffffff-0000-4000-8000-000000000002"),
    ]
    for level, event_id in levels if level_3_arrives_first else levels[::-1]:
        offender.event("mappa.level-changed", instant, level=level)["eventId"] = event_id
    viii = wm_2004(offender)["viii"]
    assert (viii["level3"]["cat1"], viii["level2"]["cat1"]) == (0, 1)


@pytest.mark.parametrize("durham_arrives_first", [True, False])
def test_the_first_area_of_facts_at_one_earliest_instant_is_the_first_by_event_id(
    durham_arrives_first: bool,
) -> None:
    offender = Offender("WM-1")
    instant = "2003-01-01T10:00:00+00:00"
    areas = [
        ("WM", "00000000-0000-4000-8000-000000000001"),
        ("DUR", "ffffffff-0000-4000-8000-000000000002"),
    ]
    for area, event_id in areas[::-1] if durham_arrives_first else areas:
        offender.event("mappa.category-assigned", instant, area=area, category=1)["eventId"] = (
            event_id
        )
    offender.registered("2003-02-01")
    assert wm_2004(offender)["i"] == 1


def test_states_set_at_the_same_instant_apply_together() -> None:
    offender = Offender("WM-1")
    instant = "2004-05-01T10:00:00+01:00"
    offender.event("custody.released", instant, releaseType="licence", toBcu="Worcester")
    offender.event("registration.started", instant, period="P10Y")
    offender.managed(instant, 1, 3)
    offender.event("licence.recalled", "2004-09-01", reason="other")
    result = wm_2004(offender)
    assert result["viii"]["level3"]["cat1"] == 1
    assert result["ix"]["level3"]["a"] == 1
    assert result["i"] == 0  # recalled


def test_occurrence_at_the_instant_of_a_level_change_counts_at_the_new_level() -> None:
    # A state holds from the instant of the event that brings it about.
    offender = Offender("WM-1").managed("2003-01-01", 2, 2)
    instant = "2004-06-01T10:00:00+01:00"
    offender.event("mappa.level-changed", instant, level=3)
    offender.event("offence.charged", instant, chargeId="C", offence="rape")
    ix = wm_2004(offender)["ix"]
    assert (ix["level3"]["c"], ix["level2"]["c"]) == (1, 0)


def test_transfer_and_order_at_the_same_instant_count_in_the_new_area() -> None:
    offender = Offender("WM-1")
    offender.event("mappa.area-transferred", "2004-06-01", toArea="GLO")
    offender.event("order.applied", "2004-06-01", orderType="SOPO", applicationId="A")
    assert wm_2004(offender)["iii"]["a"] == 0
    assert compute_return([offender.history], "GLO", 2004)["iii"]["a"] == 1


# --------------------------------------------------- level and category changes


def test_level_change_exactly_at_start_of_period_counts_only_the_new_level() -> None:
    offender = Offender("WM-1").managed("2003-01-01", 2, 3)
    offender.event("mappa.level-changed", START_OF_P, level=2)
    viii = wm_2004(offender)["viii"]
    assert (viii["level3"]["cat2"], viii["level2"]["cat2"]) == (0, 1)


def test_level_change_exactly_at_snapshot_is_not_counted() -> None:
    offender = Offender("WM-1").managed("2003-01-01", 2, 2)
    offender.event("mappa.level-changed", S, level=3)
    offender.event("mappa.category-assigned", S, category=3)
    result = wm_2004(offender, layout="2008")
    assert result["viii"]["level3"] == {"cat1": 0, "cat2": 0, "cat3": 0}
    assert (result["vi"], result["vii"]) == (1, 0)


def test_level_one_second_before_snapshot_counts() -> None:
    offender = Offender("WM-1").managed("2003-01-01", 2, 2)
    offender.event("mappa.level-changed", "2005-03-31T23:59:59+01:00", level=3)
    assert wm_2004(offender)["viii"]["level3"]["cat2"] == 1


def test_offender_at_both_levels_counts_under_both_but_once_in_distinct() -> None:
    offender = Offender("WM-1").managed("2003-01-01", 1, 2)
    offender.event("mappa.level-changed", "2004-08-01", level=3)
    offender.event("mappa.category-assigned", "2004-09-01", category=2)
    result = wm_2004(offender)
    assert result["viii"] == {
        "level3": {"cat1": 1, "cat2": 1, "cat3": 0},
        "level2": {"cat1": 1, "cat2": 0, "cat3": 0},
    }
    assert result["viii_distinct"] == 1


def test_case_closure_clears_category_and_level_until_their_own_events_set_them() -> None:
    offender = Offender("WM-1").managed("2003-01-01", 2, 1)
    offender.event("mappa.case-closed", "2004-05-01", reason="risk-reduced")
    offender.event("mappa.level-changed", "2004-06-01", level=3)  # no category yet
    offender.event("mappa.category-assigned", "2004-09-01", category=3)  # now both
    result = wm_2004(offender)
    assert result["viii"]["level3"] == {"cat1": 0, "cat2": 0, "cat3": 1}
    # Category 2 held in the community from 1 April to 1 May: vi (2004).
    assert (result["vi"], result["vii"]) == (1, 1)


def test_level_without_category_is_not_counted_in_viii() -> None:
    offender = Offender("WM-1")
    offender.event("mappa.level-changed", "2003-01-01", level=3)
    assert wm_2004(offender)["viii_distinct"] == 0


def test_category_2_in_custody_all_year_is_not_counted_in_vi() -> None:
    offender = Offender("WM-1").managed("2003-01-01", 2, 2).received("2003-01-01")
    result = wm_2004(offender)
    assert (result["vi"], result["viii"]["level2"]["cat2"]) == (0, 1)


def test_2008_layout_counts_categories_2_and_3_at_the_snapshot() -> None:
    left = Offender("WM-1").managed("2003-01-01", 3, 1)
    left.event("mappa.area-transferred", "2004-06-01", toArea="GLO")
    stays = Offender("WM-2").managed("2003-01-01", 3, 1)
    assert wm_2004(left, stays)["vii"] == 2
    assert wm_2004(left, stays, layout="2008")["vii"] == 1


def test_transfer_out_and_back_counts_only_what_happens_while_in_the_area() -> None:
    offender = Offender("WM-1").managed("2003-01-01", 1, 3)
    offender.event("mappa.area-transferred", "2004-05-01", toArea="GLO", toBcu="Stroud & Cotswolds")
    offender.event("licence.recalled", "2004-06-01", area="GLO", reason="other")
    offender.event(
        "custody.released",
        "2004-07-01",
        area="GLO",
        releaseType="licence",
        toArea="WM",
        toBcu="Hereford",
    )
    offender.event("offence.charged", "2004-08-01", chargeId="C", offence="rape")
    offender.event("order.granted", "2004-09-01", orderType="SOPO")
    result = wm_2004(offender)
    assert result["ix"]["level3"] == {"a": 0, "b": 0, "c": 1}
    assert result["iii"]["c"] == 1
    assert compute_return([offender.history], "GLO", 2004)["ix"]["level3"]["a"] == 1


# --------------------------------------------------------- arrival order, as known


def late_reception() -> Offender:
    """An RSO received into custody in March 2005, reported only in May 2005."""
    offender = Offender("WM-1").registered("2003-01-01", bcu="Hereford")
    offender.event("licence.recalled", "2005-03-20", recorded="2005-05-10", reason="other")
    return offender


def test_late_event_is_placed_by_occurred_at_not_by_arrival() -> None:
    assert wm_2004(late_reception())["i"] == 0


def test_as_known_on_31_march_ignores_events_recorded_later() -> None:
    late = Offender("WM-2")
    late.event("registration.started", "2004-06-01", recorded="2005-04-20", period="P5Y")
    late.event("mappa.category-assigned", "2004-06-01", recorded="2005-04-20", category=1)
    late.event("mappa.level-changed", "2004-06-01", recorded="2005-04-20", level=2)
    offenders = (late_reception(), late)
    as_known = wm_2004(*offenders, as_known_on=datetime(2005, 3, 31, 23, 0, tzinfo=UTC))
    assert (as_known["i"], as_known["viii_distinct"]) == (1, 0)  # the first, still free
    assert as_known["asKnownOn"] == "2005-03-31T23:00:00+00:00"
    later = wm_2004(*offenders, as_known_on=datetime(2005, 6, 30, tzinfo=UTC))
    assert (later["i"], later["viii_distinct"]) == (1, 1)  # the late RSO, not the recalled one
    assert wm_2004(*offenders) == {**later, "asKnownOn": None}


def test_events_recorded_only_after_as_known_on_give_zero() -> None:
    offender = Offender("WM-1")
    offender.event("registration.started", "2004-06-01", recorded="2005-04-02", period="P5Y")
    assert wm_2004(offender, as_known_on=datetime(2005, 4, 1, tzinfo=LONDON))["i"] == 0
    assert wm_2004(offender, as_known_on=datetime(2005, 4, 2, 13, tzinfo=LONDON))["i"] == 1


def test_naive_as_known_on_is_read_as_london_time() -> None:
    offender = Offender("WM-1")
    # Recorded 2005-06-01 11:30 BST = 10:30Z.
    offender.event("registration.started", "2005-06-01T11:30:00+01:00", period="P5Y")
    early = compute_return([offender.history], "WM", 2005, as_known_on=datetime(2005, 6, 1, 11))
    late = compute_return([offender.history], "WM", 2005, as_known_on=datetime(2005, 6, 1, 12))
    assert (early["i"], late["i"]) == (0, 1)


def test_retraction_recorded_after_as_known_on_is_not_yet_applied() -> None:
    offender = Offender("WM-1")
    breach = offender.event("registration.breached", "2004-06-01", outcome="conviction")
    offender.retract(breach["eventId"], "2005-05-01")
    before = wm_2004(offender, as_known_on=datetime(2005, 4, 30, tzinfo=UTC))
    after = wm_2004(offender, as_known_on=datetime(2005, 5, 2, tzinfo=UTC))
    assert (before["ii"], after["ii"], wm_2004(offender)["ii"]) == (1, 0, 0)


def test_retraction_received_before_its_target_removes_it_when_it_arrives() -> None:
    def history(with_retraction: bool) -> Offender:
        offender = Offender("WM-1").registered("2003-01-01")
        target_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "reception"))
        if with_retraction:
            offender.retract(target_id, "2004-06-01")
        reception = offender.event(
            "custody.received", "2005-01-01", recorded="2005-02-01", prison="HMP X", reason="remand"
        )
        reception["eventId"] = target_id
        return offender

    assert wm_2004(history(with_retraction=False))["i"] == 0
    assert wm_2004(history(with_retraction=True))["i"] == 1


def test_retraction_naming_an_unknown_event_changes_nothing() -> None:
    offender = Offender("WM-1").registered("2003-01-01")
    offender.retract(str(uuid.uuid4()), "2004-06-01")
    assert wm_2004(offender)["i"] == 1


def test_retraction_of_the_only_level_change_leaves_the_offender_unmanaged() -> None:
    offender = Offender("WM-1")
    offender.event("mappa.category-assigned", "2003-01-01", category=2)
    level = offender.event("mappa.level-changed", "2004-06-01", level=3)
    offender.event("licence.recalled", "2004-07-01", reason="other")
    offender.retract(level["eventId"], "2004-08-01")
    result = wm_2004(offender)
    assert (result["viii_distinct"], result["ix"]["level3"]["a"]) == (0, 0)


def test_retracting_the_earliest_event_takes_the_area_from_the_next_one() -> None:
    offender = Offender("WM-1")
    first = offender.event("registration.started", "2003-01-01", area="GLO", period="P5Y")
    offender.event("registration.started", "2003-02-01", period="P5Y")
    offender.retract(first["eventId"], "2003-03-01")
    assert wm_2004(offender)["i"] == 1


def test_fully_retracted_history_counts_nowhere() -> None:
    offender = Offender("WM-1")
    only = offender.registered("2003-01-01").history[0]
    offender.retract(only["eventId"], "2003-02-01")
    assert build_timeline(offender.history) is None
    assert wm_2004(offender)["i"] == 0


# ------------------------------------------------------------- ii to v, ix, SFOs


def test_ii_counts_distinct_offenders_cautioned_or_convicted_in_the_area() -> None:
    twice = Offender("WM-1")
    twice.event("registration.breached", "2004-06-01", outcome="caution")
    twice.event("registration.breached", "2004-07-01", outcome="conviction")
    pending = Offender("WM-2")
    pending.event("registration.breached", "2004-06-01", outcome="pending")
    before = Offender("WM-3")
    before.event("registration.breached", "2004-03-31T23:59:00+01:00", outcome="caution")
    assert wm_2004(twice, pending, before)["ii"] == 1


def test_orders_are_counted_as_events_by_type() -> None:
    offender = Offender("WM-1")
    for kind, order_type in [
        ("order.applied", "SOPO"),
        ("order.applied", "SOPO"),
        ("order.granted", "SOPO"),  # made on conviction
        ("order.interim-granted", "NOTIFICATION_ORDER"),
        ("order.granted", "NOTIFICATION_ORDER"),
        ("order.applied", "FOREIGN_TRAVEL_ORDER"),
        ("order.interim-granted", "FOREIGN_TRAVEL_ORDER"),
        ("order.granted", "FOREIGN_TRAVEL_ORDER"),
        ("order.refused", "SOPO"),
    ]:
        offender.event(kind, "2004-06-01", orderType=order_type, applicationId="A")
    r2004, r2008 = wm_2004(offender), wm_2004(offender, layout="2008")
    assert (r2004["iii"], r2004["iv"], r2004["v"]) == (
        {"a": 2, "b": 0, "c": 1},
        {"a": 0, "b": 1, "c": 1},
        {"a": 1, "b": 1},
    )
    assert r2008["v"] == {"a": 1, "b": 1, "b_interim": 1}


def test_ix_b_counts_only_sopo_or_restraining_order_breaches_returned_to_custody() -> None:
    offenders = []
    for n, (order_type, returned) in enumerate(
        [("SOPO", True), ("RESTRAINING_ORDER", True), ("SOPO", False), ("NOTIFICATION_ORDER", True)]
    ):
        offender = Offender(f"WM-{n}").managed("2003-01-01", 1, 2)
        offender.event(
            "order.breached", "2004-06-01", orderType=order_type, returnedToCustody=returned
        )
        offenders.append(offender)
    assert wm_2004(*offenders)["ix"]["level2"]["b"] == 2


def test_ix_counts_offenders_not_events_and_only_while_at_that_level() -> None:
    offender = Offender("WM-1").managed("2003-01-01", 1, 1)
    offender.event("licence.recalled", "2004-05-01", reason="other")  # level 1
    offender.event("mappa.level-changed", "2004-06-01", level=2)
    offender.event("licence.recalled", "2004-07-01", reason="other")
    offender.event("licence.recalled", "2004-08-01", reason="other")
    offender.event("mappa.case-closed", "2004-09-01", reason="licence-ended")
    offender.event("licence.recalled", "2004-10-01", reason="other")  # not managed
    assert wm_2004(offender)["ix"] == {
        "level3": {"a": 0, "b": 0, "c": 0},
        "level2": {"a": 1, "b": 0, "c": 0},
    }


def test_sfo_outcomes_follow_the_latest_disposal_before_the_snapshot() -> None:
    offender = Offender("WM-1").managed("2003-01-01", 2, 3)
    offender.event("offence.charged", "2004-05-01", chargeId="A", offence="murder")
    offender.event("offence.disposed", "2004-06-01", chargeId="A", outcome="discontinued")
    offender.event("offence.disposed", "2004-08-01", chargeId="A", outcome="convicted")
    offender.event("offence.charged", "2004-05-02", chargeId="B", offence="rape")
    offender.event("offence.disposed", S, chargeId="B", outcome="convicted")  # next year
    offender.event("offence.charged", "2004-05-03", chargeId="C", offence="manslaughter")
    offender.event("offence.disposed", "2004-07-01", chargeId="C", outcome="other")
    offender.event("offence.charged", "2004-05-04", chargeId="D", offence="other")
    assert wm_2004(offender, layout="2008")["sfo_outcomes"] == {
        "convicted": 1,
        "other_outcome": 1,
        "remain_charged": 1,
    }


def test_sfo_charges_before_the_period_count_only_if_undisposed_when_it_began() -> None:
    offender = Offender("WM-1").managed("2003-01-01", 2, 2)
    offender.event("offence.charged", "2003-05-01", chargeId="OPEN", offence="rape")
    offender.event("offence.charged", "2003-05-01", chargeId="SHUT", offence="rape")
    offender.event("offence.disposed", "2004-01-01", chargeId="SHUT", outcome="convicted")
    offender.event("offence.charged", "2003-05-01", chargeId="EDGE", offence="rape")
    offender.event("offence.disposed", START_OF_P, chargeId="EDGE", outcome="acquitted")
    result = wm_2004(offender, layout="2008")
    assert result["sfo_outcomes"] == {"convicted": 0, "other_outcome": 1, "remain_charged": 1}
    assert result["ix"]["level2"]["c"] == 0  # charged before P


def test_sfo_charges_count_only_when_charged_at_level_2_or_3_in_the_area() -> None:
    level_one = Offender("WM-1").managed("2003-01-01", 2, 1)
    level_one.event("offence.charged", "2004-05-01", chargeId="A", offence="rape")
    level_one.event("mappa.level-changed", "2004-06-01", level=3)
    elsewhere = Offender("GLO-2", area="GLO").managed("2003-01-01", 2, 3)
    elsewhere.event("offence.charged", "2004-05-01", chargeId="A", offence="rape")
    elsewhere.event("mappa.area-transferred", "2004-06-01", toArea="WM")
    assert wm_2004(level_one, elsewhere, layout="2008")["sfo_outcomes"] == {
        "convicted": 0,
        "other_outcome": 0,
        "remain_charged": 0,
    }


def test_2004_layout_has_no_sfo_outcomes_nor_interim_travel_orders() -> None:
    result = wm_2004()
    assert "sfo_outcomes" not in result
    assert result["v"] == {"a": 0, "b": 0}


# ------------------------------------------------------------------ parameters


def test_default_layout_is_2004_before_2008_and_2008_from_2008() -> None:
    assert compute_return([], "WM", 2007)["layout"] == "2004"
    assert compute_return([], "WM", 2008)["layout"] == "2008"


def test_unknown_layout_is_refused() -> None:
    with pytest.raises(ValueError, match="layout"):
        compute_return([], "WM", 2004, layout="2010")


def test_empty_return_has_every_key_of_the_contract() -> None:
    assert set(compute_return([], "WM", 2008)) == {
        "area",
        "year",
        "layout",
        "asKnownOn",
        "i",
        "i_by_bcu",
        "ia",
        "ii",
        "iii",
        "iv",
        "v",
        "vi",
        "vii",
        "viii",
        "viii_distinct",
        "ix",
        "sfo_outcomes",
    }


# ----------------------------------------------------------------- properties

KINDS = [
    ("registration.started", {"period": "P5Y", "bcu": "Hereford"}),
    ("registration.ended", {}),
    ("custody.received", {"prison": "HMP X", "reason": "sentence"}),
    ("custody.released", {"releaseType": "licence"}),
    ("custody.released", {"releaseType": "licence", "toArea": "GLO"}),
    ("mappa.area-transferred", {"toArea": "WM", "toBcu": "Worcester"}),
    ("mappa.category-assigned", {"category": 2}),
    ("mappa.category-assigned", {"category": 3}),
    ("mappa.level-changed", {"level": 2}),
    ("mappa.level-changed", {"level": 3}),
    ("mappa.case-closed", {"reason": "other"}),
    ("licence.recalled", {"reason": "other"}),
    ("registration.breached", {"outcome": "caution"}),
    ("offence.charged", {"chargeId": "C", "offence": "rape"}),
    ("order.applied", {"orderType": "SOPO", "applicationId": "A"}),
]


@st.composite
def distinct_time_histories(draw: st.DrawFn) -> list[Document]:
    offender = Offender("WM-P")
    days = draw(st.lists(st.integers(0, 1000), min_size=1, max_size=12, unique=True))
    for day in days:
        kind, info = draw(st.sampled_from(KINDS))
        moment = datetime(2003, 6, 1, 12, tzinfo=LONDON).timestamp() + day * 86400
        occurred = datetime.fromtimestamp(moment, LONDON).isoformat()
        offender.event(kind, occurred, recorded="2006-01-01", **info)
    return offender.history


@settings(max_examples=150, deadline=None)
@given(history=distinct_time_histories(), seed=st.integers(0, 10**6))
def test_figures_do_not_depend_on_arrival_order(history: list[Document], seed: int) -> None:
    shuffled = list(history)
    random.Random(seed).shuffle(shuffled)
    for layout in ("2004", "2008"):
        assert compute_return([shuffled], "WM", 2004, layout=layout) == compute_return(
            [history], "WM", 2004, layout=layout
        )


@settings(max_examples=150, deadline=None)
@given(history=distinct_time_histories())
def test_i_is_the_sum_of_its_bcu_split_and_viii_distinct_bounds_viii(
    history: list[Document],
) -> None:
    result = compute_return([history], "WM", 2004)
    assert result["i"] == sum(result["i_by_bcu"].values())
    counts = [n for level in result["viii"].values() for n in level.values()]
    assert result["viii_distinct"] <= sum(counts)
    assert result["viii_distinct"] <= 1


# ----------------------------------------------------------------- layouts


def test_markdown_2004_layout_uses_the_templates_questions_and_period() -> None:
    text = format_markdown(wm_2004(*acceptance_histories(), population=8000))
    assert "## SECTION 5" in text
    assert "Required for the reporting period 1st APRIL 2004 - 31st MARCH 2005" in text
    assert "i) The number of RSOs living in West Mercia on 31st March 2005." in text
    assert "ia) The number of RSOs per 100'000 head of population.\n\n63\n" in text
    assert "| Telford and Wrekin | 1 |" in text
    assert "| **Total** | **5** |" in text
    assert "| V&O | 2 | 2 |" in text
    assert "| c) | 2 | 0 |" in text


def test_markdown_2008_layout_uses_the_snapshot_wording_and_sfo_outcomes() -> None:
    text = format_markdown(wm_2004(*acceptance_histories(), layout="2008"), area_name="West Mercia")
    assert "### MAPPA Statistical Information 2004/05" in text
    assert "#### Number of MAPPA eligible offenders at 31 March 2005" in text
    assert "- Registered Sexual Offenders: 5\n- Violent Offenders: 2" in text
    assert "- Remain charged with serious further offence: 1" in text
    assert "per 100,000 head of population\n\n- not available per 100,000" in text


def test_markdown_shows_as_known_on() -> None:
    ret = wm_2004(as_known_on=datetime(2005, 6, 30, tzinfo=UTC))
    assert "_As known on 2005-06-30T00:00:00+00:00._" in format_markdown(ret)
