"""A message of the offender-events topic that the relay could not have written is refused
with a ValueError saying what is wrong (a projector logs it and passes over it), whatever is
wrong with it; a good one is decoded."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from consumers.wire import decode_message

OFFENDER = "00000000-0000-0000-0000-000000000001"
QUERY_CLEARED = "mappa.data-quality-query-cleared.v1"
DOCUMENT = {
    "eventId": "e-1", "eventType": "custody.received", "version": 1,
    "occurredAt": "2024-01-01T09:00:00+00:00", "source": {"agency": "HMPPS"},
    "personReference": {"identifiers": [{"type": "MAPPA", "value": "WM-1"}]}, "area": "WM",
    "additionalInformation": {},
}  # fmt: skip


def message(**changes: Any) -> bytes:
    fields: dict[str, Any] = {
        "wire": 1, "notificationId": 1, "offenderId": OFFENDER, "version": 1,
        "topic": "mappa.custody.received.v1", "recordedAt": "2024-01-02T10:00:00+00:00",
        "document": dict(DOCUMENT),
    }  # fmt: skip
    fields.update(changes)
    return orjson.dumps({key: value for key, value in fields.items() if value is not None})


def test_a_fact_message_is_decoded_to_its_fact_document_with_when_it_was_recorded() -> None:
    decoded = decode_message(message())
    assert str(decoded.offender_id) == OFFENDER and decoded.version == 1
    assert decoded.document == {**DOCUMENT, "recordedAt": "2024-01-02T10:00:00+00:00"}
    assert list(decoded.document)[-1] == "recordedAt"


def test_a_recorded_time_spelt_another_way_is_given_as_the_event_spells_it_every_time() -> None:
    for _ in range(2):  # the second from what the first spelt
        decoded = decode_message(message(recordedAt="2024-01-02T10:00:00.5Z"))
        assert decoded.document is not None
        assert decoded.document["recordedAt"] == "2024-01-02T10:00:00.500000+00:00"


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (b"not json", "not an offender event message"),
        (message(offenderId="not-a-uuid"), "badly formed"),
        (message(version="one"), "invalid literal"),
        (message(document={**DOCUMENT, "eventType": "no.such-type"}), "no.such-type"),
        (message(document={**DOCUMENT, "occurredAt": "yesterday"}), "yesterday"),
        (message(recordedAt="last week"), "last week"),
        (message(recordedAt=["2024-01-02T10:00:00+00:00"]), "unhashable"),
        (message(document=None, topic="mappa.no-such-event.v1", fields={}), "no-such-event"),
        (
            message(document=None, topic=QUERY_CLEARED, fields={"unknown_field": 1}),
            "unknown_field",
        ),
    ],
    ids=[
        "not-json", "bad-offender-id", "bad-version", "unknown-event-type", "bad-instant",
        "bad-recorded-instant", "recorded-instant-not-text", "unknown-topic", "unknown-field",
    ],
)  # fmt: skip
def test_a_message_the_relay_could_not_have_written_is_refused_saying_what_is_wrong(
    value: bytes, named: str
) -> None:
    with pytest.raises(ValueError, match="not an offender event message") as refused:
        decode_message(value)
    assert named in str(refused.value)


FINDING = {"query_id": "q-1", "cleared_by_event_id": "e-2"}


def test_a_finding_is_decoded_to_its_event() -> None:
    decoded = decode_message(message(document=None, topic=QUERY_CLEARED, fields=FINDING))
    assert decoded.event is not None and decoded.document is None
    assert decoded.event.originator_version == 1


def test_for_a_projection_reading_facts_only_a_finding_is_its_place_in_the_stream_only() -> None:
    value = message(document=None, topic=QUERY_CLEARED, version=7, fields=FINDING)
    decoded = decode_message(value, findings=False)
    assert (str(decoded.offender_id), decoded.version) == (OFFENDER, 7)
    assert decoded.event is None and decoded.document is None


@pytest.mark.parametrize(
    ("topic", "fields", "named"),
    [
        ("mappa.no-such-event.v1", FINDING, "no-such-event"),
        (QUERY_CLEARED, {**FINDING, "unknown_field": 1}, "unknown_field"),
        (QUERY_CLEARED, {"query_id": "q-1"}, "DataQualityQueryCleared"),
    ],
    ids=["unknown-topic", "unknown-field", "missing-field"],
)
def test_a_finding_not_built_is_still_refused_when_the_relay_could_not_have_written_it(
    topic: str, fields: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValueError, match="not an offender event message") as refused:
        decode_message(message(document=None, topic=topic, fields=fields), findings=False)
    assert named in str(refused.value)
