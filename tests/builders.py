"""Builders of interchange documents for tests: terse, explicit, deterministic."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from consumers.interchange import parse_object
from domain.offender import ReportedFact

AGENCY_OF = {
    "mappa": "mappa-coordinator",
    "registration": "police",
    "order": "court",
    "custody": "prison",
    "release": "prison",
    "parole": "prison",
    "sentence": "court",
    "licence": "probation",
    "offence": "police",
    "victim": "victim-liaison",
    "record": "mappa-coordinator",
}


@dataclass
class History:
    """Documents for one offender; ``at`` strings are ISO moments with an offset."""

    ref: str
    area: str = "WM"
    namespace: str = "tests"
    documents: list[dict[str, Any]] = field(default_factory=list)

    def add(self, event_type: str, at: str, **info: Any) -> dict[str, Any]:
        number = len(self.documents) + 1
        document = {
            "eventId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.namespace}/{self.ref}/{number}")),
            "eventType": event_type,
            "version": 1,
            "occurredAt": at,
            "source": {"agency": AGENCY_OF[event_type.split(".")[0]], "system": "test"},
            "personReference": {"identifiers": [{"type": "MAPPA", "value": self.ref}]},
            "area": self.area,
            "additionalInformation": info,
        }
        self.documents.append(document)
        return document

    def retract(
        self, document: dict[str, Any], at: str, reason: str = "recorded in error"
    ) -> dict[str, Any]:
        return self.add("record.retracted", at, eventId=document["eventId"], reason=reason)

    def facts(self) -> list[ReportedFact]:
        return [parse_object(d) for d in self.documents]

    def lines(self) -> list[str]:
        return [json.dumps(d) for d in self.documents]


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)
