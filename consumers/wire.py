"""How the tracker's stored events travel on ``mappa.offender-events.v1``.

One JSON object per message, keyed by the offender's id (so one offender's events stay in
one partition, in stream order). A fact travels as its interchange document plus
``recordedAt``, so any consumer that reads the interchange format can read this topic too;
the tracker's own findings (data-quality queries) travel as their fields.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from eventsourcing.utils import resolve_topic

from domain import events as ev

WIRE_VERSION = 1
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
    return json.dumps(message, separators=(",", ":"), default=str).encode()


def encode_key(event: ev.OffenderEvent) -> bytes:
    return str(event.originator_id).encode()


def decode_event(value: bytes) -> ev.OffenderEvent:
    """The stored event a message carries; raises ``ValueError`` on anything else."""
    try:
        message = json.loads(value)
        offender_id = UUID(message["offenderId"])
        version = int(message["version"])
        recorded_at = datetime.fromisoformat(message["recordedAt"])
        if "document" in message:
            return ev.InterchangeEvent.from_document(
                message["document"], offender_id=offender_id, version=version,
                recorded_at=recorded_at,
            )  # fmt: skip
        event_class = resolve_topic(message["topic"])
        event: ev.OffenderEvent = event_class(
            originator_id=offender_id,
            originator_version=version,
            timestamp=recorded_at,
            **message["fields"],
        )
        return event
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"not an offender event message: {error}") from error
