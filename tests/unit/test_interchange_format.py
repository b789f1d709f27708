"""The interchange format: every type round-trips, and bad documents are named precisely."""

from __future__ import annotations

import json
from typing import Any

import pytest
from eventsourcing.application import Application

from consumers.interchange import DOCUMENT_MODELS, InvalidDocument, json_schema, parse_document
from domain import events as ev
from domain.offender import Offender
from tests.builders import History

# One document of every type, with every optional field given (and some absent).
EXAMPLES: dict[str, dict[str, Any]] = {
    "mappa.category-assigned": {"category": 1},
    "mappa.level-changed": {"level": 2, "reason": "risk increased"},
    "mappa.area-transferred": {"toArea": "DUR", "toBcu": "North"},
    "mappa.case-closed": {"reason": "registration-ended"},
    "registration.started": {"period": "P5Y", "bcu": "Worcester"},
    "registration.breached": {"outcome": "caution"},
    "registration.ended": {},
    "order.applied": {"orderType": "SOPO", "applicationId": "APP-1"},
    "order.interim-granted": {"orderType": "NOTIFICATION_ORDER", "applicationId": "APP-2"},
    "order.granted": {
        "orderType": "SOPO",
        "prohibitions": ["no contact with children under 16"],
        "expiresOn": "2010-01-31",
    },
    "order.refused": {"orderType": "FOREIGN_TRAVEL_ORDER", "applicationId": "APP-3"},
    "order.breached": {"orderType": "RESTRAINING_ORDER", "returnedToCustody": True},
    "custody.received": {"prison": "HMP Long Lartin", "reason": "sentence"},
    "custody.transferred": {"fromPrison": "HMP Long Lartin", "toPrison": "HMP Hewell"},
    "release.notified": {
        "expectedReleaseDate": "2005-06-30",
        "releaseType": "parole-licence",
        "toArea": "WM",
        "toBcu": "Hereford",
    },
    "custody.released": {"releaseType": "licence", "toBcu": "Telford and Wrekin"},
    "custody.temporary-release": {
        "purpose": "work-placement",
        "from": "2005-01-10",
        "to": "2005-01-20",
    },
    "custody.absconded": {},
    "parole.decided": {"outcome": "release-refused"},
    "sentence.varied": {"reason": "appeal", "newExpectedReleaseDate": "2005-05-01"},
    "licence.conditions-set": {
        "conditions": [
            {"code": "residence", "text": "reside at approved premises", "protectsVictim": False},
            {"code": "non-contact", "text": "no contact with V", "protectsVictim": True},
        ],
        "licenceEndDate": "2008-01-01",
    },
    "licence.recalled": {"reason": "further-offence"},
    "licence.ended": {},
    "offence.charged": {"chargeId": "CH-1", "offence": "arson-endangering-life"},
    "offence.disposed": {"chargeId": "CH-1", "outcome": "convicted"},
    "victim.enrolled": {
        "victimRef": "V-0001",
        "vloRef": "VLO-WM-01",
        "wants": ["released", "recalled"],
    },
    "victim.withdrawn": {"victimRef": "V-0001"},
    "record.retracted": {
        "eventId": "7f4b1f7e-5a6c-4c1e-8d3a-1b2c3d4e5f60",
        "reason": "duplicate entry",
    },
}


def example(event_type: str) -> dict[str, Any]:
    h = History("WM-000123")
    document = h.add(event_type, "2005-03-28T10:15:00+01:00", **EXAMPLES[event_type])
    document["description"] = f"an example of {event_type}"
    document["personReference"]["identifiers"].append({"type": "PNC", "value": "2001/0000001X"})
    document["source"]["user"] = "jsmith"
    return document


def test_every_contract_event_type_has_a_model_an_event_class_and_an_example() -> None:
    assert set(DOCUMENT_MODELS) == set(ev.EVENT_CLASS_BY_TYPE) == set(EXAMPLES)
    assert len(EXAMPLES) == 28


def test_event_classes_have_stable_registered_topics_not_module_paths() -> None:
    from eventsourcing.utils import get_topic, resolve_topic

    for cls in ev.INTERCHANGE_EVENT_CLASSES:
        assert ":" not in cls.TOPIC and cls.TOPIC.endswith(".v1")
        assert get_topic(cls) == cls.TOPIC
        assert resolve_topic(cls.TOPIC) is cls


@pytest.mark.parametrize("event_type", sorted(EXAMPLES))
def test_every_event_type_round_trips_from_json_through_the_store_and_back(event_type: str) -> None:
    document = example(event_type)
    fact = parse_document(json.dumps(document))
    assert fact.event_class.EVENT_TYPE == event_type

    offender = Offender(mappa_ref="WM-000123")
    offender.record(fact)
    recorded = [e for e in offender.pending_events if isinstance(e, ev.InterchangeEvent)]
    assert len(recorded) == 1

    app: Application[Any] = Application(
        env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": ":memory:"}
    )
    app.save(offender)
    stored = [e for e in app.events.get(offender.id) if isinstance(e, ev.InterchangeEvent)]
    assert stored == recorded
    assert stored[0].to_document() == document
    assert parse_document(json.dumps(stored[0].to_document())) == fact


def test_a_document_that_is_not_json_is_rejected_as_such() -> None:
    with pytest.raises(InvalidDocument, match="not valid JSON"):
        parse_document("{not json")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.pop("occurredAt"), "occurredAt"),
        (lambda d: d.update(eventType="custody.teleported"), "eventType"),
        (lambda d: d.pop("eventType"), "eventType"),
        (lambda d: d.update(eventId="not-a-uuid"), "eventId"),
        (lambda d: d.update(version=2), "version"),
        (lambda d: d.update(occurredAt="2005-03-28T10:15:00"), "occurredAt"),
        (lambda d: d["source"].update(agency="army"), "source.agency"),
        (lambda d: d["additionalInformation"].update(level=4), "additionalInformation.level"),
        (lambda d: d["additionalInformation"].pop("level"), "additionalInformation.level"),
        (lambda d: d["personReference"]["identifiers"].append({"type": "MAPPA", "value": "X"}),
         "personReference.identifiers"),
        (lambda d: d["personReference"].update(identifiers=[]), "personReference.identifiers"),
    ],
)  # fmt: skip
def test_a_nonconforming_document_is_rejected_naming_the_field(change: Any, field: str) -> None:
    document = example("mappa.level-changed")
    change(document)
    with pytest.raises(InvalidDocument) as raised:
        parse_document(json.dumps(document))
    assert raised.value.field == field
    assert str(raised.value).startswith(f"{field}: ")


def test_a_registration_period_must_be_a_duration_or_indefinite() -> None:
    document = example("registration.started")
    for period in ("P5Y", "P18M", "indefinite"):
        document["additionalInformation"]["period"] = period
        parse_document(json.dumps(document))
    document["additionalInformation"]["period"] = "five years"
    with pytest.raises(InvalidDocument, match=r"additionalInformation\.period"):
        parse_document(json.dumps(document))


def test_unknown_extra_fields_are_accepted_and_ignored() -> None:
    document = example("licence.ended")
    document["newEnvelopeField"] = "from a later version"
    document["additionalInformation"]["note"] = "optional extra"
    assert parse_document(json.dumps(document)).event_class is ev.LicenceEnded


def test_the_json_schema_covers_every_event_type() -> None:
    schema = json.dumps(json_schema())
    for event_type in EXAMPLES:
        assert f'"{event_type}"' in schema


def test_a_nul_character_anywhere_is_rejected_naming_the_field() -> None:
    document = example("victim.enrolled")
    document["additionalInformation"]["victimRef"] = "V-\x00-1"
    with pytest.raises(InvalidDocument) as raised:
        parse_document(json.dumps(document))
    assert raised.value.field == "additionalInformation.victimRef"
    assert "U+0000" in str(raised.value)
