"""A fact's event rebuilt from its interchange document (what projections do with every fact
a Kafka message carries) is the event its class's own constructor makes."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson

from domain import events as ev
from infra.generator import generate_history

OFFENDER = UUID("00000000-0000-0000-0000-000000000007")
RECORDED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def constructed(document: dict[str, Any]) -> ev.InterchangeEvent:
    event_class: Any = ev.EVENT_CLASS_BY_TYPE[document["eventType"]]
    info = document.get("additionalInformation") or {}
    event: ev.InterchangeEvent = event_class(
        originator_id=OFFENDER,
        originator_version=3,
        timestamp=RECORDED,
        event_id=document["eventId"],
        occurred_at=datetime.fromisoformat(document["occurredAt"]),
        source=document["source"],
        identifiers=document["personReference"]["identifiers"],
        area=document["area"],
        description=document.get("description"),
        **{name: info.get(key) for name, key in event_class.info_fields().items()},
    )
    return event


def test_every_generated_fact_rebuilt_from_its_document_is_the_constructed_event() -> None:
    documents = [
        orjson.loads(line)
        for line in generate_history("WM", 2004, 2008, 120, 5, invalid_lines=False)
    ]
    types = set()
    for document in documents:
        rebuilt = ev.InterchangeEvent.from_document(
            document, offender_id=OFFENDER, version=3, recorded_at=RECORDED
        )
        expected = constructed(document)
        assert type(rebuilt) is type(expected)
        assert rebuilt == expected
        # Attribute for attribute, in the dataclass's order, as the constructor sets them.
        assert list(vars(rebuilt).items()) == list(vars(expected).items())
        assert list(vars(rebuilt)) == [f.name for f in dataclasses.fields(expected)]
        assert rebuilt.to_document() == expected.to_document()
        types.add(document["eventType"])
    assert len(types) >= len(ev.EVENT_CLASS_BY_TYPE) * 3 // 4, sorted(types)
