"""A Kafka poll may return messages of several partitions: ingest and every projector store
all of them in one transaction, with each partition's position (on SQLite and PostgreSQL).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

import pytest
from kafka import TopicPartition

from consumers.inbound import InboundConsumer
from consumers.ingest import Verdict
from consumers.projector import delivery_of
from consumers.wire import decode_message, encode_event
from domain import events as ev
from infra.bootstrap import NOTIFICATION_LOG, Tracker
from infra.generator import generate_history
from projections.base import Delivery
from tests.conftest import TrackerFactory
from tests.integration.test_rebuilding_projections import snapshot

TOPIC = "mappa.inbound.v1"


@dataclass(frozen=True)
class Message:
    """What the inbound consumer reads of a Kafka message."""

    offset: int
    key: bytes | None
    value: bytes


class RecordingProducer:
    """Stands in for the dead-letter producer: keeps what was sent."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[dict[str, Any]] = []
        self.fail = fail

    def send(self, topic: str, key: Any, value: bytes, headers: list[Any]) -> Any:
        if self.fail:
            raise RuntimeError("the broker refused the dead letter")
        self.sent.append({"topic": topic, "value": value, **{k: v.decode() for k, v in headers}})
        return self

    def flush(self) -> None: ...

    def get(self, timeout: float) -> None: ...


def consumer_for(tracker: Tracker, producer: RecordingProducer) -> InboundConsumer:
    return InboundConsumer(tracker.ingest_service(), None, producer, TOPIC, TOPIC + ".dead")


def polled_lines(lines: list[str], partitions: int = 3) -> dict[TopicPartition, list[Message]]:
    """Lines spread over partitions by MAPPA reference, as producers key them."""
    polled: dict[TopicPartition, list[Message]] = {
        TopicPartition(TOPIC, p): [] for p in range(partitions)
    }
    for line in lines:
        identifiers = json.loads(line)["personReference"]["identifiers"]
        ref = next(i["value"] for i in identifiers if i["type"] == "MAPPA")
        messages = polled[TopicPartition(TOPIC, sum(ref.encode()) % partitions)]
        messages.append(Message(len(messages), ref.encode(), line.encode()))
    return polled


def positions(tracker: Tracker, partitions: int = 3) -> list[int]:
    return [tracker.records.position(f"{TOPIC}-{p}") for p in range(partitions)]


def history_lines(offenders: int = 12) -> list[str]:
    return generate_history("WM", 2004, 2006, offenders, seed=5, invalid_lines=False)


def test_one_polls_messages_of_several_partitions_are_stored_with_each_partitions_position(
    tracker_factory: TrackerFactory,
) -> None:
    tracker = tracker_factory()
    polled = polled_lines(history_lines())
    assert all(polled.values()), "every partition has messages"
    results = consumer_for(tracker, RecordingProducer()).ingest_polled(polled)
    assert {r.verdict for r in results} == {Verdict.ACCEPTED}
    assert len(results) == sum(len(m) for m in polled.values())
    assert positions(tracker) == [len(polled[TopicPartition(TOPIC, p)]) for p in range(3)]
    assert tracker.max_notification_id() >= len(results)


def test_a_poll_delivered_again_in_part_or_whole_stores_nothing_twice(
    tracker_factory: TrackerFactory,
) -> None:
    tracker = tracker_factory()
    polled = polled_lines(history_lines())
    first = {tp: messages[: len(messages) // 2] for tp, messages in polled.items()}
    consumer = consumer_for(tracker, RecordingProducer())
    consumer.ingest_polled(first)
    stored = tracker.max_notification_id()
    assert consumer.ingest_polled(first) == []
    assert tracker.max_notification_id() == stored
    # The whole poll again: only the messages past each partition's position are new.
    results = consumer.ingest_polled(polled)
    assert len(results) == sum(len(m) - len(first[tp]) for tp, m in polled.items())
    assert {r.verdict for r in results} == {Verdict.ACCEPTED}
    assert positions(tracker) == [len(polled[TopicPartition(TOPIC, p)]) for p in range(3)]


def test_a_bad_message_in_one_partition_is_dead_lettered_with_its_own_partition_and_offset(
    tracker_factory: TrackerFactory,
) -> None:
    tracker = tracker_factory()
    polled = polled_lines(history_lines())
    second = TopicPartition(TOPIC, 1)
    bad = Message(len(polled[second]), b"WM-X", b'{"eventType": "custody.received"}')
    polled[second] = [*polled[second], bad]
    producer = RecordingProducer()
    results = consumer_for(tracker, producer).ingest_polled(polled)
    assert [r.verdict for r in results].count(Verdict.REJECTED) == 1
    [letter] = producer.sent
    assert letter["value"] == bad.value
    assert letter["mappa.source.partition"] == "1"
    assert letter["mappa.source.offset"] == str(bad.offset)
    assert "eventId" in letter["mappa.error"]
    # The bad message's partition moves past it; the others' good messages are stored.
    assert positions(tracker)[1] == bad.offset + 1
    assert tracker.max_notification_id() >= len(results) - 1


def test_when_the_dead_letters_cannot_be_sent_no_partition_of_the_poll_is_stored(
    tracker_factory: TrackerFactory,
) -> None:
    tracker = tracker_factory()
    polled = polled_lines(history_lines())
    polled[TopicPartition(TOPIC, 2)].append(Message(99, None, b"not json"))
    with pytest.raises(RuntimeError, match="refused"):
        consumer_for(tracker, RecordingProducer(fail=True)).ingest_polled(polled)
    assert positions(tracker) == [0, 0, 0]
    assert tracker.max_notification_id() == 0


def deliveries_of(tracker: Tracker) -> list[Delivery]:
    notifications = tracker.records.recorder.select_notifications(start=1, limit=100_000)
    return [
        Delivery(n.id, cast("ev.OffenderEvent", tracker.records.mapper.to_domain_event(n)))
        for n in notifications
    ]


def by_partition(deliveries: list[Delivery], partitions: int = 3) -> dict[str, list[Delivery]]:
    """The deliveries as a projector would get them from Kafka: keyed by offender, each
    partition's offsets counting from 1."""
    batches: dict[str, list[Delivery]] = {f"events-{p}": [] for p in range(partitions)}
    for delivery in deliveries:
        batch = batches[f"events-{delivery.event.originator_id.int % partitions}"]
        batch.append(Delivery(len(batch) + 1, delivery.event))
    return batches


def projected_from_the_log(tracker_factory: TrackerFactory, projection: str) -> tuple[Tracker, Any]:
    """A tracker with a history ingested and ``projection`` fed from the notification log,
    and that projection's view."""
    tracker = tracker_factory()
    consumer_for(tracker, RecordingProducer()).ingest_polled(polled_lines(history_lines(20)))
    tracker.catch_up([projection])
    return tracker, snapshot(tracker.views, projection)


@pytest.mark.parametrize("projection", ["caseload", "statistical-return", "victim-alerts"])
def test_a_projection_applies_several_partitions_in_one_transaction_as_from_the_log(
    tracker_factory: TrackerFactory, projection: str
) -> None:
    tracker, from_the_log = projected_from_the_log(tracker_factory, projection)
    deliveries = deliveries_of(tracker)
    writer = tracker.writer(projection)
    assert writer.positions() == {NOTIFICATION_LOG: deliveries[-1].position}
    writer.reset()
    batches = by_partition(deliveries)
    halves = [{u: d[: len(d) // 2] for u, d in batches.items()}, batches]
    assert writer.handle_all(halves[0]) == sum(len(d) for d in halves[0].values())
    # The second poll repeats the first half of each partition: only the rest is new.
    assert writer.handle_all(halves[1]) == len(deliveries) - sum(len(d) for d in halves[0].values())
    assert writer.handle_all(batches) == 0
    assert writer.positions() == {u: len(d) for u, d in batches.items()}
    # The same view as the projector fed from the notification log.
    assert snapshot(tracker.views, projection) == from_the_log


def test_a_projection_batch_that_fails_stores_no_partitions_position(
    tracker_factory: TrackerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker = tracker_factory()
    consumer_for(tracker, RecordingProducer()).ingest_polled(polled_lines(history_lines()))
    writer = tracker.writer("caseload")
    writer.reset()

    def failing(*_args: Any) -> None:
        raise RuntimeError("the view could not be written")

    monkeypatch.setattr(writer.projection, "refresh", failing)
    with pytest.raises(RuntimeError, match="could not be written"):
        writer.handle_all(by_partition(deliveries_of(tracker)))
    assert writer.positions() == {}


@pytest.mark.parametrize(
    "projection", ["caseload", "statistical-return", "victim-alerts", "data-quality"]
)
def test_facts_delivered_as_their_documents_alone_give_the_views_of_the_typed_events(
    tracker_factory: TrackerFactory, projection: str
) -> None:
    # A projector fed from Kafka gets a fact as its document, and builds its typed event
    # only if a rule asks for it; one of a projection that reads no findings gets each
    # finding as its version only. The views (and the versions stored with the histories)
    # must be those of the log's typed events.
    tracker, from_the_log = projected_from_the_log(tracker_factory, projection)
    writer = tracker.writer(projection)
    writer.reset()
    findings = writer.projection.reads_findings
    as_documents = []
    for delivery in deliveries_of(tracker):
        message = encode_event(cast("ev.OffenderEvent", delivery.event), delivery.position)
        decoded = decode_message(message, findings=findings)
        as_documents.append(delivery_of(delivery.position, decoded))
    assert sum(d.event is None for d in as_documents) > len(as_documents) // 2
    versions_only = sum(d.event is None and d.document is None for d in as_documents)
    assert versions_only > 0 if projection != "data-quality" else versions_only == 0
    for start in range(0, len(as_documents), 37):  # batches, as polls would come
        writer.handle("events-0", as_documents[start : start + 37])
    assert snapshot(tracker.views, projection) == from_the_log
