"""Reading a stored event's JSON straight, without rebuilding the event.

The library stores an event's fields as JSON, with datetimes as ``{"_type_":
"datetime_iso", "_data_": ISO text}``, and decodes it with the standard library's ``json``
and a hook called for every object, before building the event: most of the cost of reading
the store. The relay's messages and the projections' fact documents want the fields as
JSON values, and those datetimes as their ISO text, so they are read here with orjson, and
the event is built only where nothing else will do. Anything this does not recognise
(another transcoder, an event needing upcasting, another transcoded value) returns None:
the caller then takes the library's way.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any, NamedTuple, Protocol, cast
from uuid import UUID

import orjson
from eventsourcing.persistence import JSONTranscoder, Mapper, StoredEvent
from eventsourcing.utils import resolve_topic

from domain import events as ev
from domain.events import OffenderEvent
from projections.base import Delivery


class StoredJSON(Protocol):
    """A stored event (the library's ``StoredEvent`` or ``Notification``, or a row of it)."""

    @property
    def topic(self) -> str: ...
    @property
    def state(self) -> bytes: ...


class StoredShape(NamedTuple):
    """What reading an event class's stored JSON needs to know, looked up once per topic."""

    event_class: type[Any]
    interchange: bool
    # How many transcoded values its stored JSON holds: the envelope's datetimes only
    # (``timestamp``, and an interchange event's ``occurred_at``).
    transcoded: int


@functools.cache
def stored_shape(topic: str) -> StoredShape:
    event_class = resolve_topic(topic)
    interchange = issubclass(event_class, ev.InterchangeEvent)
    return StoredShape(event_class, interchange, 2 if interchange else 1)


def stored_state(
    stored: StoredJSON, mapper: Mapper[UUID], shape: StoredShape
) -> dict[str, Any] | None:
    """The stored fields as JSON values, the envelope's datetimes still as their
    ``{"_type_", "_data_"}`` objects, and ``class_version`` removed; None if the library's
    decoder must read it."""
    # Stored in the library's JSON (by its encoder or one writing the same, as the
    # tracker's does), read by its decoder: only then does this know how to read it.
    transcoder = mapper.transcoder
    if not isinstance(transcoder, JSONTranscoder) or type(transcoder).decode is not (
        JSONTranscoder.decode
    ):
        return None
    state_bytes = stored.state
    if mapper.cipher:
        state_bytes = mapper.cipher.decrypt(state_bytes)
    if mapper.compressor:
        state_bytes = mapper.compressor.decompress(state_bytes)
    # Only the envelope's datetimes are transcoded: any other transcoded value, at any
    # depth, is a field this function does not know how to spell, so it takes the slow
    # way. The text ``"_type_":`` can only be a key (in a JSON string the quotes would be
    # escaped), so counting it counts the transcoded values, faster than walking them.
    if state_bytes.count(b'"_type_":') != shape.transcoded:
        return None
    state: dict[str, Any] = orjson.loads(state_bytes)
    if state.pop("class_version", 1) != getattr(shape.event_class, "class_version", 1):
        return None  # the library upcasts it
    envelope = ("timestamp", "occurred_at") if shape.interchange else ("timestamp",)
    for name in envelope:
        value = state.get(name)
        if not isinstance(value, dict) or value.get("_type_") != "datetime_iso":
            return None
    return state


def delivery_of(stored: StoredEvent, mapper: Mapper[UUID], position: int = 0) -> Delivery:
    """A stored event as a projection takes it: the event that
    ``mapper.to_domain_event(stored)`` gives, with its fact document if it is a fact (what
    ``event.to_document(with_recorded_at=True)`` gives, key for key), both read from its
    JSON at once. ``position``: its place in the upstream it was read from (0 in a replay).
    """
    shape = stored_shape(stored.topic)
    state = stored_state(stored, mapper, shape)
    if state is None:
        return Delivery(position, cast("OffenderEvent", mapper.to_domain_event(stored)))
    recorded_at = state["timestamp"]["_data_"]
    document = None
    if shape.interchange:
        occurred_at = state["occurred_at"]["_data_"]
        document = ev.document_of(
            shape.event_class, state, occurred_at=occurred_at, recorded_at=recorded_at
        )
        state["occurred_at"] = datetime.fromisoformat(occurred_at)
    # As the library's mapper builds it: the decoded state as the event's attributes.
    state["timestamp"] = datetime.fromisoformat(recorded_at)
    originator_id = stored.originator_id
    state["originator_id"] = (
        originator_id if isinstance(originator_id, UUID) else UUID(originator_id)
    )
    state["originator_version"] = stored.originator_version
    event = object.__new__(shape.event_class)
    object.__setattr__(event, "__dict__", state)
    return Delivery(position, event, document)
