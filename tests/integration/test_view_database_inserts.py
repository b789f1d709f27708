"""Many rows inserted at once into the view database: on PostgreSQL as one statement over
column arrays (text columns sent as binary ``text[]`` by the tracker's own dumper), on SQLite
row by row; the rows stored are those given, whatever their text holds."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.viewdb import PostgresViewDatabase, SQLiteViewDatabase, TextArray, register_text_array
from projections.ports import ViewDatabase
from tests.conftest import BACKENDS, _create_schema, _drop_schema, database_url_for_tests

AWKWARD_TEXTS = [
    "plain",
    "",
    'O\'Brien "the" \\ backslash, {braces}, commas',
    "Zoë Brontë \u2013 😀 ∑",
    "NULL",
    "line\nbreak\ttab",
    "x" * 20_000,
]


@pytest.fixture(params=BACKENDS)
def views(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ViewDatabase]:
    if request.param == "sqlite":
        database: Any = SQLiteViewDatabase(tmp_path / "views.sqlite")
        yield database
        database.close()
        return
    schema = f"test_{uuid.uuid4().hex[:12]}"
    _create_schema(schema)
    database = PostgresViewDatabase(database_url_for_tests(), schema)
    try:
        yield database
    finally:
        database.close()
        _drop_schema(schema)


def create_table(views: ViewDatabase) -> None:
    with views.transaction() as tx:
        tx.execute(
            "CREATE TABLE notes (id TEXT NOT NULL PRIMARY KEY, body TEXT, "
            "count INTEGER NOT NULL, label TEXT)"
        )


def stored(views: ViewDatabase) -> list[tuple[Any, ...]]:
    with views.transaction() as tx:
        tx.execute("SELECT id, body, count, label FROM notes ORDER BY count")
        return [tuple(row) for row in tx.fetchall()]


def test_text_of_every_kind_and_nulls_are_stored_as_given(views: ViewDatabase) -> None:
    create_table(views)
    rows = [
        (f"id-{n}", text, n, None if n % 2 else f"label {n}")
        for n, text in enumerate([*AWKWARD_TEXTS, None])
    ]
    with views.transaction() as tx:
        tx.executemany("INSERT INTO notes (id, body, count, label) VALUES (%s, %s, %s, %s)", rows)
    assert stored(views) == rows


def test_an_upsert_given_one_key_twice_keeps_the_last_row(views: ViewDatabase) -> None:
    create_table(views)
    upsert = (
        "INSERT INTO notes (id, body, count, label) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (id) DO UPDATE SET body = excluded.body, count = excluded.count, "
        "label = excluded.label"
    )
    with views.transaction() as tx:
        tx.executemany(upsert, [("a", "first", 1, None), ("b", "other", 2, None)])
    with views.transaction() as tx:
        tx.executemany(upsert, [("a", "second", 3, "l"), ("a", "third", 4, "m")])
    assert stored(views) == [("b", "other", 2, None), ("a", "third", 4, "m")]


def test_the_binary_text_array_is_read_back_by_postgresql_as_given() -> None:
    import psycopg

    with psycopg.connect(database_url_for_tests(), autocommit=True) as conn:
        register_text_array(conn)
        for items in (AWKWARD_TEXTS, [], [None], ["a", None, ""]):
            got = conn.execute("SELECT %b::text[]", (TextArray(items),)).fetchone()
            assert got is not None and got[0] == items
