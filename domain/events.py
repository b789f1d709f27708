"""The facts of an offender's life that the tracker records, one class per interchange type.

Every event is a frozen dataclass (the ``eventsourcing`` library makes it so), named in the
past tense, and carries who reported it (``source``) and when it happened (``occurred_at``);
when the tracker learned it is the library's ``timestamp`` (the contract's ``recordedAt``).

Each class has a stable registered ``TOPIC`` (``mappa.<interchange type>.v<schema version>``)
instead of the library's default ``module:QualName`` topic, so stored events survive moves
and renames of this module. When a class's fields change, bump ``class_version`` and add an
``upcast_vN_vN+1`` static method; never edit a stored topic.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

# A fixed namespace: offender ids are uuid5(NAMESPACE, MAPPA reference), so "create on first
# event" is idempotent across processes and transports without any lookup.
OFFENDER_NAMESPACE = UUID("6f1c1f0e-6a35-4d8b-9a4e-2d0f5c9a7b31")


@functools.lru_cache(maxsize=250_000)  # every fact asks; SHA-1 and a UUID each time cost 10 us
def offender_id_for(mappa_ref: str) -> UUID:
    """The aggregate id of the offender with this MAPPA reference."""
    return uuid5(OFFENDER_NAMESPACE, mappa_ref.strip().upper())


class OffenderEvent(Aggregate.Event):
    """Anything recorded on an offender's stream."""

    TOPIC: ClassVar[str] = "mappa.offender-event.v1"

    def apply(self, aggregate: Any) -> None:
        # Evolving state never raises: replay of stored history must always succeed.
        aggregate.evolve(self)


class InterchangeEvent(OffenderEvent):
    """A fact reported by an agency in the interchange format (the envelope's fields)."""

    EVENT_TYPE: ClassVar[str] = ""
    # Python field name -> interchange ``additionalInformation`` key, where not plain camelCase.
    INFO_KEYS: ClassVar[dict[str, str]] = {}

    event_id: str
    occurred_at: datetime
    source: dict[str, str]
    identifiers: list[dict[str, str]]
    area: str
    description: str | None

    @property
    def recorded_at(self) -> datetime:
        return self.timestamp

    @classmethod
    def info_fields(cls) -> dict[str, str]:
        """Field name -> ``additionalInformation`` key, for this type's own facts."""
        return _info_fields(cls)

    def to_document(self, *, with_recorded_at: bool = False) -> dict[str, Any]:
        """The interchange document of this event (what the agency sent, normalised); with
        ``recordedAt`` added, it is the "fact document" that projections fold."""
        return document_of(
            type(self),
            self.__dict__,
            occurred_at=self.occurred_at.isoformat(),
            recorded_at=self.recorded_at.isoformat() if with_recorded_at else None,
        )

    @classmethod
    def from_document(
        cls, document: dict[str, Any], *, offender_id: UUID, version: int, recorded_at: datetime
    ) -> InterchangeEvent:
        """Rebuild a recorded event from its (already validated) interchange document.

        Every field is set straight into the event's ``__dict__``, in the order of its
        dataclass fields, as the library's mapper rebuilds a stored event: the frozen
        dataclass's ``__init__`` (one ``object.__setattr__`` per field) took twice as long,
        and projections build an event for every fact they receive.
        """
        event_class = EVENT_CLASS_BY_TYPE[document["eventType"]]
        info = document.get("additionalInformation") or {}
        state: dict[str, Any] = {
            "originator_id": offender_id,
            "originator_version": version,
            "timestamp": recorded_at,
            "event_id": document["eventId"],
            "occurred_at": datetime.fromisoformat(document["occurredAt"]),
            "source": document["source"],
            "identifiers": document["personReference"]["identifiers"],
            "area": document["area"],
            "description": document.get("description"),
        }
        for name, key in event_class.info_fields().items():
            state[name] = info.get(key)
        event: InterchangeEvent = object.__new__(event_class)
        object.__setattr__(event, "__dict__", state)
        return event


def document_of(
    event_class: type[InterchangeEvent],
    fields: Mapping[str, Any],
    occurred_at: str,
    recorded_at: str | None = None,
) -> dict[str, Any]:
    """The interchange document of an event of ``event_class`` with these field values
    (``occurred_at``, ``recorded_at``: ISO 8601 text), from the event or from its stored
    state alike."""
    document: dict[str, Any] = {
        "eventId": fields["event_id"],
        "eventType": event_class.EVENT_TYPE,
        "version": 1,
        "occurredAt": occurred_at,
        "source": fields["source"],
        "personReference": {"identifiers": fields["identifiers"]},
        "area": fields["area"],
    }
    if fields.get("description") is not None:
        document["description"] = fields["description"]
    document["additionalInformation"] = {
        key: fields[name]
        for name, key in event_class.info_fields().items()
        if fields.get(name) is not None
    }
    if recorded_at is not None:
        document["recordedAt"] = recorded_at
    return document


@functools.cache
def _info_fields(cls: type[InterchangeEvent]) -> dict[str, str]:
    base = {f.name for f in dataclasses.fields(InterchangeEvent)}
    return {
        f.name: cls.INFO_KEYS.get(f.name, _camel(f.name))
        for f in dataclasses.fields(cls)
        if f.name not in base
    }


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


# --- MAPPA management (responsible authority) ------------------------------------------


class CategoryAssigned(InterchangeEvent):
    EVENT_TYPE = "mappa.category-assigned"
    TOPIC = "mappa.category-assigned.v1"
    category: int


class LevelChanged(InterchangeEvent):
    EVENT_TYPE = "mappa.level-changed"
    TOPIC = "mappa.level-changed.v1"
    level: int
    reason: str | None = None


class AreaTransferred(InterchangeEvent):
    EVENT_TYPE = "mappa.area-transferred"
    TOPIC = "mappa.area-transferred.v1"
    to_area: str
    to_bcu: str | None = None


class CaseClosed(InterchangeEvent):
    EVENT_TYPE = "mappa.case-closed"
    TOPIC = "mappa.case-closed.v1"
    reason: str


# --- Registration (police) ---------------------------------------------------------------


class RegistrationStarted(InterchangeEvent):
    EVENT_TYPE = "registration.started"
    TOPIC = "mappa.registration-started.v1"
    period: str
    bcu: str | None = None


class RegistrationBreached(InterchangeEvent):
    EVENT_TYPE = "registration.breached"
    TOPIC = "mappa.registration-breached.v1"
    outcome: str


class RegistrationEnded(InterchangeEvent):
    EVENT_TYPE = "registration.ended"
    TOPIC = "mappa.registration-ended.v1"


# --- Civil orders ------------------------------------------------------------------------


class OrderApplied(InterchangeEvent):
    EVENT_TYPE = "order.applied"
    TOPIC = "mappa.order-applied.v1"
    order_type: str
    application_id: str


class OrderInterimGranted(InterchangeEvent):
    EVENT_TYPE = "order.interim-granted"
    TOPIC = "mappa.order-interim-granted.v1"
    order_type: str
    application_id: str


class OrderGranted(InterchangeEvent):
    EVENT_TYPE = "order.granted"
    TOPIC = "mappa.order-granted.v1"
    order_type: str
    application_id: str | None = None  # absent when made on conviction
    prohibitions: list[str] | None = None
    expires_on: str | None = None


class OrderRefused(InterchangeEvent):
    EVENT_TYPE = "order.refused"
    TOPIC = "mappa.order-refused.v1"
    order_type: str
    application_id: str


class OrderBreached(InterchangeEvent):
    EVENT_TYPE = "order.breached"
    TOPIC = "mappa.order-breached.v1"
    order_type: str
    returned_to_custody: bool


# --- Custody and release -----------------------------------------------------------------


class CustodyReceived(InterchangeEvent):
    EVENT_TYPE = "custody.received"
    TOPIC = "mappa.custody-received.v1"
    prison: str
    reason: str


class CustodyTransferred(InterchangeEvent):
    EVENT_TYPE = "custody.transferred"
    TOPIC = "mappa.custody-transferred.v1"
    from_prison: str
    to_prison: str


class ReleaseNotified(InterchangeEvent):
    EVENT_TYPE = "release.notified"
    TOPIC = "mappa.release-notified.v1"
    expected_release_date: str
    release_type: str
    to_area: str | None = None
    to_bcu: str | None = None


class CustodyReleased(InterchangeEvent):
    EVENT_TYPE = "custody.released"
    TOPIC = "mappa.custody-released.v1"
    release_type: str
    to_area: str | None = None
    to_bcu: str | None = None


class TemporarilyReleased(InterchangeEvent):
    EVENT_TYPE = "custody.temporary-release"
    TOPIC = "mappa.custody-temporary-release.v1"
    INFO_KEYS = {"from_date": "from", "to_date": "to"}
    purpose: str
    from_date: str
    to_date: str


class Absconded(InterchangeEvent):
    EVENT_TYPE = "custody.absconded"
    TOPIC = "mappa.custody-absconded.v1"


class ParoleDecided(InterchangeEvent):
    EVENT_TYPE = "parole.decided"
    TOPIC = "mappa.parole-decided.v1"
    outcome: str


class SentenceVaried(InterchangeEvent):
    EVENT_TYPE = "sentence.varied"
    TOPIC = "mappa.sentence-varied.v1"
    reason: str
    new_expected_release_date: str | None = None


# --- Licence -----------------------------------------------------------------------------


class LicenceConditionsSet(InterchangeEvent):
    EVENT_TYPE = "licence.conditions-set"
    TOPIC = "mappa.licence-conditions-set.v1"
    conditions: list[dict[str, Any]]
    licence_end_date: str | None = None


class LicenceRecalled(InterchangeEvent):
    EVENT_TYPE = "licence.recalled"
    TOPIC = "mappa.licence-recalled.v1"
    reason: str


class LicenceEnded(InterchangeEvent):
    EVENT_TYPE = "licence.ended"
    TOPIC = "mappa.licence-ended.v1"


# --- Further offending -------------------------------------------------------------------


class OffenceCharged(InterchangeEvent):
    EVENT_TYPE = "offence.charged"
    TOPIC = "mappa.offence-charged.v1"
    charge_id: str
    offence: str


class OffenceDisposed(InterchangeEvent):
    EVENT_TYPE = "offence.disposed"
    TOPIC = "mappa.offence-disposed.v1"
    charge_id: str
    outcome: str


# --- Victims -----------------------------------------------------------------------------


class VictimEnrolled(InterchangeEvent):
    EVENT_TYPE = "victim.enrolled"
    TOPIC = "mappa.victim-enrolled.v1"
    victim_ref: str
    vlo_ref: str
    wants: list[str] | None = None


class VictimWithdrawn(InterchangeEvent):
    EVENT_TYPE = "victim.withdrawn"
    TOPIC = "mappa.victim-withdrawn.v1"
    victim_ref: str


# --- Corrections -------------------------------------------------------------------------


class RecordRetracted(InterchangeEvent):
    EVENT_TYPE = "record.retracted"
    TOPIC = "mappa.record-retracted.v1"
    INFO_KEYS = {"retracted_event_id": "eventId"}
    retracted_event_id: str
    reason: str


# --- The tracker's own findings ----------------------------------------------------------


class DataQualityQueryRaised(OffenderEvent):
    """An accepted fact is inconsistent with the history known so far (the contract's
    "accepted, and flagged as a data-quality query")."""

    TOPIC = "mappa.data-quality-query-raised.v1"
    query_id: str
    about_event_id: str
    kind: str
    reason: str


class DataQualityQueryCleared(OffenderEvent):
    """The missing fact arrived (placed by its ``occurredAt``) or the queried fact was
    retracted, so the query no longer holds."""

    TOPIC = "mappa.data-quality-query-cleared.v1"
    query_id: str
    cleared_by_event_id: str


INTERCHANGE_EVENT_CLASSES: tuple[type[InterchangeEvent], ...] = (
    CategoryAssigned,
    LevelChanged,
    AreaTransferred,
    CaseClosed,
    RegistrationStarted,
    RegistrationBreached,
    RegistrationEnded,
    OrderApplied,
    OrderInterimGranted,
    OrderGranted,
    OrderRefused,
    OrderBreached,
    CustodyReceived,
    CustodyTransferred,
    ReleaseNotified,
    CustodyReleased,
    TemporarilyReleased,
    Absconded,
    ParoleDecided,
    SentenceVaried,
    LicenceConditionsSet,
    LicenceRecalled,
    LicenceEnded,
    OffenceCharged,
    OffenceDisposed,
    VictimEnrolled,
    VictimWithdrawn,
    RecordRetracted,
)

EVENT_CLASS_BY_TYPE: dict[str, type[InterchangeEvent]] = {
    cls.EVENT_TYPE: cls for cls in INTERCHANGE_EVENT_CLASSES
}


def _register_stable_topics() -> None:
    # Module-level event classes are not registered by the aggregate's metaclass (only
    # nested ones are), so register them here, at import, for every process that reads.
    from eventsourcing.utils import register_topic

    classes: tuple[type[OffenderEvent], ...] = (
        *INTERCHANGE_EVENT_CLASSES,
        DataQualityQueryRaised,
        DataQualityQueryCleared,
    )
    for cls in classes:
        register_topic(cls.TOPIC, cls)


_register_stable_topics()
