"""How the tracker's stored events travel on ``mappa.offender-events.v1``.

One JSON object per message, keyed by the offender's id (so one offender's events stay in
one partition, in stream order). A fact travels as its interchange document plus
``recordedAt``, so any consumer that reads the interchange format can read this topic too;
the tracker's own findings (data-quality queries) travel as their fields.
"""

from __future__ import annotations

import dataclasses
import functools
from datetime import datetime
from typing import Any, NamedTuple, Protocol, cast
from uuid import UUID

import orjson
from eventsourcing.persistence import Mapper, Notification
from eventsourcing.utils import TopicError, resolve_topic

from domain import events as ev
from infra.storedjson import StoredJSON, stored_shape, stored_state

WIRE_VERSION = 1
# A message header: the offender's next message on the topic is the next event of the same
# run of the log (stored with this one, recorded at the same moment, or right after it in
# the log). A projector judges a run whole, so it waits for the message without it.
RUN_CONTINUES = ("offender-run", b"continues")
_ENVELOPE_FIELDS = {"originator_id", "originator_version", "timestamp"}


def encode_event(event: ev.OffenderEvent, notification_id: int) -> bytes:
    """The message value of a stored event (``notification_id``: its place in the log)."""
    message: dict[str, Any] = {
        "wire": WIRE_VERSION,
        "notificationId": notification_id,
        "offenderId": str(event.originator_id),
        "version": event.originator_version,
        "topic": type(event).TOPIC,
        "recordedAt": event.timestamp.isoformat(),
    }
    if isinstance(event, ev.InterchangeEvent):
        message["document"] = event.to_document()
    else:
        message["fields"] = {
            f.name: getattr(event, f.name)
            for f in dataclasses.fields(cast(Any, event))
            if f.name not in _ENVELOPE_FIELDS
        }
    return orjson.dumps(message, default=str)


class StoredNotification(StoredJSON, Protocol):
    """A stored event read from the notification log: the library's ``Notification``, or
    the relay's row of it (``infra.eventstore.RelayRow``, the originator id as text)."""

    @property
    def id(self) -> int: ...
    @property
    def originator_id(self) -> UUID | str: ...
    @property
    def originator_version(self) -> int: ...


def encode_stored(notification: StoredNotification, mapper: Mapper[UUID]) -> bytes:
    """The message value of a stored event read from the notification log: what
    ``encode_event(mapper.to_domain_event(notification), notification.id)`` gives, built
    from the stored JSON without rebuilding the event (the relay's main cost otherwise; see
    ``infra.storedjson`` for what it reads, and what it leaves to the library).
    """
    shape = stored_shape(notification.topic)
    state = stored_state(notification, mapper, shape)
    if state is None:
        stored = Notification(
            id=notification.id,
            originator_id=UUID(str(notification.originator_id)),
            originator_version=notification.originator_version,
            topic=notification.topic,
            state=notification.state,
        )
        return encode_event(cast(ev.OffenderEvent, mapper.to_domain_event(stored)), stored.id)
    recorded_at = state.pop("timestamp")["_data_"]
    message: dict[str, Any] = {
        "wire": WIRE_VERSION,
        "notificationId": notification.id,
        "offenderId": str(notification.originator_id),
        "version": notification.originator_version,
        "topic": shape.event_class.TOPIC,
        "recordedAt": recorded_at,
    }
    if shape.interchange:
        occurred_at = state["occurred_at"]["_data_"]
        message["document"] = ev.document_of(shape.event_class, state, occurred_at=occurred_at)
    else:
        message["fields"] = state
    return orjson.dumps(message)


class DecodedMessage(NamedTuple):
    """A message of the topic, decoded no further than a projection needs: a fact as its
    fact document (the typed event is built only if a rule asks for it, see
    ``projections.base.typed_events``), a finding of the tracker's as its event."""

    offender_id: UUID
    version: int
    # The fact document (the message's document with ``recordedAt``: what
    # ``event.to_document(with_recorded_at=True)`` gives), for an interchange event.
    document: dict[str, Any] | None
    # The event, for anything else (None with a document, and for a finding decoded for a
    # projection that reads facts only: see ``decode_message``).
    event: ev.OffenderEvent | None


@functools.lru_cache(maxsize=1 << 17)
def offender_uuid(text: str) -> UUID:
    """The offender id spelt ``text``: every message names one, and an offender has many
    messages; ``UUID(text)`` took 2 us, as long as decoding the whole message."""
    return UUID(text)


@functools.lru_cache(maxsize=256)
def _field_names(event_class: type) -> tuple[frozenset[str], frozenset[str]]:
    """The fields a message of ``event_class`` must give, and those it may give."""
    fields = [f for f in dataclasses.fields(event_class) if f.name not in _ENVELOPE_FIELDS]
    required = {
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    return frozenset(required), frozenset(f.name for f in fields)


@functools.lru_cache(maxsize=4096)
def _spelt_as_recorded(text: str) -> str:
    """``text``, an ISO 8601 time, as the event's ``timestamp.isoformat()`` spells it.

    Parsing and spelling it again took 3.3 us a message (``isoformat`` alone 2.8), a quarter
    of decoding one; the events of one ingest batch share their ``recordedAt``, so nearly
    every message's is one seen just before. Raises ``ValueError`` for other text.
    """
    return datetime.fromisoformat(text).isoformat()


def decode_message(value: bytes, *, findings: bool = True) -> DecodedMessage:
    """Decode a message of the topic; raises ``ValueError`` on anything else.

    ``findings=False``, for a projection that reads facts only: a finding of the tracker's
    (a message without a document) has its topic and field names checked but is not built
    into its event (the result has neither): building them was a twentieth of such a
    projector's time.
    """
    try:
        message = orjson.loads(value)
        offender_id = offender_uuid(message["offenderId"])
        version = int(message["version"])
        if "document" in message:
            document = message["document"]
            recorded_at = _spelt_as_recorded(message["recordedAt"])
            # What building its event would need, checked now, so that a message the relay
            # could not have written is skipped here rather than failing a batch later.
            if document["eventType"] not in ev.EVENT_CLASS_BY_TYPE:
                raise ValueError(f"unknown event type {document['eventType']!r}")
            datetime.fromisoformat(document["occurredAt"])
            if not isinstance(document["personReference"]["identifiers"], list):
                raise ValueError("personReference.identifiers is not a list")
            for key in ("eventId", "source", "area"):
                document[key]
            # The fact document: ``document_of`` puts recordedAt last, in the event's own ISO
            # spelling (added in place: copying every document was a twentieth of a
            # projector's time).
            document.pop("recordedAt", None)
            document["recordedAt"] = recorded_at
            return DecodedMessage(offender_id, version, document, None)
        event_class = resolve_topic(message["topic"])
        timestamp = datetime.fromisoformat(message["recordedAt"])
        fields = message["fields"]
        if not findings:
            required, allowed = _field_names(event_class)
            if not required <= fields.keys() <= allowed:
                raise ValueError(f"fields {sorted(fields)} are not those of {event_class.__name__}")
            return DecodedMessage(offender_id, version, None, None)
        event: ev.OffenderEvent = event_class(
            originator_id=offender_id, originator_version=version, timestamp=timestamp, **fields
        )
        return DecodedMessage(offender_id, version, None, event)
    # orjson.JSONDecodeError is a ValueError; TopicError: a topic no event class has.
    except (KeyError, TypeError, ValueError, TopicError) as error:
        raise ValueError(f"not an offender event message: {error}") from error


def decode_event(value: bytes) -> ev.OffenderEvent:
    """The stored event a message carries (a fact built from its document); raises
    ``ValueError`` on anything else."""
    decoded = decode_message(value)
    if decoded.event is not None:
        return decoded.event
    document = decoded.document
    assert document is not None  # one or the other, always
    return ev.InterchangeEvent.from_document(
        document,
        offender_id=decoded.offender_id,
        version=decoded.version,
        recorded_at=datetime.fromisoformat(document["recordedAt"]),
    )
