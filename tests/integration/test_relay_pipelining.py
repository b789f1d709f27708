"""The relay sends the next batch while the broker acknowledges the last, and stores a
batch's position only once the broker has every message of it (and of those before it).

The producer here is a stand-in whose acknowledgements the test controls; the relay on a
real broker, killed and restarted, is in tests/e2e/test_kafka_pipeline.py."""

from __future__ import annotations

import pytest

from consumers.relay import RELAY, UPSTREAM, Relay
from consumers.runtime import Shutdown
from infra.bootstrap import Tracker
from projections.base import read_position
from tests.builders import History

FACTS = 25
BATCH = 10


EVENTS = FACTS + 1


class Refused(Exception):
    pass


class _Future:
    def __init__(self, producer: StandInProducer, number: int) -> None:
        self.producer, self.number = producer, number

    def get(self, timeout: float) -> None:
        if self.number in self.producer.refuse:
            raise Refused(f"message {self.number}")
        self.producer.acknowledged.append(self.number)


class StandInProducer:
    """Records what was sent; a message whose number is in ``refuse`` is refused."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes]] = []
        self.acknowledged: list[int] = []
        self.refuse: set[int] = set()
        self.flushes = 0

    def send(self, topic: str, key: bytes, value: bytes) -> _Future:
        self.sent.append((key, value))
        return _Future(self, len(self.sent))

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        pass


def relay_with_stored_events(tracker: Tracker) -> tuple[Relay, StandInProducer]:
    """A relay with 26 stored events: the offender's opening, then 25 facts."""
    history = History("WM-000123")
    for day in range(1, FACTS + 1):
        history.add("mappa.level-changed", f"2006-01-{day:02d}T09:00:00+00:00", level=1 + day % 3)
    results = tracker.ingest_service().ingest(list(enumerate(history.facts())))
    assert all(r.verdict.value == "accepted" for r in results), results
    assert len(tracker.records.recorder.select_notifications(start=1, limit=100)) == EVENTS
    producer = StandInProducer()
    return Relay(tracker.records, tracker.views, producer, "events", BATCH), producer


def stored_position(relay: Relay) -> int:
    with relay.views.transaction() as tx:
        return read_position(tx, RELAY, UPSTREAM)


def test_a_batchs_position_is_stored_only_after_the_broker_has_every_message_of_it(
    tracker: Tracker,
) -> None:
    relay, producer = relay_with_stored_events(tracker)

    assert relay.relay_once() == BATCH
    assert (len(producer.sent), producer.acknowledged, stored_position(relay)) == (BATCH, [], 0)

    # The second batch is sent before the first one's acknowledgements are awaited.
    assert relay.relay_once() == BATCH
    assert len(producer.sent) == 2 * BATCH
    assert producer.acknowledged == list(range(1, BATCH + 1))
    assert stored_position(relay) == BATCH

    assert relay.relay_once() == EVENTS - 2 * BATCH
    assert stored_position(relay) == 2 * BATCH

    # Nothing new: the last batch is flushed at once, acknowledged and its position stored.
    flushes = producer.flushes
    assert relay.relay_once() == 0
    assert producer.flushes == flushes + 1
    assert producer.acknowledged == list(range(1, EVENTS + 1))
    assert stored_position(relay) == EVENTS
    assert relay.relay_once() == 0
    assert len(producer.sent) == EVENTS  # each stored event was sent exactly once


def test_a_message_the_broker_refuses_leaves_the_position_and_its_batch_is_sent_again(
    tracker: Tracker,
) -> None:
    relay, producer = relay_with_stored_events(tracker)
    producer.refuse = {BATCH}  # the first batch's last message

    relay.relay_once()
    with pytest.raises(Refused):
        relay.relay_once()
    assert stored_position(relay) == 0

    producer.refuse = set()
    first_try = producer.sent[:BATCH]
    relay.relay_once()  # starts again from the stored position
    assert producer.sent[2 * BATCH : 3 * BATCH] == first_try
    while relay.relay_once():
        pass
    assert stored_position(relay) == EVENTS
    assert {key for key, _ in producer.sent} == {key for key, _ in first_try}


def test_asked_to_stop_the_relay_stores_the_position_of_the_batch_it_sent_last(
    tracker: Tracker,
) -> None:
    relay, producer = relay_with_stored_events(tracker)
    shutdown = Shutdown()
    original = relay.relay_once

    def once_then_stop() -> int:
        sent = original()
        shutdown.request()
        return sent

    relay.relay_once = once_then_stop  # type: ignore[method-assign]
    relay.run(shutdown)

    assert len(producer.sent) == BATCH
    assert stored_position(relay) == BATCH
