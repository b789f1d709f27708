"""The caseload of an area (now and as it stood on a past date) and the data-quality queries,
on SQLite and PostgreSQL, through the projections and through the command line."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from typing import Any

import pytest

from consumers.interchange import parse_object
from infra.bootstrap import Tracker
from infra.cli import main
from infra.generator import generate_history
from projections.caseload.projection import CaseloadProjection, caseload
from projections.caseload.rules import CaseloadSummary
from projections.data_quality.projection import close_query, queries_for, query_by_id
from tests.builders import History
from tests.conftest import TrackerFactory


def mappa(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def ingest(tracker: Tracker, *documents: dict[str, Any]) -> None:
    """Store ``documents`` in the order given (one batch), then bring the views up to date."""
    results = tracker.ingest_service().ingest(
        [(n, parse_object(d)) for n, d in enumerate(documents)]
    )
    assert all(r.verdict.value == "accepted" for r in results), results
    tracker.catch_up()


def summary_of(
    tracker: Tracker, on: str, as_it_stood: bool = True, **options: Any
) -> CaseloadSummary:
    with tracker.views.transaction() as tx:
        return caseload(
            tx, "WM", date.fromisoformat(on), as_it_stood=as_it_stood,
            lead_times=tracker.areas.lead_time_for, **options,
        )  # fmt: skip


def managed(h: History, at: str, category: int = 1, level: int = 1, bcu: str = "Hereford") -> None:
    h.add("mappa.category-assigned", at, category=category)
    h.add("mappa.level-changed", at, level=level)
    h.add("registration.started", at, period="P10Y", bcu=bcu)


# --- a small West Mercia ------------------------------------------------------------------


def late_notice_at_level_3() -> History:
    """Level 3, in custody; notice given 10 Jan 2005 of a release on 19 Feb: 40 days."""
    h = History("WM-000001")
    managed(h, "2004-06-01T10:00:00+01:00", level=3)
    h.add("custody.received", "2004-07-01T10:00:00+01:00", prison="HMP A", reason="sentence")
    h.add(
        "release.notified",
        "2005-01-10T10:00:00+00:00",
        expectedReleaseDate="2005-02-19",
        releaseType="licence",
    )
    return h


def timely_notice_at_level_2_then_raised_to_3() -> History:
    """Level 2 when 55 days' notice was given (WM asks six weeks), level 3 ten days later."""
    h = History("WM-000002")
    managed(h, "2004-06-01T10:00:00+01:00", level=2, bcu="Worcester")
    h.add("custody.received", "2004-07-01T10:00:00+01:00", prison="HMP A", reason="sentence")
    h.add(
        "release.notified",
        "2005-01-05T10:00:00+00:00",
        expectedReleaseDate="2005-03-01",
        releaseType="parole-licence",
    )
    h.add("mappa.level-changed", "2005-01-15T10:00:00+00:00", level=3)
    return h


def recalled_twice_long_ago_and_lately() -> tuple[History, History]:
    recent = History("WM-000003")
    managed(recent, "2003-01-01T10:00:00+00:00", category=2, level=2, bcu="Worcester")
    recent.add("custody.received", "2003-02-01T10:00:00+00:00", prison="HMP A", reason="sentence")
    recent.add("custody.released", "2004-06-01T10:00:00+01:00", releaseType="licence")
    recent.add("licence.recalled", "2005-01-15T10:00:00+00:00", reason="breach-of-conditions")
    old = History("WM-000004")
    managed(old, "2003-01-01T10:00:00+00:00", category=2, bcu="Worcester")
    old.add("custody.received", "2003-02-01T10:00:00+00:00", prison="HMP A", reason="sentence")
    old.add("custody.released", "2004-03-01T10:00:00+00:00", releaseType="licence")
    old.add("licence.recalled", "2004-08-01T10:00:00+01:00", reason="further-offence")
    return recent, old


def under_orders() -> History:
    h = History("WM-000005")
    managed(h, "2003-01-01T10:00:00+00:00", level=2)
    h.add(
        "order.granted",
        "2003-05-01T10:00:00+01:00",
        orderType="SOPO",
        applicationId="A-1",
        prohibitions=["No contact with children under 16", "No internet use"],
        expiresOn="2008-05-01",
    )
    h.add(
        "order.granted",
        "2004-01-01T10:00:00+00:00",
        orderType="FOREIGN_TRAVEL_ORDER",
        applicationId="A-2",
        expiresOn="2004-07-01",
    )
    h.add("order.granted", "2004-09-01T10:00:00+01:00", orderType="NOTIFICATION_ORDER")
    wrong = h.add("order.granted", "2004-10-01T10:00:00+01:00", orderType="SOPO")
    h.retract(wrong, "2004-10-02T10:00:00+01:00")
    return h


def closed_case_with_an_order() -> History:
    h = History("WM-000006")
    managed(h, "2003-01-01T10:00:00+00:00")
    h.add("order.granted", "2003-01-02T10:00:00+00:00", orderType="SOPO", prohibitions=["x"])
    h.add("mappa.case-closed", "2004-12-01T10:00:00+00:00", reason="risk-reduced")
    return h


def west_mercia() -> list[History]:
    return [
        late_notice_at_level_3(),
        timely_notice_at_level_2_then_raised_to_3(),
        *recalled_twice_long_ago_and_lately(),
        under_orders(),
        closed_case_with_an_order(),
    ]


def ingest_all(tracker: Tracker, histories: list[History]) -> None:
    ingest(tracker, *(d for h in histories for d in h.documents))


def test_the_caseload_counts_category_level_custody_and_licence_per_bcu(tracker: Tracker) -> None:
    ingest_all(tracker, west_mercia())
    summary = summary_of(tracker, "2005-01-31")
    assert summary.managed == 5  # the closed case is no longer managed
    hereford, worcester = summary.by_bcu["Hereford"], summary.by_bcu["Worcester"]
    assert set(summary.by_bcu) == {"Hereford", "Worcester"}
    assert hereford["category"] == {"cat1": 2, "cat2": 0, "cat3": 0, "none": 0}
    assert hereford["level"] == {"level1": 0, "level2": 1, "level3": 1, "none": 0}
    assert hereford["custody"] == {"in_custody": 1, "in_community": 1}
    assert worcester["category"] == {"cat1": 1, "cat2": 2, "cat3": 0, "none": 0}
    assert worcester["level"] == {"level1": 1, "level2": 1, "level3": 1, "none": 0}
    # WM-000003 is back inside on recall; WM-000004 was recalled and is still in custody.
    assert worcester["custody"] == {"in_custody": 3, "in_community": 0}
    assert worcester["licence"] == {"on_licence": 0, "not_on_licence": 3}


def test_an_offender_still_in_custody_after_their_expected_release_date_is_listed_apart(
    use_store: Tracker, capsys: pytest.CaptureFixture[str]
) -> None:
    """WM-000001 was to be released on 19 February 2005 and no release has been reported:
    from the 20th on they are no longer due, but listed as still in custody after the
    date, where a release not reported yet would show."""
    tracker = use_store
    ingest_all(tracker, west_mercia())
    assert summary_of(tracker, "2005-02-19").release_date_passed == []
    [passed] = summary_of(tracker, "2005-02-20").release_date_passed
    assert (passed.mappa_ref, passed.expected_release_date) == ("WM-000001", "2005-02-19")
    assert "WM-000001" not in [
        d.mappa_ref for d in summary_of(tracker, "2005-02-20").due_for_release
    ]

    status, out, err = mappa(capsys, "caseload", "--area", "WM", "--on", "2005-02-20")
    assert status == 0, err
    assert "Still in custody after their expected release date (a release not reported?): 1" in out
    status, out, err = mappa(
        capsys, "caseload", "--area", "WM", "--on", "2005-02-20", "--format", "csv"
    )
    assert ",release_date_passed,Hereford,WM-000001,expected_release_date,2005-02-19" in out


def test_a_registered_offender_is_managed_before_any_category_is_assigned(
    tracker: Tracker,
) -> None:
    """Registration alone makes an offender managed, as the return counts them in ``i``; a
    closure ends it, and registering again after it makes them managed again."""
    registered = History("WM-000030")
    registered.add("registration.started", "2005-01-05T10:00:00+00:00", period="P5Y",
                   bcu="Worcester")  # fmt: skip
    again = History("WM-000031")
    managed(again, "2004-01-05T10:00:00+00:00", bcu="Hereford")
    again.add("mappa.case-closed", "2004-06-01T10:00:00+00:00", reason="other")
    again.add("registration.started", "2005-01-10T10:00:00+00:00", period="P5Y",
              bcu="Hereford")  # fmt: skip
    ingest_all(tracker, [registered, again])

    assert summary_of(tracker, "2004-12-31").managed == 0
    summary = summary_of(tracker, "2005-01-31")
    assert summary.managed == 2
    for bcu in ("Worcester", "Hereford"):
        counts = summary.by_bcu[bcu]
        assert counts["category"]["none"] == 1
        assert counts["registration"]["registered"] == 1
        assert counts["custody"]["in_community"] == 1
    assert summary_of(tracker, "2005-01-31", as_it_stood=False).managed == 2


def test_due_for_release_shows_the_notice_lead_time_and_whether_it_was_late_for_its_level(
    tracker: Tracker,
) -> None:
    ingest_all(tracker, west_mercia())
    due = {d.mappa_ref: d for d in summary_of(tracker, "2005-01-31").due_for_release}
    assert list(due) == ["WM-000001", "WM-000002"]  # by expected release date
    late = due["WM-000001"]
    assert (late.level, late.release_type, late.expected_release_date) == (
        3,
        "licence",
        "2005-02-19",
    )
    assert (late.notice_given_on, late.notice_lead_time_days) == ("2005-01-10", 40)
    # WM's rule for level 3 is P3M: in time only for a release from 10 April, 50 days later.
    assert (late.notice_rule, late.notice_late, late.notice_days_short) == ("P3M", True, 50)
    timely = due["WM-000002"]
    # Level 3 now, but the rule in force is that of level 2, the level when notice was given.
    assert (timely.level, timely.notice_level, timely.notice_rule) == (3, 2, "P6W")
    assert (timely.notice_lead_time_days, timely.notice_late, timely.notice_days_short) == (
        55,
        False,
        0,
    )


def test_the_due_window_runs_n_days_ahead_of_the_date(tracker: Tracker) -> None:
    ingest_all(tracker, west_mercia())
    assert [
        d.mappa_ref for d in summary_of(tracker, "2005-01-31", within_days=20).due_for_release
    ] == ["WM-000001"]
    assert summary_of(tracker, "2004-11-01").due_for_release == []  # no notice given yet


def test_recalls_of_the_last_n_days_are_listed_and_older_ones_are_not(tracker: Tracker) -> None:
    ingest_all(tracker, west_mercia())
    recalled = summary_of(tracker, "2005-01-31").recalled
    assert [(r.mappa_ref, r.recalled_on, r.reason) for r in recalled] == [
        ("WM-000003", "2005-01-15", "breach-of-conditions")
    ]
    longer = summary_of(tracker, "2005-01-31", within_days=200).recalled
    assert [r.mappa_ref for r in longer] == ["WM-000003", "WM-000004"]


def test_orders_in_force_are_listed_with_prohibitions_and_expiry_and_ended_ones_are_not(
    tracker: Tracker,
) -> None:
    ingest_all(tracker, west_mercia())
    orders = summary_of(tracker, "2005-01-31").orders
    # The FTO expired in July 2004, the second SOPO was retracted, the closed case's SOPO
    # ended with the case.
    assert [(o.order_type, o.mappa_ref, o.granted_on, o.expires_on) for o in orders] == [
        ("NOTIFICATION_ORDER", "WM-000005", "2004-09-01", None),
        ("SOPO", "WM-000005", "2003-05-01", "2008-05-01"),
    ]
    assert orders[1].prohibitions == ["No contact with children under 16", "No internet use"]
    # Before the case closed, its SOPO was in force; so was the FTO.
    assert [(o.order_type, o.mappa_ref) for o in summary_of(tracker, "2004-03-01").orders] == [
        ("FOREIGN_TRAVEL_ORDER", "WM-000005"),
        ("SOPO", "WM-000005"),
        ("SOPO", "WM-000006"),
    ]
    # On its expiry date an order has expired.
    assert [o.order_type for o in summary_of(tracker, "2008-05-01").orders] == [
        "NOTIFICATION_ORDER"
    ]


def test_an_interim_order_is_in_force_until_the_court_decides_the_application(
    use_store: Tracker, capsys: pytest.CaptureFixture[str]
) -> None:
    """An interim SOPO is in force from its grant until the full order replaces it; an
    interim Foreign Travel Order until the application is refused; a retracted interim
    order never was. The live view and the caseload as it stood say the same."""
    h = History("WM-000020")
    managed(h, "2005-01-03T10:00:00+00:00", level=2)
    h.add("order.applied", "2005-02-01T10:00:00+00:00", orderType="SOPO", applicationId="A-1")
    h.add("order.interim-granted", "2005-02-10T10:00:00+00:00", orderType="SOPO",
          applicationId="A-1")  # fmt: skip
    h.add("order.applied", "2005-02-01T11:00:00+00:00", orderType="FOREIGN_TRAVEL_ORDER",
          applicationId="A-2")  # fmt: skip
    h.add("order.interim-granted", "2005-02-12T10:00:00+00:00", orderType="FOREIGN_TRAVEL_ORDER",
          applicationId="A-2")  # fmt: skip
    wrong = h.add("order.interim-granted", "2005-02-14T10:00:00+00:00",
                  orderType="NOTIFICATION_ORDER", applicationId="A-3")  # fmt: skip
    h.retract(wrong, "2005-02-20T10:00:00+00:00")
    h.add("order.refused", "2005-04-01T10:00:00+00:00", orderType="FOREIGN_TRAVEL_ORDER",
          applicationId="A-2")  # fmt: skip
    h.add("order.granted", "2005-05-01T10:00:00+01:00", orderType="SOPO", applicationId="A-1",
          prohibitions=["No contact with children under 16"], expiresOn="2010-05-01")  # fmt: skip
    tracker = use_store
    ingest(tracker, *h.documents)

    def in_force(on: str) -> list[tuple[str, bool, str]]:
        return [(o.order_type, o.interim, o.granted_on) for o in summary_of(tracker, on).orders]

    assert in_force("2005-02-09") == []
    assert in_force("2005-03-01") == [
        ("FOREIGN_TRAVEL_ORDER", True, "2005-02-12"),
        ("SOPO", True, "2005-02-10"),
    ]
    assert in_force("2005-04-15") == [("SOPO", True, "2005-02-10")]
    assert in_force("2005-06-01") == [("SOPO", False, "2005-05-01")]
    # Now: the full SOPO alone, in the stored view as in the fold.
    live = summary_of(tracker, "2006-01-01", as_it_stood=False).orders
    assert [(o.order_type, o.interim, o.expires_on) for o in live] == [
        ("SOPO", False, "2010-05-01")
    ]

    # Through the command line, an interim order says so.
    status, out, _ = mappa(capsys, "caseload", "--area", "WM", "--on", "2005-03-01", "--format",
                           "json")  # fmt: skip
    assert status == 0
    assert [(o["order_type"], o["interim"]) for o in json.loads(out)["orders"]] == [
        ("FOREIGN_TRAVEL_ORDER", True),
        ("SOPO", True),
    ]
    status, out, _ = mappa(capsys, "caseload", "--area", "WM", "--on", "2005-03-01")
    assert "interim order granted 2005-02-10, until the court decides" in out


def test_a_store_made_before_interim_orders_gains_their_column_and_keeps_its_orders(
    tracker: Tracker,
) -> None:
    ingest_all(tracker, [under_orders()])
    with tracker.views.transaction() as tx:
        tx.execute("SELECT offender_id, event_id, order_type, granted_on, expires_on, "
                   "prohibitions FROM caseload_orders")  # fmt: skip
        rows = tx.fetchall()
        tx.execute("DROP TABLE caseload_orders")
        tx.execute(
            "CREATE TABLE caseload_orders (offender_id TEXT NOT NULL, event_id TEXT NOT NULL, "
            "order_type TEXT NOT NULL, granted_on TEXT NOT NULL, expires_on TEXT, "
            "prohibitions TEXT NOT NULL, PRIMARY KEY (offender_id, event_id))"
        )
        tx.executemany("INSERT INTO caseload_orders VALUES (%s, %s, %s, %s, %s, %s)", rows)
    assert rows
    tracker.writer("caseload").create_tables()
    orders = summary_of(tracker, "2005-01-31", as_it_stood=False).orders
    assert orders and not any(o.interim for o in orders)


def test_offenders_at_levels_2_and_3_are_listed_highest_level_first(tracker: Tracker) -> None:
    ingest_all(tracker, west_mercia())
    listed = summary_of(tracker, "2005-01-31").levels_2_and_3
    assert [(m.level, m.mappa_ref) for m in listed] == [
        (3, "WM-000001"),
        (3, "WM-000002"),
        (2, "WM-000003"),
        (2, "WM-000005"),
    ]


def test_one_bcu_can_be_shown_alone(tracker: Tracker) -> None:
    ingest_all(tracker, west_mercia())
    summary = summary_of(tracker, "2005-01-31", bcu="Worcester")
    assert (summary.managed, list(summary.by_bcu)) == (3, ["Worcester"])
    assert [d.mappa_ref for d in summary.due_for_release] == ["WM-000002"]
    assert summary.orders == []


def test_the_caseload_as_it_stood_is_from_the_facts_that_occurred_by_the_end_of_that_london_day(
    tracker: Tracker,
) -> None:
    h = History("WM-000010")
    managed(h, "2005-06-01T10:00:00+01:00", level=1)
    # 23:30 BST on 30 June is still 30 June in London; 00:30 BST on 1 July is not (though it
    # is 30 June in UTC).
    h.add("mappa.level-changed", "2005-06-30T23:30:00+01:00", level=2)
    h.add("mappa.level-changed", "2005-07-01T00:30:00+01:00", level=3)
    h.add("mappa.area-transferred", "2005-08-01T10:00:00+01:00", toArea="DUR")
    ingest(tracker, *h.documents)
    assert summary_of(tracker, "2005-06-29").by_bcu["Hereford"]["level"]["level1"] == 1
    assert summary_of(tracker, "2005-06-30").by_bcu["Hereford"]["level"]["level2"] == 1
    assert summary_of(tracker, "2005-07-01").by_bcu["Hereford"]["level"]["level3"] == 1
    assert summary_of(tracker, "2005-05-31").managed == 0  # not yet known to MAPPA
    assert summary_of(tracker, "2005-08-01").managed == 0  # moved to County Durham
    assert summary_of(tracker, "2005-07-31").managed == 1
    assert summary_of(tracker, "2005-08-01", as_it_stood=False).managed == 0  # and now


def test_a_fact_retracted_later_is_not_in_the_caseload_as_it_stood_before_the_retraction(
    tracker: Tracker,
) -> None:
    h = History("WM-000011")
    managed(h, "2004-01-01T10:00:00+00:00", level=1)
    wrong = h.add("mappa.level-changed", "2004-03-01T10:00:00+00:00", level=3)
    h.retract(wrong, "2004-09-01T10:00:00+01:00")
    ingest(tracker, *h.documents)
    # As the record now says it stood in June: the level 3 was recorded in error.
    assert summary_of(tracker, "2004-06-01").by_bcu["Hereford"]["level"]["level1"] == 1


def test_the_caseload_now_equals_the_caseload_as_it_stood_after_every_fact(
    tracker_factory: TrackerFactory,
) -> None:
    tracker = tracker_factory(batch_size=97)
    lines = generate_history("WM", 2003, 2006, 150, seed=11, invalid_lines=False)
    tracker.ingest_service().ingest([(n, parse_object(json.loads(x))) for n, x in enumerate(lines)])
    tracker.catch_up()
    # Every generated fact occurred by 31 March 2007; windows reach back into the history.
    listed: set[str] = set()
    for on in ("2007-04-01", "2007-06-30"):
        for within in (90, 1000):
            now = summary_of(tracker, on, as_it_stood=False, within_days=within).to_json()
            stood = summary_of(tracker, on, within_days=within).to_json()
            assert now.pop("as_it_stood") is False and stood.pop("as_it_stood") is True
            assert now == stood
            listed |= {k for k in ("levels_2_and_3", "recalled", "orders") if now[k]}
    assert listed == {"levels_2_and_3", "recalled", "orders"}, "the history lists too little"


def test_a_store_made_before_the_new_caseload_columns_gets_them(tracker: Tracker) -> None:
    with tracker.views.transaction() as tx:
        tx.execute("DROP TABLE caseload_offenders")
        tx.execute(
            "CREATE TABLE caseload_offenders (offender_id TEXT PRIMARY KEY, "
            "mappa_ref TEXT NOT NULL, area TEXT, bcu TEXT, category INTEGER, level INTEGER, "
            "managed INTEGER NOT NULL, in_custody INTEGER NOT NULL, on_licence INTEGER NOT NULL, "
            "registered INTEGER NOT NULL, expected_release_date TEXT, release_type TEXT)"
        )
        CaseloadProjection().create_tables(tx)
    ingest_all(tracker, west_mercia())
    assert summary_of(tracker, "2005-01-31", as_it_stood=False).due_for_release[0].notice_late


# --- through the command line -------------------------------------------------------------


def test_mappa_caseload_on_a_date_as_json_csv_and_table(
    use_store: Tracker, capsys: pytest.CaptureFixture[str]
) -> None:
    ingest_all(use_store, west_mercia())
    status, out, err = mappa(
        capsys, "caseload", "--area", "WM", "--on", "2005-01-31", "--format", "json"
    )
    assert status == 0, err
    summary = json.loads(out)
    assert summary["as_it_stood"] is True and summary["managed"] == 5
    assert summary["due_for_release"][0]["notice_days_short"] == 50
    assert {o["order_type"] for o in summary["orders"]} == {"SOPO", "NOTIFICATION_ORDER"}

    status, out, err = mappa(
        capsys, "caseload", "--area", "WM", "--on", "2005-01-31", "--format", "csv"
    )
    assert status == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {"area": "WM", "on": "2005-01-31", "asItStood": "true", "section": "due_for_release",
            "bcu": "Hereford", "item": "WM-000001", "field": "notice_days_short",
            "value": "50"} in rows  # fmt: skip
    prohibitions = next(r for r in rows if r["field"] == "prohibitions" and r["value"])
    assert prohibitions["value"] == "No contact with children under 16; No internet use"

    status, out, err = mappa(
        capsys, "caseload", "--area", "WM", "--on", "2005-01-31", "--bcu", "Hereford"
    )
    assert status == 0, err
    assert "Caseload of WM, BCU Hereford as it stood at the end of 2005-01-31" in out
    assert "40 days' notice, LATE: 50 days short of the rule P3M" in out
    assert "WM-000002" not in out


def test_mappa_caseload_now_reads_the_live_view(
    use_store: Tracker, capsys: pytest.CaptureFixture[str]
) -> None:
    ingest_all(use_store, west_mercia())
    status, out, err = mappa(capsys, "caseload", "--area", "WM", "--format", "json")
    assert status == 0, err
    summary = json.loads(out)
    assert summary["as_it_stood"] is False and summary["managed"] == 5
    assert summary["due_for_release"] == []  # every release date of 2005 is long past


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--area", "XX"], "caseload: --area: no area 'XX'; known: DUR, GLO, WM"),
        (["--area", "WM", "--bcu", "NoSuch"], "caseload: --bcu: no BCU of WM 'NoSuch'"),
        (["--area", "WM", "--within", "100000000"], "--within is a number of days, 0 to"),
        (["--area", "WM", "--within", "-1"], "--within is a number of days, 0 to"),
        (["--area", "WM", "--on", "0001-01-01"], "--on 0001-01-01 is not a date"),
        (["--area", "WM", "--on", "9999-12-31"], "--on 9999-12-31 is not a date"),
        (["--area", "WM", "--on", "31/01/2005"], "expected a date YYYY-MM-DD"),
    ],
)
def test_mappa_caseload_names_a_misspelt_area_or_bcu_or_an_impossible_date_instead_of_answering(
    use_store: Tracker, capsys: pytest.CaptureFixture[str], options: list[str], named: str
) -> None:
    ingest_all(use_store, west_mercia())
    status, out, err = mappa(capsys, "caseload", *options)
    assert (status, out) == (2, "")
    assert named in err


def test_mappa_caseload_takes_an_area_or_bcu_in_any_letter_case(
    use_store: Tracker, capsys: pytest.CaptureFixture[str]
) -> None:
    ingest_all(use_store, west_mercia())
    answers = [
        mappa(capsys, "caseload", "--area", area, "--bcu", bcu, "--on", "2005-01-31")
        for area, bcu in (("WM", "Hereford"), ("wm", "hereford"), (" Wm", "HEREFORD"))
    ]
    assert answers[0][0] == 0 and "WM-000001" in answers[0][1]
    assert answers[1:] == answers[:1] * 2


# --- data-quality queries -----------------------------------------------------------------


def release_without_custody() -> tuple[History, dict[str, Any], dict[str, Any]]:
    """A release reported first, the reception into custody (weeks earlier) reported later."""
    h = History("WM-000020")
    managed(h, "2004-01-01T10:00:00+00:00")
    released = h.add("custody.released", "2005-03-01T10:00:00+00:00", releaseType="licence")
    received = h.add(
        "custody.received", "2005-01-10T10:00:00+00:00", prison="HMP A", reason="sentence"
    )
    return h, released, received


def test_an_inconsistent_fact_is_listed_as_a_query_that_clears_itself_when_the_missing_fact_arrives(
    tracker: Tracker,
) -> None:
    h, released, received = release_without_custody()
    ingest(tracker, *h.documents[:-1])
    with tracker.views.transaction() as tx:
        (query,) = queries_for(tx, "WM")
    assert (query.kind, query.reason, query.status) == (
        "release-without-custody",
        "released, but not known to be in custody",
        "open",
    )
    assert (query.mappa_ref, query.area, query.about_event_id) == (
        "WM-000020",
        "WM",
        released["eventId"],
    )
    assert (query.about_event_type, query.about_occurred_at) == (
        "custody.released",
        "2005-03-01T10:00:00+00:00",
    )
    assert query.raised_at and query.cleared_at is None

    ingest(tracker, received)
    with tracker.views.transaction() as tx:
        assert queries_for(tx, "WM") == []
        (cleared,) = queries_for(tx, "WM", include_ended=True)
    assert cleared.status == "cleared"
    assert cleared.cleared_by_event_id == received["eventId"]
    assert cleared.cleared_at is not None and cleared.cleared_at >= cleared.raised_at


def test_every_kind_of_inconsistency_is_queried_with_its_reason(tracker: Tracker) -> None:
    h = History("WM-000021")
    managed(h, "2004-01-01T10:00:00+00:00")
    h.add("licence.recalled", "2005-01-01T10:00:00+00:00", reason="other")
    h.add("offence.disposed", "2005-02-01T10:00:00+00:00", chargeId="C-9", outcome="convicted")
    h.add(
        "record.retracted",
        "2005-03-01T10:00:00+00:00",
        eventId="5f0e1d4e-0000-4000-8000-000000000001",
        reason="error",
    )
    ingest(tracker, *h.documents)
    with tracker.views.transaction() as tx:
        queries = queries_for(tx, "WM")
    assert sorted((q.kind, q.about_event_type) for q in queries) == [
        ("disposal-without-charge", "offence.disposed"),
        ("recall-without-licence", "licence.recalled"),
        ("retraction-of-unknown-event", "record.retracted"),
    ]
    assert any("charge C-9" in q.reason for q in queries)


def test_a_retraction_of_an_unknown_event_as_an_offenders_only_fact_is_listed_in_its_area(
    tracker: Tracker,
) -> None:
    h = History("WM-000022")
    unknown = "5f0e1d4e-0000-4000-8000-000000000002"
    h.add("record.retracted", "2005-03-01T10:00:00+00:00", eventId=unknown, reason="error")
    ingest(tracker, *h.documents)
    with tracker.views.transaction() as tx:
        (query,) = queries_for(tx, "WM")
    assert (query.kind, query.mappa_ref) == ("retraction-of-unknown-event", "WM-000022")


def test_a_person_closes_a_query_with_a_note_and_the_closure_survives_a_rebuild(
    tracker: Tracker,
) -> None:
    h, released, _ = release_without_custody()
    ingest(tracker, *h.documents[:-1])
    query_id = f"{released['eventId']}:release-without-custody"
    with tracker.views.transaction() as tx:
        assert (
            close_query(tx, query_id, "A. Coordinator", "custody record on paper", _now())
            == "closed"
        )
        assert close_query(tx, query_id, "B. Other", "again", _now()) == "already closed"
    tracker.rebuild("data-quality")
    with tracker.views.transaction() as tx:
        assert queries_for(tx, "WM") == []
        (closed,) = queries_for(tx, "WM", include_ended=True)
    assert (closed.status, closed.closed_by, closed.note) == (
        "closed",
        "A. Coordinator",
        "custody record on paper",
    )


def test_a_query_raised_again_after_it_cleared_is_open_again_whatever_was_closed_before(
    tracker: Tracker,
) -> None:
    h, released, received = release_without_custody()
    ingest(tracker, *h.documents)  # both at once: the query is raised and cleared
    query_id = f"{released['eventId']}:release-without-custody"
    with tracker.views.transaction() as tx:
        assert close_query(tx, query_id, "A. Coordinator", "n/a", _now()) == "cleared"
    retraction = h.retract(received, "2005-03-05T10:00:00+00:00")
    ingest(tracker, retraction)  # the custody that cleared it was recorded in error
    with tracker.views.transaction() as tx:
        (again,) = queries_for(tx, "WM")
    assert (again.query_id, again.status, again.times_raised) == (query_id, "open", 2)
    assert again.first_raised_at < again.raised_at


def test_a_query_follows_its_offender_to_another_area(tracker: Tracker) -> None:
    h, _, _ = release_without_custody()
    moved = h.add("mappa.area-transferred", "2005-04-01T10:00:00+01:00", toArea="GLO")
    ingest(tracker, *h.documents[:-2])
    ingest(tracker, moved)
    with tracker.views.transaction() as tx:
        assert queries_for(tx, "WM") == []
        assert [q.mappa_ref for q in queries_for(tx, "GLO")] == ["WM-000020"]


def test_mappa_queries_lists_them_with_reason_and_age_and_closes_one(
    use_store: Tracker, capsys: pytest.CaptureFixture[str]
) -> None:
    h, released, _ = release_without_custody()
    ingest(use_store, *h.documents[:-1])
    query_id = f"{released['eventId']}:release-without-custody"

    status, out, err = mappa(capsys, "queries", "--area", "WM")
    assert status == 0, err
    assert "1 open data-quality query in WM" in out
    assert query_id in out and "released, but not known to be in custody" in out
    assert "0 days old" in out
    status, out, _ = mappa(capsys, "queries", "--area", "WM", "--format", "json")
    (listed,) = json.loads(out)
    assert (listed["status"], listed["age_days"], listed["about_event_type"]) == (
        "open",
        0,
        "custody.released",
    )

    status, out, err = mappa(capsys, "queries", "close", query_id, "--by", "A. C", "--note", "seen")
    assert (status, out.strip()) == (0, f"query {query_id} closed")
    status, out, _ = mappa(capsys, "queries", "--area", "WM")
    assert out.startswith("0 open data-quality queries in WM")
    status, out, _ = mappa(capsys, "queries", "--area", "WM", "--all")
    assert "[closed" in out and "by A. C: seen" in out

    status, _, err = mappa(capsys, "queries", "close", "no-such-query", "--by", "A", "--note", "x")
    assert status == 1 and "no data-quality query no-such-query" in err
    status, _, err = mappa(capsys, "queries", "close", query_id, "--by", "A")
    assert status == 2 and "--note" in err
    with use_store.views.transaction() as tx:
        assert query_by_id(tx, query_id) is not None


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
