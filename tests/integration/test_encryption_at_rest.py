"""Encryption at rest of the event store, on both stores: with a key, the stored event rows
hold no offender or victim reference and no free text; with the wrong key (or none), the
command line and the service refuse to start and say why."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.cipher import AESCipher

from infra.bootstrap import Tracker, bootstrap
from infra.cli import main
from infra.encryption import StoreKeyError
from infra.settings import Settings
from tests.conftest import TrackerFactory, database_url_for_tests, free_port
from tests.http_support import FREE_TEXT, OFFENDER_DUR, OFFENDER_WM, VICTIM_DUR, VICTIM_WM, seed

KEY = AESCipher.create_key(32)
OTHER_KEY = AESCipher.create_key(32)
PLAINTEXTS = (OFFENDER_WM, OFFENDER_DUR, VICTIM_WM, VICTIM_DUR, FREE_TEXT)


def stored_event_rows(tracker: Tracker) -> list[bytes]:
    """Every stored event row of the event store, read from its table directly, as bytes."""
    settings = tracker.settings
    if not settings.database_url:
        with sqlite3.connect(settings.data_dir / "events.sqlite") as conn:
            rows = conn.execute("SELECT * FROM stored_events").fetchall()
    else:
        import psycopg
        from psycopg import sql

        with psycopg.connect(settings.database_url) as conn:
            tables = [
                name
                for (name,) in conn.execute(
                    "SELECT table_name FROM information_schema.columns WHERE table_schema = %s "
                    "AND column_name = 'state'",
                    (settings.database_schema,),
                )
            ]
            assert tables, "no event table found"
            rows = []
            for table in tables:
                query = sql.SQL("SELECT * FROM {}.{}").format(
                    sql.Identifier(settings.database_schema), sql.Identifier(table)
                )
                rows += conn.execute(query).fetchall()
    assert rows
    return [b"|".join(_bytes(value) for value in row) for row in rows]


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes | memoryview | bytearray):
        return bytes(value)
    return str(value).encode()


def _plaintexts_in(rows: list[bytes]) -> set[str]:
    return {text for text in PLAINTEXTS for row in rows if text.encode() in row}


def test_with_a_key_the_stored_event_rows_hold_no_reference_or_free_text(
    tracker_factory: TrackerFactory,
) -> None:
    encrypted = tracker_factory(cipher_key=KEY)
    seed(encrypted)
    assert _plaintexts_in(stored_event_rows(encrypted)) == set()
    # And the tracker still reads them back: the views hold the references.
    with encrypted.views.transaction() as tx:
        tx.execute("SELECT COUNT(*) FROM caseload_offenders")
        assert tx.fetchone() == (2,)


def test_without_a_key_the_same_rows_hold_them_in_clear(tracker_factory: TrackerFactory) -> None:
    # The control: the check above would see plaintext if it were there.
    plain = tracker_factory(separate_store=True)
    seed(plain)
    assert _plaintexts_in(stored_event_rows(plain)) == set(PLAINTEXTS)


def test_the_wrong_key_is_refused_when_the_store_is_opened(tracker_factory: TrackerFactory) -> None:
    seed(tracker_factory(cipher_key=KEY))
    with pytest.raises(StoreKeyError, match="does not decrypt the stored events"):
        tracker_factory(cipher_key=OTHER_KEY)
    with pytest.raises(StoreKeyError, match="look encrypted"):
        tracker_factory(cipher_key=None)
    assert tracker_factory(cipher_key=KEY).max_notification_id() > 0


def test_a_key_is_refused_on_a_store_written_without_one(tracker_factory: TrackerFactory) -> None:
    seed(tracker_factory())
    with pytest.raises(StoreKeyError, match="written unencrypted"):
        tracker_factory(cipher_key=KEY)


def test_a_malformed_key_is_refused_before_anything_is_opened(tmp_path: Path) -> None:
    for key, problem in (("not base64!", "not valid base64"), ("c2hvcnQ=", "16, 24 or 32")):
        settings = Settings(data_dir=tmp_path, database_url=None, cipher_key=key)  # type: ignore[arg-type]
        with pytest.raises(StoreKeyError, match=problem):
            bootstrap(settings)


@pytest.fixture
def store_env(tracker_factory: TrackerFactory, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An encrypted store with events in it, and the environment that points at it."""
    tracker = tracker_factory(cipher_key=KEY)
    seed(tracker)
    env = {"MAPPA_DATA_DIR": str(tracker.settings.data_dir), "MAPPA_CIPHER_KEY": OTHER_KEY}
    if tracker.settings.database_url:
        env["MAPPA_DATABASE_URL"] = database_url_for_tests()
        env["MAPPA_DATABASE_SCHEMA"] = tracker.settings.database_schema
    else:
        monkeypatch.delenv("MAPPA_DATABASE_URL", raising=False)
    monkeypatch.delenv("MAPPA_KAFKA_BOOTSTRAP", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def test_the_command_line_refuses_the_wrong_key_with_a_clear_message(
    store_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mappa: MAPPA_CIPHER_KEY does not decrypt the stored events")
    assert "Traceback" not in err
    assert OTHER_KEY not in err


def test_the_service_refuses_to_start_with_the_wrong_key(store_env: dict[str, str]) -> None:
    port = free_port()
    mappa = Path(sys.executable).with_name("mappa")
    finished = subprocess.run(
        [str(mappa), "serve", "--port", str(port)],
        env={**os.environ, **store_env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 2
    assert "MAPPA_CIPHER_KEY does not decrypt the stored events" in finished.stderr
    assert "Refusing to start" in finished.stderr
    with socket.socket() as s:  # nothing was left listening
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_the_embedded_store_is_made_in_a_directory_only_its_owner_can_read(
    tmp_path: Path,
) -> None:
    # SQLite makes its files readable by everyone under the usual umask; the directory
    # the tracker makes for them is its owner's alone.
    data_dir = tmp_path / "new" / "mappa-data"
    tracker = bootstrap(Settings(data_dir=data_dir, database_url=None))
    try:
        assert (data_dir.stat().st_mode & 0o777) == 0o700
        assert (data_dir / "views.sqlite").exists()
    finally:
        tracker.close()
