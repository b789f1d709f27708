"""The database holding the projections' views and positions: SQLite or PostgreSQL.

Projections write plain, portable SQL (``%s`` placeholders, ``INSERT ... ON CONFLICT``,
JSON kept as text), so one implementation of each view serves both stores.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class _SQLiteTransaction:
    dialect = "sqlite"

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._cursor.execute(sql.replace("%s", "?"), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._cursor.executemany(sql.replace("%s", "?"), [tuple(r) for r in rows])

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._cursor.fetchall()

    def fetchone(self) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._cursor.fetchone()
        return row


class SQLiteViewDatabase:
    """Views in one SQLite file (the embedded default)."""

    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._local = threading.local()

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[_SQLiteTransaction]:
        conn = self._connection()
        cursor = conn.cursor()
        # IMMEDIATE takes the write lock up front, so two writers queue instead of failing
        # half-way with "database is locked" on upgrade from a read lock.
        cursor.execute("BEGIN IMMEDIATE")
        try:
            yield _SQLiteTransaction(cursor)
        except BaseException:
            conn.rollback()
            raise
        else:
            conn.commit()
        finally:
            cursor.close()

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


_INSERT_VALUES = re.compile(
    r"^\s*INSERT INTO (?P<table>\w+) \((?P<columns>[\w, ]+)\)\s*"
    r"VALUES \((?P<marks>(?:%s,\s*)*%s)\)(?P<rest>.*)$",
    re.DOTALL,
)
_CONFLICT_UPDATE = re.compile(r"ON CONFLICT \((?P<key>[\w, ]+)\) DO UPDATE", re.DOTALL)


class _ArrayInserts:
    """``INSERT ... VALUES (%s, ...)`` for many rows as ONE statement over column arrays.

    psycopg's ``executemany`` sends a statement per row (pipelined): some 30 us of Python
    per row, most of a projector's time writing views. ``unnest`` of one array per column,
    typed from the table's own columns, gives PostgreSQL the same rows in one statement.
    """

    def __init__(self) -> None:
        self._statements: dict[str, tuple[str, tuple[int, ...]] | None] = {}

    def rewrite(self, cursor: Any, sql: str) -> tuple[str, tuple[int, ...]] | None:
        # By statement alone: every schema the tracker creates gives a table the same types.
        if sql not in self._statements:
            self._statements[sql] = self._build(cursor, sql)
        return self._statements[sql]

    def _build(self, cursor: Any, sql: str) -> tuple[str, tuple[int, ...]] | None:
        match = _INSERT_VALUES.match(sql)
        if match is None:
            return None
        columns = [c.strip() for c in match["columns"].split(",")]
        if match["marks"].count("%s") != len(columns):
            return None
        cursor.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            (match["table"],),
        )
        types = dict(cursor.fetchall())
        if not all(c in types for c in columns):
            return None
        # Binary: in text, psycopg escapes every string of an array with regular expressions.
        arrays = ", ".join(f"%b::{types[c]}[]" for c in columns)
        statement = (
            f"INSERT INTO {match['table']} ({', '.join(columns)}) "
            f"SELECT * FROM unnest({arrays}){match['rest']}"
        )
        conflict = _CONFLICT_UPDATE.search(match["rest"])
        keys: tuple[int, ...] = ()
        if conflict is not None:
            named = [k.strip() for k in conflict["key"].split(",")]
            if not all(k in columns for k in named):
                return None
            keys = tuple(columns.index(k) for k in named)
        return statement, keys


_ARRAY_INSERTS = _ArrayInserts()


class _PostgresTransaction:
    dialect = "postgres"

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._cursor.execute(sql, tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        insert = _ARRAY_INSERTS.rewrite(self._cursor, sql)
        if insert is None:
            self._cursor.executemany(sql, [tuple(r) for r in rows])
            return
        statement, key_positions = insert
        if key_positions:
            # ON CONFLICT DO UPDATE may not touch one row twice in a statement: keep each
            # key's last row, as the statements one by one would have left it.
            last = {tuple(row[i] for i in key_positions): row for row in rows}
            rows = list(last.values())
        self._cursor.execute(statement, [list(column) for column in zip(*rows, strict=True)])

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self._cursor.fetchall()
        return rows

    def fetchone(self) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._cursor.fetchone()
        return row


class PostgresViewDatabase:
    """Views in PostgreSQL, in the configured schema (one connection per thread)."""

    dialect = "postgres"

    def __init__(self, url: str, schema: str) -> None:
        self._url = url
        self._schema = schema
        self._local = threading.local()

    def _connection(self) -> Any:
        import psycopg
        from psycopg import sql

        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            conn = psycopg.connect(self._url, autocommit=True)
            conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self._schema))
            )
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self._schema)))
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[_PostgresTransaction]:
        conn = self._connection()
        with conn.transaction(), conn.cursor() as cursor:
            yield _PostgresTransaction(cursor)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
