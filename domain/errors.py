"""The contract's rejections: conforming documents that contradict the record in a way no
later fact can mend (interchange-v1.md, "What the tracker does with a document")."""


class DomainError(Exception):
    """A fact the tracker must refuse; the message says why, for the sender."""


class RetractionOfAnotherOffendersEvent(DomainError):
    def __init__(self, retracted_event_id: str) -> None:
        super().__init__(
            f"additionalInformation.eventId: event {retracted_event_id} belongs to another "
            "offender; a retraction may only name an event of the same offender"
        )


class RetractionOfRetraction(DomainError):
    def __init__(self, retracted_event_id: str) -> None:
        super().__init__(
            f"additionalInformation.eventId: event {retracted_event_id} is itself a "
            "retraction; a retraction cannot be retracted"
        )


class WrongOffender(DomainError):
    def __init__(self, mappa_ref: str, offender_ref: str) -> None:
        super().__init__(
            f"personReference: MAPPA reference {mappa_ref} sent to the record of {offender_ref}"
        )
