"""The store's transcoder writes exactly the JSON of the library's own, faster."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.application import Application
from eventsourcing.persistence import JSONTranscoder

from infra.eventstore import OrjsonEncodingTranscoder


def transcoders() -> tuple[JSONTranscoder, OrjsonEncodingTranscoder]:
    library, ours = JSONTranscoder(), OrjsonEncodingTranscoder()
    for transcoder in (library, ours):
        Application.register_transcodings(None, transcoder)  # type: ignore[arg-type]
    return library, ours


@pytest.mark.parametrize(
    "state",
    [
        {"timestamp": datetime(2004, 5, 6, 7, 8, 9, 123456, tzinfo=UTC), "text": "Zoë ✓"},
        {"nested": {"list": [1, 2.5, None, True], "tuple": (1, "a")}, "empty": {}},
        {"amount": Decimal("12.50")},
        {"offender": UUID("6f1c1f0e-6a35-4d8b-9a4e-2d0f5c9a7b31")},  # the library's way
        {"huge": 2**70},  # beyond orjson's integers: the library's way
    ],
    ids=["datetime and text", "containers", "decimal", "uuid", "big integer"],
)
def test_it_writes_the_bytes_the_library_writes_and_reads_them_back(state: dict[str, Any]) -> None:
    library, ours = transcoders()
    encoded = ours.encode(state)
    assert encoded == library.encode(state)
    assert ours.decode(encoded) == library.decode(encoded)
