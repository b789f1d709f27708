"""The relay's messages, built straight from the stored JSON, are those of the domain events."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import orjson
import pytest
from eventsourcing.cipher import AESCipher

from consumers.wire import decode_event, decode_message, encode_event, encode_stored
from domain import events as ev
from infra.bootstrap import Tracker
from infra.eventstore import RelayRow
from infra.storedjson import delivery_of
from tests.builders import History
from tests.conftest import TrackerFactory
from tests.unit.test_interchange_format import EXAMPLES, example

KEY = AESCipher.create_key(32)


def every_kind_of_stored_event() -> History:
    """One document of each of the 28 types, then a fact that raises a data-quality query
    and one that clears it, so both of the tracker's own event types are stored too."""
    h = History("WM-000123")
    for event_type in sorted(EXAMPLES):
        if event_type != "record.retracted":
            unique = {"eventId": f"00000000-0000-4000-8000-{len(h.documents):012d}"}
            h.documents.append(example(event_type) | unique)
    released = h.add("custody.released", "2006-01-01T09:00:00+00:00", releaseType="licence")
    h.retract(released, "2006-01-02T09:00:00+00:00")
    # A recall while not on licence raises a query; a release placed before it clears it.
    h.add("licence.recalled", "2006-02-01T09:00:00+00:00", reason="breach-of-conditions")
    h.add("custody.released", "2006-01-20T09:00:00+00:00", releaseType="licence")
    return h


@pytest.mark.parametrize("cipher_key", [None, KEY], ids=["in clear", "encrypted"])
def test_every_stored_event_relays_as_the_same_message_as_its_domain_event(
    tracker_factory: TrackerFactory, cipher_key: str | None
) -> None:
    tracker = tracker_factory(cipher_key=cipher_key)
    results = tracker.ingest_service().ingest(list(enumerate(every_kind_of_stored_event().facts())))
    assert all(r.verdict.value == "accepted" for r in results), results

    notifications = tracker.records.recorder.select_notifications(start=1, limit=1000)
    topics = {n.topic for n in notifications}
    assert {c.TOPIC for c in ev.INTERCHANGE_EVENT_CLASSES} <= topics
    assert {ev.DataQualityQueryRaised.TOPIC, ev.DataQualityQueryCleared.TOPIC} <= topics
    relay_rows = tracker.records.relay_rows(1, 1000)
    assert relay_rows == [
        RelayRow(n.id, str(n.originator_id), n.originator_version, n.topic, n.state)
        for n in notifications
    ]
    for notification, relay_row in zip(notifications, relay_rows, strict=True):
        domain_event = tracker.records.mapper.to_domain_event(notification)
        slow = encode_event(domain_event, notification.id)  # type: ignore[arg-type]
        for fast in (
            encode_stored(notification, tracker.records.mapper),
            encode_stored(relay_row, tracker.records.mapper),
        ):
            assert orjson.loads(fast) == orjson.loads(slow), notification.topic
            assert decode_event(fast) == domain_event


def test_the_relay_reads_the_store_a_page_at_a_time_in_notification_order(
    tracker: Tracker,
) -> None:
    tracker.ingest_service().ingest(list(enumerate(every_kind_of_stored_event().facts())))
    stored = tracker.records.recorder.select_notifications(start=1, limit=1000)

    pages, start = [], 1
    while page := tracker.records.relay_rows(start, 7):
        assert len(page) <= 7
        pages.append(page)
        start = page[-1].id + 1
    assert [row.id for page in pages for row in page] == [n.id for n in stored]
    assert len(pages) == -(-len(stored) // 7)
    assert tracker.records.relay_rows(stored[3].id, 2) == [
        RelayRow(n.id, str(n.originator_id), n.originator_version, n.topic, n.state)
        for n in stored[3:5]
    ]


@pytest.mark.parametrize("cipher_key", [None, KEY], ids=["in clear", "encrypted"])
def test_every_relayed_message_carries_the_fact_document_a_projection_would_rebuild(
    tracker_factory: TrackerFactory, cipher_key: str | None
) -> None:
    """A projector folds the message's document as it is: it must be the event's own fact
    document, key for key and in the same order (the stored history's JSON is the same
    whether it was fed from Kafka or rebuilt from the store)."""
    tracker = tracker_factory(cipher_key=cipher_key)
    tracker.ingest_service().ingest(list(enumerate(every_kind_of_stored_event().facts())))
    notifications = tracker.records.recorder.select_notifications(start=1, limit=1000)
    interchange = 0
    for notification in notifications:
        domain_event = tracker.records.mapper.to_domain_event(notification)
        for message in (
            encode_stored(notification, tracker.records.mapper),
            encode_event(domain_event, notification.id),  # type: ignore[arg-type]
        ):
            document = decode_message(message).document
            assert decode_event(message) == domain_event
            if isinstance(domain_event, ev.InterchangeEvent):
                interchange += 1
                expected = domain_event.to_document(with_recorded_at=True)
                assert orjson.dumps(document) == orjson.dumps(expected), notification.topic
            else:
                assert document is None
    assert interchange >= 2 * len(ev.INTERCHANGE_EVENT_CLASSES)


def test_an_event_the_library_would_upcast_is_relayed_the_slow_way(
    tracker_factory: TrackerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker = tracker_factory()
    h = History("WM-000124")
    h.add("mappa.category-assigned", "2005-01-01T09:00:00+00:00", category=1)
    tracker.ingest_service().ingest(list(enumerate(h.facts())))
    notification = next(
        n
        for n in tracker.records.recorder.select_notifications(start=1, limit=10)
        if n.topic == ev.CategoryAssigned.TOPIC
    )
    # As the relay reads it: the originator id as text.
    relay_row = next(r for r in tracker.records.relay_rows(1, 10) if r.id == notification.id)
    mapper = tracker.records.mapper
    event = mapper.to_domain_event(notification)
    relayed_by_domain_event: list[Any] = []

    def to_domain_event(stored: Any) -> Any:
        relayed_by_domain_event.append(stored)
        return event

    monkeypatch.setattr(mapper, "to_domain_event", to_domain_event)
    encode_stored(relay_row, mapper)
    assert relayed_by_domain_event == []  # the fast path, as a rule

    monkeypatch.setattr(ev.CategoryAssigned, "class_version", 2, raising=False)
    message = encode_stored(relay_row, mapper)
    assert relayed_by_domain_event == [notification]
    assert orjson.loads(message) == orjson.loads(encode_event(event, notification.id))  # type: ignore[arg-type]


def test_the_store_writes_every_event_in_the_json_the_librarys_own_encoder_writes(
    tracker_factory: TrackerFactory,
) -> None:
    from eventsourcing.persistence import JSONTranscoder, Mapper

    from infra.eventstore import OrjsonEncodingTranscoder

    tracker = tracker_factory()
    assert isinstance(tracker.records.mapper.transcoder, OrjsonEncodingTranscoder)
    results = tracker.ingest_service().ingest(list(enumerate(every_kind_of_stored_event().facts())))
    assert all(r.verdict.value == "accepted" for r in results), results
    library = JSONTranscoder()
    tracker.records.register_transcodings(library)
    by_library: Mapper[Any] = Mapper(transcoder=library)
    for notification in tracker.records.recorder.select_notifications(start=1, limit=1000):
        event = tracker.records.mapper.to_domain_event(notification)
        assert notification.state == by_library.to_stored_event(event).state, notification.topic


def test_a_stored_event_with_a_transcoded_value_beyond_its_envelope_is_relayed_the_slow_way(
    tracker_factory: TrackerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path spells only the envelope's datetimes; a value some other transcoding
    wrote, even deep inside a field, is left to the library's decoder."""
    tracker = tracker_factory()
    h = History("WM-000125")
    h.add("mappa.category-assigned", "2005-01-01T09:00:00+00:00", category=1)
    tracker.ingest_service().ingest(list(enumerate(h.facts())))
    row = next(r for r in tracker.records.relay_rows(1, 10) if r.topic == ev.CategoryAssigned.TOPIC)
    mapper = tracker.records.mapper
    state = orjson.loads(row.state)
    state["identifiers"][0]["since"] = {"_type_": "datetime_iso", "_data_": "2005-01-01T00:00:00"}
    odd = row._replace(state=orjson.dumps(state))
    decoded: list[Any] = []
    library_decoding = mapper.to_domain_event

    def to_domain_event(stored: Any) -> Any:
        decoded.append(stored)
        return library_decoding(stored)

    monkeypatch.setattr(mapper, "to_domain_event", to_domain_event)
    encode_stored(row, mapper)
    assert decoded == []
    encode_stored(odd, mapper)
    assert [stored.state for stored in decoded] == [odd.state]


@pytest.mark.parametrize("cipher_key", [None, KEY], ids=["in clear", "encrypted"])
def test_a_stored_event_read_for_a_projection_is_the_librarys_event_with_its_fact_document(
    tracker_factory: TrackerFactory, cipher_key: str | None
) -> None:
    """Rebuilds and the embedded catch-up read the store with ``delivery_of``, from the
    stored JSON: each event must be the one the library's mapper decodes, attribute for
    attribute, and a fact's document its own, key for key."""
    tracker = tracker_factory(cipher_key=cipher_key)
    tracker.ingest_service().ingest(list(enumerate(every_kind_of_stored_event().facts())))
    mapper = tracker.records.mapper
    notifications = tracker.records.recorder.select_notifications(start=1, limit=1000)
    facts = 0
    for notification in notifications:
        by_library = mapper.to_domain_event(notification)
        delivery = delivery_of(notification, mapper, notification.id)
        assert delivery.position == notification.id
        assert delivery.event == by_library, notification.topic
        assert delivery.event.__dict__ == by_library.__dict__
        assert list(delivery.event.__dict__) == list(by_library.__dict__)
        if isinstance(by_library, ev.InterchangeEvent):
            facts += 1
            expected = by_library.to_document(with_recorded_at=True)
            assert orjson.dumps(delivery.document) == orjson.dumps(expected), notification.topic
        else:
            assert delivery.document is None
    assert facts >= len(ev.INTERCHANGE_EVENT_CLASSES)


def test_a_stored_event_its_json_reader_does_not_know_is_read_by_the_library(
    tracker_factory: TrackerFactory,
) -> None:
    tracker = tracker_factory()
    h = History("WM-000126")
    h.add("mappa.category-assigned", "2005-01-01T09:00:00+00:00", category=1)
    tracker.ingest_service().ingest(list(enumerate(h.facts())))
    mapper = tracker.records.mapper
    stored = next(
        n
        for n in tracker.records.recorder.select_notifications(start=1, limit=10)
        if n.topic == ev.CategoryAssigned.TOPIC
    )
    state = orjson.loads(stored.state)
    state["identifiers"][0]["since"] = {"_type_": "datetime_iso", "_data_": "2005-01-01T00:00:00"}
    odd = dataclasses.replace(stored, state=orjson.dumps(state))

    delivery = delivery_of(odd, mapper)
    assert delivery.document is None  # built from the event when folded
    assert delivery.event == mapper.to_domain_event(odd)
    assert delivery.event.identifiers[0]["since"] == datetime(2005, 1, 1)  # type: ignore[union-attr]
