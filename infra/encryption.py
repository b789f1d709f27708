"""Encryption at rest of the event store, and the start-up check that the key is right.

With ``MAPPA_CIPHER_KEY`` set, the ``eventsourcing`` library encrypts each stored event's
state with AES-GCM (``eventsourcing.cipher:AESCipher``): the offender's and victims'
references and every free text live only inside the ciphertext; ids, versions and topics
stay in clear, which is what the store needs to order and index events.

A wrong key is not noticed by the library until the first event is read, which could be
in the middle of a batch hours after a process started. :func:`open_offender_records`
therefore reads one stored event as soon as the store is open, and refuses to go on with a
message saying what is wrong, before anything is written with a key that would make the
store unreadable as a whole.
"""

from __future__ import annotations

import base64
import binascii

from eventsourcing.cipher import AESCipher

from infra.eventstore import OffenderRecords
from infra.settings import Settings

KEY_HINT = (
    "make one with: python -c 'from eventsourcing.cipher import AESCipher; "
    "print(AESCipher.create_key(32))'"
)


class StoreKeyError(RuntimeError):
    """The event store cannot be read with the configured key (or lack of one)."""


def check_key_format(settings: Settings) -> None:
    """Refuse a ``MAPPA_CIPHER_KEY`` that is not base64 of 16, 24 or 32 bytes."""
    if not settings.cipher_key:
        return
    try:
        key = base64.b64decode(settings.cipher_key.get_secret_value(), validate=True)
    except (binascii.Error, ValueError):
        raise StoreKeyError(f"MAPPA_CIPHER_KEY is not valid base64; {KEY_HINT}") from None
    if len(key) not in AESCipher.KEY_SIZES:
        raise StoreKeyError(
            f"MAPPA_CIPHER_KEY must encode 16, 24 or 32 bytes (it encodes {len(key)}); {KEY_HINT}"
        )


def verify_readable(records: OffenderRecords, encrypted: bool) -> None:
    """Decode the first stored event (if any); raise :class:`StoreKeyError` if it cannot be."""
    first = records.recorder.select_notifications(start=1, limit=1)
    if not first:
        return
    try:
        records.mapper.to_domain_event(first[0])
    except Exception as error:
        # Only the kind of failure is kept: the message of a decoding error may quote
        # bytes of the stored state.
        kind = type(error).__name__
        if encrypted:
            raise StoreKeyError(
                "MAPPA_CIPHER_KEY does not decrypt the stored events: it is not the key they "
                f"were written with, or they were written unencrypted ({kind}). Refusing to "
                "start: set the key the store was written with."
            ) from None
        raise StoreKeyError(
            "the stored events cannot be read without a key: they look encrypted "
            f"({kind}). Refusing to start: set MAPPA_CIPHER_KEY to the key they were "
            "written with."
        ) from None


def open_offender_records(settings: Settings) -> OffenderRecords:
    """The event store, opened with the configured key and proven readable with it."""
    check_key_format(settings)
    records = OffenderRecords(env=settings.eventsourcing_environment())
    try:
        verify_readable(records, encrypted=bool(settings.cipher_key))
    except StoreKeyError:
        records.close()
        raise
    return records
