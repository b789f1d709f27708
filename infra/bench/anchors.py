"""The anchors: what the machine's database and broker do for raw clients, with rows and
messages of the same sizes as the tracker's, so each figure of the tracker can be read as a
share of what its storage or transport allows here.

- PostgreSQL: ``COPY`` and batched ``INSERT`` (1,000 rows per transaction, psycopg 3's
  pipelined ``executemany``) into a table shaped like the library's stored-events table,
  rows as large as the mean stored event;
- Kafka: kafka-python produce (the relay's producer settings: idempotent, ``acks=all``,
  256 KiB batches, but kafka-python's own partitioner) and
  consume (the projectors' consumer settings: ``read_committed``, 1,000 records per poll) of
  messages as large as the mean ``mappa.offender-events.v1`` message;
- both: those messages consumed and stored the least way a projector can (a row per key
  and the positions, one transaction per batch of ready polls), the projectors' anchor.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from infra import kafka


def postgres_anchors(
    url: str, schema: str, rows: int, state_bytes: int, topic_chars: int
) -> dict[str, float]:
    """Rows per second for COPY and for batched INSERT."""
    import psycopg
    from psycopg import sql

    table = sql.Identifier(schema, "bench_anchor_events")
    topic = ("mappa." + "x" * topic_chars)[:topic_chars]
    state = os.urandom(max(state_bytes, 1))
    data = [(uuid.uuid4(), 1, topic, state) for _ in range(rows)]
    columns = sql.SQL("(originator_id, originator_version, topic, state)")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        # The shape of eventsourcing's PostgreSQL stored-events table (with its notification
        # id and the index the notification log is read by).
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (originator_id uuid NOT NULL, originator_version bigint NOT NULL,"
                " topic text, state bytea, notification_id bigserial,"
                " PRIMARY KEY (originator_id, originator_version))"
            ).format(table)
        )
        conn.execute(sql.SQL("CREATE UNIQUE INDEX ON {} (notification_id)").format(table))

        started = time.monotonic()
        with conn.transaction(), conn.cursor() as cursor:
            copy_sql = sql.SQL("COPY {} {} FROM STDIN").format(table, columns)
            with cursor.copy(copy_sql) as copy:
                for row in data:
                    copy.write_row(row)
        copy_rate = rows / (time.monotonic() - started)

        conn.execute(sql.SQL("TRUNCATE {}").format(table))
        insert = sql.SQL("INSERT INTO {} {} VALUES (%s, %s, %s, %s)").format(table, columns)
        started = time.monotonic()
        with conn.cursor() as cursor:
            for first in range(0, rows, 1000):
                with conn.transaction():
                    cursor.executemany(insert, data[first : first + 1000])
        insert_rate = rows / (time.monotonic() - started)
        conn.execute(sql.SQL("DROP TABLE {}").format(table))
    return {"copy": copy_rate, "insert": insert_rate}


def kafka_anchors(bootstrap: str, topic: str, messages: int, value_bytes: int) -> dict[str, float]:
    """Messages per second produced, then consumed, on a fresh 3-partition topic."""
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="mappa-bench")
    try:
        admin.create_topics([NewTopic(topic, 3, 1)])
    finally:
        admin.close()
    value = os.urandom(max(value_bytes, 1))
    keys = [str(uuid.uuid4()).encode() for _ in range(1000)]  # offender ids, as the relay's

    from kafka.partitioner.default import DefaultPartitioner

    # The tracker's producer settings (delivery and batch size: the library configured as
    # the tracker configures it), but kafka-python's own partitioner: the anchor runs the
    # library's code only, not the tracker's remembering partitioner.
    producer: Any = kafka.producer(bootstrap, partitioner=DefaultPartitioner())
    try:
        producer.partitions_for(topic)  # metadata first: not part of the throughput
        started = time.monotonic()
        for n in range(messages):
            producer.send(topic, key=keys[n % 1000], value=value)
        producer.flush()
        produce_rate = messages / (time.monotonic() - started)
    finally:
        producer.close()

    consumer: Any = kafka.consumer(bootstrap, None)
    try:
        consume_rate = consumed_per_second(consumer, topic, messages, lambda _polled: None)
    finally:
        consumer.close()
    return {"produce": produce_rate, "consume": consume_rate}


def consume_and_store_anchor(
    url: str, schema: str, bootstrap: str, topic: str, messages: int, batch_up_to: int
) -> float:
    """Messages per second read from ``topic`` (as ``kafka_anchors`` left it) and stored the
    least way a projector can: for each batch (a poll and the polls ready at once after it,
    up to ``batch_up_to`` messages, as the projectors take them), one transaction upserting
    a row per message key (the message as the row) and each partition's next offset, as raw
    kafka-python and psycopg do it, with no rules and no history. What every projector must
    do at least."""
    import psycopg
    from psycopg import sql

    view = sql.Identifier(schema, "bench_anchor_view")
    positions = sql.Identifier(schema, "bench_anchor_positions")
    upsert_row = sql.SQL(
        "INSERT INTO {} (offender_id, message) VALUES (%s, %s) "
        "ON CONFLICT (offender_id) DO UPDATE SET message = excluded.message"
    ).format(view)
    upsert_position = sql.SQL(
        "INSERT INTO {} (upstream, position) VALUES (%s, %s) "
        "ON CONFLICT (upstream) DO UPDATE SET position = excluded.position"
    ).format(positions)
    consumer: Any = kafka.consumer(bootstrap, None)
    with psycopg.connect(url, autocommit=True) as conn:
        for table, columns in (
            (view, "offender_id text PRIMARY KEY, message bytea NOT NULL"),
            (positions, "upstream text PRIMARY KEY, position bigint NOT NULL"),
        ):
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
            conn.execute(sql.SQL("CREATE TABLE {} (" + columns + ")").format(table))
        try:
            with conn.cursor() as cursor:

                def store(polled: dict[Any, list[Any]]) -> None:
                    # One row per key, the last message of the batch (as a projector's view
                    # holds one row per offender).
                    rows = {m.key: m.value for batch in polled.values() for m in batch}
                    with conn.transaction():
                        cursor.executemany(upsert_row, [(k.decode(), v) for k, v in rows.items()])
                        cursor.executemany(
                            upsert_position,
                            [
                                (f"{tp.topic}-{tp.partition}", b[-1].offset + 1)
                                for tp, b in polled.items()
                            ],
                        )

                rate = consumed_per_second(consumer, topic, messages, store, batch_up_to)
        finally:
            consumer.close()
            for table in (view, positions):
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
    return rate


def consumed_per_second(
    consumer: Any,
    topic: str,
    messages: int,
    handle: Callable[[dict[Any, list[Any]]], None],
    batch_up_to: int = 0,
) -> float:
    """Messages per second ``consumer`` reads of the 3-partition ``topic`` from its start,
    ``handle`` given each batch, until ``messages`` have come (or five minutes). A batch is
    one poll, with the polls ready at once after it up to ``batch_up_to`` messages."""
    from kafka import TopicPartition

    from consumers.projector import with_polls_ready_at_once

    consumer.assign([TopicPartition(topic, p) for p in range(3)])
    consumer.seek_to_beginning()
    consumer.poll(timeout_ms=0)  # connect and fetch metadata before the clock starts
    received, started = 0, time.monotonic()
    deadline = started + 300
    while received < messages and time.monotonic() < deadline:
        polled = consumer.poll(timeout_ms=500)
        if polled:
            batch = with_polls_ready_at_once(consumer, polled, batch_up_to)
            handle(batch)
            received += sum(map(len, batch.values()))
    return received / (time.monotonic() - started)
