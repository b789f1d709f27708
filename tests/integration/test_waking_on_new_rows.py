"""The relay and the alert publisher wait for new rows by LISTENing, not by sleeping out a
poll interval: a commit wakes them at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg
import pytest

from infra.bootstrap import _wakeup
from infra.wakeup import PostgresWakeup
from projections.victim_alerts.projection import ALERTS_CHANNEL
from tests.builders import History
from tests.conftest import TrackerFactory, database_url_for_tests

pytestmark = pytest.mark.parametrize("backend", ["postgres"])  # LISTEN/NOTIFY is PostgreSQL's


def seconds_waited(wait: Callable[[float], object], limit: float) -> float:
    started = time.monotonic()
    wait(limit)
    return time.monotonic() - started


def after(seconds: float, action: Callable[[], object]) -> threading.Thread:
    def later() -> None:
        time.sleep(seconds)
        action()

    thread = threading.Thread(target=later)
    thread.start()
    return thread


def test_with_nothing_new_the_wait_lasts_its_full_time(backend: str) -> None:
    wakeup = PostgresWakeup(database_url_for_tests(), "mappa_test_nothing")
    try:
        assert seconds_waited(wakeup.wait, 0.5) >= 0.45
    finally:
        wakeup.close()


def test_a_commit_to_the_event_store_wakes_the_relay_at_once(
    backend: str, tracker_factory: TrackerFactory
) -> None:
    tracker = tracker_factory()
    wait = _wakeup(tracker, tracker.records.recorder.channel_name)  # type: ignore[attr-defined]
    assert wait is not None
    wait(0.01)  # LISTENing from now on
    h = History("WM-000200")
    h.add("mappa.category-assigned", "2005-01-01T09:00:00+00:00", category=1)
    thread = after(0.3, lambda: tracker.ingest_service().ingest(list(enumerate(h.facts()))))
    waited = seconds_waited(wait, 20)
    thread.join()
    assert 0.25 <= waited < 10


def test_raising_an_alert_wakes_the_alert_publisher_at_once(
    backend: str, tracker_factory: TrackerFactory
) -> None:
    tracker = tracker_factory()
    wait = _wakeup(tracker, ALERTS_CHANNEL)
    assert wait is not None
    wait(0.01)
    h = History("WM-000201")
    h.add(
        "custody.received", "2005-01-01T09:00:00+00:00", prison="HMP Long Lartin", reason="sentence"
    )
    h.add("victim.enrolled", "2005-01-02T09:00:00+00:00", victimRef="V-1", vloRef="VLO-WM-01")
    h.add("custody.absconded", "2005-02-01T09:00:00+00:00")
    tracker.ingest_service().ingest(list(enumerate(h.facts())))

    thread = after(0.3, tracker.catch_up)
    waited = seconds_waited(wait, 20)
    thread.join()
    assert 0.25 <= waited < 10
    with tracker.views.transaction() as tx:
        tx.execute("SELECT count(*) FROM victim_alerts WHERE kind = 'absconded'")
        assert tx.fetchone() == (1,)


def test_notices_seen_while_busy_do_not_cut_the_next_wait_short(backend: str) -> None:
    wakeup = PostgresWakeup(database_url_for_tests(), "mappa_test_busy")
    try:
        wakeup.wait(0.01)
        with psycopg.connect(database_url_for_tests(), autocommit=True) as conn:
            for _ in range(5):
                conn.execute("NOTIFY mappa_test_busy")
        # Busy a while longer, as a process is between two waits: the server delivers each
        # notice to the listening connection on its own, and on a loaded machine the last
        # ones could otherwise reach it only after the first wait had returned.
        time.sleep(0.3)
        assert seconds_waited(wakeup.wait, 5) < 1  # woken by what came while busy
        assert seconds_waited(wakeup.wait, 0.5) >= 0.45  # and only once
    finally:
        wakeup.close()


def test_without_the_database_the_wait_is_a_plain_sleep(backend: str) -> None:
    wakeup = PostgresWakeup("postgresql://nobody@127.0.0.1:1/none", "mappa_test_away")
    assert 0.25 <= seconds_waited(wakeup.wait, 0.3) < 6
