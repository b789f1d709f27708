"""The ingest process: ``mappa.inbound.v1`` -> decide -> the event store.

Numbered steps, per partition of each polled batch:

1. decode and validate every message; an invalid one is set aside with its reason;
2. decide the valid ones on their offenders (a conforming fact the contract rejects is set
   aside too);
3. send the set-aside messages to the dead-letter topic, original bytes unchanged, the
   reason in headers, and wait until the broker has them;
4. store the new events, the eventId index rows and the position
   (``<topic>-<partition>`` -> next offset) in ONE transaction;
5. commit the offset to Kafka (a hint for lag; the database is the truth).

A crash before 4 repeats the batch (a dead letter may be sent twice; no event is stored
twice). A crash between 4 and 5 is harmless: on assignment the consumer seeks to the
positions stored in the database. A poison message never blocks its partition: whatever is
wrong with it, it is dead-lettered and the position moves past it.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import structlog
from eventsourcing.persistence import Tracking
from kafka import TopicPartition

from consumers.ingest import IngestService, Result, Verdict
from consumers.interchange import InvalidDocument, parse_document
from consumers.projector import SeekToStoredPositions, commit_hint, upstream_of
from consumers.runtime import Shutdown, Stopped, with_retries
from domain.offender import ReportedFact

log = structlog.get_logger(__name__)


class InboundConsumer:
    def __init__(
        self,
        service: IngestService,
        consumer: Any,
        dead_letter_producer: Any,
        topic: str,
        dead_letter_topic: str,
    ) -> None:
        self.service = service
        self.consumer = consumer
        self.producer = dead_letter_producer
        self.topic = topic
        self.dead_letter_topic = dead_letter_topic

    def run(self, shutdown: Shutdown) -> None:
        records = self.service.records
        self.consumer.subscribe(
            [self.topic],
            listener=SeekToStoredPositions(
                self.consumer, lambda partition: records.position(upstream_of(partition))
            ),
        )
        log.info("ingest started", topic=self.topic)
        try:
            while not shutdown.requested:
                polled = with_retries(
                    partial(self.consumer.poll, timeout_ms=500), shutdown, "poll inbound"
                )
                for partition, messages in polled.items():
                    with_retries(
                        partial(self.ingest_partition_batch, partition, messages),
                        shutdown,
                        "ingest",
                    )
                    commit_hint(self.consumer, partition, messages[-1].offset + 1)
        except Stopped:
            pass  # the batch was not stored: it will be delivered again
        finally:
            self.consumer.close()
            log.info("ingest stopped")

    def ingest_partition_batch(
        self, partition: TopicPartition, messages: list[Any]
    ) -> list[Result]:
        upstream = upstream_of(partition)
        stored = self.service.records.position(upstream)
        messages = [m for m in messages if m.offset + 1 > stored]  # a redelivered batch
        if not messages:
            return []
        by_offset = {m.offset: m for m in messages}
        batch: list[tuple[int, ReportedFact]] = []
        invalid: list[Result] = []
        for message in messages:
            try:
                batch.append((message.offset, parse_document(message.value)))
            except InvalidDocument as error:
                invalid.append(Result(message.offset, Verdict.REJECTED, message=str(error)))
            except Exception as error:  # a poison message must never block the partition
                invalid.append(Result(message.offset, Verdict.REJECTED, message=repr(error)))

        def dead_letter(results: list[Result]) -> None:
            rejected = invalid + [r for r in results if r.verdict is Verdict.REJECTED]
            self._send_dead_letters(partition, [(by_offset[r.item], r) for r in rejected])

        tracking = Tracking(upstream, messages[-1].offset + 1)
        results = self.service.ingest(batch, tracking=tracking, before_commit=dead_letter)
        log.debug("ingested", upstream=upstream, messages=len(messages), rejected=len(invalid))
        return invalid + results

    def _send_dead_letters(
        self, partition: TopicPartition, rejected: list[tuple[Any, Result]]
    ) -> None:
        if not rejected:
            return
        futures = []
        for message, result in sorted(rejected, key=lambda pair: pair[0].offset):
            headers = [
                ("mappa.error", (result.message or "rejected").encode()),
                ("mappa.source.topic", partition.topic.encode()),
                ("mappa.source.partition", str(partition.partition).encode()),
                ("mappa.source.offset", str(message.offset).encode()),
            ]
            futures.append(
                self.producer.send(
                    self.dead_letter_topic, key=message.key, value=message.value, headers=headers
                )
            )
            log.warning("dead-lettered", upstream=upstream_of(partition), offset=message.offset,
                        reason=result.message)  # fmt: skip
        self.producer.flush()
        for future in futures:
            future.get(timeout=30)
