"""``mappa explain`` and ``mappa return --diff-as-known-on``, on both stores, through the CLI.

Every figure can be explained: the offenders an explanation lists must add up to the figure
(for every figure path), and a difference between two versions of a return must be traced
to exactly the events recorded in between.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.bootstrap import Tracker
from infra.cli import main
from infra.generator import generate_history
from projections.statistical_return.explain import (
    area_histories,
    diff_as_known_on,
    explain_figure,
)
from projections.statistical_return.formats import flatten
from projections.statistical_return.rules import compute_return
from tests.builders import History

# The end of 31 March 2005 (Europe/London): the snapshot of the 2004 return.
END_OF_31_MARCH = "2005-04-01T00:00:00+01:00"


def mappa(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def ingest_lines(
    lines: list[str], path: Path, capsys: pytest.CaptureFixture[str]
) -> dict[str, int]:
    path.write_text("\n".join(lines) + "\n")
    status, out, err = mappa(capsys, "ingest", str(path), "--json", "--quiet")
    assert status == 0, err
    summary: dict[str, int] = json.loads(out.strip().splitlines()[-1])
    return summary


def the_return(capsys: pytest.CaptureFixture[str], *options: str) -> dict[str, Any]:
    status, out, err = mappa(
        capsys, "return", "--area", "WM", "--year", "2004", "--format", "json", *options
    )
    assert status == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


def ids_of(histories: list[History]) -> set[str]:
    return {str(d["eventId"]) for h in histories for d in h.documents}


# ---------------------------------------------------------------- explaining figures


def test_every_figure_is_explained_by_offenders_adding_up_to_it(
    use_store: Tracker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ingest_lines(
        generate_history("WM", 2003, 2005, 60, seed=11, invalid_lines=False),
        tmp_path / "history.jsonl",
        capsys,
    )
    for layout in ("2004", "2008"):
        figures = flatten(the_return(capsys, "--layout", layout))
        assert figures["i"] > 0 and figures["viii_distinct"] > 0  # something to explain
        with use_store.views.transaction() as tx:
            histories = area_histories(tx, "WM")
        population = use_store.areas.population_for("WM", 2004)
        for path, value in figures.items():
            explanation = explain_figure(histories, "WM", 2004, path, layout, None, population)
            expected = figures["i"] if path == "ia" else value
            assert explanation.explained == expected, (layout, path)
            assert explanation.value == value, (layout, path)
            # Each offender counted is there because of some of their events.
            assert all(offender.events for offender in explanation.offenders), (layout, path)


def test_explain_lists_the_offenders_of_a_level_3_figure_with_the_events_that_put_them_there(
    use_store: Tracker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    counted, other = History("WM-000101"), History("WM-000102")
    assigned = counted.add("mappa.category-assigned", "2004-05-01T10:00:00+01:00", category=1)
    raised = counted.add("mappa.level-changed", "2004-06-01T10:00:00+01:00", level=3)
    other.add("mappa.category-assigned", "2004-05-01T10:00:00+01:00", category=1)
    other.add("mappa.level-changed", "2004-06-01T10:00:00+01:00", level=2)
    ingest_lines([*counted.lines(), *other.lines()], tmp_path / "h.jsonl", capsys)

    status, out, err = mappa(
        capsys, "explain", "--area", "WM", "--year", "2004", "--figure", "viii.level3.cat1",
        "--format", "json",
    )  # fmt: skip

    assert status == 0, err
    explanation = json.loads(out)
    assert explanation["value"] == explanation["explained"] == 1
    [offender] = explanation["offenders"]
    assert offender["mappaRef"] == "WM-000101"
    events = {event["eventId"]: event for event in offender["events"]}
    assert set(events) == {assigned["eventId"], raised["eventId"]}
    assert events[raised["eventId"]]["eventType"] == "mappa.level-changed"
    assert "level 3" in events[raised["eventId"]]["why"]
    assert events[assigned["eventId"]]["occurredAt"] == "2004-05-01T10:00:00+01:00"
    assert events[assigned["eventId"]]["recordedAt"]


def test_explain_of_an_order_figure_lists_the_orders_themselves(
    use_store: Tracker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    offender = History("WM-000201")
    offender.add("registration.started", "2003-01-10T10:00:00+00:00", period="indefinite")
    first = offender.add(
        "order.granted", "2004-07-01T10:00:00+01:00", orderType="SOPO", prohibitions=["parks"]
    )
    second = offender.add(
        "order.granted", "2005-01-05T10:00:00+00:00", orderType="SOPO", prohibitions=["internet"]
    )
    offender.add("order.granted", "2005-04-02T10:00:00+01:00", orderType="SOPO")  # next year
    ingest_lines(offender.lines(), tmp_path / "h.jsonl", capsys)

    status, out, err = mappa(
        capsys, "explain", "--area", "WM", "--year", "2004", "--figure", "iii.c"
    )

    assert status == 0, err
    assert out.startswith("iii.c = 2")
    assert "adding up to 2 orders" in out
    assert first["eventId"] in out and second["eventId"] in out
    assert out.count("[counted]") == 2


def test_an_unknown_figure_is_a_usage_error_listing_the_valid_ones(
    use_store: Tracker, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = mappa(
        capsys, "explain", "--area", "WM", "--year", "2004", "--figure", "viii.level4.cat1"
    )

    assert status == 2
    assert "unknown figure 'viii.level4.cat1'" in err
    assert "viii.level3.cat1" in err and "ix.level2.c" in err and "i_by_bcu.<BCU>" in err


# ------------------------------------------------------------------ late events, diffs


def test_a_return_whose_events_all_arrived_late_is_zero_as_known_on_31_march(
    use_store: Tracker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Everything is recorded now, long after 31 March 2005: every event of 2004/05 is late.
    rso, managed = History("WM-000301"), History("WM-000302")
    rso.add("registration.started", "2003-02-01T10:00:00+00:00", period="P10Y", bcu="Hereford")
    rso.add("registration.breached", "2004-09-01T10:00:00+01:00", outcome="conviction")
    managed.add("mappa.category-assigned", "2004-05-01T10:00:00+01:00", category=2)
    managed.add("mappa.level-changed", "2004-05-01T10:00:00+01:00", level=2)
    ingest_lines([*rso.lines(), *managed.lines()], tmp_path / "late.jsonl", capsys)

    then = flatten(the_return(capsys, "--as-known-on", END_OF_31_MARCH))
    now = flatten(the_return(capsys))

    assert all(not value for value in then.values())
    assert (now["i"], now["ii"], now["vi"], now["viii.level2.cat2"]) == (1, 1, 1, 1)

    status, out, err = mappa(
        capsys, "return", "--area", "WM", "--year", "2004",
        "--diff-as-known-on", END_OF_31_MARCH, "now", "--format", "json",
    )  # fmt: skip
    assert status == 0, err
    changes = json.loads(out)["changes"]
    assert {change["figure"] for change in changes} == {
        path for path, value in now.items() if value
    }
    named = {
        event["eventId"]
        for change in changes
        for offender in change["offenders"]
        for event in offender["events"]
    }
    assert named == ids_of([rso, managed])


def test_diff_as_known_on_names_exactly_the_events_recorded_in_between(
    use_store: Tracker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    on_time, newcomer = History("WM-000401"), History("WM-000402")
    on_time.add("registration.started", "2003-02-01T10:00:00+00:00", period="P10Y", bcu="Hereford")
    on_time.add("mappa.category-assigned", "2003-02-01T10:00:00+00:00", category=1)
    ingest_lines(on_time.lines(), tmp_path / "first.jsonl", capsys)
    before = the_return(capsys)

    time.sleep(0.01)  # the moment falls strictly between the two deliveries
    moment = datetime.now(UTC)
    time.sleep(0.01)
    # Late facts: the first offender's level and an order, and a whole newcomer.
    late = [
        on_time.add("mappa.level-changed", "2004-06-01T10:00:00+01:00", level=3),
        on_time.add("order.granted", "2004-08-01T10:00:00+01:00", orderType="SOPO"),
    ]
    newcomer.add("registration.started", "2004-10-01T10:00:00+01:00", period="P5Y", bcu="Worcester")
    ingest_lines(
        [json.dumps(d) for d in late] + newcomer.lines(), tmp_path / "second.jsonl", capsys
    )

    status, out, err = mappa(
        capsys, "return", "--area", "WM", "--year", "2004",
        "--diff-as-known-on", moment.isoformat(), "now", "--format", "json",
    )  # fmt: skip

    assert status == 0, err
    changes = {change["figure"]: change for change in json.loads(out)["changes"]}
    assert changes["i"]["before"] == before["i"] == 1 and changes["i"]["after"] == 2
    assert changes["iii.c"]["before"] == 0 and changes["iii.c"]["after"] == 1
    assert changes["viii.level3.cat1"]["after"] == 1
    named = {
        event["eventId"]
        for change in changes.values()
        for offender in change["offenders"]
        for event in offender["events"]
    }
    assert named == {d["eventId"] for d in late} | ids_of([newcomer])
    # The moment itself, read back, is the return before the late facts.
    assert the_return(capsys, "--as-known-on", moment.isoformat()) == {
        **before,
        "asKnownOn": moment.isoformat(),
    }

    status, text, err = mappa(
        capsys, "return", "--area", "WM", "--year", "2004",
        "--diff-as-known-on", moment.isoformat(), "now",
    )  # fmt: skip
    assert status == 0, err
    assert "iii.c: 0 -> 1" in text
    assert all(event_id in text for event_id in named)


def test_the_same_moment_twice_differs_in_nothing(
    use_store: Tracker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    offender = History("WM-000501")
    offender.add("registration.started", "2003-02-01T10:00:00+00:00", period="P10Y")
    ingest_lines(offender.lines(), tmp_path / "h.jsonl", capsys)

    status, out, err = mappa(
        capsys, "return", "--area", "WM", "--year", "2004", "--diff-as-known-on", "now", "now"
    )

    assert status == 0, err
    assert "no figure differs" in out


# ---------------------------------------------------------- national and other formats


def test_national_return_sums_every_area_with_offenders_in_the_store(
    use_store: Tracker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wm, glo = History("WM-000601"), History("GLO-000601", area="GLO")
    wm.add("registration.started", "2004-02-01T10:00:00+00:00", period="P10Y")
    glo.add("registration.started", "2005-02-01T10:00:00+00:00", period="P10Y")
    ingest_lines([*wm.lines(), *glo.lines()], tmp_path / "h.jsonl", capsys)

    status, out, err = mappa(capsys, "return", "--national", "--year", "2004", "--format", "json")

    assert status == 0, err
    tables = json.loads(out)
    assert {"WM", "GLO"} <= set(tables["areas"])
    rso = next(row for row in tables["table1"] if row["key"] == "cat1")
    assert (rso["previous"], rso["current"], rso["change"]) == (1, 2, 100.0)

    status, out, err = mappa(capsys, "return", "--national", "--year", "2004")
    assert status == 0, err
    assert "| 1. Registered Sex Offenders (RSO) | 1 | 2 (100.00%) |" in out


def test_return_as_csv_and_html_from_the_store(
    use_store: Tracker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    offender = History("WM-000701")
    offender.add("registration.started", "2003-02-01T10:00:00+00:00", period="P10Y", bcu="Hereford")
    ingest_lines(offender.lines(), tmp_path / "h.jsonl", capsys)

    status, out, err = mappa(capsys, "return", "--area", "WM", "--year", "2004", "--format", "csv")
    assert status == 0, err
    assert "WM,2004,2004,,i_by_bcu.Hereford,1" in out.splitlines()

    status, out, err = mappa(capsys, "return", "--area", "WM", "--year", "2004", "--format", "html")
    assert status == 0, err
    assert out.count("<svg") == 2 and "West Mercia" in out


def test_return_without_area_nor_national_is_a_usage_error(
    use_store: Tracker, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = mappa(capsys, "return", "--year", "2004")

    assert status == 2
    assert "--area is required" in err


@pytest.mark.parametrize(
    ("command", "year", "named"),
    [
        (["return", "--area", "WM"], "9999", "a year from 1900 to 2999, not 9999"),
        (["return", "--national"], "0", "a year from 1900 to 2999, not 0"),
        (["explain", "--area", "WM", "--figure", "i"], "3000", "a year from 1900 to 2999"),
        (["return", "--area", "WM"], "2004/05", "not a year: '2004/05'"),
    ],
)
def test_a_year_outside_the_calendar_the_tracker_holds_is_a_usage_error(
    use_store: Tracker,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
    year: str,
    named: str,
) -> None:
    # The year 9999's return ends on 31 March 10000, past Python's dates: it failed there.
    with pytest.raises(SystemExit) as exited:
        mappa(capsys, *command, "--year", year)
    _, err = capsys.readouterr()

    assert exited.value.code == 2
    assert f"--year: {named}" in err


# --------------------------------------------------------------- pure, no store needed

KINDS: list[tuple[str, dict[str, Any]]] = [
    ("registration.started", {"period": "P5Y", "bcu": "Hereford"}),
    ("registration.ended", {}),
    ("custody.received", {"prison": "HMP X", "reason": "sentence"}),
    ("custody.released", {"releaseType": "licence"}),
    ("custody.released", {"releaseType": "licence", "toArea": "GLO"}),
    ("mappa.area-transferred", {"toArea": "WM", "toBcu": "Worcester"}),
    ("mappa.category-assigned", {"category": 1}),
    ("mappa.category-assigned", {"category": 2}),
    ("mappa.level-changed", {"level": 2}),
    ("mappa.level-changed", {"level": 3}),
    ("mappa.case-closed", {"reason": "other"}),
    ("licence.recalled", {"reason": "other"}),
    ("registration.breached", {"outcome": "caution"}),
    ("offence.charged", {"chargeId": "C", "offence": "rape"}),
    ("offence.disposed", {"chargeId": "C", "outcome": "convicted"}),
    ("order.applied", {"orderType": "SOPO", "applicationId": "A"}),
    ("order.granted", {"orderType": "NOTIFICATION_ORDER"}),
]


@st.composite
def histories(draw: st.DrawFn) -> list[list[dict[str, Any]]]:
    """A few offenders with random facts around 2004/05, recorded on random days."""
    result = []
    for number in range(draw(st.integers(1, 4))):
        history = History(f"WM-9{number:05d}")
        for day in draw(st.lists(st.integers(0, 900), min_size=1, max_size=10)):
            kind, info = draw(st.sampled_from(KINDS))
            occurred = datetime.fromtimestamp(
                datetime(2003, 10, 1, 12, tzinfo=UTC).timestamp() + day * 86400, UTC
            )
            document = history.add(kind, occurred.isoformat(), **info)
            recorded = draw(st.integers(0, 1200))
            document["recordedAt"] = datetime.fromtimestamp(
                datetime(2003, 10, 1, tzinfo=UTC).timestamp() + recorded * 86400, UTC
            ).isoformat()
        result.append(history.documents)
    return result


@settings(max_examples=60, deadline=None)
@given(stored=histories())
def test_explanations_and_diffs_add_up_to_the_figures_on_any_history(
    stored: list[list[dict[str, Any]]],
) -> None:
    moment = datetime(2005, 3, 31, 23, tzinfo=UTC)
    for layout in ("2004", "2008"):
        figures = flatten(compute_return(stored, "WM", 2004, layout))
        for path, value in figures.items():
            if path != "ia":
                assert explain_figure(stored, "WM", 2004, path, layout).explained == value
        for change in diff_as_known_on(stored, "WM", 2004, layout, moment, None):
            moved = sum(offender.after - offender.before for offender in change.offenders)
            assert moved == change.after - change.before
