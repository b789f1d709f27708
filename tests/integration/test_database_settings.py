"""The settings scripts/postgres gives the server, where the tracker depends on them."""

from __future__ import annotations

import psycopg

from tests.conftest import database_url_for_tests


def test_an_autovacuum_holding_off_the_event_store_is_cancelled_within_a_tenth_of_a_second() -> (
    None
):
    # Storing events locks the event store table; an autoanalyze of it would otherwise hold
    # ingest (and every alert behind it) for the default second before being cancelled.
    with psycopg.connect(database_url_for_tests()) as conn:
        row = conn.execute("SHOW deadlock_timeout").fetchone()
    assert row == ("100ms",)
