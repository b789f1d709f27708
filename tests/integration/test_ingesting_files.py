"""``mappa ingest FILE``: every good line stored once, every bad one reported, on both stores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.bootstrap import Tracker
from infra.cli import main
from infra.generator import generate_history
from tests.builders import History
from tests.conftest import TrackerFactory


def ingest(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, int], str]:
    status = main(["ingest", str(path), "--json", "--quiet"])
    out, err = capsys.readouterr()
    return status, json.loads(out.strip().splitlines()[-1]), err


def stored_event_ids(tracker: Tracker) -> list[str]:
    notifications = tracker.records.recorder.select_notifications(start=1, limit=10**6)
    return [
        n.topic + ":" + str(n.originator_id) + ":" + str(n.originator_version)
        for n in notifications
    ]


def test_ingesting_the_same_file_twice_changes_nothing(
    use_store: Tracker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "history.jsonl"
    lines = generate_history("WM", 2003, 2005, 40, seed=7, invalid_lines=False)
    path.write_text("\n".join(lines) + "\n")

    status, first, _ = ingest(path, capsys)
    assert status == 0
    assert first["accepted"] > 100 and first["rejected"] == 0
    stored = stored_event_ids(use_store)
    with use_store.views.transaction() as tx:
        tx.execute("SELECT COUNT(*) FROM victim_alerts")
        alerts_before = tx.fetchone()

    status, second, _ = ingest(path, capsys)
    assert status == 0
    assert second == {"accepted": 0, "duplicate": first["accepted"] + first["duplicate"],
                      "rejected": 0, "queried": 0}  # fmt: skip
    assert stored_event_ids(use_store) == stored
    with use_store.views.transaction() as tx:
        tx.execute("SELECT COUNT(*) FROM victim_alerts")
        assert tx.fetchone() == alerts_before


def test_malformed_lines_are_reported_by_number_and_field_and_good_lines_ingested(
    use_store: Tracker,
    tracker_factory: TrackerFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    h = History("WM-000010")
    h.add("custody.received", "2004-01-10T10:00:00+00:00", prison="HMP A", reason="sentence")
    h.add("mappa.level-changed", "2004-01-11T10:00:00+00:00", level=2)
    h.add("custody.released", "2004-06-01T10:00:00+01:00", releaseType="licence")
    good = h.lines()
    missing_occurred_at = json.loads(good[1])
    del missing_occurred_at["occurredAt"]
    missing_occurred_at["eventId"] = "0e9a4c1e-0000-4000-8000-000000000001"
    bad_level = json.loads(good[1])
    bad_level["additionalInformation"]["level"] = 4
    bad_level["eventId"] = "0e9a4c1e-0000-4000-8000-000000000002"
    unknown_type = json.loads(good[1])
    unknown_type["eventType"] = "custody.teleported"
    lines = [good[0], "{this is not json", json.dumps(missing_occurred_at), good[1],
             json.dumps(bad_level), json.dumps(unknown_type), good[2]]  # fmt: skip
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")

    status, summary, err = ingest(path, capsys)

    assert status != 0
    assert summary == {"accepted": 3, "duplicate": 0, "rejected": 4, "queried": 0}
    assert "line 2: rejected: not valid JSON" in err
    assert "line 3: rejected: occurredAt: field required" in err
    assert "line 5: rejected: additionalInformation.level:" in err
    assert "line 6: rejected: eventType: unknown event type 'custody.teleported'" in err
    # Nothing else changed: the store holds exactly what the good lines alone would give.
    reference = tracker_factory(separate_store=True)
    reference.ingest_service().ingest(list(enumerate(h.facts(), start=1)))
    ours = use_store.records.offender(h.facts()[0].offender_id)
    theirs = reference.records.offender(h.facts()[0].offender_id)
    assert ours.state == theirs.state
    assert [e.event_id for e in ours.history] == [e.event_id for e in theirs.history]


def test_a_retraction_naming_another_offenders_event_is_rejected_with_its_line(
    use_store: Tracker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = History("WM-000020"), History("WM-000021")
    reception = first.add(
        "custody.received", "2004-01-10T10:00:00+00:00", prison="A", reason="remand"
    )
    second.retract(reception, "2004-02-10T10:00:00+00:00")
    retraction_of_retraction = first.retract(reception, "2004-02-11T10:00:00+00:00")
    first.retract(retraction_of_retraction, "2004-02-12T10:00:00+00:00")
    path = tmp_path / "retractions.jsonl"
    path.write_text("\n".join([*first.lines()[:2], *second.lines(), first.lines()[2]]) + "\n")

    status, summary, err = ingest(path, capsys)

    assert status == 1
    assert summary["accepted"] == 2 and summary["rejected"] == 2
    assert "line 3: rejected: additionalInformation.eventId:" in err and "another offender" in err
    assert (
        "line 4: rejected: additionalInformation.eventId:" in err and "itself a retraction" in err
    )


def test_a_missing_file_is_a_usage_error(
    use_store: Tracker, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ingest", "/nonexistent/history.jsonl"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_a_byte_order_mark_and_windows_line_endings_are_accepted(
    use_store: Tracker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    h = History("WM-000030")
    h.add("custody.received", "2004-01-10T10:00:00+00:00", prison="HMP A", reason="sentence")
    h.add("mappa.level-changed", "2004-01-11T10:00:00+00:00", level=2)
    path = tmp_path / "windows.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(h.lines()).encode() + b"\r\n")
    status, summary, _ = ingest(path, capsys)
    assert (status, summary["accepted"], summary["rejected"]) == (0, 2, 0)


def test_as_known_on_accepts_a_bare_date_as_the_end_of_that_day_in_london(
    use_store: Tracker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    h = History("WM-000040")
    h.add("registration.started", "2004-05-01T10:00:00+01:00", period="P5Y", bcu="Worcester")
    path = tmp_path / "one.jsonl"
    path.write_text("\n".join(h.lines()) + "\n")
    ingest(path, capsys)
    answers = []
    for known_on in ("2000-01-01", "2100-01-01", "2100-01-01T00:00:00"):
        assert main(["return", "--area", "WM", "--year", "2004", "--as-known-on", known_on,
                     "--format", "json"]) == 0  # fmt: skip
        answers.append(json.loads(capsys.readouterr().out))
    assert [a["i"] for a in answers] == [0, 1, 1]
    assert answers[0]["asKnownOn"] == "2000-01-02T00:00:00+00:00"
