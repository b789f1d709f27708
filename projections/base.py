"""Projections: pure folds of each offender's facts, plus one writer that stores them.

Every projection here has the same shape. Its fold state per offender is the offender's
*history*: the fact documents received (interchange documents plus ``recordedAt``), kept in
arrival order with the stream version last applied. From a history a projection derives its
view rows with pure functions (``refresh``); the rules never look at arrival order, so late
facts land where they happened.

The :class:`ProjectionWriter` applies a batch of stored events in ONE transaction:

1. read the stored position of this projection for the batch's upstream (the notification
   log, or one Kafka partition) and drop events at or before it (a redelivered batch);
2. load the histories of the offenders in the batch and drop events whose stream version
   was already applied (a duplicate published by a relay that crashed mid-batch);
3. append the new facts, derive each touched offender's view rows afresh;
4. store histories, rows and the new position, and commit.

So redelivery is a no-op, a crash before commit repeats the batch harmlessly, and
``rebuild`` (reset, then replay from position zero) gives the incremental run's view.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

import orjson

from domain import events as ev
from domain.offender import mappa_ref_of
from projections.ports import Transaction, ViewDatabase

History = list[dict[str, Any]]

_COMMON_TABLES = (
    "CREATE TABLE IF NOT EXISTS projection_positions (projection TEXT NOT NULL, "
    "upstream TEXT NOT NULL, position BIGINT NOT NULL, PRIMARY KEY (projection, upstream))",
    "CREATE TABLE IF NOT EXISTS projection_histories (projection TEXT NOT NULL, "
    "offender_id TEXT NOT NULL, mappa_ref TEXT NOT NULL, version INTEGER NOT NULL, "
    "history TEXT NOT NULL, PRIMARY KEY (projection, offender_id))",
    # One copy of an offender's history up to a version, for every projection whose row
    # holds ``SHARED_HISTORY`` at that version (see ``store_shared_histories``).
    "CREATE TABLE IF NOT EXISTS shared_histories (offender_id TEXT NOT NULL, "
    "version INTEGER NOT NULL, history TEXT NOT NULL, PRIMARY KEY (offender_id, version))",
)
# A projection's stored history that is the shared copy of the offender's history at the
# row's version. Never the JSON of a history, which is at least ``[]``: the marker needs no
# column of its own, so stores made before it need no migration.
SHARED_HISTORY = ""
# A projection's row ``h`` that refers to the shared copy (``SHARED_HISTORY``, in SQL).
_REFERS_TO_SHARED = "h.history = ''"
# A stored history's JSON, the shared copy read where the projection's row refers to it;
# ``h`` is the projection's row.
_HISTORY_JSON = (
    f"CASE WHEN {_REFERS_TO_SHARED} THEN (SELECT s.history FROM shared_histories s "
    "WHERE s.offender_id = h.offender_id AND s.version = h.version) ELSE h.history END"
)
_HISTORY_COLUMNS = f"h.mappa_ref, h.version, {_HISTORY_JSON}"
# The text columns long enough to be compressed (TOAST). A history is rewritten whole at each
# batch that adds to it, and compressed again: with PostgreSQL's default, pglz, a data-quality
# projector's server CPU was 27 us per event, with lz4 18 (measured in-process, three runs each
# over one 181,320-event topic).
_COMPRESSED_COLUMNS = (("projection_histories", "history"), ("shared_histories", "history"))


class OffenderHistory:
    """One offender's history as a projection holds it: the fact documents, kept in arrival
    order, with the stream version last applied and what the projection derived from them.

    Between batches, in a writer's cache, a history may keep its documents as their JSON
    only (``shed``): decoded, they took five times the memory, half of a cached history,
    while most batches only need the documents they add (``documents_since``). Reading
    ``documents`` decodes them again.
    """

    __slots__ = (
        "_appended",
        "_decoded",
        "_shed_count",
        "changed",
        "encoded",
        "encoded_count",
        "known_before",
        "mappa_ref",
        "memo",
        "new_events",
        "new_facts",
        "offender_id",
        "version",
    )  # fmt: skip

    def __init__(
        self,
        offender_id: str,
        mappa_ref: str,
        version: int = 0,
        documents: History | None = None,
        *,
        known_before: int = 0,
        encoded: str | None = None,
        encoded_count: int = 0,
    ) -> None:
        self.offender_id = offender_id
        self.mappa_ref = mappa_ref
        self.version = version
        self.changed = False
        # How many documents the history had before this batch: the rest arrived in it.
        self.known_before = known_before
        # The typed events applied in this batch, in stream order: the tracker's own
        # findings (data-quality queries), and facts delivered as events. Not stored: only
        # the documents are kept between batches.
        self.new_events: list[ev.OffenderEvent] = []
        # The typed event of each document added in this batch, None where the fact came as
        # its document only (``typed_events`` builds it, if a projection asks).
        self.new_facts: list[ev.InterchangeEvent | None] = []
        # Whatever a projection keeps between batches to avoid refolding a history (in
        # memory only, with the history, in the writer's cache).
        self.memo: dict[str, Any] = {}
        # The JSON of the first ``encoded_count`` documents, as last stored or read
        # (documents are only ever appended): see ``encode``.
        self.encoded = encoded
        self.encoded_count = encoded_count
        # The documents, decoded; None when shed: then the first ``_shed_count`` are in
        # ``encoded`` only (which may hold more, once encoded again), and ``_appended`` holds
        # those appended since.
        self._decoded: History | None = [] if documents is None else documents
        self._shed_count = 0
        self._appended: History = []

    def __repr__(self) -> str:
        return (
            f"OffenderHistory({self.offender_id!r}, {self.mappa_ref!r}, "
            f"version={self.version}, documents={self.document_count})"
        )

    @property
    def documents(self) -> History:
        """Every document, in arrival order (decoded from ``encoded`` if shed)."""
        if self._decoded is None:
            assert self.encoded is not None, "a history is shed only with its JSON"
            self._decoded = [*orjson.loads(self.encoded)[: self._shed_count], *self._appended]
            self._appended = []
        return self._decoded

    @property
    def document_count(self) -> int:
        if self._decoded is None:
            return self._shed_count + len(self._appended)
        return len(self._decoded)

    def documents_since(self, start: int) -> History:
        """The documents from the ``start``-th on, decoding none of those before it."""
        if self._decoded is None and start >= self._shed_count:
            return self._appended[start - self._shed_count :]
        return self.documents[start:]

    @property
    def added_documents(self) -> History:
        """The documents added in this batch."""
        return self.documents_since(self.known_before)

    def append(self, document: dict[str, Any]) -> None:
        if self._decoded is None:
            self._appended.append(document)
        else:
            self._decoded.append(document)

    def begin_batch(self) -> None:
        self.known_before = self.document_count
        self.changed = False
        self.new_events = []
        self.new_facts = []

    def shed(self) -> None:
        """Keep the documents as their JSON only, and forget the typed events made of them
        (to be kept in a cache; ``typed_events`` builds them again if asked); call after
        ``encode``."""
        self.new_events, self.new_facts = [], []
        self.memo.pop(_TYPED_EVENTS, None)
        count = self.document_count
        if self.encoded is not None and self.encoded_count == count:
            self._decoded, self._shed_count, self._appended = None, count, []

    def encode(self) -> str:
        """The JSON of the whole history, as ``orjson.dumps(documents)`` spells it.

        Made by appending the JSON of the documents added since it was last made: encoding
        the whole history again at every batch was a seventh of a projector's time.
        """
        count = self.document_count
        if self.encoded is None or self.encoded_count > count:
            text = orjson.dumps(self.documents).decode()
        elif self.encoded_count == count:
            return self.encoded
        else:
            added = orjson.dumps(self.documents_since(self.encoded_count)).decode()
            text = added if self.encoded_count == 0 else f"{self.encoded[:-1]},{added[1:]}"
        self.encoded, self.encoded_count = text, count
        return text


class Delivery(NamedTuple):
    """A stored event as delivered to a projection, with its place in its upstream: as its
    event, or (a fact read from Kafka) as its fact document only, with whose it is and its
    version: most projections never need the typed event, and building it was a tenth of
    their time.

    A named tuple, not a frozen dataclass: one is made for every event delivered, and a
    frozen dataclass's ``__init__`` (``object.__setattr__`` per field) took 2.5 times as long.
    """

    position: int
    event: ev.OffenderEvent | None
    # The event's fact document when the deliverer has it already (a Kafka message carries
    # it), so that folding need not rebuild it from the event.
    document: dict[str, Any] | None = None
    # Only without ``event``: the offender's id and the event's version in their stream.
    # (Without ``document`` too: a finding, for a projection that does not read them.)
    offender_id: UUID | None = None
    version: int = 0

    @property
    def originator_id(self) -> UUID:
        if self.event is not None:
            return self.event.originator_id
        assert self.offender_id is not None, "a delivery without its event names its offender"
        return self.offender_id

    @property
    def originator_version(self) -> int:
        return self.event.originator_version if self.event is not None else self.version


class Projection(ABC):
    """A view derived from offenders' histories. Subclasses are pure apart from SQL."""

    name: str
    # Whether ``refresh`` reads every document of the histories it is given, at nearly every
    # batch (victim alerts): then a writer's cache keeps them decoded. Otherwise it keeps
    # them as their JSON only, and a projection decoding them all is the exception.
    reads_every_document: bool = False
    # Whether the projection reads the tracker's findings (``OffenderHistory.new_events``):
    # a Kafka projector of one that does not is delivered them as their version only.
    reads_findings: bool = False

    @abstractmethod
    def create_tables(self, tx: Transaction) -> None: ...

    @abstractmethod
    def reset(self, tx: Transaction) -> None:
        """Delete the derived rows that a rebuild recreates."""

    @abstractmethod
    def refresh(self, tx: Transaction, offenders: Sequence[OffenderHistory]) -> None:
        """Re-derive the view rows of these offenders from their histories."""


def create_common_tables(tx: Transaction) -> None:
    for statement in _COMMON_TABLES:
        tx.execute(statement)
    compress_with_lz4(tx, _COMPRESSED_COLUMNS)


def compress_with_lz4(tx: Transaction, columns: Sequence[tuple[str, str]]) -> None:
    """Have PostgreSQL compress these (table, column)s with lz4 when it can (a server built
    without lz4 keeps pglz); only values written from now on change, so an existing store
    needs no rewrite."""
    if tx.dialect != "postgres":
        return
    tx.execute(
        "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
    )
    row = tx.fetchone()
    if not (row and row[0]):
        return
    for table, column in columns:
        tx.execute(
            "SELECT attcompression FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attname = %s",
            (table, column),
        )
        found = tx.fetchone()
        if found is not None and found[0] != "l":  # altered once; the lock is brief
            tx.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION lz4")


def in_list(
    tx: Transaction, column: str, values: Sequence[Any]
) -> list[tuple[str, tuple[Any, ...]]]:
    """``column IN values`` as conditions with their parameters, to run one by one.

    On PostgreSQL one condition over one array parameter: psycopg parses a statement of
    500 placeholders anew each time (measured, a twentieth of a projector's time), and the
    planner treats ``IN (...)`` as ``= ANY(array)`` anyway. Elsewhere 500 placeholders a
    condition (SQLite limits the parameters of one statement).
    """
    if not values:
        return []
    if tx.dialect == "postgres":
        return [(f"{column} = ANY(%s)", (list(values),))]
    return [
        (f"{column} IN ({', '.join(['%s'] * len(chunk))})", tuple(chunk))
        for chunk in (values[start : start + 500] for start in range(0, len(values), 500))
    ]


# Each wanted offender's rows looked up on their own, through the table's offender index,
# rather than `offender_id = ANY(%s)`: with statistics taken while the table was empty or
# small (a new store, before autovacuum analyses it again), the planner scanned the whole
# table at every batch (victim alerts: 189 scans reading 1.8 million rows in one catch-up,
# and the projector's database time went from 22 to 70-94 us per event). ``OFFSET 0`` keeps
# the planner from flattening the lateral subquery into a join, which it could again plan as
# a scan of the whole table.
ROWS_OF_OFFENDERS_ON_POSTGRES = (
    "SELECT wanted.offender_id, r.* FROM unnest(%s::text[]) AS wanted(offender_id), "
    "LATERAL (SELECT {columns} FROM {table} WHERE offender_id = wanted.offender_id OFFSET 0) AS r"
)


def rows_of_offenders(
    tx: Transaction, table: str, columns: Sequence[str], offender_ids: Sequence[str]
) -> list[tuple[Any, ...]]:
    """The offender id and ``columns`` of every row of ``table`` about these offenders
    (``table`` must have an index on ``offender_id``)."""
    if not offender_ids:
        return []
    listed = ", ".join(columns)
    if tx.dialect == "postgres":
        statement = ROWS_OF_OFFENDERS_ON_POSTGRES.format(columns=listed, table=table)
        tx.execute(statement, (list(offender_ids),))
        return tx.fetchall()
    rows: list[tuple[Any, ...]] = []
    for condition, params in in_list(tx, "offender_id", offender_ids):
        tx.execute(f"SELECT offender_id, {listed} FROM {table} WHERE {condition}", params)
        rows.extend(tx.fetchall())
    return rows


def read_position(tx: Transaction, reader: str, upstream: str) -> int:
    """How far ``reader`` has got in ``upstream`` (0: nothing read yet)."""
    tx.execute(
        "SELECT position FROM projection_positions WHERE projection = %s AND upstream = %s",
        (reader, upstream),
    )
    row = tx.fetchone()
    return int(row[0]) if row else 0


def _lock_position(tx: Transaction, reader: str, upstream: str) -> int:
    """Read the position and hold it until commit.

    During a Kafka rebalance an old owner of a partition may still be storing a batch when
    the new owner starts on it; the row lock makes the second wait for the first, then see
    its position and skip what it stored. (SQLite's transactions are serialised anyway.)
    """
    if tx.dialect == "postgres":
        tx.execute(
            "INSERT INTO projection_positions (projection, upstream, position) "
            "VALUES (%s, %s, 0) ON CONFLICT (projection, upstream) DO NOTHING",
            (reader, upstream),
        )
        tx.execute(
            "SELECT position FROM projection_positions "
            "WHERE projection = %s AND upstream = %s FOR UPDATE",
            (reader, upstream),
        )
        row = tx.fetchone()
        return int(row[0]) if row else 0
    return read_position(tx, reader, upstream)


def write_position(tx: Transaction, reader: str, upstream: str, position: int) -> None:
    tx.execute(
        "INSERT INTO projection_positions (projection, upstream, position) "
        "VALUES (%s, %s, %s) ON CONFLICT (projection, upstream) "
        "DO UPDATE SET position = excluded.position",
        (reader, upstream, position),
    )


class ProjectionWriter:
    """Stores a projection's view and its position in one transaction per batch.

    It keeps the histories it stored in memory (an LRU cache), checked against the stored
    stream version at each batch: another instance may have moved an offender on during a
    rebalance, and then the stored history is read again.
    """

    # Bounded so that a national-scale catch-up stays well under a GiB per process: some
    # 25 KiB a history kept decoded, 7 shed (see ``OffenderHistory.shed``; measured over a
    # 20,000-offender topic). A history not cached is read and decoded again, which at
    # 10,000 made a national catch-up 40% slower than with every offender cached.
    CACHE_SIZE = 20_000
    SHED_CACHE_SIZE = 40_000

    def __init__(self, database: ViewDatabase, projection: Projection) -> None:
        self.database = database
        self.projection = projection
        self._cache: OrderedDict[UUID, OffenderHistory] = OrderedDict()
        self.cache_size = (
            self.CACHE_SIZE if projection.reads_every_document else self.SHED_CACHE_SIZE
        )

    def create_tables(self) -> None:
        with self.database.transaction() as tx:
            create_common_tables(tx)
            self.projection.create_tables(tx)

    def position(self, upstream: str) -> int:
        with self.database.transaction() as tx:
            return self._position(tx, upstream)

    def positions(self) -> dict[str, int]:
        with self.database.transaction() as tx:
            tx.execute(
                "SELECT upstream, position FROM projection_positions WHERE projection = %s",
                (self.projection.name,),
            )
            return {str(u): int(p) for u, p in tx.fetchall()}

    def _position(self, tx: Transaction, upstream: str) -> int:
        return read_position(tx, self.projection.name, upstream)

    def handle(self, upstream: str, deliveries: Sequence[Delivery]) -> int:
        """Apply a batch from ``upstream``; return how many events were new."""
        return self.handle_all({upstream: deliveries})

    def handle_all(self, batches: Mapping[str, Sequence[Delivery]]) -> int:
        """Apply batches from several upstreams (the partitions of one Kafka batch) in one
        transaction, with each upstream's position; return how many events were new.

        One transaction for the whole poll rather than one per partition: at a steady
        trickle most of a batch's cost is fixed (locks, reads, commit), and paying it once
        is what keeps an alert's latency low.
        """
        if not any(batches.values()):
            return 0
        try:
            with self.database.transaction() as tx:
                fresh: list[Delivery] = []
                positions: dict[str, int] = {}
                # In a fixed order, so that two instances briefly sharing partitions during a
                # rebalance wait for each other instead of deadlocking.
                for upstream in sorted(batches):
                    stored_position = _lock_position(tx, self.projection.name, upstream)
                    new = [d for d in batches[upstream] if d.position > stored_position]
                    if new:
                        fresh.extend(new)
                        positions[upstream] = max(d.position for d in new)
                if not fresh:
                    return 0
                applied, changed = self._apply(tx, fresh)
                for upstream, position in positions.items():
                    write_position(tx, self.projection.name, upstream, position)
        except BaseException:
            self._cache.clear()  # what it holds may not have been stored
            raise
        self._remember(changed)
        return applied

    def _apply(
        self, tx: Transaction, deliveries: Sequence[Delivery]
    ) -> tuple[int, dict[UUID, OffenderHistory]]:
        """Fold the events into their offenders' histories and store the changed histories
        and their view rows; return how many were new, and the changed histories."""
        histories = self._load(tx, {d.originator_id for d in deliveries})
        applied = 0
        for d in deliveries:
            applied += _fold(histories, d.originator_id, d.originator_version, d.event, d.document)
        changed = {key: h for key, h in histories.items() if h.changed}
        stored = list(changed.values())
        self._store(tx, stored)
        self.projection.refresh(tx, stored)
        return applied, changed

    def replay(self, tx: Transaction, batch: ReplayBatch, *, shared: bool = False) -> int:
        """Apply whole streams read from the event store to this projection, just reset
        (it holds no history of their offenders), in ``tx`` and without a position (a
        rebuild's replay: see ``infra.rebuild``); return how many events were applied.

        Given every event of an offender at once, the projection derives the offender's rows
        once rather than once per event, and the rules do not depend on how a history's
        events were batched, so the rows are those of the incremental run. The histories
        are not cached: a replay meets each offender once. ``shared``: the histories are
        stored as references to the batch's shared copies (``store_shared_histories``, in
        the same transaction) instead of a copy of this projection's own.
        """
        stored = list(batch.histories.values())
        encoded = batch.history_json
        self._store(tx, stored, dict.fromkeys(encoded, SHARED_HISTORY) if shared else encoded)
        self.projection.refresh(tx, stored)
        return batch.applied

    def store_position(self, upstream: str, position: int) -> None:
        with self.database.transaction() as tx:
            write_position(tx, self.projection.name, upstream, position)

    def reset(self) -> None:
        """Forget every position and history, and the rows a rebuild recreates."""
        with self.database.transaction() as tx:
            tx.execute(
                "DELETE FROM projection_positions WHERE projection = %s", (self.projection.name,)
            )
            tx.execute(
                "DELETE FROM projection_histories WHERE projection = %s", (self.projection.name,)
            )
            self.projection.reset(tx)
        self._cache.clear()

    def forget(self) -> None:
        """Drop the in-memory cache (after a rebuild, to give the memory back)."""
        self._cache.clear()

    def _load(self, tx: Transaction, offender_ids: set[UUID]) -> dict[UUID, OffenderHistory]:
        histories = self._cached(tx, offender_ids)
        ids = sorted(str(i) for i in offender_ids if i not in histories)
        rows = _history_rows(tx, self.projection.name, ids, _HISTORY_COLUMNS)
        for offender_id, mappa_ref, version, history in rows:
            documents = orjson.loads(history)
            histories[UUID(offender_id)] = OffenderHistory(
                str(offender_id), str(mappa_ref), int(version), documents,
                known_before=len(documents), encoded=history, encoded_count=len(documents),
            )  # fmt: skip
        for offender_id in offender_ids:
            if offender_id not in histories:
                histories[offender_id] = OffenderHistory(str(offender_id), "")
        return histories

    def _cached(self, tx: Transaction, offender_ids: set[UUID]) -> dict[UUID, OffenderHistory]:
        """The cached histories still at their stored version (others are read again)."""
        candidates = sorted(str(i) for i in offender_ids if i in self._cache)
        rows = _history_rows(tx, self.projection.name, candidates, "version")
        stored = {str(o): int(v) for o, v in rows}
        found: dict[UUID, OffenderHistory] = {}
        for offender_id in offender_ids:
            cached = self._cache.get(offender_id)
            if cached is not None and stored.get(cached.offender_id) == cached.version:
                cached.begin_batch()
                found[offender_id] = cached
        return found

    def _store(
        self,
        tx: Transaction,
        changed: Sequence[OffenderHistory],
        encoded: Mapping[str, str] | None = None,
    ) -> None:
        """Store these histories (``encoded``: what to store for some, the JSON of each
        made already, or ``SHARED_HISTORY``)."""
        encoded = encoded or {}
        tx.executemany(
            "INSERT INTO projection_histories "
            "(projection, offender_id, mappa_ref, version, history) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (projection, offender_id) DO UPDATE SET mappa_ref = excluded.mappa_ref, "
            "version = excluded.version, history = excluded.history",
            [
                (
                    self.projection.name,
                    h.offender_id,
                    h.mappa_ref,
                    h.version,
                    encoded[h.offender_id] if h.offender_id in encoded else h.encode(),
                )
                for h in changed
            ],
        )

    def _remember(self, changed: Mapping[UUID, OffenderHistory]) -> None:
        shed = not self.projection.reads_every_document
        for key, history in changed.items():
            if shed:
                history.shed()
            self._cache[key] = history
            self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)


@dataclass(frozen=True)
class ReplayBatch:
    """Whole streams read from the event store for a rebuild, with what every projection
    replaying them needs made once for all of them. Projections only read it."""

    # In (stream, version) order; a fact as its fact document, if the reader had it.
    deliveries: Sequence[Delivery]

    @property
    def histories(self) -> dict[UUID, OffenderHistory]:
        """The offenders' histories, folded once for every projection replaying the batch.

        Shared: a projection only reads them, and keeps what it derives in their ``memo``
        under keys of its own, so what projections share (the typed events) is built once
        too. Folding them again for each projection was a tenth of a rebuild's time."""
        return self._folded[0]

    @property
    def applied(self) -> int:
        """How many of the events the histories hold (a version met twice counts once)."""
        return self._folded[1]

    @functools.cached_property
    def _folded(self) -> tuple[dict[UUID, OffenderHistory], int]:
        histories: dict[UUID, OffenderHistory] = {}
        applied = 0
        for delivery, document in zip(self.deliveries, self.documents, strict=True):
            offender_id = delivery.originator_id
            if offender_id not in histories:
                histories[offender_id] = OffenderHistory(str(offender_id), "")
            version = delivery.originator_version
            applied += _fold(histories, offender_id, version, delivery.event, document)
        return histories, applied

    @functools.cached_property
    def documents(self) -> list[dict[str, Any] | None]:
        """The fact document of each event (None: not an interchange event)."""
        return [
            d.document
            if d.document is not None
            else d.event.to_document(with_recorded_at=True)
            if isinstance(d.event, ev.InterchangeEvent)
            else None
            for d in self.deliveries
        ]

    @functools.cached_property
    def history_json(self) -> dict[str, str]:
        """Offender id -> the JSON of the offender's whole history (as ``encode`` makes it)."""
        documents: dict[UUID, list[dict[str, Any]]] = {}
        for delivery, document in zip(self.deliveries, self.documents, strict=True):
            stream = documents.setdefault(delivery.originator_id, [])
            if document is not None:
                stream.append(document)
        # The id spelt once an offender, not once an event (``UUID.__str__`` is Python).
        return {str(key): orjson.dumps(stream).decode() for key, stream in documents.items()}


def store_shared_histories(tx: Transaction, batch: ReplayBatch) -> None:
    """Store one copy of each history of a replayed batch, for every projection replaying
    it to refer to (``ProjectionWriter.replay(..., shared=True)``).

    A rebuild of every projection stored four copies of each history, one per projection,
    and writing them was the largest part of a rebuild's work, its server's most of all.
    A projection's own copy is written again once it moves the offender on; the shared
    one stays for the others, until none refers to it (``prune_shared_histories``). The
    stored events up to a version never change, so neither does a history at a version:
    one already stored by an earlier rebuild is the same.
    """
    tx.executemany(
        "INSERT INTO shared_histories (offender_id, version, history) VALUES (%s, %s, %s) "
        "ON CONFLICT (offender_id, version) DO NOTHING",
        [
            (h.offender_id, h.version, batch.history_json[h.offender_id])
            for h in batch.histories.values()
        ],
    )


PRUNE_SHARED_HISTORIES = (
    "DELETE FROM shared_histories WHERE NOT EXISTS (SELECT 1 FROM projection_histories h "
    "WHERE h.offender_id = shared_histories.offender_id "
    f"AND h.version = shared_histories.version AND {_REFERS_TO_SHARED})"
)


def prune_shared_histories(tx: Transaction) -> None:
    """Delete the shared histories that no projection refers to any more (each projection
    has moved the offender on, or was rebuilt since)."""
    if tx.dialect == "postgres":
        # Writers of shared histories (a rebuild's replay) store them and the references to
        # them in one transaction: waiting for those in progress means none can refer, once
        # committed, to a copy deleted here as unreferenced.
        tx.execute("LOCK TABLE shared_histories IN EXCLUSIVE MODE")
        # With statistics from before the replay (no reference to a shared copy, or no
        # copy at all), the planner judged the references to match nothing and scanned every
        # projection's histories once for each shared copy: 14-117 s of server CPU after a
        # rebuild of 20,000 offenders. Hashed, the references are read once.
        tx.execute("SET LOCAL enable_nestloop = off")
    tx.execute(PRUNE_SHARED_HISTORIES)


def _fold(
    histories: dict[UUID, OffenderHistory],
    offender_id: UUID,
    version: int,
    event: ev.OffenderEvent | None,
    document: dict[str, Any] | None = None,
) -> int:
    """Add one event (or fact document: ``event`` None) to its offender's history; 0 if
    that version was already applied."""
    history = histories[offender_id]
    if version <= history.version:
        return 0
    history.version = version
    history.changed = True
    if event is None and document is None:
        return 1  # a finding, delivered as its place in the stream only (``reads_findings``)
    if event is not None:
        history.new_events.append(event)
    if event is None or isinstance(event, ev.InterchangeEvent):
        if document is None:
            assert event is not None  # a delivery has one or the other
            document = event.to_document(with_recorded_at=True)
        history.append(document)
        history.new_facts.append(event)
        if not history.mappa_ref:
            history.mappa_ref = mappa_ref_of(document["personReference"]["identifiers"])
    return 1


def load_histories(
    tx: Transaction, projection: str, offender_ids: Sequence[str] | None = None
) -> list[OffenderHistory]:
    """Histories stored by ``projection`` (all, or those of ``offender_ids``)."""
    if offender_ids is None:
        tx.execute(
            f"SELECT h.offender_id, {_HISTORY_COLUMNS} FROM projection_histories h "
            "WHERE h.projection = %s ORDER BY h.offender_id",
            (projection,),
        )
        rows = tx.fetchall()
    else:
        rows = _history_rows(tx, projection, list(offender_ids), _HISTORY_COLUMNS)
        rows.sort(key=lambda row: str(row[0]))
    return [OffenderHistory(str(o), str(m), int(v), orjson.loads(h)) for o, m, v, h in rows]


def events_of(history: OffenderHistory) -> list[ev.InterchangeEvent]:
    """The typed events of a stored history (documents were validated when ingested)."""
    offender_id = UUID(history.offender_id)
    return [_event_of(document, offender_id) for document in history.documents]


def _event_of(document: dict[str, Any], offender_id: UUID) -> ev.InterchangeEvent:
    return ev.InterchangeEvent.from_document(
        document,
        offender_id=offender_id,
        version=0,
        recorded_at=datetime.fromisoformat(document["recordedAt"]),
    )


# The memo key of a history's typed events (see ``typed_events``).
_TYPED_EVENTS = "events"


def typed_events(history: OffenderHistory) -> list[ev.InterchangeEvent]:
    """The typed events of a history, kept in the history's memo between batches so that
    only the documents new in this batch are ever built (a fact delivered as its event is
    used as it is; one delivered as its document only is built here, when a projection
    first asks)."""
    memo = _usable_typed_events(history)
    if memo is None:
        memo = events_of(OffenderHistory(
            history.offender_id, history.mappa_ref,
            documents=history.documents[: history.known_before],
        ))  # fmt: skip
    memo.extend(_events_added_since(history, len(memo)))
    history.memo[_TYPED_EVENTS] = memo
    return list(memo)


def added_typed_events(history: OffenderHistory) -> list[ev.InterchangeEvent]:
    """The typed events of the documents added in this batch, as ``typed_events`` gives
    them, without building those of the documents before them."""
    if _usable_typed_events(history) is not None:
        return typed_events(history)[history.known_before :]
    return _events_added_since(history, history.known_before)


def _usable_typed_events(history: OffenderHistory) -> list[ev.InterchangeEvent] | None:
    """The typed events kept in the history's memo, if usable: those of the history's first
    documents, all of those known before this batch and perhaps some of this batch's already
    (a replay's histories are shared by the projections replaying them)."""
    memo: list[ev.InterchangeEvent] | None = history.memo.get(_TYPED_EVENTS)
    if memo is None or not history.known_before <= len(memo) <= history.document_count:
        return None
    return memo


def _events_added_since(history: OffenderHistory, start: int) -> list[ev.InterchangeEvent]:
    """The typed events of the documents from the ``start``-th on (all added in this batch):
    a fact delivered as its event as it is, one delivered as its document built from it."""
    offender_id = UUID(history.offender_id)
    facts = history.new_facts[start - history.known_before :]
    return [
        fact if fact is not None else _event_of(document, offender_id)
        for document, fact in zip(history.documents_since(start), facts, strict=True)
    ]


HISTORY_ROWS_ON_POSTGRES = (
    "SELECT wanted.offender_id, found.* FROM unnest(%s::text[]) AS wanted(offender_id), "
    "LATERAL (SELECT {columns} FROM projection_histories h "
    "WHERE h.projection = %s AND h.offender_id = wanted.offender_id LIMIT 1) AS found"
)


def _history_rows(
    tx: Transaction, projection: str, offender_ids: Sequence[str], columns: str
) -> list[tuple[Any, ...]]:
    """``offender_id`` and ``columns`` of these offenders' stored histories."""
    rows: list[tuple[Any, ...]] = []
    if not offender_ids:
        return rows
    if tx.dialect == "postgres":
        # One array parameter: psycopg parses a statement of 500 placeholders anew each time.
        # Each wanted id looked up on its own (LATERAL ... LIMIT 1 keeps the planner from
        # flattening it into a join), rather than `offender_id = ANY(%s)`: with statistics
        # from before a projection had rows (a new or rebuilt one), the planner judged
        # `projection = %s` to match nothing and walked every row of the projection through
        # the index, filtering by id (12 ms a batch instead of 0.2). A lookup by the whole
        # primary key is what it is, whatever the statistics say.
        statement = HISTORY_ROWS_ON_POSTGRES.format(columns=columns)
        tx.execute(statement, (list(offender_ids), projection))
        return tx.fetchall()
    for condition, params in in_list(tx, "h.offender_id", offender_ids):
        tx.execute(
            f"SELECT h.offender_id, {columns} FROM projection_histories h "
            f"WHERE h.projection = %s AND {condition}",
            (projection, *params),
        )
        rows.extend(tx.fetchall())
    return rows
