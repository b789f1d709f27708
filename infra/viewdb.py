"""The database holding the projections' views and positions: SQLite or PostgreSQL.

Projections write plain, portable SQL (``%s`` placeholders, ``INSERT ... ON CONFLICT``,
JSON kept as text), so one implementation of each view serves both stores.
"""

from __future__ import annotations

import operator
import re
import sqlite3
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import Any, NamedTuple


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


class TextArray(list[str | None]):
    """A list of strings (or None) sent to PostgreSQL as one binary ``text[]``.

    psycopg's own list dumper works element by element in Python (a tenth of a projector's
    Python time went to dumping the arrays of its inserts); this one does the same work in
    a few calls to C (see ``_dump_text_array``)."""


_TEXT_OID, _TEXT_ARRAY_OID = 25, 1009
# Dimensions (one), has NULLs, element type, then the dimension's length and lower bound.
_ARRAY_HEADER = struct.Struct(">iiIii")
_EMPTY_TEXT_ARRAY = struct.pack(">iiI", 0, 0, _TEXT_OID)
_INT4 = struct.Struct(">i").pack
_NULL_LENGTH = _INT4(-1)


def _dump_text_array(items: Sequence[str | None]) -> bytes:
    """``items`` in PostgreSQL's binary array format (``array_recv``): a header, then each
    element as its length (-1: NULL) and its UTF-8 bytes."""
    if not items:
        return _EMPTY_TEXT_ARRAY
    if None in items:
        parts = [
            _NULL_LENGTH if item is None else _INT4(len(data := item.encode())) + data
            for item in items
        ]
        body = b"".join(parts)
        has_nulls = 1
    else:
        encoded = list(map(str.encode, items))  # type: ignore[arg-type]  # no None here
        body = b"".join(
            chain.from_iterable(zip(map(_INT4, map(len, encoded)), encoded, strict=True))
        )
        has_nulls = 0
    return _ARRAY_HEADER.pack(1, has_nulls, _TEXT_OID, len(items), 1) + body


def register_text_array(connection: Any) -> None:
    """Have this psycopg connection send :class:`TextArray` with ``_dump_text_array``."""
    from psycopg.adapt import Dumper
    from psycopg.pq import Format

    class TextArrayBinaryDumper(Dumper):
        format = Format.BINARY
        oid = _TEXT_ARRAY_OID

        def dump(self, obj: Any) -> bytes:
            return _dump_text_array(obj)

    connection.adapters.register_dumper(TextArray, TextArrayBinaryDumper)


def _only_text(column: Sequence[Any]) -> bool:
    return set(map(type, column)) <= {str, type(None)}


class _ArrayInsert(NamedTuple):
    statement: str
    # The key of ON CONFLICT ... DO UPDATE, as a function of a row (None: no such clause).
    key: Callable[[Sequence[Any]], Any] | None
    # The columns of type text, sent as TextArray when every value is a string or None.
    text_columns: tuple[int, ...]


class _ArrayInserts:
    """``INSERT ... VALUES (%s, ...)`` for many rows as ONE statement over column arrays.

    psycopg's ``executemany`` sends a statement per row (pipelined): some 30 us of Python
    per row, most of a projector's time writing views. ``unnest`` of one array per column,
    typed from the table's own columns, gives PostgreSQL the same rows in one statement.
    """

    def __init__(self) -> None:
        self._statements: dict[str, _ArrayInsert | None] = {}

    def rewrite(self, cursor: Any, sql: str) -> _ArrayInsert | None:
        # By statement alone: every schema the tracker creates gives a table the same types.
        if sql not in self._statements:
            self._statements[sql] = self._build(cursor, sql)
        return self._statements[sql]

    def _build(self, cursor: Any, sql: str) -> _ArrayInsert | None:
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
        key = None
        if conflict is not None:
            named = [k.strip() for k in conflict["key"].split(",")]
            if not all(k in columns for k in named):
                return None
            key = operator.itemgetter(*(columns.index(k) for k in named))
        text_columns = tuple(i for i, c in enumerate(columns) if types[c] == "text")
        return _ArrayInsert(statement, key, text_columns)


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
        if insert.key is not None:
            # ON CONFLICT DO UPDATE may not touch one row twice in a statement: keep each
            # key's last row, as the statements one by one would have left it.
            key = insert.key
            rows = list({key(row): row for row in rows}.values())
        columns: list[list[Any]] = [list(column) for column in zip(*rows, strict=True)]
        for index in insert.text_columns:
            if _only_text(columns[index]):
                columns[index] = TextArray(columns[index])
        self._cursor.execute(insert.statement, columns)

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
            register_text_array(conn)
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
