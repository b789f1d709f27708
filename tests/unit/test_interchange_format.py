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
        (lambda d: d["personReference"].update(identifiers=[{"type": "MAPPA", "value": "  "}]),
         "personReference.identifiers.0.value"),
        (lambda d: d.update(area=" "), "area"),
    ],
)  # fmt: skip
def test_a_nonconforming_document_is_rejected_naming_the_field(change: Any, field: str) -> None:
    document = example("mappa.level-changed")
    change(document)
    with pytest.raises(InvalidDocument) as raised:
        parse_document(json.dumps(document))
    assert raised.value.field == field
    assert str(raised.value).startswith(f"{field}: ")


@pytest.mark.parametrize(
    "period", ["P5Y", "P18M", "P2Y6M", "P10W", "P90D", "PT36H", "P1DT12H", "P0.5Y", "indefinite"]
)
def test_a_registration_period_may_be_any_iso_8601_duration_or_indefinite(period: str) -> None:
    document = example("registration.started")
    document["additionalInformation"]["period"] = period
    assert parse_document(json.dumps(document)).fields["period"] == period


@pytest.mark.parametrize(
    "period", ["five years", "P", "PT", "P5", "5Y", "P5Y\n", "P\u0665Y", "P1YT"]
)
def test_a_registration_period_that_is_no_duration_is_rejected(period: str) -> None:
    document = example("registration.started")
    document["additionalInformation"]["period"] = period
    with pytest.raises(InvalidDocument, match=r"additionalInformation\.period"):
        parse_document(json.dumps(document))


# Values pydantic would coerce, each in a JSON type other than the one the contract gives.
@pytest.mark.parametrize(
    ("event_type", "change", "field"),
    [
        ("mappa.level-changed", lambda d: d.update(version=True), "version"),
        ("mappa.level-changed", lambda d: d.update(version=1.0), "version"),
        ("mappa.level-changed", lambda d: d["additionalInformation"].update(level=2.0),
         "additionalInformation.level"),
        ("mappa.category-assigned", lambda d: d["additionalInformation"].update(category=True),
         "additionalInformation.category"),
        ("order.breached", lambda d: d["additionalInformation"].update(returnedToCustody="yes"),
         "additionalInformation.returnedToCustody"),
        ("order.breached", lambda d: d["additionalInformation"].update(returnedToCustody=1),
         "additionalInformation.returnedToCustody"),
        ("licence.conditions-set",
         lambda d: d["additionalInformation"]["conditions"][0].update(protectsVictim="false"),
         "additionalInformation.conditions.0.protectsVictim"),
        ("mappa.level-changed", lambda d: d.update(occurredAt=1111999999), "occurredAt"),
        ("mappa.level-changed", lambda d: d.update(occurredAt="1111999999"), "occurredAt"),
        ("release.notified",
         lambda d: d["additionalInformation"].update(expectedReleaseDate="2005-06-30T00:00:00Z"),
         "additionalInformation.expectedReleaseDate"),
        ("release.notified",
         lambda d: d["additionalInformation"].update(expectedReleaseDate=1120089600),
         "additionalInformation.expectedReleaseDate"),
        ("order.granted", lambda d: d["additionalInformation"].update(expiresOn="1262304000"),
         "additionalInformation.expiresOn"),
        ("custody.temporary-release",
         lambda d: d["additionalInformation"].update(from_=d["additionalInformation"].pop("from")),
         "additionalInformation.from"),
    ],
)  # fmt: skip
def test_a_value_in_another_json_type_than_the_contracts_is_rejected_naming_the_field(
    event_type: str, change: Any, field: str
) -> None:
    document = example(event_type)
    change(document)
    with pytest.raises(InvalidDocument) as raised:
        parse_document(json.dumps(document))
    assert raised.value.field == field


@pytest.mark.parametrize("occurred_at", ["9999-12-31T23:59:59-12:00", "0001-01-01T00:30:00+01:00"])
def test_a_moment_with_no_utc_or_london_time_is_rejected_not_failing_later(
    occurred_at: str,
) -> None:
    document = example("mappa.level-changed")
    document["occurredAt"] = occurred_at
    with pytest.raises(InvalidDocument, match="out of range") as raised:
        parse_document(json.dumps(document))
    assert raised.value.field == "occurredAt"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json_and_are_rejected(constant: str) -> None:
    text = json.dumps(example("mappa.level-changed"))[:-1] + f', "extra": {constant}}}'
    with pytest.raises(InvalidDocument, match=f"not valid JSON .*{constant}"):
        parse_document(text)


def test_text_that_is_not_utf_8_is_rejected_even_if_it_is_json_in_another_encoding() -> None:
    text = json.dumps(example("mappa.level-changed"))
    for raw in (text.encode("utf-16"), text.replace("an example", "caf\u00e9").encode("latin-1")):
        with pytest.raises(InvalidDocument, match="not valid JSON"):
            parse_document(raw)


@pytest.mark.parametrize("as_bytes", [False, True])
def test_a_lone_surrogate_escape_is_rejected_naming_the_field(as_bytes: bool) -> None:
    document = example("mappa.level-changed")
    document["description"] = "\ud800"
    text = json.dumps(document)  # written as the escape \\ud800, which JSON allows
    with pytest.raises(InvalidDocument, match="lone surrogate") as raised:
        parse_document(text.encode() if as_bytes else text)
    assert raised.value.field == "description"


def test_nesting_too_deep_for_the_parser_is_rejected_not_raised() -> None:
    text = json.dumps(example("licence.ended"))[:-1] + ', "extra": ' + "[" * 5000 + "]" * 5000 + "}"
    with pytest.raises(InvalidDocument, match="nested too deeply"):
        parse_document(text)


def test_integers_beyond_64_bits_in_an_unknown_field_are_still_accepted() -> None:
    text = json.dumps(example("licence.ended"))[:-1] + ', "extra": ' + "9" * 30 + "}"
    assert parse_document(text).event_class is ev.LicenceEnded


def test_unknown_extra_fields_are_accepted_and_ignored() -> None:
    document = example("licence.ended")
    document["newEnvelopeField"] = "from a later version"
    document["additionalInformation"]["note"] = "optional extra"
    assert parse_document(json.dumps(document)).event_class is ev.LicenceEnded


def test_wants_may_name_any_alert_kind_the_co_ordinators_included() -> None:
    document = example("victim.enrolled")
    document["additionalInformation"]["wants"] = ["released", "late-release-notice"]
    assert parse_document(json.dumps(document)).event_class is ev.VictimEnrolled


def test_wants_naming_no_alert_kind_is_rejected_naming_the_field() -> None:
    document = example("victim.enrolled")
    document["additionalInformation"]["wants"] = ["released", "postcards"]
    with pytest.raises(InvalidDocument) as raised:
        parse_document(json.dumps(document))
    assert raised.value.field == "additionalInformation.wants.1"


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


@pytest.mark.parametrize("event_type", ["registration.ended", "custody.absconded", "licence.ended"])
def test_a_type_with_nothing_to_say_may_give_its_additional_information_as_null(
    event_type: str,
) -> None:
    document = example(event_type)
    document["additionalInformation"] = None
    assert parse_document(json.dumps(document)).event_class.EVENT_TYPE == event_type


def test_a_temporary_release_that_ends_before_it_begins_is_rejected_naming_to() -> None:
    document = example("custody.temporary-release")
    document["additionalInformation"].update({"from": "2005-01-20", "to": "2005-01-10"})
    with pytest.raises(InvalidDocument, match="must not be before from") as raised:
        parse_document(json.dumps(document))
    assert raised.value.field == "additionalInformation.to"


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("2005-03-28T10:15:00+01:00", "2005-03-28T10:15:00+01:00"),
        ("2005-03-28T10:15:00+01", "2005-03-28T10:15:00+01:00"),
        ("20050328T101500+0100", "2005-03-28T10:15:00+01:00"),
        ("2005-W13-1T10:15:00+01:00", "2005-03-28T10:15:00+01:00"),
        ("2005-03-28T10+01:00", "2005-03-28T10:00:00+01:00"),
        ("2005-03-28T09:15:00.5Z", "2005-03-28T09:15:00.500000+00:00"),
    ],
)
def test_occurred_at_may_be_written_in_any_iso_8601_form_with_an_offset(
    written: str, read: str
) -> None:
    document = example("custody.absconded")
    document["occurredAt"] = written
    assert parse_document(json.dumps(document)).fields["occurred_at"].isoformat() == read
