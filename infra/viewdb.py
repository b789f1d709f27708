"""The database holding the projections' views and positions: SQLite or PostgreSQL.

Projections write plain, portable SQL (``%s`` placeholders, ``INSERT ... ON CONFLICT``,
JSON kept as text), so one implementation of each view serves both stores.
"""

from __future__ import annotations

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


class _PostgresTransaction:
    dialect = "postgres"

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._cursor.execute(sql, tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._cursor.executemany(sql, [tuple(r) for r in rows])

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
