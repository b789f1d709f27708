"""The relay sends the next batch while the broker acknowledges the last, and stores a
batch's position only once the broker has every message of it (and of those before it).

The producer here is a stand-in whose acknowledgements the test controls; the relay on a
real broker, killed and restarted, is in tests/e2e/test_kafka_pipeline.py."""

from __future__ import annotations

from uuid import UUID

import orjson
import pytest

from consumers.relay import RELAY, UPSTREAM, Relay
from consumers.runtime import Shutdown
from consumers.wire import RUN_CONTINUES
from infra.bootstrap import Tracker
from infra.eventstore import RelayRow, RelayShare
from projections.base import read_position
from tests.builders import History

OFFENDERS = 13
BATCH = 10  # a page ends at the end of an offender's run: here, two events each


EVENTS = 2 * OFFENDERS


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
        self.headers: list[list[tuple[str, bytes]]] = []

    def send(
        self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]] | None = None
    ) -> _Future:
        self.sent.append((key, value))
        self.headers.append(headers or [])
        return _Future(self, len(self.sent))

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        pass


def relay_with_stored_events(tracker: Tracker) -> tuple[Relay, StandInProducer]:
    """A relay with 26 stored events: 13 offenders' openings, each followed by a fact."""
    facts = []
    for n in range(OFFENDERS):
        history = History(f"WM-{123 + n:06d}")
        history.add("mappa.level-changed", f"2006-01-{1 + n:02d}T09:00:00+00:00", level=1 + n % 3)
        facts += history.facts()
    results = tracker.ingest_service().ingest(list(enumerate(facts)))
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
    sent_ids = {orjson.loads(value)["notificationId"] for _, value in producer.sent}
    assert sent_ids == set(range(1, EVENTS + 1))


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


def store_several_offenders(tracker: Tracker, offenders: int = 24) -> list[RelayRow]:
    """Interleaved facts of ``offenders`` offenders (the opening of each, then three facts)."""
    histories = [History(f"WM-{200 + n:06d}") for n in range(offenders)]
    for day in range(1, 4):
        for history in histories:
            history.add("mappa.level-changed", f"2006-02-{day:02d}T09:00:00+00:00", level=day)
    by_offender = [h.facts() for h in histories]
    facts = [facts[day] for day in range(3) for facts in by_offender]  # interleaved in the log
    results = tracker.ingest_service().ingest(list(enumerate(facts)))
    assert all(r.verdict.value == "accepted" for r in results), results
    return tracker.records.relay_rows(1, 10_000)


def relayed_by(relay: Relay, producer: StandInProducer) -> list[dict[str, object]]:
    while relay.relay_once():
        pass
    return [orjson.loads(value) for _, value in producer.sent]


@pytest.mark.parametrize("backend", ["postgres"])
def test_relays_sharing_the_offenders_publish_every_event_once_each_offender_in_order(
    tracker: Tracker,
) -> None:
    stored = store_several_offenders(tracker)
    shares = [RelayShare(0, 2), RelayShare(1, 2)]
    producers = [StandInProducer() for _ in shares]
    relays = [
        Relay(tracker.records, tracker.views, producer, "events", 7, share=share)
        for share, producer in zip(shares, producers, strict=True)
    ]
    messages = [
        relayed_by(relay, producer) for relay, producer in zip(relays, producers, strict=True)
    ]

    published = sorted(m["notificationId"] for share in messages for m in share)  # type: ignore[type-var]
    assert published == [row.id for row in stored]  # every event, once
    for share, sent in zip(shares, messages, strict=True):
        assert sent, "each share has offenders of its own"
        assert all(share.holds(UUID(str(m["offenderId"]))) for m in sent)
        ids = [m["notificationId"] for m in sent]
        assert ids == sorted(ids)  # in the log's order, so each offender's in stream order
    offenders = [{m["offenderId"] for m in sent} for sent in messages]
    assert not offenders[0] & offenders[1]
    for relay, sent in zip(relays, messages, strict=True):
        assert stored_positions(tracker)[relay.upstream] == sent[-1]["notificationId"]
        assert relay.position() == sent[-1]["notificationId"]
    assert sorted(stored_positions(tracker)) == ["offenders:1/2", "offenders:2/2"]
    # Started again, each share goes on from its own position: nothing is sent twice.
    for share, producer in zip(shares, producers, strict=True):
        again = Relay(tracker.records, tracker.views, producer, "events", 7, share=share)
        assert again.relay_once() == 0
    assert sum(len(p.sent) for p in producers) == len(stored)


@pytest.mark.parametrize("backend", ["postgres"])
def test_a_share_without_a_position_starts_after_the_lowest_position_any_relay_stored(
    tracker: Tracker,
) -> None:
    """Run as one relay, then as two: nothing the one relay had not published is lost, and
    the shares do not start again from the beginning."""
    stored = store_several_offenders(tracker)
    single = Relay(tracker.records, tracker.views, StandInProducer(), "events", 20)
    single.relay_once()
    single.relay_once()
    assert stored_positions(tracker) == {"offenders": stored[19].id}

    producers = [StandInProducer(), StandInProducer()]
    relays = [
        Relay(tracker.records, tracker.views, p, "events", 7, share=RelayShare(n, 2))
        for n, p in enumerate(producers)
    ]
    assert [relay.position() for relay in relays] == [stored[19].id, stored[19].id]
    resent = [m for r, p in zip(relays, producers, strict=True) for m in relayed_by(r, p)]
    assert sorted(m["notificationId"] for m in resent) == [row.id for row in stored[20:]]  # type: ignore[type-var]


def test_on_sqlite_the_store_is_not_read_in_shares(tracker: Tracker) -> None:
    if tracker.settings.database_url:
        assert tracker.records.relay_rows(1, 10, RelayShare(0, 2)) == []
        return
    with pytest.raises(ValueError, match="one process"):
        tracker.records.relay_rows(1, 10, RelayShare(0, 2))


def stored_positions(tracker: Tracker) -> dict[str, int]:
    with tracker.views.transaction() as tx:
        tx.execute("SELECT upstream, position FROM projection_positions WHERE projection = 'relay'")
        return {str(u): int(p) for u, p in tx.fetchall()}


def test_a_page_never_ends_inside_an_offenders_run_and_each_message_but_its_last_says_so(
    tracker: Tracker,
) -> None:
    """Each offender's events stored together (an opening and its first fact here) travel
    as a run: a page of one event still ends at its end, and every message but the run's
    last carries the header that tells a projector to wait for the rest."""
    relay, producer = relay_with_stored_events(tracker)
    relay.batch_size = 1
    sent_per_call = []
    while sent := relay.relay_once():
        sent_per_call.append(sent)
    assert sent_per_call == [2] * OFFENDERS
    keys = [key for key, _ in producer.sent]
    assert [RUN_CONTINUES in headers for headers in producer.headers] == [True, False] * OFFENDERS
    assert keys[0::2] == keys[1::2]  # each run is one offender's
    assert len(set(keys)) == OFFENDERS


def test_a_run_longer_than_the_reads_that_finish_it_still_ends_its_page(
    tracker: Tracker,
) -> None:
    """The rest of a run is read 64 events at a time: an offender's 150 events stored in
    one transaction go in one page, whatever the page's size."""
    history = History("WM-000777")
    for day in range(1, 150):
        history.add("mappa.level-changed", f"2006-{1 + day // 28:02d}-{1 + day % 28:02d}"
                    "T09:00:00+00:00", level=1 + day % 3)  # fmt: skip
    results = tracker.ingest_service().ingest(list(enumerate(history.facts())))
    assert all(r.verdict.value == "accepted" for r in results), results
    producer = StandInProducer()
    relay = Relay(tracker.records, tracker.views, producer, "events", 5)
    assert relay.relay_once() == 150
    assert relay.relay_once() == 0
    assert [RUN_CONTINUES in h for h in producer.headers] == [True] * 149 + [False]
