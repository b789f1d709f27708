"""A fact one projection cannot take stops that view only, on SQLite and PostgreSQL.

A release notice once made the victim-alerts rules fail (a date past the year 9999): the
embedded catch-up stopped there, every view after it in the loop stayed behind with it, and
`mappa serve` would not start again. Now each view is brought up to date on its own; the
ones left behind are named, and the commands that read the others still answer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from infra import cli
from infra.bootstrap import NOTIFICATION_LOG, ProjectionsBehind, Tracker
from infra.http import server
from projections.base import OffenderHistory
from projections.ports import Transaction
from projections.victim_alerts.projection import VictimAlertsProjection
from tests.builders import History


class Unjudgeable(Exception):
    """What the broken rules raise in these tests."""


def alerts_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Any, tx: Transaction, offenders: Sequence[OffenderHistory]) -> None:
        raise Unjudgeable("cannot judge this fact")

    monkeypatch.setattr(VictimAlertsProjection, "refresh", refuse)


def offender() -> History:
    history = History("WM-000801")
    history.add("mappa.category-assigned", "2005-01-10T10:00:00+00:00", category=2)
    history.add("mappa.level-changed", "2005-01-10T10:00:00+00:00", level=2)
    history.add("custody.received", "2005-02-01T10:00:00+00:00", prison="HMP X", reason="sentence")
    return history


def write(path: Path, history: History) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in history.documents))
    return path


def test_the_views_after_a_failing_one_are_still_brought_up_to_date(
    tracker: Tracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker.ingest_service().ingest(list(enumerate(offender().facts())))
    alerts_fail(monkeypatch)

    with pytest.raises(ProjectionsBehind) as behind:
        tracker.catch_up()

    assert list(behind.value.failures) == ["victim-alerts"]
    assert "victim-alerts (Unjudgeable)" in str(behind.value)
    stored = tracker.max_notification_id()
    positions = {name: w.position(NOTIFICATION_LOG) for name, w in tracker.writers.items()}
    assert positions == {
        "caseload": stored,
        "statistical-return": stored,
        "victim-alerts": 0,
        "data-quality": stored,
    }


def test_mappa_ingest_stores_everything_and_names_the_view_left_behind(
    use_store: Tracker,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    alerts_fail(monkeypatch)
    status = cli.main(["ingest", "--quiet", str(write(tmp_path / "h.jsonl", offender()))])
    out, err = capsys.readouterr()

    assert status == 1
    assert "accepted 3" in out
    assert "warning: some views are left behind, not up to date: victim-alerts" in err
    assert "cannot judge" not in err  # a message may quote a fact: the type is named only


def test_a_command_reading_a_view_up_to_date_answers_with_a_warning(
    use_store: Tracker, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_store.ingest_service().ingest(list(enumerate(offender().facts())))
    alerts_fail(monkeypatch)

    status = cli.main(["caseload", "--area", "WM", "--on", "2005-03-01"])
    out, err = capsys.readouterr()

    assert status == 0
    assert "WM-000801" in out
    assert "left behind, not up to date: victim-alerts" in err


def test_the_service_starts_with_a_view_left_behind(
    tracker: Tracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker.ingest_service().ingest(list(enumerate(offender().facts())))
    alerts_fail(monkeypatch)
    served: list[int] = []
    monkeypatch.setattr("uvicorn.run", lambda app, **options: served.append(options["port"]))
    # Not this test process's signal handlers.
    monkeypatch.setattr("consumers.runtime.Shutdown.install", lambda self: self)

    server.serve(tracker.settings, "127.0.0.1", 18099)

    assert served == [18099]
