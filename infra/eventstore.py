"""The event store: the ``eventsourcing`` library's recorders, plus a global index of eventIds.

The contract makes ``eventId`` an idempotency key across every path and all time, and a
retraction must name an event of the *same* offender. Neither can be checked inside one
offender's stream, so each stored interchange event also gets a row in
``interchange_event_index`` (eventId -> offender, type), written by the recorder inside the
same transaction as the events themselves: the primary key makes a second acceptance of one
eventId impossible even between two concurrent writers.

The application uses the library's *process* recorder, so a consumer can store the position
it consumed (a ``Tracking`` record) in that same transaction too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple, Protocol, TypeVar, cast
from uuid import UUID

import orjson
from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.persistence import (
    JSONTranscoder,
    ProcessRecorder,
    StoredEvent,
    Tracking,
    Transcoder,
)
from eventsourcing.postgres import PostgresFactory, PostgresProcessRecorder
from eventsourcing.sqlite import SQLiteFactory, SQLiteProcessRecorder

from domain.offender import KnownEvent, Offender

INDEX_TABLE = "interchange_event_index"
# (event_id, offender_id, event_type) rows, passed to save() as the keyword ``event_index``.
IndexRow = tuple[str, str, str]
# The library stores one Tracking record with a batch; a batch taken from several Kafka
# partitions has one per partition: the others are passed to save() under this keyword.
MORE_TRACKING = "more_tracking"


class RelayShare(NamedTuple):
    """Which offenders a relay process publishes: those whose id falls in part ``part`` of
    ``parts`` (all of them with one process). An offender is always in the same part, so
    its events are published in order by one process."""

    part: int = 0
    parts: int = 1

    def holds(self, originator_id: UUID) -> bool:
        # The id's last byte: uniform for the tracker's ids (UUID 4 and 5 end in random or
        # hashed bytes), and what PostgreSQL reads as get_byte(uuid_send(id), 15).
        return originator_id.bytes[15] % self.parts == self.part


EVERY_OFFENDER = RelayShare()


class _Logged(Protocol):
    """A notification of the log, as far as paging it needs."""

    @property
    def id(self) -> int: ...
    @property
    def originator_id(self) -> object: ...


LoggedT = TypeVar("LoggedT", bound=_Logged)


def page_of_whole_runs(
    read: Callable[[int, int], Sequence[LoggedT]], start: int, limit: int
) -> list[LoggedT]:
    """A page of the notification log from ``start`` (``read(start, limit)`` gives up to
    ``limit`` notifications from there), of ``limit`` notifications or more: it does not
    end inside a run of one offender's events.

    One ingest transaction stores each offender's events one after the other, all recorded
    at one moment, and a projection must be given them together: victim alerts are judged
    on what was known at each moment, and half a moment's facts could raise an alert (then
    corrected) that the whole of them rules out. A page shorter than ``limit`` holds every
    event committed so far, and a transaction's events are committed together, so it ends
    at the end of one.
    """
    page = list(read(start, limit))
    if len(page) < limit:
        return page
    # A run is a few events as a rule: the rest of it is read a little at a time, not a
    # whole page more (the relay's reads of the store would otherwise double).
    chunk = min(limit, _RUN_CHUNK)
    while True:
        offender = page[-1].originator_id
        more = read(page[-1].id + 1, chunk)
        run = next((n for n, e in enumerate(more) if e.originator_id != offender), len(more))
        page.extend(more[:run])
        if run < chunk:  # the run ended, or the log did
            return page


_RUN_CHUNK = 64


class RelayRow(NamedTuple):
    """A stored event as the relay reads it: its notification, the originator id as text
    (the relay's message key and body both want the text)."""

    id: int
    originator_id: str
    originator_version: int
    topic: str
    state: bytes


class IndexedSQLiteProcessRecorder(SQLiteProcessRecorder):
    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            f"CREATE TABLE IF NOT EXISTS {INDEX_TABLE} (event_id TEXT PRIMARY KEY, "
            "offender_id TEXT NOT NULL, event_type TEXT NOT NULL) WITHOUT ROWID",
        ]

    def _insert_events(self, c: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Any:
        returning = super()._insert_events(c, stored_events, **kwargs)
        for tracking in kwargs.get(MORE_TRACKING) or ():
            self._insert_tracking(c, tracking)
        rows: list[IndexRow] = kwargs.get("event_index") or []
        if rows:
            c.executemany(f"INSERT INTO {INDEX_TABLE} VALUES (?, ?, ?)", rows)
        return returning

    def select_streams(self, originator_ids: Sequence[UUID]) -> list[StoredEvent]:
        """Every stored event of these streams, in (stream, version) order: one query for a
        whole batch of offenders instead of one per offender."""
        rows: list[StoredEvent] = []
        with self.datastore.transaction(commit=False) as c:
            for chunk in _chunks([i.hex for i in originator_ids], 500):
                marks = ",".join("?" * len(chunk))
                c.execute(
                    "SELECT originator_id, originator_version, topic, state "
                    f"FROM {self.events_table_name} WHERE originator_id IN ({marks}) "
                    "ORDER BY originator_id, originator_version",
                    list(chunk),
                )
                rows.extend(StoredEvent(UUID(r[0]), r[1], r[2], r[3]) for r in c.fetchall())
        return rows

    def select_streams_in_order(
        self, after: tuple[UUID, int] | None, below: UUID | None, upto: int, limit: int
    ) -> list[StoredEvent]:
        """Up to ``limit`` stored events in (stream, version) order: those after ``after``
        (a stream and version), of streams below ``below``, notified at or before ``upto``.
        A whole store read stream by stream, a page at a time (a rebuild's replay)."""
        conditions: list[str] = ["rowid <= ?"]
        params: list[Any] = [upto]
        if after is not None:
            conditions.append("(originator_id, originator_version) > (?, ?)")
            params.extend([after[0].hex, after[1]])
        if below is not None:
            conditions.append("originator_id < ?")
            params.append(below.hex)
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT originator_id, originator_version, topic, state "
                f"FROM {self.events_table_name} WHERE {' AND '.join(conditions)} "
                "ORDER BY originator_id, originator_version LIMIT ?",
                [*params, limit],
            )
            return [StoredEvent(UUID(r[0]), r[1], r[2], r[3]) for r in c.fetchall()]

    def known_events(self, event_ids: Sequence[str]) -> dict[str, KnownEvent]:
        found: dict[str, KnownEvent] = {}
        with self.datastore.transaction(commit=False) as c:
            for chunk in _chunks(event_ids, 500):
                marks = ",".join("?" * len(chunk))
                c.execute(
                    f"SELECT event_id, offender_id, event_type FROM {INDEX_TABLE} "
                    f"WHERE event_id IN ({marks})",
                    list(chunk),
                )
                for event_id, offender_id, event_type in c.fetchall():
                    found[event_id] = KnownEvent(UUID(offender_id), event_type)
        return found

    def select_relay_rows(
        self, start: int, limit: int, share: RelayShare = EVERY_OFFENDER
    ) -> list[RelayRow]:
        """``select_notifications(start=start, limit=limit)``, as the relay reads it."""
        if share.parts != 1:
            raise ValueError("on SQLite the relay runs as one process (SQLite has one writer)")
        return [
            RelayRow(n.id, str(n.originator_id), n.originator_version, n.topic, n.state)
            for n in self.select_notifications(start=start, limit=limit)
        ]


class IndexedPostgresProcessRecorder(PostgresProcessRecorder):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from psycopg.sql import SQL, Identifier

        super().__init__(*args, **kwargs)
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {schema}.{table} (event_id TEXT PRIMARY KEY, "
                "offender_id UUID NOT NULL, event_type TEXT NOT NULL)"
            ).format(schema=Identifier(self.datastore.schema), table=Identifier(INDEX_TABLE))
        )
        # The library sends a batch as one array of a composite type, which psycopg dumps
        # as escaped text (each event's bytes hex-encoded, then escaped again by regular
        # expressions): about 60 us an event, a quarter of ingest. Four arrays of plain
        # types in binary give PostgreSQL the same rows for a fraction of the work.
        self._insert_columns_statement = SQL(
            "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[]) "
            "RETURNING notification_id"
        ).format(schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name))

    def _insert_stored_events(
        self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        """As the library's (lock the table, notify, insert returning notification ids), in
        binary columns."""
        self._lock_table(curs)
        self._notify_channel(curs)
        curs.execute(
            self._insert_columns_statement,
            (
                [e.originator_id for e in stored_events],
                [e.originator_version for e in stored_events],
                [e.topic for e in stored_events],
                [e.state for e in stored_events],
            ),
        )

    def _insert_events(
        self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        from psycopg.sql import SQL, Identifier

        super()._insert_events(curs, stored_events, **kwargs)
        for tracking in kwargs.get(MORE_TRACKING) or ():
            self._insert_tracking(curs, tracking)
        rows: list[IndexRow] = kwargs.get("event_index") or []
        if rows:
            # One statement of three arrays, not a pipelined statement per row.
            curs.execute(
                SQL(
                    "INSERT INTO {schema}.{table} "
                    "SELECT * FROM unnest(%b::text[], %b::uuid[], %b::text[])"
                ).format(schema=Identifier(self.datastore.schema), table=Identifier(INDEX_TABLE)),
                tuple(map(list, zip(*rows, strict=True))),
            )

    def select_streams(self, originator_ids: Sequence[UUID]) -> list[StoredEvent]:
        """Every stored event of these streams, in (stream, version) order, in one query."""
        from psycopg.sql import SQL, Identifier

        if not originator_ids:
            return []
        query = SQL(
            "SELECT originator_id, originator_version, topic, state FROM {schema}.{table} "
            "WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
        ).format(schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name))
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(query, (list(originator_ids),))
            return [
                StoredEvent(
                    r["originator_id"], r["originator_version"], r["topic"], bytes(r["state"])
                )
                for r in curs.fetchall()
            ]

    def select_streams_in_order(
        self, after: tuple[UUID, int] | None, below: UUID | None, upto: int, limit: int
    ) -> list[StoredEvent]:
        """As the SQLite recorder's: a page of the store in (stream, version) order."""
        from psycopg.sql import SQL, Identifier

        conditions: list[str] = ["notification_id <= %s"]
        params: list[Any] = [upto]
        if after is not None:
            # A row comparison: the primary key's index walks straight to the next row.
            conditions.append("(originator_id, originator_version) > (%s, %s)")
            params.extend([after[0], after[1]])
        if below is not None:
            conditions.append("originator_id < %s")
            params.append(below)
        query = SQL(
            "SELECT originator_id, originator_version, topic, state FROM {schema}.{table} "
            "WHERE " + " AND ".join(conditions) + " "
            "ORDER BY originator_id, originator_version LIMIT %s"
        ).format(schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name))
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(query, (*params, limit))
            return [
                StoredEvent(
                    r["originator_id"], r["originator_version"], r["topic"], bytes(r["state"])
                )
                for r in curs.fetchall()
            ]

    def known_events(self, event_ids: Sequence[str]) -> dict[str, KnownEvent]:
        from psycopg.sql import SQL, Identifier

        found: dict[str, KnownEvent] = {}
        if not event_ids:
            return found
        query = SQL(
            "SELECT event_id, offender_id, event_type FROM {schema}.{table} "
            "WHERE event_id = ANY(%s)"
        ).format(schema=Identifier(self.datastore.schema), table=Identifier(INDEX_TABLE))
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(query, (list(event_ids),))
            for row in curs.fetchall():
                found[row["event_id"]] = KnownEvent(row["offender_id"], row["event_type"])
        return found

    def select_relay_rows(
        self, start: int, limit: int, share: RelayShare = EVERY_OFFENDER
    ) -> list[RelayRow]:
        """``select_notifications(start=start, limit=limit)``, as the relay reads it, in
        half the time: rows as tuples, not dictionaries, and the originator id spelled by
        PostgreSQL, instead of built into a UUID and spelled again by Python."""
        from psycopg.rows import args_row
        from psycopg.sql import SQL, Identifier

        # One share of the offenders: the rows of the others are skipped in the index scan
        # (RelayShare.holds says the same in Python).
        in_share = SQL("AND get_byte(uuid_send(originator_id), 15) %% {} = {} ").format(
            share.parts, share.part
        )
        query = SQL(
            "SELECT notification_id, originator_id::text, originator_version, topic, state "
            "FROM {schema}.{table} WHERE notification_id >= %s {in_share}"
            "ORDER BY notification_id LIMIT %s"
        ).format(
            schema=Identifier(self.datastore.schema),
            table=Identifier(self.events_table_name),
            in_share=in_share if share.parts > 1 else SQL(""),
        )
        with (
            self.datastore.get_connection() as conn,
            conn.cursor(row_factory=args_row(RelayRow)) as curs,
        ):
            curs.execute(query, (start, limit), prepare=True)
            return curs.fetchall()


class IndexedSQLiteFactory(SQLiteFactory):
    process_recorder_class = IndexedSQLiteProcessRecorder


class IndexedPostgresFactory(PostgresFactory):
    process_recorder_class = IndexedPostgresProcessRecorder


class OrjsonEncodingTranscoder(JSONTranscoder):
    """The library's JSON transcoder, encoding with orjson: the same JSON (each datetime,
    Decimal and the like as the library's ``{"_type_": ..., "_data_": ...}`` object, which
    orjson asks ``default`` for), so events are read back by the library's own decoder and
    stores written by either encoder are one format.

    Why: the standard encoder took a tenth of ingest (12% of a profile), orjson a tenth of
    that. orjson writes UUIDs itself, as plain strings, where the library writes a
    transcoded object; no event has a UUID field, but a state holding one (or anything else
    orjson refuses, such as an integer beyond 64 bits) is encoded by the library instead.
    """

    _OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS

    def encode(self, obj: Any) -> bytes:
        if isinstance(obj, dict) and not any(type(v) is UUID for v in obj.values()):
            try:
                return orjson.dumps(obj, default=self._encode_obj, option=self._OPTIONS)
            except orjson.JSONEncodeError:
                pass
        return super().encode(obj)


class OffenderRecords(Application[UUID]):
    """The application holding every offender's stream (named ``offenders`` in the store)."""

    name = "offenders"

    def construct_transcoder(self) -> Transcoder:
        transcoder = OrjsonEncodingTranscoder()
        self.register_transcodings(transcoder)
        return transcoder

    def construct_recorder(self) -> ProcessRecorder:
        # The process recorder stores events and a consumer's tracking position atomically.
        return self.factory.process_recorder()

    @property
    def indexed_recorder(self) -> IndexedSQLiteProcessRecorder | IndexedPostgresProcessRecorder:
        return cast("IndexedSQLiteProcessRecorder | IndexedPostgresProcessRecorder", self.recorder)

    def known_events(self, event_ids: Iterable[str]) -> dict[str, KnownEvent]:
        """Which of ``event_ids`` have been stored, by whom and of what type."""
        return self.indexed_recorder.known_events(sorted(set(event_ids)))

    def relay_rows(
        self, start: int, limit: int, share: RelayShare = EVERY_OFFENDER
    ) -> list[RelayRow]:
        """Up to ``limit`` stored events from notification id ``start`` on, in order, of
        the offenders in ``share``."""
        return self.indexed_recorder.select_relay_rows(start, limit, share)

    def save_batch(
        self,
        offenders: Sequence[Offender],
        event_index: list[IndexRow],
        tracking: Tracking | Sequence[Tracking] | None,
    ) -> None:
        """Store the offenders' new events, their index rows and ``tracking`` (the position
        in each upstream the batch came from) in one commit.

        ``Application.save()`` takes no tracking record (only a process application's
        policy does), so this builds the library's ``ProcessingEvent`` directly.
        """
        trackings = list(tracking) if isinstance(tracking, Sequence) else [tracking]
        first, *more = trackings or [None]
        processing_event: ProcessingEvent[UUID] = ProcessingEvent(tracking=first)
        processing_event.saved_kwargs[MORE_TRACKING] = more
        # What ProcessingEvent.collect_events() does, without its two isinstance() checks
        # against runtime protocols per aggregate (25 us each, a tenth of ingest).
        for offender in offenders:
            processing_event.events.extend(offender.collect_events())
            processing_event.aggregates[offender.id] = offender
        processing_event.saved_kwargs["event_index"] = event_index
        recordings = self._record(processing_event)
        self._take_snapshots(processing_event)
        self._notify(recordings)

    def position(self, upstream: str) -> int:
        """The next offset to consume from ``upstream`` (stored with the events), 0 if none."""
        return self.indexed_recorder.max_tracking_id(upstream) or 0

    def offenders(self, offender_ids: Sequence[UUID]) -> dict[UUID, Offender]:
        """The current state of each of these offenders that has a stream, in one query."""
        found: dict[UUID, Offender] = {}
        for stored in self.indexed_recorder.select_streams(offender_ids):
            event: Any = self.mapper.to_domain_event(stored)
            found[event.originator_id] = event.mutate(found.get(event.originator_id))
        return found

    def streams(
        self, start: UUID | None, below: UUID | None, upto: int, page: int = 20_000
    ) -> Iterator[list[StoredEvent]]:
        """Every event notified at or before ``upto`` of the streams from ``start`` up to
        (not including) ``below``, in (stream, version) order, a page of whole streams at a
        time (no stream is split between two pages), as stored."""
        recorder = self.indexed_recorder
        after: tuple[UUID, int] | None = None if start is None else (start, -1)  # versions >= 1
        carried: list[StoredEvent] = []
        while True:
            rows = recorder.select_streams_in_order(after, below, upto, page)
            last_page = len(rows) < page
            if rows:
                after = (cast(UUID, rows[-1].originator_id), rows[-1].originator_version)
            rows = carried + rows
            cut = len(rows)
            if not last_page:
                # The last stream of the page may go on in the next: carry it over.
                while cut > 0 and rows[cut - 1].originator_id == rows[-1].originator_id:
                    cut -= 1
            carried = rows[cut:]
            if cut:
                yield rows[:cut]
            if last_page:
                return

    def offender(self, offender_id: UUID) -> Offender:
        return cast("Offender", self.repository.get(offender_id))


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
