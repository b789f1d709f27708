"""The interchange format, version 1 (``shared/contract/interchange-v1.md``), as pydantic models.

Every ingest path (file, Kafka, HTTP) decodes with :func:`parse_document`, so a document is
accepted or rejected the same way whichever way it came. The JSON Schema published by
``mappa schema`` is generated from these models. Unknown extra fields are ignored: the
contract lets senders add optional fields, and the tracker must never accept less.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, Union
from uuid import UUID
from zoneinfo import ZoneInfo

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from domain import events as ev
from domain.offender import ReportedFact

Agency = Literal[
    "prison", "probation", "police", "court", "youth-offending", "victim-liaison",
    "mappa-coordinator",
]  # fmt: skip
OrderType = Literal["SOPO", "NOTIFICATION_ORDER", "FOREIGN_TRAVEL_ORDER"]
BreachableOrderType = Literal[
    "SOPO", "NOTIFICATION_ORDER", "FOREIGN_TRAVEL_ORDER", "RESTRAINING_ORDER"
]
ReleaseType = Literal["licence", "parole-licence", "end-of-sentence", "other"]
# Every alert kind of victim-alerts.md, the co-ordinator's late-release-notice included:
# a victim's ``wants`` naming it conforms (it is a list of alert kinds), and simply asks
# for nothing that is ever sent to a victim.
AlertKind = Literal[
    "release-due", "released", "licence-conditions", "recalled", "sentence-reduced",
    "work-placement", "absconded", "transferred", "parole-outcome", "case-closing",
    "late-release-notice",
]  # fmt: skip
# Not blank: some character other than white space (checked by pydantic-core itself, a
# Python check per field made parsing a tenth slower; ``_first_problem`` words its error).
_NOT_BLANK = r"\S"
NonEmpty = Annotated[str, Field(min_length=1, pattern=_NOT_BLANK)]

# pydantic's lax mode reads more than JSON says: true or 1.0 for an integer, "yes" or 1 for a
# boolean, a number of seconds for a moment, a moment for a date. The contract's types are
# JSON's, so a value is taken only in the JSON type the contract gives it.
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _json_integer(value: Any) -> Any:
    if type(value) is not int:
        raise ValueError("must be a JSON integer")
    return value


def _iso_moment(value: Any) -> Any:
    # Read by the standard library, which takes every ISO 8601 form a sender may write
    # (an offset in hours, "+01"; the basic format, 20050328T101500+0100; a week date;
    # the time to the hour), where pydantic's parser takes RFC 3339's only.
    try:
        if isinstance(value, str):
            return datetime.fromisoformat(value)
    except ValueError:
        pass
    raise ValueError("must be an ISO 8601 date and time, such as 2005-03-28T10:15:00+01:00")


def _iso_date(value: Any) -> Any:
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise ValueError("must be a date written YYYY-MM-DD")
    return value


Level = Annotated[Literal[1, 2, 3], BeforeValidator(_json_integer)]
Moment = Annotated[AwareDatetime, BeforeValidator(_iso_moment)]
Day = Annotated[date, BeforeValidator(_iso_date)]

# An ISO 8601 duration: years to days and a time part, the last given part may be a fraction.
_NUMBER = r"[0-9]+(?:[.,][0-9]+)?"
_DURATION = re.compile(
    rf"P(?!\Z)(?:{_NUMBER}Y)?(?:{_NUMBER}M)?(?:{_NUMBER}W)?(?:{_NUMBER}D)?"
    rf"(?:T(?=[0-9])(?:{_NUMBER}H)?(?:{_NUMBER}M)?(?:{_NUMBER}S)?)?"
)
_LONDON = ZoneInfo("Europe/London")


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Source(_Model):
    agency: Agency
    system: str | None = None
    user: str | None = None


class Identifier(_Model):
    type: NonEmpty
    value: NonEmpty


class PersonReference(_Model):
    identifiers: list[Identifier]

    @field_validator("identifiers")
    @classmethod
    def _exactly_one_mappa_reference(cls, value: list[Identifier]) -> list[Identifier]:
        count = sum(1 for i in value if i.type == "MAPPA")
        if count != 1:
            raise ValueError(f"exactly one MAPPA identifier is required, found {count}")
        return value


class _Envelope(_Model):
    eventId: UUID
    version: Annotated[Literal[1], BeforeValidator(_json_integer)]
    occurredAt: Moment
    source: Source
    personReference: PersonReference
    area: NonEmpty
    description: str | None = None


class _NoInfo(_Model):
    pass


# --- additionalInformation per type ------------------------------------------------------


class CategoryInfo(_Model):
    category: Level


class LevelInfo(_Model):
    level: Level
    reason: str | None = None


class AreaTransferInfo(_Model):
    toArea: NonEmpty
    toBcu: str | None = None


class CaseClosedInfo(_Model):
    reason: Literal[
        "registration-ended", "licence-ended", "order-ended", "deceased", "risk-reduced",
        "left-jurisdiction", "other",
    ]  # fmt: skip


class RegistrationStartedInfo(_Model):
    period: str
    bcu: str | None = None

    @field_validator("period")
    @classmethod
    def _duration_or_indefinite(cls, value: str) -> str:
        if value != "indefinite" and not _DURATION.fullmatch(value):
            raise ValueError("must be an ISO 8601 duration such as P5Y, or 'indefinite'")
        return value


class BreachInfo(_Model):
    outcome: Literal["caution", "conviction", "no-further-action", "pending"]


class ApplicationInfo(_Model):
    orderType: OrderType
    applicationId: NonEmpty


class OrderGrantedInfo(_Model):
    orderType: OrderType
    applicationId: str | None = None
    prohibitions: list[str] | None = None
    expiresOn: Day | None = None


class OrderBreachedInfo(_Model):
    orderType: BreachableOrderType
    returnedToCustody: StrictBool


class CustodyReceivedInfo(_Model):
    prison: NonEmpty
    reason: Literal["remand", "sentence", "recall", "breach", "other"]


class CustodyTransferredInfo(_Model):
    fromPrison: NonEmpty
    toPrison: NonEmpty


class ReleaseNotifiedInfo(_Model):
    expectedReleaseDate: Day
    releaseType: ReleaseType
    toArea: str | None = None
    toBcu: str | None = None


class ReleasedInfo(_Model):
    releaseType: ReleaseType
    toArea: str | None = None
    toBcu: str | None = None


class TemporaryReleaseInfo(_Model):
    purpose: Literal["work-placement", "other"]
    # Read by its JSON name only: "from_" is no field of the contract.
    from_: Day = Field(alias="from")
    to: Day

    @field_validator("to")
    @classmethod
    def _not_before_from(cls, value: date, info: ValidationInfo) -> date:
        start = info.data.get("from_")
        if start is not None and value < start:
            raise ValueError(f"must not be before from ({start.isoformat()})")
        return value


class ParoleInfo(_Model):
    outcome: Literal["release-directed", "release-refused", "open-conditions"]


class SentenceVariedInfo(_Model):
    reason: Literal["appeal", "other"]
    newExpectedReleaseDate: Day | None = None


class Condition(_Model):
    code: Literal[
        "exclusion-zone", "non-contact", "residence", "curfew", "electronic-monitoring",
        "programme", "disclosure-of-relationships", "other",
    ]  # fmt: skip
    text: str
    protectsVictim: StrictBool


class ConditionsInfo(_Model):
    conditions: list[Condition]
    licenceEndDate: Day | None = None


class RecallInfo(_Model):
    reason: Literal["breach-of-conditions", "further-offence", "other"]


class ChargedInfo(_Model):
    chargeId: NonEmpty
    offence: Literal[
        "murder", "attempted-murder", "arson-endangering-life", "manslaughter", "rape",
        "kidnap-abduction", "other-very-serious", "significant-public-interest", "other",
    ]  # fmt: skip


class DisposedInfo(_Model):
    chargeId: NonEmpty
    outcome: Literal["convicted", "acquitted", "discontinued", "other"]


class EnrolledInfo(_Model):
    victimRef: NonEmpty
    vloRef: NonEmpty
    wants: list[AlertKind] | None = None


class WithdrawnInfo(_Model):
    victimRef: NonEmpty


class RetractedInfo(_Model):
    eventId: UUID
    reason: NonEmpty


_INFO_MODELS: dict[type[ev.InterchangeEvent], type[_Model]] = {
    ev.CategoryAssigned: CategoryInfo,
    ev.LevelChanged: LevelInfo,
    ev.AreaTransferred: AreaTransferInfo,
    ev.CaseClosed: CaseClosedInfo,
    ev.RegistrationStarted: RegistrationStartedInfo,
    ev.RegistrationBreached: BreachInfo,
    ev.RegistrationEnded: _NoInfo,
    ev.OrderApplied: ApplicationInfo,
    ev.OrderInterimGranted: ApplicationInfo,
    ev.OrderGranted: OrderGrantedInfo,
    ev.OrderRefused: ApplicationInfo,
    ev.OrderBreached: OrderBreachedInfo,
    ev.CustodyReceived: CustodyReceivedInfo,
    ev.CustodyTransferred: CustodyTransferredInfo,
    ev.ReleaseNotified: ReleaseNotifiedInfo,
    ev.CustodyReleased: ReleasedInfo,
    ev.TemporarilyReleased: TemporaryReleaseInfo,
    ev.Absconded: _NoInfo,
    ev.ParoleDecided: ParoleInfo,
    ev.SentenceVaried: SentenceVariedInfo,
    ev.LicenceConditionsSet: ConditionsInfo,
    ev.LicenceRecalled: RecallInfo,
    ev.LicenceEnded: _NoInfo,
    ev.OffenceCharged: ChargedInfo,
    ev.OffenceDisposed: DisposedInfo,
    ev.VictimEnrolled: EnrolledInfo,
    ev.VictimWithdrawn: WithdrawnInfo,
    ev.RecordRetracted: RetractedInfo,
}


def _document_model(event_class: type[ev.InterchangeEvent]) -> type[_Envelope]:
    info_model = _INFO_MODELS[event_class]
    info_annotation: Any = info_model
    if info_model is _NoInfo:
        # Nothing to say: given as {}, left out, or null.
        info_annotation = _NoInfo | None
        info_field: Any = Field(default_factory=_NoInfo)
    else:
        info_field = Field(...)
    namespace = {
        "__annotations__": {
            "eventType": Literal[event_class.EVENT_TYPE],
            "additionalInformation": info_annotation,
        },
        "additionalInformation": info_field,
        "__module__": __name__,
    }
    name = "".join(p.capitalize() for p in re.split(r"[.-]", event_class.EVENT_TYPE)) + "Document"
    return type(name, (_Envelope,), namespace)


DOCUMENT_MODELS: dict[str, type[_Envelope]] = {
    cls.EVENT_TYPE: _document_model(cls) for cls in ev.INTERCHANGE_EVENT_CLASSES
}

# Built at import from the models above; typed as Any because it is made at runtime.
InterchangeDocument: Any = Annotated[
    Union[tuple(DOCUMENT_MODELS.values())],  # noqa: UP007
    Field(discriminator="eventType"),
]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(InterchangeDocument)


class InvalidDocument(ValueError):
    """A document that does not conform; ``field`` names where, the message says what."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field
        self.problem = problem


def json_schema() -> dict[str, Any]:
    """The JSON Schema of an interchange document, generated from the models."""
    schema = _ADAPTER.json_schema(by_alias=True)
    schema["title"] = "MAPPA offender event interchange format, version 1"
    return schema


def parse_document(raw: str | bytes) -> ReportedFact:
    """Decode and validate one document; raise :class:`InvalidDocument` naming the field."""
    data = decode_json(raw)
    # In JSON text a NUL can only be written escaped: look for it only where it can be.
    may_hold_nul = b"\\u0000" in raw if isinstance(raw, bytes) else "\\u0000" in raw
    return parse_object(data, check_nul=may_hold_nul)


def decode_json(raw: str | bytes) -> Any:
    """The JSON value of UTF-8 text; raise :class:`InvalidDocument` for anything else.

    orjson (C) first. What it refuses is read again by the standard module, which words the
    error, and accepts a little more that is still JSON (integers beyond 64 bits, nesting
    deeper than 1,024), but also what is not: NaN and Infinity, text in other encodings,
    and escapes of lone surrogates, which no UTF-8 text (nor the store) can hold. Those are
    refused here, so that nothing accepted fails later, in the batch of other senders'.
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
        data = json.loads(text, parse_constant=_not_json)
    except RecursionError:
        raise InvalidDocument("", "not valid JSON (nested too deeply)") from None
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InvalidDocument("", f"not valid JSON ({error})") from None
    where = _first_text(data, _SURROGATE.search)
    if where is not None:
        # The path itself may hold it (a key): written escaped, to be printable.
        printable = where.encode("utf-8", "backslashreplace").decode()
        raise InvalidDocument(printable, "must be Unicode text: it holds a lone surrogate escape")
    return data


_SURROGATE = re.compile("[\ud800-\udfff]")


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")


def parse_object(data: Any, check_nul: bool = True) -> ReportedFact:
    """Validate an already-decoded JSON value as an interchange document."""
    if not isinstance(data, dict):
        raise InvalidDocument("", "a document must be a JSON object")
    nul = _first_text(data, _holds_nul) if check_nul else None
    if nul is not None:
        # JSON allows it, but no person writes it and PostgreSQL text cannot hold it.
        raise InvalidDocument(nul, "must not contain the NUL character (U+0000)")
    try:
        document = _ADAPTER.validate_python(data)
    except ValidationError as error:
        raise _first_problem(error, data) from None
    if not 1 < document.occurredAt.year < 9999:
        # Every count reads the moment in UTC and in London time: a moment at the edge of
        # the calendar that has no such reading is refused here.
        try:
            document.occurredAt.astimezone(UTC).astimezone(_LONDON)
        except OverflowError:
            raise InvalidDocument(
                "occurredAt", "out of range: it has no UTC or London time"
            ) from None
    return to_fact(document)


def _holds_nul(text: str) -> bool:
    return "\x00" in text


def _first_text(value: Any, bad: Callable[[str], object], path: str = "") -> str | None:
    """The path of the first string (or key) that is ``bad``, if any."""
    if isinstance(value, str):
        return path if bad(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            if bad(str(key)):
                return here
            found = _first_text(item, bad, here)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _first_text(item, bad, f"{path}.{index}")
            if found is not None:
                return found
    return None


def _first_problem(error: ValidationError, data: dict[str, Any]) -> InvalidDocument:
    first = error.errors()[0]
    loc = [str(p) for p in first["loc"]]
    # A discriminated union puts the eventType value first in the location: drop it.
    if loc and loc[0] == data.get("eventType") and loc[0] in DOCUMENT_MODELS:
        loc = loc[1:]
    if first["type"] == "union_tag_invalid":
        return InvalidDocument("eventType", f"unknown event type {data.get('eventType')!r}")
    if first["type"] == "union_tag_not_found":
        return InvalidDocument("eventType", "field required")
    field = ".".join(loc)
    problem = first["msg"].removeprefix("Value error, ")  # pydantic's, for our own checks
    if first["type"] == "string_pattern_mismatch" and first["ctx"]["pattern"] == _NOT_BLANK:
        problem = "must not be blank"
    if first["type"] == "missing":
        problem = "field required"
    return InvalidDocument(field, problem)


def to_fact(document: Any) -> ReportedFact:
    """Map a validated document onto the domain's fact: event class and fields."""
    event_class = ev.EVENT_CLASS_BY_TYPE[document.eventType]
    given = document.additionalInformation or _NoInfo()
    info = given.model_dump(mode="json", by_alias=True)
    fields: dict[str, Any] = {
        "event_id": str(document.eventId),
        # Read by the standard library (``_iso_moment``), so its tzinfo is the stdlib's
        # ``timezone``, which storage takes (pydantic's own would not survive it).
        "occurred_at": document.occurredAt,
        "source": document.source.model_dump(exclude_none=True),
        "identifiers": [i.model_dump() for i in document.personReference.identifiers],
        "area": document.area,
        "description": document.description,
    }
    for name, key in event_class.info_fields().items():
        fields[name] = info.get(key)
    return ReportedFact(event_class, fields)
