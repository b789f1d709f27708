"""The ingest process: ``mappa.inbound.v1`` -> decide -> the event store.

Numbered steps, for each poll (the messages of every partition it returned, together):

1. decode and validate every message; an invalid one is set aside with its reason;
2. decide the valid ones on their offenders (a conforming fact the contract rejects is set
   aside too);
3. send the set-aside messages to the dead-letter topic, original bytes unchanged, the
   reason in headers, and wait until the broker has them;
4. store the new events, the eventId index rows and each partition's position
   (``<topic>-<partition>`` -> next offset) in ONE transaction;
5. commit the offsets to Kafka (a hint for lag; the database is the truth), again when
   idle until the broker confirms them; when idle, look for partitions left unfetched
   (see ``consumers.offsets``).

A crash before 4 repeats the batch (a dead letter may be sent twice; no event is stored
twice). A crash between 4 and 5 is harmless: on assignment the consumer seeks to the
positions stored in the database. A poison message never blocks its partition: whatever is
wrong with it, it is dead-lettered and the position moves past it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import structlog
from eventsourcing.persistence import Tracking
from kafka import TopicPartition

from consumers.ingest import IngestService, Result, Verdict
from consumers.interchange import InvalidDocument, parse_document
from consumers.offsets import GroupMembership, upstream_of
from consumers.runtime import Shutdown, Stopped, with_retries
from domain.offender import ReportedFact

log = structlog.get_logger(__name__)


class InboundConsumer:
    # A batch slower than this is logged with where its time went.
    SLOW_BATCH_SECONDS = 0.5

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
        membership = GroupMembership(
            self.consumer, self.topic, lambda partition: records.position(upstream_of(partition))
        )
        membership.join()
        log.info("ingest started", topic=self.topic)
        try:
            while not shutdown.requested:
                polled = with_retries(
                    partial(self.consumer.poll, timeout_ms=500), shutdown, "poll inbound"
                )
                if polled:
                    with_retries(partial(self.ingest_polled, polled), shutdown, "ingest")
                    membership.stored(polled)
                else:
                    membership.idle()
        except Stopped:
            pass  # the batch was not stored: it will be delivered again
        finally:
            self.consumer.close()
            log.info("ingest stopped")

    def ingest_polled(self, polled: Mapping[TopicPartition, Sequence[Any]]) -> list[Result]:
        """Ingest the messages of one poll, from any number of partitions, in one
        transaction with each partition's position. Each result's ``item`` is the message's
        place among the fresh messages, in partition order."""
        fresh: list[tuple[TopicPartition, Any]] = []
        positions: list[Tracking] = []
        for partition in sorted(polled):
            upstream = upstream_of(partition)
            stored = self.service.records.position(upstream)
            new = [m for m in polled[partition] if m.offset + 1 > stored]  # a redelivery
            if new:
                fresh.extend((partition, m) for m in new)
                positions.append(Tracking(upstream, new[-1].offset + 1))
        if not fresh:
            return []
        batch: list[tuple[int, ReportedFact]] = []
        invalid: list[Result] = []
        for item, (_, message) in enumerate(fresh):
            try:
                batch.append((item, parse_document(message.value)))
            except InvalidDocument as error:
                invalid.append(Result(item, Verdict.REJECTED, message=str(error)))
            except Exception as error:  # a poison message must never block the partition
                invalid.append(Result(item, Verdict.REJECTED, message=repr(error)))

        def dead_letter(results: list[Result]) -> None:
            rejected = invalid + [r for r in results if r.verdict is Verdict.REJECTED]
            self._send_dead_letters([(*fresh[r.item], r) for r in rejected])

        started = time.perf_counter()
        results = self.service.ingest(batch, tracking=positions, before_commit=dead_letter)
        seconds = time.perf_counter() - started
        if seconds >= self.SLOW_BATCH_SECONDS:
            # Where a stall of the pipeline's first stage went, for whoever reads the log.
            log.warning(
                "slow batch", messages=len(fresh), ms=round(seconds * 1000),
                **{f"{step}_ms": round(value * 1000)
                   for step, value in self.service.last_timings.items() if step != "attempts"},
                attempts=self.service.last_timings.get("attempts"),
            )  # fmt: skip
        log.debug("ingested", upstreams=[p.application_name for p in positions],
                  messages=len(fresh), rejected=len(invalid))  # fmt: skip
        return invalid + results

    def _send_dead_letters(self, rejected: list[tuple[TopicPartition, Any, Result]]) -> None:
        if not rejected:
            return
        futures = []
        for partition, message, result in sorted(
            rejected, key=lambda r: (r[0].partition, r[1].offset)
        ):
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
